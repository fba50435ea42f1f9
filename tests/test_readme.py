"""The README's plugin walkthrough runs exactly as written."""

from __future__ import annotations

import re
from pathlib import Path

from nexus.http.app import create_app, load_app_config
from nexus.testing import serve

README = Path(__file__).resolve().parents[1] / "README.md"
FILE_BLOCK = re.compile(r"<!-- file: (?P<path>[^ ]+) -->\n```\w*\n(?P<body>.*?)```", re.S)


async def test_readme_plugin_walkthrough_serves_its_route(tmp_path: Path) -> None:
    """The files shown in the README form an app whose route answers as the README says."""
    blocks = FILE_BLOCK.findall(README.read_text())
    assert {path for path, _ in blocks} == {
        "plugins/hello/manifest.json",
        "plugins/hello/plugin.py",
        "nexus.yaml",
    }
    for path, body in blocks:
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    app = create_app(load_app_config(tmp_path / "nexus.yaml", env={}), entry_points=False)
    async with serve(app) as client:
        response = await client.get("/api/hello/Ada")
        assert response.json() == {"message": "Howdy, Ada!"}


def test_readme_names_the_two_commands() -> None:
    """The README gives the run and test commands that .ci/run also uses."""
    text = README.read_text()
    assert "make run" in text and "make test" in text
    assert "make test" in (README.parent / ".ci" / "run").read_text()
