"""What every `medchain` command shares: consoles, options, keys, failing well."""

from __future__ import annotations

import getpass
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from medchain import crypto
from medchain.cli import scripting
from medchain.cli.scripting import Exit
from medchain.gateway import logs
from medchain.gateway.limit_config import Limits
from medchain.node import DEFAULT_PORT, NodeHome
from medchain.sdk.client import Client, ClientError
from medchain.sdk.keystore import KeystoreError, check_new_passphrase
from medchain.sdk.tls import (
    ClientTls,
    ServerTls,
    TlsError,
    default_client_tls,
    server_context,
    use_client_tls,
)

console = scripting.stdout  # --json sends its text to stderr; piped, it is never cut short
err = scripting.err

_ca_given = False  # --ca / MEDCHAIN_CA names the CA: a command's --home does not replace it


def trust_home(home: Path) -> Path:
    """--home callback: unless --ca was given, this command's clients trust the CA in
    <home>/tls/ca.pem (made by `medchain init`), or the system store if it has none."""
    if not _ca_given:
        ca = NodeHome(home).tls.ca_cert
        current = default_client_tls()
        use_client_tls(ClientTls(ca if ca.exists() else None, current.cert, current.key))
    return home


def choose_trust(ca: Path | None, cert: Path | None, key: Path | None, home: Path) -> None:
    """Set what every client of this `medchain` run trusts (`ca`, else the home's CA)
    and presents for mutual TLS (`cert`, `key`); unreadable files fail here."""
    global _ca_given
    if (cert is None) != (key is None):
        fail("--tls-client-cert and --tls-client-key go together")
    use_client_tls(ClientTls(None, cert, key))
    if ca is None:
        trust_home(home)
    else:
        _ca_given = True
        use_client_tls(ClientTls(ca, cert, key))
    try:
        default_client_tls().context()
    except TlsError as e:
        fail(str(e), "check the --ca / --tls-client-cert / --tls-client-key paths")


Home = Annotated[
    Path,
    typer.Option("--home", envvar="MEDCHAIN_HOME", help="node home directory", callback=trust_home),
]
NodeUrl = Annotated[str, typer.Option("--node", envvar="MEDCHAIN_NODE", help="gateway URL")]
DEFAULT_HOME = Path.home() / ".medchain"
DEFAULT_URL = f"https://127.0.0.1:{DEFAULT_PORT}"

TlsCert = Annotated[
    Path | None,
    typer.Option(help="certificate (PEM) to serve HTTPS with (default: the home's)"),
]
TlsKey = Annotated[Path | None, typer.Option(help="its private key (PEM)")]
TlsClientCa = Annotated[
    Path | None,
    typer.Option(help="mutual TLS: require client certificates signed by this CA"),
]
InsecureHttp = Annotated[
    bool,
    typer.Option(
        "--insecure-http", help="serve plain HTTP (development only: health data in clear)"
    ),
]


def server_tls(
    home: Path,
    names: tuple[str, ...],
    cert: Path | None,
    key: Path | None,
    client_ca: Path | None,
    insecure_http: bool,
) -> ServerTls | None:
    """What a server run from the CLI serves with: --tls-cert/--tls-key, else the
    home's first certificate among `names`; None (plain HTTP) only with
    --insecure-http. Anything else is refused with what to do."""
    if insecure_http:
        if cert is not None or client_ca is not None:
            fail("--insecure-http serves plain HTTP: drop --tls-cert / --tls-client-ca")
        return None
    if (cert is None) != (key is None):
        fail("--tls-cert and --tls-key go together")
    node_home = NodeHome(home)
    chosen = [ServerTls(cert, key, client_ca)] if cert is not None and key is not None else []
    chosen += [t for t in (node_home.server_tls(n, client_ca) for n in names) if t is not None]
    if chosen:
        try:
            server_context(chosen[0])
        except TlsError as e:
            fail(str(e), "check the certificate, key and client CA paths")
        return chosen[0]
    make = (
        f"`medchain tls issue {names[0]} --host <its host name> --home {home}`"
        if node_home.tls.ca_cert.exists()
        else f"`medchain tls init --home {home}` (a development CA and node.pem)"
    )
    fail(
        f"no TLS certificate ({' or '.join(n + '.pem' for n in names)}) in {node_home.tls.root}",
        f"{make}, or pass --tls-cert/--tls-key, or --insecure-http for a throwaway local setup",
    )


DEFAULT_LOG_FORMAT = logs.DEFAULT_FORMAT
DEFAULT_LOG_LEVEL = logs.DEFAULT_LEVEL
LogFormat = Annotated[
    str,
    typer.Option(
        "--log-format",
        envvar="MEDCHAIN_LOG_FORMAT",
        help="logs on stderr: text | json (a line each)",
    ),
]
LogLevel = Annotated[
    str,
    typer.Option("--log-level", envvar="MEDCHAIN_LOG_LEVEL", help="debug | info | warning | error"),
]


def start_logging(log_format: str = DEFAULT_LOG_FORMAT, log_level: str = DEFAULT_LOG_LEVEL) -> None:
    """Log to stderr as --log-format at --log-level (gateway/logs.py); a bad value ends
    the command."""
    try:
        logs.configure_logging(log_format, log_level)
    except ValueError as e:
        fail(str(e), "e.g. --log-format json --log-level info")


