"""Identity views: DID documents and organisations."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from medchain import encoding
from medchain.consensus.solo import SoloEngine
from medchain.contracts.identity import model as identity
from medchain.gateway.deps import get_engine
from medchain.gateway.errors import NotFound
from medchain.gateway.schemas import to_json

router = APIRouter(prefix="/v1/identity", tags=["identity"])
Engine = Annotated[SoloEngine, Depends(get_engine)]


def _get(engine: SoloEngine, key: str, what: str) -> Any:
    raw = engine.app.db.get(key)
    if raw is None:
        raise NotFound(f"no {what}")
    return encoding.decode(raw)


@router.get("/dids/{did}", summary="The W3C DID document of a member")
def did_document(did: str, engine: Engine) -> dict[str, Any]:
    member = _get(engine, identity.did_key(did), f"DID {did}")
    return dict(to_json(identity.did_document(member)))


@router.get("/orgs", summary="All organisations")
def orgs(engine: Engine) -> list[Any]:
    return [to_json(encoding.decode(v)) for _, v in engine.app.db.scan("identity/org/", 1000)]


@router.get("/orgs/{org_id}", summary="One organisation")
def org(org_id: str, engine: Engine) -> dict[str, Any]:
    return dict(to_json(_get(engine, identity.org_key(org_id), f"organisation {org_id}")))
