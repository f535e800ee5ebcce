"""What lets scripts rely on `medchain`: exit codes, one table from errors to them,
`--json`, `--version`, `--debug`, passphrase files, the home/node chain check, and
output that is not cut short when piped.

Every command runs inside `ScriptableGroup.invoke`: an error a command does not
handle itself ends there, as one line and a next step (a traceback only with
--debug or MEDCHAIN_DEBUG), with the exit code `exit_code_of` gives it.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import socket
import sqlite3
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer._click.core import Command, Context, Parameter, ParameterSource  # vendored click
from typer._click.exceptions import ClickException
from typer._click.globals import get_current_context
from typer.core import TyperGroup

from medchain.exceptions import InvalidTransaction, MedChainError


class Exit(IntEnum):
    """The exit codes of every `medchain` command (docs/operations.md, `medchain --help`)."""

    OK = 0
    REFUSED = 1
    BAD_INPUT = 2
    NOT_FOUND = 3
    UNAUTHORISED = 4
    UNREACHABLE = 5
    PARTIAL = 6
    WRONG_CHAIN = 7
    PORT_TAKEN = 8
    INTERNAL = 70
    INTERRUPTED = 130


MEANINGS: dict[Exit, str] = {
    Exit.OK: "done",
    Exit.REFUSED: "refused: the chain refused the tx, or the edge the request, "
    "or a proof or receipt does not verify",
    Exit.BAD_INPUT: "bad input: usage, an invalid or unreadable file, a malformed value",
    Exit.NOT_FOUND: "not found: no such record, grant, key, tx or state key",
    Exit.UNAUTHORISED: "unauthorised: the key may not do or see this, or a wrong passphrase",
    Exit.UNREACHABLE: "unreachable: no node or edge answered (or it is overloaded); retry",
    Exit.PARTIAL: "partial: some of the work was done, some refused or left unresolved",
    Exit.WRONG_CHAIN: "wrong chain: --home and --node (or a tx) belong to different chains",
    Exit.PORT_TAKEN: "port taken: a server cannot listen on its address",
    Exit.INTERNAL: "internal error: a fault in this program or the node",
    Exit.INTERRUPTED: "interrupted (Ctrl-C)",
}

EPILOG = "Exit codes: " + "; ".join(f"{int(c)} {m.split(':')[0]}" for c, m in MEANINGS.items())

# Error code names (InvalidTransaction codes, gateway, edge and client errors) -> exit code.
_BY_ERROR_CODE: dict[str, Exit] = {
    **dict.fromkeys(
        ("NOT_FOUND", "UNKNOWN_CONTRACT", "UNKNOWN_ACTION", "HTTP_404"), Exit.NOT_FOUND
    ),
    **dict.fromkeys(
        (
            "UNAUTHENTICATED",
            "UNAUTHORIZED",
            "BAD_SIGNATURE",
            "UNKNOWN_SIGNER",
            "SIGNER_INACTIVE",
            "INVALID_TOKEN",
            "INVALID_CLIENT",
            "HTTP_401",
            "HTTP_403",
        ),
        Exit.UNAUTHORISED,
    ),
    **dict.fromkeys(
        (
            "UNREACHABLE",
            "TIMEOUT",
            "RATE_LIMITED",
            "MEMPOOL_FULL",
            "EDGE_BUSY",
            "TEMPORARILY_UNAVAILABLE",
        ),
        Exit.UNREACHABLE,
    ),
    **dict.fromkeys(
        (
            "MALFORMED",
            "TLS_UNTRUSTED",  # a --ca to fix, not a server to wait for
            "BAD_ID",
            "TOO_LARGE",
            "INVALID_PAYLOAD",
            "UNKNOWN_SUITE",
            "INVALID_RECORD",
            "INVALID_EPCIS",
            "UNSUPPORTED_MEDIA_TYPE",
            "INVALID_REQUEST",
        ),
        Exit.BAD_INPUT,
    ),
    "WRONG_CHAIN": Exit.WRONG_CHAIN,
    **dict.fromkeys(("INTERNAL", "TAMPERED_BLOB"), Exit.INTERNAL),
}
_BY_STATUS: dict[int, Exit] = {
    400: Exit.BAD_INPUT,
    401: Exit.UNAUTHORISED,
    403: Exit.UNAUTHORISED,
    404: Exit.NOT_FOUND,
    413: Exit.BAD_INPUT,
    415: Exit.BAD_INPUT,
    422: Exit.BAD_INPUT,
    429: Exit.UNREACHABLE,
    502: Exit.UNREACHABLE,
    503: Exit.UNREACHABLE,
    504: Exit.UNREACHABLE,
}


def exit_code_for(error_code: str, status: int = 0) -> Exit:
    """The exit code for an error answer: by its code name, else by its HTTP status
    (5xx: the node's fault), else REFUSED (the chain or edge said no)."""
    if error_code in _BY_ERROR_CODE:
        return _BY_ERROR_CODE[error_code]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return Exit.INTERNAL
    return Exit.REFUSED


@dataclass(frozen=True)
class Failure:
    """Why a command failed, as a script sees it: exit code, error code, message, hint."""

    exit: Exit
    error: str
    message: str
    hint: str = ""


DEBUG_HINT = "rerun with --debug (or MEDCHAIN_DEBUG=1) for the traceback, and report it"


def failure_of(e: BaseException) -> Failure:
    """The one table from an exception a command let through to its exit code."""
    code = getattr(e, "code", None)
    message = str(getattr(e, "message", "") or e)
    hint = str(getattr(e, "hint", "") or "")
    if isinstance(e, InvalidTransaction):
        return Failure(exit_code_for(e.code.name), e.code.name, e.message)
    if isinstance(e, MedChainError) and type(e).__name__ == "KeystoreError":
        return _keystore_failure(message)
    if isinstance(e, MedChainError) and isinstance(code, str):
        status = int(getattr(e, "status", 0) or 0)
        return Failure(exit_code_for(code, status), code, message.removeprefix(f"{code}: "), hint)
    if isinstance(e, httpx.TransportError):
        where = str(e.request.url) if _has_request(e) else "the server"
        return Failure(
            Exit.UNREACHABLE, "UNREACHABLE", f"cannot reach {where}: {e}", "is it running?"
        )
    if isinstance(e, json.JSONDecodeError):
        return Failure(Exit.BAD_INPUT, "BAD_INPUT", f"not valid JSON: {e}")
    if isinstance(e, OSError):
        return _os_failure(e)
    if isinstance(e, sqlite3.DatabaseError):
        return Failure(
            Exit.INTERNAL,
            "DATABASE",
            f"database error: {e}",
            "the SQLite file may be damaged: restore it from a backup; --debug shows where",
        )
    if isinstance(e, RuntimeError) and "port in use?" in str(e):  # HttpServer.start
        return Failure(Exit.PORT_TAKEN, "PORT_TAKEN", str(e), "choose another --port")
    return Failure(Exit.INTERNAL, "INTERNAL", f"{type(e).__name__}: {e}", DEBUG_HINT)


def _has_request(e: httpx.TransportError) -> bool:
    try:
        e.request  # noqa: B018 (raises when the error carries no request)
    except RuntimeError:
        return False
    return True


def _keystore_failure(message: str) -> Failure:
    if message.startswith("no key named"):
        return Failure(Exit.NOT_FOUND, "NO_KEY", message, "list keys with `medchain keys list`")
    if message.startswith("wrong passphrase"):
        return Failure(
            Exit.UNAUTHORISED,
            "WRONG_PASSPHRASE",
            message,
            "check MEDCHAIN_PASSPHRASE_<KEY>, --passphrase-file or MEDCHAIN_PASSPHRASE",
        )
    return Failure(Exit.BAD_INPUT, "BAD_KEY", message)


def _os_failure(e: OSError) -> Failure:
    if e.errno == errno.EADDRINUSE:
        return Failure(
            Exit.PORT_TAKEN, "PORT_TAKEN", f"address in use: {e}", "choose another --port"
        )
    if e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT):
        return Failure(Exit.UNREACHABLE, "UNREACHABLE", str(e), "is the server running?")
    if isinstance(e, FileNotFoundError | IsADirectoryError | NotADirectoryError | PermissionError):
        return Failure(Exit.BAD_INPUT, "BAD_FILE", str(e), "check the path and its permissions")
    return Failure(Exit.INTERNAL, "INTERNAL", f"{type(e).__name__}: {e}", DEBUG_HINT)


