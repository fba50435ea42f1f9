"""Per-plugin migrations: dependency order, exactly once, failures that name the file."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from nexus import PluginState
from nexus.kernel import Kernel
from nexus.plugins.database import DATABASE, Database, DatabaseSettings, MigrationError
from nexus.testing import create_test_kernel
from tests.conftest import PluginWriter
from tests.plugins.database.conftest import database_plugin, sql_migration, write_migrating_plugin

ROOT = Path(__file__).parents[3]

TAGS = {
    "0001_create_tags.py": sql_migration(
        "CREATE TABLE tags (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL UNIQUE)",
        "INSERT INTO tags (id, name) VALUES (1, 'general')",
    )
}
NOTES = {
    "0001_create_notes.py": sql_migration(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, "
        "tag_id INTEGER NOT NULL REFERENCES tags (id), body VARCHAR(200) NOT NULL)",
        "INSERT INTO notes (id, tag_id, body) SELECT 1, id, 'welcome' FROM tags "
        "WHERE name = 'general'",
    ),
    "0002_add_pinned.py": sql_migration(
        "ALTER TABLE notes ADD COLUMN pinned BOOLEAN NOT NULL DEFAULT FALSE"
    ),
}


def kernel_for(url: str, tmp_path: Path) -> Kernel:
    return create_test_kernel(
        plugins=[database_plugin()],
        plugin_paths=[tmp_path / "plugins"],
        config={"data_dir": str(tmp_path / "data"), "plugins": {"database": {"url": url}}},
    )


async def rows(database: Database, sql: str) -> list[tuple[object, ...]]:
    async with database.session() as session:
        return [tuple(row) for row in (await session.execute(text(sql))).all()]


def applied_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Applied")]


async def test_plugins_migrate_in_dependency_order(
    database_url: str, plugin_dir: PluginWriter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A plugin's migrations run after those of the plugins it requires, in number order."""
    caplog.set_level(logging.INFO, logger="nexus.plugins.database")
    # "notes" sorts before "tags": only the dependency puts tags' migrations first.
    write_migrating_plugin(plugin_dir, "tags", TAGS)
    write_migrating_plugin(plugin_dir, "notes", NOTES, requires={"tags": ">=1.0"})
    async with kernel_for(database_url, tmp_path) as kernel:
        states = {s.name: s.state for s in kernel.plugins.statuses()}
        database = kernel.services.get(DATABASE)
        notes = await rows(database, "SELECT id, tag_id, body, pinned FROM notes")
        recorded = await rows(
            database, "SELECT plugin, version, name FROM nexus_migrations ORDER BY plugin, version"
        )
        assert await database.current() == {"notes": 2, "tags": 1}
    assert set(states.values()) == {PluginState.ACTIVE}
    assert applied_log(caplog) == [
        "Applied migration 0001_create_tags.py of plugin tags",
        "Applied migration 0001_create_notes.py of plugin notes",
        "Applied migration 0002_add_pinned.py of plugin notes",
    ]
    assert notes == [(1, 1, "welcome", False)]
    assert recorded == [
        ("notes", 1, "0001_create_notes.py"),
        ("notes", 2, "0002_add_pinned.py"),
        ("tags", 1, "0001_create_tags.py"),
    ]


