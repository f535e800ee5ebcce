"""Records contract: register, supersede and erase health records.

Only what every member must agree on goes on chain: the record id, the
patient's DID, the custodian organisation, the FHIR resource type, the CID of
the ciphertext in the custodian's vault, and a salted SM3 of the plaintext.

Authority:
  register    a staff member (doctor, nurse, lab technician, pharmacist,
              org admin) of the custodian organisation, for a registered patient
  supersede   the same, for a record its organisation holds
  erase       the patient, or an org admin of the custodian organisation
  anchor_log  a custodian's staff (its edge): the Merkle root of the next run of
              its edge's local audit log (refusals that never reached the chain)
"""

from __future__ import annotations

from typing import Any

from medchain.contracts.base import ActionHandler, patient_member, signer_member
from medchain.contracts.consent.model import CLINICAL as CLINICAL_TYPES
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import check_fields, invalid, text
from medchain.core.context import Context
from medchain.core.tx import SignedTx
from medchain.exceptions import Code, InvalidTransaction

NAMESPACE = "records"
CUSTODIAN_ROLES = frozenset(
    {"doctor", "attending", "department_head", "nurse", "lab_technician", "pharmacist", "org_admin"}
)
# FHIR R4 resource types a record may hold.
RESOURCE_TYPES = frozenset(CLINICAL_TYPES)
_RECORD_ID = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"
_CID = r"b[a-z2-7]{20,120}"
EXAM_CODE = r"[a-z][a-z0-9.+-]*:[^|\s]{1,100}\|[A-Za-z0-9._-]{1,40}"  # <system URI>|<code>
OPTIONAL_FIELDS: dict[str, type] = {
    "exam_code": str,
    "performed_ms": int,
    "derived_from": dict,
    "carried_types": list,
}
_MAPPING_ID = r"[a-z0-9][a-z0-9._/-]{0,63}"

ACTIVE, SUPERSEDED, ERASED = "active", "superseded", "erased"


def record_key(record_id: str) -> str:
    return f"{NAMESPACE}/record/{record_id}"


def patient_index_key(patient_did: str, record_id: str) -> str:
    return f"{NAMESPACE}/by-patient/{patient_did}/{record_id}"


def edge_log_key(org_id: str) -> str:
    """Where an edge's audit log stands: the last anchored entry and its root."""
    return f"{NAMESPACE}/edge-log/{org_id}"


def edge_log_anchor_key(org_id: str, last_seq: int) -> str:
    """One anchored run of an edge's audit log, kept so any entry stays provable."""
    return f"{NAMESPACE}/edge-log/{org_id}/{last_seq:020d}"


MAX_ANCHORED_ENTRIES = 100_000


def custodian_staff(ctx: Context, doing: str, org_id: str | None = None) -> dict[str, Any]:
    """The signer, if staff with a custodian role (of `org_id`, when given); else
    UNAUTHORIZED saying who may be `doing` this."""
    member = signer_member(ctx)
    org_ok = member["org_id"] is not None and org_id in (None, member["org_id"])
    if not org_ok or not CUSTODIAN_ROLES & set(member["roles"]):
        whose = "custodian" if org_id is None else f"{org_id}'s"
        raise InvalidTransaction(
            Code.UNAUTHORIZED,
            f"only {whose} clinical staff (doctor, attending, department head, nurse, lab "
            "technician, pharmacist) or org admin "
            f"may {doing}",
        )
    return member