# -- output -------------------------------------------------------------------


@dataclass
class Output:
    """What this run prints: with --json, the one JSON document that goes to stdout at
    the end (messages go to stderr), and the failure that ended it, if any."""

    json: bool = False
    debug: bool = False
    documents: list[Any] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    txs: list[Any] = field(default_factory=list)
    failure: Failure | None = None
    passphrase_file: Path | None = None


output = Output()
err = Console(stderr=True)


class ScriptConsole(Console):
    """stdout for commands: in --json mode a table becomes a JSON list of rows (keyed by
    its column headers) in the run's document, and text goes to stderr."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Print as Rich does, or in --json mode as this class's docstring says."""
        if not output.json:
            super().print(*objects, **kwargs)
            return
        for o in objects:
            if isinstance(o, Table):
                output.documents.append(table_rows(o))
            else:
                output.messages.append(Text.from_markup(o).plain if isinstance(o, str) else str(o))
                super().print(o, **kwargs)  # to stderr: _set_json points this console there


stdout = ScriptConsole()


def table_rows(table: Table) -> list[dict[str, str]]:
    """A Rich table's rows as objects keyed by its column headers, full cell text."""

    def plain(cell: Any) -> str:
        if isinstance(cell, Text):
            return cell.plain
        return Text.from_markup(cell).plain if isinstance(cell, str) else str(cell)

    headers = [plain(c.header) for c in table.columns]
    columns = [list(c.cells) for c in table.columns]
    return [
        {h: plain(col[i]) for h, col in zip(headers, columns, strict=True)}
        for i in range(table.row_count)
    ]


