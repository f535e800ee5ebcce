"""From an EPCIS 2.0 document to `supply.record_event` calls.

The document stays with the organisation that wrote it; the chain gets, per
event, its standard hash and what the contract needs to check the step: the
units (EPCs as `<gtin>/<serial>`, cases and pallets as container ids), the
business step and time, and for shipping the destination, shipment id and
logger device, which a hospital or distributor knows from its own records.

An event's `persistentDisposition` that sets or unsets `recalled` is a recall, or the
lifting of one, of the batches its units belong to: `recall_changes` lists them for the
caller to apply with the supply contract's recall actions (the ledger recalls batches,
not single packs, so a recall names every batch a listed unit is from).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from biip.checksums import gs1_standard_check_digit

from medchain.contracts.supply.model import BIZ_STEPS
from medchain.gs1 import epcis
from medchain.gs1.identifiers import InvalidGS1, unit_of_epc, validate_gtin
from medchain.gs1.identifiers import parse as parse_gs1

RECALLED = "recalled"  # the CBV persistent disposition the ledger acts on


@dataclass(frozen=True)
class StepContext:
    """What the EPCIS event does not say in ledger terms."""

    lot: str | None = None  # commissioning: the batch lot
    destination: str | None = None  # shipping: the receiving organisation's id
    shipment: str | None = None  # shipping / receiving
    device: str | None = None  # shipping: the logger's DID


def record_event_calls(
    document: bytes | str, context: StepContext, kind: str = "jsonld"
) -> tuple[list[dict[str, Any]], list[str]]:
    """(record_event payloads, notes on events the ledger does not track). Every
    error names its event, counted from 1."""
    plan = plan_document(document, context, kind)
    return plan.calls, plan.notes


@dataclass(frozen=True)
class DocumentPlan:
    """What recording one EPCIS document asks of the ledger, read in one pass: each
    event's hash and summary (in document order), the record_event payloads, notes on
    events the ledger does not track, and the recall changes to apply after them."""

    hashes: tuple[str, ...]
    summaries: tuple[epcis.Summary, ...]
    calls: list[dict[str, Any]]
    notes: list[str]
    changes: list[RecallChange]
    named: tuple[tuple[str, ...], ...] = ()  # per event: epcis.named_parties


def plan_document(
    document: bytes | str, context: StepContext, kind: str = "jsonld"
) -> DocumentPlan:
    """The whole plan for a document (the CLI's `supply record` and an edge's capture
    both follow it); InvalidEPCIS, InvalidGS1 or ValueError naming the event, counted
    from 1, if any event cannot be recorded, before anything is sent."""
    hashes = epcis.event_hashes(document, kind)
    found = epcis.events(document, kind)
    summaries, calls, notes, changes, named = [], [], [], [], []
    for number, (event_hash, event) in enumerate(zip(hashes, found, strict=True), start=1):
        with numbered(number):
            summary = epcis.summarize(event)
            call = _record_event_call(event_hash, summary, context)
            change = _recall_change(number, event_hash, summary)
        summaries.append(summary)
        named.append(tuple(epcis.named_parties(event)))
        if isinstance(call, dict):
            calls.append(call)
        elif call:
            notes.append(f"event {number} ({event_hash}): {call}")
        if change is not None:
            changes.append(change)
    return DocumentPlan(tuple(hashes), tuple(summaries), calls, notes, changes, tuple(named))


@contextmanager
def numbered(number: int) -> Iterator[None]:
    """Re-raise an error about one event (InvalidEPCIS, InvalidGS1, ValueError) with
    "event <number>: " in front, unless it names its event already."""
    try:
        yield
    except ValueError as exc:
        message = str(exc)
        if message.startswith("event "):
            raise
        raise type(exc)(f"event {number}: {message}") from None


def _record_event_call(
    event_hash: str, summary: epcis.Summary, context: StepContext
) -> dict[str, Any] | str:
    """One event's record_event payload; else why it is skipped ("" for a recall
    event, which recall_changes applies)."""
    step = summary["biz_step"]
    if step not in BIZ_STEPS:
        if RECALLED in summary["disposition_set"] + summary["disposition_unset"]:
            return ""
        return f"business step {step!r} is not tracked on the ledger"
    epcs = [unit_of_epc(e) for e in summary["epcs"]]
    payload: dict[str, Any] = {
        "event_hash": event_hash,
        "biz_step": step,
        "event_time_ms": int(datetime.fromisoformat(summary["event_time"]).timestamp() * 1000),
        "epcs": epcs,
    }
    if summary["parent"]:
        payload["parent"] = unit_of_epc(summary["parent"])
    extra = {
        "lot": context.lot,
        "destination": context.destination,
        "shipment": context.shipment,
        "device": context.device,
    }
    wanted = {
        "commissioning": ("lot",),
        "shipping": ("destination", "shipment", "device"),
        "receiving": ("shipment",),
    }.get(step, ())
    for name in wanted:
        if extra[name] is None:
            raise ValueError(
                f"a {step} event needs --{name} (the {name} query parameter at an edge)"
            )
        payload[name] = extra[name]
    return payload


@dataclass(frozen=True)
class RecallChange:
    """An event whose persistentDisposition sets (`recalled` True) or unsets `recalled`:
    the units it lists (`<gtin>/<serial>`) and the batches (gtin, lot) its quantity
    elements name by LGTIN class."""

    event_number: int  # counted from 1, as in every message
    event_hash: str
    recalled: bool
    units: tuple[str, ...]
    batches: tuple[tuple[str, str], ...]


def recall_changes(document: bytes | str, kind: str = "jsonld") -> list[RecallChange]:
    """Every event of the document that sets or unsets the `recalled` persistent
    disposition, in document order. An event that does both is refused."""
    hashes = epcis.event_hashes(document, kind)
    changes = []
    for number, (event_hash, event) in enumerate(
        zip(hashes, epcis.events(document, kind), strict=True), start=1
    ):
        with numbered(number):
            change = _recall_change(number, event_hash, epcis.summarize(event))
        if change is not None:
            changes.append(change)
    return changes


def _recall_change(number: int, event_hash: str, summary: epcis.Summary) -> RecallChange | None:
    sets, unsets = (
        RECALLED in summary["disposition_set"],
        RECALLED in summary["disposition_unset"],
    )
    if not (sets or unsets):
        return None
    if sets and unsets:
        raise ValueError("persistentDisposition both sets and unsets recalled")
    units = tuple(dict.fromkeys(unit_of_epc(e) for e in summary["epcs"]))
    batches = tuple(dict.fromkeys(batch_of_class(q["epcClass"]) for q in summary["quantities"]))
    if not (units or batches):
        raise ValueError(
            "a recall by persistentDisposition must list the units "
            "(epcList) or the batches (quantityList with LGTIN classes) it concerns"
        )
    return RecallChange(number, event_hash, sets, units, batches)


@dataclass(frozen=True)
class BatchState:
    """What the ledger says of a pack's batch: its GTIN and lot, and whether recalled."""

    gtin: str
    lot: str
    recalled: bool


