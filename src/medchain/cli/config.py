"""`medchain config show`, and how the serving commands (node, edge serve, relay, abci)
read <home>/medchain.toml under their flags and environment (node/config.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from medchain.cli.common import DEFAULT_HOME, Home, console, fail, print_json
from medchain.node.config import (
    SECTIONS,
    ConfigError,
    Section,
    config_path,
    load_section,
    other_environment,
)

config_app = typer.Typer(help="This home's configuration (medchain.toml).", no_args_is_help=True)
S = TypeVar("S", bound=Section)


def register(app: typer.Typer) -> None:
    """Add the `config` command group."""
    app.add_typer(config_app, name="config")


def settings_of(ctx: typer.Context, section: type[S], home: Path) -> S:
    """The command's effective settings: its options given on the command line, over
    the values its options took from their environment variables and MEDCHAIN_<TABLE>_*,
    over <home>/medchain.toml, over the defaults. A wrong file or value ends the
    command with the file and key to fix (no traceback)."""
    flags: dict[str, Any] = {}
    env: dict[str, Any] = {}
    for name in section.model_fields:
        if name not in ctx.params:
            continue
        source = ctx.get_parameter_source(name)
        origin = "" if source is None else source.name  # click's ParameterSource
        if origin == "COMMANDLINE":
            flags[name] = ctx.params[name]
        elif origin == "ENVIRONMENT":
            env[name] = ctx.params[name]
    try:
        loaded = load_section(section, home, flags, env)
    except ConfigError as e:
        fail(escape(str(e)), f"fix it, then check with `medchain config show --home {home}`")
    settings = loaded.settings
    assert isinstance(settings, section)
    return settings


@config_app.command("show")
def config_show(
    home: Home = DEFAULT_HOME,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The effective configuration of every serving command (node, edge, relay, abci)
    on this home: each value and where it came from (flag, env, file, default), as
    MEDCHAIN_* variables and <home>/medchain.toml set it now; secrets masked."""
    path = config_path(home)
    try:
        tables = {name: load_section(s, home).rows() for name, s in SECTIONS.items()}
    except ConfigError as e:
        fail(escape(str(e)), f"fix {path}")
    environment = other_environment()
    if as_json:
        doc = {
            "file": str(path),
            "file_exists": path.exists(),
            "tables": tables,
            "environment": environment,
        }
        print_json(doc)
        return
    console.print(escape(f"{path} ({'read' if path.exists() else 'absent: defaults'})"))
    for name, rows in tables.items():
        table = Table("key", "value", "source", title=escape(f"[{name}]"), title_justify="left")
        for row in rows:
            table.add_row(row["key"], escape(_shown(row["value"])), row["source"])
        console.print(table)
    if environment:
        table = Table("variable", "value", title="other environment", title_justify="left")
        for row in environment:
            table.add_row(row["key"], escape(row["value"]))
        console.print(table)


def _shown(value: Any) -> str:
    return "-" if value is None else value if isinstance(value, str) else json.dumps(value)
