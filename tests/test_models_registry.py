"""Model registry and AI-result provenance (issue 17 point 4): a model version
with its study lineage, versions only going up under one owner, and a result
registered only by a clinician who may read the input record, answered with the
model and the cohort roots it was trained on."""

from __future__ import annotations

from typing import Any

import pytest
from support.ledger import Ledger, did_of
from test_research import (
    HOSPITALS,
    STUDY,
    build_world,
    commit,
    expected,
    open_study,
    research,
    round_payload,
    scan_of,
)

from medchain import crypto
from medchain.contracts.models import model as mm
from medchain.contracts.research import model as rm
from medchain.exceptions import Code

DAY_MS = 86_400_000
MODEL = "dm2-risk"


def models(ledger: Ledger, key: crypto.KeyPair, action: str, payload: dict[str, Any]) -> Any:
    return ledger.run(key, action, payload, "models")


def entry(version: int, **change: Any) -> dict[str, Any]:
    return {
        "model_id": MODEL,
        "version": version,
        "model_hash": crypto.sm3(f"model file v{version}".encode()),
        "card_hash": crypto.sm3(f"model card v{version}".encode()),
        "licence": "Apache-2.0",
        **change,
    }


def trained(version: int) -> dict[str, Any]:
    """A registry entry for the file the study's last round (3) recorded."""
    return entry(version, study_id=STUDY, model_hash=round_payload(3)["global_model_hash"])


def complete_study(ledger: Ledger, k: dict[str, Any]) -> None:
    """Three rounds at hospitals A, B, C, then the contributions."""
    open_study(ledger, k)
    cohort_of = {"hosp-a": ["p1", "p2", "p5"], "hosp-b": ["p1", "p3"], "hosp-c": ["p3"]}
    for rnd in (1, 2, 3):
        for org in HOSPITALS:
            r = commit(ledger, k["admin_" + org[-1]], rnd, *expected(k, cohort_of[org]))
            assert r.code == Code.OK, r.log
        r = research(ledger, k["researcher"], "record_round", round_payload(rnd))
        assert r.code == Code.OK, r.log
    values = [{"org_id": org, "value_bp": 100} for org in HOSPITALS]
    r = research(
        ledger,
        k["researcher"],
        "record_contributions",
        {"study_id": STUDY, "method": "leave-one-out", "values": values},
    )
    assert r.code == Code.OK, r.log


@pytest.fixture
def world(ledger: Ledger) -> dict[str, Any]:
    k = build_world(ledger)
    k["doctor_b"] = crypto.generate_keypair()
    ledger.add_staff(k["admin_b"], "hosp-b", k["doctor_b"], ["doctor"])
    return k


def test_a_model_is_registered_with_its_study_lineage_only_once_completed(
    ledger: Ledger, world: Any
) -> None:
    k = world
    open_study(ledger, k)
    early = models(ledger, k["researcher"], "register", trained(1))
    assert early.code == Code.INVALID_STATE and "open" in early.log
    ledger_scan = scan_of(ledger)
    for rnd in (1, 2, 3):
        cohort_of = {"hosp-a": ["p1", "p2", "p5"], "hosp-b": ["p1", "p3"], "hosp-c": ["p3"]}
        for org in HOSPITALS:
            assert (
                commit(ledger, k["admin_" + org[-1]], rnd, *expected(k, cohort_of[org])).code
                == Code.OK
            )
        assert research(ledger, k["researcher"], "record_round", round_payload(rnd)).code == Code.OK
    values = [{"org_id": org, "value_bp": 100} for org in HOSPITALS]
    done = research(
        ledger,
        k["researcher"],
        "record_contributions",
        {"study_id": STUDY, "method": "leave-one-out", "values": values},
    )
    assert done.code == Code.OK
    not_sponsor = models(ledger, k["admin_a"], "register", trained(1))
    assert not_sponsor.code == Code.UNAUTHORIZED  # hospital A took part but is not the sponsor
    assert models(ledger, k["doctor_a"], "register", entry(1)).code == Code.UNAUTHORIZED
    assert models(ledger, k["p1"], "register", entry(1)).code == Code.UNAUTHORIZED
    r = models(ledger, k["researcher"], "register", trained(1))
    assert r.code == Code.OK, r.log
    version = mm.model_version(ledger.state, MODEL, 1)
    assert version is not None and version["owner_org"] == "uni-research"
    lineage = version["lineage"]
    assert [r["round"] for r in lineage["rounds"]] == [1, 2, 3]
    assert lineage["dp_epsilon_milli"] == 8000 and lineage["aggregation"] == "ckks-fedavg"
    committed = rm.cohort(ledger.state, STUDY, 3, "hosp-b")
    assert committed is not None
    assert {"org_id": "hosp-b", "count": 2, "root": committed["root"]} in lineage["rounds"][2][
        "cohorts"
    ]
    assert lineage["rounds"][0]["global_model_hash"] == round_payload(1)["global_model_hash"]

    # Versions go up, under the same owner only.
    assert models(ledger, k["researcher"], "register", entry(1)).code == Code.INVALID_STATE
    assert models(ledger, k["admin_a"], "register", entry(2)).code == Code.UNAUTHORIZED
    assert models(ledger, k["admin_s"], "register", entry(2)).code == Code.OK
    assert [v["version"] for v in mm.versions(ledger_scan, MODEL)] == [1, 2]
    assert mm.models(ledger_scan) == [
        {"model_id": MODEL, "owner_org": "uni-research", "latest_version": 2}
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"version": 0},
        {"model_hash": bytes(31)},
        {"licence": "Apache 2.0"},
        {"model_id": "X"},
        {"study_id": None},
    ],
)
def test_malformed_model_entries_are_refused(
    ledger: Ledger, world: Any, bad: dict[str, Any]
) -> None:
    r = models(ledger, world["researcher"], "register", entry(1) | bad)
    assert r.code == Code.INVALID_PAYLOAD