class RecordsHandler(ActionHandler):
    """The `records` system contract, version 1."""

    namespace = NAMESPACE
    actions = frozenset({"register", "supersede", "erase", "anchor_log"})

    def _fields(self, ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
        if p["resource_type"] not in RESOURCE_TYPES:
            raise invalid(f"resource_type must be one of {sorted(RESOURCE_TYPES)}")
        if len(p["content_hash"]) != 32:
            raise invalid("content_hash must be a 32-byte salted SM3")
        fields = {
            "cid": text(p, "cid", _CID),
            "resource_type": p["resource_type"],
            "content_hash": p["content_hash"],
        }
        # An exam (imaging study, lab test) also says what it was and when, so other
        # hospitals can recognise it instead of repeating it.
        if ("exam_code" in p) != ("performed_ms" in p):
            raise invalid("exam_code and performed_ms go together")
        if "exam_code" in p:
            if not 0 < p["performed_ms"] <= ctx.time_ms:
                raise invalid("performed_ms must be a time before this block")
            fields["exam_code"] = text(p, "exam_code", EXAM_CODE)
            fields["performed_ms"] = p["performed_ms"]
        if "derived_from" in p:
            fields["derived_from"] = self._attestation(p["derived_from"])
        if "carried_types" in p:
            fields["carried_types"] = self._carried_types(p["carried_types"])
        return fields

    @staticmethod
    def _carried_types(carried: list[Any]) -> list[str]:
        """The record types nested inside a record (contained resources, bundle
        entries): the access decision requires the reader's role, and a type-scoped
        grant, to cover each of them too (consent/policy.py record_types)."""
        if (
            not 0 < len(carried) <= len(RESOURCE_TYPES)
            or not all(isinstance(t, str) and t in RESOURCE_TYPES for t in carried)
            or carried != sorted(set(carried))
        ):
            raise invalid(
                f"carried_types must be a sorted list of distinct types of {sorted(RESOURCE_TYPES)}"
            )
        return list(carried)

    @staticmethod
    def _attestation(a: dict[str, Any]) -> dict[str, Any]:
        """A mapping attestation: this record is what mapping `mapping_hash` made from the
        input whose salted SM3 (same salt as content_hash) is `input_hash`."""
        check_fields(a, {"mapping_id": str, "mapping_hash": bytes, "input_hash": bytes})
        if len(a["mapping_hash"]) != 32 or len(a["input_hash"]) != 32:
            raise invalid("derived_from hashes must be 32-byte SM3 digests")
        return {
            "mapping_id": text(a, "mapping_id", _MAPPING_ID),
            "mapping_hash": a["mapping_hash"],
            "input_hash": a["input_hash"],
        }

    def _new_record(
        self,
        ctx: Context,
        record_id: str,
        patient_did: str,
        staff: dict[str, Any],
        fields: dict[str, Any],
        supersedes: str | None,
    ) -> None:
        if ctx.get(record_key(record_id)) is not None:
            raise InvalidTransaction(Code.ALREADY_EXISTS, f"record {record_id!r} exists")
        ctx.put(
            record_key(record_id),
            {
                "record_id": record_id,
                "patient": patient_did,
                "custodian": staff["org_id"],
                **fields,
                "status": ACTIVE,
                "supersedes": supersedes,
                "registered_by": staff["did"],
                "created_height": ctx.height,
                "created_time_ms": ctx.time_ms,
            },
        )
        ctx.put(patient_index_key(patient_did, record_id), {"record_id": record_id})

    def register(self, tx: SignedTx, ctx: Context) -> None:
        """A custodian registers a stored, encrypted record of a patient."""
        p = tx.envelope.payload
        check_fields(
            p,
            {
                "record_id": str,
                "patient": str,
                "resource_type": str,
                "cid": str,
                "content_hash": bytes,
            },
            OPTIONAL_FIELDS,
        )
        record_id = text(p, "record_id", _RECORD_ID)
        fields = self._fields(ctx, p)
        staff = custodian_staff(ctx, "register records")
        patient = patient_member(ctx, p["patient"])
        if patient["status"] == identity.REVOKED:
            raise InvalidTransaction(Code.INVALID_STATE, "patient identity is revoked")
        self._new_record(ctx, record_id, p["patient"], staff, fields, None)
        ctx.emit(
            "records.registered",
            record_id=record_id,
            patient=p["patient"],
            custodian=staff["org_id"],
            resource_type=fields["resource_type"],
            cid=fields["cid"],
            actor=staff["did"],
        )

    def supersede(self, tx: SignedTx, ctx: Context) -> None:
        """Register a new version of a record; the old one stays, marked superseded."""
        p = tx.envelope.payload
        check_fields(
            p,
            {
                "record_id": str,
                "new_record_id": str,
                "resource_type": str,
                "cid": str,
                "content_hash": bytes,
            },
            OPTIONAL_FIELDS,
        )
        new_id = text(p, "new_record_id", _RECORD_ID)
        fields = self._fields(ctx, p)
        staff = custodian_staff(ctx, "register records")
        old = ctx.require(record_key(p["record_id"]), f"record {p['record_id']!r}")
        if old["custodian"] != staff["org_id"]:
            raise InvalidTransaction(Code.UNAUTHORIZED, "only the custodian may supersede")
        if old["status"] != ACTIVE:
            raise InvalidTransaction(Code.INVALID_STATE, f"record is {old['status']}")
        self._new_record(ctx, new_id, old["patient"], staff, fields, old["record_id"])
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

    def erase(self, tx: SignedTx, ctx: Context) -> None:
        """Tombstone a record: custodians must destroy its keys and send purge receipts."""
        p = tx.envelope.payload
        check_fields(p, {"record_id": str}, {"reason": str})
        record = ctx.require(record_key(p["record_id"]), f"record {p['record_id']!r}")
        caller = ctx.get(identity.did_key(ctx.signer.did or "")) or {}
        is_patient = caller.get("did") == record["patient"]
        is_custodian_admin = caller.get("org_id") == record[
            "custodian"
        ] and "org_admin" in caller.get("roles", [])
        if not (is_patient or is_custodian_admin):
            raise InvalidTransaction(
                Code.UNAUTHORIZED, "only the patient or the custodian's org admin may erase"
            )
        if record["status"] == ERASED:
            raise InvalidTransaction(Code.INVALID_STATE, "record is already erased")
        # The tombstone keeps ids and the hash (for audit), drops the location.
        record.update(status=ERASED, cid=None, erased_height=ctx.height, erased_by=caller["did"])
        ctx.put(record_key(record["record_id"]), record)
        ctx.emit(
            "records.erased",
            record_id=record["record_id"],
            patient=record["patient"],
            custodian=record["custodian"],
            actor=caller["did"],
        )

    def anchor_log(self, tx: SignedTx, ctx: Context) -> None:
        """Anchor entries first_seq..last_seq of the edge's local audit log by their
        Merkle root: the edge audits every refusal locally (a stranger's request
        costs it no chain transaction) and proves, one tx per interval, that it
        neither drops nor rewrites entries (runs must follow on without a gap)."""
        p = tx.envelope.payload
        check_fields(p, {"first_seq": int, "last_seq": int, "root": bytes})
        first, last = p["first_seq"], p["last_seq"]
        if not 1 <= first <= last or last - first >= MAX_ANCHORED_ENTRIES:
            raise invalid(f"anchor 1 to {MAX_ANCHORED_ENTRIES} entries: first_seq <= last_seq")
        if len(p["root"]) != 32:
            raise invalid("root must be a 32-byte SM3 Merkle root")
        staff = custodian_staff(ctx, "anchor its edge's audit log")
        org_id = staff["org_id"]
        head = ctx.get(edge_log_key(org_id)) or {"last_seq": 0}
        if first != head["last_seq"] + 1:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"the next run of {org_id}'s edge log starts at {head['last_seq'] + 1}, "
                f"not {first}",
            )
        anchor = {"first_seq": first, "last_seq": last, "root": p["root"], "height": ctx.height}
        ctx.put(edge_log_anchor_key(org_id, last), anchor)
        ctx.put(edge_log_key(org_id), anchor)
        ctx.emit(
            "records.edge_log_anchored",
            org_id=org_id,
            first_seq=str(first),
            last_seq=str(last),
            root=p["root"].hex(),
            actor=staff["did"],
        )
