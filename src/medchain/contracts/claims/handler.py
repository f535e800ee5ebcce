"""Claims contract: plans as data, enrolment, claims adjudicated on submission,
settlement.

Authority:
  set_plan   the org admin of an insurer (a plan id, once set, stays its insurer's)
  enrol      staff of the plan's insurer: the patient is covered by the plan
  submit     staff of a hospital, clinic or pharmacy, for an enrolled patient, with
             records the patient lets the insurer read for payment (HPAYMT), packs
             the submitting organisation dispensed, and zk proofs made to the insurer
  settle     staff of the claim's insurer, once, at most the adjudicated payable

A claim for an encounter already claimed (at any insurer), or for a pack already
claimed, is refused *and* leaves a `claims.duplicate_suspected` audit event in
the block, which the relay carries to the regulator chain (rule duplicate_claim).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medchain.contracts.base import ActionHandler, patient_member, staff_member, unauthorized
from medchain.contracts.claims import model
from medchain.contracts.claims.payloads import (
    EnrolPayload,
    SetPlanPayload,
    SettlePayload,
    SubmitPayload,
)
from medchain.contracts.consent import model as consent
from medchain.contracts.consent.policy import grant_covers
from medchain.contracts.payload import Payload
from medchain.contracts.records.model import record_key
from medchain.contracts.supply import model as supply
from medchain.core.context import Context
from medchain.exceptions import Code, InvalidTransaction

INSURER = frozenset({"insurer"})
PROVIDERS = frozenset({"hospital", "clinic", "pharmacy"})


def _fail(message: str, code: Code = Code.INVALID_STATE) -> InvalidTransaction:
    return InvalidTransaction(code, message)


class ClaimsHandler(ActionHandler):
    """The `claims` system contract, version 1."""

    namespace = model.NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "set_plan": SetPlanPayload,
        "enrol": EnrolPayload,
        "submit": SubmitPayload,
        "settle": SettlePayload,
    }

    def set_plan(self, payload: SetPlanPayload, ctx: Context) -> None:
        """An insurer's rules as data; only its org admin, who answers for them."""
        admin = staff_member(ctx, INSURER)
        if "org_admin" not in admin["roles"]:
            raise unauthorized("only the insurer's org admin sets a plan")
        old = ctx.get(model.plan_key(payload.plan_id))
        if old is not None and old["insurer"] != admin["org_id"]:
            raise _fail(f"plan {payload.plan_id} belongs to another insurer", Code.ALREADY_EXISTS)
        plan: model.Plan = {
            "plan_id": payload.plan_id,
            "insurer": admin["org_id"],
            "covered": [
                {
                    "code": b.code,
                    "unit_cap_fen": b.unit_cap_fen,
                    "required_criteria": list(b.required_criteria),
                }
                for b in payload.covered
            ],
            "copay_bp": payload.copay_bp,
            "annual_limit_fen": payload.annual_limit_fen,
            "set_by": admin["did"],
            "version": 1 if old is None else old["version"] + 1,
            "height": ctx.height,
        }
        ctx.put(model.plan_key(payload.plan_id), plan)
        ctx.emit(
            "claims.plan_set",
            plan_id=payload.plan_id,
            insurer=admin["org_id"],
            version=str(plan["version"]),
            actor=admin["did"],
        )

    def enrol(self, payload: EnrolPayload, ctx: Context) -> None:
        """The insurer covers a registered patient under one of its plans."""
        staff = staff_member(ctx, INSURER)
        plan = ctx.require(model.plan_key(payload.plan_id), f"plan {payload.plan_id!r}")
        if plan["insurer"] != staff["org_id"]:
            raise unauthorized("only the plan's insurer enrols patients in it")
        patient_member(ctx, payload.patient)
        key = model.enrolment_key(payload.plan_id, payload.patient)
        if ctx.get(key) is not None:
            raise _fail(
                f"{payload.patient} is already enrolled in {payload.plan_id}", Code.ALREADY_EXISTS
            )
        enrolment: model.Enrolment = {
            "plan_id": payload.plan_id,
            "patient": payload.patient,
            "insurer": staff["org_id"],
            "by": staff["did"],
            "time_ms": ctx.time_ms,
        }
        ctx.put(key, enrolment)
        ctx.emit(
            "claims.enrolled",
            plan_id=payload.plan_id,
            insurer=staff["org_id"],
            patient=payload.patient,
            actor=staff["did"],
        )

    # -- submit -----------------------------------------------------------------------

    def submit(self, payload: SubmitPayload, ctx: Context) -> None:
        """Check the claim against state, refuse duplicates, adjudicate it from the
        plan and record it with its indexes and the year's running total."""
        staff = staff_member(ctx, PROVIDERS)
        if "device" in staff["roles"] and len(staff["roles"]) == 1:
            raise unauthorized("a device may not submit a claim")
        provider = staff["org_id"]
        if ctx.get(model.claim_key(payload.claim_id)) is not None:
            raise _fail(f"claim {payload.claim_id} exists", Code.ALREADY_EXISTS)
        plan: model.Plan | None = ctx.get(model.plan_key(payload.plan_id))
        if plan is None or plan["insurer"] != payload.insurer:
            raise _fail(
                f"no plan {payload.plan_id!r} of insurer {payload.insurer!r}", Code.NOT_FOUND
            )
        if ctx.get(model.enrolment_key(payload.plan_id, payload.patient)) is None:
            raise _fail(f"the patient is not enrolled in plan {payload.plan_id}", Code.NOT_FOUND)
        self._check_records(ctx, payload)
        proven = self._proven_criteria(ctx, payload)
        self._check_packs(ctx, payload, provider)
        self._refuse_duplicates(ctx, payload, staff)
        year = model.block_year(ctx.time_ms)
        spent_key = model.spent_key(payload.insurer, payload.plan_id, payload.patient, year)
        spent = ctx.get(spent_key) or 0
        result = model.adjudicate(
            plan,
            [
                model.ClaimedItem(i.code, i.quantity, i.unit_price_fen, tuple(i.packs))
                for i in payload.items
            ],
            proven,
            spent,
        )
        claim: model.Claim = {
            "claim_id": payload.claim_id,
            "patient": payload.patient,
            "plan_id": payload.plan_id,
            "insurer": payload.insurer,
            "provider": provider,
            "submitter": staff["did"],
            "encounter_hash": payload.encounter_hash,
            "claim_hash": payload.claim_hash,
            "record_ids": list(payload.record_ids),
            "zk_challenges": list(payload.zk_challenges),
            "items": result.items,
            "outcome": result.outcome,
            "claimed_fen": result.claimed_fen,
            "payable_fen": result.payable_fen,
            "year": year,
            "status": model.DENIED if result.outcome == model.DENIED else model.ADJUDICATED,
            "time_ms": ctx.time_ms,
            "height": ctx.height,
        }
        ctx.put(model.claim_key(payload.claim_id), claim)
        for prefix in (
            model.by_patient_prefix(payload.patient),
            model.by_provider_prefix(provider),
            model.by_insurer_prefix(payload.insurer),
        ):
            ctx.put(prefix + payload.claim_id, 1)
        if result.outcome != model.DENIED:
            # A claim that pays nothing leaves the encounter and its packs claimable,
            # so a provider can claim again once, say, the missing proof is made.
            ctx.put(
                model.encounter_key(provider, payload.encounter_hash),
                payload.claim_id,
            )
            for pack in model.claimed_packs(result.items):
                ctx.put(model.pack_key(pack), payload.claim_id)
            ctx.put(spent_key, spent + result.payable_fen)
        ctx.emit(
            "claims.submitted",
            claim_id=payload.claim_id,
            patient=payload.patient,
            plan_id=payload.plan_id,
            insurer=payload.insurer,
            provider=provider,
            outcome=result.outcome,
            claimed_fen=str(result.claimed_fen),
            payable_fen=str(result.payable_fen),
            actor=staff["did"],
        )

    def _check_records(self, ctx: Context, payload: SubmitPayload) -> None:
        """Each record is the patient's, active, and the patient lets the insurer read
        it for payment (an org grant with purpose HPAYMT). The insurer's own staff
        hold no clinical role, so consent.decide's role policy would refuse them
        every record: the grant to the insurer organisation is what counts here."""
        for record_id in payload.record_ids:
            record = ctx.get(record_key(record_id))
            if record is None or record["patient"] != payload.patient:
                raise _fail(f"no record {record_id!r} of this patient", Code.NOT_FOUND)
            if record.get("status") != "active":
                raise _fail(f"record {record_id} is {record.get('status')}")
            if not self._insurer_may_read(ctx, payload.insurer, record):
                raise unauthorized(
                    f"the patient has not let {payload.insurer} read record {record_id} "
                    f"for payment (consent purpose {model.PAYMENT_PURPOSE})"
                )

    def _insurer_may_read(self, ctx: Context, insurer: str, record: dict[str, Any]) -> bool:
        prefix = consent.by_grantee_prefix("org", insurer, record["patient"])
        for _, entry in ctx.scan(prefix):
            grant = ctx.get(consent.grant_key(entry["grant_id"]))
            if (
                grant is not None
                and grant["patient"] == record["patient"]
                and grant_covers(grant, record, model.PAYMENT_PURPOSE, ctx.time_ms)
            ):
                return True
        return False

    def _proven_criteria(self, ctx: Context, payload: SubmitPayload) -> frozenset[str]:
        """The criteria proven by the named zk challenges: each an accepted proof about
        this patient, made to this insurer (a proof made to a trial sponsor is not the
        insurer's fresh challenge, so it does not count). Another patient's or verifier's
        proof gets the answer a missing one gets: a provider learns nothing about whose
        proofs a challenge id holds."""
        proven: set[str] = set()
        for challenge_id in payload.zk_challenges:
            proof = model.accepted_proof(ctx.get, challenge_id)
            if (
                proof is None
                or proof["patient"] != payload.patient
                or proof["verifier_org"] != payload.insurer
            ):
                raise _fail(
                    f"no accepted zk proof of this patient to {payload.insurer} for challenge "
                    f"{challenge_id!r}",
                    Code.NOT_FOUND,
                )
            proven.add(proof["criterion_id"])
        return frozenset(proven)

    def _check_packs(self, ctx: Context, payload: SubmitPayload, provider: str) -> None:
        """Every pack claimed was dispensed, by the submitting organisation."""
        for item in payload.items:
            for pack in item.packs:
                unit = ctx.get(supply.unit_key(pack))
                if unit is None:
                    raise _fail(f"no pack {pack}", Code.NOT_FOUND)
                last = unit["history"][-1] if unit["history"] else None
                if (
                    unit["status"] != supply.DISPENSED
                    or last is None
                    or last[0] != "dispensing"
                    or last[2] != provider
                ):
                    raise _fail(f"pack {pack} was not dispensed by {provider}")

    def _refuse_duplicates(
        self, ctx: Context, payload: SubmitPayload, staff: dict[str, Any]
    ) -> None:
        """A second claim for an encounter or a pack: refused, and audited so the
        regulator chain raises a duplicate_claim alert."""
        encounter = model.encounter_key(staff["org_id"], payload.encounter_hash)
        earlier = ctx.get(encounter)
        reason, subject = "", ""
        if earlier is not None:
            reason, subject = "encounter already claimed", payload.encounter_hash.hex()
        else:
            for pack in (p for item in payload.items for p in item.packs):
                earlier = ctx.get(model.pack_key(pack))
                if earlier is not None:
                    reason, subject = "pack already claimed", pack
                    break
        if earlier is None:
            return
        ctx.refuse(
            Code.ALREADY_EXISTS,
            f"{reason} in claim {earlier}: a duplicate claim is refused and reported",
            "claims.duplicate_suspected",
            claim_id=payload.claim_id,
            earlier_claim=earlier,
            reason=reason,
            subject=subject,
            patient=payload.patient,
            insurer=payload.insurer,
            org=staff["org_id"],
            actor=staff["did"],
        )

    # -- settle -----------------------------------------------------------------------

    def settle(self, payload: SettlePayload, ctx: Context) -> None:
        """The insurer records its payment of an adjudicated claim."""
        staff = staff_member(ctx, INSURER)
        claim: model.Claim | None = ctx.get(model.claim_key(payload.claim_id))
        if claim is None or claim["insurer"] != staff["org_id"]:
            # the same answer whether the claim is another insurer's or missing
            raise _fail(f"no claim {payload.claim_id!r} to {staff['org_id']}", Code.NOT_FOUND)
        if claim["status"] != model.ADJUDICATED:
            raise _fail(f"claim {payload.claim_id} is {claim['status']}: nothing to settle")
        if payload.amount_fen > claim["payable_fen"]:
            raise _fail(
                f"amount {payload.amount_fen} fen exceeds the payable {claim['payable_fen']} fen"
            )
        claim["payment"] = {
            "reference": payload.reference,
            "amount_fen": payload.amount_fen,
            "by": staff["did"],
            "time_ms": ctx.time_ms,
            "height": ctx.height,
        }
        claim["status"] = model.PAID
        ctx.put(model.claim_key(payload.claim_id), claim)
        ctx.emit(
            "claims.settled",
            claim_id=payload.claim_id,
            patient=claim["patient"],
            insurer=claim["insurer"],
            provider=claim["provider"],
            amount_fen=str(payload.amount_fen),
            actor=staff["did"],
        )
