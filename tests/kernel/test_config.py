"""Layered configuration: files, environment overlays, NEXUS__* variables, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nexus.errors import ConfigError, Problem
from nexus.kernel.config import (
    AppSettings,
    EventSettings,
    KernelSettings,
    NexusConfig,
    ServerSettings,
    load_config,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(excinfo: pytest.ExceptionInfo[ConfigError]) -> list[tuple[str, str]]:
    return [(p.location, p.path) for p in excinfo.value.problems]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path so relative file names appear in messages as the user typed them."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


class UserManagerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_users: int = 100
    api_key: SecretStr = SecretStr("dev-key")
    email_verification: bool = True


class HttpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cors_origins: list[str] = []
    session_secret: SecretStr = SecretStr("change-me")
    timeout: float = Field(10.0, gt=0)


# --- layers ---------------------------------------------------------------------------------


def test_defaults_without_a_file(in_tmp: Path) -> None:
    """With no file and no variables, every setting has its built-in default."""
    config = load_config(env={})
    assert config.app == AppSettings()
    assert config.server == ServerSettings(host="127.0.0.1", port=8000, workers=1)
    assert config.kernel == KernelSettings()
    assert config.events == EventSettings()
    assert config.events.transport == "memory"
    assert config.plugin_paths == []
    assert config.data_dir == in_tmp.resolve() / "data"
    assert config.plugins == {}
    assert config.files == ()
    assert (config.environment, config.is_production) == ("development", False)
    assert config.source_of("server.port") == "default"


def test_nexus_config_variable_names_the_base_file(in_tmp: Path) -> None:
    """NEXUS_CONFIG is used when no path is passed."""
    write(in_tmp / "conf" / "app.yaml", "server:\n  port: 9001\n")
    config = load_config(env={"NEXUS_CONFIG": "conf/app.yaml"})
    assert config.server.port == 9001
    assert config.files == (Path("conf/app.yaml"),)
    assert config.source_of("server.port") == "conf/app.yaml:2"


def test_missing_file_is_an_error_naming_it(in_tmp: Path) -> None:
    """A base file that does not exist is reported with the name the user gave."""
    with pytest.raises(ConfigError, match=r"configuration file 'nope\.yaml' does not exist"):
        load_config("nope.yaml", env={})
    with pytest.raises(ConfigError) as excinfo:
        load_config(env={"NEXUS_CONFIG": "gone.yaml"})
    assert excinfo.value.problems == (
        Problem(
            "environment variable NEXUS_CONFIG", "", "configuration file 'gone.yaml' does not exist"
        ),
    )


def test_unreadable_file_is_an_error(in_tmp: Path) -> None:
    """A path that cannot be read (a directory, bad encoding) is reported, not raised raw."""
    (in_tmp / "dir.yaml").mkdir()
    (in_tmp / "latin.yaml").write_bytes(b"app:\n  name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"dir\.yaml: cannot read the file"):
        load_config("dir.yaml", env={})
    with pytest.raises(ConfigError, match=r"latin\.yaml: cannot read the file as UTF-8"):
        load_config("latin.yaml", env={})


def test_environment_overlay_overrides_the_base_file(in_tmp: Path) -> None:
    """nexus.<env>.yaml beside the base file deep-merges over it."""
    write(
        in_tmp / "nexus.yaml",
        "server:\n  host: 0.0.0.0\n  port: 8000\nplugins:\n  auth: {ttl: 60, realm: main}\n",
    )
    write(in_tmp / "nexus.production.yaml", "server:\n  port: 80\nplugins:\n  auth: {ttl: 5}\n")
    config = load_config("nexus.yaml", environment="production", env={})
    assert (config.server.host, config.server.port) == ("0.0.0.0", 80)
    assert config.plugins["auth"] == {"ttl": 5, "realm": "main"}
    assert config.files == (Path("nexus.yaml"), Path("nexus.production.yaml"))
    assert config.is_production
    assert config.source_of("server.port") == "nexus.production.yaml:2"
    assert config.source_of("server.host") == "nexus.yaml:2"
    assert config.source_of("app.environment") == "environment argument"
    assert load_config("nexus.yaml", env={}).server.port == 8000


def test_overlay_name_follows_the_base_file_name(in_tmp: Path) -> None:
    """For base file foo.yml the overlay is foo.<env>.yml."""
    write(in_tmp / "foo.yml", "app: {environment: staging}\nserver: {port: 1000}\n")
    write(in_tmp / "foo.staging.yml", "server: {port: 2000}\n")
    config = load_config("foo.yml", env={})
    assert (config.environment, config.server.port) == ("staging", 2000)


@pytest.mark.parametrize(
    ("argument", "env", "expected"),
    [
        ("qa", {"NEXUS_ENV": "staging", "NEXUS__APP__ENVIRONMENT": "demo"}, "qa"),
        (None, {"NEXUS_ENV": "staging", "NEXUS__APP__ENVIRONMENT": "demo"}, "staging"),
        (None, {"NEXUS__APP__ENVIRONMENT": "demo"}, "demo"),
        (None, {"nexus__app": '{"environment": "demo"}'}, "demo"),
        (None, {}, "production"),
    ],
)
def test_environment_selection_order(
    in_tmp: Path, argument: str | None, env: dict[str, str], expected: str
) -> None:
    """The argument beats NEXUS_ENV, which beats NEXUS__APP__ENVIRONMENT, then the file."""
    write(in_tmp / "nexus.yaml", "app:\n  environment: production\n")
    for name in ("qa", "staging", "demo", "production"):
        write(in_tmp / f"nexus.{name}.yaml", f"app:\n  name: {name}-app\n")
    config = load_config("nexus.yaml", environment=argument, env=env)
    assert config.environment == config.app.environment == expected
    assert config.app.name == f"{expected}-app"


def test_environment_defaults_to_development_overlay(in_tmp: Path) -> None:
    """Without any selection, nexus.development.yaml is applied."""
    write(in_tmp / "nexus.yaml", "kernel: {strict: true}\n")
    write(in_tmp / "nexus.development.yaml", "kernel: {strict: false}\n")
    config = load_config("nexus.yaml", env={})
    assert config.kernel.strict is False
    assert config.environment == "development"


def test_overlay_cannot_change_the_environment(in_tmp: Path) -> None:
    """An overlay that sets app.environment to another environment is rejected."""
    write(in_tmp / "nexus.yaml", "app: {environment: production}\n")
    write(in_tmp / "nexus.production.yaml", "app:\n  environment: staging\n")
    with pytest.raises(ConfigError, match="this file is for 'production' but sets 'staging'"):
        load_config("nexus.yaml", env={})


def test_invalid_environment_name(in_tmp: Path) -> None:
    """The environment must be a lowercase identifier; no overlay is looked up for it."""
    write(in_tmp / "nexus.yaml", "")
    with pytest.raises(ConfigError) as excinfo:
        load_config("nexus.yaml", environment="../Prod", env={})
    (problem,) = excinfo.value.problems
    assert (problem.location, problem.path) == ("environment argument", "app.environment")
    assert "must be a lowercase identifier" in problem.message
    assert problem.message.endswith("got '../Prod'")


def test_environment_variables_override_files_and_nest(in_tmp: Path) -> None:
    """NEXUS__SECTION__KEY beats both files; names are case-insensitive; `__` nests."""
    write(in_tmp / "nexus.yaml", "server:\n  port: 8000\nplugins:\n  user_manager:\n    x: 1\n")
    write(in_tmp / "nexus.development.yaml", "server:\n  port: 8001\n")
    env = {
        "NEXUS__SERVER__PORT": "9100",
        "Nexus__Kernel__Strict": "false",
        "NEXUS__KERNEL__SETUP_TIMEOUT": "2.5",
        "NEXUS__PLUGINS__USER_MANAGER__MAX_USERS": "5",
        "NEXUS__PLUGINS__USER_MANAGER__ENABLED": "false",
        "NEXUSX": "ignored",
        "NEXUS_OTHER": "ignored",
    }
    config = load_config("nexus.yaml", env=env)
    assert config.server.port == 9100
    assert (config.kernel.strict, config.kernel.setup_timeout) == (False, 2.5)
    assert config.plugins["user_manager"] == {"x": 1, "max_users": "5", "enabled": False}
    assert not config.plugin_enabled("user_manager")
    assert config.source_of("server.port") == "environment variable NEXUS__SERVER__PORT"
    assert config.source_of("kernel.strict") == "environment variable Nexus__Kernel__Strict"
    assert config.source_of("plugins.user_manager.x") == "nexus.yaml:5"
    assert config.source_of("plugins.user_manager") == "nexus.yaml:4"
    assert config.validate_plugin("user_manager", _MaxUsers) == _MaxUsers(x=1, max_users=5)


class _MaxUsers(BaseModel):
    x: int
    max_users: int


def test_json_environment_values(in_tmp: Path) -> None:
    """Values starting with [ or { are JSON; deeper variables refine a JSON object."""
    env = {
        "NEXUS__PLUGIN_PATHS": '["one", "/abs/two"]',
        "NEXUS__PLUGINS__CACHE": '{"size": 10, "ttl": 5, "tags": ["a"]}',
        "NEXUS__PLUGINS__CACHE__TTL": "7",
    }
    config = load_config(env=env)
    assert config.plugin_paths == [in_tmp.resolve() / "one", Path("/abs/two")]
    assert config.plugins["cache"] == {"size": 10, "ttl": "7", "tags": ["a"]}
    assert config.source_of("plugins.cache.size") == "environment variable NEXUS__PLUGINS__CACHE"
    assert config.source_of("plugins.cache.tags.0") == "environment variable NEXUS__PLUGINS__CACHE"
    assert config.source_of("plugins.cache.tags.3") == "default"
    assert (
        config.source_of("plugins.cache.ttl") == "environment variable NEXUS__PLUGINS__CACHE__TTL"
    )


def test_invalid_environment_variables_are_reported(in_tmp: Path) -> None:
    """Bad JSON, empty name parts and conflicting variables each name the variable."""
    env = {
        "NEXUS__EVENTS": "{queue_size: 1}",
        "NEXUS__SERVER____PORT": "1",
        "NEXUS__APP": "plain",
        "NEXUS__APP__NAME": "x",
        "NEXUS__KERNEL__STRICT": "true",
        "nexus__kernel__strict": "false",
    }
    with pytest.raises(ConfigError) as excinfo:
        load_config(env=env)
    messages = {(p.location, p.message) for p in excinfo.value.problems}
    assert (
        "environment variable NEXUS__EVENTS",
        "invalid JSON (Expecting property name enclosed in double quotes at column 2); "
        "values starting with '[' or '{' are read as JSON",
    ) in messages
    assert (
        "environment variable NEXUS__SERVER____PORT",
        "empty name part: use NEXUS__SECTION__KEY, '__' between names",
    ) in messages
    assert (
        "environment variable NEXUS__APP__NAME",
        "conflicts with environment variable NEXUS__APP, which sets app to a value",
    ) in messages
    assert (
        "environment variable nexus__kernel__strict",
        "also set by environment variable NEXUS__KERNEL__STRICT",
    ) in messages


# --- substitution -----------------------------------------------------------------------------


def test_variable_substitution_in_yaml_strings(in_tmp: Path) -> None:
    """${VAR}, ${VAR:-default} (also mid-string) and the $${ escape."""
    write(
        in_tmp / "nexus.yaml",
        "app:\n"
        "  name: ${APP_NAME}\n"
        "server:\n"
        "  port: ${PORT:-8123}\n"
        "  host: ${HOST:-0.0.0.0}\n"
        "plugins:\n"
        "  db:\n"
        '    url: "postgresql://${DB_HOST:-localhost}:${DB_PORT:-5432}/app"\n'
        "    template: $${NOT_A_VAR} costs $$5\n"
        "    empty: ${EMPTY}\n"
        "    fallback: ${EMPTY:-used}\n"
        "    number: 5\n",
    )
    env = {"APP_NAME": "Shop", "DB_HOST": "db.internal", "HOST": "", "EMPTY": ""}
    config = load_config("nexus.yaml", env=env)
    assert config.app.name == "Shop"
    assert (config.server.port, config.server.host) == (8123, "0.0.0.0")
    assert config.plugin_section("db") == {
        "url": "postgresql://db.internal:5432/app",
        "template": "${NOT_A_VAR} costs $$5",
        "empty": "",
        "fallback": "used",
        "number": 5,
    }


def test_unset_variable_is_reported_with_file_line_and_key(in_tmp: Path) -> None:
    """An unset ${VAR} without a default names the variable, file:line and key path."""
    write(in_tmp / "nexus.yaml", "plugins:\n  db:\n    password: ${DB_PASSWORD}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config("nexus.yaml", env={})
    assert excinfo.value.problems == (
        Problem(
            "nexus.yaml:3",
            "plugins.db.password",
            "environment variable 'DB_PASSWORD' is not set; set it or give a default "
            "with ${DB_PASSWORD:-default}",
        ),
    )


def test_malformed_references_are_reported(in_tmp: Path) -> None:
    """${1X} and an unclosed ${ are errors that show the escape."""
    write(in_tmp / "nexus.yaml", "app:\n  name: ${1X}\nserver:\n  host: ${HOST\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config("nexus.yaml", env={"HOST": "h"})
    assert problems_of(excinfo) == [("nexus.yaml:2", "app.name"), ("nexus.yaml:4", "server.host")]
    assert "invalid reference '${1X}'" in excinfo.value.problems[0].message
    assert "or $${ for a literal '${'" in excinfo.value.problems[1].message


# --- YAML problems ----------------------------------------------------------------------------


def test_yaml_syntax_error_has_file_line_and_column(in_tmp: Path) -> None:
    """A syntax error points at file:line:column."""
    write(in_tmp / "nexus.yaml", "server:\n  port: 8000\n  host: a: b\n")
    with pytest.raises(ConfigError, match=r"nexus\.yaml:3:10: invalid YAML: mapping values"):
        load_config("nexus.yaml", env={})
    write(in_tmp / "flow.yaml", "server: {port: 1\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config("flow.yaml", env={})
    (problem,) = excinfo.value.problems
    assert problem.location == "flow.yaml:2:1"
    assert "while parsing a flow mapping started at line 1" in problem.message


def test_unprintable_characters_are_reported(in_tmp: Path) -> None:
    """Control characters the YAML reader rejects are reported against the file."""
    write(in_tmp / "nexus.yaml", "app:\n  name: a\x07b\n")
    with pytest.raises(ConfigError, match=r"nexus\.yaml: invalid YAML: unacceptable character"):
        load_config("nexus.yaml", env={})


def test_document_must_be_a_mapping(in_tmp: Path) -> None:
    """A top-level list or scalar is rejected; an empty file means defaults."""
    write(in_tmp / "list.yaml", "- app\n- server\n")
    write(in_tmp / "scalar.yaml", "\n\nhello\n")
    write(in_tmp / "empty.yaml", "# nothing yet\n")
    with pytest.raises(
        ConfigError, match=r"list\.yaml:1: the document must be a mapping.*got a list"
    ):
        load_config("list.yaml", env={})
    with pytest.raises(ConfigError, match=r"scalar\.yaml:3: .*got a single value"):
        load_config("scalar.yaml", env={})
    assert load_config("empty.yaml", env={}).server.port == 8000


def test_yaml_structure_problems(in_tmp: Path) -> None:
    """Duplicate keys, complex keys, unknown tags and recursive aliases are all reported."""
    write(
        in_tmp / "nexus.yaml",
        "server:\n"
        "  port: 1\n"
        "  port: 2\n"
        "plugins:\n"
        "  a:\n"
        "    ? [x]\n"
        "    : 1\n"
        "    when: !custom value\n"
        "    data: !custom {k: v}\n"
        "    items: !custom [1]\n"
        "    loop: &loop [*loop]\n"
        "  b:\n"
        "    <<: [1]\n",
    )
    with pytest.raises(ConfigError) as excinfo:
        load_config("nexus.yaml", env={})
    found = {(p.location, p.path, p.message.split(":")[0]) for p in excinfo.value.problems}
    assert found == {
        ("nexus.yaml:3", "server.port", "duplicate key 'port' (first at line 2); keep only one"),
        ("nexus.yaml:6", "plugins.a", "keys must be plain names, not mappings or lists"),
        ("nexus.yaml:8", "plugins.a.when", "invalid value"),
        ("nexus.yaml:9", "plugins.a.data", "unsupported YAML tag '!custom'"),
        ("nexus.yaml:10", "plugins.a.items", "unsupported YAML tag '!custom'"),
        (
            "nexus.yaml:11",
            "plugins.a.loop.0",
            "an alias refers to itself; recursive data is not allowed",
        ),
        ("nexus.yaml:13:10", "", "invalid YAML"),
    }


def test_anchors_and_merge_keys(in_tmp: Path) -> None:
    """YAML anchors and `<<` merges work, and the overriding key keeps its own line."""
    write(
        in_tmp / "nexus.yaml",
        "plugins:\n"
        "  a: &defaults\n"
        "    ttl: 5\n"
        "    size: 1\n"
        "  b:\n"
        "    <<: *defaults\n"
        "    size: 2\n"
        "  c: *defaults\n",
    )
    config = load_config("nexus.yaml", env={})
    assert config.plugins == {
        "a": {"ttl": 5, "size": 1},
        "b": {"ttl": 5, "size": 2},
        "c": {"ttl": 5, "size": 1},
    }
    assert config.source_of("plugins.b.size") == "nexus.yaml:7"
    assert config.source_of("plugins.b.ttl") == "nexus.yaml:3"


def test_every_problem_is_reported_at_once(in_tmp: Path) -> None:
    """Problems from both files, variables and validation arrive in one ConfigError."""
    write(
        in_tmp / "nexus.yaml",
        "server:\n"
        "  port: 70000\n"
        "  workers: many\n"
        "events:\n"
        "  transport: kafka\n"
        "app:\n"
        "  name: ${NAME}\n",
    )
    write(in_tmp / "nexus.development.yaml", "kernel:\n  setup_timeout: -1\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config("nexus.yaml", env={"NEXUS__SERVER__HOST": "[1,"})
    assert problems_of(excinfo) == [
        ("nexus.yaml:7", "app.name"),
        ("environment variable NEXUS__SERVER__HOST", "server.host"),
        ("nexus.yaml:2", "server.port"),
        ("nexus.yaml:3", "server.workers"),
        ("nexus.development.yaml:2", "kernel.setup_timeout"),
        ("nexus.yaml:5", "events.transport"),
    ]
    messages = [p.message for p in excinfo.value.problems]
    assert messages[2] == "Input should be less than or equal to 65535, got 70000"
    assert messages[3] == "Input should be a valid integer, got 'many'"
    assert messages[5] == "Input should be 'memory' or 'redis', got 'kafka'"
    assert str(excinfo.value).startswith("Invalid configuration (6 problems):\n  - nexus.yaml:7")


def test_unknown_sections_and_keys_list_the_known_ones(in_tmp: Path) -> None:
    """Typos in section names and kernel keys are caught with the valid names listed."""
    write(in_tmp / "nexus.yaml", "sever:\n  port: 1\nserver:\n  prot: 2\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config("nexus.yaml", env={"NEXUS__PLUGIN__X": "1"})
    assert [str(p) for p in excinfo.value.problems] == [
        "nexus.yaml:1: sever: unknown section 'sever'; known sections: app, data_dir, events, "
        "kernel, plugin_paths, plugins, server (did you mean 'server'?)",
        "environment variable NEXUS__PLUGIN__X: plugin: unknown section 'plugin'; known sections: "
        "app, data_dir, events, kernel, plugin_paths, plugins, server (did you mean 'plugins'?)",
        "nexus.yaml:4: server.prot: unknown key 'prot'; known keys: host, port, workers "
        "(did you mean 'port'?)",
    ]


# --- plugins ----------------------------------------------------------------------------------


def test_plugin_enabled_and_section(in_tmp: Path) -> None:
    """`enabled` defaults to true and is not part of the plugin's own section."""
    write(
        in_tmp / "nexus.yaml",
        "plugins:\n"
        "  auth:\n"
        "    enabled: false\n"
        "    realm: main\n"
        "  cache:\n"
        "  metrics: {enabled: 'yes'}\n",
    )
    config = load_config("nexus.yaml", env={})
    assert not config.plugin_enabled("auth")
    assert config.plugin_enabled("cache")
    assert config.plugin_enabled("metrics")
    assert config.plugin_enabled("not_configured")
    assert config.plugin_section("auth") == {"realm": "main"}
    assert config.plugin_section("cache") == {}
    assert config.plugin_section("not_configured") == {}
    assert config.plugins["auth"] == {"enabled": False, "realm": "main"}


def test_plugins_section_shape_is_checked(in_tmp: Path) -> None:
    """plugins must map names to mappings, and enabled must be a boolean."""
    write(
        in_tmp / "nexus.yaml",
        "plugins:\n  auth: [1, 2]\n  cache: 5\n  metrics:\n    enabled: sometimes\n",
    )
    with pytest.raises(ConfigError) as excinfo:
        load_config("nexus.yaml", env={})
    assert [str(p) for p in excinfo.value.problems] == [
        "nexus.yaml:2: plugins.auth: a plugin's settings must be a mapping (or empty), got a list",
        "nexus.yaml:3: plugins.cache: a plugin's settings must be a mapping (or empty), got 5",
        "nexus.yaml:5: plugins.metrics.enabled: must be true or false, got 'sometimes'",
    ]
    write(in_tmp / "list.yaml", "plugins: [auth]\n")
    with pytest.raises(
        ConfigError, match=r"list\.yaml:1: plugins: must be a mapping of plugin names"
    ):
        load_config("list.yaml", env={})


def test_empty_sections_mean_defaults(in_tmp: Path) -> None:
    """A section with everything commented out keeps defaults and merges nothing."""
    write(in_tmp / "nexus.yaml", "server:\n  port: 9\nplugins:\nplugin_paths:\ndata_dir:\n")
    write(in_tmp / "nexus.development.yaml", "server:\nkernel:\n")
    config = load_config("nexus.yaml", env={})
    assert (config.server.port, config.kernel, config.plugins) == (9, KernelSettings(), {})
    assert config.plugin_paths == []
    assert config.data_dir == in_tmp.resolve() / "data"


def test_validate_plugin_with_model_and_secret(in_tmp: Path) -> None:
    """A plugin's section is validated by its Config model, SecretStr included."""
    write(
        in_tmp / "nexus.yaml",
        "plugins:\n  user_manager:\n    enabled: true\n    max_users: 7\n    api_key: s3cr3t\n",
    )
    config = load_config("nexus.yaml", env={})
    settings = config.validate_plugin("user_manager", UserManagerConfig)
    assert isinstance(settings, UserManagerConfig)
    assert settings.max_users == 7
    assert settings.api_key.get_secret_value() == "s3cr3t"
    assert config.validate_plugin("other", UserManagerConfig) == UserManagerConfig()


def test_validate_plugin_errors_point_at_file_line_and_variable(in_tmp: Path) -> None:
    """Each plugin problem names the file:line or env var, the full key path and the input."""
    write(
        in_tmp / "nexus.yaml",
        "plugins:\n"
        "  user_manager:\n"
        "    max_users: lots\n"
        "    api_key: [not, a, string]\n"
        "    email_verifcation: true\n",
    )
    config = load_config(
        "nexus.yaml", env={"NEXUS__PLUGINS__USER_MANAGER__EMAIL_VERIFICATION": "perhaps"}
    )
    with pytest.raises(ConfigError) as excinfo:
        config.validate_plugin("user_manager", UserManagerConfig)
    assert [str(p) for p in excinfo.value.problems] == [
        "nexus.yaml:3: plugins.user_manager.max_users: Input should be a valid integer, got 'lots'",
        "nexus.yaml:4: plugins.user_manager.api_key: Input should be a valid string "
        "(value hidden: it is a secret)",
        "environment variable NEXUS__PLUGINS__USER_MANAGER__EMAIL_VERIFICATION: "
        "plugins.user_manager.email_verification: Input should be a valid boolean, got 'perhaps'",
        "nexus.yaml:5: plugins.user_manager.email_verifcation: unknown key 'email_verifcation'; "
        "known keys: api_key, email_verification, max_users (did you mean 'email_verification'?)",
    ]


class _Nested(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str
    sub: _Inner
    items: list[_Inner] = []
    headers: dict[str, SecretStr] = {}
    limits: dict[str, int] = {}
    motto: int = 0


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: SecretStr | None = None
    depth: int = 0


_Nested.model_rebuild()


def test_validate_plugin_nested_models_and_required_fields(in_tmp: Path) -> None:
    """Nested models report full paths; missing fields say where to add them."""
    write(
        in_tmp / "nexus.yaml",
        "plugins:\n"
        "  deep:\n"
        "    token: 5\n"
        "    sub: {password: 1, depth: x, extra: 1}\n"
        "    items:\n"
        "      - {depth: y}\n"
        "    headers: {auth: 1}\n"
        "    limits: {x: y}\n"
        f"    motto: {'long ' * 30}\n",
    )
    config = load_config("nexus.yaml", env={})
    with pytest.raises(ConfigError) as excinfo:
        config.validate_plugin("deep", _Nested)
    assert [str(p) for p in excinfo.value.problems] == [
        "nexus.yaml:3: plugins.deep.token: Input should be a valid string "
        "(value hidden: it is a secret)",
        "nexus.yaml:4: plugins.deep.sub.password: Input should be a valid string "
        "(value hidden: it is a secret)",
        "nexus.yaml:4: plugins.deep.sub.depth: Input should be a valid integer, got 'x'",
        "nexus.yaml:4: plugins.deep.sub.extra: unknown key 'extra'; known keys: depth, password",
        "nexus.yaml:6: plugins.deep.items.0.depth: Input should be a valid integer, got 'y'",
        "nexus.yaml:7: plugins.deep.headers.auth: Input should be a valid string "
        "(value hidden: it is a secret)",
        "nexus.yaml:8: plugins.deep.limits.x: Input should be a valid integer, got 'y'",
        "nexus.yaml:9: plugins.deep.motto: Input should be a valid integer, "
        f"got '{'long ' * 15}l...",
    ]
    with pytest.raises(ConfigError) as excinfo:
        load_config(env={}).validate_plugin("deep", _Nested)
    assert [str(p) for p in excinfo.value.problems] == [
        "defaults: plugins.deep.token: Field required; add it to the configuration file "
        "or set NEXUS__PLUGINS__DEEP__TOKEN",
        "defaults: plugins.deep.sub: Field required; add it to the configuration file "
        "or set NEXUS__PLUGINS__DEEP__SUB",
    ]


def test_plugin_without_config_model_rejects_settings(in_tmp: Path) -> None:
    """A plugin with no Config model may only have `enabled` in its section."""
    write(
        in_tmp / "nexus.yaml",
        "plugins:\n"
        "  plain:\n"
        "    enabled: true\n"
        "    colour: red\n"
        "    size: 2\n"
        "  quiet: {enabled: false}\n",
    )
    config = load_config("nexus.yaml", env={})
    assert config.validate_plugin("quiet", None) is None
    assert config.validate_plugin("absent", None) is None
    with pytest.raises(ConfigError) as excinfo:
        config.validate_plugin("plain", None)
    assert excinfo.value.problems == (
        Problem(
            "nexus.yaml:4",
            "plugins.plain",
            "plugin 'plain' takes no configuration, remove 'colour', 'size' "
            "(only 'enabled' is allowed here)",
        ),
    )


def test_validate_plugins_aggregates_every_plugin(in_tmp: Path) -> None:
    """One ConfigError lists the problems of all plugins."""
    write(
        in_tmp / "nexus.yaml",
        "plugins:\n"
        "  user_manager: {max_users: lots}\n"
        "  plain: {colour: red}\n"
        "  good: {max_users: 3}\n",
    )
    config = load_config("nexus.yaml", env={"NEXUS__PLUGINS__OTHER__MAX_USERS": "-"})
    models: dict[str, type[BaseModel] | None] = {
        "user_manager": UserManagerConfig,
        "plain": None,
        "other": UserManagerConfig,
        "good": UserManagerConfig,
    }
    with pytest.raises(ConfigError) as excinfo:
        config.validate_plugins(models)
    assert problems_of(excinfo) == [
        ("nexus.yaml:2", "plugins.user_manager.max_users"),
        ("nexus.yaml:3", "plugins.plain"),
        ("environment variable NEXUS__PLUGINS__OTHER__MAX_USERS", "plugins.other.max_users"),
    ]
    values = config.validate_plugins({"good": UserManagerConfig, "none": None})
    assert values == {"good": UserManagerConfig(max_users=3), "none": None}


# --- redaction --------------------------------------------------------------------------------


def test_redacted_hides_secrets(in_tmp: Path) -> None:
    """SecretStr values, secret-looking keys and DSN passwords are masked; the rest is shown."""
    write(
        in_tmp / "nexus.yaml",
        "http:\n"
        "  cors_origins: [https://example.com]\n"
        "plugins:\n"
        "  db:\n"
        "    dsn: postgresql://app:hunter2@db:5432/app\n"
        "    replica: redis://cache:6379/0\n"
        "    password: hunter2\n"
        "    DB_PASSWD: x\n"
        "    client_secret: x\n"
        "    access_token: x\n"
        "    token: x\n"
        "    apiKey: x\n"
        "    private_key: x\n"
        "    signing_key: x\n"
        "    credentials: {user: u, pass: p}\n"
        "    max_tokens: 100\n"
        "    token_count: 3\n"
        "    keyring: none\n"
        "    optional_secret: null\n"
        "    when: 2024-01-02\n"
        "    hosts: [{name: a, password: b}]\n",
    )
    config = load_config("nexus.yaml", env={}, sections={"http": HttpSettings})
    data = config.redacted()
    mask = "**********"
    assert data["http"] == {
        "cors_origins": ["https://example.com"],
        "session_secret": mask,
        "timeout": 10.0,
    }
    assert data["plugins"]["db"] == {
        "dsn": f"postgresql://app:{mask}@db:5432/app",
        "replica": "redis://cache:6379/0",
        "password": mask,
        "DB_PASSWD": mask,
        "client_secret": mask,
        "access_token": mask,
        "token": mask,
        "apiKey": mask,
        "private_key": mask,
        "signing_key": mask,
        "credentials": {"user": mask, "pass": mask},
        "max_tokens": 100,
        "token_count": 3,  # a number under a secret-looking key is a setting, not a secret
        "keyring": "none",
        "optional_secret": None,
        "when": "2024-01-02",
        "hosts": [{"name": "a", "password": mask}],
    }
    assert data["server"] == {"host": "127.0.0.1", "port": 8000, "workers": 1}
    assert data["plugin_paths"] == []
    assert data["data_dir"] == str(in_tmp.resolve() / "data")
    assert "hunter2" not in repr(data)


def test_redacted_plugin_uses_its_model(in_tmp: Path) -> None:
    """One plugin's settings, validated with its model when given, with secrets masked."""
    write(
        in_tmp / "nexus.yaml",
        "plugins:\n"
        "  user_manager: {enabled: true, api_key: s3cr3t, max_users: '9'}\n"
        "  raw: {url: 'mysql://root:pw@db/x', name: r}\n",
    )
    config = load_config("nexus.yaml", env={})
    assert config.redacted_plugin("user_manager", UserManagerConfig) == {
        "max_users": 9,
        "api_key": "**********",
        "email_verification": True,
    }
    assert config.redacted_plugin("raw", None) == {
        "url": "mysql://root:**********@db/x",
        "name": "r",
    }


# --- paths, sections, reload ------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_directory(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """plugin_paths and data_dir are relative to the base file's directory, not the cwd."""
    write(
        in_tmp / "deploy" / "nexus.yaml",
        "plugin_paths: [./plugins, ../shared, /opt/plugins]\ndata_dir: state\n",
    )
    (in_tmp / "elsewhere").mkdir()
    monkeypatch.chdir(in_tmp / "elsewhere")
    config = load_config("../deploy/nexus.yaml", env={})
    root = in_tmp.resolve()
    assert config.plugin_paths == [
        root / "deploy" / "plugins",
        root / "shared",
        Path("/opt/plugins"),
    ]
    assert config.data_dir == root / "deploy" / "state"
    assert config.source_of("plugin_paths.1") == "../deploy/nexus.yaml:1"


def test_bad_paths_and_values_are_reported(in_tmp: Path) -> None:
    """plugin_paths must be a list, data_dir a path, and mappings are not scalars."""
    write(in_tmp / "nexus.yaml", "plugin_paths: ./plugins\ndata_dir: [a]\napp: {name: {x: 1}}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config("nexus.yaml", env={})
    assert [str(p) for p in excinfo.value.problems] == [
        "nexus.yaml:3: app.name: Input should be a valid string, got a mapping",
        "nexus.yaml:1: plugin_paths: Input should be a valid list, got './plugins'",
        "nexus.yaml:2: data_dir: Input is not a valid path for <class 'pathlib.Path'>, got a list",
    ]


def test_extra_sections_are_validated(in_tmp: Path) -> None:
    """sections= adds top-level sections validated like the kernel's own."""
    write(in_tmp / "nexus.yaml", "http:\n  cors_origins: [a]\n  timeout: 0\n  tiemout: 1\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(
            "nexus.yaml", env={"NEXUS__HTTP__CORS_ORIGINS": "b"}, sections={"http": HttpSettings}
        )
    assert [str(p) for p in excinfo.value.problems] == [
        "environment variable NEXUS__HTTP__CORS_ORIGINS: http.cors_origins: "
        "Input should be a valid list, got 'b'",
        "nexus.yaml:3: http.timeout: Input should be greater than 0, got 0",
        "nexus.yaml:4: http.tiemout: unknown key 'tiemout'; known keys: cors_origins, "
        "session_secret, timeout (did you mean 'timeout'?)",
    ]
    with pytest.raises(ConfigError, match="unknown section 'http'"):
        load_config("nexus.yaml", env={})
    config = load_config(env={"NEXUS__HTTP__TIMEOUT": "3"}, sections={"http": HttpSettings})
    assert config.sections["http"] == HttpSettings(timeout=3)
    assert load_config(env={}, sections={"http": HttpSettings}).sections == {"http": HttpSettings()}


def test_extra_sections_cannot_replace_kernel_sections() -> None:
    """Redefining a built-in section is a programming error."""
    with pytest.raises(ValueError, match="cannot redefine built-in sections: plugins, server"):
        load_config(env={}, sections={"server": HttpSettings, "plugins": HttpSettings})


def test_changed_plugins(in_tmp: Path) -> None:
    """Sections that differ, flip enabled, appear or disappear count as changed."""
    before = _config_with(in_tmp, "a: {x: 1}\n  b: {x: 1}\n  c: {}\n  d: {enabled: true}\n")
    after = _config_with(in_tmp, "a: {x: 1}\n  b: {x: 2}\n  d: {enabled: false}\n  e:\n")
    assert before.changed_plugins(after) == {"b", "c", "d", "e"}
    assert before.changed_plugins(before) == set()


def _config_with(directory: Path, plugins: str) -> NexusConfig:
    write(directory / "nexus.yaml", f"plugins:\n  {plugins}")
    return load_config("nexus.yaml", env={})


def test_reload_picks_up_an_edited_file(in_tmp: Path) -> None:
    """reload() re-reads the same files with the same arguments."""
    env = {"NEXUS__SERVER__HOST": "example", "TTL": "5"}
    write(in_tmp / "nexus.yaml", "plugins:\n  cache: {ttl: '${TTL}'}\nhttp: {timeout: 2}\n")
    config = load_config(
        "nexus.yaml", environment="staging", env=env, sections={"http": HttpSettings}
    )
    write(
        in_tmp / "nexus.yaml", "plugins:\n  cache: {ttl: '${TTL}', size: 1}\nserver: {port: 81}\n"
    )
    write(in_tmp / "nexus.staging.yaml", "http: {timeout: 4}\n")
    reloaded = config.reload()
    assert reloaded.plugins["cache"] == {"ttl": "5", "size": 1}
    assert (reloaded.server.host, reloaded.server.port) == ("example", 81)
    assert reloaded.sections["http"] == HttpSettings(timeout=4)
    assert reloaded.environment == "staging"
    assert config.changed_plugins(reloaded) == {"cache"}
    assert config.server.port == 8000


def test_reload_reports_new_problems(in_tmp: Path) -> None:
    """A reload that finds an invalid file raises instead of returning a half-valid config."""
    write(in_tmp / "nexus.yaml", "server: {port: 1}\n")
    config = load_config("nexus.yaml", env={})
    write(in_tmp / "nexus.yaml", "server: {port: zero}\n")
    with pytest.raises(ConfigError, match=r"nexus\.yaml:1: server\.port: Input should be a valid"):
        config.reload()


def test_defaults_use_os_environ_when_env_is_not_given(in_tmp: Path) -> None:
    """Without env=, variables come from os.environ (read, never modified here)."""
    config = load_config(Path(write(in_tmp / "nexus.yaml", "app: {name: n}\n").name))
    assert config.app.name == "n"
    assert config.files == (Path("nexus.yaml"),)


def test_settings_are_immutable() -> None:
    """Validated settings cannot be changed by accident; reload to change them."""
    settings = ServerSettings()
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]


def test_source_of_parent_fallback(in_tmp: Path) -> None:
    """source_of falls back to the nearest parent, and the document path has a file source."""
    write(in_tmp / "nexus.yaml", "plugins:\n  cache: {sizes: [1, 2]}\n")
    config = load_config("nexus.yaml", env={"NEXUS__PLUGINS__X": '{"a": {"b": 1}}'})
    assert config.source_of("plugins.cache.sizes.1") == "nexus.yaml:2"
    assert config.source_of("plugins.x.a.b") == "environment variable NEXUS__PLUGINS__X"
    assert config.source_of("plugins.cache.sizes.x") == "default"
    assert config.source_of("") == "default"
    assert config.source_of("server") == "default"


def test_overrides_can_choose_the_environment() -> None:
    """Settings passed in code may select the environment, like the base file can."""
    config = load_config(None, env={}, overrides={"app": {"environment": "production"}})
    assert config.environment == "production"
    assert config.is_production


def test_redaction_keeps_settings_under_secret_looking_keys() -> None:
    """Flags and numeric settings named like secrets stay readable; their text is hidden."""
    from nexus.http.settings import HttpSettings as PlatformHttpSettings

    config = load_config(
        None,
        env={},
        overrides={
            "plugins": {"auth": {"password_hashing": {"time_cost": 3}, "signing_key": "k" * 44}},
            "http": {"cors": {"allow_credentials": True}},
        },
        sections={"http": PlatformHttpSettings},
    )
    data = config.redacted()
    assert data["plugins"]["auth"] == {
        "password_hashing": {"time_cost": 3},
        "signing_key": "**********",
    }
    assert data["http"]["cors"]["allow_credentials"] is True
