"""Supervision contract (regulator chain): relayed digests, rules, alerts.

Authority:
  authorize_relayer   a consortium admin or regulator: who may relay which source
  digest              an authorised relayer: the next block's digest, in order
  report_lag          a regulator: what it saw of the business chain's head, so a
                      stalled or cut relay raises an alert
  set_rule            a consortium admin or regulator: enable a rule, set its limits
  ack_alert           a regulator, with a note
"""

from __future__ import annotations

from typing import Any

from medchain.contracts.base import ActionHandler, governor_member, signer_member
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import check_fields, invalid, text
from medchain.contracts.supervision import model as m
from medchain.core.context import Context
from medchain.core.tx import SignedTx
from medchain.exceptions import Code, InvalidTransaction

_SOURCE = r"[A-Za-z0-9._-]{1,64}"
DIGEST_FIELDS: dict[str, type] = {
    "source": str,
    "height": int,
    "part": int,
    "parts": int,
    "block_hash": bytes,
    "prev_block_hash": bytes,
    "app_hash": bytes,
    "tx_count": int,
    "time_ms": int,
    "events": list,
    "running_hash": bytes,
}


def _unauthorized(message: str) -> InvalidTransaction:
    return InvalidTransaction(Code.UNAUTHORIZED, message)


class SupervisionHandler(ActionHandler):
    """The `supervision` system contract, version 1."""

    namespace = m.NAMESPACE
    actions = frozenset({"authorize_relayer", "digest", "report_lag", "set_rule", "ack_alert"})

    def authorize_relayer(self, tx: SignedTx, ctx: Context) -> None:
        """Let a member relay one business chain, starting after `from_height`."""
        p = tx.envelope.payload
        check_fields(p, {"source": str, "relayer": str}, {"from_height": int})
        source = text(p, "source", _SOURCE)
        governor_member(ctx)
        if ctx.get(identity.did_key(p["relayer"])) is None:
            raise InvalidTransaction(Code.NOT_FOUND, f"no member {p['relayer']}")
        ctx.put(m.relayer_key(source, p["relayer"]), {"since_height": ctx.height})
        if ctx.get(m.stream_key(source)) is None:
            start = p.get("from_height", -1)
            ctx.put(
                m.stream_key(source),
                {
                    "source": source,
                    "height": start,
                    "part": 0,
                    "parts": 1,
                    "first_height": start + 1,
                    "running_hash": m.GENESIS_RUNNING_HASH,
                    "block_hash": bytes(32),
                    "block_time_ms": 0,
                    "relayed_at_ms": ctx.time_ms,
                    "digests": 0,
                },
            )
        ctx.emit("supervision.relayer_authorized", source=source, relayer=p["relayer"])

    def digest(self, tx: SignedTx, ctx: Context) -> None:
        """The next block of a business chain: checked for order and continuity, stored,
        and its audit events run through the rules."""
        p = tx.envelope.payload
        check_fields(p, DIGEST_FIELDS)
        source = text(p, "source", _SOURCE)
        caller = signer_member(ctx)
        if ctx.get(m.relayer_key(source, caller["did"])) is None:
            raise _unauthorized(f"{caller['did']} may not relay {source}")
        stream = dict(ctx.require(m.stream_key(source), f"stream {source!r}"))
        if stream["part"] + 1 < stream["parts"]:
            expected = (stream["height"], stream["part"] + 1)
        else:
            expected = (stream["height"] + 1, 0)
        given = (p["height"], p["part"])
        if given != expected:
            kind = "duplicate" if given < expected else "gap"
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"{kind}: digest for height {given[0]} part {given[1]}, the stream expects "
                f"height {expected[0]} part {expected[1]}",
            )
        if not 0 <= p["part"] < p["parts"] <= m.MAX_PARTS:
            raise invalid(f"part must be below parts (at most {m.MAX_PARTS})")
        if p["part"] == 0:
            if stream["digests"] and p["prev_block_hash"] != stream["block_hash"]:
                raise InvalidTransaction(
                    Code.INVALID_STATE, "prev_block_hash does not continue the relayed blocks"
                )
        else:
            first = ctx.require(m.digest_key(source, p["height"]), "first part")
            block_fields = (
                "block_hash",
                "prev_block_hash",
                "app_hash",
                "tx_count",
                "time_ms",
                "parts",
            )
            if any(first[f] != p[f] for f in block_fields):
                raise InvalidTransaction(
                    Code.INVALID_STATE, "a later part does not describe the same block"
                )
        events = p["events"]
        if len(events) > m.MAX_EVENTS or not all(_is_event(e) for e in events):
            raise invalid(f"events: at most {m.MAX_EVENTS} {{tx, type, attributes}} objects")
        _check_rule_inputs(events)
        body = m.digest_body(
            source,
            p["height"],
            p["block_hash"],
            p["prev_block_hash"],
            p["app_hash"],
            p["tx_count"],
            p["time_ms"],
            events,
            p["part"],
            p["parts"],
        )
        running = m.running_hash(stream["running_hash"], body)
        if running != p["running_hash"]:
            raise InvalidTransaction(
                Code.INVALID_STATE, "running hash does not follow: a digest was altered"
            )
        ctx.put(m.digest_key(source, p["height"], p["part"]), body | {"running_hash": running})
        stream.update(
            height=p["height"],
            part=p["part"],
            parts=p["parts"],
            running_hash=running,
            block_hash=p["block_hash"],
            block_time_ms=p["time_ms"],
            relayed_at_ms=ctx.time_ms,
            digests=stream["digests"] + 1,
        )
        ctx.put(m.stream_key(source), stream)
        ctx.emit("supervision.digest", source=source, height=str(p["height"]), part=str(p["part"]))
        Rules(ctx, source, p["height"], p["time_ms"], p["part"]).check(events)

    def report_lag(self, tx: SignedTx, ctx: Context) -> None:
        """A regulator saw the business chain at `head_height`: alert if the relay lags."""
        p = tx.envelope.payload
        check_fields(p, {"source": str, "head_height": int})
        caller = governor_member(ctx)
        stream = ctx.require(m.stream_key(p["source"]), f"stream {p['source']!r}")
        rule = _rule(ctx, "relay_gap")
        if rule is None:
            return
        relayed = m.complete_height(stream)
        behind = p["head_height"] - relayed
        silent = ctx.time_ms - stream["relayed_at_ms"]
        if behind > rule["max_blocks_behind"] or (behind > 0 and silent > rule["max_silence_ms"]):
            Rules(ctx, p["source"], relayed, ctx.time_ms, f"lag{ctx.height}").alert(
                "relay_gap",
                subject=p["source"],
                detail=f"relayed up to {relayed}, head is {p['head_height']} "
                f"({behind} blocks behind, nothing relayed for {silent // 1000} s)",
                reported_by=caller["did"],
            )

    def set_rule(self, tx: SignedTx, ctx: Context) -> None:
        """Turn a rule on or off and set its limits."""
        p = tx.envelope.payload
        check_fields(p, {"rule": str, "enabled": bool}, {"params": dict})
        if p["rule"] not in m.DEFAULT_RULES:
            raise invalid(f"rule must be one of {sorted(m.DEFAULT_RULES)}")
        params = dict(m.DEFAULT_RULES[p["rule"]])
        for name, value in p.get("params", {}).items():
            if name not in params or type(value) is not int or value <= 0:
                raise invalid(f"params of {p['rule']}: positive integers among {sorted(params)}")
            params[name] = value
        caller = governor_member(ctx)
        ctx.put(m.rule_key(p["rule"]), {"enabled": p["enabled"], "params": params})
        ctx.emit(
            "supervision.rule_set", rule=p["rule"], enabled=str(p["enabled"]), actor=caller["did"]
        )

    def ack_alert(self, tx: SignedTx, ctx: Context) -> None:
        p = tx.envelope.payload
        check_fields(p, {"alert_id": str, "note": str})
        alert = dict(ctx.require(m.alert_key(p["alert_id"]), f"alert {p['alert_id']!r}"))
        caller = governor_member(ctx)
        alert.update(status="acknowledged", note=p["note"][:500], acked_by=caller["did"])
        ctx.put(m.alert_key(p["alert_id"]), alert)
        ctx.emit("supervision.alert_acknowledged", alert_id=p["alert_id"], actor=caller["did"])


