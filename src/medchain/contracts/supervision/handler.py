"""Supervision contract (regulator chain): relayed digests, rules, alerts.

Authority:
  authorize_relayer   a consortium admin or regulator: who may relay which source
  digest              an authorised relayer: the next block's digest, in order; for
                      a CometBFT source, with the signed header and commit that make
                      the block final and bind the digest to it (see _check_finality)
  report_lag          a regulator: what it saw of the business chain's head, so a
                      stalled or cut relay raises an alert
  set_rule            a consortium admin or regulator: enable a rule, set its limits
  ack_alert           a regulator, with a note
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from medchain.contracts import lightclient
from medchain.contracts.base import ActionHandler, governor_member, signer_member, unauthorized
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import Payload
from medchain.contracts.supervision import model
from medchain.contracts.supervision.payloads import (
    AckAlertPayload,
    AuthorizeRelayerPayload,
    DigestPayload,
    Finality,
    ReportLagPayload,
    SetRulePayload,
)
from medchain.core.block import TxResult, compute_app_hash, result_leaf
from medchain.core.context import Context
from medchain.core.merkle import merkle_root
from medchain.crypto import cometbft
from medchain.exceptions import Code, InvalidTransaction

# The fields every part of one block repeats: a later part must agree with the first.
BLOCK_FIELDS = ("block_hash", "prev_block_hash", "app_hash", "tx_count", "time_ms", "parts")


class SupervisionHandler(ActionHandler):
    """The `supervision` system contract, version 1."""

    namespace = model.NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "authorize_relayer": AuthorizeRelayerPayload,
        "digest": DigestPayload,
        "report_lag": ReportLagPayload,
        "set_rule": SetRulePayload,
        "ack_alert": AckAlertPayload,
    }

    def authorize_relayer(self, payload: AuthorizeRelayerPayload, ctx: Context) -> None:
        """Let a member relay one business chain, starting after `from_height`."""
        source = payload.source
        governor_member(ctx)
        if ctx.get(identity.did_key(payload.relayer)) is None:
            raise InvalidTransaction(Code.NOT_FOUND, f"no member {payload.relayer}")
        ctx.put(model.relayer_key(source, payload.relayer), {"since_height": ctx.height})
        if payload.cometbft is not None and ctx.get(model.finality_key(source)) is None:
            if ctx.get(model.stream_key(source)) is not None:
                raise InvalidTransaction(
                    Code.INVALID_STATE,
                    f"{source!r} is already relayed without finality; a new source name "
                    "starts a CometBFT stream",
                )
            follow: model.Follow = {
                "chain_id": payload.cometbft.chain_id,
                "validators": _stored_set(payload.cometbft.validators),
                "header_hash": b"",
                "chunk_roots": [],
                "next_tx": 0,
            }
            ctx.put(model.finality_key(source), follow)
        if ctx.get(model.stream_key(source)) is None:
            start = payload.from_height
            stream: model.Stream = {
                "source": source,
                "height": start,
                "part": 0,
                "parts": 1,
                "first_height": start + 1,
                "running_hash": model.GENESIS_RUNNING_HASH,
                "block_hash": bytes(32),
                "block_time_ms": 0,
                "relayed_at_ms": ctx.time_ms,
                "digests": 0,
            }
            ctx.put(model.stream_key(source), stream)
        ctx.emit("supervision.relayer_authorized", source=source, relayer=payload.relayer)

    def digest(self, payload: DigestPayload, ctx: Context) -> None:
        """The next block of a business chain: checked for order and continuity, stored,
        and its audit events run through the rules."""
        source = payload.source
        caller = signer_member(ctx)
        if ctx.get(model.relayer_key(source, caller["did"])) is None:
            raise unauthorized(f"{caller['did']} may not relay {source}")
        stream = dict(ctx.require(model.stream_key(source), f"stream {source!r}"))
        if stream["part"] + 1 < stream["parts"]:
            expected = (stream["height"], stream["part"] + 1)
        else:
            expected = (stream["height"] + 1, 0)
        given = (payload.height, payload.part)
        if given != expected:
            kind = "duplicate" if given < expected else "gap"
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"{kind}: digest for height {given[0]} part {given[1]}, the stream expects "
                f"height {expected[0]} part {expected[1]}",
            )
        if payload.part == 0:
            if stream["digests"] and payload.prev_block_hash != stream["block_hash"]:
                raise InvalidTransaction(
                    Code.INVALID_STATE, "prev_block_hash does not continue the relayed blocks"
                )
        else:
            first = ctx.require(model.digest_key(source, payload.height), "first part")
            if any(first[name] != getattr(payload, name) for name in BLOCK_FIELDS):
                raise InvalidTransaction(
                    Code.INVALID_STATE, "a later part does not describe the same block"
                )
        events: list[dict[str, Any]] = msgspec.to_builtins(payload.events)
        follow = ctx.get(model.finality_key(source))
        if follow is not None:
            ctx.put(model.finality_key(source), _check_finality(payload, dict(follow), events))
        elif payload.finality is not None or payload.results:
            raise InvalidTransaction(
                Code.INVALID_STATE, f"{source!r} was not registered as a CometBFT source"
            )
        body = model.digest_body(
            source,
            payload.height,
            payload.block_hash,
            payload.prev_block_hash,
            payload.app_hash,
            payload.tx_count,
            payload.time_ms,
            events,
            payload.part,
            payload.parts,
        )
        running = model.running_hash(stream["running_hash"], body)
        if running != payload.running_hash:
            raise InvalidTransaction(
                Code.INVALID_STATE, "running hash does not follow: a digest was altered"
            )
        ctx.put(
            model.digest_key(source, payload.height, payload.part),
            body | {"running_hash": running},
        )
        stream.update(
            height=payload.height,
            part=payload.part,
            parts=payload.parts,
            running_hash=running,
            block_hash=payload.block_hash,
            block_time_ms=payload.time_ms,
            relayed_at_ms=ctx.time_ms,
            digests=stream["digests"] + 1,
        )
        ctx.put(model.stream_key(source), stream)
        ctx.emit(
            "supervision.digest",
            source=source,
            height=str(payload.height),
            part=str(payload.part),
        )
        Rules(ctx, source, payload.height, payload.time_ms, payload.part).check(events)

    def report_lag(self, payload: ReportLagPayload, ctx: Context) -> None:
        """A regulator saw the business chain at `head_height`: alert if the relay lags."""
        caller = governor_member(ctx)
        stream = ctx.require(model.stream_key(payload.source), f"stream {payload.source!r}")
        rule = _rule(ctx, "relay_gap")
        if rule is None:
            return
        relayed = model.complete_height(stream)
        behind = payload.head_height - relayed
        silent = ctx.time_ms - stream["relayed_at_ms"]
        if behind > rule["max_blocks_behind"] or (behind > 0 and silent > rule["max_silence_ms"]):
            Rules(ctx, payload.source, relayed, ctx.time_ms, f"lag{ctx.height}").alert(
                "relay_gap",
                subject=payload.source,
                detail=f"relayed up to {relayed}, head is {payload.head_height} "
                f"({behind} blocks behind, nothing relayed for {silent // 1000} s)",
                reported_by=caller["did"],
            )

    def set_rule(self, payload: SetRulePayload, ctx: Context) -> None:
        """Turn a rule on or off and set its limits."""
        params = dict(model.DEFAULT_RULES[payload.rule]) | payload.params
        caller = governor_member(ctx)
        rule: model.Rule = {"enabled": payload.enabled, "params": params}
        ctx.put(model.rule_key(payload.rule), rule)
        ctx.emit(
            "supervision.rule_set",
            rule=payload.rule,
            enabled=str(payload.enabled),
            actor=caller["did"],
        )

    def ack_alert(self, payload: AckAlertPayload, ctx: Context) -> None:
        """A regulator has seen an alert: it is acknowledged, with who and a note."""
        key = model.alert_key(payload.alert_id)
        alert = dict(ctx.require(key, f"alert {payload.alert_id!r}"))
        caller = governor_member(ctx)
        alert.update(status=model.ACKNOWLEDGED, note=payload.note[:500], acked_by=caller["did"])
        ctx.put(key, alert)
        ctx.emit("supervision.alert_acknowledged", alert_id=payload.alert_id, actor=caller["did"])


def _stored_set(validators: list[cometbft.Validator]) -> list[dict[str, Any]]:
    """A validator set as kept in state, in CometBFT's order."""
    return lightclient.stored_set(validators)


