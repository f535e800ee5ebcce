"""A home's configuration file, <home>/medchain.toml, and how it meets flags and the
environment.

One table per long-running command: [node] (`medchain node`), [edge] (`medchain edge
serve`), [relay] (`medchain relay`) and [abci] (`medchain abci`). A value comes from,
strongest first: a command-line flag, an environment variable MEDCHAIN_<TABLE>_<KEY>
(e.g. MEDCHAIN_NODE_PORT=8701, MEDCHAIN_EDGE_VAULT_DIR=/srv/vault; lists as JSON), the
file, the built-in default. The file is read with pydantic-settings' TOML source; a key
the table does not have, a table the file may not have, or a value of the wrong type
is refused with the file's path and the key, never echoing the value (it may be a
secret put in the wrong place). Secrets (passphrases, key material, tokens) never
belong in the file: keys stay in the encrypted keystore, passphrases in
MEDCHAIN_PASSPHRASE or a terminal prompt; `medchain config show` masks them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import tomli_w
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from medchain.consensus.snapshots import DEFAULT_INTERVAL, DEFAULT_MAX_RESTORE_BYTES
from medchain.exceptions import MedChainError
from medchain.gateway.limit_config import Limits

CONFIG_NAME = "medchain.toml"
DEFAULT_NODE_PORT = 8700
DEFAULT_EDGE_PORT = 8710
MASK = "********"
SECRET_WORDS = ("passphrase", "password", "secret", "token", "private", "key_material")
# Environment variables the commands read besides the tables' own (shown, masked if secret).
OTHER_ENV = {
    "MEDCHAIN_HOME": False,
    "MEDCHAIN_NODE": False,
    "MEDCHAIN_CA": False,
    "MEDCHAIN_TLS_CLIENT_CERT": False,
    "MEDCHAIN_TLS_CLIENT_KEY": False,
    "MEDCHAIN_PASSPHRASE": True,
}
_LIMITS = Limits()

Origin = Literal["flag", "env", "file", "default"]


class ConfigError(MedChainError):
    """The configuration file or an override is wrong: the message names the file (or
    variable) and the key, and says what to do."""


class Section(BaseSettings):
    """One table of medchain.toml; a subclass per command. Values are read by
    `load_section` (flag > env > file > default); the class validates the merge."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)
    table: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the merged values `load_section` passes in: it reads the file and the
        environment itself, to know where each value came from."""
        return (init_settings,)


class LogOptions(Section):
    """How a serving command logs (gateway/logs.py): --log-format, --log-level."""

    log_format: Literal["json", "text"] = "text"  # gateway/logs.py DEFAULT_FORMAT
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"


class MetricsOptions(Section):
    """The unsigned metrics port for Prometheus (0: off): --metrics-port/--metrics-host."""

    metrics_port: int = Field(0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"


class TlsOptions(Section):
    """How a server serves HTTPS (paths only: the key file's bytes are never read here)."""

    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    insecure_http: bool = False


class NodeSettings(TlsOptions, LogOptions, MetricsOptions):
    """[node]: `medchain node`."""

    table: ClassVar[str] = "node"
    engine: Literal["solo", "cometbft"] = "solo"
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_NODE_PORT, ge=1, le=65535)
    block_interval: float = Field(0.2, gt=0)
    cometbft_ip: str = "127.0.0.1"
    public_port: int | None = Field(None, ge=1, le=65535)
    external_cometbft: bool = False
    snapshot_interval: int = Field(DEFAULT_INTERVAL, ge=0)
    state_sync_max_bytes: int = Field(DEFAULT_MAX_RESTORE_BYTES, gt=0)
    rate: float = Field(_LIMITS.rate, ge=0)
    burst: int = Field(_LIMITS.burst, ge=0)
    concurrency: int = Field(_LIMITS.concurrency, ge=0)
    max_waits: int = Field(_LIMITS.max_waits, ge=0)
    wait_cap: float = Field(_LIMITS.max_wait_seconds, ge=0)
    self_registration_rate: float = Field(_LIMITS.self_registration_rate, ge=0)
    self_registration_gateway_rate: float = Field(_LIMITS.self_registration_gateway_rate, ge=0)


