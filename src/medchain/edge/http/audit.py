"""Every refusal an edge answers goes into its audit log (edge/audit_log.py).

An ASGI middleware sees each response's status; any 4xx is appended with
the method, path, the error code and message of the answer, and the key the
request claimed (verified unless the answer is 401). The regulator reads
the whole log, a patient the entries that name them, each with its proof
against the root the edge anchored on chain.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medchain.edge.audit_log import EdgeAuditLog
from medchain.edge.custodian import CustodianEdge
from medchain.edge.http.fhir import request_signer
from medchain.gateway.schemas import to_json

MAX_CAPTURED_BODY = 4096


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
        key = headers.get("x-medchain-key")
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


def install_refusal_audit(app: FastAPI, edge: CustodianEdge) -> None:
    """Audit every refusal, and serve the log to the regulator and to patients."""
    app.add_middleware(RefusalAudit, log=edge.audit_log)

    @app.get(
        "/edge/v1/audit-log",
        summary="This edge's refusals, with proofs against its anchors on chain "
        "(signed: a regulator sees all, a patient the entries that name them)",
    )
    async def audit_log(
        request: Request,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        signer = request_signer(edge, request)
        member = await run_in_threadpool(edge.caller_member, signer)
        log = edge.audit_log
        if "regulator" in member["roles"]:
            page = await run_in_threadpool(log.entries, after, limit)
        else:
            page = await run_in_threadpool(
                log.entries_naming, "patient", member["did"], after, limit
            )
        out = []
        for seq, entry in page:
            proven = log.proof(seq)
            item: dict[str, Any] = {"seq": seq, "entry": entry, "anchor": None}
            if proven is not None:
                run, path = proven
                item["anchor"] = {
                    "first_seq": run.first_seq,
                    "last_seq": run.last_seq,
                    "root": run.root,
                    "path": [[left, sibling] for left, sibling in path],
                }
            out.append(item)
        return dict(to_json({"org_id": edge.org_id, "entries": out}))
