"""Typed payloads of the recognition contract, validated before any state read.

Record and organisation ids are plain text: they are only looked up, and an id
nothing could have is simply not found, the answer it always had. Whether an
accreditation's expiry is still ahead needs the block time, so the handler
checks that.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from medchain.contracts.payload import Payload
from medchain.contracts.recognition.model import MAX_AGE_DAYS, MAX_REASON, MIN_REASON
from medchain.contracts.records.payloads import ExamCode

# Chinese hospital grades, lowest to highest (一级 ... 三级甲等); model.LEVELS in order.
Level = Literal["1", "2C", "2B", "2A", "3C", "3B", "3A"]


class SetRulePayload(Payload, frozen=True, kw_only=True):
    """recognition.set_rule: an exam may be recognised while its result is at most
    `max_age_days` old and its performer holds at least `min_level`."""

    exam_code: ExamCode
    max_age_days: Annotated[int, msgspec.Meta(ge=1, le=MAX_AGE_DAYS)]
    min_level: Level


class AccreditPayload(Payload, frozen=True, kw_only=True):
    """recognition.accredit: an organisation's level, held until `expires_ms`."""

    org_id: str
    level: Level
    expires_ms: int


class AcceptPayload(Payload, frozen=True, kw_only=True):
    """recognition.accept: the prior exam counts instead of a repeat; a note is
    optional (kept, without surrounding spaces, on the decision)."""

    record_id: str
    reason: str = ""


class DeclinePayload(Payload, frozen=True, kw_only=True):
    """recognition.decline: the exam is repeated although an eligible prior one
    exists; why, in 5 to 500 characters (kept on the decision)."""

    record_id: str
    reason: str

    def __post_init__(self) -> None:
        """A reason worth reading: it is what a regulator sees in the report."""
        if not MIN_REASON <= len(self.reason.strip()) <= MAX_REASON:
            raise ValueError(
                f"say why the exam is repeated anyway, in {MIN_REASON} to {MAX_REASON} characters"
            )
