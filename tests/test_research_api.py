"""Federated studies from the shell and the REST API (issue 17 point 6), on a real solo
node and its gateway: a sponsor creates a study, patients join and leave by `medchain
study`, hospitals commit cohorts computed from chain state, a patient's proof of
inclusion and (after leaving) of exclusion verifies; who may ask for a cohort proof
or a record's provenance, and that a stranger learns nothing from a refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.cli_node import CliNode, ok, run, save_keys, serving
from support.ledger import Ledger, did_of
from test_research import STUDY, build_world

from medchain import crypto
from medchain.contracts.research import model as rm
from medchain.exceptions import Code
from medchain.sdk.client import Client, ClientError

HOSPITALS = ("hosp-a", "hosp-b")
DAY_MS = 86_400_000
PROTOCOL = b"Protocol v1: logistic regression on HbA1c, glucose, BMI, age; 2 rounds."


class Node(CliNode):
    """The node, its CLI home and keys, and clients that send as a named key."""

    def client(self, who: str | None = None) -> Client:
        return Client(self.url, key=None if who is None else self.keys[who])

    def ok(self, who: str, contract: str, action: str, payload: dict[str, Any]) -> Any:
        r = self.client().send(self.keys[who], contract, action, payload)
        assert r["code_name"] == "OK", r
        return r


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """test_research's world (a sponsor, hospitals A-D, patients p1-p5 with records,
    an ethics record) plus a regulator and p4 as p2's guardian, on a solo node
    serving its gateway; every key in a keystore the CLI reads."""
    tmp = tmp_path_factory.mktemp("research-api")
    root = crypto.generate_keypair()
    ledger = Ledger(tmp / "chain.db", root)
    keys: dict[str, crypto.KeyPair] = build_world(ledger)
    keys |= {n: crypto.generate_keypair() for n in ("admin_reg", "inspector")}
    ledger.add_org("nhc", keys["admin_reg"], "regulator")
    ledger.add_staff(keys["admin_reg"], "nhc", keys["inspector"], ["regulator"])
    guardian = ledger.run(
        keys["p2"], "delegate_guardian", {"guardian": did_of(keys["p4"])}, "consent"
    )
    assert guardian.code == Code.OK, guardian.log
    home = tmp / "home"
    save_keys(home, keys)
    with serving(ledger) as url:
        yield Node(url, home, keys)


def record_round(node: Node, rnd: int) -> None:
    """The sponsor records a round (what `medchain fl` does after training)."""
    node.ok(
        "researcher",
        "research",
        "record_round",
        {
            "study_id": STUDY,
            "round": rnd,
            "global_model_hash": crypto.sm3(f"global model {rnd}".encode()),
            "metrics": [
                {"org_id": org, "accuracy_bp": 9000 + rnd, "auc_bp": 9400, "n_eval": 40}
                for org in HOSPITALS
            ],
        },
    )


def refusal(client: Client, call: str, *args: Any, **kw: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as refused:
        getattr(client, call)(*args, **kw)
    return refused.value.status, refused.value.code, refused.value.message


@pytest.fixture(scope="module")
def study(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Node:
    """Two rounds driven by the CLI: p1 and p2 join, both hospitals commit round 1,
    the sponsor records it, p1 leaves, both hospitals commit round 2."""
    protocol = tmp_path_factory.mktemp("protocol") / "protocol.txt"
    protocol.write_bytes(PROTOCOL)
    created = ok(
        run(
            node,
            *("study", "create", STUDY, "--title", "Type 2 diabetes risk"),
            *("--protocol", str(protocol), "--ethics-record", "ethics-2026-17"),
            *("--data-types", "Observation,Condition", "--features", "4548-4,1558-6,39156-5,age"),
            *("--hospitals", ",".join(HOSPITALS), "--rounds", "2", "--dp-epsilon-milli", "8000"),
            *("--key", "researcher"),
        )
    )
    assert created["ok"] and created["txs"][0]["code_name"] == "OK"
    for patient in ("p1", "p2"):
        joined = ok(run(node, "study", "join", STUDY, "--key", patient, "--days", "30"))
        assert joined["txs"][0]["code_name"] == "OK"
    committers = {"hosp-a": "researcher-a", "hosp-b": "admin-b"}
    for org, key in committers.items():
        ok(run(node, "study", "commit-cohort", STUDY, "--round", "1", "--org", org, "--key", key))
    record_round(node, 1)
    left = ok(run(node, "study", "leave", STUDY, "--key", "p1"))
    assert left["txs"][0]["code_name"] == "OK"
    for org, key in committers.items():
        ok(run(node, "study", "commit-cohort", STUDY, "--round", "2", "--org", org, "--key", key))
    return node


def test_a_study_run_from_the_cli_commits_the_chains_cohorts(study: Node) -> None:
    """The protocol file's SM3 is on chain, the data types scope each join, and each
    committed cohort is exactly the consenting patients holding a record there: p1
    (records at A and B) and p2 (at A) in round 1; after p1 left, only p2 in round 2."""
    sponsor = study.client("researcher")
    found = sponsor.study(STUDY)
    assert found["protocol_hash"] == crypto.sm3(PROTOCOL).hex()
    assert found["sponsor_org"] == "uni-research" and found["dp_epsilon_milli"] == 8000
    assert (found["rounds_recorded"], found["open_round"], found["missing_cohorts"]) == (1, 2, [])
    grants = study.client("p2").grants(study.did("p2"))
    assert [(g["grantee_kind"], g["grantee"], g["purposes"], g["scope_types"]) for g in grants] == [
        ("study", STUDY, ["HRESEARCH"], ["Condition", "Observation"])
    ]

    def members(*patients: str) -> tuple[int, str]:
        leaves = rm.cohort_leaves(STUDY, [study.did(p) for p in patients])
        return len(leaves), rm.cohort_root(leaves).hex()

    status = ok(run(study, "study", "status", STUDY, "--key", "p3"))  # any member may look
    cohorts = {
        (per_round["round"], c["org_id"]): (c["count"], c["root"])
        for per_round in status["cohorts"]
        for c in per_round["cohorts"]
    }
    assert cohorts == {
        (1, "hosp-a"): members("p1", "p2"),
        (1, "hosp-b"): members("p1"),
        (2, "hosp-a"): members("p2"),
        (2, "hosp-b"): members(),
    }
    assert all(per_round["missing"] == [] for per_round in status["cohorts"])
    assert "leaves" not in json.dumps(status)  # the sample ids stay on chain
    assert [r["round"] for r in status["rounds"]] == [1]
    assert status["rounds"][0]["cohorts"][0]["root"] == members("p1", "p2")[1]
    assert status["contributions"] == []


def test_a_patients_proof_is_inclusion_then_exclusion_after_leaving(study: Node) -> None:
    """p1's own proof for round 1 at hospital A is an inclusion, verified by the CLI
    against the root read from chain; after `study leave`, round 2's is an exclusion
    that verifies too, and so is the empty cohort of hospital B."""
    args = ("study", "cohort-proof", STUDY, "--org", "hosp-a", "--key", "p1")
    first = ok(run(study, *args, "--round", "1"))
    assert (first["included"], first["verified"]) == (True, True)
    assert first["sample_id"] == rm.sample_id(STUDY, study.did("p1")).hex()
    assert "leaf" in first["proof"]
    second = ok(run(study, *args, "--round", "2"))
    assert (second["included"], second["verified"]) == (False, True)
    assert set(second["proof"]) == {"below", "above"}
    empty = ok(run(study, *args[:3], "--org", "hosp-b", "--round", "2", "--key", "p1"))
    assert (empty["count"], empty["included"], empty["verified"]) == (0, False, True)
    # An auditor (the regulator) checks another patient's proof the same way.
    p2 = ok(
        run(study, *args[:-2], "--round", "2", "--key", "inspector", "--patient", study.did("p2"))
    )
    assert (p2["included"], p2["verified"]) == (True, True)


def test_a_forged_proof_answer_does_not_verify_on_the_client(study: Node) -> None:
    """What the CLI checks: a proof whose path was altered fails against the chain's root,
    and the patient's own sample id is recomputed, not taken from the node."""
    answer = study.client("p2").cohort_proof(STUDY, 2, "hosp-a")
    chain = study.client("p2").study_cohorts(STUDY, 2)
    committed = next(c for c in chain["cohorts"] if c["org_id"] == "hosp-a")
    cohort = {"root": bytes.fromhex(committed["root"]), "count": committed["count"]}
    sample = rm.sample_id(STUDY, study.did("p2"))
    assert rm.verify_cohort_proof(answer["proof"], sample, cohort) == (True, True)
    other = rm.sample_id(STUDY, study.did("p1"))
    assert rm.verify_cohort_proof(answer["proof"], other, cohort)[0] is False


