"""Consent contract: grants, revocations, guardians, role policy.

Authority:
  grant, revoke            the patient, or a guardian the patient delegated to; a
                           grant to a study (grantee kind "study") joins an open
                           study, research purpose only, once per patient
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

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, cast

from medchain.contracts.base import ActionHandler, patient_member, signer_member, unauthorized
from medchain.contracts.consent import model
from medchain.contracts.consent.payloads import (
    ApproveBreakGlass,
    BreakGlass,
    DelegateGuardian,
    Grant,
    Revoke,
    RevokeGuardian,
    SetBreakGlassPolicy,
    SetRolePolicy,
)
from medchain.contracts.governance.mode import require_admin_governance
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import Payload, invalid
from medchain.contracts.research import model as research
from medchain.core.context import Context
from medchain.exceptions import Code, InternalError, InvalidTransaction


def _distinct(values: Iterable[str]) -> list[str]:
    """Each value once, sorted: how every list of names is stored."""
    return sorted(set(values))


class ConsentHandler(ActionHandler):
    """The `consent` system contract, version 1."""

    namespace = model.NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "grant": Grant,
        "revoke": Revoke,
        "delegate_guardian": DelegateGuardian,
        "revoke_guardian": RevokeGuardian,
        "set_role_policy": SetRolePolicy,
        "set_break_glass_policy": SetBreakGlassPolicy,
        "break_glass": BreakGlass,
        "approve_break_glass": ApproveBreakGlass,
    }

    def _acting_for(self, ctx: Context, patient: str) -> dict[str, Any]:
        """The caller, if it is `patient` or an active guardian of `patient`."""
        return acting_for(ctx, patient)

    def grant(self, p: Grant, ctx: Context) -> None:
        """A patient (or guardian) lets a person, an org or a role see some records."""
        if p.expires_ms <= ctx.time_ms:
            raise invalid("expires_ms must be after the current block time")
        caller = self._acting_for(ctx, p.patient)
        if p.grantee_kind == "did" and ctx.get(identity.did_key(p.grantee)) is None:
            raise InvalidTransaction(Code.NOT_FOUND, f"no member {p.grantee}")
        if p.grantee_kind == "org" and ctx.get(identity.org_key(p.grantee)) is None:
            raise InvalidTransaction(Code.NOT_FOUND, f"no organisation {p.grantee!r}")
        if p.grantee_kind == "study":
            self._check_study_grant(p, ctx)
        issue_grant(
            ctx,
            patient=p.patient,
            grantee_kind=p.grantee_kind,
            grantee=p.grantee,
            purposes=p.purposes,
            scope_records=p.scope_records,
            scope_types=p.scope_types,
            expires_ms=p.expires_ms,
            granted_by=caller["did"],
        )

    def _check_study_grant(self, p: Grant, ctx: Context) -> None:
        """A patient joins an open study, for all the data types it reads, once.

        One active grant per patient and study keeps the cohort a set of patients.
        Every grant, revoked or expired too, stays in the study's index that a
        cohort commit rereads whole, so joins are bounded per patient and per study:
        otherwise one patient granting and revoking in a loop could push the index
        past the commit's read limit and stop the study for everyone.
        """
        study = ctx.get(research.study_key(p.grantee))
        if study is None:
            raise InvalidTransaction(Code.NOT_FOUND, f"no study {p.grantee!r}")
        if study["status"] != research.OPEN or ctx.time_ms >= study["expires_ms"]:
            raise InvalidTransaction(Code.INVALID_STATE, f"study {p.grantee} is not open")
        missing = sorted(set(study["data_types"]) - set(p.scope_types))
        if missing:
            raise invalid(
                f"scope_types must cover the study's data types; add {', '.join(missing)}"
            )
        earlier = list(
            ctx.scan(
                model.by_grantee_prefix("study", p.grantee, p.patient),
                research.MAX_JOINS_PER_PATIENT,
            )
        )
        for _, entry in earlier:
            held = ctx.get(model.grant_key(entry["grant_id"]))
            if held is not None and research.study_grant_active(held, p.grantee, ctx.time_ms):
                raise InvalidTransaction(
                    Code.ALREADY_EXISTS,
                    f"the patient already takes part in {p.grantee} (grant {held['grant_id']})",
                )
        if len(earlier) >= research.MAX_JOINS_PER_PATIENT:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"the patient has joined {p.grantee} {len(earlier)} times, the most a study "
                "takes from one patient; ask the sponsor about a new study",
            )
        joins = ctx.get(model.study_joins_key(p.grantee)) or {"count": 0}
        if joins["count"] >= research.MAX_STUDY_GRANTS:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"study {p.grantee} is full ({joins['count']} joins); it takes no more patients",
            )
        ctx.put(model.study_joins_key(p.grantee), model.StudyJoins(count=joins["count"] + 1))

    def revoke(self, p: Revoke, ctx: Context) -> None:
        """Withdraw a grant; in force for every later transaction.

        A reason given is kept on the grant, so the patient's record of why
        travels with the revocation rather than being lost at the gateway.
        """
        grant = cast(model.Grant, ctx.require(model.grant_key(p.grant_id), f"grant {p.grant_id!r}"))
        caller = self._acting_for(ctx, grant["patient"])
        if grant["status"] != model.ACTIVE:
            raise InvalidTransaction(Code.INVALID_STATE, f"grant is {grant['status']}")
        withdraw_grant(ctx, grant, caller["did"], p.reason)

    def delegate_guardian(self, p: DelegateGuardian, ctx: Context) -> None:
        """A patient lets another member manage their consent (e.g. a parent)."""
        caller = signer_member(ctx)
        if "patient" not in caller["roles"]:
            raise unauthorized("only a patient may delegate a guardian")
        guardian = ctx.get(identity.did_key(p.guardian))
        if (
            guardian is None
            or guardian["status"] != identity.ACTIVE
            or guardian["did"] == caller["did"]
        ):
            raise InvalidTransaction(Code.NOT_FOUND, "guardian must be another active member")
        ctx.put(
            model.guardian_key(caller["did"], p.guardian),
            model.Guardianship(since_height=ctx.height),
        )
        ctx.emit(
            "consent.guardian_delegated",
            patient=caller["did"],
            guardian=p.guardian,
            actor=caller["did"],
        )

    def revoke_guardian(self, p: RevokeGuardian, ctx: Context) -> None:
        """A patient takes back a guardian's authority."""
        caller = signer_member(ctx)
        key = model.guardian_key(caller["did"], p.guardian)
        if ctx.get(key) is None:
            raise InvalidTransaction(Code.NOT_FOUND, "no such guardian")
        ctx.delete(key)
        ctx.emit(
            "consent.guardian_revoked",
            patient=caller["did"],
            guardian=p.guardian,
            actor=caller["did"],
        )

    def set_role_policy(self, p: SetRolePolicy, ctx: Context) -> None:
        """Governance: the resource types a role may ever see."""
        admin = signer_member(ctx)
        if "consortium_admin" not in admin["roles"]:
            raise unauthorized("only a consortium admin may change role policy")
        require_admin_governance(ctx.get, "change role policy")
        write_role_policy(ctx, p.role, p.resource_types, admin["did"])

    def set_break_glass_policy(self, p: SetBreakGlassPolicy, ctx: Context) -> None:
        """Governance: which clinical roles may request and which may approve emergency access."""
        requester_roles = _distinct(p.requester_roles)
        approver_roles = _distinct(p.approver_roles)
        admin = signer_member(ctx)
        if "consortium_admin" not in admin["roles"]:
            raise unauthorized("only a consortium admin may change the break-glass policy")
        require_admin_governance(ctx.get, "change the break-glass policy")
        ctx.put(
            model.BREAK_GLASS_POLICY_KEY,
            model.BreakGlassPolicy(
                requester_roles=requester_roles,
                approver_roles=approver_roles,
                updated_height=ctx.height,
            ),
        )
        ctx.emit(
            "consent.break_glass_policy_set",
            requester_roles=",".join(requester_roles),
            approver_roles=",".join(approver_roles),
            actor=admin["did"],
        )

    def _require_clinical_staff(
        self, ctx: Context, member: Mapping[str, Any], roles_field: str, what: str
    ) -> None:
        """`member` is active staff of an active hospital or clinic holding a `roles_field` role.

        The org's kind is checked here, not only at add_member, so emergency access
        stays with care providers even if governance widens some kind's roles.
        """
        policy = ctx.get(model.BREAK_GLASS_POLICY_KEY) or {}
        allowed = set(policy.get(roles_field, ()))
        org = ctx.get(identity.org_key(member["org_id"])) if member["org_id"] else None
        if (
            org is None
            or org["status"] != identity.ACTIVE
            or org["org_type"] not in identity.CLINICAL_ORG_TYPES
            or member["status"] != identity.ACTIVE
        ):
            raise unauthorized(f"{what} must be active staff of a hospital or clinic")
        if not allowed & set(member["roles"]):
            raise unauthorized(f"{what} must hold one of the roles {sorted(allowed)}")

    def break_glass(self, p: BreakGlass, ctx: Context) -> None:
        """A doctor asks for emergency access; nothing opens until a second approver agrees."""
        reason = p.stated_reason
        caller = signer_member(ctx)
        self._require_clinical_staff(ctx, caller, "requester_roles", "the requester")
        patient_member(ctx, p.patient)
        request_id = ctx.tx_id.hex()[:32]
        request: model.BreakGlassRequest = {
            "request_id": request_id,
            "patient": p.patient,
            "doctor": caller["did"],
            "org_id": caller["org_id"],
            "reason": reason,
            "status": model.PENDING,
            "requested_height": ctx.height,
            "approver": None,
            "expires_ms": 0,
        }
        ctx.put(model.break_glass_key(request_id), request)
        ctx.emit(
            "consent.break_glass_requested",
            request_id=request_id,
            patient=p.patient,
            actor=caller["did"],
            org_id=caller["org_id"],
            reason=reason,
        )

    def approve_break_glass(self, p: ApproveBreakGlass, ctx: Context) -> None:
        """The second approver opens the fixed window; the patient is notified by event."""
        request = cast(
            model.BreakGlassRequest,
            ctx.require(
                model.break_glass_key(p.request_id), f"break-glass request {p.request_id!r}"
            ),
        )
        caller = signer_member(ctx)
        if caller["did"] == request["doctor"]:
            raise unauthorized("the second approver must be someone else than the requester")
        self._require_clinical_staff(ctx, caller, "approver_roles", "the approver")
        if caller["org_id"] != request["org_id"]:
            raise unauthorized("the approver must be of the requester's hospital or clinic")
        if request["status"] != model.PENDING:
            raise InvalidTransaction(Code.INVALID_STATE, f"request is {request['status']}")
        # The requester may have been suspended or re-roled since asking.
        self._require_clinical_staff(
            ctx,
            ctx.require(identity.did_key(request["doctor"]), "the requester"),
            "requester_roles",
            "the requester",
        )
        request["status"] = model.APPROVED
        request["approver"] = caller["did"]
        request["approved_height"] = ctx.height
        request["expires_ms"] = ctx.time_ms + model.BREAK_GLASS_WINDOW_MS
        ctx.put(model.break_glass_key(request["request_id"]), request)
        ctx.put(
            model.break_glass_index_key(
                request["doctor"], request["patient"], request["request_id"]
            ),
            model.BreakGlassRef(request_id=request["request_id"]),
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


def acting_for(ctx: Context, patient: str) -> dict[str, Any]:
    """The signer, if it is `patient` or an active guardian of `patient`; else
    UNAUTHORIZED. Other contracts that act on a patient's word (referral.approve)
    ask the same question the same way."""
    caller = signer_member(ctx)
    if caller["did"] == patient and "patient" in caller["roles"]:
        return caller
    if ctx.get(model.guardian_key(patient, caller["did"])) is not None:
        return caller
    raise unauthorized("only the patient or a guardian the patient delegated to may do this")


def issue_grant(
    ctx: Context,
    *,
    patient: str,
    grantee_kind: str,
    grantee: str,
    purposes: Iterable[str],
    scope_records: Iterable[str],
    scope_types: Iterable[str],
    expires_ms: int,
    granted_by: str,
) -> str:
    """Write one grant, its two index entries and its `consent.granted` event; the
    grant id is this tx's. The only way a grant comes to exist: consent.grant calls
    it, and so may another contract acting on the patient's signed word (a referral
    the patient approves), so every grant has the same shape, indexes and audit
    event. Authority and the grantee's existence are the caller's to check."""
    writer = replace(ctx, namespace=model.NAMESPACE)
    grant_id = ctx.tx_id.hex()[:32]
    if writer.get(model.grant_key(grant_id)) is not None:
        raise InternalError(f"a tx may issue one grant; {grant_id} exists")
    distinct_purposes = _distinct(purposes)
    grant: model.Grant = {
        "grant_id": grant_id,
        "patient": patient,
        "grantee_kind": grantee_kind,
        "grantee": grantee,
        "purposes": distinct_purposes,
        "scope_records": _distinct(scope_records),
        "scope_types": _distinct(scope_types),
        "expires_ms": expires_ms,
        "status": model.ACTIVE,
        "granted_by": granted_by,
        "granted_height": ctx.height,
        "granted_time_ms": ctx.time_ms,
    }
    writer.put(model.grant_key(grant_id), grant)
    ref = model.GrantRef(grant_id=grant_id)
    writer.put(model.by_patient_key(patient, grant_id), ref)
    writer.put(model.by_grantee_key(grantee_kind, grantee, patient, grant_id), ref)
    writer.emit(
        "consent.granted",
        grant_id=grant_id,
        patient=patient,
        grantee=f"{grantee_kind}:{grantee}",
        purposes=",".join(distinct_purposes),
        expires_ms=str(expires_ms),
        actor=granted_by,
    )
    return grant_id


def withdraw_grant(ctx: Context, grant: model.Grant, revoked_by: str, reason: str = "") -> None:
    """Mark an active grant revoked at this block and emit `consent.revoked`: in force
    for every later tx (decide reads the status). consent.revoke calls it, and so does
    referral.cancel for the grant its approval issued. Authority is the caller's to check."""
    writer = replace(ctx, namespace=model.NAMESPACE)
    grant["status"] = model.REVOKED
    grant["revoked_height"] = ctx.height
    grant["revoked_by"] = revoked_by
    if reason:
        grant["revoked_reason"] = reason
    writer.put(model.grant_key(grant["grant_id"]), grant)
    writer.emit(
        "consent.revoked",
        grant_id=grant["grant_id"],
        patient=grant["patient"],
        actor=revoked_by,
    )


def write_role_policy(ctx: Context, role: str, resource_types: Iterable[str], actor: str) -> None:
    """The resource types a staff role may ever see, from the next tx on, and its
    `consent.role_policy_set` event: set_role_policy and an accepted governance
    proposal both come here. Authority is the caller's to check."""
    writer = replace(ctx, namespace=model.NAMESPACE)
    types = _distinct(resource_types)
    writer.put(
        model.role_policy_key(role),
        model.RolePolicy(resource_types=types, updated_height=ctx.height),
    )
    writer.emit("consent.role_policy_set", role=role, resource_types=",".join(types), actor=actor)


def init_genesis(ctx: Context) -> None:
    """The default role policy and break-glass policy."""
    for role, types in sorted(model.DEFAULT_ROLE_POLICY.items()):
        ctx.put(
            model.role_policy_key(role),
            model.RolePolicy(resource_types=sorted(types), updated_height=0),
        )
    defaults = model.DEFAULT_BREAK_GLASS_POLICY
    ctx.put(
        model.BREAK_GLASS_POLICY_KEY,
        model.BreakGlassPolicy(
            requester_roles=sorted(defaults["requester_roles"]),
            approver_roles=sorted(defaults["approver_roles"]),
            updated_height=0,
        ),
    )
