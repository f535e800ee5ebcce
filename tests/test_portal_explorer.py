"""The explorer and the public pack page in a real browser (Debian's Chromium under
Playwright) against a running solo node that signs its block headers: blocks, a
block's transactions and results, a transaction, the validators page, a proof checked
against a header verified from the trust root given at launch (and refused under a
wrong root), what a stranger sees (headers and app hashes, never a transaction's
contents), and the pack page a QR code opens, each page screenshotted and run through
axe-core."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from support.browser import Portals, check, chromium
from support.consortium import Consortium, running_consortium
from support.ledger import Ledger
from support.servers import free_port
from support.supply_chain import Chain
from support.synthetic_cometbft import Signer, SyntheticChain, ordered, sign, signers

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.contracts import lightclient
from medchain.crypto import cometbft
from medchain.network.comet_rpc import ED25519_KEY_TYPE
from medchain.node import GatewayServer
from medchain.portal.pages.explorer import BlockRow, header_check
from medchain.portal.trust import CometRoot, SoloRoot, Untrusted, load_root, set_root
from medchain.sdk.client import Client

GRANTS = 11  # one block each, so the block list has more than one page


@dataclass
class World:
    consortium: Consortium
    portals: Portals
    header_key: crypto.KeyPair
    grants: list[dict[str, Any]]
    pack_url: str

    def page_of(self, who: str) -> Page:
        return self.portals.page_of(who)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    header_key = crypto.generate_keypair()
    run = running_consortium(tmp_path_factory.mktemp("explorer"), header_key=header_key)
    c = next(run)
    grants = [
        c.ok(
            "patient",
            "consent",
            "grant",
            {
                "patient": c.did("patient"),
                "grantee_kind": "role",
                "grantee": "pharmacist",
                "purposes": ["TREAT"],
                "scope_types": ["MedicationRequest"],
                "expires_ms": c.block_time_ms() + 86_400_000 + i,
            },
        )
        for i in range(GRANTS)
    ]
    c.keys["stranger"] = crypto.generate_keypair()  # a key the chain has never heard of
    # A pack on a supply chain of its own, served by its node's public Digital Link page.
    supply = Chain(Ledger(tmp_path_factory.mktemp("supply") / "chain.db", c.keys["root"]))
    gtin, serial = supply.setup_batch(serials=1)[0].split("/")
    with ExitStack() as stack:
        engine = SoloEngine(supply.ledger.app, block_interval=0.05)
        engine.start()
        stack.callback(engine.stop)
        gateway = GatewayServer(engine, port=free_port())
        gateway.start()
        stack.callback(gateway.stop)
        portals = Portals(stack.enter_context(chromium()))
        stack.callback(portals.stop)
        trusted = SoloRoot(header_key.suite, header_key.public)
        forged = crypto.generate_keypair()  # a root that is not this node's header key
        for who, key, root in (
            ("admin_a", "admin_a", trusted),
            ("patient", "patient", trusted),
            ("stranger", "stranger", trusted),
            ("patient_wrong_root", "patient", SoloRoot(forged.suite, forged.public)),
            ("patient_no_root", "patient", None),
        ):
            server = portals.start(who, Client(c.node.url, key=c.keys[key]), c.keys[key])
            set_root(server.app, root)
        yield World(c, portals, header_key, grants, f"{gateway.url}/01/{gtin}/21/{serial}")
    next(run, None)


def test_an_operator_pages_through_blocks_to_a_transaction_and_the_validators(
    world: World,
) -> None:
    grant = world.grants[-1]
    page = world.page_of("admin_a")
    page.goto("/explorer/blocks")
    rows = page.locator("#blocks tbody tr")
    expect(rows).to_have_count(10)
    expect(page.locator("#blocks-refused")).to_have_count(0)
    check(page, "explorer-blocks-operator")
    top = int(page.locator("#blocks tbody tr td").first.inner_text())
    page.get_by_role("link", name="Older blocks").click()
    expect(page.locator("#blocks tbody tr td").first).to_have_text(str(top - 10))
    page.get_by_role("link", name="Newer blocks").click()
    page.get_by_role("link", name=str(grant["height"]), exact=True).click()
    expect(page.locator("h1")).to_have_text(f"Block {grant['height']}")
    expect(page.locator("#header-check")).to_contain_text("signed by 1 of 1")
    expect(page.locator("#root")).to_contain_text(world.header_key.public.hex())
    check(page, "explorer-block-operator")
    page.get_by_role("link", name=grant["tx_id"]).click()
    expect(page.locator("#tx")).to_contain_text("OK")
    expect(page.locator("#events")).to_contain_text("consent.granted")
    check(page, "explorer-tx-operator")
    page.get_by_role("button", name="Verify").click()
    expect(page.locator("#verdict")).to_contain_text("Verified")
    page.goto("/explorer/validators")
    expect(page.locator("#header-key")).to_contain_text(world.header_key.public.hex())
    check(page, "explorer-validators")
    page.goto("/lang/zh-CN?next=/explorer/blocks")
    expect(page.locator("h1")).to_have_text("区块")
    check(page, "explorer-blocks-zh")


def test_a_proof_is_verified_against_the_signed_header_and_refused_under_a_wrong_root(
    world: World,
) -> None:
    grant = world.grants[0]
    verdicts = {
        "patient": ("Verified", "signed by 1 of 1 voting power, verified from the trust root"),
        "patient_wrong_root": ("Not verified", "not signed by its registered node key"),
        "patient_no_root": ("Verified", "only for consistency"),
    }
    for who, (verdict, note) in verdicts.items():
        page = world.page_of(who)
        page.goto("/explorer")
        page.get_by_label("A transaction id or a state key").fill(grant["tx_id"])
        page.keyboard.press("Enter")
        expect(page.locator("#verdict")).to_contain_text(verdict)
        expect(page.locator("#verdict")).to_contain_text(note)
        if who != "patient_no_root":  # the same page as the others, worded differently
            check(page, f"explorer-verify-{who}")
    expect(page.locator("#root")).to_contain_text("None was given at launch")


def test_a_stranger_sees_headers_and_app_hashes_but_no_transaction(world: World) -> None:
    c = world.consortium
    grant = world.grants[0]
    # The tx page names the id the stranger asked for; no other page may name it.
    private = re.compile(f"{re.escape(c.did('patient'))}|consent\\.granted|pharmacist")
    page = world.page_of("stranger")
    for name, path in (
        ("overview", "/explorer"),
        ("blocks", "/explorer/blocks"),
        ("block", f"/explorer/blocks/{grant['height']}"),
        ("tx", f"/explorer/tx/{grant['tx_id']}"),
        ("validators", "/explorer/validators"),
    ):
        page.goto(path)
        main = page.locator("main").inner_text()
        assert not private.search(main), path
        assert name == "tx" or grant["tx_id"] not in main, path
        check(page, f"explorer-stranger-{name}")
    page.goto("/explorer/blocks")
    expect(page.locator("#blocks-refused")).to_be_visible()
    expect(page.locator("#blocks thead th")).to_have_count(4)  # no Transactions column
    expect(page.locator("#blocks tbody tr")).to_have_count(10)
    page.goto(f"/explorer/blocks/{grant['height']}")
    expect(page.locator("#txs-refused")).to_be_visible()
    expect(page.locator("#header-check")).to_contain_text("signed by 1 of 1")
    page.goto(f"/explorer/tx/{grant['tx_id']}")
    expect(page.locator("#events-refused")).to_be_visible()
    expect(page.locator("#events")).to_have_count(0)
    page.goto("/explorer")
    page.get_by_label("A transaction id or a state key").fill(grant["tx_id"])
    page.get_by_role("button", name="Verify").click()
    expect(page.locator("main")).not_to_contain_text(c.did("patient"))
    expect(page.locator("#verdict")).to_have_count(0)


def test_the_pack_page_a_qr_code_opens_has_the_portals_look(world: World) -> None:
    page = world.portals.browser.new_page()
    page.goto(world.pack_url)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#verdict")).to_contain_text("Genuine pack, safe to use")
    expect(page.locator("#life-cycle thead th")).to_have_count(3)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    check(page, "pack")
    chinese = world.portals.browser.new_page(extra_http_headers={"Accept-Language": "zh-CN,zh"})
    chinese.goto(world.pack_url)
    expect(chinese.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(chinese.locator("#verdict")).to_contain_text("正品")
    check(chinese, "pack-zh")


# -- following a CometBFT validator set (portal/trust.py), on a synthetic chain --------


def rpc_time(t: cometbft.Timestamp) -> str:
    """A timestamp as CometBFT's RPC writes it."""
    return datetime.fromtimestamp(t.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{t.nanos:09d}Z"
    )


