"""Bulk intake at a custodian's edge: FHIR files, HL7 v2 messages, CSV exports.

Each import validates (and converts) everything first and stores nothing if
any part is invalid, naming the resource, segment/field or row/column. Then
records are stored and registered per patient, in as few blocks as the chain
takes: a patient's new records in records.register_batch txs, every
patient's submitted before any block is waited for. Converted records carry a
mapping attestation on chain: the mapping's hash and the salted hash of the
exact HIS input they came from.

Who a record belongs to: a ledger DID given by the caller, or the edge's
patient index (HIS identifier -> DID, `link_patient`), which the hospital
keeps when a patient enrols.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from medchain import crypto
from medchain.contracts.records.model import RESOURCE_TYPES
from medchain.edge.custodian import BadRecord, CustodianEdge, Intake, Prepared, Source
from medchain.edge.validation_pool import Job, Outcome, Refusal, check_jobs
from medchain.edge.vault import content_hash
from medchain.fhir import bundle
from medchain.fhir.conversion import Conversion, MappingError
from medchain.fhir.csv_map import convert_csv, load_mapping
from medchain.fhir.hl7v2 import convert_message, split_messages
from medchain.fhir.hl7v2.versions import known_version, same_mapping
from medchain.fhir.validate import InvalidFhir, validate_resource

SOURCE_ID_SYSTEM = "urn:medchain:source-patient-id"


@dataclass
class ImportReport:
    """The outcome of one import, per patient."""

    patients: dict[str, Intake] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Totals and per-patient outcomes, as the import endpoint and CLI report them."""
        return {
            "imported": sum(len(i.imported) for i in self.patients.values()),
            "rejected": sum(len(i.rejected) for i in self.patients.values()),
            "patients": {did: i.to_json() for did, i in self.patients.items()},
            "skipped": self.skipped,
            "unresolved_patients": self.unresolved,
        }


def record_id_for(org_id: str, patient: str, source_ref: str) -> str:
    """Deterministic, so importing the same file again finds the records already there."""
    digest = crypto.sm3(f"{org_id}|{patient}|{source_ref}".encode()).hex()[:20]
    return f"{org_id}-{digest}"


def _id_maker(org_id: str, patient: str, prefix: str = "") -> Callable[[dict[str, Any]], str]:
    def new_id(resource: dict[str, Any]) -> str:
        ref = f"{prefix}{resource['resourceType']}/{resource.get('id')}"
        return record_id_for(org_id, patient, ref)

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
    if patient is not None and len(read.groups) > 1:
        raise BadRecord(
            f"the file holds {len(read.groups)} patients; a single --patient cannot own them",
            "link each patient's HIS identifier to their DID, then import without --patient",
        )
    report = ImportReport(skipped=notes + read.skipped)
    owners = []
    for group in read.groups:
        identifiers = [*bundle.iter_identifiers(group.patient), (SOURCE_ID_SYSTEM, group.key)]
        did = _resolve(edge, patient, identifiers)
        if did is None:
            report.unresolved.append(f"Patient/{group.key}: no ledger DID linked")
        else:
            owners.append((group, did))
    # The chain answers who each patient's key is while this thread validates.
    with ThreadPoolExecutor(1, thread_name_prefix="import-keys") as chain_reads:
        keys = {did: chain_reads.submit(edge.patient_key, did) for _, did in owners}
        plan = _validate_all(edge, items, read, owners, report)
        owner_keys = {did: key.result() for did, key in keys.items()}
    report.patients.update(edge.commit_many(plan, owner_keys))  # all valid: store, register
    return report


def _validate_all(
    edge: CustodianEdge,
    items: list[tuple[dict[str, Any], str | None]],
    read: bundle.ReadResult,
    owners: list[tuple[bundle.PatientGroup, str]],
    report: ImportReport,
) -> list[tuple[str, list[Prepared]]]:
    """Validate every resource of a file (BadRecord naming the first invalid one, in
    file order) and prepare the records of each patient with a DID: in this thread,
    or across the edge's validation workers when it has them."""
    grouped = {id(r) for g in read.groups for r in g.resources}
    checked = [  # what will not become a record is still checked
        resource
        for resource, _ in items
        if id(resource) not in grouped or resource.get("resourceType") not in RESOURCE_TYPES
    ]
    per_patient = []
    for group, did in owners:
        records = [r for r in group.resources if r["resourceType"] in RESOURCE_TYPES]
        report.skipped.extend(
            f"{r['resourceType']}/{r.get('id')}: valid, but not a record type the ledger holds"
            for r in group.resources
            if r["resourceType"] not in RESOURCE_TYPES
        )
        group.resources = records
        assigned = bundle.assign_ids(group, read.aliases, _id_maker(edge.org_id, did))
        per_patient.append((did, records, assigned))
    jobs: list[Job] = [(resource, None) for resource in checked]
    jobs += [(r, record_id) for _, _, assigned in per_patient for record_id, r in assigned]
    outcomes = iter(_check(edge, jobs))
    for resource in checked:
        refusal = next(outcomes)
        if isinstance(refusal, Refusal):
            ref = f"{resource.get('resourceType')}/{resource.get('id')}"
            hint = "nothing was imported; fix the file and retry"
            raise BadRecord(f"{ref}: {refusal.message}", hint, refusal.issues)
    plan: list[tuple[str, list[Prepared]]] = []
    for did, records, _ in per_patient:
        prepared = []
        for original in records:
            outcome = next(outcomes)
            if not isinstance(outcome, Prepared):
                ref = f"{original['resourceType']}/{original.get('id')}"
                message = outcome.message if outcome is not None else "not validated"
                raise BadRecord(
                    f"{ref}: {message.split(': ', 1)[-1]}",
                    "nothing was imported; fix the file and retry",
                )
            prepared.append(outcome)
        plan.append((did, prepared))
    return plan


