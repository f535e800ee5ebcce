"""Proofs bound to headers verified by CometBFT's light client (`cometbft light`).

One 4-validator localnet (the consortium) and one single-validator chain that
claims the consortium's chain id (an impostor: same name, validators nobody
follows) run for the whole module. A proof document comes from a node's
`abci_query /state prove=true`; the trusted root is header 1 of the consortium,
read here from node 0 as a user would take it from the published genesis block.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from medchain import crypto, encoding
from medchain.cli import app
from medchain.core import proofs
from medchain.core.block import compute_app_hash
from medchain.core.genesis import Params
from medchain.core.smt import Proof
from medchain.core.tx import build_tx
from medchain.crypto import sm3
from medchain.network.cometbft import CometBFTNotFound, binary
from medchain.network.light import LightClientError, TrustRoot, verify_proof
from medchain.network.localnet import Localnet, rpc

try:
    binary()
except CometBFTNotFound as e:
    pytest.fail(str(e), pytrace=False)

FIRST_IP = "127.0.14.1"
IMPOSTOR_IP = "127.0.15.1"
ORG_KEY = "identity/org/pumch"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (RuntimeError, OSError, KeyError, ValueError, httpx.HTTPError):
            pass  # not up yet (an RPC port not listening is httpx's ConnectError)
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def height(url: str) -> int:
    return int(rpc(url, "status")["sync_info"]["latest_block_height"])


def register_org(net: Localnet, node: int, org_id: str, name: str) -> None:
    tx = build_tx(
        net.admin_key(),
        chain_id=net.chain_id,
        contract="identity",
        action="register_org",
        payload={
            "org_id": org_id,
            "name": name,
            "org_type": "hospital",
            "admin_public_key": crypto.generate_keypair().public,
        },
        nonce=0,
    )
    url = net.nodes[node].rpc
    assert rpc(url, "broadcast_tx_sync", tx="0x" + tx.hex())["code"] == 0
    sha = "0x" + hashlib.sha256(tx).hexdigest()
    wait_until(lambda: rpc(url, "tx", hash=sha) is not None, 30, f"{org_id} to commit")


def state_proof(url: str, key: str) -> dict[str, Any]:
    """The proof document a node serves for `key` (value or absence)."""
    q = rpc(url, "abci_query", path='"/state"', data="0x" + key.encode().hex(), prove="true")
    op = q["response"]["proofOps"]["ops"][0]
    return dict(json.loads(base64.b64decode(op["data"])))


def trusted_root(url: str, at: int = 1) -> TrustRoot:
    commit = rpc(url, "commit", height=at)
    return TrustRoot(at, bytes.fromhex(commit["signed_header"]["commit"]["block_id"]["hash"]))


def forge(doc: dict[str, Any], value: Any = None, height: int | None = None) -> dict[str, Any]:
    """What a lying node can serve: a self-consistent proof document for a value
    (or a height) the chain never had, with the app hash recomputed to match."""
    forged = copy.deepcopy(doc)
    raw = forged["state_proof"]
    if value is not None:
        new = encoding.encode(value)
        forged["value"] = new.hex()
        raw["leaf_value_hash"] = sm3(new).hex()
    if height is not None:
        forged["height"] = height
    root = Proof.from_dict(
        {
            "key_hash": bytes.fromhex(raw["key_hash"]),
            "siblings": [bytes.fromhex(s) for s in raw["siblings"]],
            "leaf_key": bytes.fromhex(raw["leaf_key"]),
            "leaf_value_hash": bytes.fromhex(raw["leaf_value_hash"]),
        }
    ).root()
    app_hash = compute_app_hash(int(forged["height"]), root, bytes.fromhex(forged["results_root"]))
    forged["app_hash"] = app_hash.hex()
    return forged


def start(root: Path, n: int, first_ip: str, chain_id: str | None = None) -> Localnet:
    net = Localnet(root)
    net.create(n, first_ip, Params())
    if chain_id is not None:  # the impostor takes the consortium's name
        for node in net.nodes:
            path = node.home / "config" / "genesis.json"
            genesis = json.loads(path.read_text())
            genesis["chain_id"] = genesis["app_state"]["chain_id"] = chain_id
            path.write_text(json.dumps(genesis, indent=2))
        manifest = {**net.manifest, "chain_id": chain_id}
        (root / "localnet.json").write_text(json.dumps(manifest, indent=2))
    net.up()
    return net


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Localnet, Localnet]]:
    consortium = impostor = None
    try:
        consortium = start(tmp_path_factory.mktemp("consortium"), 4, FIRST_IP)
        impostor = start(tmp_path_factory.mktemp("impostor"), 1, IMPOSTOR_IP, consortium.chain_id)
        for net in (consortium, impostor):
            wait_until(lambda net=net: height(net.nodes[0].rpc) >= 2, 60, "blocks")
        register_org(consortium, 1, "pumch", "PUMCH")
        register_org(impostor, 0, "pumch", "Not PUMCH")
        yield consortium, impostor
    finally:
        for net in (consortium, impostor):
            if net is not None:
                net.down()


def test_state_proof_verifies_through_light_client_from_genesis_header(
    nets: tuple[Localnet, Localnet],
) -> None:
    net, _ = nets
    doc = state_proof(net.nodes[1].rpc, ORG_KEY)
    bound = verify_proof(
        doc, net.nodes[1].rpc, trusted_root(net.nodes[0].rpc), (net.nodes[2].rpc, net.nodes[3].rpc)
    )
    assert bound.header.height == doc["height"] + 1
    assert bound.header.chain_id == net.chain_id
    assert bound.header.app_hash.hex() == doc["app_hash"]
    assert bound.header.signatures >= 3  # > 2/3 of four equal powers
    assert ORG_KEY in bound.what and "PUMCH" in bound.what
    # Absence is proved the same way, from any node, with no witness.
    absent = state_proof(net.nodes[3].rpc, "identity/org/nobody")
    assert "absent" in verify_proof(absent, net.nodes[3].rpc, trusted_root(net.nodes[0].rpc)).what
    # A root trusted after the proof's height: verified backwards along the hash chain.
    wait_until(lambda: height(net.nodes[0].rpc) >= doc["height"] + 2, 30, "two more blocks")
    later = trusted_root(net.nodes[0].rpc, at=doc["height"] + 2)
    assert verify_proof(doc, net.nodes[0].rpc, later).header.height == doc["height"] + 1


def test_altered_value_is_rejected(nets: tuple[Localnet, Localnet]) -> None:
    net, _ = nets
    doc = state_proof(net.nodes[0].rpc, ORG_KEY)
    doc["value"] = encoding.encode({"org_id": "pumch", "name": "Evil"}).hex()
    with pytest.raises(proofs.BadProof, match="value does not match"):
        verify_proof(doc, net.nodes[0].rpc, trusted_root(net.nodes[0].rpc))


def test_lying_gateway_is_caught_by_the_verified_header(nets: tuple[Localnet, Localnet]) -> None:
    """One node serves a forged record with the app hash recomputed to fit: the
    document is self-consistent, but the header the validators signed is not."""
    net, _ = nets
    doc = state_proof(net.nodes[2].rpc, ORG_KEY)
    lie = forge(doc, {"org_id": "pumch", "name": "Evil Clinic"})
    assert "Evil Clinic" in proofs.verify(lie)  # consistent on its own
    with pytest.raises(proofs.BadProof, match="not the trusted one"):
        verify_proof(lie, net.nodes[2].rpc, trusted_root(net.nodes[0].rpc), (net.nodes[0].rpc,))


def test_proof_relabelled_to_another_height_is_rejected(nets: tuple[Localnet, Localnet]) -> None:
    net, _ = nets
    doc = state_proof(net.nodes[0].rpc, ORG_KEY)
    # At height 1 the org was not registered yet: a true value, claimed too early.
    moved = forge(doc, height=1)
    proofs.verify(moved)
    with pytest.raises(proofs.BadProof, match="not the trusted one"):
        verify_proof(moved, net.nodes[0].rpc, trusted_root(net.nodes[0].rpc))


def test_header_from_another_chain_is_rejected(nets: tuple[Localnet, Localnet]) -> None:
    """The impostor uses the consortium's chain id, but its validators are not
    the set the verifier follows from its trusted root."""
    net, impostor = nets
    root = trusted_root(net.nodes[0].rpc)
    fake = state_proof(impostor.nodes[0].rpc, ORG_KEY)
    assert fake["chain_id"] == net.chain_id and "Not PUMCH" in proofs.verify(fake)
    # Served by the impostor: its headers do not descend from the trusted root.
    with pytest.raises(LightClientError, match="expected header's hash"):
        verify_proof(fake, impostor.nodes[0].rpc, root)
    # Checked against the consortium: the consortium's header disagrees (once the
    # consortium, which may run slower than the impostor, has that header).
    wait_until(lambda: height(net.nodes[0].rpc) > fake["height"], 120, "the consortium's header")
    with pytest.raises(proofs.BadProof, match="not the trusted one"):
        verify_proof(fake, net.nodes[0].rpc, root)
    # An honest primary with the impostor among its witnesses: the conflict stops it.
    real = state_proof(net.nodes[0].rpc, ORG_KEY)
    with pytest.raises(LightClientError, match="does not match primary"):
        verify_proof(real, net.nodes[0].rpc, root, (impostor.nodes[0].rpc, net.nodes[1].rpc))


def test_trusted_hash_that_is_not_the_real_one_is_rejected(
    nets: tuple[Localnet, Localnet],
) -> None:
    net, impostor = nets
    doc = state_proof(net.nodes[0].rpc, ORG_KEY)
    for root in (
        TrustRoot(1, hashlib.sha256(b"not header 1").digest()),
        TrustRoot(1, trusted_root(net.nodes[0].rpc, at=2).hash),  # another height's header
        trusted_root(impostor.nodes[0].rpc),
    ):
        with pytest.raises(LightClientError, match="expected header's hash"):
            verify_proof(doc, net.nodes[0].rpc, root)


def test_verify_command_checks_the_header_itself(
    nets: tuple[Localnet, Localnet], tmp_path: Path
) -> None:
    net, _ = nets
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(state_proof(net.nodes[1].rpc, ORG_KEY)))
    root = trusted_root(net.nodes[0].rpc)
    args = ["verify", str(path), "--node", net.nodes[1].rpc, "--trust-height", "1"]
    runner = CliRunner()
    ok = runner.invoke(app, [*args, "--trust-hash", root.hash.hex(), "--witness", net.nodes[2].rpc])
    assert ok.exit_code == 0, ok.output
    assert (
        "verified" in ok.output
        and f"header {json.loads(path.read_text())['height'] + 1}" in ok.output
    )
    wrong = runner.invoke(app, [*args, "--trust-hash", "00" * 32])
    assert wrong.exit_code == 1 and "no verified header" in wrong.output
    path.write_text(json.dumps(forge(json.loads(path.read_text()), {"name": "Evil"})))
    lie = runner.invoke(app, [*args, "--trust-hash", root.hash.hex()])
    assert lie.exit_code == 1 and "does not verify" in lie.output
    missing = runner.invoke(app, ["verify", str(path), "--node", net.nodes[1].rpc])
    assert missing.exit_code == 2 and "--trust-hash" in missing.output
