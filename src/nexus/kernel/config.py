"""Layered configuration: defaults, nexus.yaml, nexus.<environment>.yaml, NEXUS__* variables."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, overload

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import to_jsonable_python

from nexus.errors import ConfigError, Problem
from nexus.kernel._config_problems import choices, show, validation_problems
from nexus.kernel._config_sources import (
    Sources,
    apply_environment,
    base_file,
    choose_environment,
    code_sources,
    line_sources,
    merge,
)
from nexus.kernel._env import environment_layer
from nexus.kernel._redaction import MASK, is_secret_key, redact
from nexus.kernel._yaml import KeyPath, load_yaml

__all__ = [
    "MASK",
    "AppSettings",
    "EventSettings",
    "EventTransport",
    "KernelSettings",
    "NexusConfig",
    "ServerSettings",
    "is_secret_key",
    "load_config",
]

_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")

EventTransport = Literal["memory", "redis"]
_ENVIRONMENT = re.compile(r"[a-z][a-z0-9_]*\Z")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AppSettings(_Section):
    """The application's name and the environment it runs in."""

    name: str = "Nexus"
    environment: str = "development"

    @field_validator("environment")
    @classmethod
    def _check_environment(cls, value: str) -> str:
        if not _ENVIRONMENT.match(value):
            raise ValueError("must be a lowercase identifier such as 'production' or 'staging'")
        return value


