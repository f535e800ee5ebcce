"""From an EPCIS 2.0 document to `supply.record_event` calls.

The document stays with the organisation that wrote it; the chain gets, per
event, its standard hash and what the contract needs to check the step: the
units (EPCs as `<gtin>/<serial>`, cases and pallets as container ids), the
business step and time, and for shipping the destination, shipment id and
logger device, which a hospital or distributor knows from its own records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from medchain.contracts.supply.model import BIZ_STEPS
from medchain.gs1 import epcis
from medchain.gs1.identifiers import unit_of_epc


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
    """(record_event payloads, notes on events the ledger does not track)."""
    hashes = epcis.event_hashes(document, kind)
    found = epcis.events(document)
    calls, notes = [], []
    for event_hash, event in zip(hashes, found, strict=True):
        summary = epcis.summarize(event)
        step = summary["biz_step"]
        if step not in BIZ_STEPS:
            notes.append(f"{event_hash}: business step {step!r} is not tracked on the ledger")
            continue
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
                raise ValueError(f"a {step} event needs --{name}")
            payload[name] = extra[name]
        calls.append(payload)
    return calls, notes
