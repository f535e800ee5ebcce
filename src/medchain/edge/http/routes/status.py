"""Which org an edge serves and how far its view of the chain has synced."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from medchain.edge.http.deps import Edge, request_signer
from medchain.metrics.http import Check, failed_checks

router = APIRouter()


@router.get("/edge/v1/status", summary="Which org this edge serves and how far it has synced")
def status(edge: Edge) -> dict[str, Any]:
    """The org this edge serves, how many records it holds and how far it has followed
    the chain."""
    return edge.status()


@router.get(
    "/edge/v1/staff/status",
    summary="The edge's status for its own organisation's staff (signed): the public "
    "status plus readiness and the node it follows",
)
async def staff_status(edge: Edge, request: Request) -> dict[str, Any]:
    """What the organisation's admins watch (the portal's edge page): the public status,
    which readiness checks fail now and which node the edge follows. Staff of this
    organisation only (401 unsigned, 403 anyone else), as for imports."""
    signer = request_signer(edge, request)
    await run_in_threadpool(edge.staff_of_this_org, signer)
    checks: list[Check] = request.app.state.readiness
    failed = await run_in_threadpool(failed_checks, checks)
    return {**edge.status(), "ready": not failed, "failed": failed, "node": edge.node.url}