def rpc_block_id(b: cometbft.BlockId) -> dict[str, Any]:
    return {
        "hash": b.hash.hex().upper(),
        "parts": {"total": b.parts_total, "hash": b.parts_hash.hex()},
    }


def rpc_validators(keys: list[Signer]) -> list[dict[str, Any]]:
    return [
        {
            "address": s.validator.address.hex().upper(),
            "pub_key": {
                "type": ED25519_KEY_TYPE,
                "value": base64.b64encode(s.validator.pub_key).decode(),
            },
            "voting_power": str(s.power),
        }
        for s in ordered(keys)
    ]


def signed_header_answer(chain: SyntheticChain, height: int, keys: list[Signer]) -> dict[str, Any]:
    """What GET /v1/chain/signed-header/{height} answers on a CometBFT node, for a header
    of `chain` signed by `keys`."""
    h = chain.headers[height]
    commit = sign(chain.chain_id, h, keys)
    header = {
        "version": {"block": str(h.version_block), "app": str(h.version_app)},
        "chain_id": h.chain_id,
        "height": str(h.height),
        "time": rpc_time(h.time),
        "last_block_id": rpc_block_id(h.last_block_id),
    } | {
        name: getattr(h, name).hex().upper()
        for name in (
            "last_commit_hash",
            "data_hash",
            "validators_hash",
            "next_validators_hash",
            "consensus_hash",
            "app_hash",
            "last_results_hash",
            "evidence_hash",
            "proposer_address",
        )
    }
    signatures = [
        {
            "block_id_flag": s.flag,
            "validator_address": s.validator_address.hex().upper(),
            "timestamp": rpc_time(s.time),
            "signature": base64.b64encode(s.signature).decode(),
        }
        for s in commit.signatures
    ]
    return {
        "engine": "cometbft",
        "signed_header": {
            "header": header,
            "commit": {
                "height": str(commit.height),
                "round": commit.round,
                "block_id": rpc_block_id(commit.block_id),
                "signatures": signatures,
            },
        },
        "validators": rpc_validators(keys),
    }


