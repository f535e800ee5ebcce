"""The custodian's FHIR R4 API (JSON) under /fhir, on its edge.

Every request is signed by the caller (edge/signing.py) or carries a SMART
bearer token (routes/smart.py) whose member statement goes on chain instead. Clinical resources
(every record type the edge stores but Bundle and Binary: fhir/search_params.py
SERVED_TYPES) come from the custodian's vault with the specification's search
parameters, paging and _history (edge/fhir_reads.py), and each read or search hit
is first put on chain with the caller's signed request (`exchange.access`), which
decides it by consent and role and audits it. Consent, AuditEvent and
Provenance come from the ledger, for the patient (or their guardian), the
member the events are about, or a regulator. Errors are OperationOutcomes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from medchain import __version__
from medchain.contracts.consent.model import PURPOSES, guardian_key
from medchain.contracts.exchange.proof import purpose_of_use
from medchain.edge import fhir_reads
from medchain.edge.custodian import CustodianEdge, EdgeError, NotHere
from medchain.edge.http.deps import Edge, signed_path, wait_for_named_height
from medchain.edge.http.errors import FHIR_JSON, operation_outcome, retry_after, status_of
from medchain.edge.http.routes import smart
from medchain.fhir import export, search_bundle
from medchain.fhir.search import SEARCHABLE
from medchain.fhir.search_params import params_of
from medchain.fhir.search_query import BadSearch, SearchQuery, parse_search
from medchain.sdk.client import ClientError
from medchain.sdk.signing import BadRequestSignature, RequestSigner

LEDGER_TYPES = ("Consent", "AuditEvent", "Provenance")
# Documented here for integrators; the value used is the one the signature covers
# (RequestSigner.purpose), never this parameter.
Purpose = Annotated[
    str | None,
    Header(
        alias="X-MedChain-Purpose",
        max_length=20,
        description="purpose of use (default TREAT); part of the signed request",
    ),
]


def outcome(
    status: int, message: str, hint: str = "", issues: list[tuple[str, str]] | None = None
) -> JSONResponse:
    """An error as a FHIR OperationOutcome (edge/http/errors.operation_outcome)."""
    return JSONResponse(
        operation_outcome(status, message, hint, issues), status_code=status, media_type=FHIR_JSON
    )


def fhir(resource: dict[str, Any]) -> JSONResponse:
    """A JSON answer with the FHIR media type, as FHIR clients expect."""
    return JSONResponse(resource, media_type=FHIR_JSON)


def capability_statement(org_id: str, base_url: str = "") -> dict[str, Any]:
    """What this edge's FHIR endpoint serves (resources, interactions, search
    parameters) and how callers authenticate (`base_url`: this edge's URL, for the
    SMART token endpoint), for FHIR clients discovering it at GET /fhir/metadata."""
    resources = (
        [
            {
                "type": t,
                "versioning": "versioned",
                "readHistory": True,
                "interaction": [
                    {"code": "read"},
                    {"code": "vread"},
                    {"code": "history-instance"},
                    {"code": "search-type"},
                ],
                "searchInclude": [f"{t}:{p}" for p in include_params(t)],
                "searchParam": search_params(t),
            }
            for t in SEARCHABLE
        ]
        + [
            {"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}]}
            for t in ("Consent", "Provenance")
        ]
        + [{"type": "AuditEvent", "interaction": [{"code": "search-type"}]}]
    )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "kind": "instance",
        "software": {"name": "MedChain edge", "version": __version__},
        "implementation": {"description": f"FHIR API of {org_id}'s MedChain edge"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": smart.capability_security(base_url),
                "resource": resources,
            }
        ],
    }


def search_params(resource_type: str) -> list[dict[str, Any]]:
    """A served type's search parameters as the CapabilityStatement lists them."""
    spec = "http://hl7.org/fhir/SearchParameter/"
    common = [
        {"name": "_id", "type": "token", "definition": f"{spec}Resource-id"},
        {"name": "_lastUpdated", "type": "date", "definition": f"{spec}Resource-lastUpdated"},
    ]
    own = []
    for code, p in sorted(params_of(resource_type).items()):
        note = f"{p.expression} (FHIR R4)"
        if p.type == "reference" and "Patient" in p.target:
            note += "; Patient/<id>, <id>, or the patient's ledger DID"
        own.append(
            {"name": code, "definition": f"{spec}{p.id}", "type": p.type, "documentation": note}
        )
    return common + own


