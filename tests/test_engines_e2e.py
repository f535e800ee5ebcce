"""The API end to end on both engines: the same tests on a solo node and on a
4-validator CometBFT localnet (real processes, each node with its own gateway),
where they submit through one node and read or fetch through another."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from support.browser import Portals, check, chromium
from support.consortium import REPORT, Consortium, consortium_on, run_in_rounds
from support.ledger import DATA, did_of
from support.network import (  # noqa: F401  (network: the engine-parametrized fixture)
    Network,
    caught_up,
    network,
)
from support.regulator import regulator_chain

from medchain import crypto
from medchain.contracts.research import model as rm
from medchain.core import proofs
from medchain.core.tx import build_tx
from medchain.edge.requester import ExchangeFailed, fetch_record, import_file
from medchain.fhir.validate import canonical_json
from medchain.network.relay import CometRpc, Relay, comet_source, verify_stream
from medchain.sdk.client import Client
from medchain.sdk.keystore import Keystore
from medchain.sdk.signing import send_signed

GTIN = "06901234567892"
DAY_MS = 86_400_000
SPEC = DATA / "fhir" / "spec-examples"
GLUCOSE = (SPEC / "Observation-f001.json").read_bytes()
WEIGHT = (SPEC / "Observation-example.json").read_bytes()
IMPORTED = ("Observation-f001.json", "Encounter-example.json")
CT = "http://dicom.nema.org/resources/ontology/DCM|CT"


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
    caught_up(world.node, requester.status()["height"])  # the refusal's block, on node 0 too
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


def patient_on(network: Network, node: int) -> tuple[crypto.KeyPair, str, Client]:  # noqa: F811
    """A new patient registered through node `node`: key, DID and the patient's client.
    Returns once node 0 (hosp-a's edge's node) has the registration too: the edge
    refuses records of a patient its node does not know yet."""
    key = crypto.generate_keypair()
    client = network.client(node, key=key)
    registered = client.send(key, "identity", "register_patient", {})
    assert registered["code_name"] == "OK", registered
    caught_up(network.client(0), registered["height"])
    return key, did_of(key), client


def grant_through(
    client: Client, patient: crypto.KeyPair, grantee: str, types: list[str]
) -> dict[str, Any]:
    """The patient grants `grantee` TREAT access to `types` through `client`'s node."""
    payload = {
        "patient": did_of(patient),
        "grantee_kind": "did",
        "grantee": grantee,
        "purposes": ["TREAT"],
        "scope_types": types,
        "expires_ms": client.block_time_ms() + DAY_MS,
    }
    r = client.send(patient, "consent", "grant", payload)
    assert r["code_name"] == "OK", r
    return r


def fhir_get(world: Consortium, who: str, path: str, **params: str) -> httpx.Response:
    """A signed FHIR read on hosp-a's edge as `who`, for treatment."""
    return send_signed(
        world.keys[who],
        world.chain_id,
        "GET",
        world.edge_url,
        path,
        params,
        headers={"X-MedChain-Purpose": "TREAT"},
    )


