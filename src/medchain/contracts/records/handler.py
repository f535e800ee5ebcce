"""Records contract: register, supersede and erase health records.

Only what every member must agree on goes on chain: the record id, the
patient's DID, the custodian organisation, the FHIR resource type, the CID of
the ciphertext in the custodian's vault, and a salted SM3 of the plaintext.

Authority:
  register    a staff member (doctor, nurse, lab technician, pharmacist,
              org admin) of the custodian organisation, for a registered patient
  register_batch  the same, many records of one patient in one tx under the
              Merkle root of their leaves (each record provable by its path)
  supersede   the same, for a record its organisation holds
  erase       the patient, or an org admin of the custodian organisation
  anchor_log  a custodian's staff (its edge): the Merkle root of the next run of
              its edge's local audit log (refusals that never reached the chain)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec import UNSET

from medchain.contracts.base import ActionHandler, patient_member, signer_member, unauthorized
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import Payload, invalid
from medchain.contracts.records.model import (
    ACTIVE,
    CUSTODIAN_ROLES,
    ERASED,
    NAMESPACE,
    SUPERSEDED,
    BatchAnchor,
    EdgeLogAnchor,
    Record,
    batch_key,
    batch_leaf,
    edge_log_anchor_key,
    edge_log_key,
    patient_index_key,
    record_key,
)
from medchain.contracts.records.payloads import (
    AnchorLogPayload,
    ErasePayload,
    RecordContent,
    RegisterBatchPayload,
    RegisterPayload,
    SupersedePayload,
)
from medchain.core.context import Context
from medchain.core.merkle import merkle_root
from medchain.exceptions import Code, InvalidTransaction


def custodian_staff(ctx: Context, doing: str, org_id: str | None = None) -> dict[str, Any]:
    """The signer, if staff with a custodian role (of `org_id`, when given); else
    UNAUTHORIZED saying who may be `doing` this."""
    member = signer_member(ctx)
    org_ok = member["org_id"] is not None and org_id in (None, member["org_id"])
    if not org_ok or not CUSTODIAN_ROLES & set(member["roles"]):
        whose = "custodian" if org_id is None else f"{org_id}'s"
        raise unauthorized(
            f"only {whose} clinical staff (doctor, attending, department head, nurse, lab "
            f"technician, pharmacist) or org admin may {doing}"
        )
    return member


def registered(
    ctx: Context, record_id: str, patient: str, staff: dict[str, Any], content: RecordContent
) -> None:
    """The `records.registered` event of a new record (registered alone or in a batch)."""
    ctx.emit(
        "records.registered",
        record_id=record_id,
        patient=patient,
        custodian=staff["org_id"],
        resource_type=content.resource_type,
        cid=content.cid,
        actor=staff["did"],
    )


def check_exam_time(ctx: Context, payload: RecordContent) -> None:
    """An exam must have been performed before this block: the one check of a
    register or supersede payload that needs the block (none needs state)."""
    if payload.performed_ms is not UNSET and not 0 < payload.performed_ms <= ctx.time_ms:
        raise invalid("performed_ms must be a time before this block")


class RecordsHandler(ActionHandler):
    """The `records` system contract, version 1."""

    namespace = NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "register": RegisterPayload,
        "register_batch": RegisterBatchPayload,
        "supersede": SupersedePayload,
        "erase": ErasePayload,
        "anchor_log": AnchorLogPayload,
    }

    def _new_record(
        self,
        ctx: Context,
        record_id: str,
        patient_did: str,
        staff: dict[str, Any],
        content: RecordContent,
        supersedes: str | None,
        batch: tuple[bytes, int] | None = None,
    ) -> None:
        if ctx.get(record_key(record_id)) is not None:
            raise InvalidTransaction(Code.ALREADY_EXISTS, f"record {record_id!r} exists")
        record: Record = {
            "record_id": record_id,
            "patient": patient_did,
            "custodian": staff["org_id"],
            "resource_type": content.resource_type,
            "cid": content.cid,
            "content_hash": content.content_hash,
            "status": ACTIVE,
            "supersedes": supersedes,
            "registered_by": staff["did"],
            "created_height": ctx.height,
            "created_time_ms": ctx.time_ms,
        }
        # An exam (imaging study, lab test) also says what it was and when, so other
        # hospitals can recognise it instead of repeating it.
        if content.exam_code is not UNSET and content.performed_ms is not UNSET:
            record["exam_code"], record["performed_ms"] = content.exam_code, content.performed_ms
        if content.derived_from is not UNSET:
            record["derived_from"] = {
                "mapping_id": content.derived_from.mapping_id,
                "mapping_hash": content.derived_from.mapping_hash,
                "input_hash": content.derived_from.input_hash,
            }
        if content.carried_types is not UNSET:
            record["carried_types"] = list(content.carried_types)
        if batch is not None:
            record["batch_root"], record["batch_index"] = batch
        ctx.put(record_key(record_id), record)
        ctx.put(patient_index_key(patient_did, record_id), {"record_id": record_id})

    def register(self, payload: RegisterPayload, ctx: Context) -> None:
        """A custodian registers a stored, encrypted record of a patient."""
        check_exam_time(ctx, payload)
        staff = custodian_staff(ctx, "register records")
        patient = patient_member(ctx, payload.patient)
        if patient["status"] == identity.REVOKED:
            raise InvalidTransaction(Code.INVALID_STATE, "patient identity is revoked")
        self._new_record(ctx, payload.record_id, payload.patient, staff, payload, None)
        registered(ctx, payload.record_id, payload.patient, staff, payload)

    def register_batch(self, payload: RegisterBatchPayload, ctx: Context) -> None:
        """A custodian registers many stored records of one patient in one tx.

        Each record gets exactly the state `register` gives it (the same record,
        the same patient index entry, the same `records.registered` event), so every
        reader treats it alike; it also names its batch's root and its leaf index.
        The root must be the Merkle root of the entries' leaves, recomputed here:
        the anchor then proves each record's registration by an SM3 path, and one
        signature covers the batch instead of one per record. All or nothing: one
        refused record (an id that exists, an exam in the future) refuses the tx.
        """
        for entry in payload.records:
            check_exam_time(ctx, entry)
        leaves = [
            batch_leaf(payload.patient, msgspec.to_builtins(entry, builtin_types=(bytes,)))
            for entry in payload.records
        ]
        if merkle_root(leaves) != payload.root:
            raise invalid("root is not the Merkle root of the records' leaves (model.batch_leaf)")
        staff = custodian_staff(ctx, "register records")
        patient = patient_member(ctx, payload.patient)
        if patient["status"] == identity.REVOKED:
            raise InvalidTransaction(Code.INVALID_STATE, "patient identity is revoked")
        if ctx.get(batch_key(payload.root)) is not None:
            raise InvalidTransaction(Code.ALREADY_EXISTS, "this batch is already registered")
        for index, entry in enumerate(payload.records):
            self._new_record(
                ctx, entry.record_id, payload.patient, staff, entry, None, (payload.root, index)
            )
            registered(ctx, entry.record_id, payload.patient, staff, entry)
        anchor: BatchAnchor = {
            "root": payload.root,
            "leaves": leaves,
            "patient": payload.patient,
            "custodian": staff["org_id"],
            "registered_by": staff["did"],
            "height": ctx.height,
            "time_ms": ctx.time_ms,
        }
        ctx.put(batch_key(payload.root), anchor)
        ctx.emit(
            "records.batch_registered",
            root=payload.root.hex(),
            count=str(len(payload.records)),
            patient=payload.patient,
            custodian=staff["org_id"],
            actor=staff["did"],
        )

    def supersede(self, payload: SupersedePayload, ctx: Context) -> None:
        """Register a new version of a record; the old one stays, marked superseded."""
        check_exam_time(ctx, payload)
        staff = custodian_staff(ctx, "register records")
        old: Record = ctx.require(record_key(payload.record_id), f"record {payload.record_id!r}")
        if old["custodian"] != staff["org_id"]:
            raise unauthorized("only the custodian may supersede")
        if old["status"] != ACTIVE:
            raise InvalidTransaction(Code.INVALID_STATE, f"record is {old['status']}")
        new_id = payload.new_record_id
        self._new_record(ctx, new_id, old["patient"], staff, payload, old["record_id"])
        old["status"], old["superseded_by"] = SUPERSEDED, new_id
        ctx.put(record_key(old["record_id"]), old)
        ctx.emit(
            "records.superseded",
            record_id=old["record_id"],
            new_record_id=new_id,
            patient=old["patient"],
            custodian=old["custodian"],
            actor=staff["did"],
        )

    def erase(self, payload: ErasePayload, ctx: Context) -> None:
        """Tombstone a record: custodians must destroy its keys and send purge receipts.
        The reason, when given, stays on the tombstone: who erased what, and why."""
        record: Record = ctx.require(record_key(payload.record_id), f"record {payload.record_id!r}")
        caller = ctx.get(identity.did_key(ctx.signer.did or "")) or {}
        is_patient = caller.get("did") == record["patient"]
        is_custodian_admin = caller.get("org_id") == record[
            "custodian"
        ] and "org_admin" in caller.get("roles", [])
        if not (is_patient or is_custodian_admin):
            raise unauthorized("only the patient or the custodian's org admin may erase")
        if record["status"] == ERASED:
            raise InvalidTransaction(Code.INVALID_STATE, "record is already erased")
        # The tombstone keeps ids and the hash (for audit), drops the location.
        record["status"], record["cid"] = ERASED, None
        record["erased_height"], record["erased_by"] = ctx.height, caller["did"]
        if payload.reason is not UNSET:
            record["erase_reason"] = payload.reason
        ctx.put(record_key(record["record_id"]), record)
        ctx.emit(
            "records.erased",
            record_id=record["record_id"],
            patient=record["patient"],
            custodian=record["custodian"],
            actor=caller["did"],
        )

    def anchor_log(self, payload: AnchorLogPayload, ctx: Context) -> None:
        """Anchor entries first_seq..last_seq of the edge's local audit log by their
        Merkle root: the edge audits every refusal locally (a stranger's request
        costs it no chain transaction) and proves, one tx per interval, that it
        neither drops nor rewrites entries (runs must follow on without a gap)."""
        staff = custodian_staff(ctx, "anchor its edge's audit log")
        org_id = staff["org_id"]
        head = ctx.get(edge_log_key(org_id)) or {"last_seq": 0}
        if payload.first_seq != head["last_seq"] + 1:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"the next run of {org_id}'s edge log starts at {head['last_seq'] + 1}, "
                f"not {payload.first_seq}",
            )
        anchor: EdgeLogAnchor = {
            "first_seq": payload.first_seq,
            "last_seq": payload.last_seq,
            "root": payload.root,
            "height": ctx.height,
        }
        ctx.put(edge_log_anchor_key(org_id, payload.last_seq), anchor)
        ctx.put(edge_log_key(org_id), anchor)
        ctx.emit(
            "records.edge_log_anchored",
            org_id=org_id,
            first_seq=str(payload.first_seq),
            last_seq=str(payload.last_seq),
            root=payload.root.hex(),
            actor=staff["did"],
        )
