"""MedChain under real CometBFT v0.38 processes: 4 validators on loopback.

The tests share one localnet (starting it costs seconds) and run in file
order; each leaves all four nodes running and in agreement.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support.ledger import patient_registration

from medchain import crypto, encoding
from medchain.consensus.application import Application
from medchain.consensus.solo import SoloEngine
from medchain.core.genesis import Params, parse_genesis
from medchain.core.tx import build_tx, key_id
from medchain.network.cometbft import CometBFTNotFound, binary
from medchain.network.localnet import Localnet, rpc
from medchain.node import free_port
from medchain.storage.chain_db import ChainDB

try:
    binary()
except CometBFTNotFound as e:  # make test installs it; say so rather than pass silently
    pytest.fail(str(e), pytrace=False)

FIRST_IP = "127.0.3.1"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def heights(net: Localnet) -> list[int | None]:
    return [row["height"] for row in net.status()]


def stored_app_hashes(net: Localnet, node: int) -> dict[int, bytes]:
    """height -> app hash from a node's own MedChain database (read-only)."""
    db = net.nodes[node].home / "medchain" / "chain.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {h: bytes(a) for h, a in conn.execute("SELECT height, app_hash FROM blocks")}


def assert_agreement(net: Localnet, nodes: list[int] | None = None) -> int:
    """Every pair of nodes has the same app hash at every height both have."""
    nodes = nodes if nodes is not None else [n.index for n in net.nodes]
    hashes = {i: stored_app_hashes(net, i) for i in nodes}
    common = set.intersection(*(set(h) for h in hashes.values()))
    assert len(common) > 1
    for h in sorted(common):
        assert len({hashes[i][h] for i in nodes}) == 1, f"app hash differs at height {h}"
    return max(common)


def patient_tx(net: Localnet) -> bytes:
    return patient_registration(net.chain_id)


def broadcast(net: Localnet, node: int, raw: bytes) -> dict:
    return dict(rpc(net.nodes[node].rpc, "broadcast_tx_sync", tx="0x" + raw.hex()))


def committed(net: Localnet, node: int, raw: bytes) -> dict | None:
    """The tx as CometBFT indexed it (CometBFT keys txs by SHA-256, MedChain by SM3)."""
    try:
        return dict(rpc(net.nodes[node].rpc, "tx", hash="0x" + hashlib.sha256(raw).hexdigest()))
    except RuntimeError:
        return None


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Localnet]:
    localnet = Localnet(tmp_path_factory.mktemp("localnet"))
    localnet.create(4, FIRST_IP, Params(max_block_txs=2000))
    localnet.up()
    try:
        wait_until(
            lambda: all(h is not None and h >= 2 for h in heights(localnet)),
            60,
            "4 validators to commit blocks",
        )
        yield localnet
    finally:
        localnet.down()


def test_four_validators_commit_signed_txs_and_agree(net: Localnet) -> None:
    txs = [patient_tx(net) for _ in range(24)]
    for i, raw in enumerate(txs):
        assert broadcast(net, i % 4, raw)["code"] == 0
    wait_until(lambda: all(committed(net, 0, raw) for raw in txs), 30, "txs to commit")
    assert all(committed(net, 0, raw)["tx_result"]["code"] == 0 for raw in txs)
    # The admin registers an org on node 2; every node sees it.
    admin = net.admin_key()
    org = build_tx(
        admin,
        chain_id=net.chain_id,
        contract="identity",
        action="register_org",
        payload={
            "org_id": "pumch",
            "name": "PUMCH",
            "org_type": "hospital",
            "admin_public_key": crypto.generate_keypair().public,
        },
        nonce=0,
    )
    assert broadcast(net, 2, org)["code"] == 0
    # Each node answers from its own committed state: wait for every one of
    # them to have the block, not just one (a lagging node answers NOT_FOUND).
    wait_until(
        lambda: all(committed(net, i, org) is not None for i in range(len(net.nodes))),
        30,
        "org registration on every node",
    )
    for node in net.nodes:
        q = rpc(node.rpc, "abci_query", path='"/state"', data="0x" + b"identity/org/pumch".hex())
        assert q["response"]["code"] == 0
    assert_agreement(net)


