"""HTTP face of a custodian's edge (see edge/custodian.py). OpenAPI at /docs.

Requests that act for someone are signed (edge/signing.py); the chain says
whether that someone may. Records go in as FHIR R4 JSON (or raw bytes with
resource_type=Binary) and come out only as ciphertext with a wrapped key.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from medchain import __version__
from medchain.edge.custodian import (
    BadRecord,
    CustodianEdge,
    EdgeError,
    NotHere,
)
from medchain.edge.http import errors
from medchain.edge.http.audit import install_refusal_audit
from medchain.edge.http.fhir import install_fhir, request_signer, signed_path
from medchain.edge.importer import ImportReport, import_csv, import_fhir, import_hl7
from medchain.gateway.errors import ERROR_RESPONSES
from medchain.gateway.limits import (
    EDGE_RULES,
    JsonTooDeep,
    Limiter,
    Limits,
    check_json_depth,
    install_limits,
)
from medchain.gateway.schemas import to_json
from medchain.sdk.signing import RequestSigner

# A record id as the records contract accepts it: anything else never reaches the node's URLs.
RecordId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


class MalformedBody(EdgeError):
    """The body cannot be parsed safely (e.g. JSON nested past MAX_JSON_DEPTH)."""

    code = "MALFORMED"


async def read_limited(request: Request, json_body: bool = False) -> bytes:
    """The request body. Its size is capped as it streams in (gateway/limits.py: 413
    past the route's cap, whatever Content-Length says, chunked or not); a JSON body
    nested deeper than MAX_JSON_DEPTH is refused (400) before any parser recurses."""
    body = await request.body()
    if json_body:
        try:
            check_json_depth(body)
        except JsonTooDeep as e:
            raise MalformedBody(str(e)) from None
    return body


def request_signer_once(edge: CustodianEdge, request: Request, body: bytes) -> RequestSigner:
    """The signer of a request that changes state (upload, import, link, fetch),
    refused with 409 REPLAYED_REQUEST if this edge already accepted it."""
    signer = request_signer(edge, request, body)
    edge.accept_once(signer, request.method, signed_path(request))
    return signer


def run_import(
    edge: CustodianEdge, kind: str, body: bytes, patient: str | None, mapping: str | None
) -> ImportReport:
    """Run the importer `kind` names (fhir, hl7 or csv with a mapping) on an uploaded body."""
    if kind == "fhir":
        return import_fhir(edge, body, patient)
    if kind == "hl7":
        return import_hl7(edge, body, patient)
    if kind == "csv":
        if mapping is None:
            raise BadRecord("give ?mapping=lab-result or ?mapping=prescription")
        return import_csv(edge, body, mapping, patient)
    raise NotHere(f"no importer {kind!r}; use fhir, hl7 or csv")


def create_edge_app(edge: CustodianEdge, limits: Limits | Limiter | None = None) -> FastAPI:
    """The edge's app; `limits` what one client may ask of it (gateway/limits.py)."""
    app = FastAPI(
        title=f"MedChain edge of {edge.org_id}",
        version=__version__,
        description="Custodian record vault and exchange service.",
        responses=ERROR_RESPONSES,
    )

    errors.install(app)

    @app.get("/edge/v1/status", summary="Which org this edge serves and how far it has synced")
    def status() -> dict[str, Any]:
        return edge.status()

    @app.post(
        "/edge/v1/records",
        summary="Store and register a record (signed by staff of this org)",
        status_code=201,
    )
    async def add_record(
        request: Request,
        patient: Annotated[str, Query(max_length=200)],
        record_id: Annotated[str | None, Query(max_length=128)] = None,
        resource_type: Annotated[str | None, Query(max_length=64)] = None,
        supersedes: Annotated[
            str | None, Query(max_length=128, description="id of the version this replaces")
        ] = None,
    ) -> dict[str, Any]:
        body = await read_limited(request, json_body=resource_type != "Binary")
        signer = request_signer_once(edge, request, body)
        await run_in_threadpool(edge.staff_of_this_org, signer)
        out = await run_in_threadpool(
            edge.add_record, body, patient, record_id, resource_type, supersedes
        )
        return dict(to_json(out))

    @app.post(
        "/edge/v1/import/{kind}",
        summary="Import a file (staff of this org): fhir (resource, Bundle, NDJSON), "
        "hl7 (v2 messages) or csv (?mapping=lab-result|prescription)",
    )
    async def import_file(
        kind: str,
        request: Request,
        patient: Annotated[str | None, Query(max_length=200)] = None,
        mapping: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        body = await read_limited(request, json_body=kind == "fhir")
        signer = request_signer_once(edge, request, body)
        await run_in_threadpool(edge.staff_of_this_org, signer)
        report = await run_in_threadpool(run_import, edge, kind, body, patient, mapping)
        return dict(to_json(report.to_json()))

    @app.post("/edge/v1/patients", summary="Link a HIS patient identifier to a ledger DID")
    async def link_patient(request: Request) -> dict[str, str]:
        body = await read_limited(request, json_body=True)
        signer = request_signer_once(edge, request, body)
        await run_in_threadpool(edge.staff_of_this_org, signer)
        try:
            link = json.loads(body)
            system, identifier, did = link["system"], link["identifier"], link["did"]
        except (ValueError, KeyError, TypeError):
            raise BadRecord('send {"system": ..., "identifier": ..., "did": ...}') from None
        await run_in_threadpool(edge.link_patient, str(system), str(identifier), str(did))
        return {"system": system, "identifier": identifier, "did": did}

    @app.post(
        "/edge/v1/sessions/{session_id}/fetch",
        summary="Ciphertext and a wrapped key for an open session (signed by its requester)",
    )
    async def fetch(
        session_id: str,
        request: Request,
        height: Annotated[
            int | None,
            Query(ge=0, le=2**62, description="the block that opened the session"),
        ] = None,
    ) -> dict[str, str]:
        """The requester's ciphertext and wrapped key. `height` lets an edge whose node
        is a block or two behind the requester's wait briefly for it."""
        signer = request_signer_once(edge, request, await request.body())
        delivery = await run_in_threadpool(edge.deliver, session_id, signer, height)
        return delivery.to_json()

    @app.post(
        "/edge/v1/records/{record_id}/purge",
        summary="Destroy a record the chain has erased; returns the signed purge receipt",
    )
    def purge(record_id: RecordId) -> dict[str, Any]:
        return dict(to_json(edge.purge(record_id)))

    @app.get("/edge/v1/receipts/{record_id}", summary="The purge receipt of an erased record")
    def receipt(record_id: RecordId) -> dict[str, Any]:
        return dict(to_json(edge.vault.receipt(record_id)))

    install_fhir(app, edge)
    install_refusal_audit(app, edge)
    install_limits(app, limits, EDGE_RULES)  # outermost: a flood is refused before any work
    return app
