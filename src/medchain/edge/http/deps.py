"""FastAPI dependencies of the edge's routes: the custodian edge behind them, and
the reads every signed route makes of its request (who signed it, its capped body)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from medchain.edge.custodian import CustodianEdge, EdgeError
from medchain.edge.requester import HEIGHT_HEADER
from medchain.gateway.limits import JsonTooDeep, check_json_depth, limiter_of
from medchain.sdk.signing import RequestSigner, verify_request


def get_edge(request: Request) -> CustodianEdge:
    """The custodian edge this app serves (set on app.state by create_edge_app)."""
    edge: CustodianEdge = request.app.state.edge
    return edge


Edge = Annotated[CustodianEdge, Depends(get_edge)]


class MalformedBody(EdgeError):
    """The body cannot be parsed safely (e.g. JSON nested past MAX_JSON_DEPTH)."""

    code = "MALFORMED"


def signed_path(request: Request) -> str:
    """The path and raw query string, as the client signed them."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def height_named(request: Request) -> int | None:
    """The height the request says the chain state it depends on was committed at
    (X-MedChain-Height, e.g. the block of the grant a FHIR read relies on), for the
    edge to wait for its node (CustodianEdge.catch_up); None if it names none."""
    raw = request.headers.get(HEIGHT_HEADER)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise MalformedBody(
            f"{HEIGHT_HEADER} must be a block height: up to 18 ASCII digits 0-9",
            f"send the height your node committed the block at, e.g. {HEIGHT_HEADER}: 42",
        )
    return int(raw)


async def wait_for_named_height(edge: CustodianEdge, request: Request) -> None:
    """Let this edge's node commit the height the request names, if it names one."""
    height = height_named(request)
    if height is not None:
        await run_in_threadpool(edge.catch_up, height)


def request_signer(edge: CustodianEdge, request: Request, body: bytes = b"") -> RequestSigner:
    """Who signed this request to the edge (BadRequestSignature if nobody did); each
    verified request counts against its key's rate (gateway/limits.py)."""
    signer = verify_request(
        request.headers, edge.node.chain_id, request.method, signed_path(request), body
    )
    limiter_of(request.app).charge_signer(signer.suite, signer.public_key)
    return signer


def request_signer_once(edge: CustodianEdge, request: Request, body: bytes) -> RequestSigner:
    """The signer of a request that changes state (upload, import, link, fetch),
    refused with 409 REPLAYED_REQUEST if this edge already accepted it."""
    signer = request_signer(edge, request, body)
    edge.accept_once(signer, request.method, signed_path(request))
    return signer


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
