"""`medchain localnet`: N CometBFT validators with MedChain apps on one machine.

Node i listens on its own loopback address (127.0.0.{i+1} by default) with
the standard ports, so the network looks like N hosts. Each node is two
processes: CometBFT, and one MedChain process holding the ABCI app and the
node's HTTPS gateway (`medchain localnet serve-node`, the same app and gateway
as `medchain node --engine cometbft`). State of the localnet lives in
`<dir>/localnet.json`, every node's RPC and gateway URLs in `<dir>/nodes.json`,
the development CA and the nodes' certificates in `<dir>/tls/`, each node's
operator keys in `<dir>/node<i>/operators.json` and its process ids in
`<dir>/node<i>/pids.json`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from medchain import crypto
from medchain.core.genesis import Params
from medchain.network import cometbft as cmt
from medchain.sdk.keystore import Keystore
from medchain.sdk.tls import ClientTls, TlsDir, create_ca, issue_certificate

ADMIN_KEY = "consortium-admin"
DEFAULT_PASSPHRASE = "medchain-localnet"
GATEWAY_PORT = 8700  # `medchain node`'s default; each node has its own address
OPERATORS_FILE = "operators.json"  # read by the gateway as `medchain node` reads it
COMETBFT_METRICS_PORT = 26660  # node i serves CometBFT's Prometheus metrics on this + i
SNAPSHOT_INTERVAL = 20  # heights between state-sync snapshots on a localnet's nodes


@dataclass(frozen=True)
class NodeInfo:
    """One localnet validator: its index, its loopback address and its home."""

    index: int
    ip: str
    home: Path
    gateway_port: int = GATEWAY_PORT

    @property
    def rpc(self) -> str:
        """CometBFT's RPC endpoint of this node."""
        return f"http://{self.ip}:26657"

    @property
    def gateway(self) -> str:
        """This node's HTTPS gateway (the API `medchain node` serves)."""
        return f"https://{self.ip}:{self.gateway_port}"

    @property
    def tls_name(self) -> str:
        """The name of this node's certificate and key in the localnet's tls/."""
        return f"node{self.index}"

    @property
    def cometbft_metrics(self) -> str:
        """CometBFT's own Prometheus endpoint of this node (instrumentation in its
        config.toml): a port per node, COMETBFT_METRICS_PORT + its index."""
        return f"http://{self.ip}:{COMETBFT_METRICS_PORT + self.index}/metrics"

    @property
    def abci_address(self) -> str:
        """Where this node's MedChain ABCI app listens for CometBFT."""
        return f"tcp://{self.ip}:26658"


def prometheus_config(ip: str, index: int) -> dict[tuple[str, str], str]:
    """config.toml settings that turn on CometBFT's Prometheus endpoint for node `index`
    on its own address and port (consensus height, peers, mempool, block interval...)."""
    return {
        ("instrumentation", "prometheus"): "true",
        ("instrumentation", "prometheus_listen_addr"): f'"{ip}:{COMETBFT_METRICS_PORT + index}"',
    }


def rpc(url: str, method: str, timeout: float = 5.0, **params: Any) -> Any:
    """Call CometBFT's JSON-RPC over HTTP GET; returns `result`."""
    r = httpx.get(f"{url}/{method}", params=params, timeout=timeout)
    body = r.json()
    if "error" in body:
        raise RuntimeError(f"{method}: {body['error']}")
    return body["result"]


