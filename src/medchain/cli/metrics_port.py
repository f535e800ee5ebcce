"""`--metrics-port` / `--metrics-host`: a server's /metrics, /healthz and /readyz on a
port of their own, unsigned, for Prometheus (see docs/operations.md, "Health and
metrics"). Off unless a port is given; bound to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

import medchain.node as node_servers  # the servers load on first use (node/__init__.py)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from medchain.metrics.http import Check
    from medchain.node import HttpServer, MetricsServer

MetricsPort = Annotated[
    int,
    typer.Option(
        envvar="MEDCHAIN_METRICS_PORT",
        help="serve /metrics, /healthz and /readyz unsigned on this port (0: off)",
        min=0,
        max=65535,
    ),
]
MetricsHost = Annotated[
    str,
    typer.Option(
        envvar="MEDCHAIN_METRICS_HOST",
        help="address of the metrics port: keep it on loopback or a monitoring-only "
        "network, since anyone reaching it sees activity volumes",
    ),
]
DEFAULT_METRICS_HOST = "127.0.0.1"


def serve_metrics_of(served: HttpServer, port: int, host: str) -> MetricsServer | None:
    """Start the metrics port of `served` (an app with operator endpoints), if asked."""
    if port == 0:
        return None
    server = node_servers.MetricsServer(served, port, host)
    server.start()
    return server


def serve_registry(
    registry: CollectorRegistry, checks: list[Check], name: str, port: int, host: str
) -> HttpServer | None:
    """Start a metrics port over `registry` and `checks` (a server with no HTTP app of
    its own, e.g. the relay), if asked."""
    if port == 0:
        return None
    from medchain.metrics.http import metrics_app  # the web framework, only when serving

    app = metrics_app(registry, lambda: checks, name)
    server = node_servers.HttpServer(app, host, port, f"{name}-metrics")
    server.start()
    return server
