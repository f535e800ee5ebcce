"""The node's operator endpoints: /healthz, /readyz and /metrics (see medchain.metrics).

/metrics on the gateway's own port answers only requests signed by one of the node's
operators (operators.json or a consortium admin, as raw blocks are): the counts show
how busy each contract is, which a stranger should not learn. Prometheus, which
cannot sign, scrapes the separate metrics port instead (`medchain node
--metrics-port`, bound to 127.0.0.1 unless told otherwise; node/MetricsServer).
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from medchain.consensus.cometbft_engine import CometEngine
from medchain.consensus.engine import Engine as ChainEngine
from medchain.consensus.solo import SoloEngine
from medchain.gateway.auth import SignedCaller, require_operator
from medchain.metrics import http as metrics_http
from medchain.metrics.chain import ChainMetrics
from medchain.metrics.http import Check
from medchain.metrics.probes import sqlite_writable


def operators_only(caller: SignedCaller) -> None:
    """Refuse /metrics to anyone but the node's operators (401 unsigned, 403 others)."""
    require_operator(caller, "metrics")


def readiness_checks(engine: ChainEngine, min_peers: int = 0) -> list[Check]:
    """What must hold for this node to serve current answers: its chain database takes
    writes; a solo engine still produces blocks; a CometBFT node is not catching up
    (block or state sync) and has at least `min_peers` peers."""
    checks = [Check("database", lambda: sqlite_writable(engine.app.db.path))]
    if isinstance(engine, SoloEngine):
        checks.append(Check("block_production", lambda: engine.running))
    if isinstance(engine, CometEngine):
        checks.append(Check("synced", lambda: not engine.sync_info()[0]))
        if min_peers > 0:
            checks.append(Check("peers", lambda: engine.sync_info()[1] >= min_peers))
    return checks


def install_operations(app: FastAPI, engine: ChainEngine, min_peers: int = 0) -> ChainMetrics:
    """Give the gateway `app` its operator endpoints and a registry of its own, fed by
    every block `engine` commits from now on; the chain metrics, for a metrics port."""
    registry = CollectorRegistry(auto_describe=True)
    chain = ChainMetrics(registry)
    chain.watch_height(lambda: engine.app.db.height)
    chain.watch_mempool(engine.pending_count)
    if isinstance(engine, CometEngine):
        chain.watch_abci(engine.abci_requests)
    engine.block_listeners.append(chain.observe_block)
    checks: Sequence[Check] = readiness_checks(engine, min_peers)
    app.state.chain_metrics = chain
    app.state.readiness = checks
    metrics_http.install(app, registry, "gateway", lambda: checks, operators_only)
    return chain
