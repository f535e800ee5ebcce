"""Identity payloads: one type per action, fully checked before any state read.

Patterns, lengths, closed vocabularies and a public key's size for its suite
are all properties of the payload alone, so they live here; what depends on
state (who signs, which org exists, what its kind may hold) is the handler's.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from medchain import crypto
from medchain.contracts.identity.model import (
    MAX_VALIDATOR_POWER,
    SM9_SUITE,
    VALIDATOR_KEY_BYTES,
    OrgType,
    StaffRole,
    check_org_roles,
)
from medchain.contracts.payload import Payload, whole
from medchain.crypto import sm9
from medchain.crypto.suites import sm9_identity

OrgId = Annotated[str, msgspec.Meta(pattern=whole(r"[a-z0-9][a-z0-9-]{1,63}"))]
Name = Annotated[str, msgspec.Meta(pattern=whole(r"[^\x00-\x1f]{1,120}"))]
EdgeUrl = Annotated[
    str,
    msgspec.Meta(pattern=whole(r"https?://[A-Za-z0-9.:\[\]-]{1,100}(/[A-Za-z0-9._~/-]{0,100})?")),
]
Reason = Annotated[str, msgspec.Meta(max_length=500)]
# At least one role; repeats are allowed and collapse (the record keeps them sorted, once).
StaffRoles = Annotated[tuple[StaffRole, ...], msgspec.Meta(min_length=1)]
ValidatorKey = Annotated[
    bytes, msgspec.Meta(min_length=VALIDATOR_KEY_BYTES, max_length=VALIDATOR_KEY_BYTES)
]
Power = Annotated[int, msgspec.Meta(ge=0, le=MAX_VALIDATOR_POWER)]


def check_public_key(suite: str, public_key: bytes, field: str) -> None:
    """A public key of the right size for a known suite (ValueError says which is wrong)."""
    s = crypto.get_suite(suite)  # UnknownSuite is a ValueError
    if not s.accepts_public(public_key):
        raise ValueError(f"{field} has the wrong size for suite {suite!r}")
    if suite == SM9_SUITE:
        sm9_identity(public_key)  # SM9Error (a ValueError): the identity must be text


class RegisterOrg(Payload, frozen=True, kw_only=True):
    """A consortium admin admits an organisation of a fixed kind, with its first admin."""

    org_id: OrgId
    name: Name
    org_type: OrgType
    admin_public_key: bytes
    admin_suite: str = crypto.DEFAULT_SUITE
    admin_name: str = ""

    def __post_init__(self) -> None:
        check_public_key(self.admin_suite, self.admin_public_key, "admin_public_key")


class SetOrgRoles(Payload, frozen=True, kw_only=True):
    """Which roles a kind of organisation may hold, within the rules no vote may break."""

    org_type: OrgType
    roles: StaffRoles

    def __post_init__(self) -> None:
        check_org_roles(self.org_type, self.roles)


class SetEndpoint(Payload, frozen=True, kw_only=True):
    """Where an organisation's edge answers (http(s), host and an optional path)."""

    org_id: str
    edge_url: EdgeUrl


class AddMember(Payload, frozen=True, kw_only=True):
    """A staff member of an organisation, by the public key they will sign with."""

    org_id: OrgId
    public_key: bytes
    roles: StaffRoles
    suite: str = crypto.DEFAULT_SUITE
    name: Name = ""

    def __post_init__(self) -> None:
        check_public_key(self.suite, self.public_key, "public_key")


class RegisterPatient(Payload, frozen=True, kw_only=True):
    """Nothing: the DID comes from the signing key, and no PII goes on chain."""


class SetRoles(Payload, frozen=True, kw_only=True):
    """A staff member's new roles (replacing the old ones)."""

    did: str
    roles: StaffRoles


class ChangeMemberStatus(Payload, frozen=True, kw_only=True):
    """A member whose status changes, and why (carried in the event)."""

    did: str
    reason: Reason = ""


class SuspendMember(ChangeMemberStatus, frozen=True, kw_only=True):
    """Stop a member's keys for now."""


class ReinstateMember(ChangeMemberStatus, frozen=True, kw_only=True):
    """Lift a suspension."""


class RevokeMember(ChangeMemberStatus, frozen=True, kw_only=True):
    """Stop a member's keys for good."""


class RotateKey(Payload, frozen=True, kw_only=True):
    """The signer's new key, and a proof signed by it (see model.rotation_message)."""

    new_public_key: bytes
    proof: bytes
    new_suite: str = crypto.DEFAULT_SUITE

    def __post_init__(self) -> None:
        check_public_key(self.new_suite, self.new_public_key, "new_public_key")


class SetSm9Master(Payload, frozen=True, kw_only=True):
    """An org admin publishes its organisation's SM9 KGC master public keys."""

    sign_master_public: bytes
    enc_master_public: bytes

    def __post_init__(self) -> None:
        # Points on the right curves, or every key and wrap under them would fail later.
        try:
            sm9.check_master_public(self.sign_master_public)
        except sm9.SM9Error as e:
            raise ValueError(f"sign_master_public: {e}") from None
        try:
            sm9.check_enc_master_public(self.enc_master_public)
        except sm9.SM9Error as e:
            raise ValueError(f"enc_master_public: {e}") from None


class SetValidator(Payload, frozen=True, kw_only=True):
    """A CometBFT validator's Ed25519 key and voting power (0 removes it)."""

    pub_key: ValidatorKey
    power: Power
    name: Name = ""