def emit(value: Any, show: Callable[[], object] | None = None) -> None:
    """A command's answer: the run's JSON document with --json; otherwise `show()` if
    given, else the value as highlighted JSON."""
    if output.json:
        output.documents.append(value)
    elif show is not None:
        show()
    else:
        stdout.print_json(json.dumps(value))


def note_tx(result: Any) -> None:
    """Keep a tx's answer for the --json document of a command that prints only text."""
    output.txs.append(result)


def raise_failure(failure: Failure) -> NoReturn:
    """Print a failure as one line and the next step on stderr, keep it for the --json
    document, and end the command with its exit code."""
    output.failure = failure
    err.print(f"[red]error:[/] {failure.message}", highlight=False)
    if failure.hint:
        err.print(f"[yellow]next:[/] {failure.hint}", highlight=False)
    raise typer.Exit(int(failure.exit))


def _document(exit_code: int) -> Any:
    """The one JSON document of a --json run that ends with `exit_code`."""
    result: Any = output.documents[0] if len(output.documents) == 1 else output.documents
    if not output.documents:
        result = {"ok": exit_code == 0, "messages": output.messages}
        if output.txs:
            result["txs"] = output.txs
    if exit_code == 0:
        return result
    f = output.failure or _unreported(result, exit_code)
    doc: dict[str, Any] = {
        "ok": False,
        "exit_code": exit_code,
        "error": {"code": f.error, "message": f.message, "hint": f.hint},
    }
    if output.documents or output.txs:
        doc["result"] = result
    return doc


def _unreported(result: Any, exit_code: int) -> Failure:
    """The failure of a command that printed its answer and exited non-zero (`tx` of a
    refused tx: the chain's code and log)."""
    if isinstance(result, dict) and result.get("code_name"):
        code = Exit(exit_code) if exit_code in Exit._value2member_map_ else Exit.REFUSED
        return Failure(code, str(result["code_name"]), str(result.get("log", "")))
    return Failure(Exit.REFUSED, "FAILED", "; ".join(output.messages[-1:]))


# -- passphrases --------------------------------------------------------------


def env_name(key_name: str) -> str:
    """MEDCHAIN_PASSPHRASE_<KEY>: the key name upper-cased, other than A-Z0-9 as '_'."""
    return "MEDCHAIN_PASSPHRASE_" + "".join(c if c.isalnum() else "_" for c in key_name.upper())


def stored_passphrase(key_name: str | None) -> str | None:
    """A key's passphrase without asking: MEDCHAIN_PASSPHRASE_<KEY>, then the
    --passphrase-file (one passphrase on its first line, or a JSON object of key
    name -> passphrase), then MEDCHAIN_PASSPHRASE; None if none of them has one."""
    if key_name is not None and os.environ.get(env_name(key_name)):
        return os.environ[env_name(key_name)]
    path = output.passphrase_file
    if path is not None:
        found = _from_file(path, key_name)
        if found is not None:
            return found
    return os.environ.get("MEDCHAIN_PASSPHRASE") or None


