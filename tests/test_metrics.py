"""Health and Prometheus metrics (issue 16.1) on real servers: a solo node's gateway and a
custodian's edge on real ports, a relay's registry, and a CometBFT localnet whose new
full node is not ready until it reaches its peers and catches up.

Counters are compared with what the chain committed (blocks, txs by contract, action
and code, read back from the node's blocks); readiness is driven by real conditions
(the block producer stopped, the edge's node gone, a node cut off from its peers)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import test_relay
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support.consortium import PRESCRIPTION, REPORT, STAFF, Consortium, fetch
from support.ledger import Ledger, patient_registration
from support.servers import free_port, medchain, wait_until_serving
from test_relay import SOURCE, Networks

from medchain import crypto
from medchain.cli.metrics_port import serve_registry
from medchain.consensus.solo import SoloEngine
from medchain.core.block import Block, BlockResult, TxResult
from medchain.core.tx import build_tx, decode_tx
from medchain.edge.custodian import CustodianEdge
from medchain.edge.vault import Vault
from medchain.metrics.chain import NAMED_CODES, OTHER
from medchain.metrics.http import UNMATCHED, Check, Readiness
from medchain.network.cometbft import CometBFTNotFound, binary
from medchain.network.localnet import Localnet, rpc
from medchain.network.relay import Relay, RelayMetrics
from medchain.node import EdgeServer, GatewayServer, MetricsServer
from medchain.sdk.client import NO_RETRY, Client
from medchain.sdk.signing import sign_request

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "medchain.json"
FIRST_IP = "127.0.31.1"  # apart from the other localnet tests (3, 5, 14-18, 22, 23, 26, 27)
ABCI_METRICS = {"medchain_abci_requests_total"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class World:
    """A solo node and hosp-a's edge, both serving; handles to stop each part."""

    consortium: Consortium
    ledger: Ledger
    engine: SoloEngine
    gateway: GatewayServer
    edge_server: EdgeServer
    base_height: int  # committed before the gateway's metrics started counting


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    names = ("admin_a", "doctor_a", "attending_a", "admin_b", "doctor_b", "nurse_b")
    keys = {n: crypto.generate_keypair() for n in (*names, "pharmacist_b", "patient", "root")}
    ledger = Ledger(tmp_path / "chain.db", keys["root"])
    ledger.add_org("hosp-a", keys["admin_a"])
    ledger.add_org("hosp-b", keys["admin_b"])
    for admin, org_id, member, roles in STAFF:
        ledger.add_staff(keys[admin], org_id, keys[member], roles)
    ledger.add_patient(keys["patient"])
    base_height = ledger.app.db.height
    engine = SoloEngine(ledger.app, block_interval=0.05)
    engine.start()
    operator = frozenset({(keys["admin_a"].suite, keys["admin_a"].public)})
    gateway = GatewayServer(engine, port=free_port(), operators=operator)
    gateway.start()
    node = Client(gateway.url, key=keys["admin_a"])
    edge = CustodianEdge(Vault(tmp_path / "vault-a", keys["admin_a"]), keys["admin_a"], node)
    edge_server = EdgeServer(edge, "127.0.0.1", free_port(), sync_interval=0.1)
    edge_server.start()
    world = World(
        Consortium(node, edge_server.url, edge, keys), ledger, engine, gateway, edge_server, 0
    )
    world.base_height = base_height
    yield world
    edge_server.stop()
    gateway.stop()
    engine.stop()


