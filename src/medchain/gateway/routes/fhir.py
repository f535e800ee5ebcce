"""FHIR R4 read endpoints: Consent, AuditEvent and Provenance built from the ledger."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from medchain.contracts.consent import model as consent
from medchain.contracts.records.handler import record_key
from medchain.fhir import export
from medchain.gateway.deps import Engine, read
from medchain.gateway.routes.health import MAX_PAGE, audit_rows, grants_of

router = APIRouter(prefix="/fhir", tags=["FHIR R4"])
FHIR_JSON = "application/fhir+json"


def _fhir(resource: dict[str, Any]) -> JSONResponse:
    return JSONResponse(resource, media_type=FHIR_JSON)


@router.get("/Consent/{grant_id}", summary="A consent grant as a FHIR Consent")
def consent_by_id(grant_id: str, engine: Engine) -> JSONResponse:
    grant = read(engine, consent.grant_key(grant_id), f"grant {grant_id!r}")
    return _fhir(export.consent_resource(grant, engine.app.db.block_time_ms()))


@router.get("/Consent", summary="A patient's grants as a FHIR searchset Bundle")
def consent_search(engine: Engine, patient: Annotated[str, Query(max_length=200)]) -> JSONResponse:
    now = engine.app.db.block_time_ms()
    grants = grants_of(engine, patient)
    return _fhir(export.searchset([export.consent_resource(g, now) for g in grants]))


@router.get(
    "/AuditEvent",
    summary="Audit trail as a FHIR searchset Bundle of AuditEvents "
    "(by patient, agent or entity = record id)",
)
def audit_search(
    engine: Engine,
    patient: Annotated[str | None, Query(max_length=200)] = None,
    agent: Annotated[str | None, Query(max_length=200)] = None,
    entity: Annotated[str | None, Query(max_length=200)] = None,
    after: Annotated[int, Query(ge=0)] = 0,
    count: Annotated[int, Query(alias="_count", ge=1, le=MAX_PAGE)] = 100,
) -> JSONResponse:
    rows = audit_rows(engine, patient, agent, entity, after, count)
    chain_id = engine.app.chain_id
    return _fhir(export.searchset([export.audit_event(r, chain_id) for r in rows]))


@router.get("/Provenance", summary="Provenance of a record (target = record id)")
def provenance(engine: Engine, target: Annotated[str, Query(max_length=200)]) -> JSONResponse:
    record = read(engine, record_key(target), f"record {target!r}")
    return _fhir(export.searchset([export.provenance(record)]))
