"""Startup cost: discover, resolve and start N trivial directory plugins, versus importing them.

Each measurement runs in a fresh interpreter (so no module is cached), after a warm-up run
has written the bytecode caches both sides use. Runs alternate and the medians are compared.
Prints a table, then one JSON object as the last line.

    python bench/startup.py [--plugins 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PLUGIN = """\
from nexus import Plugin


class Main(Plugin):
    async def setup(self, ctx):
        pass
"""

NEXUS_RUN = """
import asyncio, sys, time
from nexus import Kernel
from nexus.kernel.config import load_config

async def main():
    config = load_config(sys.argv[1], env={})
    kernel = Kernel(config, entry_points=False)
    began = time.perf_counter()
    await kernel.start()
    elapsed = time.perf_counter() - began
    active = len(kernel.plugins.active())
    await kernel.stop()
    print(elapsed, active)

asyncio.run(main())
"""

IMPORT_RUN = """
import importlib, os, sys, time
import nexus  # both sides have the platform imported before the clock starts
root = sys.argv[1]
sys.path.insert(0, root)
names = sorted(os.listdir(root))
began = time.perf_counter()
for name in names:
    importlib.import_module(name + ".plugin")
elapsed = time.perf_counter() - began
print(elapsed, len(names))
"""


def make_plugins(root: Path, count: int) -> Path:
    plugins = root / "plugins"
    for i in range(count):
        directory = plugins / f"p{i:04d}"
        directory.mkdir(parents=True)
        (directory / "__init__.py").write_text("")
        (directory / "plugin.py").write_text(PLUGIN)
        manifest = {"name": directory.name, "version": "1.0.0", "entry": "plugin:Main"}
        (directory / "manifest.json").write_text(json.dumps(manifest))
    config = root / "nexus.yaml"
    config.write_text(f"plugin_paths: [{plugins}]\ndata_dir: {root / 'data'}\n")
    return config


def run(script: str, argument: Path) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(argument)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugins", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = make_plugins(root, args.plugins)
        plugins = root / "plugins"
        run(IMPORT_RUN, plugins)  # warm-up: writes __pycache__ for both sides
        _, active = run(NEXUS_RUN, config)
        if active != args.plugins:
            raise SystemExit(f"only {active} of {args.plugins} plugins became active")
        nexus_times: list[float] = []
        import_times: list[float] = []
        for _ in range(args.rounds):
            nexus_times.append(run(NEXUS_RUN, config)[0])
            import_times.append(run(IMPORT_RUN, plugins)[0])

    nexus_ms = statistics.median(nexus_times) * 1000
    import_ms = statistics.median(import_times) * 1000
    ratio = nexus_ms / import_ms
    target = 2.0
    print(f"{'':34} {'median ms':>10} {'per plugin us':>14}")
    for label, ms in ((f"import {args.plugins} modules", import_ms), ("nexus start", nexus_ms)):
        print(f"{label:34} {ms:10.1f} {ms * 1000 / args.plugins:14.1f}")
    print(f"ratio nexus/import: {ratio:.2f} (target <= {target})")
    result = {
        "bench": "startup",
        "plugins": args.plugins,
        "rounds": args.rounds,
        "nexus_ms": round(nexus_ms, 2),
        "import_ms": round(import_ms, 2),
        "ratio": round(ratio, 3),
        "target_max_ratio": target,
        "meets_target": ratio <= target,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