def _not_final(why: str) -> InvalidTransaction:
    return InvalidTransaction(Code.INVALID_STATE, f"not proven final: {why}")


def _check_finality(
    payload: DigestPayload, follow: dict[str, Any], events: list[dict[str, Any]]
) -> dict[str, Any]:
    """A CometBFT source's digest proves what it says; the updated follow state.

    Part 0 carries header height+1 (it holds the app hash after block `height`)
    with its commit, and header `height` (the block's own): _verify_headers checks
    them and binds the digest's block hashes and time to them, _follow_validators
    takes up a new validator set they announce, _bind_app_hash ties the state root
    and the results' chunk roots to the signed app hash. Every part then carries
    full results of the next whole chunks (_check_results)."""
    fin = payload.finality
    if payload.part == 0:
        if fin is None:
            raise _not_final("part 0 of a CometBFT source's digest carries its finality")
        _verify_headers(payload, fin, follow)
        _follow_validators(fin, follow)
        follow.update(
            header_hash=cometbft.header_hash(fin.header),
            chunk_roots=_bind_app_hash(payload, fin),
            next_tx=0,
        )
    follow["next_tx"] = _check_results(payload, follow["chunk_roots"], follow["next_tx"], events)
    if payload.part + 1 == payload.parts:
        follow.update(chunk_roots=[], next_tx=0)
    return follow