class Localnet:
    """A local network rooted at a directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def manifest(self) -> dict[str, Any]:
        """The localnet's `localnet.json`, with a hint to run `localnet up` when absent."""
        path = self.root / "localnet.json"
        if not path.exists():
            raise FileNotFoundError(f"no localnet in {self.root}: run `medchain localnet up`")
        return dict(json.loads(path.read_text()))

    @property
    def nodes(self) -> list[NodeInfo]:
        """Every validator of the localnet, in index order."""
        manifest = self.manifest
        port = int(manifest.get("gateway_port", GATEWAY_PORT))
        return [NodeInfo(n["index"], n["ip"], Path(n["home"]), port) for n in manifest["nodes"]]

    @property
    def tls(self) -> TlsDir:
        """The localnet's development CA and every node's certificate."""
        return TlsDir(self.root / "tls")

    @property
    def client_tls(self) -> ClientTls:
        """What a client of the nodes' gateways trusts: the localnet's CA."""
        return ClientTls(self.tls.ca_cert)

    @property
    def gateways(self) -> list[str]:
        """Every node's gateway URL, in index order."""
        return [node.gateway for node in self.nodes]

    @property
    def chain_id(self) -> str:
        """The localnet's chain id, from its manifest."""
        return str(self.manifest["chain_id"])

    @property
    def snapshot_interval(self) -> int:
        """Heights between the state-sync snapshots every node's app writes (0: none)."""
        return int(self.manifest.get("snapshot_interval", SNAPSHOT_INTERVAL))

    @property
    def keystore(self) -> Keystore:
        """The localnet's keys (the consortium admin's among them)."""
        return Keystore(self.root / "keys")

    def admin_key(self) -> crypto.KeyPair:
        """The consortium admin key, to sign governance txs on the localnet."""
        return self.keystore.load(
            ADMIN_KEY, os.environ.get("MEDCHAIN_PASSPHRASE", DEFAULT_PASSPHRASE)
        )

    def create(
        self,
        n: int,
        first_ip: str = "127.0.0.1",
        params: Params | None = None,
        extra_config: dict[tuple[str, str], str] | None = None,
        builtin_app: str | None = None,
        operators: list[tuple[str, str, bytes]] | None = None,
        gateway_port: int = GATEWAY_PORT,
        chain_id: str | None = None,
        snapshot_interval: int = SNAPSHOT_INTERVAL,
        profile: str = "business",
    ) -> None:
        """Keys, genesis, configs, a development CA with a certificate per node and
        the nodes' operator lists, for `n` validators (no process started); the chain
        id is `chain_id` if given, else the random one `cometbft testnet` picks.

        `snapshot_interval`: every node's app writes a state-sync snapshot every that
        many heights (0: none), for nodes that join later (`add_node`).
        `profile`: the system contracts the chain runs ("business", or "regulator" for a
        regulator network that a relay writes to).
        `operators`: (name, suite, public key) of keys every node's gateway lets read
        raw blocks and state, e.g. a custodian edge's; the consortium admin always is
        one. `builtin_app="kvstore"` runs CometBFT's own kvstore app instead of
        MedChain: the baseline the benchmarks compare against.
        """
        if (self.root / "localnet.json").exists():
            raise FileExistsError(f"a localnet already exists in {self.root}")
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                cmt.binary(),
                "testnet",
                "--v",
                str(n),
                "--o",
                str(self.root),
                "--starting-ip-address",
                first_ip,
                "--populate-persistent-peers",
            ],
            check=True,
            capture_output=True,
        )
        admin = crypto.generate_keypair()
        secret = os.environ.get("MEDCHAIN_PASSPHRASE", DEFAULT_PASSPHRASE)
        self.keystore.save(ADMIN_KEY, admin, secret, 20_000)
        create_ca(self.tls, "MedChain localnet development CA", secret)
        operator_list = [
            {"name": name, "suite": suite, "public_key": public.hex()}
            for name, suite, public in [(ADMIN_KEY, admin.suite, admin.public), *(operators or [])]
        ]
        params = params or Params()
        app_state = {
            "genesis_time_ms": 0,
            "params": params.to_dict(),
            "consortium_admins": [
                {"name": ADMIN_KEY, "suite": admin.suite, "public_key": admin.public.hex()}
            ],
        }
        if chain_id:
            app_state["chain_id"] = chain_id
        if profile != "business":  # e.g. "regulator": a regulator network on CometBFT
            app_state["profile"] = profile
        base = ipaddress.ip_address(first_ip)
        nodes = []
        for i in range(n):
            home = self.root / f"node{i}"
            ip = str(base + i)
            extra = prometheus_config(ip, i) | dict(extra_config or {})
            if builtin_app:
                extra[("", "proxy_app")] = f'"{builtin_app}"'
            cmt.configure_node(home, ip, extra=extra)
            cmt.write_app_state(home, app_state, params.max_block_bytes)
            issue_certificate(self.tls, f"node{i}", [ip, "localhost"], secret)
            (home / OPERATORS_FILE).write_text(
                json.dumps({"operators": operator_list}, indent=1) + "\n"
            )
            nodes.append({"index": i, "ip": ip, "home": str(home)})
        chain_id = json.loads((self.root / "node0/config/genesis.json").read_text())["chain_id"]
        manifest = {
            "chain_id": chain_id,
            "nodes": nodes,
            "builtin_app": builtin_app,
            "gateway_port": gateway_port,
            "snapshot_interval": snapshot_interval,
        }
        (self.root / "localnet.json").write_text(json.dumps(manifest, indent=2))
        self._write_nodes_file()

    def add_node(self, state_sync: bool = True, rpc_servers: tuple[int, int] = (0, 1)) -> int:
        """Make one more node, a full node (not a validator), as a new hospital would:
        its own keys (`cometbft init`), the network's genesis, the validators as
        persistent peers, its certificate and operators; returns its index. With
        `state_sync` it joins from a snapshot: CometBFT's light client checks the
        snapshot's app hash against headers from two nodes' RPC (`rpc_servers`),
        starting from a trusted header taken now from the first of them; otherwise it
        replays every block from genesis. Start it with `start_node`."""
        manifest = self.manifest
        validators = self.nodes
        index = len(validators)
        ip = str(ipaddress.ip_address(validators[-1].ip) + 1)
        home = self.root / f"node{index}"
        subprocess.run([cmt.binary(), "init", "--home", str(home)], check=True, capture_output=True)
        first = validators[0].home
        (home / "config" / "genesis.json").write_text(
            (first / "config" / "genesis.json").read_text()
        )
        peers = ",".join(f"{_node_id(v.home)}@{v.ip}:26656" for v in validators)
        extra = {("p2p", "persistent_peers"): f'"{peers}"'} | prometheus_config(ip, index)
        if state_sync:
            trusted = validators[rpc_servers[0]].rpc
            height = int(rpc(trusted, "status")["sync_info"]["latest_block_height"])
            header_hash = rpc(trusted, "commit", height=height)["signed_header"]["commit"][
                "block_id"
            ]["hash"]
            servers = ",".join(validators[i].rpc for i in rpc_servers)
            extra |= {
                ("statesync", "enable"): "true",
                ("statesync", "rpc_servers"): f'"{servers}"',
                ("statesync", "trust_height"): str(height),
                ("statesync", "trust_hash"): f'"{header_hash}"',
                ("statesync", "trust_period"): '"168h0m0s"',
                ("statesync", "discovery_time"): '"5s"',
            }
        cmt.configure_node(home, ip, extra=extra)
        secret = os.environ.get("MEDCHAIN_PASSPHRASE", DEFAULT_PASSPHRASE)
        issue_certificate(self.tls, f"node{index}", [ip, "localhost"], secret)
        (home / OPERATORS_FILE).write_text((first / OPERATORS_FILE).read_text())
        manifest["nodes"].append({"index": index, "ip": ip, "home": str(home), "validator": False})
        (self.root / "localnet.json").write_text(json.dumps(manifest, indent=2))
        self._write_nodes_file()
        return index

    def _write_nodes_file(self) -> None:
        """`nodes.json`: what a client needs to reach every node (its RPC, its gateway
        and the CA that signed the gateways' certificates), for scripts and tests."""
        doc = {
            "chain_id": self.chain_id,
            "ca": str(self.tls.ca_cert.resolve()),
            "nodes": [
                {
                    "index": node.index,
                    "ip": node.ip,
                    "rpc": node.rpc,
                    "gateway": None if self.manifest.get("builtin_app") else node.gateway,
                    "home": str(node.home),
                }
                for node in self.nodes
            ],
        }
        (self.root / "nodes.json").write_text(json.dumps(doc, indent=2) + "\n")

    def start_node(self, i: int, env: dict[str, str] | None = None) -> None:
        """Start node i's ABCI app and gateway (one process, `pids["abci"]`), then its
        CometBFT (which replays what the app lacks); the gateway serves once the app
        has its genesis (`wait_serving`)."""
        node = self.nodes[i]
        self.stop_node(i)
        pids = {}
        if not self.manifest.get("builtin_app"):  # kvstore runs inside CometBFT
            app = self._start_app(i, env)
            self._wait_port(node.ip, 26658, app)
            pids["abci"] = app.pid
        comet = cmt.start_cometbft(node.home, node.home / "cometbft.log")
        pids["cometbft"] = comet.pid
        (node.home / "pids.json").write_text(json.dumps(pids))

    def _start_app(self, i: int, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
        """`medchain localnet serve-node i`: node i's ABCI app and gateway."""
        node = self.nodes[i]
        with (node.home / "abci.log").open("ab") as out:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "medchain.cli",
                    "localnet",
                    "serve-node",
                    str(i),
                    "--dir",
                    str(self.root),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )

    def wait_serving(self, timeout: float = 60.0, nodes: list[int] | None = None) -> None:
        """Return once the gateway of every node (or of `nodes`) answers /v1/status;
        RuntimeError naming the silent ones after `timeout` seconds."""
        todo = {n.index: n.gateway for n in self.nodes if nodes is None or n.index in nodes}
        verify = self.client_tls.context()
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for index, url in list(todo.items()):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/v1/status", timeout=2, verify=verify).is_success:
                        del todo[index]
            if todo:
                time.sleep(0.2)
        if todo:
            raise RuntimeError(f"gateways not serving after {timeout}s: nodes {sorted(todo)}")

    def _wait_port(self, ip: str, port: int, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ABCI app on {ip}:{port} exited with {proc.returncode}")
            with socket.socket() as s:
                if s.connect_ex((ip, port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"ABCI app did not listen on {ip}:{port}")

    def pids(self, i: int) -> dict[str, int]:
        """The running process ids of node `i` (cometbft, abci); empty when stopped."""
        path = self.nodes[i].home / "pids.json"
        return dict(json.loads(path.read_text())) if path.exists() else {}

    def kill(self, i: int, process: str, sig: int = signal.SIGKILL) -> None:
        """Send a signal to one process ('abci': the app and gateway, or 'cometbft')
        of node i."""
        pid = self.pids(i).get(process)
        if pid:
            _signal(pid, sig)

    def stop_node(self, i: int) -> None:
        """Stop node `i` (SIGTERM, then SIGKILL after 10 s), e.g. to test that the
        others go on without it."""
        for name in ("cometbft", "abci"):
            pid = self.pids(i).get(name)
            if pid:
                _signal(pid, signal.SIGTERM)
                if not _wait_gone(pid, 10):
                    _signal(pid, signal.SIGKILL)
                _wait_gone(pid, 5)
        (self.nodes[i].home / "pids.json").unlink(missing_ok=True)

    def up(self) -> None:
        """Start every node of the localnet (and write `nodes.json` again)."""
        self._write_nodes_file()
        for node in self.nodes:
            self.start_node(node.index)

    def down(self) -> None:
        """Stop every node of the localnet: SIGTERM to all at once, then SIGKILL to
        whatever is still running after 10 s (one node at a time took 10 s each)."""
        pids = [pid for node in self.nodes for pid in self.pids(node.index).values() if pid]
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for pid in pids:
            if not _wait_gone(pid, max(0.0, deadline - time.monotonic())):
                _signal(pid, signal.SIGKILL)
                _wait_gone(pid, 5)
        for node in self.nodes:
            (node.home / "pids.json").unlink(missing_ok=True)

    def status(self) -> list[dict[str, Any]]:
        """RPC and gateway URLs, height, app hash and peer count per node (None where
        it does not answer)."""
        out = []
        builtin = bool(self.manifest.get("builtin_app"))
        for node in self.nodes:
            row: dict[str, Any] = {
                "node": node.index,
                "rpc": node.rpc,
                "gateway": None if builtin else node.gateway,
                "height": None,
                "app_hash": None,
                "peers": None,
            }
            try:
                s = rpc(node.rpc, "status", timeout=2)
                row["height"] = int(s["sync_info"]["latest_block_height"])
                row["app_hash"] = s["sync_info"]["latest_app_hash"]
                row["peers"] = int(rpc(node.rpc, "net_info", timeout=2)["n_peers"])
            except (httpx.HTTPError, RuntimeError, KeyError, ValueError):
                pass
            out.append(row)
        return out


def _node_id(home: Path) -> str:
    """The CometBFT node id (from its node key) of the node at `home`."""
    out = subprocess.run(
        [cmt.binary(), "show-node-id", "--home", str(home)],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    """True once `pid` has exited (reaping it if it is our child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False
