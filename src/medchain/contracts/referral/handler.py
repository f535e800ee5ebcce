"""Referral contract: one hospital hands a patient over to another, with records.

Authority:
  refer    a physician (doctor, attending, department head) who is active staff of
           an active hospital or clinic, for a registered patient, sending only
           records consent.decide lets them read for TREAT now, and a ServiceRequest
           their own hospital registered for that patient
  approve  the patient, or a guardian the patient delegated to: issues a consent
           grant (through the consent package, as consent.grant would) to the named
           receiving doctor, else to the receiving hospital, scoped to exactly the
           package and the ServiceRequest, purpose TREAT, expiring with the referral.
           Approving also agrees that the consultation report comes back: `report`
           then grants the referring doctor TREAT access to that one record.
  decline  the patient or guardian, while requested
  accept   the named receiving doctor, else any physician of the receiving hospital,
           once approved and while the approval's grant is in force
  report   the physician who accepted, with a DiagnosticReport or DocumentReference
           of the same patient registered by the receiving hospital: completes it
  cancel   the patient or guardian, or the referring doctor, while requested,
           approved or accepted; the approval's grant is revoked in the same tx

Anyone else, and anyone asking about a referral id that does not exist, gets the
same UNAUTHORIZED for approve, decline, accept, report and cancel, so a stranger
cannot learn which referrals exist. The records never touch this contract: the
receiving side fetches them through exchange.request / release / ack, which the
approval's grant allows and its revocation stops from the next block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from msgspec import UNSET

from medchain.contracts.base import ActionHandler, patient_member, signer_member, unauthorized
from medchain.contracts.consent import decide
from medchain.contracts.consent.handler import acting_for, issue_grant, withdraw_grant
from medchain.contracts.consent.model import ACTIVE as GRANT_ACTIVE
from medchain.contracts.consent.model import grant_key
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import Payload, invalid
from medchain.contracts.records.model import ACTIVE as RECORD_ACTIVE
from medchain.contracts.records.model import record_key
from medchain.contracts.referral import model
from medchain.contracts.referral.payloads import Accept, Approve, Cancel, Decline, Refer, Report
from medchain.core.context import Context
from medchain.exceptions import Code, InvalidTransaction


def physician_of(ctx: Context, member: Mapping[str, Any], org_id: str | None = None) -> bool:
    """`member` is an active physician of an active hospital or clinic (of `org_id`,
    when given). The org's kind is checked here too, so referral stays with care
    providers even if governance widens some kind's roles."""
    if member["status"] != identity.ACTIVE or not model.PHYSICIAN_ROLES & set(member["roles"]):
        return False
    if member["org_id"] is None or (org_id is not None and member["org_id"] != org_id):
        return False
    org = ctx.get(identity.org_key(member["org_id"]))
    return (
        org is not None
        and org["status"] == identity.ACTIVE
        and org["org_type"] in identity.CLINICAL_ORG_TYPES
    )


def _step(referral: model.Referral, step: str, actor: str, ctx: Context) -> None:
    referral["steps"].append(
        model.Step(step=step, actor=actor, height=ctx.height, time_ms=ctx.time_ms)
    )


