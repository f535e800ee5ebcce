"""The node's servers and engines: a solo or CometBFT engine opened from a home, and
uvicorn serving the gateway, the public routes, metrics and an edge on threads.
Loaded on first use through medchain.node (its module __getattr__)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn

from medchain import crypto
from medchain.consensus.abci.server import AbciApplication, AbciServer
from medchain.consensus.application import Application
from medchain.consensus.cometbft_engine import CometEngine
from medchain.consensus.engine import Engine
from medchain.consensus.snapshots import SnapshotStore
from medchain.consensus.solo import SoloEngine
from medchain.edge import fhir_reads
from medchain.edge.custodian import CustodianEdge, EdgeError
from medchain.edge.http.app import create_edge_app
from medchain.edge.vault import Vault
from medchain.gateway.app import create_app, create_public_app
from medchain.gateway.limits import Limiter, Limits
from medchain.metrics.http import metrics_app
from medchain.node.home import (
    DEFAULT_PORT,
    DEFAULT_STATE_SYNC_MAX_BYTES,
    NodeHome,
)
from medchain.sdk.client import Client, ClientError
from medchain.sdk.tls import ClientTls, ServerTls, server_context
from medchain.storage.chain_db import ChainDB

log = logging.getLogger("medchain.node")


def open_solo(home: NodeHome, block_interval: float = 0.2) -> SoloEngine:
    """Open (or create from genesis) the chain and return a started solo engine."""
    app = Application(ChainDB(home.db_path))
    app.init_chain(home.genesis())
    key = home.header_key()
    engine = SoloEngine(
        app,
        block_interval=block_interval,
        header_signer=lambda m: crypto.sign(key, m),
        header_key=(key.suite, key.public),
    )
    engine.start()
    return engine


def open_cometbft(
    db_path: Path,
    abci_address: str,
    rpc_url: str,
    snapshot_interval: int = 0,
    state_sync_max_bytes: int = DEFAULT_STATE_SYNC_MAX_BYTES,
) -> CometEngine:
    """This node's ABCI app, served to its CometBFT on `abci_address` from a thread of
    this process, and the engine its gateway uses: reads from the same ChainDB the app
    commits to, submissions through CometBFT's RPC at `rpc_url`. Start CometBFT after.
    With `snapshot_interval` > 0 the app writes a state-sync snapshot every that many
    heights under `<db dir>/snapshots` and offers them to joining nodes; a snapshot
    this node restores may take at most `state_sync_max_bytes` of memory."""
    snapshots = (
        SnapshotStore(db_path.parent / "snapshots", snapshot_interval)
        if snapshot_interval > 0
        else None
    )
    abci = AbciApplication(Application(ChainDB(db_path)), snapshots, state_sync_max_bytes)
    server = AbciServer(abci, abci_address)
    server.bind()
    threading.Thread(target=server.serve_forever, name="abci-server", daemon=True).start()
    return CometEngine(abci, rpc_url)


class HttpServer:
    """uvicorn serving an ASGI app on a background thread: HTTPS when given `tls`
    (the context comes from medchain.sdk.tls: TLS 1.2+, mutual TLS if it names a client
    CA), plain HTTP otherwise (tests where TLS is beside the point, --insecure-http)."""

    def __init__(
        self, app: Any, host: str, port: int, name: str, tls: ServerTls | None = None
    ) -> None:
        ssl_options: dict[str, Any] = {}
        if tls is not None:
            context = server_context(tls)  # fail here, on the caller's thread, if unreadable
            ssl_options["ssl_context_factory"] = lambda config, default: context
        # uvicorn logs through the root logger (gateway/logs.py formats it); the access
        # line comes from the apps' RequestLog, with a request id and the route template.
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, **ssl_options
        )
        self.app = app
        self.server = uvicorn.Server(config)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"
        self.tls = tls
        self.name = name
        self._thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    def start(self, timeout: float = 15.0) -> None:
        """Serve on a background thread and return once it listens, so callers can use
        `url` at once; RuntimeError if it does not within `timeout` (port in use?)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self.name} did not start on {self.url} (port in use?)")
            time.sleep(0.05)

    def stop(self) -> None:
        """Ask uvicorn to finish its requests and exit, then wait for its thread; a
        client's idle keep-alive connection gets 2 s, not a hold on shutdown."""
        self.server.should_exit = True
        self._thread.join(timeout=2)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(timeout=8)