def _check(edge: CustodianEdge, jobs: list[Job]) -> list[Outcome]:
    if edge.validation is not None and len(jobs) > 1:
        return edge.validation.check(jobs)
    return check_jobs(jobs)


def derived_records(
    org_id: str, patient: str, conversion: Conversion
) -> list[tuple[str, dict[str, Any]]]:
    """The records a conversion becomes at custodian `org_id` for `patient`: record ids
    and resources with their references rewritten. Pure, so an auditor can re-derive
    exactly what was registered."""
    group = bundle.PatientGroup(conversion.patient.identifier, None, list(conversion.resources))
    refs = [f"{r['resourceType']}/{r['id']}" for r in conversion.resources]
    new_id = _id_maker(org_id, patient, f"{conversion.mapping_id}:")
    return bundle.assign_ids(group, {ref: ref for ref in refs}, new_id)


def import_conversions(
    edge: CustodianEdge, conversions: list[Conversion], patient: str | None
) -> ImportReport:
    """Store and register converted HIS input (HL7 v2 messages, CSV rows) per patient,
    each record attesting its mapping and input; unlinked patients are reported."""
    report = ImportReport()
    plan: dict[str, dict[str, Prepared]] = {}
    for conversion in conversions:
        source = conversion.patient
        did = _resolve(edge, patient, [(source.system, source.identifier)])
        if did is None:
            report.unresolved.append(
                f"{source.system}|{source.identifier}: no ledger DID linked to this patient"
            )
            continue
        origin = Source(conversion.input, conversion.mapping_id, conversion.mapping_hash)
        records = plan.setdefault(did, {})
        for record_id, resource in derived_records(edge.org_id, did, conversion):
            if record_id not in records:  # e.g. the same Patient on every CSV row
                records[record_id] = edge.prepare_resource(resource, record_id, source=origin)
    report.patients.update(edge.commit_many([(did, list(p.values())) for did, p in plan.items()]))
    return report


def import_hl7(edge: CustodianEdge, raw: bytes, patient: str | None = None) -> ImportReport:
    """One or more HL7 v2 messages (ADT^A01/A08, ORU^R01, RDE^O11)."""
    try:
        conversions = [convert_message(m) for m in split_messages(raw)]
    except MappingError as e:
        raise BadRecord(f"HL7 v2 {e}", "nothing was imported; fix the message and retry") from None
    return import_conversions(edge, conversions, patient)


def import_csv(
    edge: CustodianEdge, raw: bytes, mapping: str, patient: str | None = None
) -> ImportReport:
    """A CSV export (lab results, prescriptions) through a column mapping; local codes
    are qualified by this custodian's organisation id."""
    if "/" in mapping or mapping.endswith(".json"):
        raise BadRecord(
            "the edge uses its own bundled mappings (lab-result, prescription)",
            "install a custom mapping file on the edge and name it here",
        )
    try:
        conversions = convert_csv(raw, load_mapping(mapping).with_facility(edge.org_id))
    except (MappingError, FileNotFoundError, ValueError) as e:
        raise BadRecord(f"CSV {e}", "nothing was imported; fix the file and retry") from None
    return import_conversions(edge, conversions, patient)


def verify_derivation(record: dict[str, Any], salt: bytes, conversion: Conversion) -> list[str]:
    """Check a registered record against its attestation: the same mapping version
    (its hash, or an older name of that version in the HL7 v2 registry), the same
    input, and re-running the mapping gives exactly the registered content.
    `record` is the on-chain registration (bytes as hex, as the API returns it);
    `salt` comes from the custodian. An empty list means verified."""
    attestation = record.get("derived_from")
    if attestation is None:
        return ["the record carries no mapping attestation"]
    problems = []
    if attestation["mapping_id"] != conversion.mapping_id:
        problems.append(f"made by mapping {attestation['mapping_id']}, not {conversion.mapping_id}")
    attested = bytes.fromhex(attestation["mapping_hash"])
    if not same_mapping(attestation["mapping_id"], attested, conversion.mapping_hash):
        known = known_version(attestation["mapping_id"], attested)
        if known is None:
            problems.append("a different version of the mapping made this record")
        else:
            problems.append(f"made by {known.mapping_id}, which {known.rerun} re-runs")
    if content_hash(salt, conversion.input) != bytes.fromhex(attestation["input_hash"]):
        problems.append("the input is not the one the record was made from")
    derived = dict(derived_records(record["custodian"], record["patient"], conversion))
    resource = derived.get(record["record_id"])
    if resource is None:
        problems.append("re-running the mapping does not produce this record")
    else:
        _, content, _ = validate_resource(resource, record["record_id"])
        if content_hash(salt, content) != bytes.fromhex(record["content_hash"]):
            problems.append("re-running the mapping gives different content")
    return problems
