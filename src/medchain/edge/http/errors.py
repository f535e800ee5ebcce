"""The edge's errors become HTTP answers here, in one table, in one place.

Edge errors carry only a code (edge/custodian.py); this table gives each code
its status. The REST routes answer with the node's error body
(gateway/errors.error_body), the FHIR API with an OperationOutcome
(edge/http/routes/fhir.outcome): same code, same status, either way.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from medchain.edge.custodian import BUSY_RETRY_AFTER, EdgeError
from medchain.edge.vault import RecordNotFound
from medchain.gateway.errors import error_body
from medchain.sdk.signing import BadRequestSignature

HTTP_STATUS: dict[str, int] = {
    "EDGE_ERROR": 400,
    "MALFORMED": 400,
    "BAD_SIGNATURE": 401,
    "UNAUTHORIZED": 403,
    "NOT_FOUND": 404,
    "INVALID_STATE": 409,
    "REPLAYED_REQUEST": 409,
    "INVALID_RECORD": 422,
    "TAMPERED_BLOB": 500,
    "EDGE_BUSY": 503,
}

SIGN_HINT = "sign the request with medchain.sdk.signing.sign_request"


def status_of(code: str) -> int:
    """The HTTP status of an edge error code; 400 for a code the table does not
    know, so a new error is a refusal rather than a server fault until listed."""
    return HTTP_STATUS.get(code, 400)


def retry_after(code: str) -> dict[str, str]:
    """The Retry-After header an answer with this code carries (EDGE_BUSY), else none."""
    return {"Retry-After": str(BUSY_RETRY_AFTER)} if code == "EDGE_BUSY" else {}


def install(app: FastAPI) -> None:
    """Register the edge app's exception handlers (the REST answers)."""

    @app.exception_handler(EdgeError)
    async def edge_error(_: Request, e: EdgeError) -> JSONResponse:
        return JSONResponse(
            error_body(e.code, e.message, e.hint),
            status_code=status_of(e.code),
            headers=retry_after(e.code),
        )

    @app.exception_handler(BadRequestSignature)
    async def bad_signature(_: Request, e: BadRequestSignature) -> JSONResponse:
        return JSONResponse(
            error_body("BAD_SIGNATURE", str(e), SIGN_HINT), status_code=status_of("BAD_SIGNATURE")
        )

    @app.exception_handler(RecordNotFound)
    async def not_found(_: Request, e: RecordNotFound) -> JSONResponse:
        return JSONResponse(error_body("NOT_FOUND", str(e)), status_code=status_of("NOT_FOUND"))
