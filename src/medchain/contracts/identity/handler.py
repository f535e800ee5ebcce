"""Identity contract handler: who may do what to whomodel.

Authority, in one table:
  register_org       consortium admin (who also fixes the org's kind, for good)
  set_org_roles      consortium admin (which roles each kind of org may hold)
  add_member         org admin of that org, or consortium admin, within its kind's roles
  set_roles          org admin of the member's org, or consortium admin, likewise
  suspend_member     org admin of the member's org, or consortium admin
  reinstate_member   org admin of the member's org, or consortium admin
  revoke_member      the member itself, its org admin, or consortium admin
  rotate_key         the member itself, with a proof signed by the new key
  register_patient   anyone holding a key not yet registered (self-registration)
  set_validator      consortium admin (CometBFT validator set; power 0 removes)
  set_sm9_master     org admin of its own org (its KGC's SM9 master public keys; in
                     vote mode too: an org's own keys are its admin's business)

sm9 keys (identity-based; public key = org signing master public key || DID) are
staff keys only: add_member gives one the DID it names, which must be in its org's
namespace (did:medchain:<org_id>:<name>); rotate_key to one must name the member's
own DID; both must embed the org's published master key, and authenticate checks
that again, so replacing the master key stops every key issued under the old one.

On a chain whose genesis says `"governance": "vote"`, the consortium-wide actions
(register_org, set_org_roles, set_validator, and a consortium admin acting on
another organisation's members) are refused to the consortium admin: the
governance contract makes those changes when a proposal is accepted, through the
module-level functions below (admit_org, write_org_roles, change_validator,
set_org_status), the same writes and events as the actions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from medchain import crypto
from medchain.contracts.base import ActionHandler, signer_member, unauthorized
from medchain.contracts.governance.mode import require_admin_governance
from medchain.contracts.identity import model
from medchain.contracts.identity.model import Member, Org, check_org_roles
from medchain.contracts.identity.payloads import (
    AddMember,
    ChangeMemberStatus,
    RegisterOrg,
    RegisterPatient,
    ReinstateMember,
    RevokeMember,
    RotateKey,
    SetEndpoint,
    SetOrgRoles,
    SetRoles,
    SetSm9Master,
    SetValidator,
    SuspendMember,
)
from medchain.contracts.payload import Payload
from medchain.core.context import Context
from medchain.core.tx import key_id
from medchain.exceptions import Code, InvalidTransaction

__all__ = [
    "IdentityHandler",
    "admit_org",
    "authenticate",
    "change_validator",
    "check_org_roles",
    "init_genesis",
    "set_org_status",
    "write_org_roles",
]


class IdentityHandler(ActionHandler):
    """The `identity` system contract, version 1."""

    namespace = model.NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "register_org": RegisterOrg,
        "set_org_roles": SetOrgRoles,
        "add_member": AddMember,
        "set_roles": SetRoles,
        "suspend_member": SuspendMember,
        "reinstate_member": ReinstateMember,
        "revoke_member": RevokeMember,
        "rotate_key": RotateKey,
        "register_patient": RegisterPatient,
        "set_validator": SetValidator,
        "set_endpoint": SetEndpoint,
        "set_sm9_master": SetSm9Master,
    }
    open_actions = frozenset({"register_patient"})

    # -- helpers -----------------------------------------------------------

    def _member(self, ctx: Context, did: str) -> Member:
        return cast(Member, dict(ctx.require(model.did_key(did), f"member with DID {did}")))

    @staticmethod
    def _is_consortium_admin(caller: Mapping[str, Any]) -> bool:
        return "consortium_admin" in caller["roles"]

    def _require_org_authority(
        self, ctx: Context, caller: Mapping[str, Any], org_id: str | None
    ) -> None:
        if org_id is not None and caller["org_id"] == org_id and "org_admin" in caller["roles"]:
            return
        if self._is_consortium_admin(caller):
            require_admin_governance(ctx.get, "act on an organisation's members")
            return
        raise unauthorized(f"only an org admin of {org_id!r} or a consortium admin may do this")

    def _save(self, ctx: Context, member: Member) -> None:
        member["updated_height"] = ctx.height
        ctx.put(model.did_key(member["did"]), member)

    def _add_identity(self, ctx: Context, member: Member) -> None:
        _add_identity(ctx, member)

    def _roles(self, ctx: Context, requested: Sequence[str], org: Org) -> list[str]:
        """The requested roles, if the organisation's kind may hold every one of themodel.

        The kind's roles are governed state, read at this tx, so an org admin can
        never make its staff something its kind of organisation is not.
        """
        roles = sorted(set(requested))
        policy = ctx.get(model.org_roles_key(org["org_type"]))
        allowed = set(policy["roles"]) if policy is not None else set()
        refused = sorted(set(roles) - allowed)
        if refused:
            raise unauthorized(
                f"a {org['org_type']} organisation may not hold the roles {refused}; "
                f"its kind allows {sorted(allowed)}"
            )
        return roles

    def _org(self, ctx: Context, org_id: str) -> Org:
        org = ctx.require(model.org_key(org_id), f"organisation {org_id!r}")
        if org["status"] != model.ACTIVE:
            raise InvalidTransaction(Code.INVALID_STATE, f"organisation {org_id!r} is not active")
        return cast(Org, dict(org))

    # -- actions -----------------------------------------------------------

    def register_org(self, p: RegisterOrg, ctx: Context) -> None:
        """Consortium admin admits an organisation and its first admin."""
        caller = signer_member(ctx)
        if not self._is_consortium_admin(caller):
            raise unauthorized("only a consortium admin may register organisations")
        require_admin_governance(ctx.get, "register an organisation")
        admit_org(ctx, p)

    def set_org_roles(self, p: SetOrgRoles, ctx: Context) -> None:
        """Governance: which roles a kind of organisation may hold, from the next tx on.

        Members already holding a role the kind no longer allows keep it until
        their roles are next set; break-glass checks the org's kind at use anyway.
        """
        caller = signer_member(ctx)
        if not self._is_consortium_admin(caller):
            raise unauthorized("only a consortium admin may change which roles an org may hold")
        require_admin_governance(ctx.get, "change which roles a kind of organisation may hold")
        write_org_roles(ctx, p.org_type, p.roles, caller["did"])

    def set_endpoint(self, p: SetEndpoint, ctx: Context) -> None:
        """An org admin publishes where its edge (record vault, exchange service) answers."""
        org = self._org(ctx, p.org_id)
        self._require_org_authority(ctx, signer_member(ctx), org["org_id"])
        org["edge_url"] = p.edge_url
        org["updated_height"] = ctx.height
        ctx.put(model.org_key(org["org_id"]), org)
        ctx.emit("identity.endpoint_set", org_id=org["org_id"], edge_url=p.edge_url)

    def add_member(self, p: AddMember, ctx: Context) -> None:
        """An org admin adds a doctor, nurse, pharmacist, device, ..."""
        caller = signer_member(ctx)
        self._require_org_authority(ctx, caller, p.org_id)
        org = self._org(ctx, p.org_id)
        roles = self._roles(ctx, p.roles, org)
        did = model.did_for_key(p.suite, p.public_key)
        if p.suite == model.SM9_SUITE:
            if not model.is_sm9_did_of(did, org["org_id"]):
                raise InvalidTransaction(
                    Code.INVALID_PAYLOAD,
                    f"an sm9 member of {org['org_id']!r} is named "
                    f"{model.sm9_did(org['org_id'], '<name>')} (name: a-z, 0-9, . _ -); "
                    f"the key names {did!r}",
                )
            _require_sm9_key(org, did, p.public_key)
        self._add_identity(
            ctx, model.new_member(did, p.org_id, roles, p.suite, p.public_key, ctx.height, p.name)
        )
        ctx.emit("identity.member_added", did=did, org_id=p.org_id, roles=",".join(roles))

    def register_patient(self, p: RegisterPatient, ctx: Context) -> None:
        """A patient creates their own DID from their own key; no PII on chain."""
        if ctx.signer.did is not None:
            raise InvalidTransaction(Code.ALREADY_EXISTS, "this key is already registered")
        suite, public = ctx.signer.suite, ctx.signer.public_key
        if suite == model.SM9_SUITE:
            # No KGC answers for a patient's identity, so nothing would tie the DID in
            # the key to the person: a patient registers with an sm or hybrid key.
            raise unauthorized(
                "a patient cannot register an sm9 key (only an organisation's KGC issues "
                "them, to its staff); register with an sm or sm2+mldsa key"
            )
        did = model.did_for_key(suite, public)
        self._add_identity(ctx, model.new_member(did, None, ["patient"], suite, public, ctx.height))
        ctx.emit("identity.patient_registered", did=did)

    def set_roles(self, p: SetRoles, ctx: Context) -> None:
        """Replace a staff member's roles."""
        member = self._member(ctx, p.did)
        caller = signer_member(ctx)
        org_id = member["org_id"]
        if org_id is None or "consortium_admin" in member["roles"]:
            raise unauthorized("roles of patients and consortium admins cannot be changed")
        self._require_org_authority(ctx, caller, org_id)
        if member["status"] == model.REVOKED:
            raise InvalidTransaction(Code.INVALID_STATE, "member is revoked")
        member["roles"] = self._roles(ctx, p.roles, self._org(ctx, org_id))
        self._save(ctx, member)
        ctx.emit("identity.roles_set", did=member["did"], roles=",".join(member["roles"]))

    def _change_status(
        self,
        p: ChangeMemberStatus,
        ctx: Context,
        new: str,
        allowed_from: set[str],
        self_allowed: bool,
    ) -> None:
        member = self._member(ctx, p.did)
        caller = signer_member(ctx)
        is_self = caller["did"] == member["did"]
        if not (self_allowed and is_self):
            if "consortium_admin" in member["roles"] and not self._is_consortium_admin(caller):
                raise unauthorized("only a consortium admin may act on a consortium admin")
            if member["org_id"] is None:
                if not self._is_consortium_admin(caller):
                    raise unauthorized("only the patient or a consortium admin may do this")
            else:
                self._require_org_authority(ctx, caller, member["org_id"])
        if member["status"] not in allowed_from:
            raise InvalidTransaction(
                Code.INVALID_STATE, f"member is {member['status']}; cannot become {new}"
            )
        member["status"] = new
        self._save(ctx, member)
        ctx.emit(f"identity.member_{new}", did=member["did"], by=caller["did"], reason=p.reason)

    def suspend_member(self, p: SuspendMember, ctx: Context) -> None:
        """Temporarily stop a member's keys (e.g. during an investigation)."""
        self._change_status(p, ctx, model.SUSPENDED, {model.ACTIVE}, self_allowed=False)

    def reinstate_member(self, p: ReinstateMember, ctx: Context) -> None:
        """Lift a suspension."""
        self._change_status(p, ctx, model.ACTIVE, {model.SUSPENDED}, self_allowed=False)

    def revoke_member(self, p: RevokeMember, ctx: Context) -> None:
        """Permanently revoke a member; its keys are rejected from the next tx on."""
        self._change_status(
            p, ctx, model.REVOKED, {model.ACTIVE, model.SUSPENDED}, self_allowed=True
        )

    def rotate_key(self, p: RotateKey, ctx: Context) -> None:
        """Replace the signing key; the DID stays, the old key stops working."""
        member = cast(Member, signer_member(ctx))
        message = model.rotation_message(ctx.chain_id, member["did"], p.new_public_key, ctx.nonce)
        if p.new_suite == model.SM9_SUITE:
            org = self._org(ctx, member["org_id"]) if member["org_id"] else None
            _require_sm9_key(org, member["did"], p.new_public_key)
        if not crypto.verify(p.new_suite, p.new_public_key, message, p.proof):
            raise InvalidTransaction(Code.BAD_SIGNATURE, "proof is not signed by the new key")
        new_kid = key_id(p.new_suite, p.new_public_key)
        if ctx.get(model.pubkey_key(new_kid)) is not None:
            raise InvalidTransaction(Code.ALREADY_EXISTS, "the new key is already registered")
        old_kid = ctx.signer.key_id
        for k in member["keys"]:
            if k["key_id"] == old_kid:
                k["status"] = model.ROTATED
        member["keys"].append(
            {
                "key_id": new_kid,
                "suite": p.new_suite,
                "public_key": p.new_public_key,
                "status": model.ACTIVE,
                "added_height": ctx.height,
            }
        )
        self._save(ctx, member)
        ctx.put(model.pubkey_key(old_kid), model.KeyOwner(did=member["did"], status=model.ROTATED))
        ctx.put(model.pubkey_key(new_kid), model.KeyOwner(did=member["did"], status=model.ACTIVE))
        ctx.emit("identity.key_rotated", did=member["did"], new_key_id=new_kid.hex())

    def set_sm9_master(self, p: SetSm9Master, ctx: Context) -> None:
        """An org admin publishes its KGC's SM9 master public keys: from then on anyone
        verifies its sm9 members' signatures and wraps data keys to their DIDs with
        these alone. Publishing new ones (a compromised KGC) stops every sm9 key
        issued under the old signing key; its members get new keys and DIDs."""
        caller = signer_member(ctx)
        if caller["org_id"] is None or "org_admin" not in caller["roles"]:
            raise unauthorized("only an org admin publishes its organisation's SM9 master keys")
        org = self._org(ctx, caller["org_id"])
        old = org.get("sm9_sign_master")
        if ctx.signer.suite == model.SM9_SUITE and old != p.sign_master_public:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                "this admin signs with an sm9 key under the current master key, which the new "
                "one would stop; publish it with an sm or sm2+mldsa admin key",
            )
        org["sm9_sign_master"] = p.sign_master_public
        org["sm9_enc_master"] = p.enc_master_public
        org["updated_height"] = ctx.height
        ctx.put(model.org_key(org["org_id"]), org)
        ctx.emit(
            "identity.sm9_master_set",
            org_id=org["org_id"],
            by=caller["did"],
            replaced="yes" if old is not None else "no",
        )

    def set_validator(self, p: SetValidator, ctx: Context) -> None:
        """Add, re-weight or (power 0) remove a consensus validator.

        The engine turns the emitted event into CometBFT validator updates,
        which take effect two heights later; nobody edits genesis files by hand.
        """
        if not self._is_consortium_admin(signer_member(ctx)):
            raise unauthorized("only a consortium admin may change the validator set")
        require_admin_governance(ctx.get, "change the validator set")
        change_validator(ctx, p.pub_key, p.power, p.name)


