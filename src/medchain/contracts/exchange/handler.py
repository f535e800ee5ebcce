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
  access    staff of a custodian serving a direct read (its FHIR API): the
            payload carries the reader's own signed request, which the
            contract verifies, and the purpose is the one the reader signed
            (never one the custodian adds); each record is decided on its own and every
            outcome, allowed or refused, is an audit event naming the reader.
"""

from __future__ import annotations

from typing import Any

from medchain import crypto
from medchain.contracts.base import ActionHandler, signer_member
from medchain.contracts.consent import decide
from medchain.contracts.consent.model import PURPOSES
from medchain.contracts.exchange.proof import MAX_SKEW_MS, purpose_of_use, request_message
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import check_fields, invalid, one_of
from medchain.contracts.records.handler import custodian_staff, record_key
from medchain.core.context import Context
from medchain.core.tx import SignedTx, key_id
from medchain.exceptions import Code, InvalidTransaction

NAMESPACE = "exchange"
SESSION_MS = 10 * 60_000
MAX_ACCESS_RECORDS = 100
PROOF_FIELDS: dict[str, type] = {
    "suite": str,
    "public_key": bytes,
    "method": str,
    "path": str,
    "time_ms": int,
    "body_sm3": bytes,
    "purpose": str,
    "signature": bytes,
}


def served_key(signature: bytes) -> str:
    """Marks a signed read request as served: each one is put on chain once."""
    return f"{NAMESPACE}/served/{crypto.sm3(signature).hex()}"


def session_key(session_id: str) -> str:
    return f"{NAMESPACE}/session/{session_id}"


class ExchangeHandler(ActionHandler):
    """The `exchange` system contract, version 1."""

    namespace = NAMESPACE
    actions = frozenset({"request", "release", "ack", "access"})

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
        staff = custodian_staff(ctx, "release", session["custodian"])
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

    def access(self, tx: SignedTx, ctx: Context) -> None:
        """A custodian records a direct read it is about to serve, and learns per record
        whether the reader may have it now, for the purpose the reader signed."""
        p = tx.envelope.payload
        check_fields(p, {"request": dict, "record_ids": list})
        check_fields(p["request"], PROOF_FIELDS)
        purpose = purpose_of_use(p["request"]["purpose"])
        if purpose not in PURPOSES:
            raise invalid(f"the signed purpose must be one of {sorted(PURPOSES)}")
        ids = p["record_ids"]
        if not 0 < len(ids) <= MAX_ACCESS_RECORDS or not all(isinstance(i, str) for i in ids):
            raise invalid(f"record_ids must be 1 to {MAX_ACCESS_RECORDS} record ids")
        staff = custodian_staff(ctx, "serve reads")
        reader = self._verified_reader(ctx, p["request"])
        for record_id in ids:
            record = ctx.require(record_key(record_id), f"record {record_id!r}")
            if record["custodian"] != staff["org_id"]:
                raise InvalidTransaction(
                    Code.UNAUTHORIZED, f"record {record_id!r} is held by {record['custodian']}"
                )
            decision = self._decide(ctx, reader, record, purpose)
            attributes = {
                "record_id": record_id,
                "patient": record["patient"],
                "custodian": record["custodian"],
                "actor": reader["did"],
                "purpose": purpose,
                "served_by": staff["did"],
            }
            if decision.allowed:
                ctx.emit("exchange.accessed", basis=decision.reason, **attributes)
            else:
                ctx.emit("exchange.refused", stage="access", reason=decision.reason, **attributes)

    def _verified_reader(self, ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
        """The active member who signed this fresh, not yet served request."""
        message = request_message(
            ctx.chain_id,
            request["method"],
            request["path"],
            request["time_ms"],
            request["body_sm3"],
            request["purpose"],
        )
        if not crypto.verify(
            request["suite"], request["public_key"], message, request["signature"]
        ):
            raise InvalidTransaction(
                Code.BAD_SIGNATURE, "the reader's request signature is invalid"
            )
        if abs(ctx.time_ms - request["time_ms"]) > MAX_SKEW_MS:
            raise InvalidTransaction(Code.INVALID_STATE, "the reader's request is stale")
        if ctx.get(served_key(request["signature"])) is not None:
            raise InvalidTransaction(Code.DUPLICATE_TX, "this signed request was already served")
        ctx.put(served_key(request["signature"]), {"height": ctx.height})
        entry = ctx.get(identity.pubkey_key(key_id(request["suite"], request["public_key"])))
        reader = ctx.get(identity.did_key(entry["did"])) if entry else None
        if reader is None or entry["status"] != identity.ACTIVE:
            raise InvalidTransaction(Code.UNAUTHORIZED, "the reader is not an active member")
        return dict(reader)
