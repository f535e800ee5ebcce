"""Typed payloads of the referral contract, validated before any state read.

The referral id is created here, so it carries its pattern; record, organisation
and member ids are only looked up (an id nothing could have is simply not found).
Block time (the expiry), who signs and what exists are the handler's.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from medchain.contracts.payload import Payload, whole
from medchain.contracts.referral.model import MAX_PACKAGE, MAX_REASON

REFERRAL_ID = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"
# A coded reason, "<system>|<code>" (SNOMED CT, ICD-10 ...), e.g.
# "http://snomed.info/sct|49436004" or "ICD-10|I48.0".
REASON_CODE = r"[A-Za-z0-9][A-Za-z0-9.:/_-]{0,99}\|[A-Za-z0-9._-]{1,40}"

ReferralId = Annotated[str, msgspec.Meta(pattern=whole(REFERRAL_ID))]
RecordId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Reason = Annotated[str, msgspec.Meta(max_length=MAX_REASON)]
Urgency = Literal["routine", "urgent", "asap", "stat"]


class Refer(Payload, frozen=True, kw_only=True):
    """referral.refer: send `patient` to `to_org` (to `to_doctor` there, if named)
    for `reason_code`, with the package `record_ids` and the ServiceRequest already
    registered at the referring hospital's edge; open until `expires_ms`."""

    referral_id: ReferralId
    patient: str
    to_org: str
    to_doctor: str | UnsetType = UNSET
    reason_code: Annotated[str, msgspec.Meta(pattern=whole(REASON_CODE))]
    urgency: Urgency = "routine"
    record_ids: Annotated[tuple[RecordId, ...], msgspec.Meta(min_length=1, max_length=MAX_PACKAGE)]
    service_request_id: RecordId
    expires_ms: int

    def __post_init__(self) -> None:
        """Each record once: a package is a set, stored sorted."""
        if len(set(self.record_ids)) != len(self.record_ids):
            raise ValueError("record_ids must name each record once")
        if self.service_request_id in self.record_ids:
            raise ValueError("the ServiceRequest travels with the package; do not list it")


class Approve(Payload, frozen=True, kw_only=True):
    """referral.approve: the patient (or guardian) agrees to the referral."""

    referral_id: str


class Decline(Payload, frozen=True, kw_only=True):
    """referral.decline: the patient (or guardian) refuses it, optionally saying why."""

    referral_id: str
    reason: Reason = ""


class Accept(Payload, frozen=True, kw_only=True):
    """referral.accept: the receiving doctor takes the patient on."""

    referral_id: str


class Report(Payload, frozen=True, kw_only=True):
    """referral.report: the consultation report, registered as a record at the
    receiving hospital's edge, closes the referral."""

    referral_id: str
    record_id: RecordId


class Cancel(Payload, frozen=True, kw_only=True):
    """referral.cancel: the patient (or guardian) or the referring doctor ends an
    open referral; the receiving side's grant is revoked in the same tx."""

    referral_id: str
    reason: Reason = ""