def include_params(resource_type: str) -> list[str]:
    """The reference parameters of a type whose Patient `_include` brings along."""
    return sorted(
        code
        for code, p in params_of(resource_type).items()
        if p.type == "reference" and "Patient" in p.target
    )


router = APIRouter(prefix="/fhir", tags=["FHIR R4"])


async def guarded(edge: CustodianEdge, request: Request, work: Any, *args: Any) -> JSONResponse:
    """Run `work(edge, signer, *args)` for a verified signer whose signed purpose is
    valid: a signed request's, or a SMART bearer token's within its scopes (smart.py)."""
    try:
        signer = smart.reader_of(request)
    except BadRequestSignature as e:
        hint = "sign the request (and its purpose) with your ledger key, or send a SMART token"
        answer = outcome(status_of("BAD_SIGNATURE"), str(e), hint)
        answer.headers.update(smart.challenge_header())
        return answer
    except smart.InvalidToken as e:
        answer = outcome(status_of(e.code), e.message, e.hint)
        answer.headers.update(smart.challenge_header(e))
        return answer
    refusal = smart.scope_refusal(signer, request)
    if refusal is not None:
        answer = outcome(status_of(refusal.code), refusal.message, refusal.hint)
        answer.headers.update(smart.challenge_header(refusal))
        return answer
    if purpose_of_use(signer.purpose) not in PURPOSES:
        return outcome(400, f"X-MedChain-Purpose must be one of {sorted(PURPOSES)}")
    try:
        await wait_for_named_height(edge, request)
        return fhir(await run_in_threadpool(work, edge, signer, *args))
    except EdgeError as e:
        answer = outcome(status_of(e.code), e.message, e.hint, e.issues)
        answer.headers.update(retry_after(e.code))
        return answer
    except ClientError as e:
        return outcome(e.status or 502, f"{e.code}: {e.message}")


@router.get("/metadata", summary="CapabilityStatement")
def metadata(edge: Edge, request: Request) -> JSONResponse:
    """What this endpoint serves, for FHIR clients discovering it; its token URL is
    the edge's canonical one, as in its SMART discovery document."""
    base = smart.tokens_of(request).base_url() or smart.base_url(request)
    return fhir(capability_statement(edge.org_id, base))


@router.get("/{resource_type}/{record_id}", summary="Read one resource (consent-gated)")
async def read(
    edge: Edge, resource_type: str, record_id: str, request: Request, purpose: Purpose = None
) -> JSONResponse:
    """A clinical resource from the vault, put on chain first with the signed request
    (exchange.access decides it by consent and role); a Consent or Provenance from
    the ledger, for those it concerns."""
    if resource_type == "Consent":
        return await guarded(edge, request, read_consent, record_id)
    if resource_type == "Provenance":
        return await guarded(edge, request, provenance_of, record_id)
    if resource_type not in SEARCHABLE:
        return outcome(404, f"{resource_type} is not served here; see /fhir/metadata")
    return with_etag(
        await guarded(
            edge, request, fhir_reads.read, resource_type, record_id, signed_path(request)
        )
    )


@router.get("/{resource_type}/{record_id}/_history", summary="Versions of a resource")
async def history(
    edge: Edge, resource_type: str, record_id: str, request: Request, purpose: Purpose = None
) -> JSONResponse:
    """Every version of a clinical resource held here (the record and those it superseded,
    or that superseded it), newest first; decided on chain like a read."""
    if resource_type not in SEARCHABLE:
        return outcome(404, f"{resource_type} is not served here; see /fhir/metadata")
    return await guarded(
        edge,
        request,
        history_bundle,
        resource_type,
        record_id,
        signed_path(request),
        base_of(request),
    )