def _verify_headers(payload: DigestPayload, fin: Finality, follow: dict[str, Any]) -> None:
    """Header height+1 is final under the followed validator set and continues the
    last verified header; header `height` is the one it names. The digest's block
    hash is CometBFT's block id of block `height` (what header height+1 names), its
    previous block hash the id header `height` names, and its time header `height`'s
    (the genesis block 0 has no header: no previous block, time 0)."""
    header = fin.header
    if header.height != payload.height + 1:
        raise _not_final(
            f"block {payload.height} is proven by header {payload.height + 1}, not {header.height}"
        )
    try:
        lightclient.verify_followed_commit(
            follow["chain_id"], follow["validators"], header, fin.commit
        )
    except InvalidTransaction as e:
        raise _not_final(e.message.removeprefix("not trusted: ")) from None
    if follow["header_hash"] and header.last_block_id.hash != follow["header_hash"]:
        raise _not_final(f"header {header.height} does not follow the last verified header")
    if payload.block_hash != header.last_block_id.hash:
        raise _not_final(
            f"block_hash is not CometBFT's block id of block {payload.height} "
            f"(the one header {header.height} names)"
        )
    if fin.block_header is None:
        if payload.height != 0:
            raise _not_final(f"header {payload.height} (the block's own) is missing")
        if payload.prev_block_hash or payload.time_ms:
            raise _not_final("the genesis block 0 has no previous block and time 0")
        return
    block_header = fin.block_header
    if cometbft.header_hash(block_header) != header.last_block_id.hash:
        raise _not_final(f"header {payload.height} is not the one header {header.height} names")
    if payload.prev_block_hash != block_header.last_block_id.hash:
        raise _not_final(f"prev_block_hash is not the block id header {payload.height} names")
    if block_header.time.ms() != payload.time_ms:
        raise _not_final(f"time_ms is not header {payload.height}'s time")


def _follow_validators(fin: Finality, follow: dict[str, Any]) -> None:
    """A header that announces another next validator set comes with that set,
    checked against its hash, and followed from then on."""
    try:
        announced = lightclient.announced_set(fin.header, fin.next_validators)
    except InvalidTransaction:
        raise _not_final(
            f"header {fin.header.height} announces a new validator set: the digest "
            "carries it (next_validators) and it must hash to next_validators_hash"
        ) from None
    if announced is not None:
        follow["validators"] = announced


