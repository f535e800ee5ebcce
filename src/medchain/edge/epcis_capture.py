"""EPCIS 2.0 documents at an organisation's edge: captured, recorded, served to partners.

Capture (staff of this organisation, signed): the document, XML or JSON-LD, is read
with gs1.ledger.plan_document, the same plan `medchain supply record` follows, so a
document that cannot be recorded whole is refused before anything is sent or kept.
The edge then records the events by their standard hashes (supply.record_event,
signed by its operator) and applies the recalls a persistentDisposition sets or
unsets (supply.recall / lift_recall), and keeps the document's bytes as received,
sealed (edge/epcis_store.py). The chain's hashes are the document's anchor.

Reading (signed): a document is served to the members of this organisation, to
regulators, and to the organisations the chain says took part in it: the one that
recorded an event, both ends of a shipment an event moved, the manufacturer and the
notified holders of a batch a recall in it names, and the owners of the GS1 numbers
its events name (below). Anyone else, a stranger's key included, gets the same 404 as
for a document that does not exist, and a search by EPC answers them the same empty
list whether or not any document names it. Each document served, and each non-empty
search, is an entry in the edge's audit log, which the edge anchors on chain.

An event's readPoint, bizLocation, source and destination name GS1 locations and
parties (SGLN, PGLN); they make an organisation a party only once governance has
registered the number to it on chain (supply.register_location), since anyone can
write any number into a document. That is decided when the document is read, so a
number registered later counts.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from medchain.contracts.identity.model import ACTIVE as ORG_ACTIVE
from medchain.contracts.identity.model import org_key
from medchain.contracts.supply.model import (
    batch_key,
    org_locations_prefix,
    shipment_key,
    unit_key,
)
from medchain.edge.custodian import Conflict, CustodianEdge, EdgeError, NotHere, Refused, Tampered
from medchain.edge.epcis_store import (
    DocumentNotFound,
    EpcisStore,
    NewDocument,
    StoredEvent,
    TamperedDocument,
)
from medchain.gs1.epcis import InvalidEPCIS
from medchain.gs1.identifiers import InvalidGS1, unit_of_epc
from medchain.gs1.ledger import BatchState, DocumentPlan, StepContext, plan_document, recall_calls
from medchain.sdk.signing import RequestSigner

# What a capture's Content-Type says the document is (parameters such as charset aside).
MEDIA_KINDS = {
    "application/xml": "xml",
    "text/xml": "xml",
    "application/ld+json": "jsonld",
    "application/json": "jsonld",
}
# The media type a stored document is served with, by kind.
SERVED_AS = {"xml": "application/xml", "jsonld": "application/ld+json"}
MAX_HITS = 100  # events one search by EPC answers
MAX_SCANNED = 5_000  # stored events a search looks through for those the caller may see
SERVED = "EPCIS_SERVED"  # the audit-log code of a document or search answered
MAX_LOCATIONS = 1_000  # GS1 numbers of one organisation an edge reads per request
# record_event txs submitted at once: well inside the node's batch body cap and a block.
CALLS_PER_BATCH = 500


class InvalidDocument(EdgeError):
    """The document is not EPCIS 2.0 this ledger can record; nothing was sent or kept."""

    code = "INVALID_EPCIS"


class UnsupportedMediaType(EdgeError):
    """The capture's Content-Type is not one of the EPCIS 2.0 document types."""

    code = "UNSUPPORTED_MEDIA_TYPE"


def media_kind(content_type: str | None) -> str | None:
    """ "xml" or "jsonld" for a capture's Content-Type, None for any other type."""
    if not content_type:
        return None
    return MEDIA_KINDS.get(content_type.split(";", 1)[0].strip().lower())


@dataclass(frozen=True)
class Capture:
    """What a capture recorded: the document's id and each event's outcome."""

    document_id: str
    media_type: str
    events: list[dict[str, Any]]
    recalls: list[dict[str, Any]]
    notes: list[str]
    refused: list[str]
    parties: dict[str, list[str]]

    def to_json(self) -> dict[str, Any]:
        """The capture as the edge's HTTP answer sends it."""
        return {
            "document_id": self.document_id,
            "media_type": self.media_type,
            "events": self.events,
            "recalls": self.recalls,
            "notes": self.notes,
            "refused": self.refused,
            "parties": self.parties,
        }


