"""The edge's operator endpoints: /healthz, /readyz and /metrics (see medchain.metrics).

/readyz: the edge's node answers (one quick try, no retries) and its vault database
takes writes. /metrics on the edge's own port answers only requests signed by the
edge's own key (its custodian operator): record counts and traffic are the hospital's
business. Prometheus scrapes the separate metrics port instead (`medchain edge serve
--metrics-port`, loopback unless told otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry, Counter, Gauge

from medchain.edge.custodian import CustodianEdge, Refused
from medchain.edge.http.deps import request_signer
from medchain.metrics import http as metrics_http
from medchain.metrics.http import Check
from medchain.metrics.probes import sqlite_writable
from medchain.sdk.client import NO_RETRY, Client, ClientError

PROBE_TIMEOUT = 2.0  # seconds the node may take to answer a readiness probe


class EdgeMetrics:
    """What an edge counts besides HTTP traffic: its vault and the sessions it served."""

    def __init__(self, edge: CustodianEdge, registry: CollectorRegistry) -> None:
        records = Gauge(
            "medchain_vault_records", "Records held in this edge's vault.", registry=registry
        )
        records.set_function(lambda: float(edge.vault.count()))
        size = Gauge(
            "medchain_vault_bytes",
            "Bytes on disk under this edge's vault (database, WAL, blobs, packs).",
            registry=registry,
        )
        size.set_function(lambda: float(tree_bytes(edge.vault.root)))
        self.sessions_served = Counter(
            "medchain_edge_sessions_served",
            "Exchange sessions this edge delivered (ciphertext and wrapped key handed over).",
            registry=registry,
        )


def tree_bytes(root: Path) -> int:
    """The size of every regular file under `root` (0 if it is gone)."""
    total = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def node_answers(probe: Client) -> bool:
    """Whether the edge's node answers GET /v1/status now."""
    try:
        probe.status()
    except ClientError:
        return False
    return True


def readiness_checks(edge: CustodianEdge) -> list[Check]:
    """The edge is ready when its node answers and its vault takes writes."""
    probe = Client(edge.node.urls, PROBE_TIMEOUT, tls=edge.node.tls, retry=NO_RETRY)
    return [
        Check("node", lambda: node_answers(probe)),
        Check("vault", lambda: sqlite_writable(edge.vault.root / "vault.db")),
    ]


def edge_operator_only(request: Request) -> None:
    """Refuse /metrics to anyone but this edge's own key (401 unsigned, 403 others)."""
    edge: CustodianEdge = request.app.state.edge
    signer = request_signer(edge, request)
    if (signer.suite, signer.public_key) != (edge.operator.suite, edge.operator.public):
        raise Refused(
            "metrics are for this edge's operator only",
            "sign with the edge's own key, or scrape the edge's --metrics-port",
        )


def install_operations(app: FastAPI, edge: CustodianEdge) -> EdgeMetrics:
    """Give the edge `app` its operator endpoints and a registry of its own."""
    registry = CollectorRegistry(auto_describe=True)
    metrics = EdgeMetrics(edge, registry)
    checks = readiness_checks(edge)
    app.state.edge_metrics = metrics
    app.state.readiness = checks
    metrics_http.install(app, registry, "edge", lambda: checks, edge_operator_only)
    return metrics
