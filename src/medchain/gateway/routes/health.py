"""Health-record views: records, consent grants, exchange sessions, the access
decision, and the audit trail. Changes go through signed transactions
(POST /v1/txs); these routes only read committed state.

Every route here is a signed read (gateway/auth.py) and answers only what the
caller may see (gateway/policy.py): what a stranger may not see is answered
exactly as if it did not exist."""

from __future__ import annotations

import csv
import io
import threading
import time
import weakref
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from medchain import encoding
from medchain.consensus.engine import Engine as ChainEngine
from medchain.contracts.consent import decide
from medchain.contracts.consent import model as consent
from medchain.contracts.consent.model import PURPOSES
from medchain.contracts.exchange.model import session_key
from medchain.contracts.identity import model as identity
from medchain.contracts.recognition import model as recognition
from medchain.contracts.records.model import (
    RECORD_PREFIX,
    batch_key,
    patient_index_prefix,
    record_key,
)
from medchain.core.merkle import merkle_path
from medchain.exceptions import Code, InvalidTransaction
from medchain.fhir import export
from medchain.gateway import policy
from medchain.gateway.auth import SIGNED, Caller, SignedCaller
from medchain.gateway.deps import (
    HISTORY_HEADER,
    Engine,
    getter,
    history_from,
    history_note,
    scanner,
    tx_proof_of,
    with_history_outcome,
)
from medchain.gateway.errors import Forbidden, NotFound
from medchain.gateway.limits import MAX_SQL_INT
from medchain.gateway.schemas import to_json

router = APIRouter(prefix="/v1", tags=["health records"])
NOT_ALLOWED = "no consent or role lets you read this record now"
MAX_PAGE = 1000


def visible(engine: ChainEngine, caller: Caller, key: str, what: str, may_see: Any) -> Any:
    """The state at `key` if `may_see(caller, get, value)`; otherwise the same 404 a
    missing value gets, so a stranger learns nothing about what exists."""
    get = getter(engine)
    value = get(key)
    if value is None or not may_see(caller, get, value):
        raise NotFound(f"no {what} you may see")
    return value


def record_visible_to(engine: ChainEngine) -> Any:
    """`may_see(caller, get, record)` for records, as of the last block."""
    scan, now = scanner(engine), engine.app.db.block_time_ms()
    return lambda c, get, r: policy.may_see_record(c, get, scan, r, now)


