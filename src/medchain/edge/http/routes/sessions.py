"""Delivery for an exchange session the chain opened: the record's ciphertext and
its key wrapped for the requester, who signs the fetch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from medchain.edge.http.deps import Edge, request_signer_once

router = APIRouter()


@router.post(
    "/edge/v1/sessions/{session_id}/fetch",
    summary="Ciphertext and a wrapped key for an open session (signed by its requester)",
)
async def fetch(
    edge: Edge,
    session_id: str,
    request: Request,
    height: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="the block that opened the session"),
    ] = None,
) -> dict[str, str]:
    """The requester's ciphertext and wrapped key. `height` lets an edge whose node
    is a block or two behind the requester's wait briefly for it."""
    signer = request_signer_once(edge, request, await request.body())
    delivery = await run_in_threadpool(edge.deliver, session_id, signer, height)
    request.app.state.edge_metrics.sessions_served.inc()
    return delivery.to_json()
