"""Identity views: DID documents and organisations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from medchain import encoding
from medchain.contracts.identity import model as identity
from medchain.gateway.deps import Engine, read
from medchain.gateway.schemas import to_json

router = APIRouter(prefix="/v1/identity", tags=["identity"])


@router.get("/dids/{did}", summary="The W3C DID document of a member")
def did_document(did: str, engine: Engine) -> dict[str, Any]:
    """A member's W3C DID document with its public keys, for anyone verifying that
    member's signatures off chain; 404 for an unknown DID."""
    member = read(engine, identity.did_key(did), f"DID {did}")
    return dict(to_json(identity.did_document(member)))


@router.get("/orgs", summary="All organisations")
def orgs(engine: Engine) -> list[Any]:
    """Every organisation of the consortium (up to 1000), for anyone choosing a custodian
    or a grantee."""
    return [to_json(encoding.decode(v)) for _, v in engine.app.db.scan(identity.ORG_PREFIX, 1000)]


@router.get("/orgs/{org_id}", summary="One organisation")
def org(org_id: str, engine: Engine) -> dict[str, Any]:
    """One organisation's registration (name, type, status), for anyone; 404 when unknown."""
    return dict(to_json(read(engine, identity.org_key(org_id), f"organisation {org_id}")))