def test_who_may_ask_for_a_cohort_proof(study: Node) -> None:
    """The patient (by DID or own sample id), their guardian, the hospitals' and
    sponsor's researchers and admins, and a regulator may; a stranger patient, a
    hospital outside the study and a clinician of a participating hospital may not,
    and get one and the same 403 whether or not the study or the patient exists;
    unsigned is 401."""
    p1 = study.did("p1")
    for who in ("p1", "researcher-a", "admin-b", "researcher", "inspector"):
        answer = study.client(who.replace("-", "_")).cohort_proof(STUDY, 1, "hosp-a", patient=p1)
        assert answer["included"] is True and answer["verified_by_node"] is True
    guarded = study.client("p4").cohort_proof(STUDY, 1, "hosp-a", patient=study.did("p2"))
    assert guarded["included"] is True  # p4 is p2's guardian
    own = rm.sample_id(STUDY, p1).hex()
    assert study.client("p1").cohort_proof(STUDY, 1, "hosp-a", sample=own)["included"] is True
    first = refusal(study.client("p3"), "cohort_proof", STUDY, 1, "hosp-a", patient=p1)
    assert first[:2] == (403, "UNAUTHORIZED") and "patient" in first[2]
    unknown_did = "did:medchain:" + "0" * 40
    for who in ("p3", "p4", "admin_c", "doctor_a"):  # p4 is p2's guardian, not p1's
        client = study.client(who)
        for args, kw in (
            ((STUDY, 1, "hosp-a"), {"patient": p1}),
            ((STUDY, 1, "hosp-a"), {"sample": own}),
            (("no-such-study", 1, "hosp-a"), {"patient": p1}),
            ((STUDY, 1, "hosp-a"), {"patient": unknown_did}),
            ((STUDY, 9, "hosp-z"), {"patient": p1}),
        ):
            assert refusal(client, "cohort_proof", *args, **kw) == first, (who, args, kw)
    # Members of a hospital's cohort are for that hospital: not for the other one.
    assert refusal(study.client("admin_b"), "cohort_members", STUDY, "hosp-a")[:2] == (
        403,
        "UNAUTHORIZED",
    )
    path = f"/v1/studies/{STUDY}/cohort-proof"
    unsigned = httpx.get(study.url + path, params={"round": 1, "org": "hosp-a", "patient": p1})
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "UNAUTHENTICATED"
    assert httpx.get(f"{study.url}/v1/studies/{STUDY}").status_code == 401


