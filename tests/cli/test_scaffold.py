"""`nexus new` and `nexus plugin new` generate projects whose own tests and linters pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nexus.kernel import load_config, load_manifest
from tests.cli.conftest import Nexus

APP_FILES = [
    ".gitignore",
    "README.md",
    "nexus.yaml",
    "plugins/catalog/__init__.py",
    "plugins/catalog/manifest.json",
    "plugins/catalog/plugin.py",
    "pyproject.toml",
    "tests/conftest.py",
    "tests/test_catalog.py",
]


def files_in(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_generated_project_passes_its_tests_and_ruff(
    tmp_path: Path, nexus: Nexus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console script makes an app; a plugin is added; the project's tests and ruff pass."""
    script = Path(sys.executable).with_name("nexus")
    created = run(script, "new", "shop", "--name", "Demo Shop", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "Created application 'Demo Shop' in shop/ with plugin 'catalog'." in created.stdout
    app = tmp_path / "shop"
    assert files_in(app) == APP_FILES
    monkeypatch.chdir(app)
    result = nexus("plugin", "new", "inventory")
    assert result.exit_code == 0, result.stderr
    assert "tests/test_inventory.py" in result.stdout
    tests = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=app)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "8 passed" in tests.stdout
    lint = run(sys.executable, "-m", "ruff", "check", "--no-cache", ".", cwd=app)
    assert lint.returncode == 0, lint.stdout


def test_new_app_configuration(tmp_path: Path, nexus: Nexus) -> None:
    """nexus.yaml names the app and serves ./plugins with installed plugins; data is ignored."""
    result = nexus("new", str(tmp_path / "notes-app"))
    assert result.exit_code == 0, result.stderr
    config = load_config(tmp_path / "notes-app" / "nexus.yaml", env={})
    assert config.app.name == "notes-app"
    assert config.plugin_paths == [tmp_path / "notes-app" / "plugins"]
    assert config.data_dir == tmp_path / "notes-app" / "data"
    assert config.kernel.entry_points is True
    assert "data/" in (tmp_path / "notes-app" / ".gitignore").read_text().splitlines()
    readme = (tmp_path / "notes-app" / "README.md").read_text()
    assert "nexus run --config nexus.yaml" in readme and "\npytest\n" in readme


def test_plugin_manifest_grants_what_the_code_uses(tmp_path: Path, nexus: Nexus) -> None:
    """The manifest is valid, names the class, and grants publishing and subscribing its topics."""
    result = nexus("plugin", "new", "user_notes", "--dir", str(tmp_path / "src" / "plugins"))
    assert result.exit_code == 0, result.stderr
    manifest = load_manifest(tmp_path / "src" / "plugins" / "user_notes" / "manifest.json")
    assert manifest.entry == "plugin:UserNotesPlugin"
    assert manifest.permissions == [
        "events:publish:user_notes.*",
        "events:subscribe:user_notes.*",
    ]
    code = (tmp_path / "src" / "plugins" / "user_notes" / "plugin.py").read_text()
    assert "class UserNotesPlugin(Plugin):" in code
    assert (tmp_path / "src" / "tests" / "test_user_notes.py").is_file()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../evil", "Plugin name '../evil' contains a path; give just the name"),
        ("a/b", "Plugin name 'a/b' contains a path"),
        ("Bad-Name", "Plugin name 'Bad-Name' is not lower snake case: it must start with a letter"),
        ("class", "Plugin name 'class' is a Python keyword"),
        ("auth", "Plugin name 'auth' is the name of a built-in plugin"),
        ("9lives", "Plugin name '9lives' is not lower snake case"),
    ],
)
def test_invalid_plugin_names_are_refused(
    tmp_path: Path, nexus: Nexus, name: str, message: str
) -> None:
    """A bad name exits 2 with `nexus: <why>` and writes nothing."""
    result = nexus("plugin", "new", name, "--dir", str(tmp_path / "plugins"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"nexus: {message}")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_name_gets_a_suggestion(tmp_path: Path, nexus: Nexus) -> None:
    """A name that is only mis-cased or hyphenated is answered with the snake-case spelling."""
    result = nexus("plugin", "new", "Bad-Name", "--dir", str(tmp_path))
    assert "e.g. 'bad_name'." in result.stderr


def test_force_allows_a_built_in_name(tmp_path: Path, nexus: Nexus) -> None:
    """--force creates a plugin named like a built-in (to replace it)."""
    result = nexus("plugin", "new", "auth", "--dir", str(tmp_path / "plugins"), "--force")
    assert result.exit_code == 0, result.stderr
    assert load_manifest(tmp_path / "plugins" / "auth" / "manifest.json").name == "auth"


def test_existing_files_are_protected(tmp_path: Path, nexus: Nexus) -> None:
    """A non-empty app directory or an existing plugin is refused unless --force is given."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "notes.txt").write_text("mine")
    refused = nexus("new", str(tmp_path / "app"))
    assert refused.exit_code == 2
    assert "is not empty; choose a new directory or pass --force" in refused.stderr
    assert files_in(tmp_path / "app") == ["notes.txt"]
    forced = nexus("new", str(tmp_path / "app"), "--force")
    assert forced.exit_code == 0
    assert files_in(tmp_path / "app") == sorted([*APP_FILES, "notes.txt"])

    plugin_dir = str(tmp_path / "app" / "plugins")
    again = nexus("plugin", "new", "catalog", "--dir", plugin_dir)
    assert again.exit_code == 2
    assert "already exists; nothing was written" in again.stderr
    (tmp_path / "app" / "plugins" / "catalog" / "plugin.py").write_text("# edited\n")
    assert nexus("plugin", "new", "catalog", "--dir", plugin_dir, "--force").exit_code == 0
    code = (tmp_path / "app" / "plugins" / "catalog" / "plugin.py").read_text()
    assert "class CatalogPlugin(Plugin):" in code


def test_existing_test_file_is_protected(tmp_path: Path, nexus: Nexus) -> None:
    """A test file of the same name blocks a new plugin, and nothing is written at all."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_notes.py").write_text("# mine\n")
    result = nexus("plugin", "new", "notes", "--dir", str(tmp_path / "plugins"))
    assert result.exit_code == 2
    assert "test_notes.py already exist(s); nothing was written" in result.stderr
    assert not (tmp_path / "plugins").exists()