class EpcisDocuments:
    """One edge's EPCIS capture and document service, over its store and its node."""

    def __init__(self, edge: CustodianEdge, store: EpcisStore) -> None:
        self.edge, self.store = edge, store

    # -- capture ----------------------------------------------------------------

    def capturer(self, signer: RequestSigner) -> dict[str, Any]:
        """The signer, if an active staff member of this organisation (any staff role,
        devices such as scanners included); else Refused."""
        member = self.edge.caller_member(signer)
        if member["org_id"] != self.edge.org_id or "patient" in member["roles"]:
            raise Refused(f"only staff of {self.edge.org_id} may capture EPCIS documents here")
        return member

    def capture(
        self, content: bytes, kind: str, context: StepContext, member: dict[str, Any]
    ) -> Capture:
        """Record a document's events and recalls on chain, then keep it sealed.

        InvalidDocument (nothing sent, nothing kept) if any event cannot be recorded;
        Conflict (nothing kept) if the chain recorded none of it. Once the chain has
        recorded an event the document is kept, with what was refused listed."""
        try:
            plan = plan_document(content, context, kind)
        except (InvalidEPCIS, InvalidGS1, ValueError) as e:
            raise InvalidDocument(
                str(e), "nothing was recorded or stored; correct the document and send it again"
            ) from None
        if not plan.calls and not plan.changes:
            raise InvalidDocument(
                "no event of this document is one the ledger records: "
                + ("; ".join(plan.notes) or "it has no events"),
                "nothing was recorded or stored",
            )
        heights: dict[int, int] = {}
        parties: set[tuple[str, str]] = set()
        refused = self._record_events(plan, heights, parties)
        recalls: list[dict[str, Any]] = []
        notes = list(plan.notes)
        if not refused:
            refused = self._apply_recalls(plan, heights, recalls, notes, parties)
        if not heights and not any(r["height"] is not None for r in recalls):
            raise Conflict(
                "the chain recorded nothing of this document: " + "; ".join(refused or notes),
                "nothing was stored; correct what the chain refused and send it again",
            )
        document_id = f"{self.edge.org_id}-epcis-{secrets.token_hex(10)}"
        events = self._stored_events(plan, heights)
        self.store.add(
            NewDocument(
                document_id,
                content,
                SERVED_AS[kind],
                str(member["did"]),
                int(time.time() * 1000),
                tuple(events),
                tuple(sorted(parties)),
                tuple(dict.fromkeys(n for names in plan.named for n in names)),
            )
        )
        return Capture(
            document_id,
            SERVED_AS[kind],
            [_event_json(e) for e in events],
            recalls,
            notes,
            refused,
            self.store.parties(document_id),
        )

    def _record_events(
        self, plan: DocumentPlan, heights: dict[int, int], parties: set[tuple[str, str]]
    ) -> list[str]:
        """Submit the document's record_event calls in document order (batches of
        CALLS_PER_BATCH, each committed before the next); what the chain refused, each
        naming its event."""
        numbers = _call_numbers(plan)
        calls = [("supply", "record_event", call) for call in plan.calls]
        results: list[dict[str, Any]] = []
        for start in range(0, len(calls), CALLS_PER_BATCH):  # in order, batch after batch
            results += self.edge._register(calls[start : start + CALLS_PER_BATCH])
        refused = []
        shipments = set()
        for number, call, result in zip(numbers, plan.calls, results, strict=True):
            if result.get("code") != 0:
                refused.append(f"event {number}: the chain refused it: {result.get('log')}")
                continue
            heights[number] = int(result["height"])
            for event in result.get("events", []):
                if event["type"] == "supply.event":
                    parties.add((event["attributes"]["org"], f"recorded event {number}"))
            if "shipment" in call:
                shipments.add(str(call["shipment"]))
        for shipment_id in sorted(shipments):
            shipment = self.edge.node.value(shipment_key(shipment_id))
            if shipment is not None:
                parties.add((shipment["from"], f"shipment {shipment_id} from"))
                parties.add((shipment["to"], f"shipment {shipment_id} to"))
        return refused

    def _apply_recalls(
        self,
        plan: DocumentPlan,
        heights: dict[int, int],
        recalls: list[dict[str, Any]],
        notes: list[str],
        parties: set[tuple[str, str]],
    ) -> list[str]:
        """Apply each recall change after the events it may depend on are committed
        (the recall's reason names the event's hash: its anchor); stops at the first
        refusal, which it returns. The batch's manufacturer and the holders the chain
        notified become parties to the document."""
        for change in plan.changes:

            def batch_of_unit(unit: str, number: int = change.event_number) -> BatchState:
                found = self.edge.node.value(unit_key(unit))
                if found is None:
                    raise InvalidGS1(f"event {number}: pack {unit} is not on the ledger")
                gtin, lot = str(found["gtin"]), str(found["lot"])
                batch = self.edge.node.value(batch_key(gtin, lot))
                return BatchState(gtin, lot, batch is not None and batch["status"] == "recalled")

            try:
                calls, unchanged = recall_calls(change, batch_of_unit)
            except InvalidGS1 as e:
                return [str(e)]
            notes.extend(f"event {change.event_number}: {n}" for n in unchanged)
            results = self.edge._register([("supply", action, p) for action, p in calls])
            for (action, payload), result in zip(calls, results, strict=True):
                ok = result.get("code") == 0
                recalls.append(
                    {
                        "event": change.event_number,
                        "action": action,
                        "gtin": payload["gtin"],
                        "lot": payload["lot"],
                        "height": result.get("height") if ok else None,
                    }
                )
                if not ok:
                    return [
                        f"event {change.event_number}: the chain refused {action}: "
                        f"{result.get('log')}"
                    ]
                heights.setdefault(change.event_number, int(result["height"]))
                batch = self.edge.node.value(batch_key(payload["gtin"], payload["lot"]))
                if batch is not None:
                    parties.add((batch["manufacturer"], f"batch of event {change.event_number}"))
                for event in result.get("events", []):
                    for org in str(event["attributes"].get("notify", "")).split(","):
                        if org:
                            parties.add((org, f"notified by event {change.event_number}"))
        return []

    @staticmethod
    def _stored_events(plan: DocumentPlan, heights: dict[int, int]) -> list[StoredEvent]:
        events = []
        for number, (event_hash, summary) in enumerate(
            zip(plan.hashes, plan.summaries, strict=True), start=1
        ):
            epcs = []
            for epc in [*summary["epcs"], *([summary["parent"]] if summary["parent"] else [])]:
                try:
                    unit = unit_of_epc(epc)
                except InvalidGS1:
                    unit = epc
                epcs.append((epc, unit))
            events.append(
                StoredEvent(
                    number,
                    event_hash,
                    summary["biz_step"],
                    summary["event_time"],
                    heights.get(number),
                    tuple(epcs),
                )
            )
        return events

    # -- reading ----------------------------------------------------------------

    def may_read(self, reader: Reader, document_id: str) -> bool:
        """Whether this active member may read the document (which exists here): staff
        of this organisation, a regulator, or staff of an active organisation the chain
        says took part in it (a party to an event it recorded, or the owner of a GS1
        location or party number the document names)."""
        member, org_id = reader.member, reader.member["org_id"]
        if org_id is None or "patient" in member["roles"]:
            return False
        if org_id == self.edge.org_id or "regulator" in member["roles"]:
            return True
        if org_id not in self.store.parties(document_id):
            locations = reader.locations(self.edge)
            if not (locations and self.store.names_any(document_id, locations)):
                return False
        return reader.org_active(self.edge)

    def _reader(self, signer: RequestSigner) -> Reader | None:
        try:
            return Reader(self.edge.caller_member(signer))
        except Refused:
            return None

    def document(self, signer: RequestSigner, document_id: str, path: str) -> tuple[str, bytes]:
        """(media type, bytes as received) of a document the signer may read; one
        NotHere for absent and for not theirs. Each one served goes into the audit log."""
        absent = NotHere(f"no EPCIS document {document_id!r} here")
        reader = self._reader(signer)
        if reader is None:
            raise absent
        try:
            info = self.store.info(document_id)
        except DocumentNotFound:
            raise absent from None
        if not self.may_read(reader, document_id):
            raise absent
        try:
            content = self.store.content(document_id)
        except TamperedDocument as e:
            raise Tampered(str(e), "the custodian must restore this document from backup") from None
        self._log(reader.member, signer, path, f"EPCIS document {document_id} served", document_id)
        return info.media_type, content

    def events_naming(
        self, signer: RequestSigner, epc: str, path: str, limit: int = MAX_HITS
    ) -> list[dict[str, Any]]:
        """The events of documents the signer may read that name an EPC (as written in
        the documents, e.g. an SGTIN URI, or as a ledger unit id <gtin>/<serial>);
        an empty list, the same for a stranger whatever is stored."""
        reader = self._reader(signer)
        if reader is None:
            return []
        try:
            unit = unit_of_epc(epc)
        except InvalidGS1:
            unit = epc
        readable: dict[str, bool] = {}
        hits = []
        for hit in self.store.naming(epc, unit, MAX_SCANNED):
            if hit.document_id not in readable:
                readable[hit.document_id] = self.may_read(reader, hit.document_id)
            if readable[hit.document_id]:
                hits.append(
                    {
                        "document_id": hit.document_id,
                        "event": hit.number,
                        "event_hash": hit.event_hash,
                        "biz_step": hit.biz_step,
                        "event_time": hit.event_time,
                        "height": hit.height,
                    }
                )
                if len(hits) >= limit:
                    break
        if hits:
            named = sorted({str(h["document_id"]) for h in hits})
            message = f"EPCIS events of {', '.join(named)} served"
            self._log(reader.member, signer, path, message, None)
        return hits

    def _log(
        self,
        member: dict[str, Any],
        signer: RequestSigner,
        path: str,
        message: str,
        document_id: str | None,
    ) -> None:
        self.edge.audit_log.append(
            time_ms=int(time.time() * 1000),
            method="GET",
            path=path,
            status=200,
            code=SERVED,
            message=message,
            key=signer.public_key.hex(),
            key_verified=1,
            reader=str(member["did"]),
            org=member["org_id"],
            document=document_id,
        )


