"""What every system contract shares: action dispatch and the signer's record."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from medchain.contracts.identity import model as identity
from medchain.contracts.payload import Payload, decode_payload
from medchain.core.context import Context
from medchain.core.tx import SignedTx
from medchain.exceptions import Code, InvalidTransaction


class ActionHandler:
    """Dispatches `tx.envelope.action` to the method of the same name.

    Subclasses map each public action to its payload type in `payloads`;
    anything else is UNKNOWN_ACTION, so a helper method can never be called by
    a transaction. The payload is decoded and validated first and the action
    called as `action(payload, ctx)`, so nothing reads state before the payload
    is known to be well formed.
    """

    namespace: str
    open_actions: frozenset[str] = frozenset()
    payloads: Mapping[str, type[Payload]] = {}

    @property
    def actions(self) -> frozenset[str]:
        """The actions a transaction may call: exactly those with a payload type."""
        return frozenset(self.payloads)

    def apply(self, tx: SignedTx, ctx: Context) -> None:
        """Run the tx's action: UNKNOWN_ACTION if it is not one, else its typed payload
        is decoded and checked before the action reads any state."""
        name = tx.envelope.action
        kind = self.payloads.get(name)
        if kind is None:
            raise InvalidTransaction(
                Code.UNKNOWN_ACTION,
                f"{self.namespace} has no action {name!r}; known: {sorted(self.payloads)}",
            )
        getattr(self, name)(decode_payload(tx.envelope.payload, kind), ctx)


def unauthorized(message: str) -> InvalidTransaction:
    """An UNAUTHORIZED rejection: the signer may not do this, whatever the payload."""
    return InvalidTransaction(Code.UNAUTHORIZED, message)


def patient_member(ctx: Context, did: str) -> dict[str, Any]:
    """A registered patient's identity record; NOT_FOUND for anyone else."""
    member = ctx.get(identity.did_key(did))
    if member is None or "patient" not in member["roles"]:
        raise InvalidTransaction(Code.NOT_FOUND, f"{did} is not a registered patient")
    return dict(member)


def signer_member(ctx: Context) -> dict[str, Any]:
    """The signer's identity record; UNAUTHORIZED if it has none."""
    member = ctx.get(identity.did_key(ctx.signer.did)) if ctx.signer.did else None
    if member is None:
        raise InvalidTransaction(Code.UNAUTHORIZED, "signer is not a registered member")
    return dict(member)


def staff_member(ctx: Context, org_types: Collection[str] | None = None) -> dict[str, Any]:
    """The signer, if staff of an organisation (of one of `org_types`, when given);
    else UNAUTHORIZED. Supply and devices steps are taken by organisations, so a
    patient or a consortium admin without an organisation may not take them."""
    member = signer_member(ctx)
    if member["org_id"] is None or "patient" in member["roles"]:
        raise unauthorized("only staff of an organisation may do this")
    org = ctx.get(identity.org_key(member["org_id"]))
    if org_types is not None and org["org_type"] not in org_types:
        raise unauthorized(f"only a {' or '.join(sorted(org_types))} may do this")
    return member


def governor_member(ctx: Context) -> dict[str, Any]:
    """The signer, if a consortium admin or a regulator (who govern rules); else
    UNAUTHORIZED."""
    caller = signer_member(ctx)
    if not {"consortium_admin", "regulator"} & set(caller["roles"]):
        raise InvalidTransaction(
            Code.UNAUTHORIZED, "only a consortium admin or a regulator may do this"
        )
    return caller