def test_same_blocks_give_same_app_hashes_on_the_solo_engine(net: Localnet, tmp_path: Path) -> None:
    """Replay node 0's committed blocks through the embedded engine."""
    node0 = ChainDB(net.nodes[0].home / "medchain" / "chain.db")
    genesis_doc = (net.nodes[0].home / "config" / "genesis.json").read_text()
    genesis = parse_genesis(json.loads(genesis_doc)["app_state"])
    app = Application(ChainDB(tmp_path / "solo.db"))
    genesis_block = node0.block(0)
    assert genesis_block is not None
    assert app.init_chain(genesis) == genesis_block["app_hash"]
    engine = SoloEngine(app)
    for height in range(1, node0.height + 1):
        b = node0.block(height)
        assert b is not None
        result = engine.produce_block(list(b["txs"]), time_ms=b["header"]["time_ms"])
        assert result.app_hash == b["app_hash"], f"solo and CometBFT differ at {height}"


def test_one_of_four_stopped_network_continues_and_node_catches_up(net: Localnet) -> None:
    net.stop_node(3)
    start = max(h for h in heights(net)[:3] if h is not None)
    txs = [patient_tx(net) for _ in range(10)]
    for raw in txs:
        assert broadcast(net, 0, raw)["code"] == 0
    wait_until(lambda: all(committed(net, 1, raw) for raw in txs), 30, "txs with 3 of 4 up")
    assert min(h for h in heights(net)[:3] if h is not None) > start
    net.start_node(3)
    wait_until(
        lambda: (heights(net)[3] or 0) >= max(h or 0 for h in heights(net)[:3]),
        60,
        "node 3 to catch up",
    )
    # CometBFT indexes a block's txs just after committing it: wait, don't peek.
    wait_until(lambda: committed(net, 3, txs[-1]) is not None, 30, "node 3 to index the txs")
    assert_agreement(net)


def test_two_of_four_stopped_no_blocks_then_resume(net: Localnet) -> None:
    net.stop_node(2)
    net.stop_node(3)
    time.sleep(1.5)
    stalled = heights(net)[:2]
    raw = patient_tx(net)
    assert broadcast(net, 0, raw)["code"] == 0  # accepted into the mempool, not committed
    time.sleep(4)
    now = heights(net)[:2]
    assert all(
        b is not None and a is not None and b <= a + 1 for a, b in zip(stalled, now, strict=True)
    )
    assert committed(net, 0, raw) is None
    net.start_node(2)
    net.start_node(3)
    wait_until(lambda: committed(net, 0, raw) is not None, 60, "the network to resume")
    wait_until(lambda: len({h for h in heights(net)}) <= 2, 60, "all nodes to be live")
    assert_agreement(net)


def test_kill_9_of_an_app_process_under_load_replays_to_same_state(net: Localnet) -> None:
    accepted: list[bytes] = []
    refused: list[bytes] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            raw = patient_tx(net)
            try:
                code = broadcast(net, 0, raw)["code"]
            except (httpx.HTTPError, RuntimeError):  # a restarting node may drop one
                continue
            (accepted if code == 0 else refused).append(raw)
            # A tx CheckTx must refuse: a replay with a used nonce.
            bad = patient_registration("wrong-chain")
            if broadcast(net, 0, bad)["code"] != 0:
                refused.append(bad)

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(2)
    net.kill(1, "abci")  # SIGKILL the MedChain app of node 1 mid-load
    time.sleep(2)
    stop.set()
    thread.join()
    net.start_node(1)
    wait_until(lambda: all(committed(net, 0, raw) for raw in accepted), 60, "accepted txs")
    wait_until(
        lambda: (heights(net)[1] or 0) >= (heights(net)[0] or 0) - 1,
        60,
        "node 1 to replay and catch up",
    )
    assert len(accepted) > 10 and len(refused) > 10
    # Node 1 may still be a block behind node 0: wait for it, then none is lost.
    wait_until(
        lambda: all(committed(net, 1, raw) is not None for raw in accepted[-20:]),
        60,
        "node 1 to have every committed tx",
    )
    for raw in refused:
        assert committed(net, 0, raw) is None, "a tx refused by CheckTx reached a block"
    assert_agreement(net)