class GatewayServer(HttpServer):
    """The node's REST/FHIR gateway over its engine (solo or CometBFT)."""

    def __init__(
        self,
        engine: Engine,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        tls: ServerTls | None = None,
        operators: frozenset[tuple[str, bytes]] = frozenset(),
        limits: Limits | Limiter | None = None,
        min_peers: int = 0,
    ):
        """`operators`: keys allowed raw blocks and state (gateway/auth.py); `limits`:
        what one client may ask (gateway/limits.py; defaults if None); `min_peers`: the
        CometBFT peers /readyz requires (gateway/operations.py)."""
        app = create_app(engine, operators, limits, min_peers)
        super().__init__(app, host, port, "gateway", tls)
        self.limiter: Limiter = app.state.limiter


class MetricsServer(HttpServer):
    """Another server's /metrics, /healthz and /readyz on a port of their own, over plain
    HTTP and without signatures, for Prometheus (which cannot sign requests). Bind it
    to 127.0.0.1 (the default) or to an address only the monitoring network reaches:
    anyone who reaches it learns the activity volumes the metrics show."""

    def __init__(self, served: HttpServer, port: int, host: str = "127.0.0.1") -> None:
        state = served.app.state
        app = metrics_app(state.metrics_registry, state.readiness_checks, served.name)
        super().__init__(app, host, port, f"{served.name}-metrics")


class PublicGatewayServer(HttpServer):
    """Only the public routes of a node's gateway (status, accounts, transactions, DIDs,
    organisations, GS1 Digital Link pages), on a port of their own."""

    def __init__(
        self,
        engine: Engine,
        host: str,
        port: int,
        tls: ServerTls | None = None,
        limits: Limits | Limiter | None = None,
    ) -> None:
        """`limits`: pass the full gateway's `limiter` to share its counters."""
        super().__init__(create_public_app(engine, limits), host, port, "public-gateway", tls)


class EdgeServer(HttpServer):
    """A custodian's edge: its HTTP API plus a thread that follows the chain
    (purging records the chain erased) every `sync_interval` seconds and
    anchors its audit log of refusals every `anchor_interval` seconds."""

    def __init__(
        self,
        edge: CustodianEdge,
        host: str,
        port: int,
        sync_interval: float = 0.5,
        tls: ServerTls | None = None,
        anchor_interval: float = 10.0,
        limits: Limits | Limiter | None = None,
    ) -> None:
        app = create_edge_app(edge, limits)
        super().__init__(app, host, port, f"edge-{edge.org_id}", tls)
        self.limiter: Limiter = app.state.limiter
        self.edge = edge
        self.sync_interval = sync_interval
        self.anchor_interval = anchor_interval
        self._stop = threading.Event()
        self._sync_thread = threading.Thread(target=self._follow, name="edge-sync", daemon=True)

    def _follow(self) -> None:
        anchored_at = time.monotonic()
        try:  # an outdated FHIR search index is rebuilt now, not at the first FHIR request
            fhir_reads.index_of(self.edge)
        except (ClientError, EdgeError) as e:
            log.warning("edge search index: %s (rebuilt at the first FHIR request)", e)
        while not self._stop.wait(self.sync_interval):
            try:
                self.edge.sync()
                if time.monotonic() - anchored_at >= self.anchor_interval:
                    self.edge.anchor_audit_log()
                    anchored_at = time.monotonic()
            except (ClientError, EdgeError) as e:  # node restarting: try again next round
                log.warning("edge sync: %s", e)

    def start(self, timeout: float = 15.0) -> None:
        """Serve, then start following the chain (sync and audit-log anchors)."""
        super().start(timeout)
        self._sync_thread.start()

    def stop(self) -> None:
        """Stop following the chain first, so no sync runs against a closing server."""
        self._stop.set()
        self._sync_thread.join(timeout=10)
        super().stop()


def open_edge(
    home: NodeHome,
    org_key: crypto.KeyPair,
    node_url: str | Sequence[str],
    name: str,
    tls: ClientTls | None = None,
) -> CustodianEdge:
    """The edge service for the org `org_key` is staff of, with its vault under
    <home>/edge/<name>/; it reaches the node trusting (and presenting) `tls`, and
    fails over to the other nodes of `node_url` when given several (its own first)."""
    client = Client(node_url, tls=tls, key=org_key)  # the edge reads as its org's key
    vault = Vault(home.root / "edge" / name, org_key)
    return CustodianEdge(vault, org_key, client)
