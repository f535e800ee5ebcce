"""The edge's audit log of refusals (edge/http/audit.py records them), served to
the regulator in full and to a patient for the entries that name them, each with
its proof against the root the edge anchored on chain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from medchain.edge.http.deps import Edge, request_signer
from medchain.gateway.schemas import to_json

router = APIRouter()


@router.get(
    "/edge/v1/audit-log",
    summary="This edge's refusals, with proofs against its anchors on chain "
    "(signed: a regulator sees all, a patient the entries that name them)",
)
async def audit_log(
    edge: Edge,
    request: Request,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """A page of entries after sequence number `after`; an entry not yet anchored
    has no proof (anchor is null) until the edge's next anchor commits."""
    signer = request_signer(edge, request)
    member = await run_in_threadpool(edge.caller_member, signer)
    log = edge.audit_log
    if "regulator" in member["roles"]:
        page = await run_in_threadpool(log.entries, after, limit)
    else:
        page = await run_in_threadpool(log.entries_naming, "patient", member["did"], after, limit)
    out = []
    for seq, entry in page:
        proven = log.proof(seq)
        item: dict[str, Any] = {"seq": seq, "entry": entry, "anchor": None}
        if proven is not None:
            run, path = proven
            item["anchor"] = {
                "first_seq": run.first_seq,
                "last_seq": run.last_seq,
                "root": run.root,
                "path": [[left, sibling] for left, sibling in path],
            }
        out.append(item)
    return dict(to_json({"org_id": edge.org_id, "entries": out}))
