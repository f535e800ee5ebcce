"""Health-record views: records, consent grants, exchange sessions, the access
decision, and the audit trail. Changes go through signed transactions
(POST /v1/txs); these routes only read committed state."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from medchain.consensus.solo import SoloEngine
from medchain.contracts.consent import decide
from medchain.contracts.consent import model as consent
from medchain.contracts.consent.model import PURPOSES
from medchain.contracts.exchange.handler import session_key
from medchain.contracts.identity import model as identity
from medchain.contracts.recognition import model as recognition
from medchain.contracts.records.handler import record_key
from medchain.exceptions import Code, InvalidTransaction
from medchain.fhir import export
from medchain.gateway.deps import Engine, getter, read, scanner, tx_proof_of
from medchain.gateway.schemas import to_json

router = APIRouter(prefix="/v1", tags=["health records"])
MAX_PAGE = 1000


@router.get("/records/{record_id}", summary="A record's registration: patient, custodian, CID")
def record(record_id: str, engine: Engine) -> dict[str, Any]:
    return dict(to_json(read(engine, record_key(record_id), f"record {record_id!r}")))


@router.get("/patients/{did}/records", summary="Every record registered for a patient")
def patient_records(did: str, engine: Engine) -> list[Any]:
    get, scan = getter(engine), scanner(engine)
    return [to_json(get(record_key(e["record_id"]))) for _, e in scan(f"records/by-patient/{did}/")]


def grant_view(grant: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """A grant with whether it is in force at `now_ms` (the last block time)."""
    in_force = grant["status"] == "active" and now_ms < grant["expires_ms"]
    state = grant["status"] if grant["status"] != "active" or in_force else "expired"
    return dict(to_json(grant)) | {"in_force": in_force, "state": state}


def grants_of(engine: SoloEngine, patient: str) -> list[dict[str, Any]]:
    """Every grant a patient (or their guardian) has made, oldest id first."""
    get, scan = getter(engine), scanner(engine)
    grants = (
        get(consent.grant_key(e["grant_id"])) for _, e in scan(f"consent/by-patient/{patient}/")
    )
    return [g for g in grants if g is not None]


@router.get("/patients/{did}/grants", summary="A patient's consent grants, with their state")
def patient_grants(did: str, engine: Engine) -> list[Any]:
    now = engine.app.db.block_time_ms()
    return [grant_view(g, now) for g in grants_of(engine, did)]


@router.get("/consent/grants/{grant_id}", summary="One consent grant")
def grant(grant_id: str, engine: Engine) -> dict[str, Any]:
    g = read(engine, consent.grant_key(grant_id), f"grant {grant_id!r}")
    return grant_view(g, engine.app.db.block_time_ms())


@router.get("/consent/break-glass/{request_id}", summary="One emergency access request")
def break_glass(request_id: str, engine: Engine) -> dict[str, Any]:
    key = consent.break_glass_key(request_id)
    return dict(to_json(read(engine, key, f"break-glass request {request_id!r}")))


@router.get("/exchange/sessions/{session_id}", summary="One exchange session")
def session(session_id: str, engine: Engine) -> dict[str, Any]:
    key = session_key(session_id)
    return dict(to_json(read(engine, key, f"exchange session {session_id!r}")))


@router.get(
    "/access",
    summary="May this member read this record now, for this purpose? (as of the last block)",
)
def access(
    engine: Engine,
    member: Annotated[str, Query(max_length=200, description="the member's DID")],
    record: Annotated[str, Query(max_length=200, description="the record id")],
    purpose: Annotated[str, Query(max_length=20)] = "TREAT",
) -> dict[str, Any]:
    if purpose not in PURPOSES:
        raise InvalidTransaction(Code.MALFORMED, f"purpose must be one of {sorted(PURPOSES)}")
    m = read(engine, identity.did_key(member), f"member {member}")
    r = read(engine, record_key(record), f"record {record!r}")
    now = engine.app.db.block_time_ms()
    d = decide(getter(engine), scanner(engine), m, r, purpose, now)
    return {
        "allowed": d.allowed,
        "grant_id": d.grant_id,
        "reason": d.reason,
        "as_of_height": engine.app.db.height,
        "as_of_time_ms": now,
    }


def audit_rows(
    engine: SoloEngine,
    patient: str | None,
    actor: str | None,
    record: str | None,
    after: int,
    limit: int,
) -> list[dict[str, Any]]:
    try:
        return engine.app.db.audit(
            patient=patient, actor=actor, record_id=record, after=after, limit=limit
        )
    except ValueError as e:
        raise InvalidTransaction(Code.MALFORMED, str(e)) from None


@router.get(
    "/audit",
    summary="Audit trail of one patient, one actor (e.g. a doctor) or one record, oldest first",
)
def audit(
    engine: Engine,
    patient: Annotated[str | None, Query(max_length=200)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    record: Annotated[str | None, Query(max_length=200)] = None,
    after: Annotated[int, Query(ge=0, description="continue after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    prove: Annotated[bool, Query(description="attach a proof of each event's tx")] = False,
) -> dict[str, Any]:
    rows = audit_rows(engine, patient, actor, record, after, limit)
    events = [to_json(r) for r in rows]
    if prove:
        for event, row in zip(events, rows, strict=True):
            event["proof"] = tx_proof_of(engine, row["tx_id"])
    return {"events": events, "next_after": rows[-1]["seq"] if len(rows) == limit else None}


@router.get(
    "/recognition/candidates",
    summary="Prior exams of a patient this member may read and recognise now",
)
def recognition_candidates(
    engine: Engine,
    patient: Annotated[str, Query(max_length=200)],
    member: Annotated[str, Query(max_length=200, description="the treating doctor's DID")],
    exam_code: Annotated[str | None, Query(max_length=200)] = None,
) -> list[dict[str, Any]]:
    get, scan = getter(engine), scanner(engine)
    doctor = read(engine, identity.did_key(member), f"member {member}")
    now = engine.app.db.block_time_ms()
    out = []
    for _, entry in scan(f"records/by-patient/{patient}/"):
        record = get(record_key(entry["record_id"]))
        if record is None or "exam_code" not in record:
            continue
        if exam_code is not None and record["exam_code"] != exam_code:
            continue
        if not decide(get, scan, doctor, record, "TREAT", now).allowed:
            continue  # without consent the doctor sees nothing
        verdict = recognition.eligibility(get, record, doctor.get("org_id") or "", now)
        out.append(dict(to_json(record)) | {"eligible": verdict.eligible, "why": verdict.reason})
    return out


@router.get("/recognition/rules", summary="Recognition rules and accreditations in force")
def recognition_rules(engine: Engine) -> dict[str, Any]:
    scan = scanner(engine)
    return {
        "rules": [to_json(v) for _, v in scan(f"{recognition.NAMESPACE}/rule/")],
        "accreditations": [to_json(v) for _, v in scan(f"{recognition.NAMESPACE}/accreditation/")],
    }


@router.get(
    "/recognition/report",
    summary="Per hospital: exams avoided, repeated, recognition rate, over [from_ms, to_ms)",
)
def recognition_report(
    engine: Engine,
    from_ms: Annotated[int, Query(ge=0)] = 0,
    to_ms: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    end = engine.app.db.block_time_ms() + 1 if to_ms is None else to_ms
    rows = recognition.report(scanner(engine, limit=1_000_000), from_ms, end)
    return {"from_ms": from_ms, "to_ms": end, "hospitals": rows}


EXPORT_COLUMNS = (
    "seq",
    "height",
    "time",
    "tx_id",
    "event",
    "outcome",
    "actor",
    "actor_org",
    "patient",
    "record_id",
    "custodian",
    "purpose",
    "basis_or_reason",
)


@router.get(
    "/audit/export",
    summary="Audit events of a period (block time), optionally of one organisation, "
    "as CSV or a FHIR AuditEvent Bundle",
    response_model=None,
)
def audit_export(
    engine: Engine,
    from_ms: Annotated[int, Query(ge=0)],
    to_ms: Annotated[int, Query(ge=0)],
    org: Annotated[str | None, Query(max_length=64, description="custodian or actor's org")] = None,
    format: Annotated[str, Query(pattern="^(csv|fhir)$")] = "csv",
) -> Response:
    rows = _period_rows(engine, from_ms, to_ms, org)
    if format == "fhir":
        chain_id = engine.app.chain_id
        bundle = export.searchset([export.audit_event(r, chain_id) for r in rows])
        return JSONResponse(bundle, media_type="application/fhir+json")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for r in rows:
        a = r["attributes"]
        writer.writerow(
            [
                r["seq"],
                r["height"],
                export.iso(r["time_ms"]),
                r["tx_id"].hex(),
                r["kind"],
                "refused" if r["code"] or r["kind"] == "exchange.refused" else "ok",
                r["actor"],
                r["actor_org"] or "",
                r["patient"] or "",
                r["record_id"] or "",
                a.get("custodian", ""),
                a.get("purpose", ""),
                a.get("basis") or a.get("reason", ""),
            ]
        )
    name = f"audit-{org or 'all'}-{from_ms}-{to_ms}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _period_rows(
    engine: SoloEngine, from_ms: int, to_ms: int, org: str | None
) -> list[dict[str, Any]]:
    """Every audit row of the period (paged through), with the actor's organisation."""
    get = getter(engine)
    orgs: dict[str, str | None] = {}
    rows, after = [], 0
    while True:
        page = engine.app.db.audit_period(from_ms, to_ms, after)
        for r in page:
            if r["actor"] not in orgs:
                member = get(identity.did_key(r["actor"]))
                orgs[r["actor"]] = None if member is None else member.get("org_id")
            r["actor_org"] = orgs[r["actor"]]
            if org is None or org in (r["actor_org"], r["attributes"].get("custodian")):
                rows.append(r)
        if len(page) < 10_000:
            return rows
        after = page[-1]["seq"]