def test_fhir_read_and_search_on_the_edge_need_consent_granted_through_another_node(
    network: Network,  # noqa: F811
    world: Consortium,
) -> None:
    """hosp-b's doctor reads and searches hosp-a's edge (on node 0): nothing is there
    for them until the patient grants through another node; then what the grant covers
    is served, the rest refused, each decision audited on chain and read back through
    a third node."""
    patient, did, patient_client = patient_on(network, network.other(0))
    uploads = (("fhir-glucose", GLUCOSE), ("fhir-weight", WEIGHT), ("fhir-report", REPORT))
    for record_id, content in uploads:
        r = world.upload("admin_a", content, patient=did, record_id=record_id)
        assert r.status_code == 201, r.text
    # No standing with the patient: the same answer as for a record that is not there.
    unknown = fhir_get(world, "doctor_b", "/fhir/Observation/fhir-glucose")
    assert unknown.status_code == 404, unknown.text
    assert fhir_get(world, "doctor_b", "/fhir/Observation", patient=did).json()["total"] == 0
    granted = grant_through(patient_client, patient, world.did("doctor_b"), ["Observation"])
    caught_up(world.node, granted["height"])  # the edge decides on node 0's state
    denied = fhir_get(world, "doctor_b", "/fhir/DiagnosticReport/fhir-report")
    assert denied.status_code == 403, denied.text
    assert denied.json()["issue"][0]["code"] == "forbidden"
    read = fhir_get(world, "doctor_b", "/fhir/Observation/fhir-glucose")
    assert read.status_code == 200, read.text
    assert read.headers["content-type"] == "application/fhir+json"
    assert read.json()["id"] == "fhir-glucose"
    both = fhir_get(world, "doctor_b", "/fhir/Observation", patient=did).json()
    assert sorted(e["resource"]["id"] for e in both["entry"]) == ["fhir-glucose", "fhir-weight"]
    by_code = fhir_get(
        world, "doctor_b", "/fhir/Observation", patient=did, code="http://loinc.org|15074-8"
    ).json()
    assert [e["resource"]["id"] for e in by_code["entry"]] == ["fhir-glucose"]
    auditor = network.client(2, key=network.keys["root"])
    caught_up(auditor, world.node.status()["height"])
    rows = auditor.audit(patient=did, limit=100)["events"]
    kinds = [(e["kind"], e["record_id"]) for e in rows]
    assert kinds.count(("exchange.refused", "fhir-report")) == 1
    assert kinds.count(("exchange.accessed", "fhir-glucose")) == 3


