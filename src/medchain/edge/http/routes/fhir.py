"""The custodian's FHIR R4 API (JSON) under /fhir, on its edge.

Every request is signed by the caller (edge/signing.py) or carries a SMART
bearer token (routes/smart.py) whose member statement goes on chain instead. Clinical resources
(Patient, Encounter, Observation, DiagnosticReport, MedicationRequest,
ImagingStudy) come from the custodian's vault, and each read or search hit is
first put on chain with the caller's signed request (`exchange.access`), which
decides it by consent and role and audits it. Consent, AuditEvent and
Provenance come from the ledger, for the patient (or their guardian), the
member the events are about, or a regulator. Errors are OperationOutcomes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from medchain import __version__
from medchain.contracts.consent.model import PURPOSES, guardian_key
from medchain.contracts.exchange.proof import purpose_of_use
from medchain.edge.custodian import CustodianEdge, EdgeError, NotHere
from medchain.edge.http.deps import Edge, signed_path, wait_for_named_height
from medchain.edge.http.errors import FHIR_JSON, operation_outcome, retry_after, status_of
from medchain.edge.http.routes import smart
from medchain.fhir import export
from medchain.fhir.search import SEARCHABLE
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
    search_params = [
        {"name": "patient", "type": "reference", "documentation": "the patient's ledger DID"},
        {"name": "code", "type": "token"},
        {"name": "date", "type": "date"},
    ]
    resources = (
        [
            {
                "type": t,
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": search_params,
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
    """What this endpoint serves, for FHIR clients discovering it."""
    return fhir(capability_statement(edge.org_id, smart.base_url(request)))


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
    return await guarded(
        edge, request, read_clinical, resource_type, record_id, signed_path(request)
    )


@router.get("/{resource_type}", summary="Search (consent-gated; every hit audited)")
async def search(
    edge: Edge,
    resource_type: str,
    request: Request,
    purpose: Purpose = None,
    patient: Annotated[str | None, Query(max_length=200)] = None,
    code: Annotated[str | None, Query(max_length=200)] = None,
    date: Annotated[str | None, Query(max_length=40)] = None,
    agent: Annotated[str | None, Query(max_length=200)] = None,
    target: Annotated[str | None, Query(max_length=200)] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=100)] = 50,
) -> JSONResponse:
    """A searchset of the clinical resources the caller may read (each hit audited on
    chain; a note counts those withheld), or of Consent, AuditEvent or Provenance
    from the ledger, for those they concern."""
    if resource_type in LEDGER_TYPES:
        return await guarded(edge, request, ledger_view, resource_type, patient, agent, target)
    if resource_type not in SEARCHABLE:
        return outcome(404, f"{resource_type} is not served here; see /fhir/metadata")
    return await guarded(
        edge,
        request,
        search_clinical,
        resource_type,
        signed_path(request),
        patient,
        code,
        date,
        count,
    )


def read_clinical(
    edge: CustodianEdge, signer: RequestSigner, resource_type: str, record_id: str, path: str
) -> dict[str, Any]:
    """One clinical resource from the vault, if the chain lets the signer read it."""
    return edge.read(resource_type, record_id, signer, path)


def search_clinical(
    edge: CustodianEdge,
    signer: RequestSigner,
    resource_type: str,
    path: str,
    patient: str | None,
    code: str | None,
    date: str | None,
    count: int,
) -> dict[str, Any]:
    """A searchset of the matches the chain lets the signer read, noting how many were withheld."""
    found, withheld = edge.search(resource_type, signer, path, patient, code, date, count)
    bundle = export.searchset(found)
    if withheld:
        bundle["entry"] = [*bundle.get("entry", []), withheld_note(withheld)]
    return bundle


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