@router.get(
    "/records/{record_id}",
    summary="A record's registration: patient, custodian, CID",
    openapi_extra=SIGNED,
)
def record(record_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """A record's on-chain registration (patient, custodian, CID, hash; never its
    content), for whoever may see the record; 404 to anyone else."""
    found = visible(
        engine, caller, record_key(record_id), f"record {record_id!r}", record_visible_to(engine)
    )
    return dict(to_json(found))


COUNT_PAGE = 10_000  # state rows read at a time while counting an org's records


@router.get(
    "/orgs/{org_id}/records/count",
    summary="How many live records the chain lists with this organisation as custodian "
    "(its staff and the node's operators)",
    openapi_extra=SIGNED,
)
def org_record_count(org_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """The number of registered, not erased records whose custodian is `org_id`, at one
    height: an edge asks it before publishing its endpoint from an empty vault (the
    vault its organisation's records are in may be elsewhere). Only the org's staff and
    the node's operators may ask; anyone else gets the same 403 whether or not the org
    exists or holds records."""
    if not (caller.operator or policy.is_staff_of(caller, org_id)):
        raise Forbidden(f"the record count of {org_id!r} is for its staff and node operators")
    db = engine.app.db
    # One count at a time, and one per (org, height): a scan of every record is the
    # cost, so a caller asking again and again waits for the one running or gets its answer.
    with _COUNT_LOCK:
        counted = _counted.setdefault(db, {})
        cached = counted.get(org_id)
        if cached is None or cached[0] != db.height:
            cached = counted[org_id] = _count_records(db, org_id)
            while len(counted) > 64:
                counted.pop(next(iter(counted)))
    return {"org_id": org_id, "height": cached[0], "records": cached[1]}


_COUNT_LOCK = threading.Lock()
# chain DB -> org -> (height, live records): the latest count of up to 64 orgs per DB
_counted: weakref.WeakKeyDictionary[Any, dict[str, tuple[int, int]]] = weakref.WeakKeyDictionary()


def _count_records(db: Any, org_id: str) -> tuple[int, int]:
    """(height, live records whose custodian is `org_id`) read at one committed height."""
    count, after, upper = 0, RECORD_PREFIX, RECORD_PREFIX + "\U0010ffff"
    with db.snapshot():
        height = int(db.height)
        while True:
            rows = db.query(
                "SELECT key, value FROM state WHERE key > ? AND key < ? ORDER BY key LIMIT ?",
                (after, upper, COUNT_PAGE),
            )
            for _, value in rows:
                found = encoding.decode(bytes(value))
                count += found.get("custodian") == org_id and found.get("cid") is not None
            if len(rows) < COUNT_PAGE:
                return height, count
            after = str(rows[-1][0])


@router.get(
    "/records/{record_id}/batch-path",
    summary="The SM3 Merkle path of a batch-registered record to its batch's root",
    openapi_extra=SIGNED,
)
def record_batch_path(record_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """For whoever may see the record: its leaf (records.model.batch_leaf of the patient
    and the record's entry), its index and the sibling hashes up to the root of the
    records.register_batch that registered it (each sibling with whether it is on the
    left); the root and the leaves are state at records/batch/<root>, provable like any
    key. Sibling hashes reveal nothing of other records but, by the path's length,
    roughly how many records the batch held. 404 for a record registered alone."""
    found = visible(
        engine, caller, record_key(record_id), f"record {record_id!r}", record_visible_to(engine)
    )
    anchor = getter(engine)(batch_key(found["batch_root"])) if "batch_root" in found else None
    if anchor is None:
        raise NotFound(f"record {record_id!r} was registered alone, not in a batch")
    index = found["batch_index"]
    path = merkle_path(anchor["leaves"], index)
    answer = {
        "record_id": record_id,
        "root": anchor["root"],
        "index": index,
        "leaf": anchor["leaves"][index],
        "path": [{"left": left, "hash": sibling} for left, sibling in path],
        "height": anchor["height"],
    }
    return dict(to_json(answer))


@router.get(
    "/patients/{did}/records",
    summary="A patient's records the caller may see (all of them for the patient, a "
    "guardian or a regulator; those it holds for a custodian's staff)",
    openapi_extra=SIGNED,
)
def patient_records(did: str, engine: Engine, caller: SignedCaller) -> list[Any]:
    """The patient's records the caller may see, for a patient app or a custodian
    listing what it holds; records the caller may not see are left out silently."""
    get, scan = getter(engine), scanner(engine)
    may_see = record_visible_to(engine)
    records = (get(record_key(e["record_id"])) for _, e in scan(patient_index_prefix(did)))
    return [to_json(r) for r in records if r is not None and may_see(caller, get, r)]


def answer_time_ms(engine: ChainEngine) -> int:
    """The time a REST answer is given at: the wall clock, never before the last block.

    The chain decides expiry by block time, so between blocks a grant past its
    expiry still reads `active` in state; an answer given now says `expired`
    as soon as it is. Only answers use this, never consensus."""
    return max(engine.app.db.block_time_ms(), int(time.time() * 1000))


def grant_view(grant: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """A grant with whether it is in force at `now_ms` (see answer_time_ms)."""
    in_force = grant["status"] == consent.ACTIVE and now_ms < grant["expires_ms"]
    state = grant["status"] if grant["status"] != consent.ACTIVE or in_force else "expired"
    return dict(to_json(grant)) | {"in_force": in_force, "state": state}


def grants_of(engine: ChainEngine, patient: str) -> list[dict[str, Any]]:
    """Every grant a patient (or their guardian) has made, oldest id first."""
    get, scan = getter(engine), scanner(engine)
    grants = (
        get(consent.grant_key(e["grant_id"])) for _, e in scan(consent.by_patient_prefix(patient))
    )
    return [g for g in grants if g is not None]


def visible_grants(engine: ChainEngine, caller: Caller, patient: str) -> list[dict[str, Any]]:
    """A patient's grants the caller may see (all of them for the patient's side)."""
    get = getter(engine)
    return [g for g in grants_of(engine, patient) if policy.may_see_grant(caller, get, g)]


@router.get(
    "/patients/{did}/grants",
    summary="A patient's consent grants, with their state (those naming the caller, "
    "unless the caller is the patient, a guardian or a regulator)",
    openapi_extra=SIGNED,
)
def patient_grants(did: str, engine: Engine, caller: SignedCaller) -> list[Any]:
    """The patient's grants the caller may see, each with whether it is in force now,
    for a patient app managing consent or a grantee checking its own grants."""
    now = answer_time_ms(engine)
    return [grant_view(g, now) for g in visible_grants(engine, caller, did)]


GUARDIAN_PREFIX = f"{consent.NAMESPACE}/guardian/"
MAX_GUARDIANSHIPS = 10_000
WARDS_REFUSED = "the patients a member acts for are for that member and regulators"


@router.get(
    "/patients/{did}/guardians",
    summary="The guardians a patient named (the patient's side and regulators; an empty "
    "list to anyone else)",
    openapi_extra=SIGNED,
)
def patient_guardians(did: str, engine: Engine, caller: SignedCaller) -> list[Any]:
    """Who may manage this patient's consent, for the patient's own consent page; anyone
    else gets the answer a patient without guardians gets."""
    if not policy.may_see_patient(caller, getter(engine), did):
        return []
    prefix = consent.guardian_key(did, "")
    return [
        {"patient": did, "guardian": key[len(prefix) :]} | dict(to_json(value))
        for key, value in scanner(engine, limit=MAX_PAGE)(prefix)
    ]


@router.get(
    "/members/{did}/wards",
    summary="The patients who named this member their guardian (that member and "
    "regulators; 403 to anyone else)",
    openapi_extra=SIGNED,
)
def member_wards(did: str, engine: Engine, caller: SignedCaller) -> list[Any]:
    """The patients a guardian acts for, so a guardian's app can offer them. Guardianships
    are keyed by patient, so this reads every one (at most MAX_GUARDIANSHIPS) and keeps
    those naming `did`; only the guardian and supervisors may ask, whoever `did` is."""
    if not (caller.supervises or (caller.did and caller.did == did)):
        raise Forbidden(WARDS_REFUSED, "sign with the guardian's own key")
    found = []
    for key, value in scanner(engine, limit=MAX_GUARDIANSHIPS)(GUARDIAN_PREFIX):
        patient, _, guardian = key[len(GUARDIAN_PREFIX) :].partition("/")
        if guardian == did:
            found.append({"patient": patient, "guardian": did} | dict(to_json(value)))
    return found


@router.get("/consent/grants/{grant_id}", summary="One consent grant", openapi_extra=SIGNED)
def grant(grant_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """One grant with whether it is in force now, for its patient side, its grantee or a
    regulator; 404 to anyone else, as for a grant that does not exist."""
    key = consent.grant_key(grant_id)
    g = visible(engine, caller, key, f"grant {grant_id!r}", policy.may_see_grant)
    return grant_view(g, answer_time_ms(engine))


@router.get(
    "/consent/break-glass/{request_id}",
    summary="One emergency access request",
    openapi_extra=SIGNED,
)
def break_glass(request_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """One emergency access request and its approval state, for the doctor, the approver,
    clinical staff of its organisation, the patient side and regulators; 404 otherwise."""
    key, what = consent.break_glass_key(request_id), f"break-glass request {request_id!r}"
    return dict(to_json(visible(engine, caller, key, what, policy.may_see_break_glass)))


MAX_BREAK_GLASS = 10_000  # requests read per answer (state keeps no index by organisation)


@router.get(
    "/consent/break-glass",
    summary="The emergency access requests for the caller to act on or know of (their "
    "own, their organisation's for its approvers, a patient's for its side, all for "
    "regulators), newest first, with the roles that may ask and approve; an empty list "
    "to anyone else",
    openapi_extra=SIGNED,
)
def break_glass_requests(
    engine: Engine,
    caller: SignedCaller,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> dict[str, Any]:
    """So an approver can find the requests waiting for them (one request's id is known
    only to its doctor); policy.may_list_break_glass, within the rule of
    `GET /consent/break-glass/{id}`, decides each."""
    get = getter(engine)
    found = [
        value
        for _, value in scanner(engine, limit=MAX_BREAK_GLASS)(consent.BREAK_GLASS_PREFIX)
        if (status is None or value["status"] == status)
        and policy.may_list_break_glass(caller, get, value)
    ]
    found.sort(key=lambda r: (-int(r["requested_height"]), r["request_id"]))
    rules = get(consent.BREAK_GLASS_POLICY_KEY) or {}
    return {
        "requests": [to_json(r) for r in found[:limit]],
        "requester_roles": list(rules.get("requester_roles", ())),
        "approver_roles": list(rules.get("approver_roles", ())),
    }


@router.get("/exchange/sessions/{session_id}", summary="One exchange session", openapi_extra=SIGNED)
def session(session_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """One exchange session (requester, record, state), for its requester, the custodian's
    staff, the patient side or a regulator; 404 to anyone else."""
    key, what = session_key(session_id), f"exchange session {session_id!r}"
    return dict(to_json(visible(engine, caller, key, what, policy.may_see_session)))


@router.get(
    "/access",
    summary="May this member read this record now, for this purpose? (as of the last block). "
    "The full answer goes to the record's patient side, its custodian's staff, a regulator "
    "or an operator; anyone else learns only whether they themselves may read it.",
    openapi_extra=SIGNED,
)
def access(
    engine: Engine,
    caller: SignedCaller,
    member: Annotated[str, Query(max_length=200, description="the member's DID")],
    record: Annotated[str, Query(max_length=200, description="the record id")],
    purpose: Annotated[str, Query(max_length=20)] = "TREAT",
) -> dict[str, Any]:
    """Lets a custodian or a doctor ask the chain's own consent rule before an exchange,
    and why (the grant used or the reason refused)."""
    if purpose not in PURPOSES:
        raise InvalidTransaction(Code.MALFORMED, f"purpose must be one of {sorted(PURPOSES)}")
    get, now = getter(engine), engine.app.db.block_time_ms()
    answer = {"as_of_height": engine.app.db.height, "as_of_time_ms": now}
    m, r = get(identity.did_key(member)), get(record_key(record))
    related = r is not None and (
        policy.may_see_patient(caller, get, r["patient"])
        or policy.is_staff_of(caller, r["custodian"])
    )
    if related:
        if m is None:
            raise NotFound(f"no member {member}")
        d = decide(get, scanner(engine), m, r, purpose, now)
        return {"allowed": d.allowed, "grant_id": d.grant_id, "reason": d.reason} | answer
    if m is not None and r is not None and member == caller.did:
        d = decide(get, scanner(engine), m, r, purpose, now)
        if d.allowed:
            return {"allowed": True, "grant_id": d.grant_id, "reason": d.reason} | answer
    # A stranger to the record: one answer whether or not the record or member exists.
    return {"allowed": False, "grant_id": None, "reason": NOT_ALLOWED} | answer


def audit_rows(
    engine: ChainEngine,
    patient: str | None,
    actor: str | None,
    record: str | None,
    after: int,
    limit: int,
) -> list[dict[str, Any]]:
    """Audit rows from the chain DB, a bad filter answered as MALFORMED; the routes
    apply the caller's visibility on top."""
    try:
        return engine.app.db.audit(
            patient=patient, actor=actor, record_id=record, after=after, limit=limit
        )
    except ValueError as e:
        raise InvalidTransaction(Code.MALFORMED, str(e)) from None


@router.get(
    "/audit",
    summary="Audit trail of one patient, one actor (e.g. a doctor) or one record, oldest "
    "first; only the events the caller may see (next_after pages on past the others)",
    openapi_extra=SIGNED,
)
def audit(
    engine: Engine,
    caller: SignedCaller,
    patient: Annotated[str | None, Query(max_length=200)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    record: Annotated[str | None, Query(max_length=200)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_SQL_INT, description="continue after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    prove: Annotated[bool, Query(description="attach a proof of each event's tx")] = False,
) -> dict[str, Any]:
    """The audit trail of a patient, an actor or a record, oldest first, for patients,
    org admins and regulators; page on with `next_after`, `prove=true` adds proofs."""
    rows = audit_rows(engine, patient, actor, record, after, limit)
    allowed = policy.AuditFilter(caller, getter(engine))
    shown = [r for r in rows if allowed.allows(r)]
    events = [to_json(r) for r in shown]
    if prove:
        for event, row in zip(events, shown, strict=True):
            event["proof"] = tx_proof_of(engine, row["tx_id"])
    return {
        "events": events,
        "next_after": rows[-1]["seq"] if len(rows) == limit else None,
        # A node restored by state sync keeps no events before its snapshot: it says so
        # rather than pass a partial trail off as the whole one.
        "history_from_height": history_from(engine),
        "history_note": history_note(engine).removeprefix("; "),
    }


@router.get(
    "/recognition/candidates",
    summary="Prior exams of a patient this member may read and recognise now (a member "
    "asks for themselves; regulators and operators for anyone)",
    openapi_extra=SIGNED,
)
def recognition_candidates(
    engine: Engine,
    caller: SignedCaller,
    patient: Annotated[str, Query(max_length=200)],
    member: Annotated[
        str | None, Query(max_length=200, description="the treating doctor's DID (you)")
    ] = None,
    exam_code: Annotated[str | None, Query(max_length=200)] = None,
) -> list[dict[str, Any]]:
    """Prior exams of a patient a doctor may reuse instead of repeating them; an empty
    list, not an error, when there are none or the caller may not ask."""
    get, scan = getter(engine), scanner(engine)
    member = member or caller.did
    doctor = get(identity.did_key(member))
    if doctor is None or (member != caller.did and not caller.supervises):
        return []  # the same answer as a patient with no exams
    now = engine.app.db.block_time_ms()
    out = []
    for _, entry in scan(patient_index_prefix(patient)):
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


@router.get(
    "/recognition/rules",
    summary="Recognition rules and accreditations in force (any member)",
    openapi_extra=SIGNED,
)
def recognition_rules(engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """The recognition rules and accreditations in force, for any signed member deciding
    whether another hospital's exam counts."""
    scan = scanner(engine)
    return {
        "rules": [to_json(v) for _, v in scan(recognition.rule_prefix())],
        "accreditations": [to_json(v) for _, v in scan(recognition.accreditation_prefix())],
    }


@router.get(
    "/recognition/report",
    summary="Per hospital: exams avoided, repeated, recognition rate, over [from_ms, to_ms) "
    "(every hospital for regulators and operators; a member's own otherwise)",
    openapi_extra=SIGNED,
)
def recognition_report(
    engine: Engine,
    caller: SignedCaller,
    from_ms: Annotated[int, Query(ge=0, le=MAX_SQL_INT)] = 0,
    to_ms: Annotated[int | None, Query(ge=0, le=MAX_SQL_INT)] = None,
) -> dict[str, Any]:
    """Exams recognised or repeated per hospital over a period, for regulators (every
    hospital) and members (their own)."""
    end = engine.app.db.block_time_ms() + 1 if to_ms is None else to_ms
    rows = recognition.report(scanner(engine, limit=1_000_000), from_ms, end)
    if not caller.supervises:
        rows = [r for r in rows if policy.is_staff_of(caller, r.get("org_id"))]
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
    "as CSV or a FHIR AuditEvent Bundle; only the events the caller may see (all of "
    "them for a regulator or an operator)",
    response_model=None,
    openapi_extra=SIGNED,
)
def audit_export(
    engine: Engine,
    caller: SignedCaller,
    from_ms: Annotated[int, Query(ge=0, le=MAX_SQL_INT)],
    to_ms: Annotated[int, Query(ge=0, le=MAX_SQL_INT)],
    org: Annotated[str | None, Query(max_length=64, description="custodian or actor's org")] = None,
    format: Annotated[str, Query(pattern="^(csv|fhir)$")] = "csv",
) -> Response:
    """A period's audit events for filing, as CSV or a FHIR Bundle, for regulators,
    operators and org admins; rows the caller may not see are left out."""
    allowed = policy.AuditFilter(caller, getter(engine))
    rows = [r for r in _period_rows(engine, from_ms, to_ms, org) if allowed.allows(r)]
    if format == "fhir":
        chain_id = engine.app.chain_id
        bundle = export.searchset([export.audit_event(r, chain_id) for r in rows])
        return JSONResponse(
            with_history_outcome(engine, bundle),
            media_type="application/fhir+json",
            headers={HISTORY_HEADER: str(history_from(engine))},
        )
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
    # The org id goes into a header: keep only what a header and a file name can hold.
    label = "".join(c for c in (org or "all") if c.isascii() and (c.isalnum() or c in "-_."))
    name = f"audit-{label or 'org'}-{from_ms}-{to_ms}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            HISTORY_HEADER: str(history_from(engine)),
        },
    )


def _period_rows(
    engine: ChainEngine, from_ms: int, to_ms: int, org: str | None
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
