"""The access decision: may this member read this record now, for this purpose?

A pure function of state and block time, used by the exchange contract and
by the gateway, so every node and every edge decides the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from medchain.contracts.consent import model

Get = Callable[[str], Any]
Scan = Callable[[str], Iterator[tuple[str, Any]]]


@dataclass(frozen=True)
class Decision:
    """Allowed or not, under which grant, and why (for the audit trail)."""

    allowed: bool
    grant_id: str | None
    reason: str


def role_allows(get: Get, roles: list[str], resource_type: str) -> bool:
    """Some role of the member may see this resource type at all."""
    for role in roles:
        policy = get(model.role_policy_key(role))
        if policy is not None and resource_type in policy["resource_types"]:
            return True
    return False


def record_types(record: dict[str, Any]) -> list[str]:
    """Every resource type a record holds: its own, then those nested in it
    (contained resources, bundle entries) as its custodian registered them.

    A MedicationRequest carrying a contained Condition discloses that Condition
    to whoever reads it, so a type-based rule must hold for each carried type.
    """
    return [record["resource_type"], *record.get("carried_types", ())]


def grant_covers(grant: dict[str, Any], record: dict[str, Any], purpose: str, now_ms: int) -> bool:
    """The grant is active, unexpired, for this purpose, and scopes this record: by
    its id, or by resource types covering every type the record carries."""
    if grant["status"] != model.ACTIVE or now_ms >= grant["expires_ms"]:
        return False
    if purpose not in grant["purposes"]:
        return False
    return record["record_id"] in grant["scope_records"] or all(
        t in grant["scope_types"] for t in record_types(record)
    )


def decide(
    get: Get, scan: Scan, member: dict[str, Any], record: dict[str, Any], purpose: str, now_ms: int
) -> Decision:
    """Role policy first (a grant cannot widen a role), then the patient's grants."""
    if member["status"] != "active":
        return Decision(False, None, f"requester is {member['status']}")
    if record.get("status") != "active":
        return Decision(False, None, f"record is {record.get('status')}")
    if member["did"] == record["patient"]:
        return Decision(True, None, "the patient's own record")
    hidden = [t for t in record_types(record) if not role_allows(get, member["roles"], t)]
    if hidden:
        return Decision(False, None, f"roles {member['roles']} may not see {', '.join(hidden)}")
    candidates = [("did", member["did"])] + [("role", r) for r in member["roles"]]
    if member.get("org_id"):
        candidates.append(("org", member["org_id"]))
    patient = record["patient"]
    for kind, grantee in candidates:
        for _, entry in scan(model.by_grantee_prefix(kind, grantee, patient)):
            grant = get(model.grant_key(entry["grant_id"]))
            if (
                grant
                and grant["patient"] == patient
                and grant_covers(grant, record, purpose, now_ms)
            ):
                return Decision(True, grant["grant_id"], f"grant {grant['grant_id']}")
    if purpose == "ETREAT":
        for _, entry in scan(model.break_glass_by_prefix(member["did"], patient)):
            request = get(model.break_glass_key(entry["request_id"]))
            if request and request["status"] == model.APPROVED and now_ms < request["expires_ms"]:
                return Decision(True, None, f"break-glass {request['request_id']}")
    return Decision(False, None, "no active consent covers this record and purpose")