def test_provenance_of_an_ai_result_for_who_may_see_the_record(study: Node) -> None:
    """The study completed and its model registered, doctor A registers a risk score on
    p2's record: doctor A, p2 and the regulator see which model made it and how it was
    trained, by SDK and `medchain models provenance`; a stranger and another hospital get
    the 404 a missing record gets; a record that is not a result says so."""
    record_round(study, 2)
    values = [{"org_id": org, "value_bp": 120} for org in HOSPITALS]
    study.ok(
        "researcher",
        "research",
        "record_contributions",
        {"study_id": STUDY, "method": "leave-one-out", "values": values},
    )
    model = {
        "model_id": "dm2-risk",
        "version": 1,
        "model_hash": crypto.sm3(b"global model 2"),
        "card_hash": crypto.sm3(b"model card"),
        "licence": "Apache-2.0",
        "study_id": STUDY,
    }
    study.ok("researcher", "models", "register", model)
    study.ok(
        "admin_a",
        "records",
        "register",
        {
            "record_id": "risk-p2-1",
            "patient": study.did("p2"),
            "resource_type": "Observation",
            "cid": "b" + "d" * 58,
            "content_hash": crypto.sm3(b"risk score"),
        },
    )
    grant = {
        "patient": study.did("p2"),
        "grantee_kind": "did",
        "grantee": study.did("doctor_a"),
        "purposes": ["TREAT"],
        "scope_types": ["Observation"],
        "expires_ms": study.client().block_time_ms() + DAY_MS,
    }
    study.ok("p2", "consent", "grant", grant)
    result = {
        "result_id": "res-p2-1",
        "model_id": "dm2-risk",
        "version": 1,
        "input_record_id": "obs-p2-hosp-a",
        "output_record_id": "risk-p2-1",
    }
    study.ok("doctor_a", "models", "register_result", result)

    for who in ("doctor_a", "p2", "inspector"):
        answer = study.client(who).provenance("risk-p2-1")
        assert answer["model"]["model_hash"] == crypto.sm3(b"global model 2").hex()
        assert answer["model"]["lineage"]["study_id"] == STUDY
        assert answer["trained_under_consent"] and answer["input_unchanged"]
    by_cli = ok(run(study, "models", "provenance", "risk-p2-1", "--key", "doctor-a"))
    rounds = by_cli["model"]["lineage"]["rounds"]
    assert [(r["round"], [c["count"] for c in r["cohorts"]]) for r in rounds] == [
        (1, [2, 1]),
        (2, [1, 0]),
    ]
    assert [c["samples_x_rounds"] for c in by_cli["contributions"]] == [3, 1]
    missing = refusal(study.client("p3"), "provenance", "no-such-record")
    assert missing[:2] == (404, "NOT_FOUND")
    for stranger in ("p3", "admin_b", "researcher"):  # the sponsor sees no patient's result
        refused = refusal(study.client(stranger), "provenance", "risk-p2-1")
        assert refused == (404, "NOT_FOUND", missing[2].replace("no-such-record", "risk-p2-1"))
    not_a_result = refusal(study.client("p2"), "provenance", "obs-p2-hosp-a")
    assert not_a_result[:2] == (404, "NOT_FOUND") and "not an AI result" in not_a_result[2]

    listed = ok(run(study, "models", "list", "--key", "p3"))
    assert listed == [{"model": "dm2-risk", "owner": "uni-research", "latest version": "1"}]
    shown = ok(run(study, "models", "show", "dm2-risk", "--version", "1", "--key", "p3"))
    assert shown["lineage"]["rounds"][1]["global_model_hash"] == crypto.sm3(b"global model 2").hex()
    assert study.client("p3").model("dm2-risk")["versions"][0]["version"] == 1
    assert study.client("p3").study_contributions(STUDY)[0]["value_bp"] == 120


