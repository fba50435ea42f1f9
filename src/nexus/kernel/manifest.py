"""The plugin manifest (`manifest.json`): what a plugin is, needs and may do."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nexus.errors import ManifestError, Problem
from nexus.kernel.permissions import parse_permission

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
_ENTRY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


@lru_cache(maxsize=1024)
def parse_specifier(text: str) -> SpecifierSet:
    """Parse a PEP 440 version specifier ("" accepts any version)."""
    return SpecifierSet(text)


def _check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"{what} {name!r} must be lower snake case: a letter, then letters, digits or '_' "
            f"(at most 64 characters), e.g. 'user_manager'"
        )
    return name


def _check_specifier(spec: str, what: str) -> str:
    try:
        parse_specifier(spec)
    except InvalidSpecifier:
        raise ValueError(
            f"{what}: {spec!r} is not a PEP 440 version specifier; use e.g. '>=1.0,<2' or '' "
            f"for any version"
        ) from None
    return spec


class Manifest(BaseModel):
    """A plugin's manifest: identity, entry point, dependencies and granted permissions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Plugin name: lower snake case, also its config section.")
    version: str = Field(description="The plugin's PEP 440 version, e.g. '1.2.0'.")
    description: str = ""
    entry: str = Field(
        description="'module:Class' inside the plugin package, e.g. 'plugin:UserManager'."
    )
    requires: dict[str, str] = Field(
        default_factory=dict, description="Plugins that must be active first, name -> specifier."
    )
    optional: dict[str, str] = Field(
        default_factory=dict, description="Plugins used when present, started first if so."
    )
    after: list[str] = Field(
        default_factory=list, description="Plugins to start before this one when present."
    )
    nexus: str = Field(default="", description="Supported Nexus versions, e.g. '>=0.1'.")
    provides: list[str] = Field(
        default_factory=list, description="Service keys this plugin may provide."
    )
    permissions: list[str] = Field(
        default_factory=list,
        description="Granted capabilities, e.g. 'events:publish:user.*', 'services:use:database'.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "name")

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        try:
            Version(value)
        except InvalidVersion:
            raise ValueError(
                f"{value!r} is not a PEP 440 version; use e.g. '1.0.0' or '0.3.1rc1'"
            ) from None
        return value

    @field_validator("entry")
    @classmethod
    def _entry(cls, value: str) -> str:
        if not _ENTRY.match(value):
            raise ValueError(
                f"{value!r} is not 'module:Class'; use e.g. 'plugin:UserManager' for class "
                f"UserManager in plugin.py"
            )
        return value

    @field_validator("requires", "optional")
    @classmethod
    def _dependencies(cls, value: dict[str, str]) -> dict[str, str]:
        for name, spec in value.items():
            _check_name(name, "dependency name")
            _check_specifier(spec, f"dependency {name!r}")
        return value

    @field_validator("after")
    @classmethod
    def _after(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_name(name, "plugin name")
        return value

    @field_validator("nexus")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_specifier(value, "nexus")

    @field_validator("provides")
    @classmethod
    def _provides(cls, value: list[str]) -> list[str]:
        for key in value:
            if not key or any(not part.isidentifier() for part in key.split(".")):
                raise ValueError(
                    f"service key {key!r} must be a dotted name of identifiers, e.g. 'database'"
                )
        return value

    @field_validator("permissions")
    @classmethod
    def _permissions(cls, value: list[str]) -> list[str]:
        for permission in value:
            parse_permission(permission)
        return value

    @property
    def parsed_version(self) -> Version:
        """The version as a comparable `packaging` Version."""
        return Version(self.version)

    @property
    def module(self) -> str:
        """The entry module, relative to the plugin package."""
        return self.entry.partition(":")[0]

    @property
    def class_name(self) -> str:
        """The entry class name."""
        return self.entry.partition(":")[2]

    def dependencies(self) -> set[str]:
        """Every plugin this one names in requires, optional or after."""
        return {*self.requires, *self.optional, *self.after}


def manifest_problems(data: Any, location: str) -> list[Problem]:
    """Validate raw manifest data and return every problem found (empty when valid)."""
    if not isinstance(data, dict):
        return [Problem(location, "", f"must be a JSON object, got {type(data).__name__}")]
    try:
        Manifest.model_validate(data)
    except ValidationError as exc:
        return [_problem(location, error) for error in exc.errors()]
    return []


def _problem(location: str, error: Any) -> Problem:
    path = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "missing":
        message = "is required but missing"
    elif kind == "extra_forbidden":
        known = ", ".join(Manifest.model_fields)
        message = f"is not a manifest field; known fields: {known}"
    else:
        message = error["msg"].removeprefix("Value error, ")
        if "input" in error and kind not in ("value_error",):
            message += f", got {error['input']!r}"
    return Problem(location, path, message)


def load_manifest(path: Path, *, display: str | None = None) -> Manifest:
    """Read and validate `path`; raise ManifestError listing every problem."""
    location = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError([Problem(location, "", f"cannot be read: {exc.strerror}")]) from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        problem = Problem(
            f"{location}:{exc.lineno}:{exc.colno}", "", f"is not valid JSON: {exc.msg}"
        )
        raise ManifestError([problem]) from None
    except UnicodeDecodeError:
        raise ManifestError([Problem(location, "", "is not UTF-8 text")]) from None
    if isinstance(data, dict):
        try:
            return Manifest.model_validate(data)
        except ValidationError as exc:
            raise ManifestError([_problem(location, e) for e in exc.errors()]) from None
    raise ManifestError(manifest_problems(data, location))


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of manifest.json, for editors and external validators."""
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Nexus plugin manifest"
    schema["properties"]["name"]["pattern"] = NAME_PATTERN
    return schema
