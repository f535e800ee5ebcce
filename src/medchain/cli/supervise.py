"""`medchain relay | supervise`: the regulator network's side."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from medchain.cli.common import (
    DEFAULT_HOME,
    DEFAULT_LOG_FORMAT,
    DEFAULT_LOG_LEVEL,
    Home,
    LogFormat,
    LogLevel,
    client_failed,
    console,
    fail,
    load_key,
    print_json,
    start_logging,
    stop_on_sigterm,
)
from medchain.cli.config import settings_of
from medchain.cli.health import Key, send_or_fail
from medchain.cli.metrics_port import DEFAULT_METRICS_HOST, MetricsHost, MetricsPort, serve_registry
from medchain.crypto import cometbft
from medchain.node.config import RelaySettings
from medchain.sdk.client import Client, ClientError

if TYPE_CHECKING:
    from medchain.network.relay import Relay

supervise_app = typer.Typer(help="Regulator network: alerts, relay checks.", no_args_is_help=True)
Business = Annotated[str, typer.Option("--business", help="business chain gateway URL")]
Regulator = Annotated[str, typer.Option("--regulator", help="regulator chain gateway URL")]
Source = Annotated[str, typer.Option(help="the business chain's name on the regulator chain")]


def register(app: typer.Typer) -> None:
    """Add the regulator's commands (supervise, relay)."""
    app.add_typer(supervise_app, name="supervise")
    app.command("relay")(relay)


def relay(
    ctx: typer.Context,
    business: Annotated[
        str | None, typer.Option("--business", help="business chain gateway URL")
    ] = None,
    regulator: Annotated[
        str | None, typer.Option("--regulator", help="regulator chain gateway URL")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="name of your stored key")] = None,
    source: Annotated[
        str | None, typer.Option(help="the business chain's name on the regulator chain")
    ] = None,
    home: Home = DEFAULT_HOME,
    once: Annotated[bool, typer.Option(help="relay what is there, then exit")] = False,
    batch: Annotated[int, typer.Option(help="digests per regulator submission")] = 50,
    business_rpc: Annotated[
        str | None,
        typer.Option(
            help="the business node's CometBFT RPC (e.g. http://127.0.0.1:26657; several "
            "comma-separated to fail over), when the regulator chain checks the finality of "
            "a CometBFT business chain"
        ),
    ] = None,
    log_format: LogFormat = DEFAULT_LOG_FORMAT,
    log_level: LogLevel = DEFAULT_LOG_LEVEL,
    metrics_port: MetricsPort = 0,
    metrics_host: MetricsHost = DEFAULT_METRICS_HOST,
) -> None:
    """Relay every business block's digest to the regulator chain, in order, until Ctrl-C;
    with --metrics-port, its lag and health for Prometheus. Options not given come from
    MEDCHAIN_RELAY_<OPTION>, then [relay] of <home>/medchain.toml."""
    from medchain.network.relay import Relay

    cfg = settings_of(ctx, RelaySettings, home)
    start_logging(cfg.log_format, cfg.log_level)
    metrics_port, metrics_host = cfg.metrics_port, cfg.metrics_host
    business, regulator, key, source = cfg.business, cfg.regulator, cfg.key, cfg.source
    batch, business_rpc = cfg.batch, cfg.business_rpc
    if business is None or regulator is None or key is None or source is None:
        missing = [n for n in ("business", "regulator", "key", "source") if getattr(cfg, n) is None]
        fail(
            "missing " + ", ".join(f"--{n}" for n in missing),
            "give them as options, MEDCHAIN_RELAY_<NAME>, or in [relay] of medchain.toml",
        )
    signer = load_key(home, key)  # signs the digests and reads both chains' blocks
    r = Relay(
        Client(business, key=signer),
        Client(regulator, key=signer),
        signer,
        source,
        batch,
        business_rpc=business_rpc,
    )
    metrics = r.metrics
    try:
        server = serve_registry(
            metrics.registry, metrics.checks(), "relay", metrics_port, metrics_host
        )
    except RuntimeError as e:
        fail(str(e), code=1)
    try:
        with r:
            _relay(r, source, business, regulator, once)
    finally:
        if server is not None:
            server.stop()


def _relay(r: Relay, source: str, business: str, regulator: str, once: bool) -> None:
    """Relay once or until Ctrl-C / SIGTERM, errors reported as the CLI does."""
    from medchain.network.comet_rpc import UnsupportedValidatorKey
    from medchain.network.relay import RelayError

    try:
        if once:
            total = 0
            while n := r.step():
                total += n
            console.print(f"Relayed {total} block digest(s) of {source}.")
            return
        stop = threading.Event()
        stop_on_sigterm()
        console.print(f"Relaying {source}: {business} -> {regulator} (Ctrl-C to stop)")
        r.run(stop)
    except KeyboardInterrupt:
        pass
    except (RelayError, UnsupportedValidatorKey) as e:
        fail(str(e), code=1)
    except ClientError as e:
        client_failed(e)


