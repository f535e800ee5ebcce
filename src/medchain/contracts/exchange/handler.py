"""Exchange contract: request, release, acknowledge ("agree, light the channel,
send encrypted, release").

  request   any active member: the contract runs the consent decision for
            (requester, record, purpose, block time) and opens a session with
            an expiry, or refuses with the reason.
  release   staff of the record's custodian, within the session's life and
            only while the decision still allows it: a revocation in an
            earlier block closes the door for every later release.
  ack       the requester, with the salted SM3 of what it decrypted: equal to
            the registered hash closes the session, anything else marks it
            disputed.
"""

from __future__ import annotations

from typing import Any

from medchain.contracts.base import ActionHandler, signer_member
from medchain.contracts.consent import decide
from medchain.contracts.consent.model import PURPOSES
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import check_fields, one_of
from medchain.contracts.records.handler import CUSTODIAN_ROLES, record_key
from medchain.core.context import Context
from medchain.core.tx import SignedTx
from medchain.exceptions import Code, InvalidTransaction

NAMESPACE = "exchange"
SESSION_MS = 10 * 60_000


def session_key(session_id: str) -> str:
    return f"{NAMESPACE}/session/{session_id}"


class ExchangeHandler(ActionHandler):
    """The `exchange` system contract, version 1."""

    namespace = NAMESPACE
    actions = frozenset({"request", "release", "ack"})

    def _decide(
        self, ctx: Context, member: dict[str, Any], record: dict[str, Any], purpose: str
    ) -> Any:
        return decide(
            ctx.get, lambda prefix: ctx.scan(prefix), member, record, purpose, ctx.time_ms
        )

    def _allow_or_refuse(
        self,
        ctx: Context,
        stage: str,
        member: dict[str, Any],
        record: dict[str, Any],
        purpose: str,
        **audit: str,
    ) -> Any:
        """The decision if it allows; otherwise refuse the tx, keeping an audit event."""
        decision = self._decide(ctx, member, record, purpose)
        if not decision.allowed:
            ctx.refuse(
                Code.UNAUTHORIZED,
                f"{stage} refused: {decision.reason}",
                "exchange.refused",
                stage=stage,
                record_id=record["record_id"],
                patient=record["patient"],
                custodian=record["custodian"],
                purpose=purpose,
                reason=decision.reason,
                **audit,
            )
        return decision

    def _session(self, ctx: Context, session_id: str) -> dict[str, Any]:
        return dict(ctx.require(session_key(session_id), f"exchange session {session_id!r}"))

    def request(self, tx: SignedTx, ctx: Context) -> None:
        """Ask for a record; opens a session only if consent and role allow it now."""
        p = tx.envelope.payload
        check_fields(p, {"record_id": str, "purpose": str})
        purpose = one_of(p, "purpose", PURPOSES)
        member = signer_member(ctx)
        record = ctx.require(record_key(p["record_id"]), f"record {p['record_id']!r}")
        decision = self._allow_or_refuse(
            ctx, "request", member, record, purpose, actor=member["did"]
        )
        session_id = ctx.tx_id.hex()[:32]
        ctx.put(
            session_key(session_id),
            {
                "session_id": session_id,
                "record_id": record["record_id"],
                "patient": record["patient"],
                "custodian": record["custodian"],
                "requester": member["did"],
                "requester_key": ctx.signer.public_key,
                "purpose": purpose,
                "basis": decision.reason,
                "status": "open",
                "opened_height": ctx.height,
                "opened_time_ms": ctx.time_ms,
                "expires_ms": ctx.time_ms + SESSION_MS,
            },
        )
        ctx.emit(
            "exchange.opened",
            session_id=session_id,
            record_id=record["record_id"],
            patient=record["patient"],
            custodian=record["custodian"],
            actor=member["did"],
            purpose=purpose,
            basis=decision.reason,
        )

    def release(self, tx: SignedTx, ctx: Context) -> None:
        """The custodian records that it re-wrapped the data key for the requester."""
        p = tx.envelope.payload
        check_fields(p, {"session_id": str})
        session = self._session(ctx, p["session_id"])
        staff = signer_member(ctx)
        if staff["org_id"] != session["custodian"] or not CUSTODIAN_ROLES & set(staff["roles"]):
            raise InvalidTransaction(Code.UNAUTHORIZED, "only the custodian's staff may release")
        if session["status"] != "open":
            raise InvalidTransaction(Code.INVALID_STATE, f"session is {session['status']}")
        if ctx.time_ms >= session["expires_ms"]:
            raise InvalidTransaction(Code.INVALID_STATE, "session expired; request again")
        requester = ctx.get(identity.did_key(session["requester"]))
        record = ctx.get(record_key(session["record_id"]))
        self._allow_or_refuse(
            ctx,
            "release",
            requester,
            record,
            session["purpose"],
            actor=staff["did"],
            session_id=session["session_id"],
            requester=session["requester"],
        )
        session.update(status="released", released_by=staff["did"], released_height=ctx.height)
        ctx.put(session_key(session["session_id"]), session)
        ctx.emit(
            "exchange.released",
            session_id=session["session_id"],
            record_id=session["record_id"],
            patient=session["patient"],
            requester=session["requester"],
            actor=staff["did"],
        )

    def ack(self, tx: SignedTx, ctx: Context) -> None:
        """The requester confirms what it decrypted; the session closes."""
        p = tx.envelope.payload
        check_fields(p, {"session_id": str, "content_hash": bytes})
        session = self._session(ctx, p["session_id"])
        if signer_member(ctx)["did"] != session["requester"]:
            raise InvalidTransaction(Code.UNAUTHORIZED, "only the requester may acknowledge")
        if session["status"] != "released":
            raise InvalidTransaction(Code.INVALID_STATE, f"session is {session['status']}")
        record = ctx.get(record_key(session["record_id"])) or {}
        matches = p["content_hash"] == record.get("content_hash")
        session.update(status="closed" if matches else "disputed", acked_height=ctx.height)
        ctx.put(session_key(session["session_id"]), session)
        ctx.emit(
            "exchange.acknowledged",
            session_id=session["session_id"],
            record_id=session["record_id"],
            patient=session["patient"],
            actor=session["requester"],
            status=session["status"],
        )