class ReferralHandler(ActionHandler):
    """The `referral` system contract, version 1."""

    namespace = model.NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "refer": Refer,
        "approve": Approve,
        "decline": Decline,
        "accept": Accept,
        "report": Report,
        "cancel": Cancel,
    }

    def refer(self, p: Refer, ctx: Context) -> None:
        """A physician asks another hospital to see their patient, with records."""
        caller = signer_member(ctx)
        if not physician_of(ctx, caller):
            raise unauthorized(
                "only a doctor, attending or department head of an active hospital or "
                "clinic may refer a patient"
            )
        if p.expires_ms <= ctx.time_ms:
            raise invalid("expires_ms must be after the current block time")
        if p.expires_ms > ctx.time_ms + model.MAX_REFERRAL_MS:
            raise invalid(
                f"a referral stays open at most {model.MAX_REFERRAL_MS // 86_400_000} days"
            )
        patient_member(ctx, p.patient)
        target = ctx.get(identity.org_key(p.to_org))
        if (
            target is None
            or target["status"] != identity.ACTIVE
            or target["org_type"] not in identity.CLINICAL_ORG_TYPES
        ):
            raise InvalidTransaction(
                Code.NOT_FOUND, f"{p.to_org!r} is not an active hospital or clinic"
            )
        if p.to_org == caller["org_id"]:
            raise invalid(
                "a referral goes to another hospital; refer inside yours by your own rules"
            )
        if p.to_doctor is not UNSET:
            doctor = ctx.get(identity.did_key(p.to_doctor))
            if doctor is None or not physician_of(ctx, doctor, p.to_org):
                raise InvalidTransaction(
                    Code.NOT_FOUND, f"{p.to_doctor} is not an active physician of {p.to_org}"
                )
        if ctx.get(model.referral_key(p.referral_id)) is not None:
            raise InvalidTransaction(Code.ALREADY_EXISTS, f"referral {p.referral_id!r} exists")
        service_request = self._service_request(ctx, p, caller)
        for record_id in p.record_ids:
            self._check_readable(ctx, caller, p.patient, record_id)
        referral: model.Referral = {
            "referral_id": p.referral_id,
            "patient": p.patient,
            "from_org": caller["org_id"],
            "from_doctor": caller["did"],
            "to_org": p.to_org,
            "reason_code": p.reason_code,
            "urgency": p.urgency,
            "record_ids": sorted(p.record_ids),
            "service_request_id": p.service_request_id,
            "service_request_sm3": service_request["content_hash"],
            "expires_ms": p.expires_ms,
            "status": model.REQUESTED,
            "steps": [],
        }
        if p.to_doctor is not UNSET:
            referral["to_doctor"] = p.to_doctor
        _step(referral, model.REQUESTED, caller["did"], ctx)
        ctx.put(model.referral_key(p.referral_id), referral)
        ref = model.ReferralRef(referral_id=p.referral_id)
        ctx.put(model.by_patient_key(p.patient, p.referral_id), ref)
        ctx.put(model.by_org_key(caller["org_id"], p.referral_id), ref)
        ctx.put(model.by_org_key(p.to_org, p.referral_id), ref)
        ctx.emit(
            "referral.requested",
            referral_id=p.referral_id,
            patient=p.patient,
            from_org=caller["org_id"],
            to_org=p.to_org,
            urgency=p.urgency,
            actor=caller["did"],
            notify=p.patient,
        )

    def _service_request(self, ctx: Context, p: Refer, caller: dict[str, Any]) -> dict[str, Any]:
        """The ServiceRequest: an active record of this patient that the referring
        hospital registered (it says why the patient is sent, in FHIR)."""
        record = ctx.get(record_key(p.service_request_id))
        if (
            record is None
            or record["status"] != RECORD_ACTIVE
            or record["patient"] != p.patient
            or record["resource_type"] != "ServiceRequest"
            or record["custodian"] != caller["org_id"]
        ):
            raise InvalidTransaction(
                Code.NOT_FOUND,
                f"no active ServiceRequest {p.service_request_id!r} of this patient at "
                f"{caller['org_id']}: store it at your edge first (records.register)",
            )
        return dict(record)

    def _check_readable(
        self, ctx: Context, caller: dict[str, Any], patient: str, record_id: str
    ) -> None:
        """A doctor may only pass on what they may read themselves, for treatment, now."""
        record = ctx.get(record_key(record_id))
        if record is None or record["patient"] != patient:
            raise InvalidTransaction(Code.NOT_FOUND, f"no record {record_id!r} of this patient")
        decision = decide(
            ctx.get, lambda prefix: ctx.scan(prefix), caller, record, "TREAT", ctx.time_ms
        )
        if not decision.allowed:
            raise unauthorized(
                f"you may not read record {record_id} for treatment ({decision.reason}); "
                "ask the patient for consent or leave it out of the package"
            )

    def _referral(self, ctx: Context, referral_id: str, who: str) -> model.Referral:
        """The referral, or the UNAUTHORIZED every non-party gets for a missing one."""
        found = ctx.get(model.referral_key(referral_id))
        if found is None:
            raise unauthorized(f"only {who} may do this")
        return cast(model.Referral, found)

    def _patient_side(
        self, ctx: Context, referral_id: str
    ) -> tuple[model.Referral, dict[str, Any]]:
        who = "the referral's patient or a guardian the patient delegated to"
        referral = self._referral(ctx, referral_id, who)
        try:
            caller = acting_for(ctx, referral["patient"])
        except InvalidTransaction:
            raise unauthorized(f"only {who} may do this") from None
        return referral, caller

    def _expect(self, referral: model.Referral, *statuses: str) -> None:
        if referral["status"] not in statuses:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"referral {referral['referral_id']} is {referral['status']}; this needs it "
                f"{' or '.join(statuses)}",
            )

    def _unexpired(self, referral: model.Referral, ctx: Context) -> None:
        if ctx.time_ms >= referral["expires_ms"]:
            raise InvalidTransaction(
                Code.INVALID_STATE, f"referral {referral['referral_id']} has expired; refer again"
            )

    def _grant_in_force(self, ctx: Context, referral: model.Referral) -> None:
        grant = ctx.get(grant_key(referral.get("grant_id", "")))
        if grant is None or grant["status"] != GRANT_ACTIVE:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"the patient revoked referral {referral['referral_id']}'s grant; it is over",
            )

    def _save(
        self, ctx: Context, referral: model.Referral, event: str, actor: str, **extra: str
    ) -> None:
        ctx.put(model.referral_key(referral["referral_id"]), referral)
        ctx.emit(
            event,
            referral_id=referral["referral_id"],
            patient=referral["patient"],
            from_org=referral["from_org"],
            to_org=referral["to_org"],
            actor=actor,
            **extra,
        )

    def approve(self, p: Approve, ctx: Context) -> None:
        """The patient agrees; the chain issues the receiving side's grant."""
        referral, caller = self._patient_side(ctx, p.referral_id)
        self._expect(referral, model.REQUESTED)
        self._unexpired(referral, ctx)
        kind, grantee = model.receiving_grantee(referral)
        grant_id = issue_grant(
            ctx,
            patient=referral["patient"],
            grantee_kind=kind,
            grantee=grantee,
            purposes=["TREAT"],
            scope_records=model.package_scope(referral),
            scope_types=[],
            expires_ms=referral["expires_ms"],
            granted_by=caller["did"],
        )
        referral["status"] = model.APPROVED
        referral["grant_id"] = grant_id
        _step(referral, model.APPROVED, caller["did"], ctx)
        self._save(ctx, referral, "referral.approved", caller["did"], grant_id=grant_id)

    def decline(self, p: Decline, ctx: Context) -> None:
        """The patient refuses; nothing is granted."""
        referral, caller = self._patient_side(ctx, p.referral_id)
        self._expect(referral, model.REQUESTED)
        referral["status"] = model.DECLINED
        if p.reason.strip():
            referral["reason"] = p.reason.strip()
        _step(referral, model.DECLINED, caller["did"], ctx)
        self._save(ctx, referral, "referral.declined", caller["did"])

    def accept(self, p: Accept, ctx: Context) -> None:
        """The receiving doctor takes the patient on."""
        who = "the receiving doctor (or, if none was named, a physician of the receiving hospital)"
        referral = self._referral(ctx, p.referral_id, who)
        caller = signer_member(ctx)
        named = referral.get("to_doctor")
        if (named is not None and caller["did"] != named) or not physician_of(
            ctx, caller, referral["to_org"]
        ):
            raise unauthorized(f"only {who} may do this")
        self._expect(referral, model.APPROVED)
        self._unexpired(referral, ctx)
        self._grant_in_force(ctx, referral)
        referral["status"] = model.ACCEPTED
        referral["accepted_by"] = caller["did"]
        _step(referral, model.ACCEPTED, caller["did"], ctx)
        self._save(ctx, referral, "referral.accepted", caller["did"], notify=referral["patient"])

    def report(self, p: Report, ctx: Context) -> None:
        """The consultation report is in: the referring doctor may read it, and the
        referral is completed."""
        who = "the physician who accepted the referral"
        referral = self._referral(ctx, p.referral_id, who)
        caller = signer_member(ctx)
        if caller["did"] != referral.get("accepted_by") or not physician_of(
            ctx, caller, referral["to_org"]
        ):
            raise unauthorized(f"only {who} may do this")
        self._expect(referral, model.ACCEPTED)
        self._grant_in_force(ctx, referral)
        record = ctx.get(record_key(p.record_id))
        if (
            record is None
            or record["status"] != RECORD_ACTIVE
            or record["patient"] != referral["patient"]
            or record["custodian"] != referral["to_org"]
            or record["resource_type"] not in model.REPORT_TYPES
        ):
            raise InvalidTransaction(
                Code.NOT_FOUND,
                f"no active {' or '.join(sorted(model.REPORT_TYPES))} {p.record_id!r} of this "
                f"patient at {referral['to_org']}: store the report at your edge first",
            )
        approver = next(s["actor"] for s in referral["steps"] if s["step"] == model.APPROVED)
        report_grant = issue_grant(
            ctx,
            patient=referral["patient"],
            grantee_kind="did",
            grantee=referral["from_doctor"],
            purposes=["TREAT"],
            scope_records=[p.record_id],
            scope_types=[],
            expires_ms=ctx.time_ms + model.REPORT_ACCESS_MS,
            granted_by=approver,
        )
        referral["status"] = model.COMPLETED
        referral["report_record_id"] = p.record_id
        referral["report_grant_id"] = report_grant
        _step(referral, "reported", caller["did"], ctx)
        self._save(
            ctx,
            referral,
            "referral.reported",
            caller["did"],
            record_id=p.record_id,
            grant_id=report_grant,
            notify=referral["from_doctor"],
        )

    def cancel(self, p: Cancel, ctx: Context) -> None:
        """The patient or the referring doctor ends the referral; the receiving side's
        access ends with it, from the next block."""
        who = "the referral's patient, a guardian, or the referring doctor"
        referral = self._referral(ctx, p.referral_id, who)
        caller = signer_member(ctx)
        if caller["did"] != referral["from_doctor"]:
            try:
                acting_for(ctx, referral["patient"])
            except InvalidTransaction:
                raise unauthorized(f"only {who} may do this") from None
        self._expect(referral, *sorted(model.OPEN_STATUSES))
        grant = ctx.get(grant_key(referral.get("grant_id", "")))
        if grant is not None and grant["status"] == GRANT_ACTIVE:
            withdraw_grant(
                ctx, grant, caller["did"], f"referral {referral['referral_id']} cancelled"
            )
        referral["status"] = model.CANCELLED
        if p.reason.strip():
            referral["reason"] = p.reason.strip()
        _step(referral, model.CANCELLED, caller["did"], ctx)
        self._save(ctx, referral, "referral.cancelled", caller["did"], notify=referral["patient"])
