"""Governance on a 4-validator CometBFT localnet (127.0.91.x) whose genesis says
`"governance": "vote"` and founds four hospitals: the consortium admin alone cannot
change the validator set; a fifth validator is proposed, voted by the hospitals'
admins through different nodes, refused before its timelock, executed after it,
and CometBFT applies it (every node's /validators lists it, the new node signs)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from medchain import crypto, encoding
from medchain.contracts.governance import model as gm
from medchain.core.genesis import Params
from medchain.core.tx import build_tx, key_id
from medchain.network.cometbft import CometBFTNotFound, binary
from medchain.network.localnet import Localnet, rpc

try:
    binary()
except CometBFTNotFound as e:
    pytest.fail(str(e), pytrace=False)

FIRST_IP = "127.0.91.1"
ORGS = ("hosp-a", "hosp-b", "hosp-c", "hosp-d")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def height(net: Localnet, node: int) -> int:
    try:
        return int(rpc(net.nodes[node].rpc, "status")["sync_info"]["latest_block_height"])
    except (OSError, RuntimeError):
        return 0


def state(net: Localnet, node: int, key: str) -> Any:
    q = rpc(net.nodes[node].rpc, "abci_query", path='"/state"', data="0x" + key.encode().hex())
    value = q["response"].get("value")
    return encoding.decode(base64.b64decode(value)) if value else None


def send(
    net: Localnet, node: int, key: crypto.KeyPair, contract: str, action: str, payload: dict
) -> dict[str, Any]:
    """Sign with the key's next nonce, broadcast through `node`, wait for the block;
    the tx's height and result as CometBFT indexed them."""
    nonce = state(net, node, "nonce/" + key_id(key.suite, key.public).hex()) or 0
    raw = build_tx(
        key, chain_id=net.chain_id, contract=contract, action=action, payload=payload, nonce=nonce
    )
    sent = rpc(net.nodes[node].rpc, "broadcast_tx_sync", tx="0x" + raw.hex())
    assert sent["code"] == 0, sent
    found: dict[str, Any] = {}

    def indexed() -> bool:
        try:
            tx = rpc(net.nodes[node].rpc, "tx", hash="0x" + hashlib.sha256(raw).hexdigest())
        except RuntimeError:
            return False
        found.update(tx)
        return True

    wait_until(indexed, 30, f"{contract}.{action} to be committed")
    return {"height": int(found["height"]), **found["tx_result"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Localnet, dict]]:
    net = Localnet(tmp_path_factory.mktemp("govnet"))
    net.create(4, FIRST_IP, Params(governance="vote"))
    admins = {org: crypto.generate_keypair() for org in ORGS}
    orgs = [
        {
            "org_id": org,
            "name": org,
            "org_type": "hospital",
            "admin": {"name": org, "suite": k.suite, "public_key": k.public.hex()},
        }
        for org, k in admins.items()
    ]
    for node in net.nodes:  # the same founding members in every node's genesis
        path = node.home / "config" / "genesis.json"
        doc = json.loads(path.read_text())
        doc["app_state"]["orgs"] = orgs
        path.write_text(json.dumps(doc, indent=2))
    net.up()
    try:
        wait_until(lambda: all(height(net, i) >= 2 for i in range(4)), 90, "4 validators")
        yield net, admins
    finally:
        net.down()


def validators(net: Localnet, node: int) -> dict[str, int]:
    rows = rpc(net.nodes[node].rpc, "validators")["validators"]
    return {base64.b64decode(v["pub_key"]["value"]).hex(): int(v["voting_power"]) for v in rows}


def test_a_fifth_validator_joins_by_proposal_vote_and_timelock(
    world: tuple[Localnet, dict[str, crypto.KeyPair]],
) -> None:
    net, admins = world
    new = net.add_node(state_sync=False)
    net.start_node(new)
    key_file = net.nodes[new].home / "config" / "priv_validator_key.json"
    pub_key = base64.b64decode(json.loads(key_file.read_text())["pub_key"]["value"])
    change = {"pub_key": pub_key, "power": 1, "name": "node4"}

    direct = send(net, 0, net.admin_key(), "identity", "set_validator", change)
    assert direct["code"] == 11 and "governed by vote" in direct["log"]  # UNAUTHORIZED

    proposed = send(
        net, 0, net.admin_key(), "governance", "propose",
        {"action": {"kind": "set_validator", **change}, "description": "node4 joins"},
    )  # fmt: skip
    assert proposed["code"] == 0, proposed["log"]
    pid = 1
    for i, org in enumerate(ORGS[:3]):  # through nodes 1, 2, 3
        voted = send(net, i + 1, admins[org], "governance", "vote", {"proposal_id": pid,
                                                                      "choice": "yes"})  # fmt: skip
        assert voted["code"] == 0, voted["log"]
    wait_until(lambda: height(net, 2) >= proposed["height"] + 1, 30, "node 2 to catch up")
    proposal = state(net, 2, gm.proposal_key(pid))
    assert proposal["tally"] == {"yes": 300, "no": 0, "abstain": 0}
    assert proposal["electorate"] == dict.fromkeys(ORGS, 100)

    end, executable = proposal["end_height"], proposal["executable_height"]
    wait_until(lambda: height(net, 0) >= end, 90, "the end of the vote")
    early = send(net, 0, admins["hosp-d"], "governance", "execute", {"proposal_id": pid})
    assert early["height"] < executable  # sent as the vote ended: well inside 10 blocks
    assert early["code"] == 14 and "timelock" in early["log"], early  # INVALID_STATE
    assert pub_key.hex() not in validators(net, 0)
    wait_until(lambda: height(net, 0) >= executable, 90, "the end of the timelock")
    done = send(net, 0, admins["hosp-d"], "governance", "execute", {"proposal_id": pid})
    assert done["code"] == 0, done["log"]
    assert done["height"] >= executable
    # CometBFT applies a validator update two heights after the block that made it.
    wait_until(lambda: pub_key.hex() in validators(net, 0), 60, "CometBFT to apply node4")
    for i in range(4):
        wait_until(lambda i=i: len(validators(net, i)) == 5, 60, f"node {i} to list 5")
    assert validators(net, 0)[pub_key.hex()] == 1
    wait_until(lambda: height(net, new) >= done["height"] + 3, 90, "node4 to keep up")
    executed = state(net, 0, gm.proposal_key(pid))
    assert executed["status"] == gm.EXECUTED and executed["outcome"] == "accepted"
