"""Turning pydantic validation errors into configuration Problems that say what to do."""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from nexus.errors import Problem
from nexus.kernel._env import ENV_PREFIX
from nexus.kernel._redaction import is_secret_key
from nexus.kernel._yaml import KeyPath

__all__ = ["choices", "show", "validation_problems"]

# Pydantic's parse errors end in a detail that only restates the input we show anyway.
_PARSE_DETAIL = re.compile(r", unable to (parse|interpret) .*\Z")


def validation_problems(
    exc: ValidationError,
    prefix: KeyPath,
    model: type[BaseModel] | None,
    locate: Callable[[KeyPath], str],
) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        path = (*prefix, *(str(part) for part in error["loc"]))
        message = _describe(error, path, model, len(prefix))
        problems.append(Problem(locate(path), ".".join(path), message))
    return problems


def _describe(error: ErrorDetails, path: KeyPath, model: type[BaseModel] | None, depth: int) -> str:
    inner = path[depth:]
    if error["type"] == "extra_forbidden":
        fields = _fields_at(model, inner[:-1])
        known = f"; known keys: {choices(path[-1], fields)}" if fields else ""
        return f"unknown key {path[-1]!r}{known}"
    if error["type"] == "missing":
        variable = ENV_PREFIX + "__".join(key.upper() for key in path)
        return f"Field required; add it to the configuration file or set {variable}"
    message = _PARSE_DETAIL.sub("", error["msg"])
    if any(is_secret_key(key) for key in path) or _is_secret_field(model, inner):
        return f"{message} (value hidden: it is a secret)"
    return f"{message}, got {show(error['input'])}"


def choices(key: str, names: list[str]) -> str:
    listed = ", ".join(names)
    close = difflib.get_close_matches(key, names, n=1)
    return f"{listed} (did you mean {close[0]!r}?)" if close else listed


def show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _models_in(annotation: Any) -> list[Any]:
    """The annotation and every type nested in it (Optional, list[...], dict[...])."""
    found = [annotation]
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _field_annotation(model: type[BaseModel] | None, path: KeyPath) -> Any:
    # Segments that are not field names (list indexes, dict keys) stay on the current model.
    current, annotation = model, None
    for key in path:
        if current is None:  # inside a dict or list field: its annotation still tells
            break
        info = current.model_fields.get(key)
        if info is None:
            continue
        annotation = info.annotation
        nested = [t for t in _models_in(annotation) if _is_model(t)]
        current = nested[0] if nested else None
    return annotation


def _fields_at(model: type[BaseModel] | None, path: KeyPath) -> list[str]:
    annotation = _field_annotation(model, path) if path else model
    nested = [t for t in _models_in(annotation) if _is_model(t)]
    return sorted(nested[0].model_fields) if nested else []


def _is_secret_field(model: type[BaseModel] | None, path: KeyPath) -> bool:
    annotation = _field_annotation(model, path) if path else None
    return any(t in (SecretStr, SecretBytes) for t in _models_in(annotation))


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)
