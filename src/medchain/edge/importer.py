"""Bulk intake at a custodian's edge: FHIR files, HL7 v2 messages, CSV exports.

Each import validates (and converts) everything first and stores nothing if
any part is invalid, naming the resource, segment/field or row/column. Then
records are stored and registered per patient, in as few blocks as the chain
takes. Converted records carry a mapping attestation on chain: the mapping's
hash and the salted hash of the exact HIS input they came from.

Who a record belongs to: a ledger DID given by the caller, or the edge's
patient index (HIS identifier -> DID, `link_patient`), which the hospital
keeps when a patient enrols.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medchain import crypto
from medchain.contracts.records.handler import RESOURCE_TYPES
from medchain.edge.custodian import BadRecord, CustodianEdge, Intake, Prepared
from medchain.fhir import bundle
from medchain.fhir.validate import InvalidFhir, canonical_json, parse_resource

SOURCE_ID_SYSTEM = "urn:medchain:source-patient-id"


@dataclass
class ImportReport:
    """The outcome of one import, per patient."""

    patients: dict[str, Intake] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "imported": sum(len(i.imported) for i in self.patients.values()),
            "rejected": sum(len(i.rejected) for i in self.patients.values()),
            "patients": {did: i.to_json() for did, i in self.patients.items()},
            "skipped": self.skipped,
            "unresolved_patients": self.unresolved,
        }


def record_id_for(edge: CustodianEdge, patient: str, source_ref: str) -> str:
    """Deterministic, so importing the same file again finds the records already there."""
    digest = crypto.sm3(f"{edge.org_id}|{patient}|{source_ref}".encode()).hex()[:20]
    return f"{edge.org_id}-{digest}"


def _validate(resource: dict[str, Any]) -> None:
    try:
        parse_resource(canonical_json(resource))
    except InvalidFhir as e:
        ref = f"{resource.get('resourceType')}/{resource.get('id')}"
        raise BadRecord(f"{ref}: {e}", "nothing was imported; fix the file and retry") from None


def _id_maker(edge: CustodianEdge, patient: str) -> Callable[[dict[str, Any]], str]:
    def new_id(resource: dict[str, Any]) -> str:
        return record_id_for(edge, patient, f"{resource['resourceType']}/{resource.get('id')}")

    return new_id


def _resolve(
    edge: CustodianEdge, given: str | None, identifiers: list[tuple[str, str]]
) -> str | None:
    if given is not None:
        return given
    for system, value in identifiers:
        did = edge.vault.patient_did(system, value)
        if did is not None:
            return did
    return None


def import_fhir(edge: CustodianEdge, raw: bytes, patient: str | None = None) -> ImportReport:
    """A FHIR R4 resource, Bundle or NDJSON file; split per patient."""
    try:
        items, notes = bundle.read_file(raw)
        read = bundle.group_by_patient(items)
    except (InvalidFhir, UnicodeDecodeError, KeyError, TypeError) as e:
        raise BadRecord(f"cannot read the file: {e}") from None
    grouped = {id(r) for g in read.groups for r in g.resources}
    for resource, _ in items:  # what will not become a record is still checked
        if id(resource) not in grouped or resource.get("resourceType") not in RESOURCE_TYPES:
            _validate(resource)
    if patient is not None and len(read.groups) > 1:
        raise BadRecord(
            f"the file holds {len(read.groups)} patients; a single --patient cannot own them",
            "link each patient's HIS identifier to their DID, then import without --patient",
        )
    report = ImportReport(skipped=notes + read.skipped)
    plan: list[tuple[str, list[Prepared]]] = []
    for group in read.groups:
        identifiers = [*bundle.iter_identifiers(group.patient), (SOURCE_ID_SYSTEM, group.key)]
        did = _resolve(edge, patient, identifiers)
        if did is None:
            report.unresolved.append(f"Patient/{group.key}: no ledger DID linked")
            continue
        records = [r for r in group.resources if r["resourceType"] in RESOURCE_TYPES]
        report.skipped.extend(
            f"{r['resourceType']}/{r.get('id')}: valid, but not a record type the ledger holds"
            for r in group.resources
            if r["resourceType"] not in RESOURCE_TYPES
        )
        group.resources = records
        assigned = bundle.assign_ids(group, read.aliases, _id_maker(edge, did))
        prepared = []
        for original, (record_id, resource) in zip(records, assigned, strict=True):
            try:
                prepared.append(edge.prepare(canonical_json(resource), record_id))
            except BadRecord as e:
                ref = f"{original['resourceType']}/{original.get('id')}"
                raise BadRecord(
                    f"{ref}: {e.message.split(': ', 1)[-1]}",
                    "nothing was imported; fix the file and retry",
                ) from None
        plan.append((did, prepared))
    for did, prepared in plan:  # everything validated: now store and register
        report.patients[did] = edge.commit(did, prepared)
    return report
