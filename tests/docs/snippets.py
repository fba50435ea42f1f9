"""Reading the code blocks of the documentation, and running them the way a reader would.

A page's blocks run in order, in a fresh project directory (the working directory):

- a block under `<!-- file: path -->` is written to that path (a manifest.json is validated
  with the real Manifest model first);
- `python` blocks run in one namespace per page, top-level `await` allowed;
- `yaml` blocks are loaded with the real configuration loader, and the sections of installed
  plugins validated by their Config models;
- `json` blocks are plugin manifests, validated with the real Manifest model;
- `toml` blocks must parse (they are pyproject.toml excerpts);
- `shell` blocks run line by line: `nexus ...` through click's CliRunner (`nexus run` as a
  real server on a free loopback port, which `curl` lines then talk to), `pytest` and
  `python` in a subprocess, `cd` and `export` as in a shell, and `make <target>` is checked to be a target
  of the repository's Makefile (not run: `make test` runs this very suite);
- a `text` block under `<!-- output -->` must appear, line by line, in the previous shell
  block's output; other `text` blocks are not code (trees, sample output) and are not run.

Other markers: `<!-- skip: reason -->` (not run), `<!-- env: NAME=value ... -->` (variables for
that block and everything after it on the page), `<!-- exit: N -->` (each command of the shell
block exits with N).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from nexus.cli import main as nexus_main
from nexus.http.app import load_app_config
from nexus.kernel import loader
from nexus.kernel.manifest import Manifest
from nexus.testing.servers import free_port, wait_for_port

DOCS = Path(__file__).resolve().parents[2] / "docs"
LANGUAGES = frozenset({"python", "yaml", "json", "toml", "shell", "text"})
_FENCE = re.compile(r"^```(?P<lang>[^\s`]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
_MARKER = re.compile(r"<!--\s*(?P<kind>[a-z]+)(?::\s*(?P<value>.*?))?\s*-->")
_DOCUMENTED_PORT = re.compile(r"(?:localhost|127\.0\.0\.1):8000")


@dataclass(frozen=True)
class Block:
    """One fenced code block and the markers on the lines right above it."""

    page: str
    line: int
    lang: str
    body: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """`page.md:line` for messages."""
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """Every Markdown page of the site."""
    return sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)


def read_blocks(page: Path) -> list[Block]:
    """The page's fenced blocks in order; every fence must start at the left margin."""
    text = page.read_text(encoding="utf-8")
    name = str(page.relative_to(DOCS))
    blocks = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        markers: dict[str, str] = {}
        above = text[: match.start()].split("\n")[:-1]
        while above and (found := _MARKER.fullmatch(above[-1].strip())):
            markers[found["kind"]] = (found["value"] or "").strip()
            above.pop()
        blocks.append(Block(name, line, match["lang"], match["body"], markers))
    return blocks


def stray_fences(page: Path) -> list[int]:
    """Lines of fences that are indented (inside lists or admonitions), which are not run."""
    lines = page.read_text(encoding="utf-8").split("\n")
    return [
        n
        for n, line in enumerate(lines, 1)
        if line.lstrip().startswith("```") and line[0:1].isspace()
    ]


def _installed_plugin_configs() -> dict[str, Any]:
    models = {}
    for entry in metadata.entry_points(group="nexus.plugins"):
        module, _, attribute = entry.value.partition(":")
        plugin = getattr(__import__(module, fromlist=[attribute]), attribute)
        models[entry.name] = plugin.Config
    return models


def _validate_manifest(block: Block, data: Any) -> None:
    try:
        Manifest.model_validate(data)
    except Exception as exc:
        raise AssertionError(f"{block.where}: not a valid manifest: {exc}") from None


