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

from typing import Any

from medchain.contracts.base import ActionHandler, governor_member, signer_member
from medchain.contracts.consent import decide
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import check_fields, invalid, one_of, text
from medchain.contracts.recognition import model as m
from medchain.contracts.records.handler import EXAM_CODE, record_key
from medchain.core.context import Context
from medchain.core.tx import SignedTx
from medchain.exceptions import Code, InvalidTransaction

MAX_AGE_DAYS = 3650


def _unauthorized(message: str) -> InvalidTransaction:
    return InvalidTransaction(Code.UNAUTHORIZED, message)


class RecognitionHandler(ActionHandler):
    """The `recognition` system contract, version 1."""

    namespace = m.NAMESPACE
    actions = frozenset({"set_rule", "accredit", "accept", "decline"})

    def set_rule(self, tx: SignedTx, ctx: Context) -> None:
        """Which exams may be recognised, for how long, from which performers."""
        p = tx.envelope.payload
        check_fields(p, {"exam_code": str, "max_age_days": int, "min_level": str})
        exam_code = text(p, "exam_code", EXAM_CODE)
        min_level = one_of(p, "min_level", frozenset(m.LEVELS))
        if not 0 < p["max_age_days"] <= MAX_AGE_DAYS:
            raise invalid(f"max_age_days must be 1 to {MAX_AGE_DAYS}")
        caller = governor_member(ctx)
        rule = {
            "exam_code": exam_code,
            "max_age_days": p["max_age_days"],
            "min_level": min_level,
            "set_by": caller["did"],
            "set_height": ctx.height,
        }
        ctx.put(m.rule_key(exam_code), rule)
        ctx.emit(
            "recognition.rule_set",
            exam_code=exam_code,
            max_age_days=str(p["max_age_days"]),
            min_level=min_level,
            actor=caller["did"],
        )

    def accredit(self, tx: SignedTx, ctx: Context) -> None:
        """A regulator records an organisation's accreditation level."""
        p = tx.envelope.payload
        check_fields(p, {"org_id": str, "level": str, "expires_ms": int})
        level = one_of(p, "level", frozenset(m.LEVELS))
        if ctx.get(identity.org_key(p["org_id"])) is None:
            raise InvalidTransaction(Code.NOT_FOUND, f"no organisation {p['org_id']!r}")
        if p["expires_ms"] <= ctx.time_ms:
            raise invalid("expires_ms must be after the current block time")
        caller = governor_member(ctx)
        ctx.put(
            m.accreditation_key(p["org_id"]),
            {
                "org_id": p["org_id"],
                "level": level,
                "expires_ms": p["expires_ms"],
                "by": caller["did"],
            },
        )
        ctx.emit(
            "recognition.accredited",
            org_id=p["org_id"],
            level=level,
            expires_ms=str(p["expires_ms"]),
            actor=caller["did"],
        )

    def _treating_doctor(self, ctx: Context, record: dict[str, Any]) -> dict[str, Any]:
        doctor = signer_member(ctx)
        if "doctor" not in doctor["roles"] or doctor["org_id"] is None:
            raise _unauthorized("only a hospital doctor may recognise an exam")
        decision = decide(ctx.get, ctx.scan, doctor, record, "TREAT", ctx.time_ms)
        if not decision.allowed:
            raise _unauthorized(f"no access to the prior exam: {decision.reason}")
        return doctor

    def _decide(self, tx: SignedTx, ctx: Context, outcome: str) -> None:
        p = tx.envelope.payload
        check_fields(p, {"record_id": str}, {"reason": str})
        record = ctx.require(record_key(p["record_id"]), f"record {p['record_id']!r}")
        doctor = self._treating_doctor(ctx, record)
        verdict = m.eligibility(ctx.get, record, doctor["org_id"], ctx.time_ms)
        if not verdict.eligible:
            raise InvalidTransaction(Code.INVALID_STATE, f"not recognisable: {verdict.reason}")
        reason = str(p.get("reason", "")).strip()
        if outcome == m.DECLINED and not 5 <= len(reason) <= 500:
            raise invalid("say why the exam is repeated anyway, in 5 to 500 characters")
        decision_id = ctx.tx_id.hex()[:32]
        ctx.put(
            m.decision_key(decision_id),
            {
                "decision_id": decision_id,
                "outcome": outcome,
                "record_id": record["record_id"],
                "exam_code": record["exam_code"],
                "patient": record["patient"],
                "performing_org": record["custodian"],
                "requesting_org": doctor["org_id"],
                "doctor": doctor["did"],
                "reason": reason,
                "time_ms": ctx.time_ms,
                "height": ctx.height,
            },
        )
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

    def accept(self, tx: SignedTx, ctx: Context) -> None:
        """Use a prior exam of another hospital instead of repeating it."""
        self._decide(tx, ctx, m.ACCEPTED)

    def decline(self, tx: SignedTx, ctx: Context) -> None:
        """Repeat an exam although an eligible prior one exists (counted in the rate)."""
        self._decide(tx, ctx, m.DECLINED)