def _require_sm9_key(org: Org | None, did: str, public_key: bytes) -> None:
    problem = model.sm9_key_problem(org, did, public_key)
    if problem is not None:
        raise InvalidTransaction(Code.UNAUTHORIZED, problem)


def _add_identity(ctx: Context, member: Member) -> None:
    kid = member["keys"][0]["key_id"]
    if (
        ctx.get(model.pubkey_key(kid)) is not None
        or ctx.get(model.did_key(member["did"])) is not None
    ):
        raise InvalidTransaction(Code.ALREADY_EXISTS, "this public key is already registered")
    ctx.put(model.did_key(member["did"]), member)
    ctx.put(model.pubkey_key(kid), model.KeyOwner(did=member["did"], status=model.ACTIVE))


def admit_org(ctx: Context, p: RegisterOrg) -> None:
    """Write an organisation and its first admin, and emit `identity.org_registered`.

    register_org calls it after its authority checks, and so does an accepted
    governance proposal (with its own ctx): one way in for every organisation.
    """
    writer = replace(ctx, namespace=model.NAMESPACE)
    if writer.get(model.org_key(p.org_id)) is not None:
        raise InvalidTransaction(Code.ALREADY_EXISTS, f"organisation {p.org_id!r} exists")
    if p.admin_suite == model.SM9_SUITE:
        raise InvalidTransaction(
            Code.INVALID_PAYLOAD,
            "a new organisation has no SM9 master key yet: its first admin uses an sm or "
            "sm2+mldsa key, publishes the master key, then may add or rotate to sm9 keys",
        )
    writer.put(model.org_key(p.org_id), model.new_org(p.org_id, p.name, p.org_type, ctx.height))
    did = model.did_for_key(p.admin_suite, p.admin_public_key)
    _add_identity(
        writer,
        model.new_member(
            did,
            p.org_id,
            ["org_admin"],
            p.admin_suite,
            p.admin_public_key,
            ctx.height,
            p.admin_name,
        ),
    )
    writer.emit("identity.org_registered", org_id=p.org_id, org_type=p.org_type, admin_did=did)


