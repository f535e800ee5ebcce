"""Which org an edge serves and how far its view of the chain has synced."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from medchain.edge.http.deps import Edge

router = APIRouter()


@router.get("/edge/v1/status", summary="Which org this edge serves and how far it has synced")
def status(edge: Edge) -> dict[str, Any]:
    """The org this edge serves, how many records it holds and how far it has followed
    the chain."""
    return edge.status()
