"""The explorer on a 4-validator CometBFT localnet (127.0.96.x), in Debian's Chromium:
a proof is checked against a header whose commit more than 2/3 of the validators'
power signed, the set trusted from the network's genesis.json or from a header hash
given at launch; the validators page lists the set; a stranger sees headers and app
hashes but no transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from support.browser import Portals, check, chromium
from support.network import Network, caught_up, running_network

from medchain import crypto
from medchain.network.localnet import rpc
from medchain.portal.trust import load_root, set_root

FIRST_IP = "127.0.96.1"  # this module's own localnet range


@dataclass
class World:
    network: Network
    portals: Portals
    grant: dict[str, Any]
    patient: str

    def page_of(self, who: str) -> Page:
        return self.portals.page_of(who)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("explorer-cometbft")
    run = running_network("cometbft", tmp, first_ip=FIRST_IP)
    net = next(run)
    keys = dict(net.keys) | {"patient": crypto.generate_keypair()}
    keys["stranger"] = crypto.generate_keypair()
    client = net.client(0, key=keys["patient"])
    assert client.send(keys["patient"], "identity", "register_patient", {})["code"] == 0
    patient = client.account(keys["patient"])["did"]
    grant = client.send(
        keys["patient"],
        "consent",
        "grant",
        {
            "patient": patient,
            "grantee_kind": "role",
            "grantee": "pharmacist",
            "purposes": ["TREAT"],
            "scope_types": ["MedicationRequest"],
            "expires_ms": client.block_time_ms() + 86_400_000,
        },
    )
    assert grant["code"] == 0, grant
    for node in (0, 1):  # header h+1 vouches for block h; the patient reads node 1
        caught_up(net.client(node), int(grant["height"]) + 2)
    genesis = Path(tmp / "localnet" / "node0" / "config" / "genesis.json")
    header_hash = rpc(net.rpcs[0], "commit", height=2)["signed_header"]["commit"]["block_id"]
    fetch = net.client(0).get
    roots = {
        "operator": load_root(str(genesis), lambda h: fetch(f"/v1/chain/signed-header/{h}")),
        "patient": load_root(
            f"2:{header_hash['hash']}", lambda h: fetch(f"/v1/chain/signed-header/{h}")
        ),
        "stranger": load_root(str(genesis), lambda h: fetch(f"/v1/chain/signed-header/{h}")),
    }
    with ExitStack() as stack:
        portals = Portals(stack.enter_context(chromium()))
        stack.callback(portals.stop)
        for who, root in roots.items():
            node = net.client(1 if who == "patient" else 0, key=keys[who])
            server = portals.start(who, node, keys[who])
            set_root(server.app, root)
        yield World(net, portals, grant, patient)
    next(run, None)


def test_proofs_are_checked_against_headers_the_validators_signed(world: World) -> None:
    for who, root in (("operator", "genesis genesis.json"), ("patient", "header 2:")):
        page = world.page_of(who)
        page.goto("/explorer")
        expect(page.locator("#root")).to_contain_text(root)
        page.get_by_label("A transaction id or a state key").fill(world.grant["tx_id"])
        page.get_by_role("button", name="Verify").click()
        expect(page.locator("#verdict")).to_contain_text("Verified")
        expect(page.locator("#verdict")).to_contain_text(
            f"against header {int(world.grant['height']) + 1}, signed by"
        )
        check(page, f"explorer-cometbft-verify-{who}")
    page = world.page_of("operator")
    page.goto("/explorer/validators")
    expect(page.locator("#validators tbody tr")).to_have_count(4)
    check(page, "explorer-cometbft-validators")
    page.goto(f"/explorer/blocks/{world.grant['height']}")
    expect(page.locator("#header-check")).to_contain_text("verified on this computer")
    expect(page.locator("#txs")).to_contain_text(world.grant["tx_id"])
    check(page, "explorer-cometbft-block-operator")


def test_a_stranger_sees_headers_but_no_transaction(world: World) -> None:
    page = world.page_of("stranger")
    page.goto("/explorer/blocks")
    expect(page.locator("#blocks-refused")).to_be_visible()
    expect(page.locator("#blocks tbody tr").first).to_be_visible()
    expect(page.locator("#blocks thead th")).to_have_count(4)  # no Transactions column
    check(page, "explorer-cometbft-blocks-stranger")
    page.goto(f"/explorer/blocks/{world.grant['height']}")
    expect(page.locator("#txs-refused")).to_be_visible()
    expect(page.locator("#header-check")).to_contain_text("verified on this computer")
    assert world.grant["tx_id"] not in page.locator("main").inner_text()
    assert world.patient not in page.content()
    check(page, "explorer-cometbft-block-stranger")