class ServerSettings(_Section):
    """Where the HTTP server listens."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1)


class KernelSettings(_Section):
    """How the kernel starts and stops plugins."""

    strict: bool = False
    entry_points: bool = True  # discover installed plugins (the "nexus.plugins" group)
    setup_timeout: float = Field(30.0, gt=0)
    teardown_timeout: float = Field(10.0, gt=0)


class EventSettings(_Section):
    """The event bus: transport, queues, retries and dead letters.

    The `redis_*` keys configure the redis transport (`nexus.redis.RedisTransport`): events
    go to the streams `<redis_prefix>:stream:<first topic segment>`, trimmed to about
    `redis_maxlen` entries; dead letters to `<redis_prefix>:dead`. Times are in seconds.
    """

    transport: EventTransport = "memory"
    queue_size: int = Field(1000, ge=1)
    handler_timeout: float = Field(30.0, gt=0)
    retries: int = Field(2, ge=0)
    retry_delay: float = Field(0.1, ge=0)
    publish_timeout: float = Field(5.0, gt=0)
    dead_letter_limit: int = Field(1000, ge=0)
    redis_url: SecretStr | None = Field(None, validate_default=True)
    redis_prefix: str = "nexus:events"
    redis_maxlen: int = Field(100_000, ge=1)  # entries kept per stream (approximately)
    redis_batch: int = Field(100, ge=1)  # entries per read, acknowledgement and write
    redis_block: float = Field(1.0, gt=0)  # how long one read waits for new entries
    redis_claim_idle: float = Field(60.0, gt=0)  # unacknowledged this long: another takes it
    redis_max_deliveries: int = Field(5, ge=1)  # then dead-lettered without handling
    redis_timeout: float = Field(2.0, gt=0)  # to connect, and for each answer
    redis_instance_id: str | None = None  # the consumer name; default: <host>-<pid>-<random>

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None and info.data.get("transport") == "redis":
            raise ValueError(
                "the redis transport needs a server: set events.redis_url "
                "(e.g. redis://127.0.0.1:6379/0) or NEXUS__EVENTS__REDIS_URL"
            )
        if value is not None and not value.get_secret_value().startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("redis_prefix", "redis_instance_id")
    @classmethod
    def _check_redis_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() or c in "{}" for c in value)):
            raise ValueError("must be a non-empty name without spaces or braces")
        return value


_KERNEL_SECTIONS: Final[Mapping[str, type[BaseModel]]] = {
    "app": AppSettings,
    "server": ServerSettings,
    "kernel": KernelSettings,
    "events": EventSettings,
}
_TOP_LEVEL: Final = frozenset({*_KERNEL_SECTIONS, "plugin_paths", "data_dir", "plugins"})
_PATHS: Final = TypeAdapter(list[Path])
_PATH: Final = TypeAdapter(Path)
_BOOL: Final = TypeAdapter(bool)


@dataclass(frozen=True)
class _LoadArgs:
    path: str | Path | None
    environment: str | None
    env: Mapping[str, str] | None
    sections: Mapping[str, type[BaseModel]] | None
    overrides: Mapping[str, Any] | None = None


@dataclass(frozen=True, eq=False)
class NexusConfig:
    """The validated configuration, and where each of its values came from."""

    app: AppSettings
    server: ServerSettings
    kernel: KernelSettings
    events: EventSettings
    plugin_paths: list[Path]
    data_dir: Path
    plugins: dict[str, dict[str, Any]]
    sections: dict[str, Any]
    files: tuple[Path, ...]
    _sources: Sources = field(repr=False)
    _args: _LoadArgs = field(repr=False)

    @property
    def environment(self) -> str:
        """The environment the application runs in, e.g. "development" or "production"."""
        return self.app.environment

    @property
    def is_production(self) -> bool:
        """Whether this is the "production" environment."""
        return self.app.environment == "production"

    def source_of(self, path: str) -> str:
        """Where the value at dotted `path` was set: "nexus.yaml:12", an env variable, "default"."""
        keys = tuple(path.split(".")) if path else ()
        if not self._sources.exists(keys):
            return "default"
        return self._sources.nearest(keys) or "default"

    def plugin_enabled(self, name: str) -> bool:
        """Whether `plugins.<name>.enabled` is true (the default)."""
        return bool(self.plugins.get(name, {}).get("enabled", True))

    def plugin_section(self, name: str) -> dict[str, Any]:
        """The plugin's settings without the `enabled` flag, {} when it has no section."""
        return {k: v for k, v in self.plugins.get(name, {}).items() if k != "enabled"}

    @overload
    def validate_plugin(self, name: str, model: type[_M]) -> _M: ...
    @overload
    def validate_plugin(self, name: str, model: None) -> None: ...
    @overload
    def validate_plugin(self, name: str, model: type[BaseModel] | None) -> BaseModel | None: ...
    def validate_plugin(self, name: str, model: type[BaseModel] | None) -> BaseModel | None:
        """Validate the plugin's section against its Config model; raise ConfigError if invalid."""
        value, problems = self._check_plugin(name, model)
        if problems:
            raise ConfigError(problems)
        return value

    def validate_plugins(
        self, models: Mapping[str, type[BaseModel] | None]
    ) -> dict[str, BaseModel | None]:
        """Validate every plugin's section; one ConfigError lists the problems of all of them."""
        values: dict[str, BaseModel | None] = {}
        problems: list[Problem] = []
        for name, model in models.items():
            values[name], found = self._check_plugin(name, model)
            problems.extend(found)
        if problems:
            raise ConfigError(problems)
        return values

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as JSON-able data, with secrets masked."""
        data: dict[str, Any] = {
            "app": self.app,
            "server": self.server,
            "kernel": self.kernel,
            "events": self.events,
            "plugin_paths": self.plugin_paths,
            "data_dir": self.data_dir,
            "plugins": self.plugins,
            **self.sections,
        }
        return redact(to_jsonable_python(data, fallback=str))  # type: ignore[no-any-return]

    def redacted_plugin(self, name: str, model: type[BaseModel] | None) -> dict[str, Any]:
        """One plugin's settings (validated by `model` when given), with secrets masked."""
        value = self.validate_plugin(name, model) if model is not None else None
        data = value if value is not None else self.plugin_section(name)
        return redact(to_jsonable_python(data, fallback=str))  # type: ignore[no-any-return]

    def reload(self) -> NexusConfig:
        """Load the configuration again from the same files, environment and sections."""
        args = self._args
        return load_config(
            args.path,
            environment=args.environment,
            env=args.env,
            sections=args.sections,
            overrides=args.overrides,
        )

    def changed_plugins(self, other: NexusConfig) -> set[str]:
        """Plugins whose section differs in `other`, including added, removed and toggled ones."""
        missing = object()
        names = self.plugins.keys() | other.plugins.keys()
        return {n for n in names if self.plugins.get(n, missing) != other.plugins.get(n, missing)}

    def _check_plugin(
        self, name: str, model: type[BaseModel] | None
    ) -> tuple[BaseModel | None, list[Problem]]:
        section = self.plugin_section(name)
        prefix = ("plugins", name)
        if model is None:
            if not section:
                return None, []
            keys = ", ".join(repr(k) for k in section)
            location = self._sources.locate((*prefix, next(iter(section))))
            message = (
                f"plugin {name!r} takes no configuration, remove {keys} "
                f"(only 'enabled' is allowed here)"
            )
            return None, [Problem(location, ".".join(prefix), message)]
        try:
            return model.model_validate(section), []
        except ValidationError as exc:
            return None, validation_problems(exc, prefix, model, self._sources.locate)


