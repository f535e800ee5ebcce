"""Records going into a custodian's vault: one signed upload, a file import
(FHIR, HL7 v2, CSV), and the link from a HIS patient identifier to a ledger DID.
Each is signed by staff of the edge's org and accepted once (replays get 409)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from medchain.edge.custodian import BadRecord, CustodianEdge, NotHere
from medchain.edge.http.deps import (
    Edge,
    read_limited,
    request_signer_once,
    wait_for_named_height,
)
from medchain.edge.importer import ImportReport, import_csv, import_fhir, import_hl7
from medchain.gateway.schemas import to_json

router = APIRouter()


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


@router.post(
    "/edge/v1/records",
    summary="Store and register a record (signed by staff of this org)",
    status_code=201,
)
async def add_record(
    edge: Edge,
    request: Request,
    patient: Annotated[str, Query(max_length=200)],
    record_id: Annotated[str | None, Query(max_length=128)] = None,
    resource_type: Annotated[str | None, Query(max_length=64)] = None,
    supersedes: Annotated[
        str | None, Query(max_length=128, description="id of the version this replaces")
    ] = None,
) -> dict[str, Any]:
    """The body (FHIR R4 JSON, or raw bytes with resource_type=Binary) is sealed in
    this edge's vault and registered on chain; only its ciphertext ever leaves."""
    body = await read_limited(request, json_body=resource_type != "Binary")
    signer = request_signer_once(edge, request, body)
    await wait_for_named_height(edge, request)
    await run_in_threadpool(edge.staff_of_this_org, signer)
    out = await run_in_threadpool(
        edge.add_record, body, patient, record_id, resource_type, supersedes
    )
    return dict(to_json(out))


@router.post(
    "/edge/v1/import/{kind}",
    summary="Import a file (staff of this org): fhir (resource, Bundle, NDJSON), "
    "hl7 (v2 messages) or csv (?mapping=lab-result|prescription)",
)
async def import_file(
    edge: Edge,
    kind: str,
    request: Request,
    patient: Annotated[str | None, Query(max_length=200)] = None,
    mapping: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Every record the file holds is stored and registered; the report gives, per
    patient, what was imported and what was rejected."""
    body = await read_limited(request, json_body=kind == "fhir")
    signer = request_signer_once(edge, request, body)
    await wait_for_named_height(edge, request)
    await run_in_threadpool(edge.staff_of_this_org, signer)
    report = await run_in_threadpool(run_import, edge, kind, body, patient, mapping)
    return dict(to_json(report.to_json()))


@router.post("/edge/v1/patients", summary="Link a HIS patient identifier to a ledger DID")
async def link_patient(edge: Edge, request: Request) -> dict[str, str]:
    """Later imports that name the patient by the HIS identifier file under the DID."""
    body = await read_limited(request, json_body=True)
    signer = request_signer_once(edge, request, body)
    await wait_for_named_height(edge, request)
    await run_in_threadpool(edge.staff_of_this_org, signer)
    try:
        link = json.loads(body)
        system, identifier, did = link["system"], link["identifier"], link["did"]
    except (ValueError, KeyError, TypeError):
        raise BadRecord('send {"system": ..., "identifier": ..., "did": ...}') from None
    await run_in_threadpool(edge.link_patient, str(system), str(identifier), str(did))
    return {"system": system, "identifier": identifier, "did": did}
