"""`nexus db upgrade` and `nexus db current`, run in-process against a project in tmp_path."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from nexus.cli import main
from nexus.kernel import load_config
from nexus.plugins.database import DATABASE
from nexus.testing.servers import free_port
from tests.conftest import PluginWriter
from tests.plugins.database.conftest import database_plugin, sql_migration
from tests.plugins.database.test_migrations import NOTES, TAGS

#: Plugin code that must not run: `nexus db` reads manifests and migrations only.
TRIPWIRE = 'raise RuntimeError("plugin code was imported")\n'


class Project:
    """nexus.yaml (plugins/ directory, data/ directory, no installed plugins) in tmp_path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "nexus.yaml"
        self.plugins = PluginWriter(root / "plugins")
        self.configure()

    def configure(self, **plugins: Any) -> None:
        document = {
            "plugin_paths": ["plugins"],
            "data_dir": "data",
            "kernel": {"entry_points": False},
            "plugins": plugins,
        }
        self.config.write_text(yaml.safe_dump(document))

    def add(self, name: str, migrations: dict[str, str] | None, **manifest: Any) -> Path:
        directory = self.plugins.write(name, TRIPWIRE, **manifest)
        if migrations is not None:
            (directory / "migrations").mkdir()
            for file, code in migrations.items():
                (directory / "migrations" / file).write_text(code)
        return directory

    def nexus(self, *args: str) -> Result:
        return CliRunner().invoke(main, [*args, "--config", str(self.config)])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project whose settings come only from its nexus.yaml."""
    for name in list(os.environ):
        if name.upper().startswith("NEXUS"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return Project(tmp_path)


def test_upgrade_applies_enabled_plugins_in_dependency_order_then_nothing(
    project: Project,
) -> None:
    """Pending migrations of startable plugins are applied in dependency order, once."""
    project.add("tags", TAGS)
    project.add("notes", NOTES, requires={"tags": ">=1.0"})
    project.add("plain", None)
    project.add("retired", {"0001_drop_everything.py": sql_migration("DROP TABLE tags")})
    project.add("orphan", TAGS, requires={"missing": ">=1.0"})
    project.configure(retired={"enabled": False})
    first = project.nexus("db", "upgrade")
    second = project.nexus("db", "upgrade")
    path = project.root / "data" / "plugins" / "database" / "nexus.db"
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [
        f"Database: sqlite+aiosqlite:///{path}",
        "  applied tags 0001_create_tags.py",
        "  applied notes 0001_create_notes.py",
        "  applied notes 0002_add_pinned.py",
        "Applied 3 migrations.",
    ]
    assert first.stderr.startswith(
        "Skipped orphan: it cannot start (blocked: needs 'missing', which is not installed."
    )
    assert second.exit_code == 0, second.output
    assert second.stdout.splitlines()[1:] == [
        "Nothing to apply: 2 plugins with migrations, all up to date."
    ]


def test_upgrade_uses_the_same_default_database_as_the_plugin(project: Project) -> None:
    """Without a URL, the command and the running plugin share <data_dir>/plugins/database."""
    project.add("tags", TAGS)
    assert project.nexus("db", "upgrade").exit_code == 0

    async def applied_at_runtime() -> dict[str, int]:
        from nexus.kernel import Kernel

        config = load_config(project.config, env={})
        async with Kernel(config, plugins=[database_plugin()], entry_points=False) as kernel:
            return await kernel.services.get(DATABASE).current()

    project.plugins.write("tags", "from nexus import Plugin\n\nclass Main(Plugin):\n    pass\n")
    assert asyncio.run(applied_at_runtime()) == {"tags": 1}


def test_current_shows_applied_and_pending_versions(project: Project) -> None:
    """`db current` lists each plugin's applied version, latest file and pending files."""
    url = f"sqlite+aiosqlite:///{project.root / 'app.db'}"
    project.configure(database={"url": url})
    tags = project.add("tags", TAGS)
    before = project.nexus("db", "current")
    assert before.exit_code == 0, before.output
    assert before.stdout.splitlines() == [
        f"Database: {url}",
        "PLUGIN  CURRENT  LATEST  PENDING",
        "tags    0000     0001    0001_create_tags.py",
    ]
    assert not (project.root / "app.db").exists()  # looking does not create the database

    assert project.nexus("db", "upgrade").exit_code == 0
    (tags / "migrations" / "0002_add_color.py").write_text(
        sql_migration("ALTER TABLE tags ADD COLUMN color VARCHAR(7)")
    )
    after = project.nexus("db", "current", "--json")
    assert after.exit_code == 0, after.output
    assert json.loads(after.stdout) == {
        "database": url,
        "plugins": [
            {"plugin": "tags", "current": 1, "latest": 2, "pending": ["0002_add_color.py"]}
        ],
    }


