"""YAML loading that remembers the line of every key and expands `${VAR}` references."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from nexus.errors import Problem

KeyPath = tuple[str, ...]

# `$${` is an escaped literal, `${...}` a reference, and a lone `${` an unclosed reference.
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?\Z", re.DOTALL)
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class YamlDocument:
    """A parsed file: its top-level mapping, the line of each key path, and what went wrong."""

    data: dict[str, Any] = field(default_factory=dict)
    lines: dict[KeyPath, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def load_yaml(path: Path, name: str, environ: Mapping[str, str]) -> YamlDocument:
    """Read `path` (shown to users as `name`), expanding `${VAR}` from `environ`."""
    document = YamlDocument()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        document.problems.append(Problem(name, "", f"cannot read the file: {exc.strerror}"))
        return document
    except UnicodeDecodeError as exc:
        document.problems.append(Problem(name, "", f"cannot read the file as UTF-8: {exc.reason}"))
        return document
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # ReaderError: control characters, carries no line mark
        document.problems.append(Problem(name, "", f"invalid YAML: {exc}"))
        return document
    try:
        root = loader.get_single_node()
        if root is not None:
            _Builder(loader, name, environ, document).root(root)
    except yaml.MarkedYAMLError as exc:
        document.problems.append(_syntax_problem(exc, name))
    finally:
        loader.dispose()
    return document


def _syntax_problem(exc: yaml.MarkedYAMLError, name: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    location = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
    message = f"invalid YAML: {exc.problem or exc.context}"
    if exc.context and exc.problem and exc.context_mark:
        message += f" ({exc.context} started at line {exc.context_mark.line + 1})"
    return Problem(location, "", message)


class _Builder:
    def __init__(
        self, loader: yaml.SafeLoader, name: str, environ: Mapping[str, str], doc: YamlDocument
    ) -> None:
        self._loader, self._name, self._environ, self._doc = loader, name, environ, doc
        self._active: set[int] = set()
        self._checked: set[int] = set()

    def root(self, node: Node) -> None:
        self._doc.lines[()] = node.start_mark.line + 1
        if not isinstance(node, MappingNode):
            kind = "a list" if isinstance(node, SequenceNode) else "a single value"
            self._problem(
                node, (), f"the document must be a mapping of section names to settings, got {kind}"
            )
            return
        self._doc.data = self._mapping(node, ())

    def _problem(self, node: Node, path: KeyPath, message: str) -> None:
        location = f"{self._name}:{node.start_mark.line + 1}"
        self._doc.problems.append(Problem(location, ".".join(path), message))

    def _build(self, node: Node, path: KeyPath) -> Any:
        if id(node) in self._active:
            self._problem(node, path, "an alias refers to itself; recursive data is not allowed")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                if node.tag != _MAP_TAG:
                    self._problem(node, path, f"unsupported YAML tag {node.tag!r}")
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ_TAG:
                    self._problem(node, path, f"unsupported YAML tag {node.tag!r}")
                return self._sequence(node, path)
            return self._scalar(node, path)
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: MappingNode, path: KeyPath) -> dict[str, Any]:
        if id(node) not in self._checked:
            self._checked.add(id(node))
            self._check_duplicates(node, path)
        try:
            self._loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            self._doc.problems.append(_syntax_problem(exc, self._name))
            return {}
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self._problem(key_node, path, "keys must be plain names, not mappings or lists")
                continue
            key_path = (*path, key_node.value)
            self._doc.lines[key_path] = key_node.start_mark.line + 1
            result[key_node.value] = self._build(value_node, key_path)
        return result

    def _check_duplicates(self, node: MappingNode, path: KeyPath) -> None:
        # PyYAML silently keeps the last of two equal keys; that hides typos and bad merges.
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                self._problem(
                    key_node,
                    (*path, key_node.value),
                    f"duplicate key {key_node.value!r} (first at line {seen[key_node.value]}); "
                    f"keep only one",
                )
            else:
                seen[key_node.value] = line

    def _sequence(self, node: SequenceNode, path: KeyPath) -> list[Any]:
        items: list[Any] = []
        for index, item in enumerate(node.value):
            item_path = (*path, str(index))
            self._doc.lines[item_path] = item.start_mark.line + 1
            items.append(self._build(item, item_path))
        return items

    def _scalar(self, node: Node, path: KeyPath) -> Any:
        try:
            value = self._loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self._problem(node, path, f"invalid value: {exc.problem}")
            return None
        if isinstance(value, str) and "$" in value:
            return self._expand(value, node, path)
        return value

    def _expand(self, text: str, node: Node, path: KeyPath) -> str:
        def replace(match: re.Match[str]) -> str:
            whole = match.group(0)
            if whole == "$${":
                return "${"
            body = match.group(1)
            reference = _VARIABLE.match(body) if body is not None else None
            if reference is None:
                self._problem(
                    node,
                    path,
                    f"invalid reference {whole!r}: write ${{NAME}} or ${{NAME:-default}}, "
                    f"or $${{ for a literal '${{'",
                )
                return whole
            variable, default = reference.group(1), reference.group(2)
            value = self._environ.get(variable)
            if default is not None:
                # Shell semantics: `:-` also replaces a variable that is set but empty.
                return value or default
            if value is None:
                self._problem(
                    node,
                    path,
                    f"environment variable {variable!r} is not set; set it or give a default "
                    f"with ${{{variable}:-default}}",
                )
                return ""
            return value

        return _REFERENCE.sub(replace, text)