def register_record(
    ledger: Ledger, admin: crypto.KeyPair, rid: str, patient: Any, kind: str
) -> None:
    r = ledger.run(
        admin,
        "register",
        {
            "record_id": rid,
            "patient": did_of(patient),
            "resource_type": kind,
            "cid": "b" + "d" * 58,
            "content_hash": crypto.sm3(rid.encode()),
        },
        "records",
    )
    assert r.code == Code.OK, r.log


def test_an_ai_result_needs_a_clinician_who_may_read_its_input(ledger: Ledger, world: Any) -> None:
    k = world
    complete_study(ledger, k)
    assert models(ledger, k["researcher"], "register", trained(1)).code == Code.OK
    # Doctor B computes a risk score from p1's HbA1c held at hospital A.
    register_record(ledger, k["admin_b"], "risk-p1-1", k["p1"], "Observation")
    register_record(ledger, k["admin_b"], "img-p1-1", k["p1"], "ImagingStudy")
    register_record(ledger, k["admin_b"], "risk-p2-1", k["p2"], "Observation")
    result = {
        "result_id": "res-1",
        "model_id": MODEL,
        "version": 1,
        "input_record_id": "obs-p1-hosp-a",
        "output_record_id": "risk-p1-1",
    }
    refused = models(ledger, k["doctor_b"], "register_result", result)
    assert refused.code == Code.UNAUTHORIZED and "no access" in refused.log  # no consent yet
    assert "model" not in refused.log  # a stranger learns nothing of the result's model
    for stranger in ("researcher", "admin_b", "p1"):
        r = models(ledger, k[stranger], "register_result", result)
        assert r.code == Code.UNAUTHORIZED, (stranger, r.log)
    granted = ledger.run(
        k["p1"],
        "grant",
        {
            "patient": did_of(k["p1"]),
            "grantee_kind": "did",
            "grantee": did_of(k["doctor_b"]),
            "purposes": ["TREAT"],
            "scope_types": ["Observation"],
            "expires_ms": ledger.app.db.block_time_ms() + DAY_MS,
        },
        "consent",
    )
    assert granted.code == Code.OK, granted.log
    unknown = models(ledger, k["doctor_b"], "register_result", result | {"version": 9})
    assert unknown.code == Code.NOT_FOUND
    other_patient = models(
        ledger, k["doctor_b"], "register_result", result | {"output_record_id": "risk-p2-1"}
    )
    assert other_patient.code == Code.INVALID_STATE
    not_a_result = models(
        ledger, k["doctor_b"], "register_result", result | {"output_record_id": "img-p1-1"}
    )
    assert not_a_result.code == Code.INVALID_STATE and "Observation" in not_a_result.log
    held_elsewhere = models(
        ledger, k["doctor_b"], "register_result", result | {"output_record_id": "obs-p1-hosp-a"}
    )
    assert held_elsewhere.code == Code.INVALID_STATE
    ok = models(ledger, k["doctor_b"], "register_result", result)
    assert ok.code == Code.OK, ok.log
    again = models(ledger, k["doctor_b"], "register_result", result | {"result_id": "res-2"})
    assert again.code == Code.ALREADY_EXISTS

    answer = mm.provenance(ledger.state, scan_of(ledger), "risk-p1-1")
    assert answer is not None
    assert answer["result"]["input_record_id"] == "obs-p1-hosp-a"
    assert answer["result"]["input_content_hash"] == bytes(32)
    assert answer["model"]["model_hash"] == trained(1)["model_hash"]
    assert answer["model"]["lineage"]["study_id"] == STUDY
    assert answer["trained_under_consent"] and answer["input_unchanged"]
    assert [c["org_id"] for c in answer["contributions"]] == list(HOSPITALS)
    assert mm.provenance(ledger.state, scan_of(ledger), "obs-p1-hosp-a") is None  # not a result

    erased = ledger.run(k["p1"], "erase", {"record_id": "obs-p1-hosp-a"}, "records")
    assert erased.code == Code.OK, erased.log
    later = mm.provenance(ledger.state, scan_of(ledger), "risk-p1-1")
    assert later is not None and later["input_unchanged"] is False


def test_a_model_without_lineage_says_so(ledger: Ledger, world: Any) -> None:
    k = world
    assert models(ledger, k["admin_a"], "register", entry(1)).code == Code.OK
    register_record(ledger, k["admin_a"], "risk-p2-1", k["p2"], "Observation")
    payload = {
        "result_id": "res-a",
        "model_id": MODEL,
        "version": 1,
        "input_record_id": "obs-p2-hosp-a",
        "output_record_id": "risk-p2-1",
    }
    r = models(ledger, k["doctor_a"], "register_result", payload)
    assert r.code == Code.UNAUTHORIZED  # a record of one's own hospital still needs consent
    granted = ledger.run(
        k["p2"],
        "grant",
        {
            "patient": did_of(k["p2"]),
            "grantee_kind": "org",
            "grantee": "hosp-a",
            "purposes": ["TREAT"],
            "scope_types": ["Observation"],
            "expires_ms": ledger.app.db.block_time_ms() + DAY_MS,
        },
        "consent",
    )
    assert granted.code == Code.OK, granted.log
    r = ledger.run(k["doctor_a"], "register_result", payload, "models")
    assert r.code == Code.OK, r.log
    answer = mm.provenance(ledger.state, scan_of(ledger), "risk-p2-1")
    assert answer is not None and answer["trained_under_consent"] is False
    assert "lineage" not in answer["model"] and "contributions" not in answer
