"""Consent payloads: one type per action, fully checked before any state read.

Closed vocabularies (purposes, grantee kinds, resource types, roles), list
sizes and the break-glass reason's length depend on the payload alone, so they
live here. Block time (a grant's expiry), who signs and what exists are the
handler's, read from the context.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from medchain.contracts.consent.model import ClinicalType, GranteeKind, Purpose
from medchain.contracts.identity.model import STAFF_ROLES, ClinicalRole, StaffRole
from medchain.contracts.payload import Payload

# A list a grant or policy names; repeats are allowed and collapse (state keeps
# each value once, sorted).
MAX_SCOPE = 200
RecordId = Annotated[str, msgspec.Meta(min_length=1)]
Purposes = Annotated[tuple[Purpose, ...], msgspec.Meta(min_length=1, max_length=MAX_SCOPE)]
RecordIds = Annotated[tuple[RecordId, ...], msgspec.Meta(max_length=MAX_SCOPE)]
ResourceTypes = Annotated[tuple[ClinicalType, ...], msgspec.Meta(max_length=MAX_SCOPE)]
ClinicalRoles = Annotated[
    tuple[ClinicalRole, ...], msgspec.Meta(min_length=1, max_length=MAX_SCOPE)
]
BREAK_GLASS_REASON_CHARS = (10, 500)


class Grant(Payload, frozen=True, kw_only=True):
    """A patient lets a member, an organisation or a role see some records, for some purposes.

    The scope is record ids, resource types or both; at least one must be named.
    """

    patient: str
    grantee_kind: GranteeKind
    grantee: str
    purposes: Purposes
    expires_ms: int
    scope_records: RecordIds = ()
    scope_types: ResourceTypes = ()

    def __post_init__(self) -> None:
        if not (self.scope_records or self.scope_types):
            raise ValueError("a grant needs a scope (record ids or resource types)")
        if self.grantee_kind == "role" and self.grantee not in STAFF_ROLES:
            raise ValueError(f"grantee role must be one of {sorted(STAFF_ROLES)}")
        if self.grantee_kind == "study":
            # Joining a study is research use of record types, nothing else: no
            # treatment or payment purpose rides along, no single record is named.
            if set(self.purposes) != {"HRESEARCH"}:
                raise ValueError('a study grant has purposes exactly ["HRESEARCH"]')
            if self.scope_records or not self.scope_types:
                raise ValueError("a study grant is scoped by resource types only (scope_types)")


class Revoke(Payload, frozen=True, kw_only=True):
    """Withdraw a grant, optionally saying why (kept on the revoked grant if not empty)."""

    grant_id: str
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class DelegateGuardian(Payload, frozen=True, kw_only=True):
    """The member who may manage the signing patient's consent."""

    guardian: str


class RevokeGuardian(Payload, frozen=True, kw_only=True):
    """The guardian whose authority the signing patient takes back."""

    guardian: str


class SetRolePolicy(Payload, frozen=True, kw_only=True):
    """The resource types a staff role may ever see (none: nothing, whatever is granted)."""

    role: StaffRole
    resource_types: ResourceTypes


class SetBreakGlassPolicy(Payload, frozen=True, kw_only=True):
    """Which clinical roles may request and which may approve emergency access."""

    requester_roles: ClinicalRoles
    approver_roles: ClinicalRoles


class BreakGlass(Payload, frozen=True, kw_only=True):
    """A request for emergency access to a patient's records, saying why."""

    patient: str
    reason: str

    def __post_init__(self) -> None:
        low, high = BREAK_GLASS_REASON_CHARS
        if not low <= len(self.stated_reason) <= high:
            raise ValueError(f"reason must say why, in {low} to {high} characters")

    @property
    def stated_reason(self) -> str:
        """The reason without surrounding blanks, as it is stored and announced."""
        return self.reason.strip()


class ApproveBreakGlass(Payload, frozen=True, kw_only=True):
    """The pending break-glass request a second clinician approves."""

    request_id: str