class Server:
    """`nexus run` as a real process on a free loopback port."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "nexus.cli", *args, "--port", str(self.port)]
        self.log = cwd / f".nexus-run-{self.port}.log"
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        try:
            wait_for_port(self.port, timeout=30, process=self.process)
        except BaseException:
            self.process.kill()
            self.process.wait()
            self._log_file.close()
            raise AssertionError(
                f"`nexus {' '.join(args)}` did not start:\n{self.log.read_text()}"
            ) from None

    def url(self, documented: str) -> str:
        """The documented URL (port 8000) pointed at this server's port."""
        return _DOCUMENTED_PORT.sub(f"127.0.0.1:{self.port}", documented)

    def stop(self) -> str:
        """Stop the server as Ctrl+C would; it must exit 0. Returns its log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        log = self.log.read_text()
        if self.process.returncode != 0:
            raise AssertionError(f"`nexus run` exited with {self.process.returncode}:\n{log}")
        return log


class PageRun:
    """Runs one page's blocks in order in `root`, the page's project directory."""

    def __init__(self, page: Path, root: Path) -> None:
        self.page, self.root = page, root
        self.cwd = root
        self.env: dict[str, str] = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("NEXUS") and k != "PROMETHEUS_MULTIPROC_DIR"
        }
        name = "docs_" + re.sub(r"\W", "_", str(page.relative_to(DOCS).with_suffix("")))
        self.module = types.ModuleType(name)
        self.module.__file__ = str(root / "snippet.py")
        self.servers: list[Server] = []
        self.last_output = ""
        self.ran: list[str] = []  # what each block was checked by, for the test's own assertion

    async def run(self) -> None:
        """Run every block; raise AssertionError naming the block that failed."""
        sys.modules[self.module.__name__] = self.module
        try:
            for block in read_blocks(self.page):
                with self._environment(block):
                    await self._run(block)
            self._check_project()
        finally:
            del sys.modules[self.module.__name__]
            for server in self.servers:
                server.stop()
            self._forget_plugins()

    @contextlib.contextmanager
    def _environment(self, block: Block) -> Iterator[None]:
        if "env" in block.markers:
            for pair in shlex.split(block.markers["env"]):
                key, _, value = pair.partition("=")
                self.env[key] = value
        saved_cwd, saved_env = Path.cwd(), dict(os.environ)
        os.chdir(self.cwd)
        os.environ.clear()
        os.environ.update(self.env)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            os.chdir(saved_cwd)

    async def _run(self, block: Block) -> None:
        if "skip" in block.markers:
            if not block.markers["skip"]:
                raise AssertionError(f"{block.where}: <!-- skip: reason --> needs a reason")
            self.ran.append("skipped")
            return
        if block.lang not in LANGUAGES:
            raise AssertionError(
                f"{block.where}: code block language {block.lang!r} is not one the docs tests "
                f"run; use one of {', '.join(sorted(LANGUAGES))}"
            )
        if "file" in block.markers:
            self._write(block)
        elif block.lang == "python":
            await self._python(block)
        elif block.lang == "yaml":
            self._yaml(block)
        elif block.lang == "json":
            self._manifest(block, json.loads(block.body))
        elif block.lang == "toml":
            tomllib.loads(block.body)
            self.ran.append("toml")
        elif block.lang == "shell":
            await self._shell(block)
        elif "output" in block.markers:
            self._output(block)
        else:
            self.ran.append("text")

    def _write(self, block: Block) -> None:
        target = self.cwd / block.markers["file"]
        if block.lang == "json":
            data = json.loads(block.body)
            if target.name == "manifest.json":
                _validate_manifest(block, data)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.body, encoding="utf-8")
        self.ran.append(f"file {block.markers['file']}")

    def _manifest(self, block: Block, data: Any) -> None:
        _validate_manifest(block, data)
        self.ran.append("manifest")

    async def _python(self, block: Block) -> None:
        source = f"{chr(10) * (block.line)}{block.body}"  # tracebacks show the page's line numbers
        try:
            code = compile(source, block.page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as exc:
            raise AssertionError(f"{block.where}: syntax error: {exc}") from None
        result = eval(code, self.module.__dict__)
        if isinstance(result, types.CoroutineType):
            await result
        self.ran.append("python")

    def _yaml(self, block: Block) -> None:
        path = self.cwd / ".snippet.yaml"
        path.write_text(block.body, encoding="utf-8")
        try:
            config = load_app_config(path, env=self.env)
            models = _installed_plugin_configs()
            config.validate_plugins({n: models[n] for n in config.plugins if n in models})
        except Exception as exc:
            raise AssertionError(f"{block.where}: the configuration does not load: {exc}") from None
        finally:
            path.unlink()
        self.ran.append("yaml")

    async def _shell(self, block: Block) -> None:
        expected = int(block.markers.get("exit", "0"))
        outputs = []
        for raw in block.body.splitlines():
            words = shlex.split(raw, comments=True)
            if not words:
                continue
            # In a thread: commands such as `nexus db upgrade` run an event loop of their own.
            output, code = await asyncio.to_thread(self._command, block, words)
            outputs.append(output)
            if code != expected:
                raise AssertionError(
                    f"{block.where}: `{raw.strip()}` exited with {code}, expected {expected}:\n{output}"
                )
        self.last_output = "\n".join(outputs)
        self.ran.append("shell")

    def _command(self, block: Block, words: list[str]) -> tuple[str, int]:
        stdin = None
        if "|" in words:
            split = words.index("|")
            left, words = words[:split], words[split + 1 :]
            if left[:1] != ["echo"]:
                raise AssertionError(f"{block.where}: only `echo ... |` pipes are supported")
            stdin = " ".join(left[1:]) + "\n"
        command, args = words[0], words[1:]
        if command == "cd":
            self.cwd = (self.cwd / args[0]).resolve()
            os.chdir(self.cwd)
            return "", 0
        if command == "export":
            for pair in args:
                key, _, value = pair.partition("=")
                self.env[key] = os.environ[key] = value
            return "", 0
        if command == "nexus" and args[:1] == ["run"]:
            server = Server(args, self.cwd, dict(self.env))
            self.servers.append(server)
            return "", 0
        if command == "nexus":
            result = CliRunner().invoke(nexus_main, args, input=stdin, env=self.env)
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise result.exception
            return result.output, result.exit_code
        if command in ("pytest", "python"):
            prefix = ["-m", "pytest", "-p", "no:cacheprovider"] if command == "pytest" else []
            done = subprocess.run(
                [sys.executable, *prefix, *args],
                cwd=self.cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            return done.stdout + done.stderr, done.returncode
        if command == "curl":
            return self._curl(block, args)
        if command == "make":
            targets = re.findall(r"^([\w-]+):", (DOCS.parent / "Makefile").read_text(), re.M)
            missing = [target for target in args if target not in targets]
            return f"not Makefile targets: {missing}" if missing else "", 2 if missing else 0
        raise AssertionError(
            f"{block.where}: the docs tests cannot run {command!r}; use nexus, pytest, "
            f"python, curl, make, cd or export, or mark the block <!-- skip: reason -->"
        )

    def _curl(self, block: Block, args: list[str]) -> tuple[str, int]:
        if not self.servers:
            raise AssertionError(f"{block.where}: curl needs a `nexus run` earlier on the page")
        method, headers, data, url = None, {}, None, None
        words = iter(args)
        for word in words:
            if word in ("-X", "--request"):
                method = next(words)
            elif word in ("-H", "--header"):
                name, _, value = next(words).partition(":")
                headers[name.strip()] = value.strip()
            elif word in ("-d", "--data"):
                data = next(words)
            elif word in ("-s", "--silent", "-f", "--fail"):
                continue
            elif word.startswith("-"):
                raise AssertionError(f"{block.where}: curl option {word!r} is not supported here")
            else:
                url = word
        if url is None:
            raise AssertionError(f"{block.where}: curl without a URL")
        if not url.startswith("http"):
            url = "http://" + url
        server = self.servers[-1]
        response = httpx.request(
            method or ("POST" if data is not None else "GET"),
            server.url(url),
            headers=headers,
            content=data,
            timeout=10,
        )
        return response.text, 0 if response.status_code < 400 else 22

    def _output(self, block: Block) -> None:
        actual = self.last_output
        for line in block.body.splitlines():
            expected = line.strip()
            if expected and expected != "..." and expected not in actual:
                raise AssertionError(
                    f"{block.where}: {expected!r} is not in the output of the shell block "
                    f"before it:\n{actual}"
                )
        self.ran.append("output")

    def _check_project(self) -> None:
        config = self.root / "nexus.yaml"
        if config.is_file():
            load_app_config(config, env=self.env)

    def _forget_plugins(self) -> None:
        for manifest in self.root.rglob("manifest.json"):
            loader.release_directory(manifest.parent.name)