def scrape(url: str, key: crypto.KeyPair | None = None, chain_id: str = "") -> Samples:
    """GET <url>/metrics (signed by `key` if given) parsed by Prometheus' own parser."""
    headers = sign_request(key, chain_id, "GET", "/metrics") if key is not None else {}
    r = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return parse(r.text)


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def by_label(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def committed_txs(node: Client, heights: range) -> dict[tuple[str, str, str], int]:
    """Txs of the committed blocks at `heights`, by contract, action and code name, read
    back from the node (the names a metric may carry: see metrics/chain.py)."""
    counts: dict[tuple[str, str, str], int] = {}
    for height in heights:
        block = node.block(height)
        for raw, result in zip(block["txs"], block["results"], strict=True):
            envelope = decode_tx(bytes.fromhex(raw), max_bytes=1 << 20).envelope
            named = result["code_name"] in {c.name for c in NAMED_CODES}
            pair = (envelope.contract, envelope.action) if named else (OTHER, OTHER)
            key = (*pair, result["code_name"])
            counts[key] = counts.get(key, 0) + 1
    return counts


def run_stories(world: World) -> None:
    """Real traffic: an endpoint, two uploads, a consent grant, a record fetched through
    an exchange session, and two refusals (a repeated registration, a grant by a stranger)."""
    c = world.consortium
    c.ok("admin_a", "identity", "set_endpoint", {"org_id": "hosp-a", "edge_url": c.edge_url})
    for record_id, content in (("report-1", REPORT), ("rx-1", PRESCRIPTION)):
        r = c.upload("admin_a", content, patient=c.did("patient"), record_id=record_id)
        assert r.status_code == 201, r.text
    c.grant("doctor_b", ["DiagnosticReport"])
    assert json.loads(fetch(c, "doctor_b", "report-1"))["resourceType"] == "DiagnosticReport"
    again = c.send("patient", "identity", "register_patient", {})
    stranger = c.send(
        "nurse_b",
        "consent",
        "grant",
        {
            "patient": c.did("patient"),
            "grantee_kind": "did",
            "grantee": c.did("nurse_b"),
            "purposes": ["TREAT"],
            "scope_types": ["DiagnosticReport"],
            "expires_ms": c.block_time_ms() + 86_400_000,
        },
    )
    assert again["code_name"] != "OK" and stranger["code_name"] != "OK"


def test_gateway_metrics_match_what_the_chain_committed(world: World) -> None:
    run_stories(world)
    c = world.consortium
    scanned = httpx.get(f"{world.gateway.url}/v1/no/such/{'ab' * 32}")  # a scanner's path
    assert scanned.status_code == 404
    height = world.ledger.app.db.height
    metrics = scrape(world.gateway.url, c.keys["admin_a"], c.chain_id)
    assert value(metrics, "medchain_blocks_committed_total") == height - world.base_height > 0
    assert value(metrics, "medchain_chain_height") == height
    assert value(metrics, "medchain_mempool_txs") == 0
    expected = committed_txs(c.node, range(world.base_height + 1, height + 1))
    counted = {
        (d["contract"], d["action"], d["code"]): int(v)
        for labels, v in by_label(metrics, "medchain_txs_committed_total").items()
        for d in [dict(labels)]
    }
    assert counted == expected
    assert any(code != "OK" for _, _, code in counted)  # the refusals are counted too
    # Every tx here came in through this gateway: each has an admission-to-commit time.
    assert value(metrics, "medchain_tx_commit_latency_seconds_count") == sum(expected.values())
    assert value(metrics, "medchain_block_commit_latency_seconds_count") == height - (
        world.base_height
    )
    opened = expected.get(("exchange", "request", "OK"), 0)
    assert opened >= 1
    assert value(metrics, "medchain_exchange_sessions_total", event="opened") == opened
    # Requests by route template: ids in paths never reach a label.
    routes = {dict(labels)["route"] for labels in by_label(metrics, "medchain_http_requests_total")}
    assert "/v1/txs" in routes and "/v1/blocks/{height}" in routes and UNMATCHED in routes
    assert not any(re.search(r"[0-9a-f]{16}", route) for route in routes), routes


def test_edge_metrics_count_its_vault_and_the_sessions_it_served(world: World) -> None:
    run_stories(world)
    c = world.consortium
    metrics = scrape(c.edge_url, c.keys["admin_a"], c.chain_id)
    assert value(metrics, "medchain_vault_records") == c.edge.vault.count() == 2
    assert value(metrics, "medchain_vault_bytes") > 0
    assert value(metrics, "medchain_edge_sessions_served_total") == 1
    fetched = value(
        metrics,
        "medchain_http_requests_total",
        server="edge",
        route="/edge/v1/sessions/{session_id}/fetch",
        method="POST",
        status="200",
    )
    assert fetched == 1


def test_metrics_are_for_operators_but_health_is_for_anyone(world: World) -> None:
    c = world.consortium
    for url in (world.gateway.url, c.edge_url):
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200 and ready.json() == {"ready": True, "failed": []}
        assert httpx.get(f"{url}/metrics").status_code == 401  # unsigned
        headers = sign_request(c.keys["doctor_a"], c.chain_id, "GET", "/metrics")
        refused = httpx.get(f"{url}/metrics", headers=headers)
        assert refused.status_code == 403, refused.text
        assert "medchain_" not in refused.text
    # The separate metrics port: unsigned, on loopback, the same registry.
    port = MetricsServer(world.gateway, free_port())
    port.start()
    try:
        assert port.url.startswith("http://127.0.0.1:")
        metrics = parse(httpx.get(f"{port.url}/metrics").text)
        assert value(metrics, "medchain_chain_height") == world.ledger.app.db.height
        assert httpx.get(f"{port.url}/readyz").json()["ready"] is True
    finally:
        port.stop()


def test_readiness_fails_with_the_part_that_failed_and_liveness_stays(world: World) -> None:
    c = world.consortium
    world.engine.stop()  # the block producer is gone: the node can no longer commit
    # /readyz probes at most once a second (Readiness.max_age): wait for a fresh answer.
    wait_until(lambda: httpx.get(f"{world.gateway.url}/readyz").status_code == 503, 10, "503")
    r = httpx.get(f"{world.gateway.url}/readyz")
    assert r.json() == {"ready": False, "failed": ["block_production"]}
    assert httpx.get(f"{world.gateway.url}/healthz").status_code == 200
    assert httpx.get(f"{c.edge_url}/readyz").status_code == 200  # its node still answers
    world.gateway.stop()  # now the edge's node is down
    wait_until(lambda: httpx.get(f"{c.edge_url}/readyz").status_code == 503, 10, "edge 503")
    assert httpx.get(f"{c.edge_url}/readyz").json() == {"ready": False, "failed": ["node"]}
    assert httpx.get(f"{c.edge_url}/healthz").status_code == 200


def test_a_fault_in_counting_never_reaches_the_engine(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A block listener that raised would stop the solo producer (or fail an ABCI
    Commit); a counting fault is logged and skipped, and the node goes on counting."""
    chain_metrics = world.gateway.app.state.chain_metrics
    block = Block(world.consortium.chain_id, 10**6, 0, (b"\x00",))
    garbled = TxResult(b"\x00" * 32, 999)  # type: ignore[arg-type]  # not a Code
    with caplog.at_level("ERROR", logger="medchain.metrics"):
        chain_metrics.observe_block(BlockResult(block, (garbled,), {}, b"", b"", b""))
    assert "not counted" in caplog.text
    c = world.consortium
    before = scrape(world.gateway.url, c.keys["admin_a"], c.chain_id)
    c.ok("admin_a", "identity", "set_endpoint", {"org_id": "hosp-a", "edge_url": c.edge_url})
    after = scrape(world.gateway.url, c.keys["admin_a"], c.chain_id)
    assert value(after, "medchain_chain_height") == value(before, "medchain_chain_height") + 1
    ok = (
        "medchain_txs_committed_total",
        (("action", "set_endpoint"), ("code", "OK"), ("contract", "identity")),
    )
    assert after.get(ok, 0) == before.get(ok, 0) + 1


def test_a_flood_of_readiness_calls_probes_once_a_second() -> None:
    probes: list[int] = []
    readiness = Readiness(lambda: [Check("counted", lambda: probes.append(1) is None)], 3600)
    answers = [readiness.failed() for _ in range(100)]
    assert answers == [[]] * 100 and len(probes) == 1
    assert Readiness(lambda: [Check("broken", lambda: 1 / 0 == 0)]).failed() == ["broken"]


def metric_names(samples: Samples) -> set[str]:
    """Family names as a dashboard queries them (a histogram's _bucket, _count, _sum
    and a counter's _total are all the same family)."""
    names = set()
    for name, _ in samples:
        names.add(name)
        names.add(re.sub(r"_(bucket|count|sum|total|created)$", "", name))
    return names


def dashboard_metrics() -> set[str]:
    """Every metric name the Grafana dashboard's queries use."""
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    assert exprs
    return {m for e in exprs for m in re.findall(r"\b((?:medchain|cometbft)_[a-z0-9_]+)", e)}


def test_the_dashboard_queries_only_medchain_metrics_that_exist(world: World) -> None:
    run_stories(world)
    c = world.consortium
    relay = RelayMetrics("business")
    relay.lag.set(0)
    exposed = (
        metric_names(scrape(world.gateway.url, c.keys["admin_a"], c.chain_id))
        | metric_names(scrape(c.edge_url, c.keys["admin_a"], c.chain_id))
        | metric_names(parse(generate_latest(relay.registry).decode()))
    )
    # ABCI request counts exist on CometBFT nodes only (checked in the localnet test).
    queried = {m for m in dashboard_metrics() if m.startswith("medchain_")} - ABCI_METRICS
    assert queried and queried <= exposed, queried - exposed


@pytest.fixture
def nets(tmp_path: Path) -> Iterator[Networks]:
    """test_relay's business and regulator chains (solo nodes) with an authorised relayer."""
    yield from test_relay.nets.__wrapped__(tmp_path)


def test_the_relay_reports_its_lag_on_its_metrics_port(nets: Networks) -> None:
    raws = [patient_registration(nets.business.chain_id) for _ in range(30)]
    nets.business.outcomes(nets.business.submit_batch(raws))  # committed: the chain is quiet
    relay = Relay(nets.business, nets.regulator, nets.relayer, SOURCE, batch=1)
    server = serve_registry(
        relay.metrics.registry, relay.metrics.checks(), "relay", free_port(), "127.0.0.1"
    )
    assert server is not None
    try:
        behind = nets.business.status()["height"] - relay.stream().height
        relayed = relay.step()  # one block (batch=1): the lag it saw is the whole chain
        metrics = parse(httpx.get(f"{server.url}/metrics").text)
        assert value(metrics, "medchain_relay_lag_heights", source=SOURCE) == behind > 1
        while n := relay.step():
            relayed += n
        relay.step()
        metrics = parse(httpx.get(f"{server.url}/metrics").text)
        assert value(metrics, "medchain_relay_lag_heights", source=SOURCE) == 0
        assert value(metrics, "medchain_relay_digests_total", source=SOURCE) == relayed
        assert httpx.get(f"{server.url}/readyz").json() == {"ready": True, "failed": []}
    finally:
        server.stop()


def test_a_relay_that_cannot_reach_the_business_chain_is_not_ready(nets: Networks) -> None:
    unreachable = Client(f"http://127.0.0.1:{free_port()}", key=nets.relayer, retry=NO_RETRY)
    relay = Relay(unreachable, nets.regulator, nets.relayer, SOURCE)
    server = serve_registry(
        relay.metrics.registry, relay.metrics.checks(), "relay", free_port(), "127.0.0.1"
    )
    assert server is not None
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop, 0.1), daemon=True)
    thread.start()
    try:
        wait_until(lambda: not relay.metrics.last_round_ok, 30, "a failed round")
        r = httpx.get(f"{server.url}/readyz")
        assert r.status_code == 503 and r.json() == {"ready": False, "failed": ["last_round"]}
        metrics = parse(httpx.get(f"{server.url}/metrics").text)
        assert value(metrics, "medchain_relay_round_failures_total", source=SOURCE) >= 1
    finally:
        stop.set()
        thread.join(10)
        server.stop()


def test_medchain_node_serves_a_metrics_port_on_loopback(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert medchain("init", "--home", home, "--chain-id", "metrics-cli").returncode == 0
    assert medchain("keys", "new", "patient", "--home", home).returncode == 0
    port, metrics_port = free_port(), free_port()
    args = ["--home", home, "--port", str(port), "--insecure-http", "--block-interval", "0.05"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "medchain.cli", "node", *args, "--metrics-port", str(metrics_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    try:
        wait_until_serving(proc, f"{metrics_url}/healthz")
        node = f"http://127.0.0.1:{port}"
        out = medchain(
            "tx", "identity", "register_patient", "--key", "patient", "--home", home, "--node", node
        )
        assert out.returncode == 0, out.stderr
        height = httpx.get(f"{node}/v1/status").json()["height"]
        metrics = parse(httpx.get(f"{metrics_url}/metrics").text)
        assert value(metrics, "medchain_chain_height") == height
        assert (
            value(
                metrics,
                "medchain_txs_committed_total",
                contract="identity",
                action="register_patient",
                code="OK",
            )
            == 1
        )
        assert httpx.get(f"{metrics_url}/readyz").json() == {"ready": True, "failed": []}
        assert httpx.get(f"{node}/metrics").status_code == 401  # the API port wants a signature
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- CometBFT: a full node is not ready while it is behind --------------------------------


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def readyz(net: Localnet, index: int) -> tuple[int, Any]:
    node = net.nodes[index]
    with httpx.Client(verify=net.client_tls.context(), timeout=15) as http:
        r = http.get(f"{node.gateway}/readyz")
    return r.status_code, r.json()


@pytest.fixture(scope="module")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Localnet]:
    try:
        binary()
    except CometBFTNotFound as e:
        pytest.skip(str(e))
    net = Localnet(tmp_path_factory.mktemp("metrics") / "localnet")
    net.create(1, FIRST_IP, snapshot_interval=0)
    try:
        net.up()
        net.wait_serving(120)
        yield net
    finally:
        net.down()


def test_a_full_node_is_ready_only_once_it_reaches_peers_and_catches_up(
    localnet: Localnet,
) -> None:
    root = localnet.admin_key()
    validator = localnet.nodes[0]
    node = Client(validator.gateway, tls=localnet.client_tls, key=root)
    patients = [crypto.generate_keypair() for _ in range(3)]
    for p in patients:
        raw = build_tx(
            p,
            chain_id=node.chain_id,
            contract="identity",
            action="register_patient",
            payload={},
            nonce=0,
        )
        assert node.outcomes([node.submit_raw(raw, wait=True)])[0]["code"] == 0
    assert readyz(localnet, 0) == (200, {"ready": True, "failed": []})
    head = int(rpc(validator.rpc, "status")["sync_info"]["latest_block_height"])

    joiner = localnet.add_node(state_sync=False)  # block sync from genesis
    localnet.stop_node(0)  # its only peer is down: the new node cannot catch up
    localnet.start_node(joiner)
    localnet.wait_serving(120, nodes=[joiner])
    status, body = readyz(localnet, joiner)
    assert status == 503 and body["ready"] is False
    assert set(body["failed"]) <= {"synced", "peers"} and "synced" in body["failed"]

    localnet.start_node(0)
    wait_until(lambda: readyz(localnet, joiner)[0] == 200, 120, "the new node to be ready")
    joined = localnet.nodes[joiner]
    assert int(rpc(joined.rpc, "status")["sync_info"]["latest_block_height"]) >= head
    assert readyz(localnet, joiner)[1] == {"ready": True, "failed": []}
    localnet.stop_node(0)  # the chain halts, so the counts below hold still while read

    # CometBFT's own Prometheus endpoint is on, at the node's own port; the dashboard's
    # CometBFT queries name metrics it serves.
    exposed = metric_names(parse(httpx.get(joined.cometbft_metrics, timeout=10).text))
    queried = {m for m in dashboard_metrics() if m.startswith("cometbft_")}
    assert queried and queried <= exposed, queried - exposed
    # The joiner's app committed every block it has (InitChain aside) since it started,
    # and counted the ABCI requests CometBFT sent it.
    headers = sign_request(root, node.chain_id, "GET", "/metrics")
    scrapes: list[Samples] = []

    def settled() -> bool:
        """Two scrapes in a row agree on height and commits (a block the joiner had in
        hand when its peer stopped is applied first)."""
        with httpx.Client(verify=localnet.client_tls.context(), timeout=15) as http:
            scrapes.append(parse(http.get(f"{joined.gateway}/metrics", headers=headers).text))
        names = ("medchain_chain_height", "medchain_blocks_committed_total")
        return len(scrapes) > 1 and all(
            value(scrapes[-1], n) == value(scrapes[-2], n) for n in names
        )

    wait_until(settled, 30, "the joiner's counts to settle")
    metrics = scrapes[-1]
    height = value(metrics, "medchain_chain_height")
    assert height >= head and value(metrics, "medchain_blocks_committed_total") == height
    assert value(metrics, "medchain_abci_requests_total", request="finalize_block") == height
    assert value(metrics, "medchain_abci_requests_total", request="commit") == height
    assert dashboard_metrics() >= ABCI_METRICS and metric_names(metrics) >= ABCI_METRICS
