"""Cross-hospital referrals: one referral, its timeline, and the referrals of a
patient or a hospital. Changes go through signed transactions (referral.*,
exchange.*, consent.revoke); these routes only read committed state and the
node's audit index.

Who may see what (docs/referral.md):

- A referral and its timeline: the patient (or their guardian); the doctors it
  names or who acted on it; the physicians and org admins of the referring and the
  receiving hospital; regulators and node operators. Everyone else gets one 403,
  the same whether or not the referral exists, so a stranger cannot learn who was
  referred where. (Operators and regulators, who may see everything, get a 404
  for a referral that does not exist.)
- A patient's referrals: the patient's side, regulators and operators.
- A hospital's referrals (sent and received): its physicians and org admins,
  regulators and operators. Anyone else: the same 403.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query

from medchain.consensus.engine import Engine as ChainEngine
from medchain.contracts.consent.model import grant_key
from medchain.contracts.exchange import model as exchange
from medchain.contracts.referral import model as referral_model
from medchain.exceptions import Code, InvalidTransaction
from medchain.gateway import policy
from medchain.gateway.auth import SIGNED, Caller, SignedCaller
from medchain.gateway.deps import Engine, getter, history_from, scanner
from medchain.gateway.errors import Forbidden, NotFound
from medchain.gateway.routes.health import answer_time_ms, grant_view
from medchain.gateway.schemas import to_json

router = APIRouter(prefix="/v1", tags=["referrals"])

REFUSED = (
    "a referral is for its patient (or guardian), the staff of the two hospitals "
    "involved, and regulators"
)
HINT = "sign with the key of the patient, of a doctor it names, or of one of its hospitals"
MAX_LIST = 1000
# How many audit rows of one package record a timeline reads to find its sessions.
AUDIT_PAGE, AUDIT_PAGES = 1000, 20


def may_see(caller: Caller, get: policy.Get, referral: referral_model.Referral) -> bool:
    """The module docstring's rule for one referral."""
    return (
        caller.supervises
        or policy.speaks_for(caller, get, referral["patient"])
        or referral_model.involved(referral, caller.did, caller.org_id, caller.roles)
    )


def visible_referral(
    engine: ChainEngine, caller: Caller, referral_id: str
) -> referral_model.Referral:
    """The referral if the caller may see it; one 403 for everyone else, found or not."""
    get = getter(engine)
    found: referral_model.Referral | None = get(referral_model.referral_key(referral_id))
    if found is None:
        if caller.supervises:
            raise NotFound(f"no referral {referral_id!r}")
        raise Forbidden(REFUSED, HINT)
    if not may_see(caller, get, found):
        raise Forbidden(REFUSED, HINT)
    return found


def referral_view(engine: ChainEngine, referral: referral_model.Referral) -> dict[str, Any]:
    """A referral with the status to act on now and the grants it issued."""
    get, now = getter(engine), answer_time_ms(engine)
    grant = get(grant_key(referral["grant_id"])) if "grant_id" in referral else None
    view = dict(to_json(referral))
    view["effective_status"] = referral_model.effective_status(referral, grant, now)
    view["grant"] = None if grant is None else grant_view(grant, now)
    return view


def sessions_under(engine: ChainEngine, grant_id: str, record_ids: list[str]) -> Iterator[Any]:
    """The exchange sessions opened under `grant_id` for the package's records: the
    audit index's `exchange.opened` rows of each record whose basis is that grant."""
    db, get = engine.app.db, getter(engine)
    basis = f"grant {grant_id}"
    for record_id in record_ids:
        after = 0
        for _ in range(AUDIT_PAGES):
            rows = db.audit(record_id=record_id, after=after, limit=AUDIT_PAGE)
            for row in rows:
                attributes = row["attributes"]
                if row["kind"] == "exchange.opened" and attributes.get("basis") == basis:
                    session = get(exchange.session_key(attributes["session_id"]))
                    if session is not None:
                        yield session
            if len(rows) < AUDIT_PAGE:
                break
            after = rows[-1]["seq"]


def block_time(engine: ChainEngine, height: int) -> int | None:
    """A committed block's time, or None if this node does not hold that block."""
    block = engine.app.db.block(height)
    return None if block is None else int(block["header"]["time_ms"])


@router.get(
    "/referrals/{referral_id}",
    summary="One referral: parties, package, status, the grants it issued (patient side, "
    "the two hospitals' staff involved, regulators)",
    openapi_extra=SIGNED,
)
def referral(referral_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """Where a referral stands. `effective_status` says "revoked" once the patient
    revoked its grant and "expired" once its time ran out, whatever its last step."""
    return referral_view(engine, visible_referral(engine, caller, referral_id))


@router.get(
    "/referrals/{referral_id}/timeline",
    summary="Every step of a referral with its block time: requested, approved, fetched "
    "(exchange sessions), accepted, reported, revoked (same readers as the referral)",
    openapi_extra=SIGNED,
)
def referral_timeline(referral_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """The referral's own steps, each exchange session its grant allowed (opened,
    released, acknowledged) and the grant's revocation, oldest first. Sessions are
    found through this node's audit index: a node that joined by state sync lists
    only those after its first block (`history_from`)."""
    found = visible_referral(engine, caller, referral_id)
    get = getter(engine)
    grant = get(grant_key(found["grant_id"])) if "grant_id" in found else None
    sessions = (
        list(sessions_under(engine, found["grant_id"], referral_model.package_scope(found)))
        if "grant_id" in found
        else []
    )
    steps = referral_model.timeline(found, grant, sessions, lambda h: block_time(engine, h))
    requested, last = steps[0]["time_ms"], steps[-1]["time_ms"]
    return {
        "referral_id": referral_id,
        "effective_status": referral_view(engine, found)["effective_status"],
        "history_from": history_from(engine),
        "elapsed_ms": None if last is None else last - requested,
        "steps": [to_json(s) for s in steps],
    }


@router.get(
    "/referrals",
    summary="The referrals of a patient (patient side, regulators) or of a hospital, "
    "sent and received (its physicians and org admins, regulators)",
    openapi_extra=SIGNED,
)
def referrals(
    engine: Engine,
    caller: SignedCaller,
    patient: Annotated[str | None, Query(max_length=200)] = None,
    org: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> list[dict[str, Any]]:
    """Exactly one of `patient` or `org`; the same 403 to anyone else."""
    get = getter(engine)
    if (patient is None) == (org is None):
        raise InvalidTransaction(Code.MALFORMED, "name exactly one of patient=<DID> or org=<id>")
    if patient is not None:
        allowed = policy.may_see_patient(caller, get, patient)
        prefix = referral_model.by_patient_prefix(patient)
    elif org is not None:
        allowed = caller.supervises or (
            policy.is_staff_of(caller, org)
            and bool((referral_model.PHYSICIAN_ROLES | {"org_admin"}) & caller.roles)
        )
        prefix = referral_model.by_org_prefix(org)
    if not allowed:
        raise Forbidden(REFUSED, HINT)
    views = []
    for _, entry in scanner(engine, limit=limit)(prefix):
        found = get(referral_model.referral_key(entry["referral_id"]))
        if found is not None:
            views.append(referral_view(engine, found))
    return views