def recall_calls(
    change: RecallChange, batch_of_unit: Callable[[str], BatchState]
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The supply calls (`recall` or `lift_recall`, payload) that apply one change, and
    notes on batches already in the state it asks for.

    `batch_of_unit(unit)` reads a listed pack's batch from the ledger (the CLI asks its
    node, an edge its own); call this only once the document's earlier events are
    committed, since a recall may name packs the same document commissioned.
    """
    batches = list(change.batches)
    known: dict[tuple[str, str], bool] = {}
    for unit in change.units:
        gtin, _, serial = unit.partition("/")
        if not serial:
            raise InvalidGS1(
                f"event {change.event_number}: {unit!r} is not a pack (<gtin>/<serial>); "
                "a recall names packs or LGTIN batches"
            )
        state = batch_of_unit(unit)
        batches.append((state.gtin, state.lot))
        known[(state.gtin, state.lot)] = state.recalled
    action = "recall" if change.recalled else "lift_recall"
    what = "sets" if change.recalled else "unsets"
    reason = f"EPCIS event {change.event_number} {what} recalled ({change.event_hash})"
    calls, notes = [], []
    for gtin, lot in dict.fromkeys(batches):
        if known.get((gtin, lot)) == change.recalled:
            already = "recalled" if change.recalled else "not recalled"
            notes.append(f"batch {gtin}/{lot} is already {already}")
            continue
        calls.append((action, {"gtin": gtin, "lot": lot, "reason": reason}))
    return calls, notes


def batch_of_class(epc_class: str) -> tuple[str, str]:
    """(gtin, lot) of a batch's EPC class: `urn:epc:class:lgtin:<prefix>.<indicator+item>.
    <lot>` or a GS1 Digital Link with AI 01 and 10."""
    if epc_class.startswith("urn:epc:class:lgtin:"):
        try:
            prefix, item, lot = epc_class[len("urn:epc:class:lgtin:") :].split(".", 2)
        except ValueError:
            raise InvalidGS1(f"malformed LGTIN {epc_class!r}") from None
        if not (prefix.isdigit() and item.isdigit() and len(prefix) + len(item) == 13):
            raise InvalidGS1(
                f"LGTIN {epc_class!r}: company prefix + item reference must be 13 digits"
            )
        body = item[0] + prefix + item[1:]
        gtin = validate_gtin(f"{body}{gs1_standard_check_digit(body)}")
        return gtin, unquote(lot)
    if "/01/" in epc_class and "/10/" in epc_class:
        pack = parse_gs1(epc_class)
        if pack.lot:
            return pack.gtin, pack.lot
    raise InvalidGS1(
        f"{epc_class!r} does not name a batch: give an LGTIN (urn:epc:class:lgtin:...) or a "
        "Digital Link with /01/<gtin>/10/<lot>"
    )
