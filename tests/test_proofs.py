"""Verifiable answers: state values and audit events proved against a committed
app hash; valid proofs verify, any changed byte, wrong height or wrong root fails.
And the regulators' exports of audit events (CSV, FHIR) per period and org."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.ledger import Ledger, SignedReads, did_of

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.core import proofs
from medchain.gateway.app import create_app


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, Ledger, dict[str, Any]]]:
    ledger = Ledger(tmp_path / "chain.db", crypto.generate_keypair())
    k = {n: crypto.generate_keypair() for n in ("admin", "doctor", "patient")}
    ledger.add_org("hosp-a", k["admin"])
    ledger.add_staff(k["admin"], "hosp-a", k["doctor"], ["doctor"])
    ledger.add_patient(k["patient"])
    register = {
        "record_id": "obs-1",
        "patient": did_of(k["patient"]),
        "resource_type": "Observation",
        "cid": "b" + "a" * 58,
        "content_hash": bytes(32),
    }
    assert ledger.run(k["admin"], "register", register, "records").code == 0
    refused = ledger.run(
        k["doctor"], "request", {"record_id": "obs-1", "purpose": "TREAT"}, "exchange"
    )
    assert refused.code != 0  # a refused access: its audit event is still in the block
    engine = SoloEngine(ledger.app, block_interval=0.01)
    engine.start()
    with TestClient(create_app(engine)) as client:
        # The consortium admin reads as an operator of the node: any proof, any export.
        reads = SignedReads(client, ledger.admin)
        yield reads, ledger, {"refused_tx": refused.tx_id.hex(), "keys": k}
    engine.stop()


def test_state_values_and_absence_verify(api: Any) -> None:
    client, ledger, _ = api
    doc = client.get("/v1/proofs/state", params={"key": "records/record/obs-1"}).json()
    trusted = ledger.app.db.app_hash
    assert "records/record/obs-1" in proofs.verify(doc, trusted)
    absent = client.get("/v1/proofs/state", params={"key": "records/record/nope"}).json()
    assert absent["value"] is None and "absent" in proofs.verify(absent, trusted)


def test_audit_event_of_a_refused_request_verifies(api: Any) -> None:
    client, ledger, info = api
    doc = client.get(f"/v1/proofs/tx/{info['refused_tx']}").json()
    height = doc["height"]
    trusted = ledger.app.db.roots(height)["app_hash"]
    what = proofs.verify(doc, trusted)
    assert "UNAUTHORIZED" in what and "exchange.refused" in what
    assert client.get("/v1/proofs/tx/" + "00" * 32).status_code == 404
    assert client.get("/v1/proofs/tx/zz").status_code == 400


def flip(doc: dict[str, Any], path: list[Any]) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    target = changed
    for step in path[:-1]:
        target = target[step]
    value = target[path[-1]]
    target[path[-1]] = ("1" if value[0] == "0" else "0") + value[1:]
    return changed


def test_any_changed_byte_wrong_height_or_root_fails(api: Any) -> None:
    client, _, info = api
    state = client.get("/v1/proofs/state", params={"key": "records/record/obs-1"}).json()
    tx = client.get(f"/v1/proofs/tx/{info['refused_tx']}").json()
    tampered = [
        flip(state, ["value"]),
        flip(state, ["results_root"]),
        flip(state, ["app_hash"]),
        flip(state, ["state_proof", "leaf_value_hash"]),
        flip(state, ["state_proof", "key_hash"]),
        *(
            flip(state, ["state_proof", "siblings", i])
            for i in range(len(state["state_proof"]["siblings"]))
        ),
        state | {"key": "records/record/obs-2"},
        state | {"height": state["height"] + 1},
        flip(tx, ["result"]),
        flip(tx, ["state_root"]),
        *(flip(tx, ["results_path", i, 1]) for i in range(len(tx["results_path"]))),
        tx | {"height": tx["height"] - 1},
        tx | {"results_path": [*tx["results_path"], [False, "00" * 32]]},
        state | {"format": "other"},
        {"format": proofs.FORMAT, "kind": "state"},
    ]
    for doc in tampered:
        with pytest.raises(proofs.BadProof):
            proofs.verify(doc)
    # A valid proof against the wrong trusted root fails too.
    with pytest.raises(proofs.BadProof):
        proofs.verify(state, bytes(32))
    json.dumps(tampered[0])


def test_prove_and_verify_from_the_cli(api: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medchain.cli import app

    client, ledger, _ = api
    doc = client.get("/v1/proofs/state", params={"key": "records/record/obs-1"}).json()
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(doc))
    runner = CliRunner()
    ok = runner.invoke(app, ["verify", str(path), "--app-hash", ledger.app.db.app_hash.hex()])
    assert ok.exit_code == 0 and "verified" in ok.output
    path.write_text(json.dumps(flip(doc, ["value"])))
    bad = runner.invoke(app, ["verify", str(path)])
    assert bad.exit_code == 1 and "does not" in bad.output


def test_audit_export_per_period_and_org(api: Any) -> None:
    import csv
    import io

    client, ledger, _ = api
    start = ledger.genesis.genesis_time_ms
    end = ledger.app.db.block_time_ms() + 1
    all_rows = list(
        csv.DictReader(
            io.StringIO(
                client.get("/v1/audit/export", params={"from_ms": start, "to_ms": end}).text
            )
        )
    )
    assert [(r["event"], r["outcome"]) for r in all_rows] == [
        ("records.registered", "ok"),
        ("exchange.refused", "refused"),
    ]
    assert all_rows[1]["actor_org"] == "hosp-a" and all_rows[1]["purpose"] == "TREAT"
    assert "no active consent" in all_rows[1]["basis_or_reason"]
    mine = client.get(
        "/v1/audit/export", params={"from_ms": start, "to_ms": end, "org": "hosp-b"}
    ).text
    assert mine.strip().count("\n") == 0  # header only: nothing of another org
    late = client.get("/v1/audit/export", params={"from_ms": end, "to_ms": end + 10**6}).text
    assert late.strip().count("\n") == 0  # nothing in a later period
    fhir = client.get(
        "/v1/audit/export", params={"from_ms": start, "to_ms": end, "format": "fhir"}
    ).json()
    assert fhir["resourceType"] == "Bundle" and fhir["total"] == 2
    assert fhir["entry"][1]["resource"]["outcome"] == "4"
    bad = client.get("/v1/audit/export", params={"from_ms": 0, "to_ms": 1, "format": "xml"})
    assert bad.status_code == 400


def test_audit_answers_carry_proofs(api: Any) -> None:
    client, ledger, info = api
    patient = did_of(info["keys"]["patient"])
    events = client.get("/v1/audit", params={"patient": patient, "prove": True}).json()["events"]
    assert [e["kind"] for e in events] == ["records.registered", "exchange.refused"]
    for event in events:
        trusted = ledger.app.db.roots(event["height"])["app_hash"]
        assert event["tx_id"] in proofs.verify(event["proof"], trusted)