class EdgeSettings(TlsOptions, LogOptions, MetricsOptions):
    """[edge]: `medchain edge serve`. vault_dir defaults to <home>/vaults/<org_id>."""

    table: ClassVar[str] = "edge"
    key: str | None = None
    node: list[str] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_EDGE_PORT, ge=1, le=65535)
    public_url: str | None = None
    vault_dir: Path | None = None
    rate: float = Field(_LIMITS.rate, ge=0)
    burst: int = Field(_LIMITS.burst, ge=0)
    concurrency: int = Field(_LIMITS.concurrency, ge=0)
    validate_workers: int = Field(0, ge=0)


class RelaySettings(LogOptions, MetricsOptions):
    """[relay]: `medchain relay` (business chain -> regulator chain)."""

    table: ClassVar[str] = "relay"
    business: str | None = None
    regulator: str | None = None
    key: str | None = None
    source: str | None = None
    batch: int = Field(50, ge=1)
    business_rpc: str | None = None


class AbciSettings(LogOptions):
    """[abci]: `medchain abci` (the app beside a CometBFT you run yourself)."""

    table: ClassVar[str] = "abci"
    address: str = "tcp://127.0.0.1:26658"
    snapshot_interval: int = Field(DEFAULT_INTERVAL, ge=0)
    state_sync_max_bytes: int = Field(DEFAULT_MAX_RESTORE_BYTES, gt=0)


SECTIONS: dict[str, type[Section]] = {
    s.table: s for s in (NodeSettings, EdgeSettings, RelaySettings, AbciSettings)
}


@dataclass(frozen=True)
class Loaded:
    """A table's effective settings and where each value came from."""

    settings: Section
    origins: Mapping[str, Origin]
    path: Path

    def rows(self) -> list[dict[str, Any]]:
        """(key, value, origin) for `medchain config show`, secrets masked."""
        out = []
        for name in type(self.settings).model_fields:
            value = getattr(self.settings, name)
            shown = MASK if is_secret(name, value) and value is not None else _plain(value)
            out.append({"key": name, "value": shown, "source": self.origins[name]})
        return out


def config_path(home: Path) -> Path:
    """Where a home's configuration file is."""
    return home / CONFIG_NAME


def env_name(table: str, key: str) -> str:
    """The environment variable that overrides `key` of `[table]`."""
    return f"MEDCHAIN_{table}_{key}".upper()


def is_secret(name: str, value: Any) -> bool:
    """Whether a setting holds a secret (by its type or its name): shown masked."""
    return isinstance(value, SecretStr) or any(w in name.lower() for w in SECRET_WORDS)


def read_file(path: Path) -> dict[str, Any]:
    """The file's tables, checked: only the known tables, only their keys. A missing
    file is an empty one. Values are checked when a table is loaded."""
    if not path.exists():
        return {}
    try:
        data = TomlConfigSettingsSource(NodeSettings, toml_file=path).toml_data
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it: {e.strerror}") from None
    for table, body in data.items():
        if table not in SECTIONS:
            raise ConfigError(
                f"{path}: unknown table [{table}]; the file may have "
                + ", ".join(f"[{t}]" for t in SECTIONS)
            )
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: {table} must be a table ([{table}])")
        fields = SECTIONS[table].model_fields
        for key in body:
            if key not in fields:
                raise ConfigError(
                    f"{path}: unknown key {key!r} in [{table}]; known keys: " + ", ".join(fields)
                )
    return dict(data)


