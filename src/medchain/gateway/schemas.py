"""Pydantic models at the edge, and JSON rendering of on-chain values."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


def to_json(value: Any) -> Any:
    """On-chain values for JSON: bytes become lower-case hex strings."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


class TxIn(BaseModel):
    """A signed transaction, as hex of its canonical CBOR wire bytes."""

    tx: str = Field(description="hex of the signed transaction bytes", max_length=2 * 1024 * 1024)


MAX_BATCH = 1000


class TxBatchIn(BaseModel):
    """Signed transactions, each as hex; checked and queued in order."""

    txs: list[str] = Field(max_length=MAX_BATCH)


class TxIdsIn(BaseModel):
    """Transaction ids (hex) to wait for."""

    tx_ids: list[str] = Field(max_length=MAX_BATCH)


class EventOut(BaseModel):
    """An event a committed tx emitted (audit events among them)."""

    type: str
    attributes: dict[str, str]


class TxResultOut(BaseModel):
    """Where a submitted tx stands, and its result once committed or refused."""

    tx_id: str
    status: str = Field(description="pending | committed | refused | unknown")
    height: int | None = None
    index: int | None = None
    code: int | None = None
    code_name: str | None = None
    log: str | None = None
    events: list[EventOut] = []


class StatusOut(BaseModel):
    """The chain's height, hashes and clock, as GET /status answers."""

    chain_id: str
    engine: str
    height: int
    app_hash: str
    last_block_hash: str
    last_block_time_ms: int = Field(description="the chain's clock for expiries")
    last_block_unverified: str = Field(
        default="",
        description="on a node restored by state sync, while the restored height is the "
        "last one: why last_block_hash and last_block_time_ms are not verified ('' else)",
    )
    mempool_size: int
    contracts: list[str]


class AccountOut(BaseModel):
    """A public key's DID, status and next nonce, as GET /accounts answers."""

    key_id: str
    did: str | None
    status: str
    next_nonce: int
