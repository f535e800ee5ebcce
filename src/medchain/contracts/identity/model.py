"""Identity vocabulary, state records, state keys and DID derivation.

The records are TypedDicts: they encode to exactly the CBOR maps the chain has
always stored (the app hash depends on it), and every reader (contracts,
gateway, edge) sees the same field names checked by mypy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal, NotRequired, TypedDict, get_args

import base58

from medchain import encoding
from medchain.core.tx import key_id
from medchain.crypto.sm9 import SM9Error
from medchain.crypto.suites import sm9_identity, sm9_master

NAMESPACE = "identity"

OrgType = Literal[
    "hospital",
    "clinic",
    "lab",
    "pharmacy",
    "manufacturer",
    "supplier",
    "logistics",
    "insurer",
    "regulator",
    "research",
]
ORG_TYPES: frozenset[str] = frozenset(get_args(OrgType))

# Roles an org admin may hand out; consortium_admin only at genesis, patient only by
# self-registration, so nobody can mint a patient identity for someone else.
StaffRole = Literal[
    "org_admin",
    "doctor",
    "attending",
    "department_head",
    "nurse",
    "pharmacist",
    "lab_technician",
    "researcher",
    "regulator",
    "device",
]
STAFF_ROLES: frozenset[str] = frozenset(get_args(StaffRole))
ROLES = STAFF_ROLES | {"consortium_admin", "patient"}

# Only these kinds of organisation treat patients; emergency (break-glass) access
# is for their clinical staff alone, whatever roles governance lets other kinds hold.
CLINICAL_ORG_TYPES = frozenset({"hospital", "clinic"})
ClinicalRole = Literal["doctor", "attending", "department_head", "nurse"]
CLINICAL_ROLES: frozenset[str] = frozenset(get_args(ClinicalRole))

_CARE_ROLES = (
    "org_admin",
    "doctor",
    "attending",
    "department_head",
    "nurse",
    "pharmacist",
    "lab_technician",
    "researcher",
    "device",
)
# Which roles each kind of organisation may hold. Written at genesis, changed by a
# consortium admin's identity.set_org_roles; an org admin can only staff its
# organisation within it, so a logistics company cannot mint a doctor.
DEFAULT_ORG_ROLES: dict[str, tuple[str, ...]] = {
    "hospital": _CARE_ROLES,
    "clinic": _CARE_ROLES,
    "lab": ("org_admin", "lab_technician", "device"),
    "pharmacy": ("org_admin", "pharmacist", "device"),
    "manufacturer": ("org_admin", "device"),
    "supplier": ("org_admin", "device"),
    "logistics": ("org_admin", "device"),
    "insurer": ("org_admin",),
    "research": ("org_admin", "researcher", "device"),
    "regulator": ("org_admin", "regulator", "device"),
}

# Status of an organisation, a member, or one of a member's keys (ROTATED: keys only).
ACTIVE, SUSPENDED, REVOKED, ROTATED = "active", "suspended", "revoked", "rotated"
DID_METHOD = "did:medchain:"
VALIDATOR_KEY_BYTES = 32
MAX_VALIDATOR_POWER = 1_000_000
VALIDATOR_EVENT = "identity.validator_updated"

ORG_PREFIX = f"{NAMESPACE}/org/"
VALIDATOR_PREFIX = f"{NAMESPACE}/validator/"


class Org(TypedDict):
    """An organisation (`identity/org/<org_id>`); edge_url once it publishes one."""

    org_id: str
    name: str
    org_type: str
    status: str
    created_height: int
    edge_url: NotRequired[str]
    updated_height: NotRequired[int]
    # Once its admin publishes them (identity.set_sm9_master): the org KGC's SM9
    # signing (128 B) and encryption (64 B) master public keys.
    sm9_sign_master: NotRequired[bytes]
    sm9_enc_master: NotRequired[bytes]


class OrgRoles(TypedDict):
    """Which roles a kind of organisation may hold (`identity/org-roles/<org_type>`)."""

    roles: list[str]
    updated_height: int


class MemberKey(TypedDict):
    """One signing key of a member, current (ACTIVE) or ROTATED out."""

    key_id: bytes
    suite: str
    public_key: bytes
    status: str
    added_height: int


class Member(TypedDict):
    """A member (`identity/did/<did>`): staff (org_id set), a patient or a consortium admin."""

    did: str
    name: str
    org_id: str | None
    roles: list[str]
    status: str
    keys: list[MemberKey]
    created_height: int
    updated_height: int


class KeyOwner(TypedDict):
    """Which DID a key id belongs to (`identity/key/<key id>`), and whether it still signs."""

    did: str
    status: str


class Validator(TypedDict):
    """A CometBFT validator (`identity/validator/<pub_key hex>`)."""

    pub_key: bytes
    power: int
    name: str
    updated_height: int


def did_for_key(suite: str, public_key: bytes) -> str:
    """did:medchain:<base58 of the first 16 bytes of the key id>.

    Derived from the key a member first registers with; it stays the same
    when the key is rotated. An sm9 key names its identity itself, and that
    identity is the DID (see sm9_did): an identity-based key cannot embed a
    DID derived from its own hash.
    """
    if suite == SM9_SUITE:
        return sm9_identity(public_key)  # SM9Error (a ValueError) if not text
    return DID_METHOD + base58.b58encode(key_id(suite, public_key)[:16]).decode()


SM9_SUITE = "sm9"
# did:medchain:<org_id>:<name>, e.g. did:medchain:hosp-a:oncall-cardiology. The org id
# inside keeps one org's KGC out of every other org's names; the colon keeps these
# apart from key-derived DIDs (base58 has none), so nobody can claim one of those.
_SM9_LOCAL = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def sm9_did(org_id: str, name: str) -> str:
    """The DID an organisation's KGC gives a new sm9 member called `name`."""
    return f"{DID_METHOD}{org_id}:{name}"


