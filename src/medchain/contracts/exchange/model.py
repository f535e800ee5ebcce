"""Exchange vocabulary, state records and every state key of the exchange contract.

State records are TypedDicts: a session is stored as the plain map it always
was, so typing it changes neither the bytes nor the app hash.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from medchain import crypto

NAMESPACE = "exchange"

# How long a session stays open for the custodian's release.
SESSION_MS = 10 * 60_000
# How many records one direct read may ask for.
MAX_ACCESS_RECORDS = 100

# A session's life: open -> released -> closed (the hash matched) or disputed.
OPEN, RELEASED, CLOSED, DISPUTED = "open", "released", "closed", "disputed"


class Session(TypedDict):
    """One authorised transfer of a record from its custodian to a requester."""

    session_id: str
    record_id: str
    patient: str
    custodian: str
    requester: str
    requester_key: bytes
    purpose: str
    basis: str  # why the consent decision allowed it
    status: str
    opened_height: int
    opened_time_ms: int
    expires_ms: int
    released_by: NotRequired[str]
    released_height: NotRequired[int]
    acked_height: NotRequired[int]


class ServedMark(TypedDict):
    """A signed read request that was put on chain, at this height."""

    height: int


SESSION_PREFIX = f"{NAMESPACE}/session/"


def session_key(session_id: str) -> str:
    """Where an exchange session lives."""
    return f"{SESSION_PREFIX}{session_id}"


def session_id_of(tx_id: bytes) -> str:
    """A session's id: the first half of the id of the tx that opened it."""
    return tx_id.hex()[:32]


def served_key(signature: bytes) -> str:
    """Marks a signed read request as served: each one is put on chain once."""
    return f"{NAMESPACE}/served/{crypto.sm3(signature).hex()}"