@supervise_app.command("alerts")
def alerts(
    regulator: Regulator,
    key: Key,
    home: Home = DEFAULT_HOME,
    status: Annotated[str | None, typer.Option(help="open or acknowledged")] = "open",
    rule: Annotated[str | None, typer.Option()] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Supervision alerts raised on the regulator chain."""
    try:
        found = Client(regulator, key=load_key(home, key)).alerts(status, rule)
    except ClientError as e:
        client_failed(e)
    if json_out:
        print_json(found)
        return
    table = Table("alert", "rule", "source@height", "subject", "detail")
    for a in found:
        table.add_row(
            a["alert_id"], a["rule"], f"{a['source']}@{a['height']}", a["subject"], a["detail"]
        )
    console.print(table if found else "No alerts.")


@supervise_app.command("authorize-relayer")
def authorize_relayer(
    relayer: Annotated[str, typer.Argument(help="the relayer's DID on the regulator chain")],
    regulator: Regulator,
    key: Key,
    source: Source,
    home: Home = DEFAULT_HOME,
    from_height: Annotated[
        int, typer.Option(help="relay the blocks after this height (-1: from genesis)")
    ] = -1,
    business_rpc: Annotated[
        str | None,
        typer.Option(
            help="a CometBFT business chain's node RPC: the regulator chain then follows its "
            "validators from the header at from-height + 2 and checks every block's finality"
        ),
    ] = None,
) -> None:
    """Let a relayer relay `source` (a regulator or consortium admin signs)."""
    from medchain.network.comet_rpc import UnsupportedValidatorKey
    from medchain.network.relay import CometRpc, comet_source

    payload: dict[str, object] = {"source": source, "relayer": relayer, "from_height": from_height}
    if business_rpc:
        try:
            with CometRpc(business_rpc) as rpc:
                follow = comet_source(rpc, from_height)
        except UnsupportedValidatorKey as e:
            fail(str(e), code=1)
        except ClientError as e:
            client_failed(e)
        validators = [cometbft.Validator(v["pub_key"], v["power"]) for v in follow["validators"]]
        console.print(
            f"CometBFT chain {follow['chain_id']}: {len(validators)} validators, validators "
            f"hash {cometbft.validators_hash(validators).hex().upper()} (compare it with the "
            "business chain's genesis before trusting it)"
        )
        payload["cometbft"] = follow
    send_or_fail(regulator, home, key, "supervision", "authorize_relayer", payload)
    console.print(f"{relayer} may relay {source}.")


@supervise_app.command("ack")
def ack(
    alert_id: str,
    note: Annotated[str, typer.Option()],
    key: Key,
    regulator: Regulator,
    home: Home = DEFAULT_HOME,
) -> None:
    """Acknowledge an alert with a note."""
    send_or_fail(
        regulator, home, key, "supervision", "ack_alert", {"alert_id": alert_id, "note": note}
    )
    console.print(f"Acknowledged {alert_id}.")


@supervise_app.command("check-lag")
def check_lag(
    business: Business, regulator: Regulator, key: Key, source: Source, home: Home = DEFAULT_HOME
) -> None:
    """Tell the regulator chain how far the business chain is (a stalled relay alerts)."""
    try:
        head = Client(business).status()["height"]
    except ClientError as e:
        client_failed(e)
    send_or_fail(
        regulator, home, key, "supervision", "report_lag", {"source": source, "head_height": head}
    )
    console.print(f"Reported {source} at height {head}.")


@supervise_app.command("verify-stream")
def verify(
    business: Business,
    regulator: Regulator,
    source: Source,
    key: Key,
    home: Home = DEFAULT_HOME,
    business_rpc: Annotated[
        str | None,
        typer.Option(
            help="the business node's CometBFT RPC, for a source relayed with CometBFT "
            "finality (its digests record CometBFT's block ids)"
        ),
    ] = None,
) -> None:
    """Recompute every relayed digest from the business chain and compare (reads blocks:
    `--key` must be an operator or a regulator on both chains)."""
    from medchain.network.relay import CometRpc, verify_stream

    signer = load_key(home, key)
    rpc = CometRpc(business_rpc) if business_rpc else None
    try:
        problems = verify_stream(
            Client(business, key=signer), Client(regulator, key=signer), source, rpc
        )
    except ClientError as e:
        client_failed(e)
    finally:
        if rpc is not None:
            rpc.close()
    if problems:
        fail("; ".join(problems), "the relayed stream does not match the business chain", 1)
    console.print(
        f"[green]verified[/]: every relayed digest of {source} matches the business chain"
    )


def _ms(value: str) -> int:
    """A date (YYYY-MM-DD, UTC), an ISO date-time, or ms since the epoch."""
    if value.isdigit():
        return int(value)
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@supervise_app.command("export")
def export_audit(
    node: Annotated[str, typer.Option("--node", help="business chain gateway URL")],
    key: Key,
    start: Annotated[str, typer.Option("--from", help="YYYY-MM-DD (UTC) or ms")],
    end: Annotated[str, typer.Option("--to", help="YYYY-MM-DD (UTC) or ms, exclusive")],
    out: Annotated[Path, typer.Option(help="file to write")],
    org: Annotated[str | None, typer.Option(help="one organisation's events")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or fhir")] = "csv",
    home: Home = DEFAULT_HOME,
) -> None:
    """Export audit events of a period (and org) as CSV or a FHIR AuditEvent Bundle (the
    events `--key` may see: all of them for a regulator or an operator)."""
    if fmt not in ("csv", "fhir"):
        fail(f"unknown format {fmt!r}", "use --format csv or --format fhir")
    try:
        data = Client(node, key=load_key(home, key)).audit_export(_ms(start), _ms(end), org, fmt)
    except ValueError as e:
        fail(f"bad date: {e}", "use YYYY-MM-DD or milliseconds")
    except ClientError as e:
        client_failed(e)
    out.write_bytes(data)
    count = data.count(b"\n") - 1 if fmt == "csv" else json.loads(data)["total"]
    console.print(f"Wrote {count} audit event(s) to {out}.")
