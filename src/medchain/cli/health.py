"""`medchain records | consent | exchange | audit | edge`: health records from the shell."""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

import medchain.node as node_servers  # the servers load on first use (node/__init__.py)
from medchain import crypto
from medchain.cli.common import (
    DEFAULT_HOME,
    DEFAULT_LIMITS,
    DEFAULT_LOG_FORMAT,
    DEFAULT_LOG_LEVEL,
    DEFAULT_URL,
    Burst,
    Concurrency,
    Home,
    InsecureHttp,
    LogFormat,
    LogLevel,
    NodeUrl,
    Rate,
    TlsCert,
    TlsClientCa,
    TlsKey,
    client_failed,
    comma_list,
    console,
    fail,
    fail_on,
    load_key,
    print_json,
    request_limits,
    serve_until_interrupted,
    server_tls,
    start_logging,
)
from medchain.cli.config import settings_of
from medchain.cli.metrics_port import (
    DEFAULT_METRICS_HOST,
    MetricsHost,
    MetricsPort,
    serve_metrics_of,
)
from medchain.cli.scripting import Exit, emit, note_tx
from medchain.contracts.identity.model import did_for_key
from medchain.node import DEFAULT_EDGE_PORT
from medchain.node.config import EdgeSettings
from medchain.sdk.client import Client, ClientError, response_error
from medchain.sdk.tls import ClientTls, default_client_tls

# IANA's port for HL7 over MLLP (edge/mllp.py's default; that module loads the edge).
MLLP_PORT = 2575

records_app = typer.Typer(help="Store, show and erase health records.", no_args_is_help=True)
consent_app = typer.Typer(
    help="Grant and revoke access; guardians; emergency access.", no_args_is_help=True
)
exchange_app = typer.Typer(help="Fetch a record you are allowed to see.", no_args_is_help=True)
edge_app = typer.Typer(help="Run a custodian's edge (vault + exchange).", no_args_is_help=True)

Key = Annotated[str, typer.Option("--key", help="name of your stored key")]
NodeUrls = Annotated[
    list[str] | None,
    typer.Option(
        "--node",
        envvar="MEDCHAIN_NODE",
        help="gateway URL; repeat it to fail over: your own hospital's node first, then others",
    ),
]
DAY_MS = 86_400_000


def register(app: typer.Typer) -> None:
    """Add the health-record command groups (records, consent, exchange, edge, audit)."""
    app.add_typer(records_app, name="records")
    app.add_typer(consent_app, name="consent")
    app.add_typer(exchange_app, name="exchange")
    app.add_typer(edge_app, name="edge")
    app.command("audit")(audit)


def send_or_fail(
    node: str, home: Path, key: str, contract: str, action: str, payload: dict[str, Any]
) -> Any:
    """Sign with a stored key, submit, wait; exit non-zero with the chain's reason if refused."""
    return submit_or_fail(Client(node), load_key(home, key), contract, action, payload)


def submit_or_fail(
    client: Client, signer: crypto.KeyPair, contract: str, action: str, payload: dict[str, Any]
) -> Any:
    """Sign, submit through `client`, wait; exit non-zero with the chain's reason if refused."""
    try:
        out = client.send(signer, contract, action, payload)
    except ClientError as e:
        client_failed(e)
    if out.get("code") != 0:
        fail(f"{out.get('code_name')}: {out.get('log')}", code=1, error=str(out.get("code_name")))
    note_tx(out)
    return out


def edge_of(client: Client, signer: crypto.KeyPair) -> str:
    """The edge URL of the organisation the signer works for, from the chain."""
    from medchain.edge.requester import ExchangeFailed, edge_url_of

    try:  # the DID document is public; the member record is a signed, operator read
        doc = client.did_document(did_for_key(signer.suite, signer.public))
        return edge_url_of(client, doc["medchain"]["org_id"])
    except (ClientError, ExchangeFailed) as e:
        fail_on(e)


# -- records ------------------------------------------------------------------