def load_config(
    path: str | Path | None = None,
    *,
    environment: str | None = None,
    env: Mapping[str, str] | None = None,
    sections: Mapping[str, type[BaseModel]] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> NexusConfig:
    """Load and validate the layered configuration; raise ConfigError listing every problem.

    Args:
        path: the base file; defaults to `env["NEXUS_CONFIG"]`, else built-in defaults only.
        environment: selects the `<base>.<environment>.yaml` overlay; defaults to
            NEXUS_ENV, NEXUS__APP__ENVIRONMENT, the base file's `app.environment`, "development".
        env: environment variables for `NEXUS__*` and `${VAR}`; defaults to os.environ.
        sections: extra top-level sections other layers validate, e.g. {"http": HttpSettings}.
        overrides: settings given in code (tests, embedding apps), applied last.
    """
    args = _LoadArgs(path, environment, env, sections, overrides)
    environ: Mapping[str, str] = os.environ if env is None else env
    extra = dict(sections or {})
    if clash := sorted(extra.keys() & _TOP_LEVEL):
        raise ValueError(f"sections= cannot redefine built-in sections: {', '.join(clash)}")

    problems: list[Problem] = []
    tree: dict[str, Any] = {}
    sources: dict[KeyPath, str] = {}
    files: list[Path] = []

    base, problem = base_file(path, environ)
    if problem is not None:
        problems.append(problem)
    base_data: dict[str, Any] = {}
    if base is not None:
        document = load_yaml(base, str(base), environ)
        files.append(base)
        problems.extend(document.problems)
        base_data = document.data
        merge(tree, sources, base_data, line_sources(str(base), document.lines))

    env_tree, env_sources, env_problems = environment_layer(environ)
    chosen, chooser = choose_environment(
        environment, environ, env_tree, base_data, dict(overrides or {})
    )
    if base is not None and _ENVIRONMENT.match(chosen):
        overlay = base.with_name(f"{base.stem}.{chosen}{base.suffix}")
        if overlay.is_file():
            document = load_yaml(overlay, str(overlay), environ)
            files.append(overlay)
            problems.extend(document.problems)
            merge(tree, sources, document.data, line_sources(str(overlay), document.lines))
    merge(tree, sources, env_tree, env_sources)
    problems.extend(env_problems)
    if overrides:
        merge(tree, sources, copy.deepcopy(dict(overrides)), code_sources(overrides))

    if (problem := apply_environment(tree, sources, chosen, chooser)) is not None:
        problems.append(problem)

    base_dir = base.parent.resolve() if base is not None else Path.cwd()
    known = Sources(tree, sources, str(base) if base is not None else "defaults")
    validator = _TreeValidator(tree, known, problems)
    config = validator.validate(extra, base_dir, files, args)
    if problems or config is None:
        raise ConfigError(problems)
    return config


class _TreeValidator:
    def __init__(self, tree: dict[str, Any], sources: Sources, problems: list[Problem]) -> None:
        self.tree, self.sources, self.problems = tree, sources, problems

    def validate(
        self,
        extra: Mapping[str, type[BaseModel]],
        base_dir: Path,
        files: list[Path],
        args: _LoadArgs,
    ) -> NexusConfig | None:
        known = sorted(_TOP_LEVEL | extra.keys())
        for key in self.tree:
            if key not in known:
                message = f"unknown section {key!r}; known sections: {choices(key, known)}"
                self.problems.append(Problem(self.sources.locate((key,)), key, message))
        app = self._model("app", AppSettings)
        server = self._model("server", ServerSettings)
        kernel = self._model("kernel", KernelSettings)
        events = self._model("events", EventSettings)
        sections = {name: self._model(name, model) for name, model in extra.items()}
        plugin_paths = self._adapt("plugin_paths", _PATHS, [])
        data_dir = self._adapt("data_dir", _PATH, Path("data"))
        plugins = self._plugins()
        if (
            app is None
            or server is None
            or kernel is None
            or events is None
            or plugin_paths is None
            or data_dir is None
            or any(value is None for value in sections.values())
        ):
            return None
        return NexusConfig(
            app=app,
            server=server,
            kernel=kernel,
            events=events,
            plugin_paths=[(base_dir / p.expanduser()).resolve() for p in plugin_paths],
            data_dir=(base_dir / data_dir.expanduser()).resolve(),
            plugins=plugins,
            sections=sections,
            files=tuple(files),
            _sources=self.sources,
            _args=args,
        )

    def _model(self, key: str, model: type[_M]) -> _M | None:
        raw = self.tree.get(key)
        try:
            return model.model_validate({} if raw is None else raw)
        except ValidationError as exc:
            self.problems.extend(validation_problems(exc, (key,), model, self.sources.locate))
            return None

    def _adapt(self, key: str, adapter: TypeAdapter[_T], default: _T) -> _T | None:
        raw = self.tree.get(key)
        if raw is None:
            return default
        try:
            return adapter.validate_python(raw)
        except ValidationError as exc:
            self.problems.extend(validation_problems(exc, (key,), None, self.sources.locate))
            return None

    def _plugins(self) -> dict[str, dict[str, Any]]:
        raw = self.tree.get("plugins")
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            message = f"must be a mapping of plugin names to their settings, got {show(raw)}"
            self.problems.append(Problem(self.sources.locate(("plugins",)), "plugins", message))
            return {}
        plugins: dict[str, dict[str, Any]] = {}
        for name, section in raw.items():
            path = ("plugins", name)
            if section is not None and not isinstance(section, dict):
                message = f"a plugin's settings must be a mapping (or empty), got {show(section)}"
                self.problems.append(Problem(self.sources.locate(path), ".".join(path), message))
                continue
            settings = dict(section or {})
            if "enabled" in settings:
                try:
                    settings["enabled"] = _BOOL.validate_python(settings["enabled"])
                except ValidationError:
                    enabled = (*path, "enabled")
                    message = f"must be true or false, got {show(settings['enabled'])}"
                    location = self.sources.locate(enabled)
                    self.problems.append(Problem(location, ".".join(enabled), message))
            plugins[name] = settings
        return plugins
