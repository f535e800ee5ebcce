"""Records vocabulary, state records and every state key of the records contract.

The state records are TypedDicts, not classes: a record is stored as the plain
map it always was (canonical CBOR of a dict), so typing it changes neither the
bytes nor the app hash, and readers (gateway, edge, policy) keep getting dicts.
Fields that only some records have (an exam's code, a tombstone's erasure) are
`NotRequired`: they are absent from the map, never stored as null.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from medchain.contracts.consent.model import CLINICAL as CLINICAL_TYPES

NAMESPACE = "records"

# Who may register, supersede and release records for their organisation.
CUSTODIAN_ROLES = frozenset(
    {"doctor", "attending", "department_head", "nurse", "lab_technician", "pharmacist", "org_admin"}
)
# FHIR R4 resource types a record may hold: those the consent policy governs.
RESOURCE_TYPES = frozenset(CLINICAL_TYPES)

# A record's status: superseded and erased records stay on chain for audit.
ACTIVE, SUPERSEDED, ERASED = "active", "superseded", "erased"

# How many edge audit-log entries one anchor may cover.
MAX_ANCHORED_ENTRIES = 100_000


class MappingAttestation(TypedDict):
    """This record is what mapping `mapping_hash` made from the input whose salted
    SM3 (same salt as the record's content_hash) is `input_hash`."""

    mapping_id: str
    mapping_hash: bytes
    input_hash: bytes


class Record(TypedDict):
    """What the chain knows of one health record (the record stays off chain)."""

    record_id: str
    patient: str
    custodian: str
    resource_type: str
    cid: str | None  # None once erased: the tombstone drops the location
    content_hash: bytes
    exam_code: NotRequired[str]
    performed_ms: NotRequired[int]
    derived_from: NotRequired[MappingAttestation]
    carried_types: NotRequired[list[str]]
    status: str
    supersedes: str | None
    superseded_by: NotRequired[str]
    registered_by: str
    created_height: int
    created_time_ms: int
    erased_height: NotRequired[int]
    erased_by: NotRequired[str]
    erase_reason: NotRequired[str]


class PatientIndexEntry(TypedDict):
    """One entry of a patient's record index (the key says whose and which)."""

    record_id: str


class EdgeLogAnchor(TypedDict):
    """One anchored run of a custodian edge's local audit log; the latest one is
    also the log's head, where the next run must start."""

    first_seq: int
    last_seq: int
    root: bytes
    height: int


RECORD_PREFIX = f"{NAMESPACE}/record/"


def record_key(record_id: str) -> str:
    """Where a record lives."""
    return f"{RECORD_PREFIX}{record_id}"


def patient_index_prefix(patient_did: str) -> str:
    """The prefix under which a patient's records are indexed: scan it to list them."""
    return f"{NAMESPACE}/by-patient/{patient_did}/"


def patient_index_key(patient_did: str, record_id: str) -> str:
    """A patient's index entry for one record."""
    return f"{patient_index_prefix(patient_did)}{record_id}"


def edge_log_key(org_id: str) -> str:
    """Where an edge's audit log stands: the last anchored entry and its root."""
    return f"{NAMESPACE}/edge-log/{org_id}"


def edge_log_anchor_key(org_id: str, last_seq: int) -> str:
    """One anchored run of an edge's audit log, kept so any entry stays provable."""
    return f"{edge_log_key(org_id)}/{last_seq:020d}"
