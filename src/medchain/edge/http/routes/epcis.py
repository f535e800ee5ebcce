"""EPCIS 2.0 at the edge, in the spirit of the standard's REST capture interface:
staff send documents (XML or JSON-LD) to be recorded on chain and kept here;
partners the chain names read them back (edge/epcis_capture.py decides who)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from medchain.edge.epcis_capture import (
    MAX_HITS,
    MEDIA_KINDS,
    EpcisDocuments,
    UnsupportedMediaType,
    media_kind,
)
from medchain.edge.http.deps import (
    Edge,
    read_limited,
    request_signer,
    request_signer_once,
    signed_path,
    wait_for_named_height,
)
from medchain.gateway.errors import ErrorBody
from medchain.gateway.schemas import to_json
from medchain.gs1.ledger import StepContext

router = APIRouter(tags=["EPCIS"])
DOCUMENT_ID = r"^[A-Za-z0-9._:-]{1,160}$"
StepId = Annotated[str | None, Query(max_length=200)]


def get_documents(request: Request) -> EpcisDocuments:
    """The EPCIS document service this app serves (set on app.state by create_edge_app)."""
    documents: EpcisDocuments = request.app.state.epcis
    return documents


Documents = Annotated[EpcisDocuments, Depends(get_documents)]


@router.post(
    "/edge/v1/epcis/capture",
    summary="Record an EPCIS 2.0 document's events on chain and keep it here "
    "(signed by staff of this org; application/xml or application/ld+json)",
    status_code=201,
    responses={415: {"model": ErrorBody, "description": "Not an EPCIS 2.0 document media type"}},
)
async def capture(
    edge: Edge,
    documents: Documents,
    request: Request,
    response: Response,
    lot: StepId = None,
    destination: StepId = None,
    shipment: StepId = None,
    device: StepId = None,
) -> dict[str, Any]:
    """Every event is recorded by its standard hash (commissioning needs `lot`,
    shipping `destination`, `shipment` and `device`, receiving `shipment`), a
    persistentDisposition setting or unsetting `recalled` recalls or lifts the recall
    of its batches, and the document is kept as received, sealed. A document that
    cannot be recorded whole is refused (422 INVALID_EPCIS) before anything is sent."""
    kind = media_kind(request.headers.get("content-type"))
    body = await read_limited(request, json_body=kind == "jsonld")
    signer = request_signer_once(edge, request, body)
    await wait_for_named_height(edge, request)
    member = await run_in_threadpool(documents.capturer, signer)
    if kind is None:
        raise UnsupportedMediaType(
            f"Content-Type {request.headers.get('content-type')!r} is not an EPCIS document type",
            "send EPCIS 2.0 XML or JSON-LD as one of " + ", ".join(sorted(MEDIA_KINDS)),
        )
    context = StepContext(lot, destination, shipment, device)
    out = await run_in_threadpool(documents.capture, body, kind, context, member)
    response.headers["Location"] = f"/edge/v1/epcis/documents/{out.document_id}"
    return dict(to_json(out.to_json()))


@router.get(
    "/edge/v1/epcis/documents/{document_id}",
    summary="An EPCIS document as received (signed: this org's staff, regulators, "
    "and the organisations the chain says took part)",
    response_class=Response,
)
async def document(
    edge: Edge,
    documents: Documents,
    request: Request,
    document_id: Annotated[str, Path(pattern=DOCUMENT_ID)],
) -> Response:
    """The bytes the recording organisation received, with their media type; 404 alike
    for a document that is not here and one the signer may not read."""
    signer = request_signer(edge, request)
    await wait_for_named_height(edge, request)
    media_type, content = await run_in_threadpool(
        documents.document, signer, document_id, signed_path(request)
    )
    return Response(content, media_type=media_type)


@router.get(
    "/edge/v1/epcis/events",
    summary="Events of the documents here that name an EPC, among those the signer may read",
)
async def events(
    edge: Edge,
    documents: Documents,
    request: Request,
    epc: Annotated[str, Query(min_length=1, max_length=300)],
    limit: Annotated[int, Query(ge=1, le=MAX_HITS)] = MAX_HITS,
) -> dict[str, Any]:
    """`epc` as written in a document (an SGTIN URI, an SSCC, a Digital Link) or as
    a ledger unit id <gtin>/<serial>; newest document first."""
    signer = request_signer(edge, request)
    await wait_for_named_height(edge, request)
    hits = await run_in_threadpool(
        documents.events_naming, signer, epc, signed_path(request), limit
    )
    return {"epc": epc, "events": hits}
