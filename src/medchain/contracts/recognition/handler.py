"""Recognition contract: rules, accreditations, and each accept / decline.

Authority:
  set_rule     a consortium admin or a regulator: exam code, maximum age of
               the result in days, minimum accreditation of the performer
  accredit     a regulator (or consortium admin): an organisation's level and
               until when it holds
  accept       a doctor treating the patient, who may read the prior exam now
               (consent and role, as for any exchange): the exam counts
               instead of a repeat
  decline      the same doctor, with a reason, when the exam is repeated anyway
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medchain.contracts.base import ActionHandler, governor_member, signer_member, unauthorized
from medchain.contracts.consent import decide
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import Payload, invalid
from medchain.contracts.recognition import model
from medchain.contracts.recognition.payloads import (
    AcceptPayload,
    AccreditPayload,
    DeclinePayload,
    SetRulePayload,
)
from medchain.contracts.records.model import record_key
from medchain.core.context import Context
from medchain.exceptions import Code, InvalidTransaction


class RecognitionHandler(ActionHandler):
    """The `recognition` system contract, version 1."""

    namespace = model.NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "set_rule": SetRulePayload,
        "accredit": AccreditPayload,
        "accept": AcceptPayload,
        "decline": DeclinePayload,
    }

    def set_rule(self, payload: SetRulePayload, ctx: Context) -> None:
        """Which exams may be recognised, for how long, from which performers."""
        caller = governor_member(ctx)
        rule: model.Rule = {
            "exam_code": payload.exam_code,
            "max_age_days": payload.max_age_days,
            "min_level": payload.min_level,
            "set_by": caller["did"],
            "set_height": ctx.height,
        }
        ctx.put(model.rule_key(payload.exam_code), rule)
        ctx.emit(
            "recognition.rule_set",
            exam_code=payload.exam_code,
            max_age_days=str(payload.max_age_days),
            min_level=payload.min_level,
            actor=caller["did"],
        )

    def accredit(self, payload: AccreditPayload, ctx: Context) -> None:
        """A regulator records an organisation's accreditation level."""
        if ctx.get(identity.org_key(payload.org_id)) is None:
            raise InvalidTransaction(Code.NOT_FOUND, f"no organisation {payload.org_id!r}")
        if payload.expires_ms <= ctx.time_ms:
            raise invalid("expires_ms must be after the current block time")
        caller = governor_member(ctx)
        accreditation: model.Accreditation = {
            "org_id": payload.org_id,
            "level": payload.level,
            "expires_ms": payload.expires_ms,
            "by": caller["did"],
        }
        ctx.put(model.accreditation_key(payload.org_id), accreditation)
        ctx.emit(
            "recognition.accredited",
            org_id=payload.org_id,
            level=payload.level,
            expires_ms=str(payload.expires_ms),
            actor=caller["did"],
        )

    def accept(self, payload: AcceptPayload, ctx: Context) -> None:
        """Use a prior exam of another hospital instead of repeating it."""
        self._decide(payload, ctx, model.ACCEPTED)

    def decline(self, payload: DeclinePayload, ctx: Context) -> None:
        """Repeat an exam although an eligible prior one exists (counted in the rate)."""
        self._decide(payload, ctx, model.DECLINED)

    def _treating_doctor(self, ctx: Context, record: dict[str, Any]) -> dict[str, Any]:
        doctor = signer_member(ctx)
        if "doctor" not in doctor["roles"] or doctor["org_id"] is None:
            raise unauthorized("only a hospital doctor may recognise an exam")
        decision = decide(ctx.get, ctx.scan, doctor, record, "TREAT", ctx.time_ms)
        if not decision.allowed:
            raise unauthorized(f"no access to the prior exam: {decision.reason}")
        return doctor

    def _decide(self, payload: AcceptPayload | DeclinePayload, ctx: Context, outcome: str) -> None:
        """Record one accept or decline of an eligible prior exam, reason included."""
        record = ctx.require(record_key(payload.record_id), f"record {payload.record_id!r}")
        doctor = self._treating_doctor(ctx, record)
        verdict = model.eligibility(ctx.get, record, doctor["org_id"], ctx.time_ms)
        if not verdict.eligible:
            raise InvalidTransaction(Code.INVALID_STATE, f"not recognisable: {verdict.reason}")
        decision_id = ctx.tx_id.hex()[:32]
        decision: model.Decision = {
            "decision_id": decision_id,
            "outcome": outcome,
            "record_id": record["record_id"],
            "exam_code": record["exam_code"],
            "patient": record["patient"],
            "performing_org": record["custodian"],
            "requesting_org": doctor["org_id"],
            "doctor": doctor["did"],
            "reason": payload.reason.strip(),
            "time_ms": ctx.time_ms,
            "height": ctx.height,
        }
        ctx.put(model.decision_key(decision_id), decision)
        ctx.emit(
            f"recognition.{outcome}",
            decision_id=decision_id,
            record_id=record["record_id"],
            exam_code=record["exam_code"],
            patient=record["patient"],
            performing_org=record["custodian"],
            requesting_org=doctor["org_id"],
            actor=doctor["did"],
        )
