"""A running network for end-to-end API tests, on either engine: `solo` (one node,
the embedded engine) or `cometbft` (a 4-validator localnet of real CometBFT
processes, each node with its own gateway). Tests see only gateway URLs and keys,
so the same test runs on both and, on the localnet, through any of its nodes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.network.cometbft import CometBFTNotFound, binary
from medchain.network.localnet import Localnet
from medchain.node import GatewayServer
from medchain.sdk.client import Client
from medchain.sdk.tls import ClientTls
from support.ledger import Ledger
from support.servers import free_port

ENGINES = ("solo", "cometbft")
LOCALNET_NODES = 4
LOCALNET_FIRST_IP = "127.0.16.1"  # apart from other tests (127.0.3/5/14/15) and bench (6, 7)


@dataclass
class Network:
    """A running chain: its gateways (one per node) and the keys set up with it.

    `keys["root"]` is the consortium admin; `keys["operator"]` is listed as an
    operator (raw blocks and state) on every node, e.g. for a custodian's edge."""

    engine: str
    chain_id: str
    urls: list[str]
    keys: dict[str, crypto.KeyPair]
    tls: ClientTls | None = None
    rpcs: list[str] = field(default_factory=list)  # each node's CometBFT RPC (none on solo)

    def client(self, node: int = 0, key: crypto.KeyPair | None = None) -> Client:
        """A client of node `node`'s gateway (modulo the node count: any test can name
        node 2 and get the one node of a solo network)."""
        return Client(self.urls[node % len(self.urls)], tls=self.tls, key=key)

    def other(self, node: int) -> int:
        """A node other than `node` where there is one (the same node on solo)."""
        return (node + 1) % len(self.urls)


def running_network(
    engine: str, tmp_path: Path, first_ip: str = LOCALNET_FIRST_IP
) -> Iterator[Network]:
    """Start a network on `engine`, yield it, stop every process it started.

    A test module that keeps its localnet to itself (so that localnets of several
    modules may run at once) names its own `first_ip`, an address range no other
    test or bench uses."""
    operator = crypto.generate_keypair()
    if engine == "solo":
        yield from _solo(tmp_path, operator)
    elif engine == "cometbft":
        yield from _localnet(tmp_path, operator, first_ip)
    else:
        raise ValueError(f"unknown engine {engine!r}")


def _solo(tmp_path: Path, operator: crypto.KeyPair) -> Iterator[Network]:
    root = crypto.generate_keypair()
    ledger = Ledger(tmp_path / "chain.db", root)
    engine = SoloEngine(ledger.app, block_interval=0.05)
    engine.start()
    operators = frozenset({(operator.suite, operator.public), (root.suite, root.public)})
    gateway = GatewayServer(engine, port=free_port(), operators=operators)
    gateway.start()
    try:
        keys = {"root": root, "operator": operator}
        yield Network("solo", ledger.chain_id, [gateway.url], keys)
    finally:
        gateway.stop()
        engine.stop()


def _localnet(tmp_path: Path, operator: crypto.KeyPair, first_ip: str) -> Iterator[Network]:
    try:
        binary()
    except CometBFTNotFound as e:
        pytest.skip(str(e))
    net = Localnet(tmp_path / "localnet")
    net.create(LOCALNET_NODES, first_ip, operators=[("edge", operator.suite, operator.public)])
    try:
        net.up()
        net.wait_serving(60)
        keys = {"root": net.admin_key(), "operator": operator}
        rpcs = [node.rpc for node in net.nodes]
        yield Network("cometbft", net.chain_id, net.gateways, keys, net.client_tls, rpcs)
    finally:
        net.down()


def caught_up(client: Client, height: int, timeout: float = 30) -> None:
    """Wait until `client`'s node has committed `height`: on a localnet the node a
    test reads through may be a block behind the one it wrote through."""
    deadline = time.monotonic() + timeout
    while client.status()["height"] < height:
        assert time.monotonic() < deadline, f"{client.url} stuck below height {height}"
        time.sleep(0.05)


@pytest.fixture(scope="module", params=ENGINES)
def network(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Network]:
    """One running network per engine, shared by a test module (the localnet starts once)."""
    yield from running_network(request.param, tmp_path_factory.mktemp(f"network-{request.param}"))