def test_failed_migration_exits_1_after_showing_what_was_applied(project: Project) -> None:
    """A failing migration ends the command with exit 1 and its name; earlier ones are listed."""
    broken = sql_migration("INSERT INTO no_such_table VALUES (1)")
    project.add("tags", {**TAGS, "0002_broken.py": broken})
    result = project.nexus("db", "upgrade")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1:] == ["  applied tags 0001_create_tags.py"]
    assert result.stderr.startswith(
        "nexus: Migration 0002_broken.py of plugin 'tags' failed: OperationalError: "
        "no such table: no_such_table."
    )
    assert "Traceback" not in result.output


def test_unreachable_database_exits_1_without_showing_the_password(project: Project) -> None:
    """A database that does not answer is exit 1 with the masked URL and the reason."""
    port = free_port()
    project.configure(database={"url": f"postgresql+asyncpg://app:s3cret-pw@127.0.0.1:{port}/app"})
    project.add("tags", TAGS)
    result = project.nexus("db", "upgrade")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"nexus: Cannot reach database postgresql+asyncpg://app:***@127.0.0.1:{port}/app: "
    )
    assert "s3cret-pw" not in result.output


@pytest.mark.parametrize(
    ("settings", "code", "message"),
    [
        (
            {"url": "mysql://app:s3cret-pw@127.0.0.1/app"},
            2,
            "uses 'mysql', which is not supported",
        ),
        ({"pool_size": 0}, 2, "plugins.database.pool_size: Input should be greater than or equal"),
        ({"enabled": False}, 1, "The database plugin is disabled"),
    ],
)
def test_bad_database_settings_are_reported_without_a_traceback(
    project: Project, settings: dict[str, Any], code: int, message: str
) -> None:
    """Unsupported URLs and invalid settings are usage errors; a disabled plugin a failure."""
    project.configure(database=settings)
    result = project.nexus("db", "current")
    assert result.exit_code == code
    assert result.stderr.startswith("nexus: ")
    assert message in result.stderr
    assert "s3cret-pw" not in result.output
    assert "Traceback" not in result.output


async def test_upgrade_and_current_on_postgresql(project: Project, postgres_url: str) -> None:
    """The commands work the same against PostgreSQL."""
    project.configure(database={"url": postgres_url})
    project.add("tags", TAGS)
    project.add("notes", NOTES, requires={"tags": ">=1.0"})
    # The commands run their own event loop, so they get a thread of their own here.
    upgrade = await asyncio.to_thread(project.nexus, "db", "upgrade")
    current = await asyncio.to_thread(project.nexus, "db", "current", "--json")
    assert upgrade.exit_code == 0, upgrade.output
    assert upgrade.stdout.splitlines()[-1] == "Applied 3 migrations."
    assert current.exit_code == 0, current.output
    assert json.loads(current.stdout)["plugins"] == [
        {"plugin": "tags", "current": 1, "latest": 1, "pending": []},
        {"plugin": "notes", "current": 2, "latest": 2, "pending": []},
    ]
