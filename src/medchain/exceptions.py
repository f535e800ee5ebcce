"""The two kinds of failure, after Sawtooth.

InvalidTransaction: the transaction is wrong. Every honest node rejects it the
same way, with the same code, so the code is part of consensus.

InternalError: this node is broken (disk, bug, corrupted store). The node stops
rather than risk computing a state that diverges from its peers.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Code(IntEnum):
    """Result codes of a transaction. Stable: they are stored in blocks."""

    OK = 0
    MALFORMED = 1
    TOO_LARGE = 2
    BAD_SIGNATURE = 3
    WRONG_CHAIN = 4
    BAD_NONCE = 5
    UNKNOWN_SIGNER = 6
    SIGNER_INACTIVE = 7
    UNKNOWN_CONTRACT = 8
    UNKNOWN_ACTION = 9
    INVALID_PAYLOAD = 10
    UNAUTHORIZED = 11
    NOT_FOUND = 12
    ALREADY_EXISTS = 13
    INVALID_STATE = 14
    UNKNOWN_SUITE = 15
    MEMPOOL_FULL = 16
    DUPLICATE_TX = 17
    INVALID_PROOF = 18  # a zero-knowledge proof that does not verify (zk.prove)


class MedChainError(Exception):
    """Base of every error MedChain raises on purpose."""


class InvalidTransaction(MedChainError):
    """A deterministic rejection of one transaction, with a stable code.

    `audit` events survive the rollback: a refused access request leaves no
    state behind, but its refusal is still in the block's results, so audit
    views can show who was turned away and why.
    """

    def __init__(self, code: Code, message: str, audit: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.audit = audit

    def __repr__(self) -> str:
        return f"InvalidTransaction({self.code.name}, {self.message!r})"


class InternalError(MedChainError):
    """This node cannot go on safely; stop rather than diverge."""