def test_the_trust_root_follows_a_validator_set_change_and_refuses_another_set(
    tmp_path: Path,
) -> None:
    chain = SyntheticChain("synthetic", signers(10, 10, 10, 10))
    chain.next_keys[5] = signers(10, 10, 10, seed=20)  # header 6 on: another set
    for height in range(1, 10):
        chain.header(height, bytes([height]) * 32)
    answers = {h: signed_header_answer(chain, h, chain.keys_at(h)) for h in range(1, 10)}
    genesis = tmp_path / "genesis.json"
    genesis.write_text(
        json.dumps(
            {
                "chain_id": "synthetic",
                "validators": [
                    v | {"power": v.pop("voting_power")} for v in rpc_validators(chain.keys)
                ],
            }
        )
    )
    root = load_root(str(genesis), answers.__getitem__)
    assert isinstance(root, CometRoot)
    verified = root.verify("synthetic", 7, answers.__getitem__)  # header 8, under the new set
    assert verified.root.height == 7 and verified.root.app_hash == bytes([8]) * 32
    assert (verified.signed_power, verified.total_power) == (30, 30)
    assert sorted(root.epochs) == [1, 6]
    with pytest.raises(Untrusted, match="chain"):
        root.verify("another-chain", 7, answers.__getitem__)
    # A node that answers header 3 signed by a set the root never handed trust to.
    others = signers(10, 10, 10, 10, seed=40)
    forged = dict(answers) | {3: signed_header_answer(chain, 3, others)}
    with pytest.raises(Untrusted, match="signed by 0 of 40 voting power"):
        load_root(str(genesis), forged.__getitem__).verify("synthetic", 2, forged.__getitem__)
    # A header hash root: the set that signed the header with that hash, and only that hash.
    header_4 = cometbft.header_hash(chain.headers[4]).hex()
    by_hash = load_root(f"4:{header_4}", answers.__getitem__)
    assert by_hash.verify("synthetic", 8, answers.__getitem__).root.app_hash == bytes([9]) * 32
    with pytest.raises(ValueError, match="does not have hash"):
        load_root(f"4:{'00' * 32}", answers.__getitem__)