def write_org_roles(ctx: Context, org_type: str, roles: Sequence[str], actor: str) -> None:
    """Which roles a kind of organisation may hold, from the next tx on; set_org_roles
    and an accepted governance proposal both come here. Authority is the caller's."""
    writer = replace(ctx, namespace=model.NAMESPACE)
    distinct = sorted(set(roles))
    writer.put(
        model.org_roles_key(org_type), model.OrgRoles(roles=distinct, updated_height=ctx.height)
    )
    writer.emit("identity.org_roles_set", org_type=org_type, roles=",".join(distinct), actor=actor)


def change_validator(ctx: Context, pub_key: bytes, power: int, name: str) -> None:
    """Add, re-weight or (power 0) remove a validator and emit the event the ABCI layer
    turns into a CometBFT validator update. Authority is the caller's to check."""
    writer = replace(ctx, namespace=model.NAMESPACE)
    key = model.validator_key(pub_key)
    powers = {k: v["power"] for k, v in writer.scan(model.VALIDATOR_PREFIX, limit=10_000)}
    powers[key] = power
    powers = {k: v for k, v in powers.items() if v > 0}
    total = sum(powers.values())
    if len(powers) >= 4 and any(3 * v >= total for v in powers.values()):
        raise InvalidTransaction(
            Code.INVALID_STATE,
            "no validator may hold a third or more of the voting power (BFT safety)",
        )
    if power == 0:
        if writer.get(key) is None:
            raise InvalidTransaction(Code.NOT_FOUND, "no validator with that key")
        if len(list(writer.scan(model.VALIDATOR_PREFIX, limit=2))) < 2:
            raise InvalidTransaction(Code.INVALID_STATE, "cannot remove the last validator")
        writer.delete(key)
    else:
        writer.put(
            key,
            model.Validator(pub_key=pub_key, power=power, name=name, updated_height=ctx.height),
        )
    writer.emit(model.VALIDATOR_EVENT, pub_key=pub_key.hex(), power=str(power))