@router.get("/{resource_type}/{record_id}/_history/{version_id}", summary="One version")
async def vread(
    edge: Edge,
    resource_type: str,
    record_id: str,
    version_id: str,
    request: Request,
    purpose: Purpose = None,
) -> JSONResponse:
    """One version of a clinical resource (vread), decided on chain like a read."""
    if resource_type not in SEARCHABLE:
        return outcome(404, f"{resource_type} is not served here; see /fhir/metadata")
    return with_etag(
        await guarded(
            edge, request, version_of, resource_type, record_id, signed_path(request), version_id
        )
    )


@router.get("/{resource_type}", summary="Search (consent-gated; every hit audited)")
async def search(
    edge: Edge,
    resource_type: str,
    request: Request,
    purpose: Purpose = None,
    count: Annotated[int | None, Query(alias="_count", ge=1, description="page size")] = None,
) -> JSONResponse:
    """A searchset of the clinical resources the caller may read (each hit audited on
    chain as its page is served; a note counts those withheld), or of Consent,
    AuditEvent or Provenance from the ledger, for those they concern. Parameters
    this edge does not support are refused (400), or left out under
    `Prefer: handling=lenient`. Pages hold at most search_query.MAX_COUNT (100) entries."""
    params = request.query_params
    if resource_type in LEDGER_TYPES:
        return await guarded(
            edge,
            request,
            ledger_view,
            resource_type,
            params.get("patient"),
            params.get("agent"),
            params.get("target"),
        )
    if resource_type not in SEARCHABLE:
        return outcome(404, f"{resource_type} is not served here; see /fhir/metadata")
    lenient = "handling=lenient" in request.headers.get("prefer", "").replace(" ", "")
    return await guarded(
        edge,
        request,
        search_clinical,
        resource_type,
        signed_path(request),
        params.multi_items(),
        lenient,
        base_of(request),
    )


class BadSearchRequest(EdgeError):
    """A search this edge refuses: a parameter, modifier or value it cannot answer."""

    code = "MALFORMED"


def base_of(request: Request) -> str:
    """This FHIR endpoint's base URL as the client reached it, ending in `/`."""
    return f"{str(request.base_url).rstrip('/')}/fhir/"


def with_etag(answer: JSONResponse) -> JSONResponse:
    """A read's answer with `ETag: W/"<versionId>"` and `Last-Modified` (meta.lastUpdated
    as an HTTP date), as FHIR asks of a read."""
    if answer.status_code == 200:
        meta = json.loads(bytes(answer.body)).get("meta", {})
        if "versionId" in meta:
            answer.headers["ETag"] = f'W/"{meta["versionId"]}"'
        if "lastUpdated" in meta:
            updated = datetime.fromisoformat(meta["lastUpdated"])
            answer.headers["Last-Modified"] = format_datetime(updated, usegmt=True)
    return answer


def search_clinical(
    edge: CustodianEdge,
    signer: RequestSigner,
    resource_type: str,
    path: str,
    items: list[tuple[str, str]],
    lenient: bool,
    base: str,
) -> dict[str, Any]:
    """One page of a searchset of the matches the chain lets the signer read, with
    total and paging links, noting how many of the page's matches were withheld."""
    try:
        query: SearchQuery = parse_search(resource_type, items, lenient)
    except BadSearch as e:
        raise BadSearchRequest(
            str(e), "see /fhir/metadata for what each type is searched by"
        ) from None
    page = fhir_reads.search(edge, signer, query, path)
    notes = [withheld_note(page.withheld)] if page.withheld else []
    return search_bundle.searchset(
        base,
        resource_type,
        query.kept,
        query.count,
        query.offset,
        page.total,
        page.matches,
        page.included,
        notes,
        page.size,
        page.matching,
    )


def history_bundle(
    edge: CustodianEdge,
    signer: RequestSigner,
    resource_type: str,
    record_id: str,
    path: str,
    base: str,
) -> dict[str, Any]:
    """The history Bundle of the resource a record is a version of."""
    versions = fhir_reads.history(edge, signer, resource_type, record_id, path)
    return search_bundle.history(base, f"{base}{resource_type}/{record_id}/_history", versions)


