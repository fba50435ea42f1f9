"""Manifests are validated before any plugin code runs, with errors that say what to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nexus.errors import ManifestError
from nexus.kernel.manifest import Manifest, load_manifest, manifest_json_schema


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    return path


def test_valid_manifest_loads_with_defaults(tmp_path: Path) -> None:
    """A minimal manifest gets empty dependencies and permissions."""
    manifest = load_manifest(
        write(tmp_path, {"name": "auth", "version": "1.2.0", "entry": "plugin:Auth"})
    )
    assert (manifest.name, manifest.module, manifest.class_name) == ("auth", "plugin", "Auth")
    assert manifest.requires == {} and manifest.permissions == []


def test_every_problem_is_reported_with_file_and_field(tmp_path: Path) -> None:
    """One error lists each bad field, naming the file, the field and what was expected."""
    path = write(
        tmp_path,
        {
            "name": "User-Manager",
            "version": "one",
            "entry": "plugin",
            "requires": {"database": ">>1"},
            "permissions": ["events:shout:x"],
            "colour": "blue",
        },
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(path, display="plugins/user/manifest.json")
    problems = {p.path: p.message for p in info.value.problems}
    assert set(problems) == {"name", "version", "entry", "requires", "permissions", "colour"}
    assert "lower snake case" in problems["name"]
    assert "PEP 440 version" in problems["version"]
    assert "'module:Class'" in problems["entry"]
    assert "'>>1' is not a PEP 440 version specifier" in problems["requires"]
    assert "events:publish:user.*" in problems["permissions"]
    assert "not a manifest field" in problems["colour"]
    assert all(p.location == "plugins/user/manifest.json" for p in info.value.problems)
    assert "6 problems" in str(info.value)


def test_missing_fields_are_named(tmp_path: Path) -> None:
    """Required fields that are absent are each reported as missing."""
    with pytest.raises(ManifestError) as info:
        load_manifest(write(tmp_path, {"description": "x"}))
    assert {p.path for p in info.value.problems} == {"name", "version", "entry"}
    assert all("required" in p.message for p in info.value.problems)


def test_invalid_json_reports_line_and_column(tmp_path: Path) -> None:
    """A JSON syntax error points at its line and column."""
    path = tmp_path / "manifest.json"
    path.write_text('{\n  "name": "a",\n  "version": 1.0.0\n}')
    with pytest.raises(ManifestError, match=r"manifest.json:3:\d+: is not valid JSON"):
        load_manifest(path)


def test_non_object_and_unreadable_manifests(tmp_path: Path) -> None:
    """A JSON list is not a manifest, and a missing file says it cannot be read."""
    with pytest.raises(ManifestError, match="must be a JSON object, got list"):
        load_manifest(write(tmp_path, ["name"]))
    with pytest.raises(ManifestError, match="cannot be read"):
        load_manifest(tmp_path / "absent.json")


def test_json_schema_is_exportable() -> None:
    """The JSON Schema names the required fields and the name pattern."""
    schema = manifest_json_schema()
    assert set(schema["required"]) == {"name", "version", "entry"}
    assert schema["properties"]["name"]["pattern"].startswith("^[a-z]")
    json.dumps(schema)


def test_dependencies_lists_every_named_plugin() -> None:
    """dependencies() unions requires, optional and after."""
    manifest = Manifest(
        name="api",
        version="1",
        entry="plugin:Api",
        requires={"db": ">=1"},
        optional={"cache": ""},
        after=["audit"],
    )
    assert manifest.dependencies() == {"db", "cache", "audit"}
