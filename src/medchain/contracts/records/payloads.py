"""Typed payloads of the records contract, validated before any state read.

Ids a payload creates (a new record id) carry their pattern here. Optional fields are
UNSET when absent: an explicit null is refused, as before. Ids a payload
only refers to (the record to supersede or erase, the patient) are plain text:
they are looked up, and an id no record could have is simply not found, the
answer it has always had.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType

from medchain.contracts.payload import Payload, whole
from medchain.contracts.records.model import (
    MAX_ANCHORED_ENTRIES,
    MAX_BATCH_RECORDS,
    RESOURCE_TYPES,
)

RECORD_ID = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"
CID = r"b[a-z2-7]{20,120}"  # CIDv1, base32
EXAM_CODE = r"[a-z][a-z0-9.+-]*:[^|\s]{1,100}\|[A-Za-z0-9._-]{1,40}"  # <system URI>|<code>
MAPPING_ID = r"[a-z0-9][a-z0-9._/-]{0,63}"
MAX_ERASE_REASON = 500

RecordId = Annotated[str, msgspec.Meta(pattern=whole(RECORD_ID))]
Cid = Annotated[str, msgspec.Meta(pattern=whole(CID))]
ExamCode = Annotated[str, msgspec.Meta(pattern=whole(EXAM_CODE))]
MappingId = Annotated[str, msgspec.Meta(pattern=whole(MAPPING_ID))]
Sm3Digest = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
ResourceType = Annotated[
    str,
    msgspec.Meta(
        description="a FHIR R4 resource type the consent policy governs",
        extra_json_schema={"enum": sorted(RESOURCE_TYPES)},
    ),
]


class MappingAttestationIn(Payload, frozen=True, kw_only=True):
    """This record is what mapping `mapping_hash` made from the input whose salted
    SM3 (same salt as content_hash) is `input_hash`."""

    mapping_id: MappingId
    mapping_hash: Sm3Digest
    input_hash: Sm3Digest


class RecordContent(Payload, frozen=True, kw_only=True):
    """What register and supersede both say about the stored record."""

    resource_type: ResourceType
    cid: Cid
    content_hash: Sm3Digest
    # An exam (imaging study, lab test) also says what it was and when, so other
    # hospitals can recognise it instead of repeating it.
    exam_code: ExamCode | UnsetType = UNSET
    performed_ms: int | UnsetType = UNSET
    derived_from: MappingAttestationIn | UnsetType = UNSET
    # The record types nested inside (contained resources, bundle entries): the
    # access decision requires the reader's role, and a type-scoped grant, to
    # cover each of them too (consent/policy.py record_types).
    carried_types: list[str] | UnsetType = UNSET

    def __post_init__(self) -> None:
        """Cross-field rules: a resource type the policy governs, an exam's code and
        time together, carried types sorted, distinct and governed."""
        if self.resource_type not in RESOURCE_TYPES:
            raise ValueError(f"resource_type must be one of {sorted(RESOURCE_TYPES)}")
        if (self.exam_code is UNSET) != (self.performed_ms is UNSET):
            raise ValueError("exam_code and performed_ms go together")
        carried = self.carried_types
        if carried is not UNSET and (
            not 0 < len(carried) <= len(RESOURCE_TYPES)
            or not all(kind in RESOURCE_TYPES for kind in carried)
            or carried != sorted(set(carried))
        ):
            raise ValueError(
                f"carried_types must be a sorted list of distinct types of {sorted(RESOURCE_TYPES)}"
            )


class RegisterPayload(RecordContent, frozen=True, kw_only=True):
    """records.register: a custodian registers a stored, encrypted record."""

    record_id: RecordId
    patient: str


class BatchEntry(RecordContent, frozen=True, kw_only=True):
    """One record of a records.register_batch: its id and what register would say."""

    record_id: RecordId


class RegisterBatchPayload(Payload, frozen=True, kw_only=True):
    """records.register_batch: one custodian registers many stored records of one
    patient in one transaction; `root` is the SM3 Merkle root over the entries'
    leaves (model.batch_leaf), in order."""

    patient: str
    root: Sm3Digest
    records: list[BatchEntry]

    def __post_init__(self) -> None:
        """1 to MAX_BATCH_RECORDS records, no record id twice."""
        if not 1 <= len(self.records) <= MAX_BATCH_RECORDS:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH_RECORDS} records")
        ids = [r.record_id for r in self.records]
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"record ids appear twice in the batch: {', '.join(twice[:3])}")


class SupersedePayload(RecordContent, frozen=True, kw_only=True):
    """records.supersede: a new version of `record_id`, stored as `new_record_id`."""

    record_id: str
    new_record_id: RecordId


class ErasePayload(Payload, frozen=True, kw_only=True):
    """records.erase: tombstone a record; `reason` is kept on the tombstone."""

    record_id: str
    reason: Annotated[str, msgspec.Meta(max_length=MAX_ERASE_REASON)] | UnsetType = UNSET


class AnchorLogPayload(Payload, frozen=True, kw_only=True):
    """records.anchor_log: entries first_seq..last_seq of the signer's edge audit
    log, by their SM3 Merkle root."""

    first_seq: int
    last_seq: int
    root: Sm3Digest

    def __post_init__(self) -> None:
        """A run of 1 to MAX_ANCHORED_ENTRIES entries, numbered from 1."""
        if not 1 <= self.first_seq <= self.last_seq or (
            self.last_seq - self.first_seq >= MAX_ANCHORED_ENTRIES
        ):
            raise ValueError(f"anchor 1 to {MAX_ANCHORED_ENTRIES} entries: first_seq <= last_seq")