def test_a_solo_root_is_the_public_half_of_the_nodes_header_key(tmp_path: Path) -> None:
    key = crypto.generate_keypair()
    home_file = tmp_path / "header_key.json"  # as `medchain node` writes it
    home_file.write_text(json.dumps({"suite": key.suite, "private_key": key.private.hex()}))
    given = SoloRoot(key.suite, key.public)
    assert load_root(str(home_file), {}.__getitem__) == given
    assert load_root(f"{key.suite}:{key.public.hex()}", {}.__getitem__) == given
    assert key.private.hex() not in given.describe()
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="neither"):
        load_root(str(tmp_path / "other.json"), {}.__getitem__)


def test_a_header_of_another_height_is_not_taken_for_the_one_asked() -> None:
    chain = SyntheticChain("synthetic", signers(10, 10, 10, 10))
    for height in range(1, 10):
        chain.header(height, bytes([height]) * 32)
    answers = {h: signed_header_answer(chain, h, chain.keys_at(h)) for h in range(1, 10)}
    root = load_root("1:" + cometbft.header_hash(chain.headers[1]).hex(), answers.__getitem__)
    assert root.verify("synthetic", 7, answers.__getitem__).root.app_hash == bytes([8]) * 32
    # A node that answers genuine header 3 when asked for header 8 (the state after 7).
    lying = dict(answers) | {8: answers[3]}
    with pytest.raises(Untrusted, match="header 8"):
        root.verify("synthetic", 7, lying.__getitem__)


def test_the_block_page_says_verified_only_for_the_app_hash_the_header_vouches_for() -> None:
    key = crypto.generate_keypair()
    app_hash, block_hash = bytes([7]) * 32, bytes([9]) * 32
    signature = crypto.sign(
        key, lightclient.solo_header_bytes("solo-chain", 5, block_hash, app_hash, 1000)
    )
    answer = {
        "engine": "solo",
        "header": {
            "chain_id": "solo-chain",
            "height": 5,
            "block_hash": block_hash.hex(),
            "app_hash": app_hash.hex(),
            "time_ms": 1000,
        },
        "signature": signature.hex(),
    }
    node = SimpleNamespace(chain_id="solo-chain", get=lambda path: answer)
    portal: Any = SimpleNamespace(node=node)
    root = SoloRoot(key.suite, key.public)
    honest = BlockRow(5, block_hash.hex(), app_hash.hex(), 1000, [])
    assert header_check(portal, root, honest) == {
        "ok": True,
        "verified": root.verify("solo-chain", 5, lambda h: answer),
    }
    # The node's block answer (unsigned) names another app hash than its signed header.
    forged = BlockRow(5, block_hash.hex(), "ff" * 32, 1000, [])
    verdict = header_check(portal, root, forged)
    assert verdict is not None and verdict["ok"] is False and "ff" * 32 in verdict["why"]