def _bind_app_hash(payload: DigestPayload, fin: Finality) -> list[bytes]:
    """The state root and the roots of the txs' result leaves, chunk by chunk
    (model.chunk_roots), recompute the signed app hash (core/block.py), so the tx
    count and each result are bound to it; the chunk roots the parts are checked
    against."""
    roots = list(fin.chunk_roots)
    app_hash = compute_app_hash(payload.height, fin.state_root, merkle_root(roots))
    if app_hash != fin.header.app_hash or payload.app_hash != app_hash:
        raise _not_final(
            f"state root and result chunk roots do not give header {fin.header.height}'s app hash"
        )
    if len(roots) != -(-payload.tx_count // model.RESULTS_CHUNK):
        raise _not_final("tx_count does not match the number of result chunks")
    return roots


def _check_results(
    payload: DigestPayload, roots: list[bytes], first: int, events: list[dict[str, Any]]
) -> int:
    """One part carries the full results of the next whole chunks of txs, from tx
    `first` on: they must hash to the bound chunk roots, and the digest's audit
    events must be exactly the events with an actor in them, so the relayer can
    neither invent nor drop one. The first tx of the next part."""
    end = first + len(payload.results)
    if payload.first_tx != first or end > payload.tx_count:
        raise _not_final(f"part {payload.part} must carry the results from tx {first} on")
    if end % model.RESULTS_CHUNK and end != payload.tx_count:
        raise _not_final(f"part {payload.part} must end on a chunk of {model.RESULTS_CHUNK} txs")
    derived, leaves = [], []
    for offset, r in enumerate(payload.results):
        index = first + offset
        given = {
            "tx_id": r.tx_id,
            "code": r.code,
            "log": "",
            "events": msgspec.to_builtins(r.events),
        }
        try:
            leaves.append(result_leaf(TxResult.from_dict(given)))
        except ValueError:
            raise _not_final(f"tx {index} has an unknown result code {r.code}") from None
        derived += [
            {"tx": index, "type": e.type, "attributes": dict(e.attributes)}
            for e in r.events
            if "actor" in e.attributes
        ]
    for start in range(0, len(leaves), model.RESULTS_CHUNK):
        chunk = (first + start) // model.RESULTS_CHUNK
        if merkle_root(leaves[start : start + model.RESULTS_CHUNK]) != roots[chunk]:
            last = min(first + start + model.RESULTS_CHUNK, end) - 1
            raise _not_final(
                f"the results of txs {first + start}..{last} are not the ones the app hash "
                "commits to"
            )
    if derived != events:
        raise _not_final("the audit events are not exactly those of the carried results")
    if payload.part + 1 == payload.parts and end != payload.tx_count:
        raise _not_final(f"the last part leaves txs {end}.. without results")
    return end


def _rule(ctx: Context, name: str) -> dict[str, int] | None:
    """A rule's parameters if it is enabled."""
    rule = ctx.get(model.rule_key(name))
    return dict(rule["params"]) if rule and rule["enabled"] else None


class Rules:
    """The supervision rules, applied to one digest's events at business time `now`."""

    def __init__(
        self, ctx: Context, source: str, height: int, now: int, part: int | str = 0
    ) -> None:
        self.ctx, self.source, self.height, self.now = ctx, source, height, now
        self.part = part
        self.raised = 0
        self._rules: dict[str, dict[str, int] | None] = {}

    def rule(self, name: str) -> dict[str, int] | None:
        """A rule's parameters if enabled, read once per digest (not once per event)."""
        if name not in self._rules:
            self._rules[name] = _rule(self.ctx, name)
        return self._rules[name]

    def alert(self, rule: str, subject: str, detail: str, **extra: str) -> None:
        """Raise an open alert; its id is unique within the digest (or lag report)."""
        alert_id = f"{self.source}-{self.height}-{self.part}-{rule}-{self.raised}"
        self.raised += 1
        record = {
            "alert_id": alert_id,
            "rule": rule,
            "source": self.source,
            "height": self.height,
            "subject": subject,
            "detail": detail,
            "business_time_ms": self.now,
            "raised_at_ms": self.ctx.time_ms,
            "status": model.OPEN,
            **extra,
        }
        self.ctx.put(model.alert_key(alert_id), record)
        self.ctx.emit(
            "supervision.alert", alert_id=alert_id, rule=rule, subject=subject, actor="supervision"
        )

    def check(self, events: list[dict[str, Any]]) -> None:
        """Run every enabled rule over the digest's events, in order, then the
        overdue-acknowledgement rule over what is still pending."""
        for event in events:
            kind, attrs = event["type"], event["attributes"]
            if kind == "consent.granted":
                self._track_grant(attrs)
            elif kind == "consent.revoked":
                self._revoke_grant(attrs)
            elif kind == "consent.break_glass_opened":
                self._break_glass(attrs)
            elif kind == "claims.duplicate_suspected":
                self._duplicate_claim(attrs)
            if kind in model.ACCESS_EVENTS:
                self._consent_window(attrs)
                self._volume(attrs)
            if kind == "exchange.opened":
                self._pending(attrs)
            elif kind == "exchange.acknowledged":
                self._acknowledged(attrs)
        self._overdue()

    def _track_grant(self, a: dict[str, str]) -> None:
        self.ctx.put(
            model.grant_key(self.source, a["grant_id"]),
            {
                "patient": a.get("patient"),
                "from_ms": self.now,
                "until_ms": int(a.get("expires_ms", "0") or 0),
            },
        )

    def _revoke_grant(self, a: dict[str, str]) -> None:
        grant = self.ctx.get(model.grant_key(self.source, a["grant_id"]))
        if grant is not None:
            grant["until_ms"] = min(grant["until_ms"], self.now)
            self.ctx.put(model.grant_key(self.source, a["grant_id"]), grant)

    def _break_glass(self, a: dict[str, str]) -> None:
        if self.rule("break_glass") is not None:
            self.alert(
                "break_glass",
                subject=a.get("doctor", ""),
                detail=f"emergency access to {a.get('patient')} approved by {a.get('actor')}",
                patient=a.get("patient", ""),
            )

    def _duplicate_claim(self, a: dict[str, str]) -> None:
        """A provider claimed an encounter or a pack twice: double billing, or a
        mistake the regulator should see either way."""
        if self.rule("duplicate_claim") is not None:
            self.alert(
                "duplicate_claim",
                subject=a.get("org", ""),
                detail=f"claim {a.get('claim_id')} to {a.get('insurer')}: {a.get('reason')} "
                f"({a.get('subject')}) in claim {a.get('earlier_claim')}",
                patient=a.get("patient", ""),
            )

    def _consent_window(self, a: dict[str, str]) -> None:
        basis = a.get("basis", "")
        if self.rule("outside_consent_window") is None or not basis.startswith("grant "):
            return
        grant = self.ctx.get(model.grant_key(self.source, basis.split(" ", 1)[1]))
        if grant is None:
            return  # granted before relaying began: nothing to compare with
        if not grant["from_ms"] <= self.now < grant["until_ms"]:
            self.alert(
                "outside_consent_window",
                subject=a.get("actor", ""),
                detail=f"access to {a.get('record_id')} under {basis} outside its window",
                patient=a.get("patient", ""),
            )

    def _volume(self, a: dict[str, str]) -> None:
        rule = self.rule("volume_spike")
        if rule is None:
            return
        bucket = self.now // rule["window_ms"]
        for kind, subject, limit in (
            ("actor", a.get("actor", ""), rule["max_per_actor"]),
            ("patient", a.get("patient", ""), rule["max_per_patient"]),
        ):
            key = model.volume_key(self.source, kind, subject, bucket)
            count = (self.ctx.get(key) or 0) + 1
            self.ctx.put(key, count)
            if count == limit + 1:
                self.alert(
                    "volume_spike",
                    subject=subject,
                    detail=f"more than {limit} accesses by {kind} {subject} in one "
                    f"{rule['window_ms'] // 60_000}-minute window",
                )

    def _pending(self, a: dict[str, str]) -> None:
        session = a["session_id"]
        self.ctx.put(model.pending_key(self.source, session), {**a, "opened_ms": self.now})
        self.ctx.put(model.pending_queue_key(self.source, self.now, session), {"session": session})

    def _acknowledged(self, a: dict[str, str]) -> None:
        session = a["session_id"]
        pending = self.ctx.get(model.pending_key(self.source, session))
        if pending is not None:
            self.ctx.delete(model.pending_key(self.source, session))
            self.ctx.delete(model.pending_queue_key(self.source, pending["opened_ms"], session))

    def _overdue(self) -> None:
        rule = self.rule("unacknowledged")
        if rule is None:
            return
        cutoff = self.now - rule["max_ms"]
        due = []
        for key, entry in self.ctx.scan(model.pending_queue_prefix(self.source), limit=1000):
            opened = int(key.rsplit("/", 2)[1])
            if opened > cutoff:
                break  # the queue is in time order
            due.append((key, entry["session"]))
        for key, session in due:
            pending = self.ctx.get(model.pending_key(self.source, session)) or {}
            self.ctx.delete(key)
            self.ctx.delete(model.pending_key(self.source, session))
            self.alert(
                "unacknowledged",
                subject=pending.get("actor", ""),
                detail=f"exchange session {session} for {pending.get('record_id')} was never "
                f"acknowledged within {rule['max_ms'] // 60_000} minutes",
                patient=pending.get("patient", ""),
            )


def init_genesis(ctx: Context) -> None:
    """The rules, all enabled with their default limits."""
    for name, params in sorted(model.DEFAULT_RULES.items()):
        ctx.put(model.rule_key(name), {"enabled": True, "params": params})
