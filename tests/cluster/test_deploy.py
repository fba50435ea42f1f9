"""The sample deployment in deploy/ as shipped: its configuration loads and nginx accepts it."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from nexus.http.app import load_app_config
from nexus.testing.servers import free_port, services_required

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _env_example() -> dict[str, str]:
    lines = (DEPLOY / "nexus.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _plugin_models() -> dict[str, Any]:
    models = {}
    for entry in metadata.entry_points(group="nexus.plugins"):
        models[entry.name] = entry.load().Config
    return models


def test_the_sample_configuration_loads_as_a_production_cluster_instance() -> None:
    """deploy/nexus.yaml + production overlay + env example: Redis everywhere, PostgreSQL."""
    env = _env_example()
    env["NEXUS__PLUGINS__AUTH__SIGNING_KEY"] = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="
    config = load_app_config(DEPLOY / "nexus.yaml", env=env)
    assert [path.name for path in config.files] == ["nexus.yaml", "nexus.production.yaml"]
    assert config.is_production
    assert config.kernel.strict
    assert config.events.transport == "redis"
    http = config.sections["http"]
    assert http.rate_limit.store == "redis"
    assert http.trusted_proxies == ["127.0.0.1"]
    assert http.trusted_hosts == ["shop.example.com", "127.0.0.1"]
    models = _plugin_models()
    plugins = config.validate_plugins({n: models[n] for n in config.plugins if n in models})
    redis = env["REDIS_URL"]
    assert plugins["cache"].url.get_secret_value() == redis  # type: ignore[union-attr]
    assert plugins["cluster"].redis_url.get_secret_value() == redis  # type: ignore[union-attr]
    assert plugins["scheduler"].redis_url.get_secret_value() == redis  # type: ignore[union-attr]
    assert plugins["database"].url.get_secret_value().startswith("postgresql+asyncpg://")  # type: ignore[union-attr]


def test_the_sample_nginx_configuration_is_valid(tmp_path: Path) -> None:
    """`nginx -t` accepts deploy/nginx.conf (its log and pid paths moved into tmp_path)."""
    binary = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if binary is None:
        reason = "nginx is not installed (Debian package nginx)"
        if services_required():
            pytest.fail(f"{reason}; NEXUS_REQUIRE_SERVICES=1 makes this a failure")
        pytest.skip(reason)
    text = (DEPLOY / "nginx.conf").read_text()
    text = re.sub(r"(/var/log/nginx|/run)/", f"{tmp_path}/", text)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{free_port()};")
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    checked = subprocess.run(
        [binary, "-t", "-c", str(conf), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr


@pytest.mark.parametrize(
    "name", ["nexus.yaml", "nexus.production.yaml", "nexus.env.example", "nginx.conf"]
)
def test_the_cluster_deployment_page_shows_the_sample_files_as_they_are(name: str) -> None:
    """docs/deployment-cluster.md quotes each deploy/ file whole, so the two never drift apart."""
    page = (DEPLOY.parent / "docs" / "deployment-cluster.md").read_text()
    assert f"```\n{(DEPLOY / name).read_text()}```\n" in re.sub(r"```\w+\n", "```\n", page)