@records_app.command("add")
def records_add(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="FHIR R4 JSON")],
    patient: Annotated[str, typer.Option(help="the patient's DID")],
    key: Key,
    record_id: Annotated[str | None, typer.Option(help="default: generated")] = None,
    binary: Annotated[bool, typer.Option(help="store raw bytes (e.g. DICOM) as Binary")] = False,
    supersedes: Annotated[str | None, typer.Option(help="record id this version replaces")] = None,
    edge: Annotated[str | None, typer.Option(help="edge URL (default: from chain)")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Encrypt a record into your organisation's vault and register it on chain."""
    from medchain.edge.requester import upload_record

    signer = load_key(home, key)
    client = Client(node)
    url = edge or edge_of(client, signer)
    chain_id = client.chain_id
    try:
        r = upload_record(
            signer,
            chain_id,
            url,
            file.read_bytes(),
            patient,
            record_id,
            "Binary" if binary else None,
            supersedes,
        )
    except httpx.HTTPError as e:
        fail(
            f"cannot reach the edge at {url}: {e}",
            "is `medchain edge serve` running?",
            Exit.UNREACHABLE,
        )
    if r.status_code != 201:
        error = response_error(r)
        fail(f"{error.code}: {error.message}", error.hint, 1)
    body = r.json()
    emit(  # --json: the edge's answer (record_id, resource_type, height, cid, ...)
        body,
        lambda: console.print(
            f"Stored and registered [bold]{body['record_id']}[/] ({body['resource_type']}) "
            f"at height {body['height']}; CID {body['cid']}"
        ),
    )


@records_app.command("show")
def records_show(
    record_id: str, key: Key, home: Home = DEFAULT_HOME, node: NodeUrl = DEFAULT_URL
) -> None:
    """A record's on-chain registration (never its content), if `--key` may see it."""
    try:
        print_json(Client(node, key=load_key(home, key)).record(record_id))
    except ClientError as e:
        client_failed(e)


@records_app.command("list")
def records_list(
    patient: Annotated[str, typer.Option()],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """A patient's records that `--key` may see (all of them for the patient)."""
    try:
        rows = Client(node, key=load_key(home, key)).patient_records(patient)
    except ClientError as e:
        client_failed(e)
    table = Table("record", "type", "custodian", "status", "created")
    for r in rows:
        table.add_row(
            r["record_id"],
            r["resource_type"],
            r["custodian"],
            r["status"],
            _when(r["created_time_ms"]),
        )
    console.print(table)


@records_app.command("erase")
def records_erase(
    record_id: str,
    key: Key,
    reason: Annotated[str, typer.Option()] = "patient request",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Erase a record (patient or custodian org admin): tombstone on chain, keys destroyed."""
    out = send_or_fail(
        node, home, key, "records", "erase", {"record_id": record_id, "reason": reason}
    )
    console.print(f"Erased {record_id} at height {out['height']}.")
    console.print(f"Next: medchain records receipt {record_id}  (the custodian's purge receipt)")


@records_app.command("receipt")
def records_receipt(
    record_id: str,
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
    wait: Annotated[float, typer.Option(help="seconds to wait for the purge")] = 10.0,
) -> None:
    """Fetch the custodian's signed purge receipt and verify it against the chain."""
    from medchain.edge.receipts import PROBLEMS, check_purge_receipt, fetch_purge_receipt
    from medchain.edge.requester import ExchangeFailed

    client = Client(node, key=load_key(home, key))
    try:
        check = check_purge_receipt(client, record_id, fetch_purge_receipt(client, record_id, wait))
    except (ClientError, ExchangeFailed) as e:
        fail_on(e)
    print_json(
        check.receipt
        | {
            "verified": check.verified,
            "signed_by_org": check.signed_by_org,
            "erased_height": check.erase_height,
            "problems": [PROBLEMS[p] for p in check.problems],
        }
    )
    if not check.verified:
        raise typer.Exit(1)


# -- consent ------------------------------------------------------------------


@consent_app.command("grant")
def consent_grant(
    to: Annotated[str, typer.Option(help="did:medchain:..., org:<org id> or role:<role>")],
    key: Key,
    types: Annotated[str, typer.Option(help="FHIR resource types, comma separated")] = "",
    records: Annotated[str, typer.Option(help="record ids, comma separated")] = "",
    purpose: Annotated[str, typer.Option(help="TREAT, ETREAT, HRESEARCH, ...")] = "TREAT",
    days: Annotated[float, typer.Option(help="how long the grant lasts")] = 30.0,
    patient: Annotated[str | None, typer.Option(help="default: yourself")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Let a person, an organisation or a role see some of a patient's records."""
    kind, _, grantee = to.partition(":") if not to.startswith("did:") else ("did", ":", to)
    if kind not in ("did", "org", "role") or not grantee:
        fail(f"bad --to {to!r}", "use did:medchain:..., org:<org id> or role:<role>")
    signer = load_key(home, key)
    client = Client(node)
    try:
        now = client.block_time_ms()
    except ClientError as e:
        client_failed(e)
    expires_ms = int(now + days * DAY_MS)
    payload = {
        "patient": patient or did_for_key(signer.suite, signer.public),
        "grantee_kind": kind,
        "grantee": grantee,
        "purposes": comma_list(purpose),
        "scope_types": comma_list(types),
        "scope_records": comma_list(records),
        "expires_ms": expires_ms,
    }
    out = send_or_fail(node, home, key, "consent", "grant", payload)
    grant_id = out["events"][0]["attributes"]["grant_id"]
    console.print(f"Granted [bold]{grant_id}[/] to {to} until {_when(expires_ms)}")


@consent_app.command("revoke")
def consent_revoke(
    grant_id: str,
    key: Key,
    reason: Annotated[str, typer.Option(help="why (kept on the grant), up to 500 characters")] = "",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Withdraw a grant; no key is released and no exchange opens from the next block."""
    payload = {"grant_id": grant_id, **({"reason": reason} if reason else {})}
    out = send_or_fail(node, home, key, "consent", "revoke", payload)
    console.print(f"Revoked {grant_id} at height {out['height']}.")


@consent_app.command("list")
def consent_list(
    patient: Annotated[str, typer.Option()],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """A patient's grants `--key` may see, and whether each is in force now."""
    try:
        grants = Client(node, key=load_key(home, key)).grants(patient)
    except ClientError as e:
        client_failed(e)
    table = Table("grant", "to", "purposes", "scope", "until", "state")
    for g in grants:
        scope = ",".join(g["scope_types"] + g["scope_records"])
        table.add_row(
            g["grant_id"],
            f"{g['grantee_kind']}:{g['grantee']}",
            ",".join(g["purposes"]),
            scope,
            _when(g["expires_ms"]),
            g["state"],
        )
    console.print(table)


@consent_app.command("export")
def consent_export(
    grant_id: Annotated[str | None, typer.Argument()] = None,
    patient: Annotated[str | None, typer.Option(help="all of a patient's grants")] = None,
    key: Key = "",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Grants as FHIR R4 Consent resources (one, or a patient's Bundle), signed by --key."""
    if (grant_id is None) == (patient is None):
        fail("give a grant id or --patient")
    if not key:
        fail("give --key: reading grants is a signed request")
    try:
        c = Client(node, key=load_key(home, key))
        print_json(
            c.fhir(f"Consent/{grant_id}") if grant_id else c.fhir("Consent", patient=patient)
        )
    except ClientError as e:
        client_failed(e)


@consent_app.command("guardian")
def consent_guardian(
    guardian: Annotated[str, typer.Argument(help="the guardian's DID")],
    key: Key,
    revoke: Annotated[bool, typer.Option(help="take the authority back")] = False,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Let another member manage your consent (e.g. a parent), or stop them."""
    action = "revoke_guardian" if revoke else "delegate_guardian"
    send_or_fail(node, home, key, "consent", action, {"guardian": guardian})
    console.print(f"{'Revoked' if revoke else 'Delegated'} guardian {guardian}.")


@consent_app.command("break-glass")
def consent_break_glass(
    patient: Annotated[str, typer.Option()],
    reason: Annotated[str, typer.Option(help="why, 10 to 500 characters")],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Ask for emergency access (a second approver of your hospital must approve)."""
    out = send_or_fail(
        node, home, key, "consent", "break_glass", {"patient": patient, "reason": reason}
    )
    request_id = out["events"][0]["attributes"]["request_id"]
    console.print(f"Emergency request [bold]{request_id}[/] is pending.")
    console.print(f"Next: a colleague runs  medchain consent approve {request_id} --key <theirs>")


@consent_app.command("approve")
def consent_approve(
    request_id: str, key: Key, home: Home = DEFAULT_HOME, node: NodeUrl = DEFAULT_URL
) -> None:
    """Approve a colleague's emergency access (opens a fixed 4-hour ETREAT window)."""
    out = send_or_fail(
        node, home, key, "consent", "approve_break_glass", {"request_id": request_id}
    )
    expires = int(out["events"][0]["attributes"]["expires_ms"])
    console.print(f"Emergency access open until {_when(expires)}; the patient is notified.")


# -- exchange -----------------------------------------------------------------


@exchange_app.command("get")
def exchange_get(
    record_id: str,
    key: Key,
    out: Annotated[Path, typer.Option("--out", help="where to write the plaintext")],
    purpose: Annotated[str, typer.Option()] = "TREAT",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Request, fetch, decrypt, verify and acknowledge one record."""
    from medchain.edge.requester import ExchangeFailed, fetch_record

    signer = load_key(home, key)
    try:
        got = fetch_record(Client(node, key=signer), signer, record_id, purpose)
    except ExchangeFailed as e:
        fail(f"{e.code}: {e.message}", e.hint, 1)
    except ClientError as e:
        client_failed(e)
    out.write_bytes(got.plaintext)
    steps = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in got.timings.items())
    console.print(
        f"Wrote {got.resource_type} {record_id} ({len(got.plaintext)} bytes) to {out}; "
        f"session {got.session_id} closed. {steps}"
    )


# -- audit --------------------------------------------------------------------


def audit(
    patient: Annotated[str | None, typer.Option(help="a patient's DID")] = None,
    actor: Annotated[str | None, typer.Option(help="a member's DID, e.g. a doctor")] = None,
    record: Annotated[str | None, typer.Option(help="a record id")] = None,
    fhir: Annotated[bool, typer.Option(help="print FHIR AuditEvents")] = False,
    limit: Annotated[int, typer.Option(max=1000)] = 100,
    key: Key = "",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Who accessed what, when, and on which basis (refusals included): the events
    `--key` may see (a patient's own, a member's own acts, a regulator all)."""
    who = {k: v for k, v in (("patient", patient), ("actor", actor), ("record", record)) if v}
    if len(who) != 1:
        fail("give exactly one of --patient, --actor, --record")
    if not key:
        fail("give --key: the audit trail is a signed read")
    c = Client(node, key=load_key(home, key))
    try:
        if fhir:
            params = {"patient": patient, "agent": actor, "entity": record, "_count": limit}
            print_json(c.fhir("AuditEvent", **{k: v for k, v in params.items() if v}))
            return
        rows = c.audit(0, limit, **who)["events"]
    except ClientError as e:
        client_failed(e)
    table = Table("time (UTC)", "event", "actor", "record", "outcome", "basis / reason")
    for r in rows:
        a = r["attributes"]
        outcome = "ok" if r["kind"] != "exchange.refused" else "REFUSED"
        table.add_row(
            _when(r["time_ms"]),
            r["kind"],
            r["actor"],
            r["record_id"] or "",
            outcome,
            a.get("basis") or a.get("reason") or a.get("grantee") or "",
        )
    console.print(table)


# -- edge ---------------------------------------------------------------------


@edge_app.command("serve")
def edge_serve(
    ctx: typer.Context,
    key: Annotated[
        str | None, typer.Option("--key", help="name of your stored key (or [edge] key)")
    ] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrls = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_EDGE_PORT,
    public_url: Annotated[
        str | None, typer.Option(help="URL others reach this edge at (published on chain)")
    ] = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    tls_client_ca: TlsClientCa = None,
    insecure_http: InsecureHttp = False,
    rate: Rate = DEFAULT_LIMITS.rate,
    burst: Burst = DEFAULT_LIMITS.burst,
    concurrency: Concurrency = DEFAULT_LIMITS.concurrency,
    validate_workers: Annotated[
        int,
        typer.Option(min=0, help="processes that validate FHIR imports beside the edge (0: none)"),
    ] = 0,
    vault_dir: Annotated[
        Path | None,
        typer.Option(help="the organisation's vault directory (default <home>/vaults/<org_id>)"),
    ] = None,
    log_format: LogFormat = DEFAULT_LOG_FORMAT,
    log_level: LogLevel = DEFAULT_LOG_LEVEL,
    metrics_port: MetricsPort = 0,
    metrics_host: MetricsHost = DEFAULT_METRICS_HOST,
) -> None:
    """Run your organisation's edge until Ctrl-C; publishes its URL on chain.

    It serves HTTPS with --tls-cert/--tls-key or the home's tls/edge.pem (else
    tls/node.pem), and presents that certificate to the node too (mutual TLS). An
    http:// URL is published only with --insecure-http: the edge hands out FHIR.
    Several --node: reads and txs go to the first that answers, its own node first.
    It refuses to start on an empty vault while the chain lists records of its
    organisation (the wrong --vault-dir, or a lost vault: restore the backup).
    Options not given come from MEDCHAIN_EDGE_<OPTION>, then [edge] of <home>/medchain.toml."""
    from medchain.edge.custodian import EdgeError
    from medchain.edge.validation_pool import ValidationPool
    from medchain.node.vaults import open_org_edge

    cfg = settings_of(ctx, EdgeSettings, home)
    start_logging(cfg.log_format, cfg.log_level)
    metrics_port, metrics_host = cfg.metrics_port, cfg.metrics_host
    if cfg.key is None:
        fail("no key", "pass --key (the name of your stored key), or set [edge] key")
    key, node, host, port, public_url = cfg.key, cfg.node, cfg.host, cfg.port, cfg.public_url
    tls_cert, tls_key, tls_client_ca = cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca
    insecure_http, rate, burst = cfg.insecure_http, cfg.rate, cfg.burst
    concurrency, validate_workers, vault_dir = cfg.concurrency, cfg.validate_workers, cfg.vault_dir
    tls = server_tls(home, ("edge", "node"), tls_cert, tls_key, tls_client_ca, insecure_http)
    if public_url and public_url.startswith("http://") and not insecure_http:
        fail(f"refusing to publish {public_url}", "publish an https:// URL (or --insecure-http)")
    trust = default_client_tls()
    if tls is not None and trust.cert is None:
        trust = ClientTls(trust.ca, tls.cert, tls.key)
    signer = load_key(home, key)
    try:
        edge, place = open_org_edge(
            home, signer, node or [DEFAULT_URL], key, trust, vault_dir, refuse_empty=True
        )
    except (ClientError, EdgeError) as e:
        fail_on(e)
    if place.note:
        console.print(f"[yellow]note:[/] {place.note}")
    limits = request_limits(rate, burst, concurrency)
    if validate_workers:
        edge.validation = ValidationPool(validate_workers)
    gc.freeze()  # what is loaded now lives as long as the edge: full collections skip it
    server = node_servers.EdgeServer(edge, host, port, tls=tls, limits=limits)
    server.start()
    metrics = serve_metrics_of(server, metrics_port, metrics_host)  # unsigned, for Prometheus

    def stop() -> None:
        if metrics is not None:
            metrics.stop()
        server.stop()
        if edge.validation is not None:
            edge.validation.close()

    url = public_url or server.url
    try:
        published = edge.node.org(edge.org_id).get("edge_url")
        if published != url:
            endpoint = {"org_id": edge.org_id, "edge_url": url}
            out = edge.node.send(signer, "identity", "set_endpoint", endpoint)
            if out.get("code") != 0:
                stop()
                fail(f"{out.get('code_name')}: {out.get('log')}", code=1)
    except ClientError as e:
        stop()
        client_failed(e)
    console.print(
        f"Edge of [bold]{edge.org_id}[/] at {url}/docs "
        f"({edge.vault.count()} records in {edge.vault.root})"
    )
    serve_until_interrupted(stop)


@edge_app.command("mllp")
def edge_mllp(
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrls = None,
    host: str = "127.0.0.1",
    port: int = MLLP_PORT,
    max_bytes: Annotated[int, typer.Option(help="largest message taken")] = 1_000_000,
    max_connections: Annotated[int, typer.Option(help="open connections at once")] = 16,
    idle_seconds: Annotated[float, typer.Option(help="close a silent connection after")] = 60.0,
    vault_dir: Annotated[
        Path | None,
        typer.Option(help="the organisation's vault directory (default <home>/vaults/<org_id>)"),
    ] = None,
) -> None:
    """Take HL7 v2 messages over MLLP (e.g. from the HIS interface engine) until Ctrl-C.

    Each message is imported into your edge's vault as `medchain import hl7` does, and
    answered with an ACK: AA imported, AE refused (MSA-3/ERR say why), AR not taken
    (bad or unsupported message, too large, node unreachable). A message resent with
    the same MSH-10 from the same facility gets its first ACK again, not a second import."""
    from medchain.edge.custodian import EdgeError
    from medchain.edge.mllp import MllpLimits, MllpServer
    from medchain.node.vaults import open_org_edge

    trust = default_client_tls()
    try:
        edge, place = open_org_edge(
            home, load_key(home, key), node or [DEFAULT_URL], key, trust, vault_dir
        )
    except (ClientError, EdgeError) as e:
        fail_on(e)
    if place.note:
        console.print(f"[yellow]note:[/] {place.note}")
    limits = MllpLimits(max_bytes, max_connections, idle_seconds)
    server = MllpServer(edge, host, port, limits)
    try:
        server.start()
    except OSError as e:
        fail_on(e)  # port taken: PORT_TAKEN
    console.print(f"MLLP listener of [bold]{edge.org_id}[/] on {server.address}")
    serve_until_interrupted(server.stop)


def _when(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
