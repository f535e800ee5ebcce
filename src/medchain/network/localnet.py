"""`medchain localnet`: N CometBFT validators with MedChain apps on one machine.

Node i listens on its own loopback address (127.0.0.{i+1} by default) with
the standard ports, so the network looks like N hosts. Each node is two
processes: the MedChain ABCI app and CometBFT. State of the localnet lives in
`<dir>/localnet.json`; process ids in `<dir>/node<i>/pids.json`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from medchain import crypto
from medchain.core.genesis import Params
from medchain.network import cometbft as cmt
from medchain.sdk.keystore import Keystore

ADMIN_KEY = "consortium-admin"
DEFAULT_PASSPHRASE = "medchain-localnet"


@dataclass(frozen=True)
class NodeInfo:
    """One localnet validator: its index, its loopback address and its home."""

    index: int
    ip: str
    home: Path

    @property
    def rpc(self) -> str:
        """CometBFT's RPC endpoint of this node."""
        return f"http://{self.ip}:26657"

    @property
    def abci_address(self) -> str:
        """Where this node's MedChain ABCI app listens for CometBFT."""
        return f"tcp://{self.ip}:26658"


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
        return [NodeInfo(n["index"], n["ip"], Path(n["home"])) for n in self.manifest["nodes"]]

    @property
    def chain_id(self) -> str:
        """The localnet's chain id, from its manifest."""
        return str(self.manifest["chain_id"])

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
    ) -> None:
        """Keys, genesis and configs for `n` validators (no process started).

        `builtin_app="kvstore"` runs CometBFT's own kvstore app instead of
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
        self.keystore.save(
            ADMIN_KEY, admin, os.environ.get("MEDCHAIN_PASSPHRASE", DEFAULT_PASSPHRASE), 20_000
        )
        params = params or Params()
        app_state = {
            "genesis_time_ms": 0,
            "params": params.to_dict(),
            "consortium_admins": [
                {"name": ADMIN_KEY, "suite": admin.suite, "public_key": admin.public.hex()}
            ],
        }
        base = ipaddress.ip_address(first_ip)
        nodes = []
        for i in range(n):
            home = self.root / f"node{i}"
            ip = str(base + i)
            extra = dict(extra_config or {})
            if builtin_app:
                extra[("", "proxy_app")] = f'"{builtin_app}"'
            cmt.configure_node(home, ip, extra=extra)
            cmt.write_app_state(home, app_state, params.max_block_bytes)
            nodes.append({"index": i, "ip": ip, "home": str(home)})
        chain_id = json.loads((self.root / "node0/config/genesis.json").read_text())["chain_id"]
        (self.root / "localnet.json").write_text(
            json.dumps({"chain_id": chain_id, "nodes": nodes, "builtin_app": builtin_app}, indent=2)
        )

    def start_node(self, i: int, env: dict[str, str] | None = None) -> None:
        """Start node i's ABCI app, then its CometBFT (which replays what the app lacks)."""
        node = self.nodes[i]
        self.stop_node(i)
        pids = {}
        if not self.manifest.get("builtin_app"):  # kvstore runs inside CometBFT
            app = cmt.start_abci(
                node.home / "medchain", node.abci_address, node.home / "abci.log", env
            )
            self._wait_port(node.ip, 26658, app)
            pids["abci"] = app.pid
        comet = cmt.start_cometbft(node.home, node.home / "cometbft.log")
        pids["cometbft"] = comet.pid
        (node.home / "pids.json").write_text(json.dumps(pids))

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
        """Send a signal to one process ('abci' or 'cometbft') of node i."""
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
        """Start every node of the localnet."""
        for node in self.nodes:
            self.start_node(node.index)

    def down(self) -> None:
        """Stop every node of the localnet."""
        for node in self.nodes:
            self.stop_node(node.index)

    def status(self) -> list[dict[str, Any]]:
        """Height, app hash and peer count per node (None where it does not answer)."""
        out = []
        for node in self.nodes:
            row: dict[str, Any] = {
                "node": node.index,
                "rpc": node.rpc,
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
