"""The REST gateway: every kind of bad input gets a clear code; state is untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from support.ledger import CHAIN_ID, Ledger, did_of, signed_get

from medchain import crypto, encoding
from medchain.consensus.solo import SoloEngine
from medchain.core.tx import build_tx
from medchain.gateway.app import create_app


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, Ledger]]:
    ledger = Ledger(tmp_path / "chain.db", crypto.generate_keypair(), max_tx_bytes=4096)
    engine = SoloEngine(ledger.app, block_interval=0.01)
    engine.start()
    with TestClient(create_app(engine)) as client:
        yield client, ledger
    engine.stop()


def submit(client: TestClient, raw: bytes) -> tuple[int, dict]:
    r = client.post("/v1/txs", params={"wait": True}, json={"tx": raw.hex()})
    return r.status_code, r.json()


def test_submit_and_follow_a_transaction(api: tuple[TestClient, Ledger]) -> None:
    client, ledger = api
    patient = crypto.generate_keypair()
    status, body = submit(client, ledger.tx(patient, "identity", "register_patient", {}))
    assert status == 202 and body["status"] == "committed" and body["code_name"] == "OK"
    assert body["events"][0]["type"] == "identity.patient_registered"
    again = client.get(f"/v1/txs/{body['tx_id']}").json()
    assert again["height"] == body["height"]
    block = signed_get(client, ledger.admin, f"/v1/blocks/{body['height']}").json()
    assert block["results"][body["index"]]["code_name"] == "OK"
    doc = client.get(f"/v1/identity/dids/{did_of(patient)}").json()
    assert doc["medchain"]["roles"] == ["patient"]
    account = client.get(f"/v1/accounts/sm/{patient.public.hex()}").json()
    assert account == {**account, "did": did_of(patient), "status": "active", "next_nonce": 1}


def test_status_and_openapi(api: tuple[TestClient, Ledger]) -> None:
    client, _ = api
    status = client.get("/v1/status").json()
    assert status["chain_id"] == CHAIN_ID and status["height"] == 0
    assert "/v1/txs" in client.get("/openapi.json").json()["paths"]


def bad_inputs(ledger: Ledger) -> list[tuple[str, bytes, int, str]]:
    k = crypto.generate_keypair()
    good = ledger.tx(k, "identity", "register_patient", {})
    wire = encoding.decode(good)
    forged = encoding.encode(
        {"body": wire["body"], "sig": crypto.sign(crypto.generate_keypair(), wire["body"])}
    )
    return [
        ("random bytes", b"\x13\x37garbage", 400, "MALFORMED"),
        ("truncated", good[:-5], 400, "MALFORMED"),
        ("forged signature", forged, 401, "BAD_SIGNATURE"),
        (
            "wrong chain",
            build_tx(
                k,
                chain_id="other-chain",
                contract="identity",
                action="register_patient",
                payload={},
                nonce=0,
            ),
            400,
            "WRONG_CHAIN",
        ),
        (
            "oversized",
            ledger.tx(k, "identity", "register_patient", {"x": "y" * 5000}),
            413,
            "TOO_LARGE",
        ),
        ("unknown contract", ledger.tx(k, "teleport", "go", {}), 404, "UNKNOWN_CONTRACT"),
        ("unregistered signer", ledger.tx(k, "identity", "add_member", {}), 401, "UNKNOWN_SIGNER"),
        (
            "future nonce",
            ledger.tx(k, "identity", "register_patient", {}, nonce=5),
            409,
            "BAD_NONCE",
        ),
    ]


def test_bad_input_gets_code_and_leaves_state_untouched(api: tuple[TestClient, Ledger]) -> None:
    client, ledger = api
    before = client.get("/v1/status").json()
    for name, raw, status, code in bad_inputs(ledger):
        got_status, body = submit(client, raw)
        assert (got_status, body["error"]["code"]) == (status, code), name
        assert body["error"]["message"]
    after = client.get("/v1/status").json()
    assert (after["height"], after["app_hash"]) == (before["height"], before["app_hash"])


def test_replay_is_refused(api: tuple[TestClient, Ledger]) -> None:
    client, ledger = api
    raw = ledger.tx(crypto.generate_keypair(), "identity", "register_patient", {})
    assert submit(client, raw)[1]["code_name"] == "OK"
    status, body = submit(client, raw)
    assert status == 409 and body["error"]["code"] == "BAD_NONCE"
    assert "GET /v1/accounts" in body["error"]["hint"]


def test_unauthorised_action_is_committed_with_its_code(api: tuple[TestClient, Ledger]) -> None:
    client, ledger = api
    patient = crypto.generate_keypair()
    submit(client, ledger.tx(patient, "identity", "register_patient", {}))
    status, body = submit(
        client,
        ledger.tx(
            patient,
            "identity",
            "register_org",
            {
                "org_id": "fake",
                "name": "Fake",
                "org_type": "hospital",
                "admin_public_key": patient.public,
            },
        ),
    )
    assert status == 202 and body["code_name"] == "UNAUTHORIZED"
    missing = signed_get(client, ledger.admin, "/v1/state", {"key": "identity/org/fake"})
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/txs/zz", 400),
        ("/v1/txs/" + "00" * 32, 404),
        ("/v1/blocks/999", 404),
        ("/v1/identity/dids/did:medchain:nobody", 404),
        ("/v1/accounts/rot13/00", 400),
        ("/v1/state", 400),
    ],
)
def test_lookups_of_missing_or_malformed_things(
    api: tuple[TestClient, Ledger], path: str, status: int
) -> None:
    client, ledger = api
    r = signed_get(client, ledger.admin, path)  # the consortium admin: an operator
    assert r.status_code == status and "error" in r.json()


def test_non_hex_body_is_malformed(api: tuple[TestClient, Ledger]) -> None:
    client, _ = api
    r = client.post("/v1/txs", json={"tx": "not hex"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "MALFORMED"
    r = client.post("/v1/txs", json={"nope": 1})
    assert r.status_code == 400


def test_batch_submit_and_wait(api: tuple[TestClient, Ledger]) -> None:
    client, ledger = api
    patients = [crypto.generate_keypair() for _ in range(3)]
    raws = [ledger.tx(p, "identity", "register_patient", {}) for p in patients]
    replay = raws[0]
    body = {"txs": [raws[0].hex(), "zz", raws[1].hex(), raws[2].hex()]}
    r = client.post("/v1/txs/batch", json=body)
    assert r.status_code == 400  # one bad hex refuses the request before anything is queued
    answers = client.post("/v1/txs/batch", json={"txs": [r.hex() for r in raws]}).json()
    assert [a["status"] for a in answers] == ["pending"] * 3
    results = client.post("/v1/txs/wait", json={"tx_ids": [a["tx_id"] for a in answers]})
    assert [x["code_name"] for x in results.json()] == ["OK"] * 3
    again = client.post("/v1/txs/batch", json={"txs": [replay.hex()]}).json()
    assert again[0]["status"] == "refused" and again[0]["code_name"] == "BAD_NONCE"
    too_many = client.post("/v1/txs/batch", json={"txs": ["00"] * 1001})
    assert too_many.status_code == 400


def test_contracts_and_payload_schemas_are_published(api: tuple[TestClient, Ledger]) -> None:
    client, _ = api
    listed = client.get("/v1/contracts")
    assert listed.status_code == 200
    by_name = {c["contract"]: c for c in listed.json()}
    assert by_name["identity"]["chains"] == ["business", "regulator"]
    register_org = next(a for a in by_name["identity"]["actions"] if a["action"] == "register_org")
    assert register_org["payload_schema"]["$ref"].startswith("#/$defs/")
    components = client.get("/openapi.json").json()["components"]["schemas"]
    assert components["identity.register_org"]["type"] == "object"
    assert "consent.grant" in components