def _from_file(path: Path, key_name: str | None) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as e:
        raise_failure(Failure(Exit.BAD_INPUT, "BAD_FILE", f"cannot read --passphrase-file: {e}"))
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        err.print(
            f"[yellow]warning:[/] {path} is readable by others than its owner; chmod 600 it",
            highlight=False,
        )
    if not text.lstrip().startswith("{"):
        return text.split("\n", 1)[0].rstrip("\r") or None
    try:
        table = json.loads(text)
    except json.JSONDecodeError as e:
        raise_failure(
            Failure(Exit.BAD_INPUT, "BAD_FILE", f"--passphrase-file {path} is not JSON: {e}")
        )
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise_failure(
            Failure(
                Exit.BAD_INPUT,
                "BAD_FILE",
                f"--passphrase-file {path} must map key names to passphrases",
                'e.g. {"admin": "...", "dr-li": "..."}',
            )
        )
    return table.get(key_name) if key_name is not None else None


# -- checks before a command runs ---------------------------------------------

SERVER_COMMANDS = frozenset({"node", "serve", "mllp"})


def check_port_free(host: str, port: int) -> None:
    """Fail with PORT_TAKEN, before anything starts, if `host:port` cannot be bound
    (as uvicorn binds: SO_REUSEADDR, so only a listener in use blocks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            raise_failure(
                Failure(
                    Exit.PORT_TAKEN,
                    "PORT_TAKEN",
                    f"port {port} on {host} is taken (another process listens there)",
                    "stop that process, or choose another --port",
                )
            )


def check_same_chain(home: Path, node: str | list[str]) -> None:
    """Fail with WRONG_CHAIN when the home's genesis names another chain than the node
    serves (its GET /v1/status). A home without a genesis (a member's keys only) is
    not checked, nor a node that does not answer (the command's own checks come
    first, and it reports the node unreachable if it needs it)."""
    from medchain.node import NodeHome
    from medchain.sdk.client import NO_RETRY, Client, ClientError

    node_home = NodeHome(home)
    if not node_home.genesis_path.exists():
        return
    ours = node_home.genesis().chain_id
    with Client(node, retry=NO_RETRY) as client:
        try:
            theirs = client.status()["chain_id"]
        except ClientError as e:
            if e.code == "UNREACHABLE":
                return  # nothing to compare: the command says so if it needs the node
            raise
        url = client.url
    if ours != theirs:
        raise_failure(
            Failure(
                Exit.WRONG_CHAIN,
                "WRONG_CHAIN",
                f"--home {home} is chain {ours!r}, but --node {url} serves chain {theirs!r}",
                "pass the node of the home's chain, or the home made for that chain "
                "(MEDCHAIN_HOME / MEDCHAIN_NODE)",
            )
        )


def _before(name: str, kwargs: dict[str, Any]) -> None:
    """The checks every command gets from its parameters, before its body runs. A port
    is probed only when given (flag or environment): one left out may come from the
    home's medchain.toml, and a server that cannot bind fails as PORT_TAKEN anyway."""
    if name in SERVER_COMMANDS:
        ctx = get_current_context(silent=True)
        host = str(kwargs.get("host") or "127.0.0.1")
        for option in ("port", "public_port"):
            port = kwargs.get(option)
            given = ctx is not None and ctx.get_parameter_source(option) in _GIVEN
            if given and isinstance(port, int) and port > 0:
                check_port_free(host, port)
    home, node = kwargs.get("home"), kwargs.get("node")
    if home is not None and node:
        check_same_chain(Path(home), node)


_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


# -- the root group -----------------------------------------------------------


def _set_json(ctx: Context, param: Parameter, value: Any) -> Any:
    if value:
        output.json = True
        stdout.file = sys.stderr
    return value


def _set_debug(ctx: Context, param: Parameter, value: Any) -> Any:
    if value:
        output.debug = True
    return value


def _set_passphrase_file(ctx: Context, param: Parameter, value: Any) -> Any:
    if value:
        output.passphrase_file = Path(value)
    return value


def version() -> str:
    """This installation's MedChain version."""
    try:
        return metadata.version("medchain")
    except metadata.PackageNotFoundError:
        from medchain import __version__

        return __version__


def _show_version(ctx: Context, param: Parameter, value: Any) -> None:
    if not value or ctx.resilient_parsing:
        return
    print(json.dumps({"medchain": version()}) if output.json else f"medchain {version()}")
    raise typer.Exit(0)


def _options() -> dict[str, Parameter]:
    """The global options, built by Typer (it vendors click) from a template command."""
    template = typer.Typer()

    @template.command()
    def options(
        version: Annotated[
            bool, typer.Option("--version", is_eager=True, help="print the version and exit")
        ] = False,
        json_out: Annotated[
            bool,
            typer.Option(
                "--json",
                is_eager=True,
                help="print one JSON document on stdout (messages go to stderr)",
            ),
        ] = False,
        debug: Annotated[
            bool,
            typer.Option(
                "--debug",
                envvar="MEDCHAIN_DEBUG",
                help="show the traceback of an unexpected error (also MEDCHAIN_DEBUG=1)",
            ),
        ] = False,
        passphrase_file: Annotated[
            Path | None,
            typer.Option(
                "--passphrase-file",
                envvar="MEDCHAIN_PASSPHRASE_FILE",
                dir_okay=False,
                help="file with the key passphrase (first line), or a JSON object of key "
                "name -> passphrase; MEDCHAIN_PASSPHRASE_<KEY> overrides it per key",
            ),
        ] = None,
    ) -> None:
        """Never run: its options are copied onto the real commands."""

    params = {p.name or "": p for p in typer.main.get_command(template).params}
    callbacks = {
        "version": _show_version,
        "json_out": _set_json,
        "debug": _set_debug,
        "passphrase_file": _set_passphrase_file,
    }
    for name, callback in callbacks.items():
        params[name].callback = callback
        params[name].expose_value = False
    return params


def _scriptable(command: Command, json_option: Parameter, passphrase_file: Parameter) -> None:
    """Give a command --json (or make its own --json set the run's mode) and
    --passphrase-file, and run `_before` ahead of its body."""
    if not any("--passphrase-file" in getattr(p, "opts", []) for p in command.params):
        command.params.append(passphrase_file)
    own = [p for p in command.params if "--json" in getattr(p, "opts", [])]
    for p in own:
        previous = p.callback

        def chained(ctx: Context, param: Parameter, value: Any, previous: Any = previous) -> Any:
            _set_json(ctx, param, value)
            return previous(ctx, param, value) if previous else value

        p.callback = chained
    if not own:
        command.params.append(json_option)
    body = command.callback
    if body is None:
        return
    name = command.name or ""

    @functools.wraps(body)
    def run(*args: Any, **kwargs: Any) -> Any:
        _before(name, kwargs)
        return body(*args, **kwargs)

    command.callback = run


def _walk(group: TyperGroup, options: dict[str, Parameter]) -> None:
    for command in group.commands.values():
        if isinstance(command, TyperGroup):
            _walk(command, options)
        else:
            _scriptable(command, options["json_out"], options["passphrase_file"])


class ScriptableGroup(TyperGroup):
    """The root `medchain` group: global --version, --json, --debug, --passphrase-file;
    every command made scriptable (`_scriptable`); errors mapped to exit codes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Build the group as Typer does, then add the global options and wrap every command."""
        kwargs["epilog"] = kwargs.get("epilog") or EPILOG
        super().__init__(*args, **kwargs)
        options = _options()
        self.params += list(options.values())
        _walk(self, options)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: Context | None = None,
        **extra: Any,
    ) -> Context:
        """Start each run with a fresh output state (tests run many in one process)."""
        global output
        output = Output()
        _fit_width()
        return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Context) -> Any:
        """Run the command; map what it lets through to an exit code (module docstring);
        with --json print the run's one JSON document last."""
        code = 0
        try:
            return super().invoke(ctx)
        except typer.Exit as e:
            code = e.exit_code
            raise
        except ClickException as e:
            code = Exit.BAD_INPUT
            if not output.json:
                e.exit_code = Exit.BAD_INPUT
                raise
            output.failure = Failure(Exit.BAD_INPUT, "USAGE", e.format_message())
            err.print(f"[red]error:[/] {e.format_message()}", highlight=False)
            raise typer.Exit(code) from None
        except (KeyboardInterrupt, typer.Abort):
            code = Exit.INTERRUPTED
            err.print("interrupted")
            raise typer.Exit(code) from None
        except Exception as e:  # the CLI's last resort: one line and an exit code
            if output.debug:
                raise
            failure = failure_of(e)
            code = failure.exit
            raise_failure(failure)
        finally:
            if output.json:
                sys.stdout.write(json.dumps(_document(code)) + "\n")
                sys.stdout.flush()


def _fit_width() -> None:
    """Piped output is never wrapped or cut (full DIDs in tables); a terminal's is."""
    stdout._file = None  # back to sys.stdout, which a test runner may have replaced
    for c in (stdout, err):
        c._width = None
        c._width = None if c.is_terminal else 1_000_000
