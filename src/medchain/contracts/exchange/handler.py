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
  token_access  the same, for a read made with a SMART bearer token: the payload
            carries the member's signed statement the token was issued on
            (exchange/smart.py), which the contract verifies (the member's
            active key, this chain, this custodian, the block within its
            validity), and a record outside its scopes or patient is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medchain import crypto
from medchain.contracts.base import ActionHandler, signer_member, unauthorized
from medchain.contracts.consent import decide
from medchain.contracts.consent.model import PURPOSES
from medchain.contracts.consent.policy import Decision
from medchain.contracts.exchange.model import (
    CLOSED,
    DISPUTED,
    NAMESPACE,
    OPEN,
    RELEASED,
    SESSION_MS,
    ServedMark,
    Session,
    served_key,
    session_id_of,
    session_key,
)
from medchain.contracts.exchange.payloads import (
    AccessPayload,
    AckPayload,
    MemberStatementProof,
    ReleasePayload,
    RequestPayload,
    SignedRequestProof,
    TokenAccessPayload,
)
from medchain.contracts.exchange.proof import MAX_SKEW_MS, purpose_of_use, request_message
from medchain.contracts.exchange.smart import (
    TOKEN_MS,
    ScopeGrant,
    Statement,
    StatementError,
    covers,
    parse_scopes,
    read_statement,
    verify_statement,
)
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import Payload
from medchain.contracts.records.handler import custodian_staff
from medchain.contracts.records.model import record_key
from medchain.core.context import Context
from medchain.core.tx import key_id
from medchain.exceptions import Code, InvalidTransaction