def fail(message: str, hint: str = "", code: int = Exit.BAD_INPUT, error: str = "") -> NoReturn:
    """Print an error and the next step to take, then exit with `code` (the table in
    cli/scripting.py), as every command ends on a failure."""
    scripting.raise_failure(scripting.Failure(Exit(code), error or Exit(code).name, message, hint))


def stop_on_sigterm() -> None:
    """Make SIGTERM (systemd, kill) run the same clean shutdown as Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def serve_until_interrupted(stop: Callable[[], None]) -> None:
    """Keep a started server running until Ctrl-C or SIGTERM, then `stop` it."""
    stop_on_sigterm()
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        stop()


def passphrase(confirm: bool = False, name: str | None = None) -> str:
    """Key `name`'s passphrase (MEDCHAIN_PASSPHRASE_<NAME>, --passphrase-file,
    MEDCHAIN_PASSPHRASE, or asked). `confirm` is for a new key: asked twice, and
    refused if shorter than MIN_PASSPHRASE_CHARS."""
    value = scripting.stored_passphrase(name)
    if not value:
        if not sys.stdin.isatty():
            fail(
                f"no passphrase{f' for key {name!r}' if name else ''}",
                f"set {scripting.env_name(name or 'KEY')} or MEDCHAIN_PASSPHRASE, pass "
                "--passphrase-file, or run in a terminal",
            )
        value = getpass.getpass(f"Passphrase{f' of key {name!r}' if name else ''}: ")
        if confirm and getpass.getpass("Repeat passphrase: ") != value:
            fail("passphrases differ")
    if confirm:
        try:
            check_new_passphrase(value)
        except KeystoreError as e:
            fail(str(e), "choose a longer passphrase (MEDCHAIN_PASSPHRASE too)")
    return value


def load_key(home: Path, name: str) -> crypto.KeyPair:
    """A key from the home's keystore, asking for its passphrase; a wrong name or
    passphrase ends the command with a hint."""
    try:
        return NodeHome(home).keystore.load(name, passphrase(name=name))
    except KeystoreError as e:
        f = scripting.failure_of(e)
        hint = f.hint or "list keys with `medchain keys list`"
        fail(f.message, f"{hint} (--home {home})", f.exit, f.error)


def comma_list(values: str) -> list[str]:
    """A comma-separated option as its items, blanks dropped ("a, b," -> ["a", "b"])."""
    return [v.strip() for v in values.split(",") if v.strip()]


def now_ms(client: Client) -> int:
    """Where an expiry counts from: the chain's clock, or this machine's when the last
    block is older (a quiet solo node makes no empty blocks), so "365 days" is never
    already past."""
    return max(client.block_time_ms(), int(time.time() * 1000))


def print_json(value: Any) -> None:
    """Print a value as highlighted JSON, as commands answer by default (with --json:
    the run's one JSON document)."""
    scripting.emit(value, lambda: console.print_json(json.dumps(value)))


def fail_on(e: Exception) -> NoReturn:
    """End the command on an error (ClientError, EdgeError, ExchangeFailed, OSError...)
    with the exit code, message and hint the table in cli/scripting.py gives it."""
    scripting.raise_failure(scripting.failure_of(e))


def client_failed(e: ClientError) -> NoReturn:
    """End the command on a node's error answer, with its code, message and hint, and
    the exit code its error code gives (cli/scripting.py)."""
    fail(f"{e.code}: {e.message}", e.hint, scripting.exit_code_for(e.code, e.status), e.code)


# -- request limits (gateway/limits.py) -----------------------------------------

DEFAULT_LIMITS = Limits()
Rate = Annotated[
    float,
    typer.Option(help="requests per second one client address may sustain (0: unlimited)"),
]
Burst = Annotated[int, typer.Option(help="requests one client address may send at once")]
Concurrency = Annotated[
    int, typer.Option(help="requests one client address may have in flight (0: unlimited)")
]
MaxWaits = Annotated[
    int, typer.Option(help="tx waits one client address may hold open (0: unlimited)")
]
WaitCap = Annotated[float, typer.Option(help="seconds one tx wait is held at most")]
SelfRegistrationRate = Annotated[
    float,
    typer.Option(help="patient self-registrations per minute from one address (0: unlimited)"),
]
SelfRegistrationGatewayRate = Annotated[
    float,
    typer.Option(help="patient self-registrations per minute at this gateway (0: unlimited)"),
]


def request_limits(
    rate: float = DEFAULT_LIMITS.rate,
    burst: int = DEFAULT_LIMITS.burst,
    concurrency: int = DEFAULT_LIMITS.concurrency,
    max_waits: int = DEFAULT_LIMITS.max_waits,
    wait_cap: float = DEFAULT_LIMITS.max_wait_seconds,
    self_registration_rate: float = DEFAULT_LIMITS.self_registration_rate,
    self_registration_gateway_rate: float = DEFAULT_LIMITS.self_registration_gateway_rate,
) -> Limits:
    """Limits from command-line flags; a verified key gets the same rate as an address."""
    if min(rate, burst, concurrency, max_waits, wait_cap) < 0:
        fail("limits cannot be negative", "use 0 for unlimited")
    return replace(
        DEFAULT_LIMITS,
        rate=rate,
        burst=burst,
        concurrency=concurrency,
        signer_rate=rate,
        signer_burst=burst,
        max_waits=max_waits,
        max_wait_seconds=wait_cap,
        self_registration_rate=self_registration_rate,
        self_registration_gateway_rate=self_registration_gateway_rate,
    )