def read_env(section: type[Section]) -> dict[str, Any]:
    """The table's values set in the environment (MEDCHAIN_<TABLE>_<KEY>)."""
    source = EnvSettingsSource(section, env_prefix=f"MEDCHAIN_{section.table}_".upper())
    try:
        values = source()
    except SettingsError as e:  # e.g. a list that is not JSON
        raise ConfigError(f"environment: {e} (lists are JSON, e.g. '[\"https://a\"]')") from None
    return {k: v for k, v in values.items() if k in section.model_fields}


def load_section(
    section: type[Section],
    home: Path,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, Any] | None = None,
) -> Loaded:
    """The effective settings of `section` for a command run on `home`: `flags` (given
    on the command line) over `env` (values the command line took from its own
    environment variables, e.g. MEDCHAIN_NODE for --node) and MEDCHAIN_<TABLE>_<KEY>,
    over <home>/medchain.toml, over the defaults. ConfigError says which file or
    variable and which key is wrong."""
    path = config_path(home)
    layers: list[tuple[Origin, dict[str, Any]]] = [
        ("file", dict(read_file(path).get(section.table, {}))),
        ("env", {**read_env(section), **dict(env or {})}),
        ("flag", dict(flags or {})),
    ]
    merged: dict[str, Any] = {}
    origins: dict[str, Origin] = {name: "default" for name in section.model_fields}
    for origin, values in layers:
        for key, value in values.items():
            merged[key], origins[key] = value, origin
    try:
        settings = section(**merged)
    except ValidationError as e:
        raise ConfigError(_explain(e, section, origins, path)) from None
    return Loaded(settings, origins, path)


def _explain(
    e: ValidationError, section: type[Section], origins: dict[str, Origin], path: Path
) -> str:
    """A validation error as one line per bad key, naming where the value came from
    (never the value itself)."""
    lines = []
    for error in e.errors():
        key = str(error["loc"][0]) if error["loc"] else "?"
        where = {
            "file": f"{path} [{section.table}] {key}",
            "env": f"environment {env_name(section.table, key)}",
            "flag": f"option --{key.replace('_', '-')}",
        }.get(origins.get(key, "default"), f"default of [{section.table}] {key}")
        lines.append(f"{where}: {error['msg']}")
    return "; ".join(lines)


def other_environment() -> list[dict[str, Any]]:
    """The other MEDCHAIN_* variables the commands read that are set, secrets masked."""
    return [
        {"key": name, "value": MASK if secret else os.environ[name], "source": "env"}
        for name, secret in OTHER_ENV.items()
        if os.environ.get(name)
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def render(tables: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The text of a medchain.toml: every table with each key either set (from `tables`)
    or commented out at its default, so an operator sees every key there is."""
    tables = tables or {}
    lines = [
        "# MedChain configuration of this home. Strongest first: a command-line flag,",
        "# an environment variable MEDCHAIN_<TABLE>_<KEY> (e.g. MEDCHAIN_NODE_PORT), this",
        "# file, the default. Uncomment a key to change it; `medchain config show` prints",
        "# the effective values and where each came from. No secrets here: keys stay in",
        "# keys/ (encrypted), passphrases in MEDCHAIN_PASSPHRASE or a prompt.",
    ]
    for table, section in SECTIONS.items():
        lines += ["", f"[{table}]"]
        chosen = tables.get(table, {})
        for name, field in section.model_fields.items():
            if name in chosen:
                lines.append(f"{name} = {_toml_value(chosen[name])}")
                continue
            default = field.get_default(call_default_factory=True)
            lines.append(f"# {name} =" if default is None else f"# {name} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    return tomli_w.dumps({"v": _plain(value)}).strip().removeprefix("v = ")


def write_file(home: Path, tables: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Write <home>/medchain.toml: the commented defaults, with `tables`' values set
    (`medchain init` sets none; `medchain localnet` sets each node's own). Each value
    is checked as a load would, so a wrong one fails here, not at the node's start."""
    for table, values in (tables or {}).items():
        SECTIONS[table](**values)
    path = config_path(home)
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(render(tables))
    return path
