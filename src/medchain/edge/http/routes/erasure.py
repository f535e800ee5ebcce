"""Erasure at the custodian: a record the chain has erased is destroyed here, and
its signed purge receipt stays readable."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from medchain.edge.http.deps import Edge
from medchain.gateway.schemas import to_json

router = APIRouter()

# A record id as the records contract accepts it: anything else never reaches the node's URLs.
RecordId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


@router.post(
    "/edge/v1/records/{record_id}/purge",
    summary="Destroy a record the chain has erased; returns the signed purge receipt",
)
def purge(edge: Edge, record_id: RecordId) -> dict[str, Any]:
    """Refused unless the chain has erased the record, so the vault never drops what
    the ledger still points to."""
    return dict(to_json(edge.purge(record_id)))


@router.get("/edge/v1/receipts/{record_id}", summary="The purge receipt of an erased record")
def receipt(edge: Edge, record_id: RecordId) -> dict[str, Any]:
    """The receipt this edge signed when it destroyed the record: proof of erasure."""
    return dict(to_json(edge.vault.receipt(record_id)))