def admin_tx(net: Localnet, action: str, payload: dict) -> bytes:
    """A consortium admin tx with the admin's next nonce, read through abci_query."""
    admin = net.admin_key()
    key = "nonce/" + key_id(admin.suite, admin.public).hex()
    q = rpc(net.nodes[0].rpc, "abci_query", path='"/state"', data="0x" + key.encode().hex())
    value = q["response"].get("value")
    nonce = encoding.decode(base64.b64decode(value)) if value else 0
    return build_tx(
        admin,
        chain_id=net.chain_id,
        contract="identity",
        action=action,
        payload=payload,
        nonce=nonce,
    )


def test_validator_set_changes_by_identity_transaction(net: Localnet) -> None:
    key_file = net.nodes[3].home / "config" / "priv_validator_key.json"
    pub_key = base64.b64decode(json.loads(key_file.read_text())["pub_key"]["value"])

    def validator_count() -> int:
        return int(rpc(net.nodes[0].rpc, "validators")["total"])

    assert validator_count() == 4
    genesis = json.loads((net.nodes[0].home / "config" / "genesis.json").read_text())
    original = int(genesis["validators"][3]["power"])
    # Restore the original power: re-adding it with more than a third of the total
    # would let this one validator (faulty in the next test) decide alone.
    for power, count in ((0, 3), (original, 4)):
        raw = admin_tx(net, "set_validator", {"pub_key": pub_key, "power": power})
        assert broadcast(net, 0, raw)["code"] == 0
        wait_until(lambda raw=raw: committed(net, 0, raw) is not None, 30, "set_validator")
        assert committed(net, 0, raw)["tx_result"]["code"] == 0
        wait_until(lambda count=count: validator_count() == count, 30, f"{count} validators")
    powers = [int(v["voting_power"]) for v in rpc(net.nodes[0].rpc, "validators")["validators"]]
    assert powers == [original] * 4
    assert_agreement(net)


def test_validator_with_a_different_result_is_halted_not_followed(net: Localnet) -> None:
    fault_from = max(h or 0 for h in heights(net)) + 5
    net.start_node(3, env={"MEDCHAIN_FAULT_INJECT": f"wrong-app-hash@{fault_from}"})
    log = net.nodes[3].home / "cometbft.log"
    wait_until(
        lambda: "CONSENSUS FAILURE" in log.read_text(errors="replace"),
        120,
        "node 3 to detect its app hash mismatch",
    )
    assert "wrong Block.Header.AppHash" in log.read_text(errors="replace")
    honest_before = heights(net)[:3]
    raw = patient_tx(net)
    assert broadcast(net, 0, raw)["code"] == 0
    wait_until(lambda: committed(net, 1, raw) is not None, 30, "honest nodes to go on")
    wait_until(
        lambda: all(
            (a or 0) > (b or 0) for a, b in zip(heights(net)[:3], honest_before, strict=True)
        ),
        30,
        "every honest node to commit new blocks",
    )
    stuck = heights(net)[3]
    assert stuck is None or stuck < fault_from + 1
    assert_agreement(net, [0, 1, 2])
    net.start_node(3)  # restart without the fault: it must be able to rejoin


def test_single_validator_node_command_runs_and_stops_cleanly(tmp_path: Path) -> None:
    """`medchain node --engine cometbft`: one validator from a `medchain init` home."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MEDCHAIN_PASSPHRASE": "test-passphrase"}
    home = tmp_path / "home"
    cli = [sys.executable, "-m", "medchain.cli"]
    subprocess.run(
        [*cli, "init", "--home", str(home), "--chain-id", "one"],
        env=env,
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [*cli, "node", "--engine", "cometbft", "--home", str(home), "--port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: _height("http://127.0.0.1:26657") >= 3, 60, "the node to make blocks")
        status = rpc("http://127.0.0.1:26657", "status")
        assert status["node_info"]["network"] == "one"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    comet_pid_gone = subprocess.run(["pgrep", "-f", str(home / "cometbft")], capture_output=True)
    assert comet_pid_gone.stdout == b"", "child processes outlived the node command"


def _height(url: str) -> int:
    try:
        return int(rpc(url, "status", timeout=1)["sync_info"]["latest_block_height"])
    except (httpx.HTTPError, RuntimeError):
        return 0
