"""Every refusal an edge answers goes into its audit log (edge/audit_log.py).

An ASGI middleware sees each response's status; any 4xx is appended with
the method, path, the error code and message of the answer, and the key the
request claimed (verified unless the answer is 401) or, for a SMART bearer
token, the key of the member it was issued to. GET /edge/v1/audit-log
(routes/audit_log.py) serves the log with its proofs.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medchain.edge.audit_log import EdgeAuditLog

MAX_CAPTURED_BODY = 4096
# Where a route notes the key behind a bearer token (request.state), for the log.
READER_KEY = "reader_key"


def answer_code(body: bytes) -> tuple[str, str]:
    """The error code and message of a JSON error body or an OperationOutcome."""
    try:
        answer = json.loads(body)
    except ValueError:
        return "", ""
    if not isinstance(answer, dict):
        return "", ""
    error = answer.get("error")
    if isinstance(error, dict):
        return str(error.get("code", "")), str(error.get("message", ""))
    if isinstance(error, str):  # an OAuth error (the SMART token endpoint)
        return error, str(answer.get("error_description", ""))
    issues = answer.get("issue")
    if isinstance(issues, list) and issues and isinstance(issues[0], dict):
        return str(issues[0].get("code", "")), str(issues[0].get("diagnostics", ""))
    return "", ""


class RefusalAudit:
    """Appends every 4xx answer of the wrapped app to the edge's audit log."""

    def __init__(self, app: ASGIApp, log: EdgeAuditLog) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        body = bytearray()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and 400 <= status < 500:
                room = MAX_CAPTURED_BODY - len(body)
                if room > 0:
                    body.extend(bytes(message.get("body", b""))[:room])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if 400 <= status < 500:
                await run_in_threadpool(self._record, scope, status, bytes(body))

    def _record(self, scope: Scope, status: int, body: bytes) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode("latin-1")
        patient = parse_qs(query).get("patient", [None])[0]
        code, message = answer_code(body)
        # A request with a SMART token names no key: the token's member key, when it was live.
        key = headers.get("x-medchain-key") or scope.get("state", {}).get(READER_KEY)
        self.log.append(
            time_ms=int(time.time() * 1000),
            method=scope["method"],
            path=scope["path"] + (f"?{query}" if query else ""),
            status=status,
            code=code,
            message=message,
            key=key,
            key_verified=int(key is not None and status != 401),
            patient=patient,
        )