def set_org_status(ctx: Context, org_id: str, status: str, reason: str, actor: str) -> None:
    """Suspend (for now), revoke (for good) or reinstate an organisation. Its members'
    keys stop signing while it is not active (authenticate reads the org), and
    governance stops counting it in new electorates. Only governance calls this."""
    writer = replace(ctx, namespace=model.NAMESPACE)
    org = cast(Org, dict(writer.require(model.org_key(org_id), f"organisation {org_id!r}")))
    if org["status"] == model.REVOKED:
        raise InvalidTransaction(Code.INVALID_STATE, f"organisation {org_id!r} is revoked for good")
    if org["status"] == status:
        raise InvalidTransaction(Code.INVALID_STATE, f"organisation {org_id!r} is already {status}")
    org["status"] = status
    org["updated_height"] = ctx.height
    writer.put(model.org_key(org_id), org)
    writer.emit("identity.org_status_set", org_id=org_id, status=status, reason=reason, actor=actor)


def init_genesis(
    ctx: Context,
    admins: list[tuple[str, str, bytes]],
    orgs: list[tuple[str, str, str, tuple[str, str, bytes]]],
    validators: Sequence[tuple[str, bytes, int]] = (),
    org_roles: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Write the founding consortium admins, organisations, validators and role-per-kind policy.

    `org_roles` overrides the default roles of the kinds it names.
    """
    policy = {**model.DEFAULT_ORG_ROLES, **(org_roles or {})}
    suites = [suite for _, suite, _ in admins] + [suite for *_, (_, suite, _) in orgs]
    if model.SM9_SUITE in suites:
        raise ValueError("genesis identities cannot hold sm9 keys: no org has an SM9 master yet")
    for org_type, roles in sorted(policy.items()):
        check_org_roles(org_type, roles)
        ctx.put(
            model.org_roles_key(org_type),
            model.OrgRoles(roles=sorted(set(roles)), updated_height=0),
        )
    for name, pub_key, power in validators:
        ctx.put(
            model.validator_key(pub_key),
            model.Validator(pub_key=pub_key, power=power, name=name, updated_height=0),
        )
    for name, suite, public in admins:
        did = model.did_for_key(suite, public)
        _put_member(ctx, model.new_member(did, None, ["consortium_admin"], suite, public, 0, name))
    for org_id, org_name, org_type, (admin_name, suite, public) in orgs:
        if org_type not in model.ORG_TYPES:
            raise ValueError(f"genesis org {org_id!r}: unknown org_type {org_type!r}")
        ctx.put(model.org_key(org_id), model.new_org(org_id, org_name, org_type, 0))
        did = model.did_for_key(suite, public)
        _put_member(ctx, model.new_member(did, org_id, ["org_admin"], suite, public, 0, admin_name))


def _put_member(ctx: Context, member: Member) -> None:
    ctx.put(model.did_key(member["did"]), member)
    owner = model.KeyOwner(did=member["did"], status=model.ACTIVE)
    ctx.put(model.pubkey_key(member["keys"][0]["key_id"]), owner)


def authenticate(ctx_get: Callable[[str], Any], kid: bytes, open_action: bool) -> str | None:
    """The signer's DID if its key and membership are active.

    An unknown key may only send an open action (self-registration).
    """
    record = ctx_get(model.pubkey_key(kid))
    if record is None:
        if open_action:
            return None
        raise InvalidTransaction(
            Code.UNKNOWN_SIGNER,
            "signing key is not registered: patients register with identity.register_patient; "
            "staff are added by their organisation's admin",
        )
    if record["status"] != model.ACTIVE:
        raise InvalidTransaction(
            Code.SIGNER_INACTIVE, "signing key was rotated out; use the new key"
        )
    member = ctx_get(model.did_key(record["did"]))
    if member is None or member["status"] != model.ACTIVE:
        status = member["status"] if member else "missing"
        raise InvalidTransaction(Code.SIGNER_INACTIVE, f"signer {record['did']} is {status}")
    org = ctx_get(model.org_key(member["org_id"])) if member["org_id"] else None
    if org is not None and org["status"] != model.ACTIVE:
        raise InvalidTransaction(
            Code.SIGNER_INACTIVE, f"the signer's organisation {org['org_id']} is {org['status']}"
        )
    for k in member["keys"]:
        if k["key_id"] == kid and k["suite"] == model.SM9_SUITE:
            problem = model.sm9_key_problem(org, member["did"], k["public_key"])
            if problem is not None:
                raise InvalidTransaction(Code.SIGNER_INACTIVE, problem)
    return str(record["did"])
