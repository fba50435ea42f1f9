"""The checks behind `nexus doctor`: will this installation start, and is it fit for production?"""

from __future__ import annotations

import importlib.util
import tempfile
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, SecretBytes, SecretStr

from nexus.cli.inventory import ConfigCheck, Inventory, check_plugin_configs, take_inventory
from nexus.errors import ConfigError
from nexus.http.app import load_app_config
from nexus.http.settings import HttpSettings
from nexus.kernel.config import NexusConfig, is_secret_key

Status = Literal["OK", "WARN", "FAIL"]

#: Optional modules that make the server faster; missing ones are worth a warning only.
PERFORMANCE_EXTRAS: Final = {
    "uvloop": "a faster event loop",
    "httptools": "a faster HTTP parser",
}
_PLACEHOLDERS: Final = frozenset(
    {"changeme", "change-me", "change_me", "replaceme", "replace-me", "replace_me", "todo",
     "fixme", "xxx", "secret", "password", "example", "dummy", "placeholder", "default"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the checklist, with details underneath."""

    status: Status
    name: str
    summary: str
    details: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "status": self.status,
            "name": self.name,
            "summary": self.summary,
            "details": list(self.details),
        }


@dataclass(slots=True)
class Checkup:
    """Every check `nexus doctor` ran, in order."""

    checks: list[Check] = field(default_factory=list)

    @property
    def failures(self) -> int:
        """How many checks failed."""
        return sum(c.status == "FAIL" for c in self.checks)

    @property
    def warnings(self) -> int:
        """How many checks warned."""
        return sum(c.status == "WARN" for c in self.checks)

    def add(self, status: Status, name: str, summary: str, details: Any = ()) -> None:
        """Record one check."""
        self.checks.append(Check(status, name, summary, tuple(str(d) for d in details)))


def run_checkup(
    path: Path | None, environment: str | None, *, entry_points: bool | None = None
) -> Checkup:
    """Run every check; checks that need a loaded configuration are skipped without one."""
    checkup = Checkup()
    config = _check_config(checkup, path, environment)
    if config is not None:
        inventory = take_inventory(config, entry_points=entry_points)
        _check_manifests(checkup, inventory)
        _check_graph(checkup, inventory)
        configs = _check_plugin_configs(checkup, inventory)
        _check_data_dir(checkup, config.data_dir)
        if config.is_production:
            _check_production(checkup, config, configs)
    _check_extras(checkup)
    return checkup


def _check_config(
    checkup: Checkup, path: Path | None, environment: str | None
) -> NexusConfig | None:
    try:
        config = load_app_config(path, environment=environment)
    except ConfigError as exc:
        checkup.add("FAIL", "config", "the configuration does not load", exc.problems)
        return None
    if not config.files:
        checkup.add(
            "WARN",
            "config",
            "no configuration file (give --config or set NEXUS_CONFIG): using built-in defaults",
        )
    else:
        files = " + ".join(str(f) for f in config.files)
        checkup.add("OK", "config", f"{files} loads (environment {config.environment})")
    return config


def _check_manifests(checkup: Checkup, inventory: Inventory) -> None:
    invalid = [row for row in inventory.rows.values() if row.source is None]
    total = len(inventory.rows)
    if invalid:
        details = [p for row in invalid for p in row.problems]
        checkup.add("FAIL", "manifests", f"{len(invalid)} of {total} manifests invalid", details)
    else:
        checkup.add("OK", "manifests", f"{total} plugin manifest(s) valid")


def _check_graph(checkup: Checkup, inventory: Inventory) -> None:
    problems = [p for p in inventory.problems() if p.kind in ("dependency", "cycle")]
    order = ", ".join(inventory.order) or "(none)"
    if problems:
        checkup.add("FAIL", "graph", "the dependency graph does not resolve", problems)
    else:
        checkup.add("OK", "graph", f"dependencies resolve; start order: {order}")
    warnings = inventory.warnings()
    if warnings:
        checkup.add("WARN", "graph", "optional dependencies will be ignored", warnings)


def _check_plugin_configs(checkup: Checkup, inventory: Inventory) -> ConfigCheck:
    result = check_plugin_configs(inventory)
    if result.problems:
        checkup.add("FAIL", "plugin config", "plugin configuration is invalid", result.problems)
    else:
        count = len(result.models)
        checkup.add("OK", "plugin config", f"{count} enabled plugin(s) accept their configuration")
    if result.warnings:
        checkup.add("WARN", "plugin config", "unused plugin sections", result.warnings)
    return result


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_data_dir(checkup: Checkup, data_dir: Path) -> None:
    target = data_dir if data_dir.exists() else _nearest_existing(data_dir)
    if not target.is_dir():
        checkup.add("FAIL", "data_dir", f"{target} is not a directory (data_dir: {data_dir})")
        return
    try:
        # os.access lies for root and on some network file systems; writing a file does not.
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        checkup.add("FAIL", "data_dir", f"{target} is not writable: {exc.strerror}")
        return
    if target == data_dir:
        checkup.add("OK", "data_dir", f"{data_dir} is writable")
    else:
        checkup.add("OK", "data_dir", f"{data_dir} will be created (in {target}, writable)")


def _check_extras(checkup: Checkup) -> None:
    missing = [name for name in PERFORMANCE_EXTRAS if importlib.util.find_spec(name) is None]
    if missing:
        details = [f"{name} ({PERFORMANCE_EXTRAS[name]}) is not installed" for name in missing]
        summary = "performance extras missing: install uvicorn[standard]"
        checkup.add("WARN", "extras", summary, details)
    else:
        installed = ", ".join(PERFORMANCE_EXTRAS)
        checkup.add("OK", "extras", f"performance extras installed: {installed}")


# -- production ----------------------------------------------------------------------------


def _check_production(checkup: Checkup, config: NexusConfig, configs: ConfigCheck) -> None:
    unsafe: list[str] = []
    http = config.sections.get("http")
    if isinstance(http, HttpSettings):
        if "*" in http.cors.allow_origins:
            unsafe.append(
                f"http.cors.allow_origins allows every origin ('*', set at "
                f"{config.source_of('http.cors.allow_origins')}): list the allowed origins"
            )
        weakened = [
            f"http.{name}.enabled is false"
            for name, section in (
                ("security_headers", http.security_headers),
                ("rate_limit", http.rate_limit),
            )
            if not section.enabled
        ]
        if not http.trusted_hosts:
            weakened.append("http.trusted_hosts is empty: every Host header is served")
        if weakened:
            checkup.add("WARN", "production", "protections are turned off", weakened)
    unsafe += [
        f"{'.'.join(keys)} is {value!r} ({config.source_of('.'.join(keys))}): turn it off"
        for keys, value in _leaves(_settings(config))
        if keys[-1].lower() in ("debug", "reload") and value not in (None, False, "", 0)
    ]
    if unsafe:
        checkup.add("FAIL", "production", "development settings are on in production", unsafe)
    else:
        checkup.add("OK", "production", "no debug settings; CORS is not open to every origin")
    secrets = _secret_problems(config, configs)
    if secrets:
        checkup.add("FAIL", "secrets", "secrets are missing or placeholders", secrets)
    else:
        checkup.add("OK", "secrets", "every secret is set")


def is_placeholder(value: str) -> bool:
    """An empty value, or one that is obviously not a real secret yet."""
    text = value.strip().lower()
    return (
        not text
        or text in _PLACEHOLDERS
        or (text.startswith("<") and text.endswith(">"))
        or set(text) <= {"x", "*", "."}
    )


def _settings(config: NexusConfig) -> dict[str, Any]:
    """The raw settings (secrets unmasked), with validated sections as plain data."""
    data: dict[str, Any] = {"plugins": config.plugins}
    for name, section in config.sections.items():
        data[name] = section.model_dump() if isinstance(section, BaseModel) else section
    return data


def _leaves(value: Any, keys: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, (*keys, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*keys, str(index)))
    else:
        yield keys, value


def _secret_text(value: Any) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, SecretBytes):
        return value.get_secret_value().decode(errors="replace")
    if value is None or isinstance(value, str):
        return value or ""
    return None  # a number or a flag under a secret-looking key is not a secret


_MISSING: Final = object()


def _is_secret_type(annotation: Any) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    return any(_is_secret_type(arg) for arg in typing.get_args(annotation))


def _declared_secrets(
    model: type[BaseModel], data: Any, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], bool]]:
    """(key path, required) of every SecretStr/SecretBytes field, nested models included.

    A nested model that is optional and left out of `data` needs none of its secrets.
    """
    for name, info in model.model_fields.items():
        key = (*prefix, info.alias or name)
        if _is_secret_type(info.annotation):
            yield key, info.is_required() or _required_in_production(info.json_schema_extra)
        value = data.get(key[-1], _MISSING) if isinstance(data, Mapping) else _MISSING
        if value is _MISSING and not info.is_required():
            continue
        for arg in (info.annotation, *typing.get_args(info.annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                yield from _declared_secrets(arg, value, key)


def _required_in_production(extra: Any) -> bool:
    """Whether a field is marked `json_schema_extra={"required_in_production": True}`."""
    return isinstance(extra, Mapping) and extra.get("required_in_production") is True


def _lookup(data: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            return _MISSING
        data = data[key]
    return data


def _secret_problems(config: NexusConfig, configs: ConfigCheck) -> list[str]:
    """Secrets that are empty or placeholders, and required secret fields left unset."""
    found: dict[str, str] = {}
    settings = _settings(config)
    for keys, value in _leaves(settings):
        if keys[:1] == ("plugins",) and len(keys) > 1 and not config.plugin_enabled(keys[1]):
            continue
        text = _secret_text(value)
        if is_secret_key(keys[-1]) and text is not None and is_placeholder(text):
            path = ".".join(keys)
            found[path] = f"{path} is empty or a placeholder ({config.source_of(path)})"
    for name, model in sorted(configs.models.items()):
        if model is None:
            continue
        section = config.plugin_section(name)
        for keys, required in _declared_secrets(model, section):
            path = ".".join(("plugins", name, *keys))
            value = _lookup(section, keys)
            if value is _MISSING or value is None:
                if required:
                    variable = "NEXUS__" + "__".join(k.upper() for k in path.split("."))
                    found[path] = f"{path} is not set: plugin {name!r} needs it (or set {variable})"
                continue
            text = _secret_text(value)
            if text is not None and is_placeholder(text):
                found[path] = f"{path} is empty or a placeholder ({config.source_of(path)})"
    return [found[path] for path in sorted(found)]