async def test_starting_again_applies_nothing(
    database_url: str, plugin_dir: PluginWriter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Applied migrations are not run again, by a later start or a direct migrate call."""
    write_migrating_plugin(plugin_dir, "tags", TAGS)
    async with kernel_for(database_url, tmp_path):
        pass
    caplog.set_level(logging.INFO, logger="nexus.plugins.database")
    async with kernel_for(database_url, tmp_path) as kernel:
        assert kernel.plugins.status("tags").state is PluginState.ACTIVE
        database = kernel.services.get(DATABASE)
        again = await database.migrate("tags", plugin_dir.root / "tags" / "migrations")
        tags = await rows(database, "SELECT name FROM tags")
        pending = await database.pending("tags", plugin_dir.root / "tags" / "migrations")
    assert applied_log(caplog) == []
    assert (again, pending) == ([], [])
    assert tags == [("general",)]  # the INSERT ran once


async def test_broken_migration_fails_its_plugin_and_keeps_the_earlier_ones(
    database_url: str, plugin_dir: PluginWriter, tmp_path: Path
) -> None:
    """A failing migration fails setup naming plugin, file and error; nothing of it is kept."""
    broken = sql_migration(
        "INSERT INTO tags (id, name) VALUES (2, 'half-done')",
        "INSERT INTO no_such_table VALUES (1)",
    )
    directory = write_migrating_plugin(plugin_dir, "tags", {**TAGS, "0002_broken.py": broken})
    async with kernel_for(database_url, tmp_path) as kernel:
        status = kernel.plugins.status("tags")
        database = kernel.services.get(DATABASE)
        assert await database.current() == {"tags": 1}
        tags = await rows(database, "SELECT name FROM tags")
    assert status.state is PluginState.FAILED
    assert status.failure is not None and status.failure.stage == "setup"
    assert status.failure.reason.startswith("Migration 0002_broken.py of plugin 'tags' failed: ")
    assert "no_such_table" in status.failure.reason
    assert str(directory / "migrations" / "0002_broken.py") in status.failure.reason
    assert tags == [("general",)]

    (directory / "migrations" / "0002_broken.py").write_text(
        sql_migration("INSERT INTO tags (id, name) VALUES (2, 'fixed')")
    )
    async with kernel_for(database_url, tmp_path) as kernel:
        assert kernel.plugins.status("tags").state is PluginState.ACTIVE
        tags = await rows(kernel.services.get(DATABASE), "SELECT name FROM tags ORDER BY id")
    assert tags == [("general",), ("fixed",)]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"0001_a.py": "", "1_b.py": ""},
            "  - 1_b.py: is not named NNNN_<slug>.py",
        ),
        (
            {"0001_a.py": "", "0003_c.py": ""},
            "  - 0003_c.py: leaves a gap: 0002 missing; number migrations without gaps",
        ),
        (
            {"0001_a.py": "", "0002_b.py": "", "0002_c.py": ""},
            "  - 0002_c.py: repeats number 0002 (0002_b.py and 0002_c.py); renumber",
        ),
        (
            {"0000_a.py": ""},
            "  - 0000_a.py: numbers start at 0001",
        ),
        (
            {"0002_a.py": ""},
            "  - 0002_a.py: leaves a gap: 0001 missing",
        ),
        (
            {"0001_a.py": "def upgrade(conn):\n    pass\n"},
            "Migration 0001_a.py of plugin 'things' must define "
            "`async def upgrade(conn: AsyncConnection) -> None`.",
        ),
        (
            {"0001_a.py": "async def upgrade(conn)\n"},
            "Migration 0001_a.py of plugin 'things' cannot be imported: SyntaxError: ",
        ),
    ],
)
async def test_misnamed_or_broken_files_are_refused_before_anything_runs(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    """Bad names, gaps, repeats and files without `async def upgrade` are errors naming the file."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    for name, code in {**files, "__init__.py": "", "README.md": "notes"}.items():
        (directory / name).write_text(code)
    database = Database.from_settings(DatabaseSettings(), data_dir=tmp_path)
    try:
        with pytest.raises(MigrationError) as caught:
            await database.migrate("things", directory)
        assert await database.current() == {}
    finally:
        await database.dispose()
    assert message in str(caught.value)
    assert caught.value.plugin == "things"
    assert (
        caught.value.file
        == message.split(":")[0].strip(" -").removeprefix("Migration ").split(" ")[0]
    )


async def test_a_missing_migrations_directory_is_an_error(tmp_path: Path) -> None:
    """migrate() on a directory that does not exist names the plugin and the directory."""
    database = Database.from_settings(DatabaseSettings(), data_dir=tmp_path)
    try:
        with pytest.raises(MigrationError) as caught:
            await database.migrate("things", tmp_path / "nowhere")
    finally:
        await database.dispose()
    assert str(caught.value) == (
        f"Plugin 'things' has no migrations directory {str(tmp_path / 'nowhere')!r}."
    )


async def test_versions_unknown_to_the_directory_are_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database ahead of the plugin's files (a newer version ran) is logged as a warning."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_a.py").write_text(sql_migration("CREATE TABLE a (x INTEGER)"))
    (directory / "0002_b.py").write_text(sql_migration("CREATE TABLE b (x INTEGER)"))
    database = Database.from_settings(DatabaseSettings(), data_dir=tmp_path)
    try:
        assert await database.migrate("things", directory) == ["0001_a.py", "0002_b.py"]
        (directory / "0002_b.py").unlink()
        assert await database.migrate("things", directory) == []
    finally:
        await database.dispose()
    assert (
        f"Plugin things: the database has migration(s) 0002_b.py, which {directory} does not "
        "contain" in caplog.text
    )


#: Waits until three processes are ready, then migrates: they race for every migration.
RACING_PLUGIN = """
import asyncio
import json
import os
import time
from pathlib import Path

from nexus import Plugin
from nexus.plugins.database import DATABASE


class Main(Plugin):
    async def setup(self, ctx):
        here = Path(__file__).parent
        runs = here.parents[1] / "runs"
        (runs / f"ready-{os.getpid()}").touch()
        deadline = time.monotonic() + 60
        while len(list(runs.glob("ready-*"))) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        applied = await ctx.services.get(DATABASE).migrate(ctx.name, here / "migrations")
        (runs / f"applied-{os.getpid()}.json").write_text(json.dumps(applied))
"""

RACE_MIGRATIONS = {
    # Not idempotent: a second CREATE TABLE fails, a second INSERT leaves two rows.
    "0001_create_runs.py": """
import asyncio

from sqlalchemy import text


async def upgrade(conn):
    await conn.execute(text("CREATE TABLE runs (pid INTEGER NOT NULL)"))
    await asyncio.sleep(0.2)  # hold the lock while the other processes arrive
""",
    "0002_record_run.py": """
import os

from sqlalchemy import text


async def upgrade(conn):
    await conn.execute(text("INSERT INTO runs (pid) VALUES (:pid)"), {"pid": os.getpid()})
""",
}

STARTER = """
import asyncio
import json
import sys
from pathlib import Path

from nexus.testing import create_test_kernel
from tests.plugins.database.conftest import database_plugin


async def main():
    root, url = Path(sys.argv[1]), sys.argv[2]
    kernel = create_test_kernel(
        plugins=[database_plugin()],
        plugin_paths=[root / "plugins"],
        config={
            "data_dir": str(root / "data"),
            "kernel": {"setup_timeout": 90},
            "plugins": {"database": {"url": url}},
        },
    )
    async with kernel:
        print(json.dumps({s.name: s.state.value for s in kernel.plugins.statuses()}))


asyncio.run(main())
"""


async def test_three_processes_starting_together_apply_each_migration_once(
    database_url: str, plugin_dir: PluginWriter, tmp_path: Path
) -> None:
    """Concurrent starters serialise on the migration lock: every migration runs exactly once."""
    directory = plugin_dir.write(
        "racer",
        RACING_PLUGIN,
        requires={"database": ">=1.0"},
        permissions=["services:use:database"],
    )
    (directory / "migrations").mkdir()
    for name, code in RACE_MIGRATIONS.items():
        (directory / "migrations" / name).write_text(code)
    (tmp_path / "runs").mkdir()
    starter = tmp_path / "start.py"
    starter.write_text(STARTER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(starter),
            str(tmp_path),
            database_url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        for _ in range(3)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in processes))
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr.decode()
        assert json.loads(stdout) == {"database": "active", "racer": "active"}, stderr.decode()
    applied = sorted(
        name
        for path in (tmp_path / "runs").glob("applied-*.json")
        for name in json.loads(path.read_text())
    )
    assert applied == ["0001_create_runs.py", "0002_record_run.py"]
    database = Database.from_settings(DatabaseSettings(url=SecretStr(database_url)))
    try:
        runs = await rows(database, "SELECT pid FROM runs")
        recorded = await rows(
            database, "SELECT version FROM nexus_migrations WHERE plugin = 'racer' ORDER BY 1"
        )
    finally:
        await database.dispose()
    assert len(runs) == 1
    assert recorded == [(1,), (2,)]
