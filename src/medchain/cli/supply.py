"""`medchain supply`: products, batches, EPCIS events, recall, trace, pack check."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import httpx
import typer
from rich.table import Table

from medchain.cli.common import (
    DEFAULT_HOME,
    DEFAULT_URL,
    Home,
    NodeUrl,
    client_failed,
    console,
    fail,
    load_key,
    print_json,
)
from medchain.cli.health import Key, send_or_fail
from medchain.cli.scripting import Exit, emit
from medchain.sdk.client import Client, ClientError, response_error
from medchain.sdk.signing import send_signed

if TYPE_CHECKING:
    from medchain.gs1.ledger import BatchState, RecallChange

supply_app = typer.Typer(help="Drug and device traceability.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the drug and device supply-chain commands (supply)."""
    app.add_typer(supply_app, name="supply")


@supply_app.command("product")
def product(
    gtin: Annotated[str, typer.Option()],
    name: Annotated[str, typer.Option()],
    key: Key,
    kind: Annotated[str, typer.Option(help="drug or device")] = "drug",
    temp_min: Annotated[float | None, typer.Option(help="°C")] = None,
    temp_max: Annotated[float | None, typer.Option(help="°C")] = None,
    max_excursion_min: Annotated[float | None, typer.Option(help="minutes out of range")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Register a product (manufacturer), with its cold-chain range if it has one."""
    from medchain.gs1 import identifiers as gs1

    try:
        payload: dict[str, object] = {"gtin": gs1.validate_gtin(gtin), "name": name, "kind": kind}
    except gs1.InvalidGS1 as e:
        fail(str(e))
    if temp_min is not None and temp_max is not None and max_excursion_min is not None:
        payload |= {
            "temp_min_c10": round(temp_min * 10),
            "temp_max_c10": round(temp_max * 10),
            "max_excursion_ms": round(max_excursion_min * 60_000),
        }
    send_or_fail(node, home, key, "supply", "register_product", payload)
    console.print(f"Registered {name} ({payload['gtin']}).")


@supply_app.command("batch")
def batch(
    gtin: Annotated[str, typer.Option()],
    lot: Annotated[str, typer.Option()],
    expiry: Annotated[str, typer.Option(help="YYYY-MM-DD")],
    ingredients: Annotated[str, typer.Option(help="ingredient lot ids, comma separated")],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Register a batch and the ingredient lots it was made from."""
    lots = [x.strip() for x in ingredients.split(",") if x.strip()]
    payload = {"gtin": gtin, "lot": lot, "expiry": expiry, "ingredients": lots}
    send_or_fail(node, home, key, "supply", "register_batch", payload)
    console.print(f"Registered batch {gtin}/{lot} made from {', '.join(lots)}.")


@supply_app.command("record")
def record(
    document: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="EPCIS 2.0")],
    key: Key,
    lot: Annotated[str | None, typer.Option(help="commissioning: the batch lot")] = None,
    destination: Annotated[str | None, typer.Option(help="shipping: receiving org id")] = None,
    shipment: Annotated[str | None, typer.Option(help="shipping/receiving: shipment id")] = None,
    device: Annotated[str | None, typer.Option(help="shipping: the logger's DID")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Record every event of an EPCIS 2.0 document (JSON-LD, or XML by its .xml suffix) by
    its standard hash; an event whose persistentDisposition sets or unsets `recalled`
    recalls, or lifts the recall of, the batches of the units it lists."""
    from medchain.gs1 import identifiers as gs1
    from medchain.gs1.epcis import InvalidEPCIS
    from medchain.gs1.ledger import StepContext, plan_document

    kind = "xml" if document.suffix.lower() == ".xml" else "jsonld"
    try:
        plan = plan_document(
            document.read_bytes(), StepContext(lot, destination, shipment, device), kind
        )
    except (InvalidEPCIS, gs1.InvalidGS1, ValueError) as e:
        fail(str(e), "nothing was recorded; correct the document and record it again")
    for payload in plan.calls:
        out = send_or_fail(node, home, key, "supply", "record_event", payload)
        console.print(
            f"{payload['biz_step']}: {len(payload['epcs'])} EPC(s), "
            f"{payload['event_hash']} at height {out['height']}"
        )
    for change in plan.changes:
        _apply_recall_change(change, home, key, node)
    for note in plan.notes:
        console.print(f"[yellow]skipped[/] {note}")


def _apply_recall_change(change: RecallChange, home: Path, key: str, node: str) -> None:
    """Recall (or lift the recall of) every batch an event's units and classes name."""
    from medchain.gs1 import identifiers as gs1
    from medchain.gs1.ledger import recall_calls

    def batch_of_unit(unit: str) -> BatchState:
        from medchain.gs1.ledger import BatchState

        try:
            view = Client(node).get(f"/v1/supply/units/{unit}")
        except ClientError as e:
            client_failed(e)
        batch = view["batch"]
        return BatchState(unit.partition("/")[0], str(batch["lot"]), batch["status"] == "recalled")

    try:
        calls, notes = recall_calls(change, batch_of_unit)
    except gs1.InvalidGS1 as e:
        fail(str(e), "list the packs (SGTIN) or the batches (LGTIN quantity elements) to recall")
    for note in notes:
        console.print(f"[yellow]unchanged[/] {note}")
    verb = "Recalled" if change.recalled else "Lifted the recall of"
    for action, payload in calls:
        out = send_or_fail(node, home, key, "supply", action, payload)
        for event in out["events"]:
            a = event["attributes"]
            console.print(f"{verb} {a['gtin']}/{a['lot']}; notified: {a['notify'] or 'no holder'}")


@supply_app.command("documents")
def documents(
    org: Annotated[str, typer.Option(help="the organisation whose edge recorded the documents")],
    key: Key,
    epc: Annotated[
        str | None, typer.Option(help="list the events naming this EPC (URI or <gtin>/<serial>)")
    ] = None,
    document_id: Annotated[str | None, typer.Option("--id", help="fetch this document")] = None,
    out: Annotated[Path | None, typer.Option(help="write the document here")] = None,
    edge: Annotated[str | None, typer.Option(help="edge URL (default: from chain)")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """EPCIS documents another organisation recorded, from its edge: the events naming an
    EPC (--epc), or one document as it was sent (--id), if the chain says you took part."""
    from medchain.edge.requester import ExchangeFailed, edge_url_of

    if (epc is None) == (document_id is None):
        fail("give --epc to list events or --id to fetch a document")
    signer = load_key(home, key)
    client = Client(node)
    try:
        url = edge or edge_url_of(client, org)
    except ClientError as e:
        client_failed(e)
    except ExchangeFailed as e:
        fail(e.message, e.hint)
    path, params = (
        ("/edge/v1/epcis/events", {"epc": epc})
        if document_id is None
        else (f"/edge/v1/epcis/documents/{quote(document_id, safe='')}", None)
    )
    try:
        r = send_signed(
            signer, client.chain_id, "GET", url, path, params, verify=client.ssl_context
        )
    except httpx.HTTPError as e:
        fail(
            f"cannot reach the edge at {url}: {e}",
            "is the organisation's edge running?",
            Exit.UNREACHABLE,
        )
    if r.status_code != 200:
        error = response_error(r)
        fail(f"{error.code}: {error.message}", error.hint, 1)
    if document_id is None:
        table = Table("document", "event", "step", "time", "hash")
        for hit in r.json()["events"]:
            table.add_row(
                hit["document_id"],
                str(hit["event"]),
                hit["biz_step"],
                hit["event_time"],
                hit["event_hash"],
            )
        console.print(table)
    elif out is not None:
        out.write_bytes(r.content)
        console.print(f"Wrote {out} ({len(r.content):,} bytes, {r.headers['content-type']}).")
    else:
        emit({"document": r.text}, lambda: sys.stdout.write(r.text))


@supply_app.command("recall")
def recall(
    reason: Annotated[str, typer.Option()],
    key: Key,
    gtin: Annotated[str | None, typer.Option()] = None,
    lot: Annotated[str | None, typer.Option()] = None,
    ingredient_lot: Annotated[str | None, typer.Option()] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Recall a batch (--gtin --lot) or an ingredient lot; every holder is notified."""
    payload: dict[str, str] = {"reason": reason}
    if ingredient_lot:
        payload["ingredient_lot"] = ingredient_lot
    elif gtin and lot:
        payload |= {"gtin": gtin, "lot": lot}
    else:
        fail("give --gtin and --lot, or --ingredient-lot")
    out = send_or_fail(node, home, key, "supply", "recall", payload)
    for e in out["events"]:
        a = e["attributes"]
        console.print(f"Recalled {a['gtin']}/{a['lot']}; notified: {a['notify'] or 'no holder'}")


@supply_app.command("trace")
def trace(lot_id: str, key: Key, home: Home = DEFAULT_HOME, node: NodeUrl = DEFAULT_URL) -> None:
    """Every batch and unit made from an ingredient lot, and where each unit is (a signed
    read: for the lot's supplier, the makers of its batches, regulators and operators)."""
    try:
        result = Client(node, key=load_key(home, key)).get(f"/v1/supply/trace/{lot_id}")
    except ClientError as e:
        client_failed(e)
    table = Table("status", "holder", "units")
    counts: dict[tuple[str, str], int] = {}
    for u in result["units"]:
        counts[(u["status"], u["holder"])] = counts.get((u["status"], u["holder"]), 0) + 1
    for (status, holder), n in sorted(counts.items()):
        table.add_row(status, holder, f"{n:,}")
    console.print(f"{len(result['batches'])} batch(es), {len(result['units']):,} unit(s)")
    console.print(table)


@supply_app.command("check")
def check(
    code: Annotated[str, typer.Argument(help="a scanned GS1 barcode or Digital Link")],
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """What a patient sees when scanning a pack: genuine? cold chain? recalled?"""
    from medchain.gs1 import identifiers as gs1

    try:
        pack = gs1.parse(code)
        unit = pack.key()
    except gs1.InvalidGS1 as e:
        fail(f"not a valid pack code: {e}")
    try:
        view = Client(node).get(f"/v1/supply/units/{unit}")
    except ClientError as e:
        client_failed(e)
    print_json(view)
    if view["verdict"] != "ok":
        raise typer.Exit(1)


@supply_app.command("qr")
def qr(
    code: Annotated[str, typer.Argument(help="a GS1 barcode or Digital Link of the pack")],
    out: Annotated[Path, typer.Option(help="SVG file to write")],
    domain: Annotated[str, typer.Option(help="where scans should land (this node)")] = DEFAULT_URL,
) -> None:
    """A QR code with the pack's GS1 Digital Link, for printing on the pack."""
    from medchain.gs1 import identifiers as gs1

    try:
        pack = gs1.parse(code)
    except gs1.InvalidGS1 as e:
        fail(str(e))
    out.write_text(gs1.qr_svg(pack, domain))
    console.print(f"Wrote {out}: {pack.digital_link(domain)}")
