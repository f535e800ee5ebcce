"""A hospital's validator fails under load (issue 14, "Faults under load"), on a real
4-validator localnet with hosp-a's custodian edge on node 0 (failing over to nodes
1-3), a regulator chain (a solo node) and the relay following the business network
(each block with its signed commit, which the regulator chain checks itself).

In a localnet node the ABCI app and the gateway are one process (`medchain localnet
serve-node i`, the app and gateway of `medchain node --engine cometbft`), beside its
CometBFT: so "kill -9 of the app" and "kill -9 of the gateway" are one fault here,
the kill of that process; the kill of CometBFT is the other. While load generators
send a steady stream of signed txs through the gateways (node 0 first) and hosp-a's
staff upload records through the edge, node 0's app+gateway is killed with SIGKILL
and restarted, then its CometBFT. Afterwards: every upload succeeded (the edge
failed over), every tx a generator saw committed is on every node, all nodes agree on
the app hash at a common height, and the regulator's stream has a digest of every
business block up to a recent height, in order, matching the blocks.

Also here, on the same network: an edge whose node is a block or two behind waits
for the height an upload or a FHIR read names (X-MedChain-Height) instead of
answering from the state before it; a failover client goes back to its own node
only once that node is level with the one it moved to; and a full node (not a
validator) joins by block sync and serves its gateway.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.consortium import NAMES, REPORT, STAFF, Call, run_in_rounds
from support.ledger import did_of
from support.regulator import regulator_chain
from support.servers import free_port

from medchain import crypto
from medchain.contracts.supervision import model as supervision
from medchain.edge.custodian import CustodianEdge
from medchain.edge.requester import HEIGHT_HEADER, upload_record
from medchain.edge.vault import Vault
from medchain.network.cometbft import CometBFTNotFound, binary
from medchain.network.localnet import Localnet, rpc
from medchain.network.relay import CometRpc, Relay, comet_source, verify_stream
from medchain.node import EdgeServer
from medchain.sdk.client import RETRY_FIRST_NODE_AFTER, Client, ClientError
from medchain.sdk.signing import send_signed

FIRST_IP = "127.0.23.1"  # apart from the other localnet tests (3, 5, 14-17, 22) and benches
PHASE_SECONDS = 6.0  # load before, during and after each fault
DAY_MS = 86_400_000


def _preferring(urls: list[str], first: int) -> list[str]:
    return urls[first:] + urls[:first]


@dataclass
class World:
    net: Localnet
    keys: dict[str, crypto.KeyPair]
    node: Client  # hosp-a's edge's client: node 0, then 1-3
    edge_url: str
    regulator: Client
    relayer: crypto.KeyPair
    tmp: Path
    stack: list[Any] = field(default_factory=list)

    @property
    def chain_id(self) -> str:
        return self.net.chain_id

    def client(self, node: int, key: crypto.KeyPair | None = None) -> Client:
        """A client of node `node` alone (no failover), reading as `key`."""
        return Client(self.net.gateways[node], tls=self.net.client_tls, key=key)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    try:
        binary()
    except CometBFTNotFound as e:
        pytest.skip(str(e))
    tmp = tmp_path_factory.mktemp("faults")
    operator, relayer = crypto.generate_keypair(), crypto.generate_keypair()
    net = Localnet(tmp / "localnet")
    net.create(
        4,
        FIRST_IP,
        operators=[
            ("edge", operator.suite, operator.public),
            ("relay", relayer.suite, relayer.public),
        ],
    )
    stack: list[Any] = []
    try:
        net.up()
        net.wait_serving(120)
        keys = {n: crypto.generate_keypair() for n in NAMES} | {
            "root": net.admin_key(),
            "admin_a": operator,
        }
        node = Client(net.gateways, tls=net.client_tls, key=operator)
        orgs: list[Call] = [
            (
                "root",
                "identity",
                "register_org",
                {"org_id": org, "name": org, "org_type": "hospital", "admin_public_key": k.public},
            )
            for org, k in (("hosp-a", keys["admin_a"]), ("hosp-b", keys["admin_b"]))
        ]
        run_in_rounds(node, keys, [*orgs, ("patient", "identity", "register_patient", {})])
        staff: list[Call] = [
            (a, "identity", "add_member", {"org_id": org, "public_key": keys[m].public, "roles": r})
            for a, org, m, r in STAFF
        ]
        run_in_rounds(node, keys, staff)
        edge = CustodianEdge(Vault(tmp / "vault-a", operator), operator, node)
        edge_server = EdgeServer(edge, "127.0.0.1", free_port(), sync_interval=0.2)
        edge_server.start()
        stack.append(edge_server)
        endpoint = {"org_id": "hosp-a", "edge_url": edge_server.url}
        assert node.send(operator, "identity", "set_endpoint", endpoint)["code_name"] == "OK"
        # The regulator chain checks each block's commit against the validators it
        # follows from genesis; the relay reads headers from node 1's CometBFT RPC.
        follow = comet_source(CometRpc(net.nodes[1].rpc))
        with regulator_chain(tmp / "regulator.db", relayer, net.chain_id, follow) as reg:
            yield World(net, keys, node, edge_server.url, reg.client, relayer, tmp, stack)
    finally:
        for part in reversed(stack):
            part.stop()
        net.down()


@contextlib.contextmanager
def cometbft_stopped(net: Localnet, i: int) -> Iterator[Callable[[float], None]]:
    """Node i's CometBFT stopped with SIGSTOP (its app and gateway still answer, from
    the state it last committed) while the others go on with 3 of 4 validators; the
    block gets a function that lets it go on after a delay; it goes on at the end."""
    pid = net.pids(i)["cometbft"]
    os.kill(pid, signal.SIGSTOP)

    def resume_in(seconds: float) -> None:
        threading.Timer(seconds, os.kill, (pid, signal.SIGCONT)).start()

    try:
        yield resume_in
    finally:
        os.kill(pid, signal.SIGCONT)


def test_edge_waits_for_its_node_on_uploads_and_fhir_reads(world: World) -> None:
    """What an upload or a FHIR read depends on (the patient's registration, the
    reader's grant) was committed through node 1 while node 0's CometBFT was stopped:
    node 0 (the edge's node) is a block or two behind when the request arrives. The
    request names that block's height; the edge waits for its node instead of
    answering "no such patient" or "nothing here" (it does without the wait)."""
    net, tls = world.net, world.net.client_tls
    patient = crypto.generate_keypair()
    via_node_1 = Client(net.gateways[1], tls=tls, key=patient)
    edge_node = world.client(0, world.keys["admin_a"])
    with cometbft_stopped(net, 0) as resume_in:
        registered = via_node_1.send(patient, "identity", "register_patient", {})
        assert registered["code_name"] == "OK", registered
        assert edge_node.status()["height"] < registered["height"]  # really behind
        resume_in(0.5)
        upload = upload_record(
            world.keys["admin_a"],
            world.chain_id,
            world.edge_url,
            REPORT,
            did_of(patient),
            record_id="lagging-report",
            height=registered["height"],
        )
    assert upload.status_code == 201, upload.text

    grant = {
        "patient": did_of(patient),
        "grantee_kind": "did",
        "grantee": did_of(world.keys["doctor_b"]),
        "purposes": ["TREAT"],
        "scope_types": ["DiagnosticReport"],
        "expires_ms": via_node_1.block_time_ms() + DAY_MS,
    }
    with cometbft_stopped(net, 0) as resume_in:
        granted = via_node_1.send(patient, "consent", "grant", grant)
        assert granted["code_name"] == "OK", granted
        assert edge_node.status()["height"] < granted["height"]
        resume_in(0.5)
        read = send_signed(
            world.keys["doctor_b"],
            world.chain_id,
            "GET",
            world.edge_url,
            "/fhir/DiagnosticReport/lagging-report",
            headers={"X-MedChain-Purpose": "TREAT", HEIGHT_HEADER: str(granted["height"])},
        )
    assert read.status_code == 200, read.text
    assert read.json()["id"] == "lagging-report"
    bad = send_signed(
        world.keys["doctor_b"],
        world.chain_id,
        "GET",
        world.edge_url,
        "/fhir/DiagnosticReport/lagging-report",
        headers={"X-MedChain-Purpose": "TREAT", HEIGHT_HEADER: "soon"},
    )
    assert bad.status_code == 400 and HEIGHT_HEADER in bad.text


def test_a_failover_client_goes_back_to_its_own_node_only_once_it_is_level(
    world: World,
) -> None:
    """A client that left its own node (node 0 hung) does not go back to it while node
    0 answers from the past (its CometBFT stopped, the others going on): it stays on
    node 1 until node 0 has committed as far, then returns."""
    net = world.net
    client = Client(net.gateways[:2], 2.0, tls=net.client_tls)
    app = net.pids(0)["abci"]
    os.kill(app, signal.SIGSTOP)  # node 0's gateway hangs: the client moves to node 1
    try:
        client.status()
        assert client.url == net.gateways[1]
    finally:
        os.kill(app, signal.SIGCONT)
    with cometbft_stopped(net, 0):
        newcomer = crypto.generate_keypair()
        sent = world.client(1).send(newcomer, "identity", "register_patient", {})
        assert sent["code_name"] == "OK", sent
        assert world.client(0).status()["height"] < sent["height"]
        time.sleep(RETRY_FIRST_NODE_AFTER + 0.5)
        assert client.status()["height"] >= sent["height"]  # not node 0's past
        assert client.url == net.gateways[1]
    _wait(lambda: bool(client.status()) and client.url == net.gateways[0], 60, "node 0 again")


@dataclass
class Load:
    """What the load generators and the uploader saw."""

    committed: list[str] = field(default_factory=list)  # tx ids seen committed (code OK)
    errors: list[str] = field(default_factory=list)
    uploads: list[tuple[float, str, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _generate(world: World, first: int, stop: threading.Event, load: Load) -> None:
    """One patient granting, one signed tx after another, through node `first`
    (failing over to the others); the tx ids seen committed."""
    key = crypto.generate_keypair()
    client = Client(_preferring(world.net.gateways, first), tls=world.net.client_tls, key=key)
    client.send(key, "identity", "register_patient", {})
    patient, n = did_of(key), 0
    while not stop.is_set():
        n += 1
        grant = {
            "patient": patient,
            "grantee_kind": "role",
            "grantee": "doctor",
            "purposes": ["TREAT"],
            "scope_types": ["Observation"],
            "expires_ms": 4_000_000_000_000 + n,
        }
        try:
            out = client.send(key, "consent", "grant", grant)
        except (ClientError, httpx.HTTPError) as e:
            with load.lock:
                load.errors.append(f"{type(e).__name__}: {e}")
            time.sleep(0.2)
            continue
        if out.get("code") == 0 and out.get("status") == "committed":
            with load.lock:
                load.committed.append(out["tx_id"])


def _upload(world: World, stop: threading.Event, load: Load) -> None:
    """hosp-a's admin hands the edge a record every 0.3 s."""
    patient, n = did_of(world.keys["patient"]), 0
    while not stop.is_set():
        n += 1
        record_id = f"load-{n}"
        r = upload_record(
            world.keys["admin_a"], world.chain_id, world.edge_url, REPORT, patient, record_id
        )
        with load.lock:
            load.uploads.append((time.monotonic(), record_id, r.status_code, r.text[:200]))
        time.sleep(0.3)


def test_kill_9_of_a_validators_app_and_cometbft_under_load_loses_nothing(world: World) -> None:
    net = world.net
    stop, relay_stop, load = threading.Event(), threading.Event(), Load()
    business = Client(_preferring(net.gateways, 1), tls=net.client_tls, key=world.relayer)
    relay = Relay(
        business,
        world.regulator,
        world.relayer,
        world.chain_id,
        batch=20,
        business_rpc=net.nodes[1].rpc,
    )
    threads = [
        threading.Thread(target=_generate, args=(world, first, stop, load), daemon=True)
        for first in (0, 0, 1)
    ]
    threads.append(threading.Thread(target=_upload, args=(world, stop, load), daemon=True))
    relay_thread = threading.Thread(target=relay.run, args=(relay_stop, 0.3), daemon=True)
    for thread in [*threads, relay_thread]:
        thread.start()
    down_windows = []
    try:
        for process in ("abci", "cometbft"):
            time.sleep(PHASE_SECONDS)
            killed_at = time.monotonic()
            net.kill(0, process)  # SIGKILL
            time.sleep(PHASE_SECONDS)  # the others carry the load, the edge fails over
            net.start_node(0)
            net.wait_serving(120, nodes=[0])
            down_windows.append((killed_at, time.monotonic()))
        time.sleep(PHASE_SECONDS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
    try:
        failed = [u for u in load.uploads if u[2] != 201]
        assert not failed, failed
        for start, end in down_windows:
            assert any(start < t < end for t, *_ in load.uploads), "no upload while node 0 was down"
        assert len(load.committed) >= 30, (len(load.committed), load.errors[:5])
        print(
            f"\n{len(load.committed)} txs seen committed, {len(load.uploads)} uploads, "
            f"{len(load.errors)} client errors during the faults: {load.errors[:3]}"
        )

        nodes = [world.client(i, world.relayer) for i in range(4)]
        head = max(n.status()["height"] for n in nodes)
        _wait(lambda: min(n.status()["height"] for n in nodes) >= head, 120, "nodes caught up")
        assert len({n.block(head)["app_hash"] for n in nodes}) == 1
        for i, n in enumerate(nodes):
            lost = [t for t in load.committed if n.tx(t).get("status") != "committed"]
            assert not lost, f"node {i} lacks {len(lost)} committed txs"
            for _, record_id, _, _ in load.uploads:
                assert n.record(record_id)["custodian"] == "hosp-a"

        def relayed() -> bool:
            stream = world.regulator.value(supervision.stream_key(world.chain_id))
            return stream is not None and stream["height"] >= head

        _wait(relayed, 120, f"the regulator stream reaching height {head}")
    finally:
        relay_stop.set()
        relay_thread.join(30)
        relay.close()
    stream = world.regulator.value(supervision.stream_key(world.chain_id))
    prefix = f"supervision/digest/{world.chain_id}/"
    keys = [i["key"] for i in world.regulator.scan(prefix, limit=1000)["items"]]
    assert len(keys) < 1000  # all of them
    heights = sorted({int(k.rsplit("/", 2)[1]) for k in keys})
    assert heights == list(range(stream["first_height"], stream["height"] + 1))  # no gap
    with CometRpc(world.net.nodes[1].rpc) as rpc:  # the digests record CometBFT block ids
        found = verify_stream(world.client(1, world.relayer), world.regulator, world.chain_id, rpc)
    assert found == []


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)



def test_a_full_node_joins_by_block_sync_and_serves_its_gateway(world: World) -> None:
    """A new hospital's full node (not a validator) replays every block from its
    peers and serves the same gateway: a read and a submit through it work, and its
    app hash agrees with the validators'."""
    net = world.net
    index = net.add_node(state_sync=False)
    net.start_node(index)
    net.wait_serving(120, nodes=[index])
    full = world.client(index, world.relayer)
    validators = [world.client(i, world.relayer) for i in range(4)]
    head = validators[1].status()["height"]
    _wait(lambda: full.status()["height"] >= head, 180, f"the full node reaching height {head}")
    power = rpc(net.nodes[index].rpc, "status")["validator_info"]["voting_power"]
    assert int(power) == 0  # a full node, not a validator

    reader = world.client(index, world.keys["patient"])
    assert reader.account(world.keys["patient"])["status"] == "active"
    newcomer = crypto.generate_keypair()
    sent = world.client(index).send(newcomer, "identity", "register_patient", {})
    assert sent["code_name"] == "OK", sent
    _wait(lambda: validators[1].status()["height"] >= sent["height"], 60, "node 1")
    assert validators[1].tx(sent["tx_id"])["status"] == "committed"

    common = min(n.status()["height"] for n in [full, *validators])
    assert len({n.block(common)["app_hash"] for n in [full, *validators]}) == 1