def is_sm9_did_of(did: str, org_id: str) -> bool:
    """Whether `did` is a name in `org_id`'s SM9 namespace (see sm9_did)."""
    prefix = sm9_did(org_id, "")
    return did.startswith(prefix) and _SM9_LOCAL.fullmatch(did[len(prefix) :]) is not None


def sm9_key_problem(org: Org | None, did: str, public_key: bytes) -> str | None:
    """Why an sm9 key may not act for `did` (None if it may): it must embed its own
    org's published signing master key and the member's own DID. Checked when a key
    is added and at every authentication, so an org that publishes a new master key
    (its KGC was compromised) stops every key issued under the old one at once."""
    if org is None:
        return (
            "an sm9 key belongs to an organisation's staff; "
            "patients and consortium admins have none"
        )
    master = org.get("sm9_sign_master")
    if master is None:
        return (
            f"organisation {org['org_id']!r} has published no SM9 master key; its admin "
            "publishes one first (identity.set_sm9_master, `medchain sm9 publish`)"
        )
    if sm9_master(public_key) != master:
        return (
            f"the sm9 key was not issued under {org['org_id']!r}'s published SM9 master key; "
            "ask its KGC for a key (`medchain sm9 issue`)"
        )
    try:
        identity = sm9_identity(public_key)
    except SM9Error:
        identity = ""
    if identity != did:
        return f"the sm9 key names identity {identity!r}, not the member's DID {did!r}"
    return None


def org_key(org_id: str) -> str:
    """Where an organisation's record lives; scan ORG_PREFIX for the directory."""
    return ORG_PREFIX + org_id


def org_roles_key(org_type: str) -> str:
    """Where the roles a kind of organisation may hold live."""
    return f"{NAMESPACE}/org-roles/{org_type}"


def did_key(did: str) -> str:
    """Where a member's record lives."""
    return f"{NAMESPACE}/did/{did}"


def validator_key(pub_key: bytes) -> str:
    """Where a validator's record lives; scan VALIDATOR_PREFIX for the set."""
    return VALIDATOR_PREFIX + pub_key.hex()


def pubkey_key(kid: bytes) -> str:
    """Where a key id's owner lives: what CheckTx reads to authenticate a signer."""
    return f"{NAMESPACE}/key/{kid.hex()}"


def new_member(
    did: str,
    org_id: str | None,
    roles: Sequence[str],
    suite: str,
    public_key: bytes,
    height: int,
    name: str = "",
) -> Member:
    """The state record of a member (its DID document's source)."""
    return {
        "did": did,
        "name": name,
        "org_id": org_id,
        "roles": sorted(set(roles)),
        "status": ACTIVE,
        "keys": [
            {
                "key_id": key_id(suite, public_key),
                "suite": suite,
                "public_key": public_key,
                "status": ACTIVE,
                "added_height": height,
            }
        ],
        "created_height": height,
        "updated_height": height,
    }


def new_org(org_id: str, name: str, org_type: str, height: int) -> Org:
    """The state record of a newly admitted organisation."""
    return {
        "org_id": org_id,
        "name": name,
        "org_type": org_type,
        "status": ACTIVE,
        "created_height": height,
    }


def check_org_roles(org_type: str, roles: Sequence[str]) -> None:
    """Invariants no governance vote may break (ValueError says which).

    Every kind keeps an org admin (register_org makes one); the regulator role
    stays with regulators, whose supervision powers no other org may hold.
    """
    if org_type not in ORG_TYPES:
        raise ValueError(f"unknown org_type {org_type!r}; known: {sorted(ORG_TYPES)}")
    bad = sorted(set(roles) - STAFF_ROLES)
    if bad:
        raise ValueError(f"roles {bad} are not staff roles; known: {sorted(STAFF_ROLES)}")
    if "org_admin" not in roles:
        raise ValueError(f"a {org_type} organisation must be allowed an org_admin")
    if "regulator" in roles and org_type != "regulator":
        raise ValueError("the regulator role exists only in a regulator organisation")


_METHOD_TYPES = {
    "sm": "SM2VerificationKey2026",
    "sm9": "SM9VerificationKey2026",  # publicKeyHex: org master public key || DID
    "pq": "MLDSA65VerificationKey2026",
    "sm2+mldsa": "HybridSM2MLDSA65VerificationKey2026",
}


def did_document(member: Member) -> dict[str, Any]:
    """A W3C DID document view of a member record (for APIs, not for state)."""
    did = member["did"]
    methods = []
    for i, k in enumerate(member["keys"]):
        methods.append(
            {
                "id": f"{did}#key-{i}",
                "type": _METHOD_TYPES.get(k["suite"], "Ed25519VerificationKey2020"),
                "controller": did,
                "publicKeyHex": k["public_key"].hex(),
                "status": k["status"],
            }
        )
    keys = zip(methods, member["keys"], strict=True)
    active = [m["id"] for m, k in keys if k["status"] == ACTIVE]
    return {
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did,
        "verificationMethod": methods,
        "authentication": active if member["status"] == ACTIVE else [],
        "medchain": {
            "org_id": member["org_id"],
            "roles": member["roles"],
            "status": member["status"],
            "created_height": member["created_height"],
            "updated_height": member["updated_height"],
        },
    }


def rotation_message(chain_id: str, did: str, new_public_key: bytes, nonce: int) -> bytes:
    """What the new key signs to prove its holder asked for the rotation."""
    return encoding.encode(
        {
            "purpose": "medchain/rotate-key",
            "chain_id": chain_id,
            "did": did,
            "new_public_key": new_public_key,
            "nonce": nonce,
        }
    )