class Reader:
    """Who asks to read, and what the chain says of their organisation, each asked of
    the node at most once per request."""

    def __init__(self, member: dict[str, Any]) -> None:
        self.member = member
        self._locations: set[str] | None = None
        self._active: bool | None = None

    def locations(self, edge: CustodianEdge) -> set[str]:
        """The GS1 location and party numbers registered to the reader's organisation."""
        if self._locations is None:
            prefix = org_locations_prefix(self.member["org_id"])
            items = edge.node.scan(prefix, MAX_LOCATIONS)["items"]
            self._locations = {item["key"].removeprefix(prefix) for item in items}
        return self._locations

    def org_active(self, edge: CustodianEdge) -> bool:
        """Whether the reader's organisation is active on chain (not suspended)."""
        if self._active is None:
            org = edge.node.value(org_key(self.member["org_id"]))
            self._active = org is not None and org["status"] == ORG_ACTIVE
        return self._active


def _call_numbers(plan: DocumentPlan) -> list[int]:
    """The event number (from 1) of each record_event call, in order."""
    numbers, position = [], 0
    for call in plan.calls:
        while plan.hashes[position] != call["event_hash"]:
            position += 1
        position += 1
        numbers.append(position)
    return numbers


def _event_json(event: StoredEvent) -> dict[str, Any]:
    return {
        "event": event.number,
        "event_hash": event.event_hash,
        "biz_step": event.biz_step,
        "event_time": event.event_time,
        "height": event.height,
        "recorded": event.height is not None,
    }
