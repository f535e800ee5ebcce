"""FHIR R4 read endpoints: Consent, AuditEvent and Provenance built from the ledger.

Signed reads, cut to what the caller may see, by the same policy as the JSON
views (gateway/policy.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from medchain.contracts.consent import model as consent
from medchain.contracts.records.model import record_key
from medchain.fhir import export
from medchain.gateway import policy
from medchain.gateway.auth import SIGNED, SignedCaller
from medchain.gateway.deps import (
    HISTORY_HEADER,
    Engine,
    getter,
    history_from,
    with_history_outcome,
)
from medchain.gateway.limits import MAX_SQL_INT
from medchain.gateway.routes.health import (
    MAX_PAGE,
    audit_rows,
    record_visible_to,
    visible,
    visible_grants,
)

router = APIRouter(prefix="/fhir", tags=["FHIR R4"])
FHIR_JSON = "application/fhir+json"


def _fhir(resource: dict[str, Any]) -> JSONResponse:
    return JSONResponse(resource, media_type=FHIR_JSON)


@router.get(
    "/Consent/{grant_id}", summary="A consent grant as a FHIR Consent", openapi_extra=SIGNED
)
def consent_by_id(grant_id: str, engine: Engine, caller: SignedCaller) -> JSONResponse:
    """One grant as a FHIR R4 Consent, for the patient side, the grantee (or its
    organisation's staff) and regulators; 404 to anyone else, as for a missing grant."""
    key = consent.grant_key(grant_id)
    grant = visible(engine, caller, key, f"grant {grant_id!r}", policy.may_see_grant)
    return _fhir(export.consent_resource(grant, engine.app.db.block_time_ms()))


@router.get(
    "/Consent",
    summary="A patient's grants the caller may see, as a FHIR searchset Bundle",
    openapi_extra=SIGNED,
)
def consent_search(
    engine: Engine, caller: SignedCaller, patient: Annotated[str, Query(max_length=200)]
) -> JSONResponse:
    """A FHIR searchset of the patient's grants the caller may see: all of them for the
    patient side or a regulator, those naming the caller otherwise."""
    now = engine.app.db.block_time_ms()
    grants = visible_grants(engine, caller, patient)
    return _fhir(export.searchset([export.consent_resource(g, now) for g in grants]))


@router.get(
    "/AuditEvent",
    summary="Audit trail as a FHIR searchset Bundle of AuditEvents "
    "(by patient, agent or entity = record id); only the events the caller may see",
    openapi_extra=SIGNED,
)
def audit_search(
    engine: Engine,
    caller: SignedCaller,
    patient: Annotated[str | None, Query(max_length=200)] = None,
    agent: Annotated[str | None, Query(max_length=200)] = None,
    entity: Annotated[str | None, Query(max_length=200)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_SQL_INT)] = 0,
    count: Annotated[int, Query(alias="_count", ge=1, le=MAX_PAGE)] = 100,
) -> JSONResponse:
    """The audit trail as FHIR R4 AuditEvents, for SIEMs and FHIR tools; filter by
    patient, agent or entity and page on with `after`."""
    allowed = policy.AuditFilter(caller, getter(engine))
    found = audit_rows(engine, patient, agent, entity, after, count)
    rows = [r for r in found if allowed.allows(r)]
    chain_id = engine.app.chain_id
    bundle = export.searchset([export.audit_event(r, chain_id) for r in rows])
    answer = _fhir(with_history_outcome(engine, bundle))
    answer.headers[HISTORY_HEADER] = str(history_from(engine))
    return answer


@router.get(
    "/Provenance",
    summary="Provenance of a record (target = record id), for whoever may see the record",
    openapi_extra=SIGNED,
)
def provenance(
    engine: Engine, caller: SignedCaller, target: Annotated[str, Query(max_length=200)]
) -> JSONResponse:
    """Who registered a record, when and under which tx, as a FHIR Provenance, for
    whoever may see the record."""
    key, what = record_key(target), f"record {target!r}"
    record = visible(engine, caller, key, what, record_visible_to(engine))
    return _fhir(export.searchset([export.provenance(record)]))