def _is_event(e: Any) -> bool:
    return (
        isinstance(e, dict)
        and set(e) == {"tx", "type", "attributes"}
        and isinstance(e["tx"], int)
        and isinstance(e["type"], str)
        and isinstance(e["attributes"], dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in e["attributes"].items())
    )


# What the rules read from an event, by type: present, and a number where it must be.
_RULE_INPUTS: dict[str, tuple[str, ...]] = {
    "consent.granted": ("grant_id",),
    "consent.revoked": ("grant_id",),
    "exchange.opened": ("session_id",),
    "exchange.acknowledged": ("session_id",),
}


def _check_rule_inputs(events: list[dict[str, Any]]) -> None:
    """Refuse a digest whose events lack what the rules read, before any rule runs.

    The business chain never emits such events; a digest that carries one was
    forged or corrupted, and must be refused rather than crash every validator.
    """
    for i, event in enumerate(events):
        attrs = event["attributes"]
        for name in _RULE_INPUTS.get(event["type"], ()):
            if not attrs.get(name):
                raise invalid(f"events[{i}] ({event['type']}) has no {name}")
        expires = attrs.get("expires_ms", "0") if event["type"] == "consent.granted" else "0"
        if not (expires == "" or (expires.isascii() and expires.isdigit() and len(expires) < 20)):
            raise invalid(f"events[{i}]: expires_ms must be a number of milliseconds")


