"""Records vocabulary, state records and every state key of the records contract.

The state records are TypedDicts, not classes: a record is stored as the plain
map it always was (canonical CBOR of a dict), so typing it changes neither the
bytes nor the app hash, and readers (gateway, edge, policy) keep getting dicts.
Fields that only some records have (an exam's code, a tombstone's erasure) are
`NotRequired`: they are absent from the map, never stored as null.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from medchain import encoding
from medchain.contracts.consent.model import CLINICAL as CLINICAL_TYPES
from medchain.core.merkle import leaf_hash, merkle_root

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
# How many records one records.register_batch may carry (its tx stays well under
# the 64 KiB tx limit: an entry is ~200-400 bytes of CBOR).
MAX_BATCH_RECORDS = 128


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
    batch_root: NotRequired[bytes]  # registered by records.register_batch: its root
    batch_index: NotRequired[int]  # and this record's leaf, counted from 0


class BatchAnchor(TypedDict):
    """One records.register_batch: the Merkle root over its records' leaves, so any
    of them is provable by its path, with who registered it for whom and when. The
    leaves are kept too, so any node can give a record's path from state alone."""

    root: bytes
    leaves: list[bytes]
    patient: str
    custodian: str
    registered_by: str
    height: int
    time_ms: int


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
BATCH_PREFIX = f"{NAMESPACE}/batch/"


def record_key(record_id: str) -> str:
    """Where a record lives."""
    return f"{RECORD_PREFIX}{record_id}"


def batch_key(root: bytes) -> str:
    """Where a registered batch's anchor lives, by its Merkle root."""
    return f"{BATCH_PREFIX}{root.hex()}"


def batch_leaf(patient: str, entry: dict[str, Any]) -> bytes:
    """The Merkle leaf of one record of a batch: SM3 over the canonical CBOR of the
    patient and the record's entry exactly as the payload carries it (record_id,
    resource_type, cid, content_hash and any optional field), domain-separated.
    The patient is in the leaf so a path proves whose record it is."""
    return leaf_hash(encoding.encode({"patient": patient, **entry}))


def batch_root(patient: str, entries: list[dict[str, Any]]) -> bytes:
    """The root a records.register_batch of these entries (in order) must carry."""
    return merkle_root([batch_leaf(patient, entry) for entry in entries])


ENTRY_FIELDS = (
    "record_id",
    "resource_type",
    "cid",
    "content_hash",
    "exam_code",
    "performed_ms",
    "derived_from",
    "carried_types",
)


def batch_entry_of(record: Record) -> dict[str, Any]:
    """The batch entry a registered record was made from, rebuilt from its state
    (for its leaf); ValueError once erased, as the tombstone dropped the CID (the
    registration tx in its block still holds the entry)."""
    if record["cid"] is None:
        raise ValueError(f"record {record['record_id']!r} is erased: its entry is in its tx")
    fields: dict[str, Any] = dict(record)
    return {name: fields[name] for name in ENTRY_FIELDS if name in fields}


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