def version_of(
    edge: CustodianEdge,
    signer: RequestSigner,
    resource_type: str,
    record_id: str,
    path: str,
    version_id: str,
) -> dict[str, Any]:
    """One version of the resource a record is a version of (vread)."""
    return fhir_reads.history(edge, signer, resource_type, record_id, path, version_id)[0]


def read_consent(edge: CustodianEdge, signer: RequestSigner, grant_id: str) -> dict[str, Any]:
    """A grant, for its patient (or guardian), its grantee, or a regulator."""
    me = edge.caller_member(signer)
    try:
        consent = edge.node.fhir(f"Consent/{grant_id}")
    except ClientError:
        raise NotHere(f"no Consent/{grant_id}") from None
    patient = consent["patient"]["identifier"]["value"]
    grantee = consent["provision"]["actor"][0]["reference"]["identifier"]["value"]
    if not (may_see_patient(edge, me, patient) or grantee == me["did"]):
        raise_forbidden("only the patient, their guardian, the grantee or a regulator")
    return consent


def provenance_of(edge: CustodianEdge, signer: RequestSigner, record_id: str) -> dict[str, Any]:
    """Provenance of a record, for whoever may read it, its patient, or a regulator."""
    me = edge.caller_member(signer)
    try:
        record = edge.node.record(record_id)
    except ClientError:
        raise NotHere(f"no record {record_id!r}") from None
    allowed = edge.node.access(me["did"], record_id, "TREAT")["allowed"]
    if not (allowed or may_see_patient(edge, me, record["patient"])):
        raise_forbidden("you may not read this record")
    bundle = edge.node.fhir("Provenance", target=record_id)
    return dict(bundle["entry"][0]["resource"])


def ledger_view(
    edge: CustodianEdge,
    signer: RequestSigner,
    resource_type: str,
    patient: str | None,
    agent: str | None,
    target: str | None,
) -> dict[str, Any]:
    """Consent, AuditEvent or Provenance from the ledger, for the patient (or their
    guardian), the member the events are about (or their org admin), or a regulator."""
    me = edge.caller_member(signer)
    if resource_type == "Provenance":
        if target is None:
            raise EdgeError("search Provenance by target (a record id)")
        return export.searchset([provenance_of(edge, signer, target)])
    if patient is not None and may_see_patient(edge, me, patient):
        params = {"patient": patient}
    elif resource_type == "AuditEvent" and agent is not None and may_see_agent(edge, me, agent):
        params = {"agent": agent}
    else:
        raise_forbidden(
            "only the patient, their guardian or a regulator (or, for AuditEvent?agent=, "
            "that member and their org admin) may read this"
        )
    return edge.node.fhir(resource_type, **params)


def may_see_patient(edge: CustodianEdge, me: dict[str, Any], patient: str) -> bool:
    """Whether the member `me` is the patient, their guardian on chain, or a regulator."""
    if me["did"] == patient or "regulator" in me["roles"]:
        return True
    return edge.node.value(guardian_key(patient, me["did"])) is not None


def may_see_agent(edge: CustodianEdge, me: dict[str, Any], agent: str) -> bool:
    """Whether the member `me` is the agent, their org's admin, or a regulator."""
    if me["did"] == agent or "regulator" in me["roles"]:
        return True
    other = edge.node.member(agent)
    return "org_admin" in me["roles"] and other.get("org_id") == me["org_id"]


class Forbidden(EdgeError):
    """The signer may not see this resource (answered 403 by the edge's error table)."""

    code = "UNAUTHORIZED"


def raise_forbidden(message: str) -> NoReturn:
    """Refuse the read with a 403 (see Forbidden)."""
    raise Forbidden(message)


def withheld_note(count: int) -> dict[str, Any]:
    """A searchset entry telling the caller some matches were not released."""
    return {
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "information",
                    "code": "suppressed",
                    "diagnostics": f"{count} matching resource(s) withheld: no consent or role "
                    "covers them for this purpose (the refusals are audited)",
                }
            ],
        },
        "search": {"mode": "outcome"},
    }
