"""Blocks, per-transaction results, and the app hash."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from medchain import encoding
from medchain.core.context import Event
from medchain.core.merkle import leaf_hash, merkle_root
from medchain.crypto import sm3
from medchain.exceptions import Code

ZERO_HASH = bytes(32)
APP_HASH_DOMAIN = b"medchain/app-hash/v3"


@dataclass(frozen=True)
class Block:
    """An ordered batch of transactions at one height.

    `time_ms` is chosen by the proposer (solo node or CometBFT header); it is
    the only clock the state machine ever sees.
    """

    chain_id: str
    height: int
    time_ms: int
    txs: tuple[bytes, ...]
    prev_hash: bytes = ZERO_HASH
    proposer: str = ""

    def header(self) -> dict[str, Any]:
        """The fields the block hash commits to: the txs through their root, not their bytes."""
        return {
            "chain_id": self.chain_id,
            "height": self.height,
            "time_ms": self.time_ms,
            "prev_hash": self.prev_hash,
            "txs_root": self.txs_root,
            "proposer": self.proposer,
        }

    @cached_property
    def txs_root(self) -> bytes:
        """Merkle root over the block's txs."""
        return merkle_root([leaf_hash(t) for t in self.txs])

    @cached_property
    def hash(self) -> bytes:
        """SM3 of the canonical header."""
        return sm3(encoding.encode(self.header()))


@dataclass(frozen=True)
class TxResult:
    """Outcome of one transaction in a block."""

    tx_id: bytes
    code: Code
    log: str = ""
    events: tuple[Event, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The result as stored with its block (canonical CBOR)."""
        return {
            "tx_id": self.tx_id,
            "code": int(self.code),
            "log": self.log,
            "events": [e.to_dict() for e in self.events],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TxResult:
        """A result read back from storage (see to_dict)."""
        events = tuple(
            Event(e["type"], tuple(sorted(e["attributes"].items()))) for e in d["events"]
        )
        return cls(d["tx_id"], Code(d["code"]), d["log"], events)


@dataclass(frozen=True)
class BlockResult:
    """Everything apply_block decided, ready to be committed atomically."""

    block: Block
    tx_results: tuple[TxResult, ...]
    writes: Mapping[str, bytes | None] = field(repr=False)
    state_root: bytes
    results_root: bytes
    app_hash: bytes
    state_nodes: Mapping[bytes, bytes] = field(default_factory=dict, repr=False)


def result_leaf(result: TxResult) -> bytes:
    """A tx result as a Merkle leaf: its id, code and events, canonically encoded.

    The log is left out, as CometBFT leaves Log out of LastResultsHash: it is
    text for people, so its wording may improve without forking the chain.
    What an auditor relies on (the code, and every audit event with its
    reason) is committed.
    """
    committed = {k: v for k, v in result.to_dict().items() if k != "log"}
    return leaf_hash(encoding.encode(committed))


def results_root(results: Sequence[TxResult]) -> bytes:
    """Merkle root over a block's tx results, in block order."""
    return merkle_root([result_leaf(r) for r in results])


def compute_app_hash(height: int, state_root: bytes, results_root: bytes) -> bytes:
    """The app hash commits to the whole state after this block (the sparse Merkle
    root) and to what every tx of the block did (codes and events).

    Two nodes with the same app hash hold the same state; a key's value, or an
    audit event, is provable against it (see core/proofs.py).
    """
    return sm3(APP_HASH_DOMAIN + height.to_bytes(8, "big") + state_root + results_root)


def results_to_cbor(results: Sequence[TxResult]) -> bytes:
    """Canonical encoding of a block's results, for the block store."""
    return encoding.encode([r.to_dict() for r in results])
