"""Layered configuration: defaults, nexus.yaml, nexus.<environment>.yaml, NEXUS__* variables."""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, overload

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretBytes,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails, to_jsonable_python

from nexus.errors import ConfigError, Problem
from nexus.kernel._yaml import KeyPath, load_yaml

_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")

EventTransport = Literal["memory", "redis"]

MASK: Final = "**********"
_ENV_PREFIX: Final = "NEXUS__"
_ENVIRONMENT = re.compile(r"[a-z][a-z0-9_]*\Z")
_SECRET_WORDS: Final = ("password", "passwd", "secret", "credential", "apikey", "privatekey")
_DSN_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]*:)[^\s@/?#]+(?=@)")
# Pydantic's parse errors end in a detail that only restates the input we show anyway.
_PARSE_DETAIL = re.compile(r", unable to (parse|interpret) .*\Z")


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


@dataclass(frozen=True)
class _Sources:
    """Where each key path of the merged raw configuration was set."""

    tree: dict[str, Any]
    by_path: dict[KeyPath, str]
    fallback: str  # the base file name, or "defaults" when there is none

    def nearest(self, path: KeyPath) -> str | None:
        for end in range(len(path), -1, -1):
            if (source := self.by_path.get(path[:end])) is not None:
                return source
        return None

    def locate(self, path: KeyPath) -> str:
        return self.nearest(path) or self.fallback

    def exists(self, path: KeyPath) -> bool:
        node: Any = self.tree
        for key in path:
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return False
        return True


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
    _sources: _Sources = field(repr=False)
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
        return _redact(to_jsonable_python(data, fallback=str))  # type: ignore[no-any-return]

    def redacted_plugin(self, name: str, model: type[BaseModel] | None) -> dict[str, Any]:
        """One plugin's settings (validated by `model` when given), with secrets masked."""
        value = self.validate_plugin(name, model) if model is not None else None
        data = value if value is not None else self.plugin_section(name)
        return _redact(to_jsonable_python(data, fallback=str))  # type: ignore[no-any-return]

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
            return None, _validation_problems(exc, prefix, model, self._sources.locate)


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

    base, problem = _base_file(path, environ)
    if problem is not None:
        problems.append(problem)
    base_data: dict[str, Any] = {}
    if base is not None:
        document = load_yaml(base, str(base), environ)
        files.append(base)
        problems.extend(document.problems)
        base_data = document.data
        _merge(tree, sources, base_data, _line_sources(str(base), document.lines))

    env_tree, env_sources, env_problems = _environment_layer(environ)
    chosen, chooser = _choose_environment(
        environment, environ, env_tree, base_data, dict(overrides or {})
    )
    if base is not None and _ENVIRONMENT.match(chosen):
        overlay = base.with_name(f"{base.stem}.{chosen}{base.suffix}")
        if overlay.is_file():
            document = load_yaml(overlay, str(overlay), environ)
            files.append(overlay)
            problems.extend(document.problems)
            _merge(tree, sources, document.data, _line_sources(str(overlay), document.lines))
    _merge(tree, sources, env_tree, env_sources)
    problems.extend(env_problems)
    if overrides:
        _merge(tree, sources, copy.deepcopy(dict(overrides)), _code_sources(overrides))

    if (problem := _apply_environment(tree, sources, chosen, chooser)) is not None:
        problems.append(problem)

    base_dir = base.parent.resolve() if base is not None else Path.cwd()
    known = _Sources(tree, sources, str(base) if base is not None else "defaults")
    validator = _TreeValidator(tree, known, problems)
    config = validator.validate(extra, base_dir, files, args)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def _code_sources(data: Mapping[str, Any], path: KeyPath = ()) -> dict[KeyPath, str]:
    found: dict[KeyPath, str] = {}
    for key, value in data.items():
        here = (*path, str(key))
        found[here] = "settings passed in code"
        if isinstance(value, Mapping):
            found.update(_code_sources(value, here))
    return found


def _base_file(
    path: str | Path | None, environ: Mapping[str, str]
) -> tuple[Path | None, Problem | None]:
    if path is not None:
        origin = str(path)
    elif environ.get("NEXUS_CONFIG"):
        origin = "environment variable NEXUS_CONFIG"
        path = environ["NEXUS_CONFIG"]
    else:
        return None, None
    base = Path(path)
    if base.exists():
        return base, None
    return None, Problem(origin, "", f"configuration file {str(base)!r} does not exist")


def _choose_environment(
    argument: str | None,
    environ: Mapping[str, str],
    env_tree: Mapping[str, Any],
    base_data: Mapping[str, Any],
    overrides: Mapping[str, Any],
) -> tuple[str, str | None]:
    """The selected environment and, if it was not set in the configuration, what chose it."""
    if argument is not None:
        return argument, "environment argument"
    if environ.get("NEXUS_ENV"):
        return environ["NEXUS_ENV"], "environment variable NEXUS_ENV"
    for layer in (overrides, env_tree, base_data):
        app = layer.get("app")
        if isinstance(app, dict) and isinstance(app.get("environment"), str):
            return app["environment"], None
    return "development", None


def _apply_environment(
    tree: dict[str, Any], sources: dict[KeyPath, str], chosen: str, chooser: str | None
) -> Problem | None:
    """Make app.environment the selected environment, so `config.environment` agrees."""
    app = tree.get("app")
    if chooser is not None and (app is None or isinstance(app, dict)):
        tree["app"] = app = dict(app or {})
        app["environment"] = chosen
        sources[("app", "environment")] = chooser
        sources.setdefault(("app",), chooser)
        return None
    current = app.get("environment") if isinstance(app, dict) else None
    if isinstance(current, str) and current != chosen:
        return Problem(
            sources.get(("app", "environment"), "defaults"),
            "app.environment",
            f"an environment overlay cannot change the environment: this file is for "
            f"{chosen!r} but sets {current!r}; remove it",
        )
    return None


def _line_sources(name: str, lines: Mapping[KeyPath, int]) -> dict[KeyPath, str]:
    return {path: f"{name}:{line}" for path, line in lines.items() if path}


def _environment_layer(
    environ: Mapping[str, str],
) -> tuple[dict[str, Any], dict[KeyPath, str], list[Problem]]:
    tree: dict[str, Any] = {}
    sources: dict[KeyPath, str] = {}
    problems: list[Problem] = []
    entries: list[tuple[KeyPath, str, Any]] = []
    for name, raw in environ.items():
        if not name.upper().startswith(_ENV_PREFIX):
            continue
        where = f"environment variable {name}"
        keys = tuple(part.lower() for part in name[len(_ENV_PREFIX) :].split("__"))
        if not all(keys):
            problems.append(
                Problem(where, "", "empty name part: use NEXUS__SECTION__KEY, '__' between names")
            )
            continue
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                message = (
                    f"invalid JSON ({exc.msg} at column {exc.colno}); values starting with "
                    f"'[' or '{{' are read as JSON"
                )
                problems.append(Problem(where, ".".join(keys), message))
                continue
        entries.append((keys, name, value))

    # Shallow variables first, so NEXUS__A__B refines a JSON object given by NEXUS__A.
    for keys, name, value in sorted(entries, key=lambda e: (len(e[0]), e[0], e[1])):
        where = f"environment variable {name}"
        node: Any = tree
        for depth in range(1, len(keys)):
            here = keys[:depth]
            node = node.setdefault(here[-1], {})
            if not isinstance(node, dict):
                message = f"conflicts with {sources[here]}, which sets {'.'.join(here)} to a value"
                problems.append(Problem(where, ".".join(keys), message))
                break
            sources.setdefault(here, where)
        else:
            if keys in sources:  # the same variable name in another case
                problems.append(Problem(where, ".".join(keys), f"also set by {sources[keys]}"))
            node[keys[-1]] = value
            sources[keys] = where
    return tree, sources, problems


def _merge(
    tree: dict[str, Any],
    sources: dict[KeyPath, str],
    layer: Mapping[str, Any],
    layer_sources: Mapping[KeyPath, str],
    path: KeyPath = (),
) -> None:
    """Deep-merge `layer` into `tree`: mappings merge, everything else replaces."""
    for key, value in layer.items():
        here = (*path, key)
        current = tree.get(key)
        # An empty section (`server:` with everything commented out) merges nothing.
        if isinstance(current, dict) and (value is None or isinstance(value, dict)):
            if value:
                _merge(current, sources, value, layer_sources, here)
            continue  # the section keeps the source that introduced it
        tree[key] = value
        depth = len(here)
        for stale in [p for p in sources if p[:depth] == here]:
            del sources[stale]
        sources.update({p: s for p, s in layer_sources.items() if p[:depth] == here})


class _TreeValidator:
    def __init__(self, tree: dict[str, Any], sources: _Sources, problems: list[Problem]) -> None:
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
                message = f"unknown section {key!r}; known sections: {_choices(key, known)}"
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
            self.problems.extend(_validation_problems(exc, (key,), model, self.sources.locate))
            return None

    def _adapt(self, key: str, adapter: TypeAdapter[_T], default: _T) -> _T | None:
        raw = self.tree.get(key)
        if raw is None:
            return default
        try:
            return adapter.validate_python(raw)
        except ValidationError as exc:
            self.problems.extend(_validation_problems(exc, (key,), None, self.sources.locate))
            return None

    def _plugins(self) -> dict[str, dict[str, Any]]:
        raw = self.tree.get("plugins")
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            message = f"must be a mapping of plugin names to their settings, got {_show(raw)}"
            self.problems.append(Problem(self.sources.locate(("plugins",)), "plugins", message))
            return {}
        plugins: dict[str, dict[str, Any]] = {}
        for name, section in raw.items():
            path = ("plugins", name)
            if section is not None and not isinstance(section, dict):
                message = f"a plugin's settings must be a mapping (or empty), got {_show(section)}"
                self.problems.append(Problem(self.sources.locate(path), ".".join(path), message))
                continue
            settings = dict(section or {})
            if "enabled" in settings:
                try:
                    settings["enabled"] = _BOOL.validate_python(settings["enabled"])
                except ValidationError:
                    enabled = (*path, "enabled")
                    message = f"must be true or false, got {_show(settings['enabled'])}"
                    location = self.sources.locate(enabled)
                    self.problems.append(Problem(location, ".".join(enabled), message))
            plugins[name] = settings
        return plugins


def _validation_problems(
    exc: ValidationError,
    prefix: KeyPath,
    model: type[BaseModel] | None,
    locate: Callable[[KeyPath], str],
) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        path = (*prefix, *(str(part) for part in error["loc"]))
        message = _describe(error, path, model, len(prefix))
        problems.append(Problem(locate(path), ".".join(path), message))
    return problems


def _describe(error: ErrorDetails, path: KeyPath, model: type[BaseModel] | None, depth: int) -> str:
    inner = path[depth:]
    if error["type"] == "extra_forbidden":
        fields = _fields_at(model, inner[:-1])
        known = f"; known keys: {_choices(path[-1], fields)}" if fields else ""
        return f"unknown key {path[-1]!r}{known}"
    if error["type"] == "missing":
        variable = _ENV_PREFIX + "__".join(key.upper() for key in path)
        return f"Field required; add it to the configuration file or set {variable}"
    message = _PARSE_DETAIL.sub("", error["msg"])
    if any(is_secret_key(key) for key in path) or _is_secret_field(model, inner):
        return f"{message} (value hidden: it is a secret)"
    return f"{message}, got {_show(error['input'])}"


def _choices(key: str, names: list[str]) -> str:
    listed = ", ".join(names)
    close = difflib.get_close_matches(key, names, n=1)
    return f"{listed} (did you mean {close[0]!r}?)" if close else listed


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _models_in(annotation: Any) -> list[Any]:
    """The annotation and every type nested in it (Optional, list[...], dict[...])."""
    found = [annotation]
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _field_annotation(model: type[BaseModel] | None, path: KeyPath) -> Any:
    # Segments that are not field names (list indexes, dict keys) stay on the current model.
    current, annotation = model, None
    for key in path:
        if current is None:  # inside a dict or list field: its annotation still tells
            break
        info = current.model_fields.get(key)
        if info is None:
            continue
        annotation = info.annotation
        nested = [t for t in _models_in(annotation) if _is_model(t)]
        current = nested[0] if nested else None
    return annotation


def _fields_at(model: type[BaseModel] | None, path: KeyPath) -> list[str]:
    annotation = _field_annotation(model, path) if path else model
    nested = [t for t in _models_in(annotation) if _is_model(t)]
    return sorted(nested[0].model_fields) if nested else []


def _is_secret_field(model: type[BaseModel] | None, path: KeyPath) -> bool:
    annotation = _field_annotation(model, path) if path else None
    return any(t in (SecretStr, SecretBytes) for t in _models_in(annotation))


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def is_secret_key(key: str) -> bool:
    """Whether a config key name suggests a secret (password, token, api_key, ...)."""
    lowered = key.lower()
    squashed = lowered.replace("_", "").replace("-", "")
    if lowered.endswith(("_key", "token")) or any(word in squashed for word in _SECRET_WORDS):
        return True
    # "token" alone would also hide harmless keys such as "max_tokens".
    return "token" in re.split(r"[^a-z0-9]+", lowered)


def _mask_text(value: Any) -> Any:
    """Hide every piece of text below a secret-looking key; numbers and flags stay readable
    (`allow_credentials: true` and `password_hashing: {time_cost: 3}` are settings)."""
    if isinstance(value, dict):
        return {k: _mask_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_text(item) for item in value]
    if isinstance(value, str | bytes):
        return MASK
    return value


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_text(v) if is_secret_key(str(k)) else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(item) for item in value]
    if isinstance(value, str):
        return _DSN_PASSWORD.sub(rf"\g<head>{MASK}", value)
    return value
