"""The edge's errors become HTTP answers here, in one table, in one place.

Edge errors carry only a code (edge/custodian.py); this table gives each code
its status. The REST routes answer with the node's error body
(gateway/errors.error_body), the FHIR API with an OperationOutcome
(edge/http/routes/fhir.outcome): same code, same status, either way.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import unquote_plus

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    "INVALID_EPCIS": 422,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "TAMPERED_BLOB": 500,
    "EDGE_BUSY": 503,
    # SMART on FHIR (edge/smart.py): OAuth errors of the token endpoint, bearer tokens
    "INVALID_REQUEST": 400,
    "INVALID_CLIENT": 401,
    "INVALID_GRANT": 400,
    "INVALID_SCOPE": 400,
    "UNSUPPORTED_GRANT_TYPE": 400,
    "TEMPORARILY_UNAVAILABLE": 503,
    "INVALID_TOKEN": 401,
    "INSUFFICIENT_SCOPE": 403,
}

SIGN_HINT = "sign the request with medchain.sdk.signing.sign_request"

FHIR_JSON = "application/fhir+json"
FHIR_PREFIX = "/fhir"
# FHIR's IssueType for each HTTP status an edge answers with.
ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    413: "too-long",
    422: "invalid",
    429: "throttled",
    503: "transient",
}
# What the FHIR API serves: JSON only (the CapabilityStatement's format ["json"]).
JSON_TYPES = frozenset({"*/*", "application/*", "application/json", FHIR_JSON})
JSON_FORMATS = frozenset({"json", "application/json", FHIR_JSON})
FORMAT_HINT = "this server speaks FHIR JSON only: ask for _format=json or Accept: " + FHIR_JSON
log = logging.getLogger(__name__)


def issue_code(message: str) -> str:
    """FHIR's IssueType of one validator problem: `structure` for a wrong JSON shape
    (an array, object or single value where another is due), `code-invalid` for a
    code outside its value set, else `value` (e.g. a string where a number is due)."""
    if message.startswith(("expected a JSON array", "expected a JSON object", "expected a single")):
        return "structure"
    if "value set" in message:
        return "code-invalid"
    return "value"


def path_issues(issues: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """OperationOutcome issues of (element path, message) pairs: one each, the path
    as its FHIRPath `expression`."""
    return [
        {"severity": "error", "code": issue_code(m), "diagnostics": m, "expression": [p]}
        for p, m in issues
    ]


def operation_outcome(
    status: int, message: str, hint: str = "", issues: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """An error as a FHIR OperationOutcome resource: one issue for the refusal, then
    one per (element path, message) the validator found."""
    first: dict[str, Any] = {
        "severity": "error",
        "code": ISSUE_CODES.get(status, "exception"),
        "diagnostics": message,
    }
    if hint:
        first["details"] = {"text": hint}
    return {"resourceType": "OperationOutcome", "issue": [first, *path_issues(issues or [])]}


def rest_body(
    code: str, message: str, hint: str = "", issues: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """The REST error body (gateway/errors.error_body), with `error.issues` listing
    each (path, message) the FHIR validator found, when it found any."""
    body: dict[str, Any] = error_body(code, message, hint)
    if issues:
        body["error"]["issues"] = [{"path": p, "message": m} for p, m in issues]
    return body


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
            rest_body(e.code, e.message, e.hint, e.issues),
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


def refuse_format(scope: Scope) -> str | None:
    """Why a /fhir request asks for a format this server does not serve (`_format`,
    else the Accept header), or None when JSON will do."""
    query = scope.get("query_string", b"").decode("latin-1")
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "_format":
            wanted = unquote_plus(value).split(";")[0].strip().lower()
            if wanted not in JSON_FORMATS:
                return f"_format={wanted} is not served"
            return None
    accept = ""
    for key, value in scope.get("headers", []):
        if key.decode("latin-1").lower() == "accept":
            accept += ("," if accept else "") + value.decode("latin-1")
    if not accept.strip():
        return None
    for item in accept.split(","):
        media, *params = (part.strip().lower() for part in item.split(";"))
        if media not in JSON_TYPES:
            continue
        version = [p.split("=", 1)[1] for p in params if p.startswith("fhirversion=")]
        if version and not version[0].strip('" ').startswith("4.0"):
            continue  # R4 only
        quality = [p for p in params if p.replace(" ", "").startswith("q=")]
        if quality and float(quality[0].split("=", 1)[1] or 0) == 0:
            continue
        return None
    return f"Accept: {accept} names no format served here"


class FhirErrors:
    """ASGI middleware: every error answer under /fhir is an OperationOutcome.

    It wraps the whole edge app, so FastAPI's own answers (404 unknown path, 405,
    422), the limits' (413, 429) and an unhandled fault (500) are rewritten the
    same way as the routes' own; a request for a format other than JSON (`_format`
    or Accept) is answered 406 before any work."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", "")) if scope["type"] == "http" else ""
        if not (path == FHIR_PREFIX or path.startswith(FHIR_PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        refusal = refuse_format(scope)
        if refusal is not None:
            await send_outcome(send, 406, operation_outcome(406, refusal, FORMAT_HINT), {})
            return
        start: Message | None = None
        body = bytearray()
        started = False

        async def rewrite(message: Message) -> None:
            nonlocal start, started
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                is_fhir = headers.get(b"content-type", b"").startswith(FHIR_JSON.encode())
                if int(message["status"]) < 400 or is_fhir:
                    started = True
                    await send(message)
                else:
                    start = message
            elif start is None:
                await send(message)
            else:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    started = True
                    resource, keep = as_outcome(start, bytes(body))
                    await send_outcome(send, int(start["status"]), resource, keep)

        try:
            await self.app(scope, receive, rewrite)
        except Exception:
            log.exception("unhandled fault answering %s", path)
            if started:
                raise
            fault = "the edge hit an internal fault; see its log"
            await send_outcome(send, 500, operation_outcome(500, fault), {})


def as_outcome(start: Message, raw: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """(OperationOutcome, headers to keep) for an error answer in another shape: the
    REST error body, FastAPI's {"detail": ...}, or plain text."""
    status = int(start["status"])
    keep = {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in start.get("headers", [])
        if k.lower() in (b"retry-after", b"allow", b"www-authenticate")
    }
    try:
        data = json.loads(raw)
    except ValueError:
        data = raw.decode("utf-8", "replace")
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = data["error"]
        issues = [(i["path"], i["message"]) for i in error.get("issues", [])]
        message = f"{error.get('code')}: {error.get('message')}"
        return operation_outcome(status, message, str(error.get("hint") or ""), issues), keep
    if isinstance(data, dict) and "detail" in data:
        data = data["detail"]
    if isinstance(data, list):  # FastAPI's request validation errors
        data = "; ".join(
            f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}"
            if isinstance(e, dict)
            else str(e)
            for e in data
        )
    return operation_outcome(status, str(data) or f"HTTP {status}"), keep


async def send_outcome(
    send: Send, status: int, resource: dict[str, Any], headers: dict[str, str]
) -> None:
    """Send an OperationOutcome answer with the FHIR media type."""
    content = json.dumps(resource).encode()
    raw_headers = [
        (b"content-type", FHIR_JSON.encode()),
        (b"content-length", str(len(content)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": content})
