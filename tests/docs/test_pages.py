"""Every code block in the documentation runs as written (see snippets.py for how)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.snippets import DOCS, LANGUAGES, PageRun, pages, read_blocks, stray_fences

PAGES = pages()


def test_every_block_is_one_the_tests_run() -> None:
    """Each fence starts at the margin and names a language the page runner checks."""
    problems = [
        f"{page.name}:{line}: indented fence" for page in PAGES for line in stray_fences(page)
    ]
    problems += [
        f"{block.where}: language {block.lang!r}"
        for page in PAGES
        for block in read_blocks(page)
        if block.lang not in LANGUAGES and "skip" not in block.markers
    ]
    assert problems == []


def test_skips_are_rare_and_explained() -> None:
    """At most a handful of blocks are skipped, each with its reason."""
    skipped = [block for page in PAGES for block in read_blocks(page) if "skip" in block.markers]
    assert all(block.markers["skip"] for block in skipped)
    assert len(skipped) <= 3, [block.where for block in skipped]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(DOCS)))
async def test_page_code_runs(page: Path, tmp_path: Path) -> None:
    """The page's blocks run in order in a fresh project: files, Python, YAML, shell, output."""
    run = PageRun(page, tmp_path)
    await run.run()
    assert len(run.ran) == len(read_blocks(page))
