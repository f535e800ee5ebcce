"""Governance views: parameters, proposals with their tally, contract activations.

Changes go through signed transactions (governance.propose / vote / execute);
these routes only read committed state. Governance is the consortium's own
business and auditable by its members: any signed member may read it, nobody
unsigned. A proposal's view adds where it stands at the node's height (voting,
timelock, executable, closable, executed, rejected) and the outcome its tally
would give now, so a member can see whether an `execute` would apply it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from medchain.consensus.engine import Engine as ChainEngine
from medchain.contracts.governance import model
from medchain.contracts.governance.mode import governed_by_vote
from medchain.gateway.auth import SIGNED, SignedCaller
from medchain.gateway.deps import Engine, getter, scanner
from medchain.gateway.errors import NotFound
from medchain.gateway.schemas import to_json

router = APIRouter(prefix="/v1/governance", tags=["governance"])
MAX_LIST = 500


def proposal_view(engine: ChainEngine, proposal: model.Proposal) -> dict[str, Any]:
    """A proposal as stored, with its phase and the outcome of its tally at this height."""
    height = engine.app.db.height
    return dict(to_json(proposal)) | {
        "phase": model.phase(proposal, height),
        "outcome_now": proposal["outcome"] or model.outcome(proposal),
        "height": height,
    }


@router.get(
    "/params",
    summary="The governance mode and parameters in force (any signed member)",
    openapi_extra=SIGNED,
)
def params(engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """Mode ("vote" or "admin", fixed at genesis), base weight, quorum, threshold,
    voting period and timelock."""
    get = getter(engine)
    return {"mode": "vote" if governed_by_vote(get) else "admin", **model.params(get)}


@router.get(
    "/proposals",
    summary="Proposals, newest first, optionally of one status (any signed member)",
    openapi_extra=SIGNED,
)
def proposals(
    engine: Engine,
    caller: SignedCaller,
    status: Annotated[str | None, Query(pattern="^(open|executed|rejected)$")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> list[dict[str, Any]]:
    """Each proposal with its tally and phase (a bounded scan of the newest ids)."""
    get = getter(engine)
    newest = int(get(model.COUNTER_KEY) or 0)
    found = []
    for pid in range(newest, max(0, newest - MAX_LIST), -1):
        proposal = get(model.proposal_key(pid))
        if proposal is not None and (status is None or proposal["status"] == status):
            found.append(proposal_view(engine, proposal))
        if len(found) >= limit:
            break
    return found


@router.get(
    "/proposals/{proposal_id}",
    summary="One proposal: its change, electorate, votes, tally and phase (any signed member)",
    openapi_extra=SIGNED,
)
def proposal(proposal_id: int, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """The proposal, who voted what with which weight, and where it stands."""
    found = getter(engine)(model.proposal_key(proposal_id)) if proposal_id > 0 else None
    if found is None:
        raise NotFound(f"no proposal {proposal_id}")
    return proposal_view(engine, found)


@router.get(
    "/activations",
    summary="Contract versions the consortium decided to run, and from when (any signed member)",
    openapi_extra=SIGNED,
)
def activations(engine: Engine, caller: SignedCaller) -> list[dict[str, Any]]:
    """The recorded decisions; the node runs the versions its software registers."""
    return [to_json(a) for _, a in scanner(engine, limit=MAX_LIST)(model.ACTIVATION_PREFIX)]
