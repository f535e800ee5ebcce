"""A node's home directory and how to start a node from it.

<home>/genesis.json     the chain's genesis (shared by every node)
<home>/keys/*.json      encrypted private keys (see sdk/keystore.py)
<home>/data/chain.db    the SQLite chain database
<home>/operators.json   keys this node trusts with raw blocks and state (gateway/auth.py)
<home>/vaults/<org_id>/ a custodian edge's vault (records encrypted at rest; node/vaults.py:
                        by organisation, <home>/edge/<key name>/ before)
<home>/medchain.toml    the serving commands' configuration (node/config.py)
<home>/tls/             dev CA (ca.pem, ca.key) and certificates (node.pem, ...)
<home>/header_key.json  the solo node's SM2 key that signs block headers for other
                        chains' light clients (htlc); made at first start, mode 0600,
                        unencrypted like CometBFT's priv_validator_key.json

Layer: node. Imports the engines (consensus), storage, gateway, edge, sdk, core,
crypto and exceptions to wire one node together; never network, the CLI or the
demo.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from medchain import crypto
from medchain.consensus.abci.server import AbciApplication, AbciServer
from medchain.consensus.application import Application
from medchain.consensus.cometbft_engine import CometEngine
from medchain.consensus.engine import Engine
from medchain.consensus.snapshots import DEFAULT_INTERVAL, DEFAULT_MAX_RESTORE_BYTES, SnapshotStore
from medchain.consensus.solo import SoloEngine
from medchain.core.genesis import Genesis, load_genesis, parse_genesis
from medchain.edge import fhir_reads
from medchain.edge.custodian import CustodianEdge, EdgeError
from medchain.edge.http.app import create_edge_app
from medchain.edge.vault import Vault
from medchain.gateway.app import create_app, create_public_app
from medchain.gateway.limits import Limiter, Limits
from medchain.metrics.http import metrics_app
from medchain.sdk.client import Client, ClientError
from medchain.sdk.keystore import Keystore
from medchain.sdk.tls import ClientTls, ServerTls, TlsDir, server_context
from medchain.storage.chain_db import ChainDB

DEFAULT_PORT = 8700
DEFAULT_EDGE_PORT = 8710
DEFAULT_SNAPSHOT_INTERVAL = DEFAULT_INTERVAL  # heights between state-sync snapshots
DEFAULT_STATE_SYNC_MAX_BYTES = DEFAULT_MAX_RESTORE_BYTES  # memory a restore may take
log = logging.getLogger("medchain.node")


@dataclass(frozen=True)
class NodeHome:
    """Paths inside a node's home directory."""

    root: Path

    @property
    def genesis_path(self) -> Path:
        """The genesis file `medchain init` writes; every node of a chain holds the same one."""
        return self.root / "genesis.json"

    @property
    def db_path(self) -> Path:
        """The node's SQLite chain DB (blocks, state, audit index)."""
        return self.root / "data" / "chain.db"

    @property
    def keystore(self) -> Keystore:
        """The node's encrypted keys (operator, validator, edge)."""
        return Keystore(self.root / "keys")

    @property
    def tls(self) -> TlsDir:
        """The node's CA, certificates and TLS keys."""
        return TlsDir(self.root / "tls")

    def server_tls(self, name: str, client_ca: Path | None = None) -> ServerTls | None:
        """The home's certificate `name` (e.g. node) to serve HTTPS with, if it has one."""
        tls = self.tls
        return ServerTls(tls.cert(name), tls.key(name), client_ca) if tls.has(name) else None

    @property
    def header_key_path(self) -> Path:
        """The solo node's header-signing key (see the module docstring)."""
        return self.root / "header_key.json"

    def header_key(self) -> crypto.KeyPair:
        """The key this solo node signs block headers with; made at first use. It must
        sign without a passphrase at every block, so it is kept unencrypted (0600): its
        only power is to vouch for this node's blocks to other chains."""
        path = self.header_key_path
        if not path.exists():
            key = crypto.generate_keypair()
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"suite": key.suite, "private_key": key.private.hex()}, f)
            return key
        doc = json.loads(path.read_text())
        return crypto.keypair_from_private(doc["suite"], bytes.fromhex(doc["private_key"]))

    def genesis(self) -> Genesis:
        """The chain's genesis, with a hint to run `medchain init` when the home has none."""
        if not self.genesis_path.exists():
            raise FileNotFoundError(
                f"no genesis at {self.genesis_path}: run `medchain init --home {self.root}`"
            )
        return load_genesis(self.genesis_path.read_text())

    def write_genesis(
        self,
        chain_id: str,
        admin_name: str,
        admin: crypto.KeyPair,
        genesis_time_ms: int | None = None,
        profile: str = "business",
    ) -> Genesis:
        """A genesis with one consortium admin (more orgs join by transaction)."""
        g = parse_genesis(
            {
                "chain_id": chain_id,
                "genesis_time_ms": int(time.time() * 1000)
                if genesis_time_ms is None
                else genesis_time_ms,
                "consortium_admins": [
                    {"name": admin_name, "suite": admin.suite, "public_key": admin.public.hex()}
                ],
                "profile": profile,
            }
        )
        self.root.mkdir(parents=True, exist_ok=True)
        self.genesis_path.write_text(g.to_json())
        return g


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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for local demos and tests)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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