class ExchangeHandler(ActionHandler):
    """The `exchange` system contract, version 1."""

    namespace = NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "request": RequestPayload,
        "release": ReleasePayload,
        "ack": AckPayload,
        "access": AccessPayload,
        "token_access": TokenAccessPayload,
    }

    def _decide(
        self, ctx: Context, member: dict[str, Any], record: dict[str, Any], purpose: str
    ) -> Decision:
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
    ) -> Decision:
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

    def _session(self, ctx: Context, session_id: str) -> Session:
        session: Session = ctx.require(session_key(session_id), f"exchange session {session_id!r}")
        return session

    def request(self, payload: RequestPayload, ctx: Context) -> None:
        """Ask for a record; opens a session only if consent and role allow it now."""
        member = signer_member(ctx)
        record = ctx.require(record_key(payload.record_id), f"record {payload.record_id!r}")
        decision = self._allow_or_refuse(
            ctx, "request", member, record, payload.purpose, actor=member["did"]
        )
        session_id = session_id_of(ctx.tx_id)
        session: Session = {
            "session_id": session_id,
            "record_id": record["record_id"],
            "patient": record["patient"],
            "custodian": record["custodian"],
            "requester": member["did"],
            "requester_key": ctx.signer.public_key,
            "purpose": payload.purpose,
            "basis": decision.reason,
            "status": OPEN,
            "opened_height": ctx.height,
            "opened_time_ms": ctx.time_ms,
            "expires_ms": ctx.time_ms + SESSION_MS,
        }
        ctx.put(session_key(session_id), session)
        ctx.emit(
            "exchange.opened",
            session_id=session_id,
            record_id=record["record_id"],
            patient=record["patient"],
            custodian=record["custodian"],
            actor=member["did"],
            purpose=payload.purpose,
            basis=decision.reason,
        )

    def release(self, payload: ReleasePayload, ctx: Context) -> None:
        """The custodian records that it re-wrapped the data key for the requester."""
        session = self._session(ctx, payload.session_id)
        staff = custodian_staff(ctx, "release", session["custodian"])
        if session["status"] != OPEN:
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
        session["status"] = RELEASED
        session["released_by"], session["released_height"] = staff["did"], ctx.height
        ctx.put(session_key(session["session_id"]), session)
        ctx.emit(
            "exchange.released",
            session_id=session["session_id"],
            record_id=session["record_id"],
            patient=session["patient"],
            requester=session["requester"],
            actor=staff["did"],
        )

    def ack(self, payload: AckPayload, ctx: Context) -> None:
        """The requester confirms what it decrypted; the session closes."""
        session = self._session(ctx, payload.session_id)
        if signer_member(ctx)["did"] != session["requester"]:
            raise unauthorized("only the requester may acknowledge")
        if session["status"] != RELEASED:
            raise InvalidTransaction(Code.INVALID_STATE, f"session is {session['status']}")
        record = ctx.get(record_key(session["record_id"])) or {}
        matches = payload.content_hash == record.get("content_hash")
        session["status"], session["acked_height"] = CLOSED if matches else DISPUTED, ctx.height
        ctx.put(session_key(session["session_id"]), session)
        ctx.emit(
            "exchange.acknowledged",
            session_id=session["session_id"],
            record_id=session["record_id"],
            patient=session["patient"],
            actor=session["requester"],
            status=session["status"],
        )

    def access(self, payload: AccessPayload, ctx: Context) -> None:
        """A custodian records a direct read it is about to serve, and learns per record
        whether the reader may have it now, for the purpose the reader signed."""
        purpose = purpose_of_use(payload.request.purpose)
        staff = custodian_staff(ctx, "serve reads")
        reader = self._verified_reader(ctx, payload.request)
        for record_id in payload.record_ids:
            record = ctx.require(record_key(record_id), f"record {record_id!r}")
            if record["custodian"] != staff["org_id"]:
                raise unauthorized(f"record {record_id!r} is held by {record['custodian']}")
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

    def _verified_reader(self, ctx: Context, request: SignedRequestProof) -> dict[str, Any]:
        """The active member who signed this fresh, not yet served request."""
        message = request_message(
            ctx.chain_id,
            request.method,
            request.path,
            request.time_ms,
            request.body_sm3,
            request.purpose,
        )
        if not crypto.verify(request.suite, request.public_key, message, request.signature):
            raise InvalidTransaction(
                Code.BAD_SIGNATURE, "the reader's request signature is invalid"
            )
        if abs(ctx.time_ms - request.time_ms) > MAX_SKEW_MS:
            raise InvalidTransaction(Code.INVALID_STATE, "the reader's request is stale")
        if ctx.get(served_key(request.signature)) is not None:
            raise InvalidTransaction(Code.DUPLICATE_TX, "this signed request was already served")
        served: ServedMark = {"height": ctx.height}
        ctx.put(served_key(request.signature), served)
        entry = ctx.get(identity.pubkey_key(key_id(request.suite, request.public_key)))
        reader = ctx.get(identity.did_key(entry["did"])) if entry else None
        if reader is None or entry["status"] != identity.ACTIVE:
            raise unauthorized("the reader is not an active member")
        return dict(reader)

    def token_access(self, payload: TokenAccessPayload, ctx: Context) -> None:
        """A custodian records a read it is about to serve to a SMART token, and learns
        per record whether the member may have it now, within the token's scopes."""
        staff = custodian_staff(ctx, "serve reads")
        reader, statement = self._verified_holder(ctx, payload.statement, staff["org_id"])
        purpose = purpose_of_use(statement.purpose_of_use)
        grants = parse_scopes(statement.scope) if statement.scope else None
        for record_id in payload.record_ids:
            record = ctx.require(record_key(record_id), f"record {record_id!r}")
            if record["custodian"] != staff["org_id"]:
                raise unauthorized(f"record {record_id!r} is held by {record['custodian']}")
            attributes = {
                "record_id": record_id,
                "patient": record["patient"],
                "custodian": record["custodian"],
                "actor": reader["did"],
                "purpose": purpose,
                "served_by": staff["did"],
                "via": "smart-token",
            }
            outside = outside_statement(statement, grants, record)
            decision = None if outside else self._decide(ctx, reader, record, purpose)
            if decision is not None and decision.allowed:
                ctx.emit("exchange.accessed", basis=decision.reason, **attributes)
            else:
                reason = outside or (decision.reason if decision else "")
                ctx.emit("exchange.refused", stage="access", reason=reason, **attributes)

    def _verified_holder(
        self, ctx: Context, proof: MemberStatementProof, custodian: str
    ) -> tuple[dict[str, Any], Statement]:
        """The active member who signed this statement for this chain and custodian,
        and its claims, if the block falls within the reads it allows."""
        if not verify_statement(
            proof.form, proof.suite, proof.public_key, proof.signed, proof.signature
        ):
            raise InvalidTransaction(Code.BAD_SIGNATURE, "the member's statement is not signed")
        try:
            statement = read_statement(proof.form, proof.signed)
        except StatementError as e:
            raise InvalidTransaction(Code.INVALID_PAYLOAD, f"statement: {e}") from None
        if statement.chain_id != ctx.chain_id:
            raise InvalidTransaction(Code.WRONG_CHAIN, "the statement is for another chain")
        if statement.custodian != custodian:
            raise unauthorized(f"the statement is for custodian {statement.custodian!r}")
        if purpose_of_use(statement.purpose_of_use) not in PURPOSES:
            raise InvalidTransaction(
                Code.INVALID_PAYLOAD, f"the signed purpose must be one of {sorted(PURPOSES)}"
            )
        if not statement.issued_ms - MAX_SKEW_MS <= ctx.time_ms <= statement.issued_ms + TOKEN_MS:
            raise InvalidTransaction(
                Code.INVALID_STATE, "the block is outside the statement's validity"
            )
        entry = ctx.get(identity.pubkey_key(key_id(proof.suite, proof.public_key)))
        reader = ctx.get(identity.did_key(entry["did"])) if entry else None
        if reader is None or not entry["status"] == reader["status"] == identity.ACTIVE:
            raise unauthorized("the statement's signer is not an active member")
        if reader["did"] != statement.member:
            raise unauthorized("the statement names another member than its signer")
        return dict(reader), statement


def outside_statement(
    statement: Statement, grants: tuple[ScopeGrant, ...] | None, record: dict[str, Any]
) -> str:
    """Why a record is outside a token's statement (its patient, its signed scopes
    `grants`, None when it signed none), or ""."""
    if statement.patient and record["patient"] != statement.patient:
        return "the token is for another patient"
    if grants is not None:
        for resource_type in [record["resource_type"], *record.get("carried_types", ())]:
            if not covers(grants, resource_type):
                return f"{resource_type} is outside the token's scopes"
    return ""
