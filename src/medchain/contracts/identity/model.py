"""Identity vocabulary, state keys and DID derivation."""

from __future__ import annotations

from typing import Any

import base58

from medchain import encoding
from medchain.core.tx import key_id

NAMESPACE = "identity"

ORG_TYPES = frozenset(
    {
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
    }
)
ROLES = frozenset(
    {
        "consortium_admin",
        "org_admin",
        "doctor",
        "attending",
        "department_head",
        "nurse",
        "pharmacist",
        "lab_technician",
        "researcher",
        "patient",
        "regulator",
        "device",
    }
)
# Roles an org admin may hand out; consortium_admin only at genesis, patient only by
# self-registration, so nobody can mint a patient identity for someone else.
STAFF_ROLES = ROLES - {"consortium_admin", "patient"}

# Only these kinds of organisation treat patients; emergency (break-glass) access
# is for their clinical staff alone, whatever roles governance lets other kinds hold.
CLINICAL_ORG_TYPES = frozenset({"hospital", "clinic"})
CLINICAL_ROLES = frozenset({"doctor", "attending", "department_head", "nurse"})

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

ACTIVE, SUSPENDED, REVOKED, ROTATED = "active", "suspended", "revoked", "rotated"
DID_METHOD = "did:medchain:"
VALIDATOR_KEY_BYTES = 32
MAX_VALIDATOR_POWER = 1_000_000
VALIDATOR_EVENT = "identity.validator_updated"


def did_for_key(suite: str, public_key: bytes) -> str:
    """did:medchain:<base58 of the first 16 bytes of the key id>.

    Derived from the key a member first registers with; it stays the same
    when the key is rotated.
    """
    return DID_METHOD + base58.b58encode(key_id(suite, public_key)[:16]).decode()


def org_key(org_id: str) -> str:
    return f"{NAMESPACE}/org/{org_id}"


def org_roles_key(org_type: str) -> str:
    return f"{NAMESPACE}/org-roles/{org_type}"


def did_key(did: str) -> str:
    return f"{NAMESPACE}/did/{did}"


def validator_key(pub_key: bytes) -> str:
    return f"{NAMESPACE}/validator/{pub_key.hex()}"


def pubkey_key(kid: bytes) -> str:
    return f"{NAMESPACE}/key/{kid.hex()}"


def new_member(
    did: str,
    org_id: str | None,
    roles: list[str],
    suite: str,
    public_key: bytes,
    height: int,
    name: str = "",
) -> dict[str, Any]:
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


def did_document(member: dict[str, Any]) -> dict[str, Any]:
    """A W3C DID document view of a member record (for APIs, not for state)."""
    did = member["did"]
    methods = []
    for i, k in enumerate(member["keys"]):
        methods.append(
            {
                "id": f"{did}#key-{i}",
                "type": "SM2VerificationKey2026"
                if k["suite"] == "sm"
                else "Ed25519VerificationKey2020",
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
