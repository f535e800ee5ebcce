"""Identity contract handler: who may do what to whom.

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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from medchain import crypto
from medchain.contracts.base import ActionHandler, signer_member
from medchain.contracts.identity import model as m
from medchain.contracts.payload import check_fields, invalid, one_of, text
from medchain.core.context import Context
from medchain.core.tx import SignedTx, key_id
from medchain.exceptions import Code, InvalidTransaction

_ORG_ID = r"^[a-z0-9][a-z0-9-]{1,63}$"
_NAME = r"^[^\x00-\x1f]{1,120}$"
_URL = r"^https?://[A-Za-z0-9.:\[\]-]{1,100}(/[A-Za-z0-9._~/-]{0,100})?$"


def _unauthorized(message: str) -> InvalidTransaction:
    return InvalidTransaction(Code.UNAUTHORIZED, message)


def _public_key(payload: dict[str, Any], key_field: str, suite_field: str) -> tuple[str, bytes]:
    suite = payload.get(suite_field, crypto.DEFAULT_SUITE)
    try:
        size = crypto.get_suite(suite).public_key_size
    except crypto.UnknownSuite as e:
        raise invalid(str(e)) from None
    public = payload[key_field]
    if len(public) != size:
        raise invalid(f"{key_field} must be {size} bytes for suite {suite!r}")
    return suite, public


class IdentityHandler(ActionHandler):
    """The `identity` system contract, version 1."""

    namespace = m.NAMESPACE
    actions = frozenset(
        {
            "register_org",
            "set_org_roles",
            "add_member",
            "set_roles",
            "suspend_member",
            "reinstate_member",
            "revoke_member",
            "rotate_key",
            "register_patient",
            "set_validator",
            "set_endpoint",
        }
    )
    open_actions = frozenset({"register_patient"})

    # -- helpers -----------------------------------------------------------

    def _member(self, ctx: Context, did: str) -> dict[str, Any]:
        return dict(ctx.require(m.did_key(did), f"member with DID {did}"))

    @staticmethod
    def _is_consortium_admin(caller: dict[str, Any]) -> bool:
        return "consortium_admin" in caller["roles"]

    def _require_org_authority(self, caller: dict[str, Any], org_id: str | None) -> None:
        if self._is_consortium_admin(caller):
            return
        if org_id is not None and caller["org_id"] == org_id and "org_admin" in caller["roles"]:
            return
        raise _unauthorized(f"only an org admin of {org_id!r} or a consortium admin may do this")

    def _save(self, ctx: Context, member: dict[str, Any]) -> None:
        member["updated_height"] = ctx.height
        ctx.put(m.did_key(member["did"]), member)

    def _add_identity(self, ctx: Context, member: dict[str, Any]) -> None:
        kid = member["keys"][0]["key_id"]
        if ctx.get(m.pubkey_key(kid)) is not None or ctx.get(m.did_key(member["did"])) is not None:
            raise InvalidTransaction(Code.ALREADY_EXISTS, "this public key is already registered")
        ctx.put(m.did_key(member["did"]), member)
        ctx.put(m.pubkey_key(kid), {"did": member["did"], "status": m.ACTIVE})

    def _roles(self, ctx: Context, payload: dict[str, Any], org: dict[str, Any]) -> list[str]:
        """The requested roles, if the organisation's kind may hold every one of them.

        The kind's roles are governed state, read at this tx, so an org admin can
        never make its staff something its kind of organisation is not.
        """
        roles = _role_names(payload["roles"])
        policy = ctx.get(m.org_roles_key(org["org_type"]))
        allowed = set(policy["roles"]) if policy is not None else set()
        refused = sorted(set(roles) - allowed)
        if refused:
            raise _unauthorized(
                f"a {org['org_type']} organisation may not hold the roles {refused}; "
                f"its kind allows {sorted(allowed)}"
            )
        return roles

    def _org(self, ctx: Context, org_id: str) -> dict[str, Any]:
        org = ctx.require(m.org_key(org_id), f"organisation {org_id!r}")
        if org["status"] != m.ACTIVE:
            raise InvalidTransaction(Code.INVALID_STATE, f"organisation {org_id!r} is not active")
        return dict(org)

    # -- actions -----------------------------------------------------------

    def register_org(self, tx: SignedTx, ctx: Context) -> None:
        """Consortium admin admits an organisation and its first admin."""
        p = tx.envelope.payload
        check_fields(
            p,
            {"org_id": str, "name": str, "org_type": str, "admin_public_key": bytes},
            {"admin_suite": str, "admin_name": str},
        )
        org_id = text(p, "org_id", _ORG_ID)
        name = text(p, "name", _NAME)
        org_type = one_of(p, "org_type", m.ORG_TYPES)
        suite, public = _public_key(p, "admin_public_key", "admin_suite")
        caller = signer_member(ctx)
        if not self._is_consortium_admin(caller):
            raise _unauthorized("only a consortium admin may register organisations")
        if ctx.get(m.org_key(org_id)) is not None:
            raise InvalidTransaction(Code.ALREADY_EXISTS, f"organisation {org_id!r} exists")
        ctx.put(
            m.org_key(org_id),
            {
                "org_id": org_id,
                "name": name,
                "org_type": org_type,
                "status": m.ACTIVE,
                "created_height": ctx.height,
            },
        )
        did = m.did_for_key(suite, public)
        self._add_identity(
            ctx,
            m.new_member(
                did, org_id, ["org_admin"], suite, public, ctx.height, str(p.get("admin_name", ""))
            ),
        )
        ctx.emit("identity.org_registered", org_id=org_id, org_type=org_type, admin_did=did)

    def set_org_roles(self, tx: SignedTx, ctx: Context) -> None:
        """Governance: which roles a kind of organisation may hold, from the next tx on.

        Members already holding a role the kind no longer allows keep it until
        their roles are next set; break-glass checks the org's kind at use anyway.
        """
        p = tx.envelope.payload
        check_fields(p, {"org_type": str, "roles": list})
        org_type = one_of(p, "org_type", m.ORG_TYPES)
        roles = _role_names(p["roles"])
        try:
            check_org_roles(org_type, roles)
        except ValueError as e:
            raise invalid(str(e)) from None
        caller = signer_member(ctx)
        if not self._is_consortium_admin(caller):
            raise _unauthorized("only a consortium admin may change which roles an org may hold")
        ctx.put(m.org_roles_key(org_type), {"roles": roles, "updated_height": ctx.height})
        ctx.emit(
            "identity.org_roles_set", org_type=org_type, roles=",".join(roles), actor=caller["did"]
        )

    def set_endpoint(self, tx: SignedTx, ctx: Context) -> None:
        """An org admin publishes where its edge (record vault, exchange service) answers."""
        p = tx.envelope.payload
        check_fields(p, {"org_id": str, "edge_url": str})
        url = text(p, "edge_url", _URL)
        org = self._org(ctx, p["org_id"])
        self._require_org_authority(signer_member(ctx), org["org_id"])
        org.update(edge_url=url, updated_height=ctx.height)
        ctx.put(m.org_key(org["org_id"]), org)
        ctx.emit("identity.endpoint_set", org_id=org["org_id"], edge_url=url)

    def add_member(self, tx: SignedTx, ctx: Context) -> None:
        """An org admin adds a doctor, nurse, pharmacist, device, ..."""
        p = tx.envelope.payload
        check_fields(
            p, {"org_id": str, "public_key": bytes, "roles": list}, {"suite": str, "name": str}
        )
        org_id = text(p, "org_id", _ORG_ID)
        suite, public = _public_key(p, "public_key", "suite")
        name = text(p, "name", _NAME) if "name" in p else ""
        caller = signer_member(ctx)
        self._require_org_authority(caller, org_id)
        org = self._org(ctx, org_id)
        roles = self._roles(ctx, p, org)
        did = m.did_for_key(suite, public)
        self._add_identity(ctx, m.new_member(did, org_id, roles, suite, public, ctx.height, name))
        ctx.emit("identity.member_added", did=did, org_id=org_id, roles=",".join(roles))

    def register_patient(self, tx: SignedTx, ctx: Context) -> None:
        """A patient creates their own DID from their own key; no PII on chain."""
        check_fields(tx.envelope.payload, {})
        if ctx.signer.did is not None:
            raise InvalidTransaction(Code.ALREADY_EXISTS, "this key is already registered")
        e = tx.envelope
        did = m.did_for_key(e.suite, e.signer)
        self._add_identity(ctx, m.new_member(did, None, ["patient"], e.suite, e.signer, ctx.height))
        ctx.emit("identity.patient_registered", did=did)

    def set_roles(self, tx: SignedTx, ctx: Context) -> None:
        """Replace a staff member's roles."""
        p = tx.envelope.payload
        check_fields(p, {"did": str, "roles": list})
        member = self._member(ctx, p["did"])
        caller = signer_member(ctx)
        if member["org_id"] is None or "consortium_admin" in member["roles"]:
            raise _unauthorized("roles of patients and consortium admins cannot be changed")
        self._require_org_authority(caller, member["org_id"])
        if member["status"] == m.REVOKED:
            raise InvalidTransaction(Code.INVALID_STATE, "member is revoked")
        member["roles"] = self._roles(ctx, p, self._org(ctx, member["org_id"]))
        self._save(ctx, member)
        ctx.emit("identity.roles_set", did=member["did"], roles=",".join(member["roles"]))

    def _change_status(
        self, tx: SignedTx, ctx: Context, new: str, allowed_from: set[str], self_allowed: bool
    ) -> None:
        p = tx.envelope.payload
        check_fields(p, {"did": str}, {"reason": str})
        reason = p.get("reason", "")
        if len(reason) > 500:
            raise invalid("reason is longer than 500 characters")
        member = self._member(ctx, p["did"])
        caller = signer_member(ctx)
        is_self = caller["did"] == member["did"]
        if not (self_allowed and is_self):
            if "consortium_admin" in member["roles"] and not self._is_consortium_admin(caller):
                raise _unauthorized("only a consortium admin may act on a consortium admin")
            if member["org_id"] is None:
                if not self._is_consortium_admin(caller):
                    raise _unauthorized("only the patient or a consortium admin may do this")
            else:
                self._require_org_authority(caller, member["org_id"])
        if member["status"] not in allowed_from:
            raise InvalidTransaction(
                Code.INVALID_STATE, f"member is {member['status']}; cannot become {new}"
            )
        member["status"] = new
        self._save(ctx, member)
        ctx.emit(f"identity.member_{new}", did=member["did"], by=caller["did"], reason=reason)

    def suspend_member(self, tx: SignedTx, ctx: Context) -> None:
        """Temporarily stop a member's keys (e.g. during an investigation)."""
        self._change_status(tx, ctx, m.SUSPENDED, {m.ACTIVE}, self_allowed=False)

    def reinstate_member(self, tx: SignedTx, ctx: Context) -> None:
        """Lift a suspension."""
        self._change_status(tx, ctx, m.ACTIVE, {m.SUSPENDED}, self_allowed=False)

    def revoke_member(self, tx: SignedTx, ctx: Context) -> None:
        """Permanently revoke a member; its keys are rejected from the next tx on."""
        self._change_status(tx, ctx, m.REVOKED, {m.ACTIVE, m.SUSPENDED}, self_allowed=True)

    def rotate_key(self, tx: SignedTx, ctx: Context) -> None:
        """Replace the signing key; the DID stays, the old key stops working."""
        p = tx.envelope.payload
        check_fields(p, {"new_public_key": bytes, "proof": bytes}, {"new_suite": str})
        suite, public = _public_key(p, "new_public_key", "new_suite")
        member = signer_member(ctx)
        message = m.rotation_message(ctx.chain_id, member["did"], public, tx.envelope.nonce)
        if not crypto.verify(suite, public, message, p["proof"]):
            raise InvalidTransaction(Code.BAD_SIGNATURE, "proof is not signed by the new key")
        new_kid = key_id(suite, public)
        if ctx.get(m.pubkey_key(new_kid)) is not None:
            raise InvalidTransaction(Code.ALREADY_EXISTS, "the new key is already registered")
        old_kid = ctx.signer.key_id
        for k in member["keys"]:
            if k["key_id"] == old_kid:
                k["status"] = m.ROTATED
        member["keys"].append(
            {
                "key_id": new_kid,
                "suite": suite,
                "public_key": public,
                "status": m.ACTIVE,
                "added_height": ctx.height,
            }
        )
        self._save(ctx, member)
        ctx.put(m.pubkey_key(old_kid), {"did": member["did"], "status": m.ROTATED})
        ctx.put(m.pubkey_key(new_kid), {"did": member["did"], "status": m.ACTIVE})
        ctx.emit("identity.key_rotated", did=member["did"], new_key_id=new_kid.hex())

    def set_validator(self, tx: SignedTx, ctx: Context) -> None:
        """Add, re-weight or (power 0) remove a consensus validator.

        The engine turns the emitted event into CometBFT validator updates,
        which take effect two heights later; nobody edits genesis files by hand.
        """
        p = tx.envelope.payload
        check_fields(p, {"pub_key": bytes, "power": int}, {"name": str})
        if len(p["pub_key"]) != m.VALIDATOR_KEY_BYTES:
            raise invalid("pub_key must be a 32-byte Ed25519 CometBFT validator key")
        if not 0 <= p["power"] <= m.MAX_VALIDATOR_POWER:
            raise invalid(f"power must be 0..{m.MAX_VALIDATOR_POWER}")
        name = text(p, "name", _NAME) if "name" in p else ""
        if not self._is_consortium_admin(signer_member(ctx)):
            raise _unauthorized("only a consortium admin may change the validator set")
        key = m.validator_key(p["pub_key"])
        powers = {k: v["power"] for k, v in ctx.scan(f"{m.NAMESPACE}/validator/", limit=10_000)}
        powers[key] = p["power"]
        powers = {k: v for k, v in powers.items() if v > 0}
        total = sum(powers.values())
        if len(powers) >= 4 and any(3 * v >= total for v in powers.values()):
            raise InvalidTransaction(
                Code.INVALID_STATE,
                "no validator may hold a third or more of the voting power (BFT safety)",
            )
        if p["power"] == 0:
            if ctx.get(key) is None:
                raise InvalidTransaction(Code.NOT_FOUND, "no validator with that key")
            if len(list(ctx.scan(f"{m.NAMESPACE}/validator/", limit=2))) < 2:
                raise InvalidTransaction(Code.INVALID_STATE, "cannot remove the last validator")
            ctx.delete(key)
        else:
            ctx.put(
                key,
                {
                    "pub_key": p["pub_key"],
                    "power": p["power"],
                    "name": name,
                    "updated_height": ctx.height,
                },
            )
        ctx.emit(m.VALIDATOR_EVENT, pub_key=p["pub_key"].hex(), power=str(p["power"]))