def _rule(ctx: Context, name: str) -> dict[str, int] | None:
    """A rule's parameters if it is enabled."""
    rule = ctx.get(m.rule_key(name))
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
            "status": "open",
            **extra,
        }
        self.ctx.put(m.alert_key(alert_id), record)
        self.ctx.emit(
            "supervision.alert", alert_id=alert_id, rule=rule, subject=subject, actor="supervision"
        )

    def check(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            kind, attrs = event["type"], event["attributes"]
            if kind == "consent.granted":
                self._track_grant(attrs)
            elif kind == "consent.revoked":
                self._revoke_grant(attrs)
            elif kind == "consent.break_glass_opened":
                self._break_glass(attrs)
            if kind in m.ACCESS_EVENTS:
                self._consent_window(attrs)
                self._volume(attrs)
            if kind == "exchange.opened":
                self._pending(attrs)
            elif kind == "exchange.acknowledged":
                self._acknowledged(attrs)
        self._overdue()

    def _track_grant(self, a: dict[str, str]) -> None:
        self.ctx.put(
            m.grant_key(self.source, a["grant_id"]),
            {
                "patient": a.get("patient"),
                "from_ms": self.now,
                "until_ms": int(a.get("expires_ms", "0") or 0),
            },
        )

    def _revoke_grant(self, a: dict[str, str]) -> None:
        grant = self.ctx.get(m.grant_key(self.source, a["grant_id"]))
        if grant is not None:
            grant["until_ms"] = min(grant["until_ms"], self.now)
            self.ctx.put(m.grant_key(self.source, a["grant_id"]), grant)

    def _break_glass(self, a: dict[str, str]) -> None:
        if self.rule("break_glass") is not None:
            self.alert(
                "break_glass",
                subject=a.get("doctor", ""),
                detail=f"emergency access to {a.get('patient')} approved by {a.get('actor')}",
                patient=a.get("patient", ""),
            )

    def _consent_window(self, a: dict[str, str]) -> None:
        basis = a.get("basis", "")
        if self.rule("outside_consent_window") is None or not basis.startswith("grant "):
            return
        grant = self.ctx.get(m.grant_key(self.source, basis.split(" ", 1)[1]))
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
            key = m.volume_key(self.source, kind, subject, bucket)
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
        self.ctx.put(m.pending_key(self.source, session), {**a, "opened_ms": self.now})
        self.ctx.put(m.pending_queue_key(self.source, self.now, session), {"session": session})

    def _acknowledged(self, a: dict[str, str]) -> None:
        session = a["session_id"]
        pending = self.ctx.get(m.pending_key(self.source, session))
        if pending is not None:
            self.ctx.delete(m.pending_key(self.source, session))
            self.ctx.delete(m.pending_queue_key(self.source, pending["opened_ms"], session))

    def _overdue(self) -> None:
        rule = self.rule("unacknowledged")
        if rule is None:
            return
        cutoff = self.now - rule["max_ms"]
        due = []
        for key, entry in self.ctx.scan(m.pending_queue_prefix(self.source), limit=1000):
            opened = int(key.rsplit("/", 2)[1])
            if opened > cutoff:
                break  # the queue is in time order
            due.append((key, entry["session"]))
        for key, session in due:
            pending = self.ctx.get(m.pending_key(self.source, session)) or {}
            self.ctx.delete(key)
            self.ctx.delete(m.pending_key(self.source, session))
            self.alert(
                "unacknowledged",
                subject=pending.get("actor", ""),
                detail=f"exchange session {session} for {pending.get('record_id')} was never "
                f"acknowledged within {rule['max_ms'] // 60_000} minutes",
                patient=pending.get("patient", ""),
            )


def init_genesis(ctx: Context) -> None:
    """The rules, all enabled with their default limits."""
    for name, params in sorted(m.DEFAULT_RULES.items()):
        ctx.put(m.rule_key(name), {"enabled": True, "params": params})