def test_cli_failures_exit_with_the_code_scripts_expect(study: Node) -> None:
    """A stranger's proof request exits 4 (unauthorised) with the gateway's code; leaving
    a study one never joined exits 3; an unknown study exits 3."""
    refused = run(study, "study", "cohort-proof", STUDY, "--round", "1", "--org", "hosp-a",
                  "--key", "p3", "--patient", study.did("p1"))  # fmt: skip
    assert refused.returncode == 4
    assert json.loads(refused.stdout)["error"]["code"] == "UNAUTHORIZED"
    never = run(study, "study", "leave", STUDY, "--key", "p4")
    assert never.returncode == 3 and json.loads(never.stdout)["error"]["code"] == "NOT_FOUND"
    unknown = run(study, "study", "status", "no-such-study", "--key", "p3")
    assert unknown.returncode == 3
    assert Code.NOT_FOUND.name == json.loads(unknown.stdout)["error"]["code"]


def test_fl_run_refuses_a_study_whose_grants_do_not_cover_what_the_trainer_reads(
    node: Node, tmp_path: Path
) -> None:
    """The trainer reads each member's Patient resource (age, sex) and Observations.
    A study whose patients consented to Observations only was trained on their Patient
    resources all the same (prepare-round read every record of theirs in the vault);
    `fl run` now refuses it before anything runs, and prepare-round reads only records
    of the study's data types."""
    from medchain.fl.features import STUDY_FEATURES

    protocol = tmp_path / "protocol.txt"
    protocol.write_bytes(PROTOCOL)
    ok(
        run(
            node,
            *("study", "create", "obs-only", "--title", "Observations only"),
            *("--protocol", str(protocol), "--ethics-record", "ethics-2026-17"),
            *("--data-types", "Observation", "--features", ",".join(STUDY_FEATURES)),
            *("--hospitals", ",".join(HOSPITALS), "--rounds", "1", "--key", "researcher"),
        )
    )
    refused = run(
        node,
        *("fl", "run", "--study", "obs-only", "--rounds", "1", "--key", "researcher"),
        *("--site", "hosp-a=admin-a", "--site", "hosp-b=admin-b"),
        *("--workdir", str(tmp_path / "w")),
    )
    assert refused.returncode != 0
    assert "DATA_TYPES_NOT_CONSENTED" in refused.stdout + refused.stderr, refused.stderr
    assert "Patient" in refused.stdout + refused.stderr
    assert not (tmp_path / "w").exists()  # refused before any file is written
