"""Errors become HTTP responses here, in one table, in one place."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from medchain.exceptions import Code, InternalError, InvalidTransaction, MedChainError

log = logging.getLogger("medchain.gateway")

HTTP_STATUS: dict[Code, int] = {
    Code.MALFORMED: 400,
    Code.TOO_LARGE: 413,
    Code.BAD_SIGNATURE: 401,
    Code.WRONG_CHAIN: 400,
    Code.BAD_NONCE: 409,
    Code.UNKNOWN_SIGNER: 401,
    Code.SIGNER_INACTIVE: 403,
    Code.UNKNOWN_CONTRACT: 404,
    Code.UNKNOWN_ACTION: 404,
    Code.INVALID_PAYLOAD: 422,
    Code.UNAUTHORIZED: 403,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.INVALID_STATE: 409,
    Code.UNKNOWN_SUITE: 400,
    Code.MEMPOOL_FULL: 503,
    Code.DUPLICATE_TX: 409,
    Code.INVALID_PROOF: 422,
}

HINTS: dict[Code, str] = {
    Code.BAD_NONCE: "fetch the next nonce from GET /v1/accounts/{suite}/{public_key} and re-sign",
    Code.UNKNOWN_SIGNER: (
        "register the key first (identity.register_patient, or ask your org admin)"
    ),
    Code.MEMPOOL_FULL: "retry after the next block",
    Code.WRONG_CHAIN: "check the chain id in GET /v1/status",
}


class NotFound(MedChainError):
    """A resource the API was asked for does not exist."""


SIGN_HINT = (
    "sign the request with your ledger key: headers X-MedChain-Suite, X-MedChain-Key, "
    "X-MedChain-Time, X-MedChain-Signature (medchain.sdk.signing.sign_request; see /docs)"
)


class Unauthenticated(MedChainError):
    """A read that needs a signed request came unsigned, stale, forged or from an unknown key."""

    def __init__(self, message: str, hint: str = SIGN_HINT) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


class Forbidden(MedChainError):
    """A signed caller asked for something only others may see (said only where the
    answer reveals nothing about what exists)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


class RateLimited(MedChainError):
    """429: a client asked faster (or held more at once) than this server allows it
    (gateway/limits.py); nothing was done, and it may retry after `retry_after` s.
    Beside it, bodies past a route's cap answer 413 TOO_LARGE (Code.TOO_LARGE)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = max(1, math.ceil(retry_after))

    def response(self) -> JSONResponse:
        """The 429 answer: a JSON error body and a Retry-After header."""
        return JSONResponse(
            error_body("RATE_LIMITED", self.message, f"retry after {self.retry_after} s"),
            status_code=429,
            headers={"Retry-After": str(self.retry_after)},
        )


def error_body(code: str, message: str, hint: str = "") -> dict[str, object]:
    """The one JSON error shape every gateway and edge answer uses."""
    body: dict[str, object] = {"error": {"code": code, "message": message}}
    if hint:
        body["error"]["hint"] = hint  # type: ignore[index]
    return body


def install(app: FastAPI) -> None:
    """Register the exception handlers."""

    @app.exception_handler(InvalidTransaction)
    async def invalid_tx(_: Request, e: InvalidTransaction) -> JSONResponse:
        body = error_body(e.code.name, e.message, HINTS.get(e.code, ""))
        body["error"]["number"] = int(e.code)  # type: ignore[index]
        return JSONResponse(body, status_code=HTTP_STATUS.get(e.code, 400))

    @app.exception_handler(NotFound)
    async def not_found(_: Request, e: NotFound) -> JSONResponse:
        return JSONResponse(error_body("NOT_FOUND", str(e)), status_code=404)

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(_: Request, e: Unauthenticated) -> JSONResponse:
        return JSONResponse(error_body("UNAUTHENTICATED", e.message, e.hint), status_code=401)

    @app.exception_handler(Forbidden)
    async def forbidden(_: Request, e: Forbidden) -> JSONResponse:
        return JSONResponse(error_body("UNAUTHORIZED", e.message, e.hint), status_code=403)

    @app.exception_handler(RateLimited)
    async def rate_limited(_: Request, e: RateLimited) -> JSONResponse:
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, e: RequestValidationError) -> JSONResponse:
        msg = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        return JSONResponse(error_body("MALFORMED", msg), status_code=400)

    @app.exception_handler(InternalError)
    async def internal(_: Request, e: InternalError) -> JSONResponse:
        log.error("internal error: %s", e)
        return JSONResponse(
            error_body("INTERNAL", "the node hit an internal fault; see its log"), status_code=500
        )


class ErrorDetail(BaseModel):
    """The error object of an error answer, for the OpenAPI schema."""

    code: str
    message: str
    hint: str | None = None
    number: int | None = None  # the tx result code, when a transaction was refused


class ErrorBody(BaseModel):
    """The body of every error answer of the node and the edge (see error_body)."""

    error: ErrorDetail


# Declared on every operation of the node's and the edge's apps (FastAPI(responses=...)),
# so their OpenAPI documents list the answers this module gives.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Malformed: a bad parameter, body or transaction encoding"),
        (401, "Unsigned, stale or forged request signature, or an unknown signer"),
        (403, "The signer may not do or see this"),
        (404, "Not found"),
        (409, "Conflicts with the ledger's state (nonce, duplicate, state)"),
        (413, "The body is larger than this route accepts"),
        (422, "Well-formed, but the payload is invalid"),
        (429, "Too many requests from this client: retry after Retry-After seconds"),
        (503, "The mempool is full: retry after the next block"),
    )
}
