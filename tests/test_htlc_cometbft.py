"""A cross-chain swap where network B is a 4-validator CometBFT localnet (real
processes) and network A a solo node: A's light client follows B's validator set
and checks each relayed header's commit signatures (more than 2/3 of the power),
so the offer on B is proven to A from CometBFT's own signed header h+1 (which holds
the app hash after block h). Tokens on A for a record-package grant on B, both
completed by the relayer; a header with one altered field refused by A."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.htlc import fund_buyer
from support.ledger import Ledger, did_of
from support.network import Network, caught_up, running_network

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.contracts.consent import model as consent
from medchain.contracts.htlc import model as hm
from medchain.contracts.token import model as tm
from medchain.network.htlc_relay import Relayer, Side, counterpart
from medchain.node import GatewayServer, free_port
from medchain.sdk.client import Client

LOCALNET_FIRST_IP = "127.0.59.1"  # apart from every other localnet in tests and bench
KEYS = ("hosp_a", "hosp_b", "buyer", "patient", "relayer")


@pytest.fixture(scope="module")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    yield from running_network(
        "cometbft", tmp_path_factory.mktemp("htlc-localnet"), first_ip=LOCALNET_FIRST_IP
    )


def solo_a(tmp: Path, k: dict[str, crypto.KeyPair]) -> Ledger:
    """Network A: hosp-a earns tokens and pays its researcher (the buyer)."""
    a = Ledger(tmp / "a.db", crypto.generate_keypair(), chain_id="alliance-a")
    fund_buyer(a, k, cap=10_000)
    return a


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Ledger, str]]:
    tmp = tmp_path_factory.mktemp("htlc-solo")
    k = {n: crypto.generate_keypair() for n in KEYS}
    ledger = solo_a(tmp, k)
    ledger.keys = k  # type: ignore[attr-defined]
    key = crypto.generate_keypair()
    engine = SoloEngine(
        ledger.app,
        block_interval=0.05,
        header_signer=lambda m: crypto.sign(key, m),
        header_key=(key.suite, key.public),
    )
    engine.start()
    gateway = GatewayServer(engine, port=free_port())
    gateway.start()
    try:
        yield ledger, gateway.url
    finally:
        gateway.stop()
        engine.stop()


def test_a_swap_with_a_cometbft_network(localnet: Network, solo: tuple[Ledger, str]) -> None:
    net = localnet
    a_ledger, a_url = solo
    k: dict[str, crypto.KeyPair] = a_ledger.keys  # type: ignore[attr-defined]
    root = net.client(0)

    def on_b(who: str, contract: str, action: str, body: dict[str, Any], node: int = 0) -> Any:
        signer = net.keys["root"] if who == "root" else k[who]
        result = net.client(node, signer).send(signer, contract, action, body)
        assert result["code_name"] == "OK", result
        return result

    def on_a(who: str, action: str, body: dict[str, Any]) -> Any:
        signer = a_ledger.admin if who == "admin" else k[who]
        with Client(a_url, key=signer) as c:
            return c.send(signer, "htlc", action, body)

    # Network B: hosp-b holds the patient's record; the buyer is a doctor there.
    org = {"org_id": "hosp-b", "name": "hosp-b", "org_type": "hospital"}
    on_b("root", "identity", "register_org", org | {"admin_public_key": k["hosp_b"].public})
    member = {"org_id": "hosp-b", "public_key": k["buyer"].public, "roles": ["doctor"]}
    on_b("hosp_b", "identity", "add_member", member)
    for who in ("patient", "relayer"):
        on_b(who, "identity", "register_patient", {})
    record = {
        "record_id": "rec-b1",
        "patient": did_of(k["patient"]),
        "resource_type": "Observation",
        "cid": "b" + "c" * 58,
        "content_hash": bytes(32),
    }
    on_b("hosp_b", "records", "register", record, node=1)

    # Each network's governor registers the other: A follows B's validator set.
    with Client(a_url) as ca:
        a_side = Side(ca)
        b_registration = Side(root).registration()
        assert b_registration["engine"] == "cometbft" and len(b_registration["validators"]) == 4
        assert on_a("admin", "register_counterparty", b_registration)["code_name"] == "OK"
        on_b("root", "htlc", "register_counterparty", a_side.registration())

    # The patient offers the record to the buyer on B, through node 2.
    secret = os.urandom(32)
    b_height = root.status()["height"]
    offer = {
        "lock_id": "swap-c",
        "hashlock": crypto.sm3(secret),
        "recipient": did_of(k["buyer"]),
        "asset": {"kind": "grant", "records": ["rec-b1"], "purposes": ["TREAT"]}
        | {"duration_ms": 86_400_000},
        "timeout_height": b_height + 300,
    }
    on_b("patient", "htlc", "lock", offer, node=2)

    # A forged CometBFT header (one field altered) does not get into A's light client.
    with Client(a_url, key=k["buyer"]) as ca:
        b_side = Side(net.client(3, k["buyer"]))
        state_height = b_side.height() - 1
        forged = b_side.header_update(state_height)
        forged["cometbft"]["header"]["app_hash"] = bytes(32)
        refused = on_a("relayer", "update_client", forged)
        assert refused["code_name"] == "INVALID_PROOF", refused
        # The buyer proves the offer (B's header h+1 and a state proof at h) and pays.
        proven = counterpart(b_side, Side(ca), "swap-c", k["buyer"])
        client = ca.get(f"/v1/htlc/clients/{net.chain_id}")
        assert proven["proof"]["height"] in client["heights"]
    price = {
        "lock_id": "swap-c",
        "hashlock": crypto.sm3(secret),
        "recipient": did_of(k["patient"]),
        "asset": {"kind": "token", "amount": 300},
        "timeout_height": a_ledger.app.db.height + 20,
        "counterpart": proven,
    }
    paid = on_a("buyer", "lock", price)
    assert paid["code_name"] == "OK", paid

    # The patient claims on A; the relayer carries the preimage to B.
    assert on_a("patient", "claim", {"lock_id": "swap-c", "preimage": secret})["code_name"] == "OK"
    assert tm.balance(a_ledger.state, did_of(k["patient"])) == 300
    relayer = Relayer(
        Side(Client(a_url, key=k["relayer"])), Side(net.client(1, k["relayer"])), k["relayer"]
    )
    relayer.step()
    reader = net.client(3, k["buyer"])
    caught_up(reader, root.status()["height"])
    terms = reader.get("/v1/htlc/locks/swap-c/terms")
    assert terms["status"] == hm.CLAIMED
    grant = reader.get("/v1/proofs/state", key=consent.grant_key(terms["grant_id"]))
    assert grant["value"] is not None
