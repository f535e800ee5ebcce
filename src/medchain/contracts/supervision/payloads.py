"""Typed payloads of the supervision contract, validated before any state read.

A digest's audit events are typed too: each is exactly {tx, type, attributes}
with text attributes, and an event type a rule reads must carry what the rule
reads (a grant id, a session id, a number of milliseconds). The business chain
never emits anything else, so a digest that does was forged or corrupted; it
is refused here rather than crash every validator inside a rule.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from medchain.contracts.payload import Payload, whole
from medchain.contracts.supervision.model import (
    DEFAULT_RULES,
    MAX_CHUNKS,
    MAX_EVENTS,
    MAX_PARTS,
    MAX_TXS,
    MAX_VALIDATORS,
)
from medchain.crypto.cometbft import Commit, Header, Validator

Source = Annotated[
    str,
    msgspec.Meta(pattern=whole("[A-Za-z0-9._-]{1,64}"), description="the business chain's name"),
]
# Heights, counts and times fit the 8 bytes the app hash and CBOR give them (and
# msgspec's int64 bounds): a negative or huge value is refused before any state read.
Height = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
TimeMs = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
BlockHash = Annotated[bytes, msgspec.Meta(max_length=64)]
RuleName = Literal[
    "break_glass",
    "duplicate_claim",
    "outside_consent_window",
    "volume_spike",
    "unacknowledged",
    "relay_gap",
]

# What the rules read from an event, by type: present and not empty.
RULE_INPUTS: dict[str, tuple[str, ...]] = {
    "consent.granted": ("grant_id",),
    "consent.revoked": ("grant_id",),
    "exchange.opened": ("session_id",),
    "exchange.acknowledged": ("session_id",),
}


class AuditEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One audit event of a relayed block, as the business chain emitted it."""

    tx: int
    type: str
    attributes: dict[str, str]

    def __post_init__(self) -> None:
        """What the rules read from this kind of event is there."""
        for name in RULE_INPUTS.get(self.type, ()):
            if not self.attributes.get(name):
                raise ValueError(f"a {self.type} event has no {name}")
        if self.type == "consent.granted":
            expires = self.attributes.get("expires_ms", "0")
            if not (
                expires == "" or (expires.isascii() and expires.isdigit() and len(expires) < 20)
            ):
                raise ValueError("expires_ms must be a number of milliseconds")


class CometSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A business chain run by CometBFT: its chain id and the validator set that signs
    the header after `from_height` + 1 (from genesis: the genesis validators)."""

    chain_id: Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
    validators: Annotated[list[Validator], msgspec.Meta(min_length=1, max_length=MAX_VALIDATORS)]

    def __post_init__(self) -> None:
        """Each validator once (the Validator type checks key length and power)."""
        if len({v.pub_key for v in self.validators}) != len(self.validators):
            raise ValueError("validators: each ed25519 public key once")


class AuthorizeRelayerPayload(Payload, frozen=True, kw_only=True):
    """supervision.authorize_relayer: a member may relay `source`, starting after
    `from_height` (-1: from the business chain's genesis block). `cometbft`, given
    when the stream starts, makes every digest prove its block final (see Finality)."""

    source: Source
    relayer: str
    from_height: Annotated[int, msgspec.Meta(ge=-1, lt=2**63 - 1)] = -1
    cometbft: CometSource | None = None


class EventIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One event of a relayed tx result."""

    type: str
    attributes: dict[str, str]


class TxResultIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One tx result of a relayed block as the business chain committed it (the log
    aside): what its result leaf in the app hash covers."""

    tx_id: bytes
    code: Annotated[int, msgspec.Meta(ge=0, lt=2**16)]
    events: list[EventIn]


class Finality(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What makes block `height` of a CometBFT source final and binds the digest to it
    (on part 0): `header` is CometBFT header height + 1 (it carries the app hash after
    block height) with its `commit`; `block_header` is header `height` (its time is the
    block's; absent for the genesis block 0); `state_root` and the `chunk_roots` of
    the txs' result leaves (model.chunk_roots) recompute that app hash;
    `next_validators` is the set that signs the next header when
    `header.next_validators_hash` announces a change."""

    header: Header
    commit: Commit
    block_header: Header | None
    state_root: bytes
    chunk_roots: Annotated[list[bytes], msgspec.Meta(max_length=MAX_CHUNKS)]
    next_validators: Annotated[list[Validator], msgspec.Meta(max_length=MAX_VALIDATORS)] = (
        msgspec.field(default_factory=list)
    )


class DigestPayload(Payload, frozen=True, kw_only=True):
    """supervision.digest: one business block, or one part of its audit events when
    they do not fit one transaction, chained to the last by `running_hash`."""

    source: Source
    height: Height
    part: Annotated[int, msgspec.Meta(ge=0)]
    parts: Annotated[int, msgspec.Meta(ge=1, le=MAX_PARTS)]
    block_hash: BlockHash
    prev_block_hash: BlockHash
    app_hash: bytes
    tx_count: Count
    time_ms: TimeMs
    events: Annotated[list[AuditEvent], msgspec.Meta(max_length=MAX_EVENTS)]
    running_hash: bytes
    # A CometBFT source only: finality on part 0; each part carries the full results
    # of whole chunks of txs from first_tx on (every tx of the block, in order).
    finality: Finality | None = None
    first_tx: Count = 0
    results: Annotated[list[TxResultIn], msgspec.Meta(max_length=MAX_TXS)] = msgspec.field(
        default_factory=list
    )

    def __post_init__(self) -> None:
        """A part of the block's parts; finality, if any, on part 0."""
        if self.part >= self.parts:
            raise ValueError(f"part must be below parts (at most {MAX_PARTS})")
        if self.finality is not None and self.part != 0:
            raise ValueError("finality goes with part 0 only")


class ReportLagPayload(Payload, frozen=True, kw_only=True):
    """supervision.report_lag: a regulator saw the business chain at `head_height`."""

    source: Source
    head_height: Annotated[int, msgspec.Meta(ge=-1, le=2**63 - 1)]


class SetRulePayload(Payload, frozen=True, kw_only=True):
    """supervision.set_rule: turn a rule on or off; `params` overrides some of its
    default limits, each a positive integer."""

    rule: RuleName
    enabled: bool
    params: dict[str, Annotated[int, msgspec.Meta(gt=0)]] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        """Only the limits the rule has."""
        known = DEFAULT_RULES[self.rule]
        if set(self.params) - set(known):
            raise ValueError(f"params of {self.rule}: positive integers among {sorted(known)}")


class AckAlertPayload(Payload, frozen=True, kw_only=True):
    """supervision.ack_alert: a regulator acknowledges an alert, with a note (the
    first 500 characters are kept)."""

    alert_id: str
    note: str
