"""Cross-chain hash-time locks: vocabulary, state records and keys.

Two MedChain networks swap atomically. The party that knows a secret preimage
locks first (on chain B, with the later deadline); the other party locks second
(on chain A, earlier deadline) after its chain checked, through its light
client of B, that B holds the first lock with the same SM3 hashlock, paying it,
with the agreed terms and a later deadline. Claiming either lock publishes the
preimage, so the other can be claimed too; if nobody claims, both refund after
their timeouts. Timeouts are heights of the lock's own chain.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

NAMESPACE = "htlc"

TOKEN, GRANT = "token", "grant"
AssetKind = Literal["token", "grant"]
LOCKED, CLAIMED, REFUNDED = "locked", "claimed", "refunded"

HASHLOCK_BYTES = 32
MIN_PREIMAGE_BYTES, MAX_PREIMAGE_BYTES = 16, 64
MAX_TIMEOUT_BLOCKS = 100_000  # how far ahead a lock may time out
# The first lock must outlive the second by at least this many blocks (as far as this
# chain knows the other's height), so the second locker has time to claim there.
MIN_DEADLINE_MARGIN = 2
ROOTS_KEPT = 64  # verified app hashes kept per counterparty (the oldest go first)
# A CometBFT counterparty's followed validator set is trusted for this long (this
# chain's block time) after the last header verified under it: a set that left long ago
# cannot sign headers that a client which slept through the change would still take.
# An expired client is registered again (by governance on a vote chain). Only this
# chain's clock is used: the two chains' block times are never compared.
TRUSTING_PERIOD_MS = 7 * 24 * 3_600_000
MAX_GRANT_MS = 365 * 86_400_000
MAX_LOCKS_LISTED = 200


class Counterpart(TypedDict):
    """Where a second lock's counterpart is, as the light client proved it."""

    chain: str
    lock_id: str
    height: int  # the counterparty state height the proof was checked at
    timeout_height: int
    asset: dict[str, Any]


class Lock(TypedDict):
    """`htlc/lock/<lock id>`."""

    lock_id: str
    locker: str
    recipient: str
    hashlock: bytes
    asset: dict[str, Any]  # {"kind": "token", "amount"} or {"kind": "grant", ...}
    timeout_height: int
    status: str
    height: int
    time_ms: int
    counterpart: NotRequired[Counterpart]
    preimage: NotRequired[bytes]
    closed_by: NotRequired[str]
    closed_height: NotRequired[int]
    grant_id: NotRequired[str]


class Client(TypedDict):
    """`htlc/client/<chain id>`: the light client of one counterparty chain."""

    chain_id: str
    engine: str
    suite: NotRequired[str]  # solo: the node key
    public_key: NotRequired[bytes]
    validators: NotRequired[list[dict[str, Any]]]  # cometbft: the followed set
    header_hash: NotRequired[bytes]  # cometbft: the trusted root header's hash
    root_height: NotRequired[int]  # cometbft: that header's height (header_hash binds it)
    trusted_ms: NotRequired[int]  # cometbft: this chain's time of the last verified header
    height: int  # the highest state height verified (or the trusted root's)
    heights: list[int]  # the state heights whose roots are kept, ascending
    registered_by: str


class Root(TypedDict):
    """`htlc/root/<chain id>/<height>`: an app hash of the counterparty after a block."""

    app_hash: bytes
    time_ms: int


def lock_key(lock_id: str) -> str:
    """Where a lock is kept."""
    return f"{NAMESPACE}/lock/{lock_id}"


def by_height_key(height: int, lock_id: str) -> str:
    """An index entry of locks by the height they were made at (for relayers)."""
    return f"{NAMESPACE}/by_height/{height:020d}/{lock_id}"


def by_height_prefix() -> str:
    """The prefix of the by-height index."""
    return f"{NAMESPACE}/by_height/"


def client_key(chain_id: str) -> str:
    """Where the light client of `chain_id` is kept."""
    return f"{NAMESPACE}/client/{chain_id}"


def root_key(chain_id: str, height: int) -> str:
    """Where the verified app hash of `chain_id` after block `height` is kept."""
    return f"{NAMESPACE}/root/{chain_id}/{height:020d}"


def escrow(lock_id: str) -> str:
    """The token account a lock's tokens wait in."""
    return f"escrow:{NAMESPACE}/{lock_id}"


def public_view(lock: Lock) -> dict[str, Any]:
    """What anyone may see of a lock: enough to relay it (hashlock, status, deadline,
    counterpart, preimage once public), not who offers what to whom."""
    shown: dict[str, Any] = {
        "lock_id": lock["lock_id"],
        "hashlock": lock["hashlock"],
        "asset_kind": lock["asset"]["kind"],
        "timeout_height": lock["timeout_height"],
        "status": lock["status"],
        "height": lock["height"],
    }
    if "counterpart" in lock:
        shown["counterpart"] = {
            "chain": lock["counterpart"]["chain"],
            "lock_id": lock["counterpart"]["lock_id"],
        }
    if "preimage" in lock:
        shown["preimage"] = lock["preimage"]
    return shown
