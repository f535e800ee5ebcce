"""Consent contract: grants, revocations, guardians, role policy.

Authority:
  grant, revoke            the patient, or a guardian the patient delegated to
  delegate_guardian        the patient
  revoke_guardian          the patient
  set_role_policy          a consortium admin (governance of what roles may see)
  set_break_glass_policy   a consortium admin (which clinical roles may ask / approve)
  break_glass              clinical staff of a hospital or clinic in a requesting role
                           (by default a doctor), with a reason, in an emergency
  approve_break_glass      another member, of the same hospital or clinic, in an
                           approving role (by default attending or department head)

A revocation is in force from the next transaction: the decision function
reads the grant's status from state, so no later exchange can use it.
"""

from __future__ import annotations

from typing import Any

from medchain.contracts.base import ActionHandler, patient_member, signer_member
from medchain.contracts.consent import model as m
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import check_fields, invalid, one_of
from medchain.core.context import Context
from medchain.core.tx import SignedTx
from medchain.exceptions import Code, InvalidTransaction

MAX_SCOPE = 200


def _unauthorized(message: str) -> InvalidTransaction:
    return InvalidTransaction(Code.UNAUTHORIZED, message)


def _strings(p: dict[str, Any], name: str, allowed: frozenset[str] | None = None) -> list[str]:
    values = p.get(name, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise invalid(f"{name} must be a list of strings")
    if len(values) > MAX_SCOPE:
        raise invalid(f"{name} has more than {MAX_SCOPE} entries")
    if allowed is not None and not set(values) <= allowed:
        raise invalid(f"{name} must be drawn from {sorted(allowed)}")
    return sorted(set(values))


class ConsentHandler(ActionHandler):
    """The `consent` system contract, version 1."""

    namespace = m.NAMESPACE
    actions = frozenset(
        {
            "grant",
            "revoke",
            "delegate_guardian",
            "revoke_guardian",
            "set_role_policy",
            "set_break_glass_policy",
            "break_glass",
            "approve_break_glass",
        }
    )

    def _acting_for(self, ctx: Context, patient: str) -> dict[str, Any]:
        """The caller, if it is `patient` or an active guardian of `patient`."""
        caller = signer_member(ctx)
        if caller["did"] == patient and "patient" in caller["roles"]:
            return caller
        if ctx.get(m.guardian_key(patient, caller["did"])) is not None:
            return caller
        raise _unauthorized("only the patient or a guardian the patient delegated to may do this")

    def grant(self, tx: SignedTx, ctx: Context) -> None:
        """A patient (or guardian) lets a person, an org or a role see some records."""
        p = tx.envelope.payload
        check_fields(
            p,
            {
                "patient": str,
                "grantee_kind": str,
                "grantee": str,
                "purposes": list,
                "expires_ms": int,
            },
            {"scope_records": list, "scope_types": list},
        )
        kind = one_of(p, "grantee_kind", m.GRANTEE_KINDS)
        purposes = _strings(p, "purposes", m.PURPOSES)
        scope_records = _strings(p, "scope_records")
        scope_types = _strings(p, "scope_types", frozenset(m.CLINICAL))
        if not purposes or not (scope_records or scope_types):
            raise invalid("a grant needs a purpose and a scope (record ids or resource types)")
        if p["expires_ms"] <= ctx.time_ms:
            raise invalid("expires_ms must be after the current block time")
        caller = self._acting_for(ctx, p["patient"])
        grantee = p["grantee"]
        if kind == "did" and ctx.get(identity.did_key(grantee)) is None:
            raise InvalidTransaction(Code.NOT_FOUND, f"no member {grantee}")
        if kind == "org" and ctx.get(identity.org_key(grantee)) is None:
            raise InvalidTransaction(Code.NOT_FOUND, f"no organisation {grantee!r}")
        if kind == "role" and grantee not in identity.STAFF_ROLES:
            raise invalid(f"grantee role must be one of {sorted(identity.STAFF_ROLES)}")
        grant_id = ctx.tx_id.hex()[:32]
        ctx.put(
            m.grant_key(grant_id),
            {
                "grant_id": grant_id,
                "patient": p["patient"],
                "grantee_kind": kind,
                "grantee": grantee,
                "purposes": purposes,
                "scope_records": scope_records,
                "scope_types": scope_types,
                "expires_ms": p["expires_ms"],
                "status": "active",
                "granted_by": caller["did"],
                "granted_height": ctx.height,
                "granted_time_ms": ctx.time_ms,
            },
        )
        ctx.put(m.by_patient_key(p["patient"], grant_id), {"grant_id": grant_id})
        ctx.put(m.by_grantee_key(kind, grantee, p["patient"], grant_id), {"grant_id": grant_id})
        ctx.emit(
            "consent.granted",
            grant_id=grant_id,
            patient=p["patient"],
            grantee=f"{kind}:{grantee}",
            purposes=",".join(purposes),
            expires_ms=str(p["expires_ms"]),
            actor=caller["did"],
        )

    def revoke(self, tx: SignedTx, ctx: Context) -> None:
        """Withdraw a grant; in force for every later transaction."""
        p = tx.envelope.payload
        check_fields(p, {"grant_id": str}, {"reason": str})
        grant = ctx.require(m.grant_key(p["grant_id"]), f"grant {p['grant_id']!r}")
        caller = self._acting_for(ctx, grant["patient"])
        if grant["status"] != "active":
            raise InvalidTransaction(Code.INVALID_STATE, f"grant is {grant['status']}")
        grant.update(status="revoked", revoked_height=ctx.height, revoked_by=caller["did"])
        ctx.put(m.grant_key(grant["grant_id"]), grant)
        ctx.emit(
            "consent.revoked",
            grant_id=grant["grant_id"],
            patient=grant["patient"],
            actor=caller["did"],
        )

    def delegate_guardian(self, tx: SignedTx, ctx: Context) -> None:
        """A patient lets another member manage their consent (e.g. a parent)."""
        p = tx.envelope.payload
        check_fields(p, {"guardian": str})
        caller = signer_member(ctx)
        if "patient" not in caller["roles"]:
            raise _unauthorized("only a patient may delegate a guardian")
        guardian = ctx.get(identity.did_key(p["guardian"]))
        if guardian is None or guardian["status"] != "active" or guardian["did"] == caller["did"]:
            raise InvalidTransaction(Code.NOT_FOUND, "guardian must be another active member")
        ctx.put(m.guardian_key(caller["did"], p["guardian"]), {"since_height": ctx.height})
        ctx.emit(
            "consent.guardian_delegated",
            patient=caller["did"],
            guardian=p["guardian"],
            actor=caller["did"],
        )

    def revoke_guardian(self, tx: SignedTx, ctx: Context) -> None:
        """A patient takes back a guardian's authority."""
        p = tx.envelope.payload
        check_fields(p, {"guardian": str})
        caller = signer_member(ctx)
        key = m.guardian_key(caller["did"], p["guardian"])
        if ctx.get(key) is None:
            raise InvalidTransaction(Code.NOT_FOUND, "no such guardian")
        ctx.delete(key)
        ctx.emit(
            "consent.guardian_revoked",
            patient=caller["did"],
            guardian=p["guardian"],
            actor=caller["did"],
        )

    def set_role_policy(self, tx: SignedTx, ctx: Context) -> None:
        """Governance: the resource types a role may ever see."""
        p = tx.envelope.payload
        check_fields(p, {"role": str, "resource_types": list})
        role = one_of(p, "role", identity.STAFF_ROLES)
        types = _strings(p, "resource_types", frozenset(m.CLINICAL))
        admin = signer_member(ctx)
        if "consortium_admin" not in admin["roles"]:
            raise _unauthorized("only a consortium admin may change role policy")
        ctx.put(m.role_policy_key(role), {"resource_types": types, "updated_height": ctx.height})
        ctx.emit(
            "consent.role_policy_set",
            role=role,
            resource_types=",".join(types),
            actor=admin["did"],
        )

    def set_break_glass_policy(self, tx: SignedTx, ctx: Context) -> None:
        """Governance: which clinical roles may request and which may approve emergency access."""
        p = tx.envelope.payload
        check_fields(p, {"requester_roles": list, "approver_roles": list})
        requester_roles = _strings(p, "requester_roles", identity.CLINICAL_ROLES)
        approver_roles = _strings(p, "approver_roles", identity.CLINICAL_ROLES)
        if not requester_roles or not approver_roles:
            raise invalid("requester_roles and approver_roles must each name a role")
        admin = signer_member(ctx)
        if "consortium_admin" not in admin["roles"]:
            raise _unauthorized("only a consortium admin may change the break-glass policy")
        ctx.put(
            m.BREAK_GLASS_POLICY_KEY,
            {
                "requester_roles": requester_roles,
                "approver_roles": approver_roles,
                "updated_height": ctx.height,
            },
        )
        ctx.emit(
            "consent.break_glass_policy_set",
            requester_roles=",".join(requester_roles),
            approver_roles=",".join(approver_roles),
            actor=admin["did"],
        )

    def _require_clinical_staff(
        self, ctx: Context, member: dict[str, Any], roles_field: str, what: str
    ) -> None:
        """`member` is active staff of an active hospital or clinic holding a `roles_field` role.

        The org's kind is checked here, not only at add_member, so emergency access
        stays with care providers even if governance widens some kind's roles.
        """
        policy = ctx.get(m.BREAK_GLASS_POLICY_KEY) or {}
        allowed = set(policy.get(roles_field, ()))
        org = ctx.get(identity.org_key(member["org_id"])) if member["org_id"] else None
        if (
            org is None
            or org["status"] != identity.ACTIVE
            or org["org_type"] not in identity.CLINICAL_ORG_TYPES
            or member["status"] != identity.ACTIVE
        ):
            raise _unauthorized(f"{what} must be active staff of a hospital or clinic")
        if not allowed & set(member["roles"]):
            raise _unauthorized(f"{what} must hold one of the roles {sorted(allowed)}")

    def break_glass(self, tx: SignedTx, ctx: Context) -> None:
        """A doctor asks for emergency access; nothing opens until a second approver agrees."""
        p = tx.envelope.payload
        check_fields(p, {"patient": str, "reason": str})
        reason = p["reason"].strip()
        if not 10 <= len(reason) <= 500:
            raise invalid("reason must say why, in 10 to 500 characters")
        caller = signer_member(ctx)
        self._require_clinical_staff(ctx, caller, "requester_roles", "the requester")
        patient_member(ctx, p["patient"])
        request_id = ctx.tx_id.hex()[:32]
        ctx.put(
            m.break_glass_key(request_id),
            {
                "request_id": request_id,
                "patient": p["patient"],
                "doctor": caller["did"],
                "org_id": caller["org_id"],
                "reason": reason,
                "status": "pending",
                "requested_height": ctx.height,
                "approver": None,
                "expires_ms": 0,
            },
        )
        ctx.emit(
            "consent.break_glass_requested",
            request_id=request_id,
            patient=p["patient"],
            actor=caller["did"],
            org_id=caller["org_id"],
            reason=reason,
        )

    def approve_break_glass(self, tx: SignedTx, ctx: Context) -> None:
        """The second approver opens the fixed window; the patient is notified by event."""
        p = tx.envelope.payload
        check_fields(p, {"request_id": str})
        request = ctx.require(
            m.break_glass_key(p["request_id"]), f"break-glass request {p['request_id']!r}"
        )
        caller = signer_member(ctx)
        if caller["did"] == request["doctor"]:
            raise _unauthorized("the second approver must be someone else than the requester")
        self._require_clinical_staff(ctx, caller, "approver_roles", "the approver")
        if caller["org_id"] != request["org_id"]:
            raise _unauthorized("the approver must be of the requester's hospital or clinic")
        if request["status"] != "pending":
            raise InvalidTransaction(Code.INVALID_STATE, f"request is {request['status']}")
        # The requester may have been suspended or re-roled since asking.
        self._require_clinical_staff(
            ctx,
            ctx.require(identity.did_key(request["doctor"]), "the requester"),
            "requester_roles",
            "the requester",
        )
        request.update(
            status="approved",
            approver=caller["did"],
            approved_height=ctx.height,
            expires_ms=ctx.time_ms + m.BREAK_GLASS_WINDOW_MS,
        )
        ctx.put(m.break_glass_key(request["request_id"]), request)
        ctx.put(
            m.break_glass_index_key(request["doctor"], request["patient"], request["request_id"]),
            {"request_id": request["request_id"]},
        )
        ctx.emit(
            "consent.break_glass_opened",
            request_id=request["request_id"],
            patient=request["patient"],
            doctor=request["doctor"],
            actor=caller["did"],
            expires_ms=str(request["expires_ms"]),
            notify=request["patient"],
        )


def init_genesis(ctx: Context) -> None:
    """The default role policy and break-glass policy."""
    for role, types in sorted(m.DEFAULT_ROLE_POLICY.items()):
        ctx.put(m.role_policy_key(role), {"resource_types": sorted(types), "updated_height": 0})
    ctx.put(
        m.BREAK_GLASS_POLICY_KEY,
        {
            **{k: sorted(v) for k, v in m.DEFAULT_BREAK_GLASS_POLICY.items()},
            "updated_height": 0,
        },
    )
