"""The API end to end on both engines: the same tests on a solo node and on a
4-validator CometBFT localnet (real processes, each node with its own gateway),
where they submit through one node and read or fetch through another."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from support.consortium import REPORT, Consortium, consortium_on, run_in_rounds
from support.ledger import did_of
from support.network import Network, network  # noqa: F401  (the engine-parametrized fixture)

from medchain import crypto
from medchain.core import proofs
from medchain.core.tx import build_tx
from medchain.edge.requester import ExchangeFailed, fetch_record
from medchain.fhir.validate import canonical_json

GTIN = "06901234567892"


@pytest.fixture(scope="module")
def world(
    network: Network,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Consortium]:
    """Two hospitals on the network; hosp-a's edge talks to node 0."""
    keys = network.keys
    yield from consortium_on(
        network.urls,
        keys["root"],
        keys["operator"],
        tmp_path_factory.mktemp("vaults"),
        network.tls,
        edge_node=0,
    )


def test_exchange_then_revocation_refuses_the_next_request(
    network: Network,  # noqa: F811
    world: Consortium,
) -> None:
    """The patient grants through node 0, where the custodian's edge is; the doctor
    requests, fetches, decrypts and acknowledges through another node; after the
    revocation the next request through that node is refused."""
    requester = network.client(network.other(0), key=world.keys["doctor_b"])
    grant_id = world.grant("doctor_b", ["DiagnosticReport"])
    got = fetch_record(requester, world.keys["doctor_b"], "report-1")
    assert got.plaintext == canonical_json(json.loads(REPORT) | {"id": "report-1"})
    assert requester.session(got.session_id)["status"] == "closed"
    world.ok("patient", "consent", "revoke", {"grant_id": grant_id})
    with pytest.raises(ExchangeFailed) as refused:
        fetch_record(requester, world.keys["doctor_b"], "report-1")
    assert refused.value.code == "UNAUTHORIZED"
    events = world.node.audit(patient=world.did("patient"), limit=100)["events"]
    kinds = [(e["kind"], e["code"]) for e in events]
    assert ("exchange.acknowledged", 0) in kinds and ("consent.revoked", 0) in kinds
    assert ("exchange.refused", 11) in kinds


def test_state_proof_from_any_node_verifies_against_its_app_hash(
    network: Network,  # noqa: F811
    world: Consortium,
) -> None:
    """Each node's proof checks against the app hash that another node stored for the
    same height; an altered value does not."""
    key = "records/record/report-1"
    for node in range(len(network.urls)):
        doc = network.client(node, key=network.keys["root"]).prove_state(key)
        other = network.client(network.other(node), key=network.keys["root"])
        while other.status()["height"] < doc["height"]:  # it may be a block behind
            time.sleep(0.05)
        trusted = bytes.fromhex(other.block(doc["height"])["app_hash"])
        assert doc["value"] is not None
        assert key in proofs.verify(doc, trusted)
        with pytest.raises(proofs.BadProof):
            proofs.verify(doc | {"value": None}, trusted)


def test_tx_submitted_through_node_1_is_read_back_through_node_3(
    network: Network,  # noqa: F811
) -> None:
    patient = crypto.generate_keypair()
    raw = build_tx(
        patient,
        chain_id=network.chain_id,
        contract="identity",
        action="register_patient",
        payload={},
        nonce=0,
    )
    sent = network.client(1).submit_raw(raw)
    assert (sent["status"], sent["code_name"]) == ("committed", "OK")
    reader = network.client(3)
    (seen,) = reader.wait_committed([sent["tx_id"]], timeout=30)
    assert seen == sent
    assert reader.account(patient)["did"] == did_of(patient)
    assert reader.account(patient)["next_nonce"] == 1


def test_supply_scan_page_of_a_pack_through_another_node(
    network: Network,  # noqa: F811
) -> None:
    keys = {"root": network.keys["root"]} | {
        n: crypto.generate_keypair() for n in ("maker", "api_supplier")
    }
    writer = network.client(2)
    orgs = [
        ("root", "identity", "register_org", {
            "org_id": org, "name": org, "org_type": "manufacturer",
            "admin_public_key": keys[admin].public,
        })
        for org, admin in (("acme-pharma", "maker"), ("api-co", "api_supplier"))
    ]  # fmt: skip
    run_in_rounds(writer, keys, orgs)
    product = {
        "gtin": GTIN,
        "name": "Insulin pen 3 ml",
        "kind": "drug",
        "temp_min_c10": 20,
        "temp_max_c10": 80,
        "max_excursion_ms": 10_000,
    }
    batch = {"gtin": GTIN, "lot": "L2401", "expiry": "2030-12-31", "ingredients": ["API-77"]}
    units = [f"{GTIN}/S{i:04d}" for i in range(2)]
    commissioning = {
        "event_hash": f"ni:///sha-256;{1:064x}?ver=CBV2.0",
        "biz_step": "commissioning",
        "event_time_ms": writer.block_time_ms(),
        "epcs": units,
        "lot": "L2401",
    }
    run_in_rounds(
        writer,
        keys,
        [
            ("api_supplier", "supply", "register_ingredient",
             {"lot_id": "API-77", "substance": "insulin"}),
            ("maker", "supply", "register_product", product),
            ("maker", "supply", "register_batch", batch),
            ("maker", "supply", "record_event", commissioning),
        ],
    )  # fmt: skip
    scanner = network.client(network.other(2))
    r = scanner._http.get(f"/01/{GTIN}/10/L2401/21/S0001", headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["verdict"] == "ok"
    assert [s["step"] for s in page["life_cycle"]] == ["commissioning"]
    assert "acme-pharma" not in str(page)


def test_every_node_reports_the_same_chain(
    network: Network,  # noqa: F811
    world: Consortium,
) -> None:
    statuses = [network.client(i).status() for i in range(len(network.urls))]
    assert {s["chain_id"] for s in statuses} == {network.chain_id}
    assert {s["engine"] for s in statuses} == {network.engine}
