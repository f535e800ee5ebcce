"""HTTP metrics and the three operator endpoints every MedChain server answers.

`/healthz`: the process is up (200, no detail, no auth). `/readyz`: 200 when every
readiness check passes, else 503 with the names of the checks that failed (names
only: nothing about records, people or addresses). `/metrics`: the app's own
registry in Prometheus text format, behind whatever guard the app's owner gives
(the gateway: operator-signed requests; a metrics port bound to loopback: none).

Requests are counted by route template (`/v1/records/{record_id}`), never the raw
path, so no id reaches a label and a flood of made-up paths adds no series.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))
UNMATCHED = "unmatched"  # the route label of a request no route matched (a 404, a scan)
OPERATOR_PATHS = ("/healthz", "/readyz", "/metrics")


@dataclass(frozen=True)
class Check:
    """One readiness condition: a short stable name and a probe that says whether it
    holds now (a probe that raises counts as failed)."""

    name: str
    probe: Callable[[], bool]


def failed_checks(checks: Sequence[Check]) -> list[str]:
    """The names of the checks that do not hold now, in order."""
    failed = []
    for check in checks:
        try:
            ok = check.probe()
        except Exception:  # a probe that cannot answer means not ready
            ok = False
        if not ok:
            failed.append(check.name)
    return failed


class Readiness:
    """The checks' answer, probed at most once per `max_age` seconds however many ask:
    /readyz needs no signature, and each probe takes the database's write lock and may
    ask CometBFT's RPC, so a flood of /readyz must not turn into a flood of probes
    (callers who arrive during a probe wait for it and share its answer)."""

    def __init__(self, checks: Callable[[], Sequence[Check]], max_age: float = 1.0) -> None:
        self.checks, self.max_age = checks, max_age
        self._lock = threading.Lock()
        self._at = -math.inf
        self._failed: list[str] = []

    def failed(self) -> list[str]:
        """The names of the checks that failed at the latest probe (probing now if the
        last one is older than max_age)."""
        with self._lock:
            if time.monotonic() - self._at >= self.max_age:
                self._failed = failed_checks(self.checks())
                self._at = time.monotonic()
            return list(self._failed)


class RequestMetrics:
    """The HTTP request counter and duration histogram of one registry (made once per
    registry: Prometheus refuses a second family of the same name)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "medchain_http_requests",
            "HTTP requests answered, by server, route template, method and status.",
            ["server", "route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "medchain_http_request_duration_seconds",
            "Time to answer an HTTP request, by server, route template and method.",
            ["server", "route", "method"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )


class HttpMetrics:
    """ASGI middleware counting requests by route template, method and status, and
    timing them."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics, server: str) -> None:
        self.app = app
        self.requests = metrics.requests
        self.duration = metrics.duration
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response started

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_template(scope)
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            self.requests.labels(self.server, route, method, str(status)).inc()
            self.duration.labels(self.server, route, method).observe(time.perf_counter() - started)


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The path template of the route that answered (set by the router), or UNMATCHED."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED


def operator_router(
    registry: CollectorRegistry,
    checks: Callable[[], Sequence[Check]],
    metrics_guard: Callable[..., Any] | None,
) -> APIRouter:
    """/healthz, /readyz and /metrics over `registry`; `metrics_guard` is a FastAPI
    dependency that refuses a caller who may not read metrics (None: anyone may)."""
    router = APIRouter(tags=["operations"])
    readiness = Readiness(checks)

    @router.get("/healthz", summary="The process is up (always 200 while it serves)")
    def healthz() -> dict[str, str]:
        """Liveness: answering at all is the answer."""
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Ready to serve: 200, or 503 naming the checks that failed",
        responses={503: {"description": "not ready; `failed` names the checks"}},
    )
    def readyz() -> JSONResponse:
        """Readiness: every check holds (200) or the names of those that do not (503)."""
        failed = readiness.failed()
        body = {"ready": not failed, "failed": failed}
        return JSONResponse(body, status_code=503 if failed else 200)

    guards = [Depends(metrics_guard)] if metrics_guard is not None else []

    @router.get(
        "/metrics",
        summary="Prometheus metrics (text format)",
        dependencies=guards,
        response_class=Response,
    )
    def metrics() -> Response:
        """The app's registry, in the Prometheus text exposition format."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def install(
    app: FastAPI,
    registry: CollectorRegistry,
    server: str,
    checks: Callable[[], Sequence[Check]],
    metrics_guard: Callable[..., Any] | None,
) -> None:
    """Give `app` the operator endpoints and count its requests in `registry`."""
    app.state.metrics_registry = registry
    app.state.readiness_checks = checks
    app.include_router(operator_router(registry, checks, metrics_guard))
    app.add_middleware(HttpMetrics, metrics=RequestMetrics(registry), server=server)


def metrics_app(
    registry: CollectorRegistry, checks: Callable[[], Sequence[Check]], server: str
) -> FastAPI:
    """A small app for a separate metrics port: the operator endpoints over another
    app's registry and checks, with no guard (bind it to loopback or a network only
    Prometheus reaches). Its own requests are not counted."""
    app = FastAPI(title=f"MedChain {server} metrics", docs_url=None, redoc_url=None)
    app.include_router(operator_router(registry, checks, None))
    return app
