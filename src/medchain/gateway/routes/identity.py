"""Identity views: DID documents and organisations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from medchain import encoding
from medchain.contracts.identity import model as identity
from medchain.gateway import policy
from medchain.gateway.auth import SIGNED, SignedCaller
from medchain.gateway.deps import Engine, read
from medchain.gateway.errors import Forbidden
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


MAX_MEMBER_SCAN = 20_000  # member records read for one answer (patients are members too)


@router.get(
    "/orgs/{org_id}/members",
    summary="An organisation's members: DID, name, roles, status (its staff, node operators)",
    openapi_extra=SIGNED,
)
def org_members(org_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """Who works for an organisation, for its admins to manage: its own staff and the
    node's operators may ask (403 for anyone else; the organisation itself is public).
    `complete` is false when more member records exist than one answer reads."""
    read(engine, identity.org_key(org_id), f"organisation {org_id}")
    if not policy.may_see_members(caller, org_id):
        raise Forbidden(
            f"only staff of {org_id} and node operators may list its members",
            "sign with a key of that organisation",
        )
    db = engine.app.db
    with db.snapshot():
        rows = list(db.scan(identity.did_key(""), MAX_MEMBER_SCAN + 1))
        height = db.height
    members = []
    for _, raw in rows[:MAX_MEMBER_SCAN]:
        m = encoding.decode_trusted(raw)
        if m.get("org_id") == org_id:
            members.append(
                {k: m.get(k) for k in ("did", "name", "roles", "status", "updated_height")}
            )
    return {
        "org_id": org_id,
        "height": height,
        "members": members,
        "complete": len(rows) <= MAX_MEMBER_SCAN,
    }