def _role_names(roles: Any) -> list[str]:
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise invalid("roles must be a non-empty list of role names")
    bad = sorted(set(roles) - m.STAFF_ROLES)
    if bad:
        raise invalid(f"roles {bad} cannot be assigned; allowed: {sorted(m.STAFF_ROLES)}")
    return sorted(set(roles))


def check_org_roles(org_type: str, roles: Sequence[str]) -> None:
    """Invariants no governance vote may break (ValueError says which).

    Every kind keeps an org admin (register_org makes one); the regulator role
    stays with regulators, whose supervision powers no other org may hold.
    """
    if org_type not in m.ORG_TYPES:
        raise ValueError(f"unknown org_type {org_type!r}; known: {sorted(m.ORG_TYPES)}")
    bad = sorted(set(roles) - m.STAFF_ROLES)
    if bad:
        raise ValueError(f"roles {bad} are not staff roles; known: {sorted(m.STAFF_ROLES)}")
    if "org_admin" not in roles:
        raise ValueError(f"a {org_type} organisation must be allowed an org_admin")
    if "regulator" in roles and org_type != "regulator":
        raise ValueError("the regulator role exists only in a regulator organisation")


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
    policy = {**m.DEFAULT_ORG_ROLES, **(org_roles or {})}
    for org_type, roles in sorted(policy.items()):
        check_org_roles(org_type, roles)
        ctx.put(m.org_roles_key(org_type), {"roles": sorted(set(roles)), "updated_height": 0})
    for name, pub_key, power in validators:
        ctx.put(
            m.validator_key(pub_key),
            {"pub_key": pub_key, "power": power, "name": name, "updated_height": 0},
        )
    for name, suite, public in admins:
        did = m.did_for_key(suite, public)
        member = m.new_member(did, None, ["consortium_admin"], suite, public, 0, name)
        ctx.put(m.did_key(did), member)
        ctx.put(m.pubkey_key(member["keys"][0]["key_id"]), {"did": did, "status": m.ACTIVE})
    for org_id, org_name, org_type, (admin_name, suite, public) in orgs:
        if org_type not in m.ORG_TYPES:
            raise ValueError(f"genesis org {org_id!r}: unknown org_type {org_type!r}")
        ctx.put(
            m.org_key(org_id),
            {
                "org_id": org_id,
                "name": org_name,
                "org_type": org_type,
                "status": m.ACTIVE,
                "created_height": 0,
            },
        )
        did = m.did_for_key(suite, public)
        member = m.new_member(did, org_id, ["org_admin"], suite, public, 0, admin_name)
        ctx.put(m.did_key(did), member)
        ctx.put(m.pubkey_key(member["keys"][0]["key_id"]), {"did": did, "status": m.ACTIVE})


def authenticate(ctx_get: Callable[[str], Any], kid: bytes, open_action: bool) -> str | None:
    """The signer's DID if its key and membership are active.

    An unknown key may only send an open action (self-registration).
    """
    record = ctx_get(m.pubkey_key(kid))
    if record is None:
        if open_action:
            return None
        raise InvalidTransaction(
            Code.UNKNOWN_SIGNER,
            "signing key is not registered: patients register with identity.register_patient; "
            "staff are added by their organisation's admin",
        )
    if record["status"] != m.ACTIVE:
        raise InvalidTransaction(
            Code.SIGNER_INACTIVE, "signing key was rotated out; use the new key"
        )
    member = ctx_get(m.did_key(record["did"]))
    if member is None or member["status"] != m.ACTIVE:
        status = member["status"] if member else "missing"
        raise InvalidTransaction(Code.SIGNER_INACTIVE, f"signer {record['did']} is {status}")
    return str(record["did"])
