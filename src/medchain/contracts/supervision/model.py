"""Supervision on the regulator chain: relayed digests, rules, alerts.

The relay hands the regulator chain one digest per business-chain block, in
order, each chained to the last by a running hash:

    running_hash(h) = SM3(DOMAIN || running_hash(h-1) || canonical(digest body h))

so a stored running hash at height h commits to every digest before it:
nothing can be dropped, reordered or altered later without the chain of
hashes breaking. Rules are data (`rule/<name>` with parameters); each digest's
audit events are checked against them and raise alerts.
"""

from __future__ import annotations

from typing import Any, TypedDict

from medchain import encoding
from medchain.core.merkle import merkle_root
from medchain.crypto import sm3

NAMESPACE = "supervision"
RUNNING_DOMAIN = b"medchain/relay/running-hash/v1"
GENESIS_RUNNING_HASH = bytes(32)
MAX_EVENTS = 5000
MAX_PARTS = 10_000
MAX_TXS = 20_000  # results carried by one digest (the tx size limit binds first)
MAX_CHUNKS = 20_000  # result chunks of one relayed block
RESULTS_CHUNK = 32  # txs whose result leaves a chunk root covers (a power of two)
MAX_VALIDATORS = 200

# name -> default parameters (written at the regulator chain's genesis)
DEFAULT_RULES: dict[str, dict[str, int]] = {
    "break_glass": {},
    "duplicate_claim": {},
    "outside_consent_window": {},
    "volume_spike": {"window_ms": 3_600_000, "max_per_actor": 50, "max_per_patient": 50},
    "unacknowledged": {"max_ms": 30 * 60_000},
    "relay_gap": {"max_blocks_behind": 20, "max_silence_ms": 5 * 60_000},
}
ACCESS_EVENTS = frozenset({"exchange.opened", "exchange.accessed"})
OPEN, ACKNOWLEDGED = "open", "acknowledged"  # an alert's status


class Stream(TypedDict):
    """`stream/<source>`: how far a business chain is relayed, and its running hash."""

    source: str
    height: int
    part: int
    parts: int
    first_height: int
    running_hash: bytes
    block_hash: bytes
    block_time_ms: int
    relayed_at_ms: int
    digests: int


class Follow(TypedDict):
    """`finality/<source>`: the CometBFT chain a source is, the validator set that
    signs its next header, and the last verified header's hash. `chunk_roots` and
    `next_tx` hold what is left to check of a block whose parts are still arriving."""

    chain_id: str
    validators: list[dict[str, Any]]
    header_hash: bytes
    chunk_roots: list[bytes]
    next_tx: int


class Rule(TypedDict):
    """`rule/<name>`: whether a rule is on, and its limits."""

    enabled: bool
    params: dict[str, int]


class GrantWindow(TypedDict):
    """`grant/<source>/<grant id>`: when a relayed consent grant was in force."""

    patient: str | None
    from_ms: int
    until_ms: int


def digest_body(
    source: str,
    height: int,
    block_hash: bytes,
    prev_block_hash: bytes,
    app_hash: bytes,
    tx_count: int,
    time_ms: int,
    events: list[dict[str, Any]],
    part: int = 0,
    parts: int = 1,
) -> dict[str, Any]:
    """What a digest says about one business block, or about one part of its audit
    events when they do not fit one transaction (hashed into the running hash)."""
    return {
        "source": source,
        "height": height,
        "part": part,
        "parts": parts,
        "block_hash": block_hash,
        "prev_block_hash": prev_block_hash,
        "app_hash": app_hash,
        "tx_count": tx_count,
        "time_ms": time_ms,
        "events": events,
    }


def chunk_roots(leaves: list[bytes]) -> list[bytes]:
    """The Merkle roots of consecutive RESULTS_CHUNK result leaves. Chunks of a power
    of two, aligned from the first leaf, are whole subtrees of core/merkle.py's tree
    (the last, shorter one is what the tree carries up), so merkle_root over these
    roots is the block's results root: a digest carries the roots, each part the
    results of whole chunks, and every part is checked on its own."""
    return [
        merkle_root(leaves[i : i + RESULTS_CHUNK]) for i in range(0, len(leaves), RESULTS_CHUNK)
    ]


def running_hash(prev: bytes, body: dict[str, Any]) -> bytes:
    """The running hash after `body`, chained to the one before it (see above)."""
    return sm3(RUNNING_DOMAIN + prev + encoding.encode(body))


def stream_prefix() -> str:
    """Every relayed stream."""
    return f"{NAMESPACE}/stream/"


def stream_key(source: str) -> str:
    """A business chain's relayed stream."""
    return f"{stream_prefix()}{source}"


def digest_key(source: str, height: int, part: int = 0) -> str:
    """One digest (a block, or one part of its events)."""
    return f"{NAMESPACE}/digest/{source}/{height:012d}/{part:04d}"


def complete_height(stream: dict[str, Any]) -> int:
    """The last business height whose every part is relayed."""
    done = stream["part"] + 1 == stream["parts"]
    return int(stream["height"]) if done else int(stream["height"]) - 1


def finality_key(source: str) -> str:
    """The CometBFT validator set and verified headers a source's digests follow."""
    return f"{NAMESPACE}/finality/{source}"


def relayer_key(source: str, did: str) -> str:
    """That `did` may relay `source`."""
    return f"{NAMESPACE}/relayer/{source}/{did}"


def rule_key(name: str) -> str:
    """A rule's switch and limits."""
    return f"{NAMESPACE}/rule/{name}"


def alert_prefix() -> str:
    """Every alert."""
    return f"{NAMESPACE}/alert/"


def alert_key(alert_id: str) -> str:
    """One alert."""
    return f"{alert_prefix()}{alert_id}"


def grant_key(source: str, grant_id: str) -> str:
    """The window of a relayed consent grant."""
    return f"{NAMESPACE}/grant/{source}/{grant_id}"


def pending_key(source: str, session_id: str) -> str:
    """An exchange session opened and not yet acknowledged."""
    return f"{NAMESPACE}/pending/{source}/{session_id}"


def pending_queue_prefix(source: str) -> str:
    """Pending sessions of `source` in the order they were opened."""
    return f"{NAMESPACE}/pending-by-time/{source}/"


def pending_queue_key(source: str, time_ms: int, session_id: str) -> str:
    """A pending session's place in the time-ordered queue."""
    return f"{pending_queue_prefix(source)}{time_ms:015d}/{session_id}"


def volume_key(source: str, kind: str, subject: str, bucket: int) -> str:
    """Accesses by one actor or to one patient in one time window."""
    return f"{NAMESPACE}/volume/{source}/{kind}/{subject}/{bucket}"