def test_fhir_import_through_the_edge_is_read_back_through_another_node(
    network: Network,  # noqa: F811
    world: Consortium,
) -> None:
    """hosp-a's staff import FHIR resources through its edge; the records are on
    chain as seen by another node; a second import finds them already there."""
    _, did, patient_client = patient_on(network, 3)

    def imported(path: Path) -> dict[str, Any]:
        r = import_file(
            world.keys["admin_a"], world.chain_id, world.edge_url, "fhir", path.read_bytes(), did
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    first = [imported(SPEC / name) for name in IMPORTED]
    assert [(r["imported"], r["rejected"]) for r in first] == [(1, 0)] * len(IMPORTED)
    caught_up(patient_client, world.node.status()["height"])
    records = patient_client.patient_records(did)
    assert sorted(r["resource_type"] for r in records) == ["Encounter", "Observation"]
    assert {r["custodian"] for r in records} == {"hosp-a"}
    again = imported(SPEC / IMPORTED[0])
    assert (again["imported"], again["rejected"]) == (0, 1)


def test_hospital_b_recognises_hospital_a_ct_through_other_nodes(
    network: Network,  # noqa: F811
    world: Consortium,
) -> None:
    """The consortium sets a rule and accredits hosp-a through node 2; hosp-a's edge
    registers a CT study; hosp-b's doctor, through node 1, sees nothing without consent,
    finds and accepts it with consent; the report read through node 3 counts it."""
    keys = {"root": network.keys["root"]}
    admin = network.client(2, key=keys["root"])
    far = admin.block_time_ms() + 365 * DAY_MS
    run_in_rounds(
        admin,
        keys,
        [
            ("root", "recognition", "set_rule",
             {"exam_code": CT, "max_age_days": 180, "min_level": "3B"}),
            ("root", "recognition", "accredit",
             {"org_id": "hosp-a", "level": "3A", "expires_ms": far}),
        ],
    )  # fmt: skip
    patient, did, patient_client = patient_on(network, 1)
    study = json.loads((SPEC / "ImagingStudy-example.json").read_bytes())
    # Done an hour before the chain's time: a network's block time (the validators'
    # median vote time) may trail this machine's clock, so "now" could be in its future.
    done_ms = admin.block_time_ms() - 3_600_000
    study["started"] = datetime.fromtimestamp(done_ms // 1000, UTC).isoformat()
    r = world.upload("admin_a", json.dumps(study).encode(), patient=did, record_id="ct-e2e-1")
    assert r.status_code == 201, r.text
    doctor_b = world.keys["doctor_b"]
    doctor = network.client(1, key=doctor_b)
    caught_up(doctor, world.node.status()["height"])
    assert doctor.recognition_candidates(did, world.did("doctor_b")) == []
    refused = doctor.send(doctor_b, "recognition", "accept", {"record_id": "ct-e2e-1"})
    assert refused["code_name"] == "UNAUTHORIZED"
    grant_through(patient_client, patient, world.did("doctor_b"), ["ImagingStudy"])
    found = doctor.recognition_candidates(did, world.did("doctor_b"), CT)
    assert [(c["record_id"], c["eligible"]) for c in found] == [("ct-e2e-1", True)]
    accepted = doctor.send(doctor_b, "recognition", "accept", {"record_id": "ct-e2e-1"})
    assert accepted["code_name"] == "OK", accepted
    reader = network.client(3, key=keys["root"])
    caught_up(reader, accepted["height"])
    assert reader.recognition_report()["hospitals"] == [
        {"org_id": "hosp-b", "exams_avoided": 1, "repeated": 0, "recognition_rate": 1.0}
    ]


def test_tx_and_audit_proofs_verify_against_another_nodes_app_hash(
    network: Network,  # noqa: F811
    world: Consortium,
) -> None:
    """A refused request sent through node 1: its tx proof from node 2 and the
    patient's audit events with proofs from node 2 verify against the app hash node 3
    stored for their heights; altered, they do not."""
    _, did, _ = patient_on(network, 1)
    r = world.upload("admin_a", WEIGHT, patient=did, record_id="proof-obs-1")
    assert r.status_code == 201, r.text
    nurse = network.client(1, key=world.keys["nurse_b"])
    caught_up(nurse, world.node.status()["height"])
    refused = nurse.send(
        world.keys["nurse_b"], "exchange", "request",
        {"record_id": "proof-obs-1", "purpose": "TREAT"},
    )  # fmt: skip
    assert refused["code_name"] == "UNAUTHORIZED"
    prover = network.client(2, key=network.keys["root"])
    trusting = network.client(3, key=network.keys["root"])

    def app_hash(height: int) -> bytes:
        caught_up(prover, height)
        caught_up(trusting, height)
        return bytes.fromhex(trusting.block(height)["app_hash"])

    caught_up(prover, refused["height"])  # committed through node 1; node 2 may lag
    doc = prover.prove_tx(refused["tx_id"])
    what = proofs.verify(doc, app_hash(doc["height"]))
    assert "UNAUTHORIZED" in what and "exchange.refused" in what
    with pytest.raises(proofs.BadProof):
        proofs.verify(doc, app_hash(doc["height"] - 1))
    events = prover.audit(patient=did, prove="true")["events"]
    assert [e["kind"] for e in events] == ["records.registered", "exchange.refused"]
    for event in events:
        trusted = app_hash(event["height"])
        assert event["tx_id"] in proofs.verify(event["proof"], trusted)
        result = event["proof"]["result"]
        altered = event["proof"] | {"result": ("1" if result[0] == "0" else "0") + result[1:]}
        with pytest.raises(proofs.BadProof):
            proofs.verify(altered, trusted)


def test_relay_follows_any_node_to_the_regulator_and_resumes_after_kill_9(
    network: Network,  # noqa: F811
    world: Consortium,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The relay follows node 1 (on CometBFT, with each block's signed header and
    commit, which the regulator chain checks itself) into a solo regulator chain; a
    break-glass access approved through node 2 raises the regulator's alert; the relay
    process is killed with SIGKILL mid-stream and a new one resumes: every height once,
    in order, and the stream matches the business chain."""
    tmp = tmp_path_factory.mktemp("relay")
    relayer = network.keys["operator"]  # an operator on every node: reads raw blocks
    business = network.client(1, key=relayer)
    rpc = network.rpcs[1] if network.rpcs else None
    start = max(business.status()["height"] - 2, -1)
    follow = None
    if rpc:
        with CometRpc(rpc) as comet_rpc:
            follow = comet_source(comet_rpc, start)
    with regulator_chain(tmp / "regulator.db", relayer, "hospitals", follow, start) as reg:
        relay = Relay(business, reg.client, relayer, "hospitals", batch=5, business_rpc=rpc)
        while relay.step():
            pass
        _, patient, _ = patient_on(network, 2)
        approver = network.client(2, key=world.keys["attending_a"])
        asked = world.ok(
            "doctor_a", "consent", "break_glass", {"patient": patient, "reason": "unconscious"}
        )
        request_id = asked["events"][0]["attributes"]["request_id"]
        caught_up(approver, asked["height"])
        approved = approver.send(
            world.keys["attending_a"], "consent", "approve_break_glass", {"request_id": request_id}
        )
        assert approved["code_name"] == "OK", approved
        home = tmp / "relay-home"
        Keystore(home / "keys").save("relayer", relayer, "test-passphrase", 1000)
        cmd = [
            sys.executable, "-m", "medchain.cli", "relay", "--business", business.url,
            "--regulator", reg.client.url, "--key", "relayer", "--source", "hospitals",
            "--home", str(home), "--batch", "1",
            *(["--business-rpc", rpc] if rpc else []),
        ]  # fmt: skip
        env = {**os.environ, "MEDCHAIN_PASSPHRASE": "test-passphrase"}
        if network.tls is not None and network.tls.ca is not None:
            env["MEDCHAIN_CA"] = str(network.tls.ca)
        first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        relayed = relay.stream().height
        deadline = time.monotonic() + 120
        while relay.stream().height < relayed + 2:
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline, "the relay process relays nothing"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)  # mid-stream, maybe mid-submission
        first.wait(10)
        if rpc:  # header h+1 proves block h final (solo makes no empty blocks to wait for)
            caught_up(business, approved["height"] + 1)
        done = subprocess.run(
            [*cmd, "--once"], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        stream = relay.stream()
        assert stream.height >= approved["height"]
        keys = [i["key"] for i in reg.client.scan("supervision/digest/hospitals/", 1000)["items"]]
        heights = [int(k.rsplit("/", 2)[1]) for k in keys if k.endswith("/0000")]
        assert heights == list(range(start + 1, stream.height + 1))  # each once, in order
        assert verify_stream(business, reg.client, "hospitals", relay.rpc) == []
        relay.close()
        inspector = Client(reg.client.url, key=reg.inspector)
        [alert] = inspector.alerts("open", "break_glass")
        assert alert["subject"] == world.did("doctor_a") and alert["patient"] == patient


def test_a_study_round_committed_through_one_node_is_proven_through_another(
    network: Network,  # noqa: F811
    world: Consortium,
) -> None:
    """hosp-b sponsors a study through node 1 and the patient joins there; each hospital
    computes its cohort from what node 2 serves and commits it through node 2; the
    sponsor records the round through node 1; node 3 serves the same cohort roots and
    round, and the patient's inclusion proof from node 3 verifies against them."""
    study_id = f"e2e-study-{network.engine}"
    first, second, third = (network.client(i, key=world.keys["admin_b"]) for i in (1, 2, 3))
    sponsor = world.keys["admin_b"]
    created = first.send(
        sponsor, "research", "create_study",
        {"study_id": study_id, "title": "e2e", "protocol_hash": crypto.sm3(b"protocol"),
         "ethics_record_id": "report-1", "data_types": ["DiagnosticReport"],
         "features": ["age"], "hospitals": ["hosp-a", "hosp-b"], "rounds_planned": 1,
         "aggregation": "fedavg", "expires_ms": first.block_time_ms() + DAY_MS},
    )  # fmt: skip
    assert created["code_name"] == "OK", created
    joined = network.client(1).send(
        world.keys["patient"], "consent", "grant",
        {"patient": world.did("patient"), "grantee_kind": "study", "grantee": study_id,
         "purposes": ["HRESEARCH"], "scope_types": ["DiagnosticReport"],
         "expires_ms": first.block_time_ms() + DAY_MS},
    )  # fmt: skip
    assert joined["code_name"] == "OK", joined
    caught_up(second, joined["height"])
    for org, admin in (("hosp-a", "admin_a"), ("hosp-b", "admin_b")):
        hospital = network.client(2, key=world.keys[admin])
        members = hospital.cohort_members(study_id, org)
        assert (world.did("patient") in members["members"]) == (org == "hosp-a")
        leaves = rm.cohort_leaves(study_id, members["members"])
        payload = {"study_id": study_id, "round": 1, "count": len(leaves),
                   "root": rm.cohort_root(leaves)}  # fmt: skip
        committed = hospital.send(world.keys[admin], "research", "commit_cohort", payload)
        assert committed["code_name"] == "OK", committed
    caught_up(first, committed["height"])
    metrics = [{"org_id": o, "accuracy_bp": 9000, "auc_bp": 9100, "n_eval": 10}
               for o in ("hosp-a", "hosp-b")]  # fmt: skip
    recorded = first.send(
        sponsor, "research", "record_round",
        {"study_id": study_id, "round": 1, "global_model_hash": crypto.sm3(b"round 1"),
         "metrics": metrics},
    )  # fmt: skip
    assert recorded["code_name"] == "OK", recorded
    caught_up(third, recorded["height"])
    cohorts = {c["org_id"]: c for c in third.study_cohorts(study_id, 1)["cohorts"]}
    assert cohorts == {c["org_id"]: c for c in second.study_cohorts(study_id, 1)["cohorts"]}
    [round_one] = third.study_rounds(study_id)
    assert round_one["global_model_hash"] == crypto.sm3(b"round 1").hex()
    assert {c["org_id"]: c["root"] for c in round_one["cohorts"]} == {
        org: c["root"] for org, c in cohorts.items()
    }
    patient = network.client(3, key=world.keys["patient"])
    proof = patient.cohort_proof(study_id, 1, "hosp-a")
    sample = rm.sample_id(study_id, world.did("patient"))
    ours = cohorts["hosp-a"]
    on_chain = {"root": bytes.fromhex(ours["root"]), "count": ours["count"]}
    assert rm.verify_cohort_proof(proof["proof"], sample, on_chain) == (True, True)
    assert third.study(study_id)["rounds_recorded"] == 1


def test_the_portals_grant_read_revoke_flow_through_different_nodes(
    network: Network,  # noqa: F811
    world: Consortium,
) -> None:
    """Issue 20's main flow in Chromium on both engines: the patient's portal signs
    through node 0, the doctor's through another node. The patient grants on the
    consent page, the doctor reads the prescription rendered, the patient revokes,
    and the doctor's next attempt shows the chain's refusal."""
    patient, doctor = world.keys["patient"], world.keys["doctor_b"]
    with chromium() as browser:
        portals = Portals(browser)
        try:
            portals.start("patient", network.client(0, key=patient), patient)
            portals.start("doctor", network.client(network.other(0), key=doctor), doctor)
            mine, theirs = portals.page_of("patient"), portals.page_of("doctor")
            mine.goto("/consent")
            mine.get_by_label("Grant to").select_option("did")
            mine.get_by_label("Who (DID, organisation id or role)").fill(world.did("doctor_b"))
            mine.get_by_label("Record types (comma separated)").fill("MedicationRequest")
            mine.get_by_role("button", name="Grant", exact=True).click()
            expect(mine.locator("#done")).to_contain_text("Granted")
            grant_id = mine.locator("#done").inner_text().split()[1].rstrip(":")
            caught_up(network.client(network.other(0)), world.node.status()["height"])

            theirs.goto(f"/clinician?patient={world.did('patient')}")
            theirs.get_by_role("button", name="Request and read rx-1").click()
            expect(theirs.get_by_role("heading", level=1)).to_contain_text("Prescription")
            expect(theirs.locator("#resource")).to_contain_text("Azithromycin")
            check(theirs, f"e2e-{network.engine}-prescription")

            mine.goto("/consent")
            mine.get_by_role("button", name=f"Revoke {grant_id}").click()
            expect(mine.locator("#done")).to_contain_text(f"Revoked {grant_id}")
            caught_up(network.client(network.other(0)), world.node.status()["height"])
            theirs.goto("/clinician")
            theirs.get_by_label("Record", exact=True).fill("rx-1")
            theirs.get_by_role("button", name="Request and read").click()
            expect(theirs.locator("#refusal")).to_be_visible()
            expect(theirs.locator("#resource")).to_have_count(0)
            check(theirs, f"e2e-{network.engine}-refused")
        finally:
            portals.stop()
