"""Exam mutual recognition: rules and accreditation as governed state, accept /
decline only with access to the prior exam, and the per-hospital report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest
from support.consortium import Consortium, running_consortium
from support.ledger import DATA, Ledger, did_of
from support.stateless import apply_without_state

from medchain import crypto, encoding
from medchain.contracts.payload import payload_schema
from medchain.contracts.recognition import model as m
from medchain.contracts.recognition.handler import RecognitionHandler
from medchain.contracts.recognition.payloads import Level
from medchain.exceptions import Code, InvalidTransaction

DAY_MS = 86_400_000
CT_HEAD = "http://loinc.org|24725-4"  # CT Head WO contrast
HBA1C = "http://loinc.org|4548-4"
CT = "http://dicom.nema.org/resources/ontology/DCM|CT"


@pytest.fixture
def world(ledger: Ledger) -> dict[str, Any]:
    k = {
        n: crypto.generate_keypair()
        for n in (
            "admin_a",
            "admin_b",
            "admin_c",
            "admin_reg",
            "inspector",
            "doctor_a",
            "doctor_b",
            "doctor_c",
            "patient",
        )
    }
    for org, admin in (("hosp-a", "admin_a"), ("hosp-b", "admin_b"), ("hosp-c", "admin_c")):
        ledger.add_org(org, k[admin])
    ledger.add_org("nhc", k["admin_reg"], "regulator")
    ledger.add_staff(k["admin_reg"], "nhc", k["inspector"], ["regulator"])
    for org, admin, doctor in (
        ("hosp-a", "admin_a", "doctor_a"),
        ("hosp-b", "admin_b", "doctor_b"),
        ("hosp-c", "admin_c", "doctor_c"),
    ):
        ledger.add_staff(k[admin], org, k[doctor], ["doctor"])
    ledger.add_patient(k["patient"])
    return k


def register_exam(
    ledger: Ledger, k: dict[str, Any], rid: str, code: str, age_days: int, admin: str = "admin_a"
) -> Any:
    now = ledger.app.db.block_time_ms()
    return ledger.run(
        k[admin],
        "register",
        {
            "record_id": rid,
            "patient": did_of(k["patient"]),
            "resource_type": "ImagingStudy",
            "cid": "b" + "a" * 58,
            "content_hash": bytes(32),
            "exam_code": code,
            "performed_ms": now - age_days * DAY_MS,
        },
        "records",
    )


def rec(ledger: Ledger, key: crypto.KeyPair, action: str, payload: dict[str, Any]) -> Any:
    return ledger.run(key, action, payload, "recognition")


def govern(ledger: Ledger, k: dict[str, Any], level_a: str = "3A") -> None:
    far = ledger.app.db.block_time_ms() + 365 * DAY_MS
    rule = {"exam_code": CT_HEAD, "max_age_days": 30, "min_level": "3B"}
    assert rec(ledger, k["doctor_a"], "set_rule", rule).code == Code.UNAUTHORIZED
    assert rec(ledger, k["inspector"], "set_rule", rule).code == Code.OK
    accreditation = {"org_id": "hosp-a", "level": level_a, "expires_ms": far}
    assert rec(ledger, k["admin_a"], "accredit", accreditation).code == Code.UNAUTHORIZED
    assert rec(ledger, k["inspector"], "accredit", accreditation).code == Code.OK


def consent_to(ledger: Ledger, k: dict[str, Any], doctor: str) -> None:
    r = ledger.run(
        k["patient"],
        "grant",
        {
            "patient": did_of(k["patient"]),
            "grantee_kind": "did",
            "grantee": did_of(k[doctor]),
            "purposes": ["TREAT"],
            "scope_types": ["ImagingStudy"],
            "expires_ms": ledger.app.db.block_time_ms() + DAY_MS,
        },
        "consent",
    )
    assert r.code == Code.OK, r.log


def test_accept_needs_consent_then_counts_in_the_report(ledger: Ledger, world: Any) -> None:
    k = world
    govern(ledger, k)
    assert register_exam(ledger, k, "ct-1", CT_HEAD, age_days=5).code == Code.OK
    refused = rec(ledger, k["doctor_b"], "accept", {"record_id": "ct-1"})
    assert refused.code == Code.UNAUTHORIZED and "no access" in refused.log
    consent_to(ledger, k, "doctor_b")
    accepted = rec(ledger, k["doctor_b"], "accept", {"record_id": "ct-1"})
    assert accepted.code == Code.OK, accepted.log
    consent_to(ledger, k, "doctor_c")
    assert rec(ledger, k["doctor_c"], "decline", {"record_id": "ct-1"}).code == Code.INVALID_PAYLOAD
    declined = rec(
        ledger,
        k["doctor_c"],
        "decline",
        {"record_id": "ct-1", "reason": "images too noisy for surgical planning"},
    )
    assert declined.code == Code.OK
    consent_to(ledger, k, "doctor_a")
    same_hospital = rec(ledger, k["doctor_a"], "accept", {"record_id": "ct-1"})
    assert same_hospital.code == Code.INVALID_STATE

    def scan(prefix: str) -> Any:
        return ((key, encoding.decode(v)) for key, v in ledger.app.db.scan(prefix, 10_000))

    rows = m.report(scan, 0, ledger.app.db.block_time_ms() + 1)
    assert rows == [
        {"org_id": "hosp-b", "exams_avoided": 1, "repeated": 0, "recognition_rate": 1.0},
        {"org_id": "hosp-c", "exams_avoided": 0, "repeated": 1, "recognition_rate": 0.0},
    ]
    assert m.report(scan, 0, 1) == []  # outside the period


@pytest.mark.parametrize(
    ("code", "age_days", "level", "why"),
    [
        (CT_HEAD, 31, "3A", "days old"),
        (CT_HEAD, 5, "2A", "level 2A"),
        (HBA1C, 1, "3A", "no recognition rule"),
    ],
)
def test_rules_decide_what_is_recognisable(
    ledger: Ledger, world: Any, code: str, age_days: int, level: str, why: str
) -> None:
    k = world
    govern(ledger, k, level_a=level)
    assert register_exam(ledger, k, "exam-1", code, age_days).code == Code.OK
    consent_to(ledger, k, "doctor_b")
    r = rec(ledger, k["doctor_b"], "accept", {"record_id": "exam-1"})
    assert r.code == Code.INVALID_STATE and why in r.log


def test_expired_accreditation_and_non_exam_records(ledger: Ledger, world: Any) -> None:
    k = world
    govern(ledger, k)
    soon = {"org_id": "hosp-a", "level": "3A", "expires_ms": ledger.app.db.block_time_ms() + 2000}
    assert rec(ledger, k["inspector"], "accredit", soon).code == Code.OK
    assert register_exam(ledger, k, "ct-1", CT_HEAD, age_days=1).code == Code.OK
    consent_to(ledger, k, "doctor_b")
    for _ in range(3):
        ledger.commit([])
    r = rec(ledger, k["doctor_b"], "accept", {"record_id": "ct-1"})
    assert r.code == Code.INVALID_STATE and "no valid accreditation" in r.log


@pytest.mark.parametrize(
    "bad",
    [
        {"exam_code": CT_HEAD},  # without performed_ms
        {"exam_code": "CT head", "performed_ms": 1},  # not system|code
        {"exam_code": CT_HEAD, "performed_ms": 10**15},  # in the future
    ],
)
def test_exam_fields_are_checked(ledger: Ledger, world: Any, bad: dict[str, Any]) -> None:
    k = world
    payload = {
        "record_id": "x-1",
        "patient": did_of(k["patient"]),
        "resource_type": "ImagingStudy",
        "cid": "b" + "a" * 58,
        "content_hash": bytes(32),
        **bad,
    }
    assert ledger.run(k["admin_a"], "register", payload, "records").code == Code.INVALID_PAYLOAD


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def test_hospital_b_finds_and_recognises_hospital_a_ct(running: Consortium) -> None:
    """End to end on a running node and edge: A registers a CT study; B, with consent,
    finds it, recognises it, and the recognition shows in the report; without consent
    B sees nothing."""
    world = running
    study = json.loads((DATA / "fhir" / "spec-examples" / "ImagingStudy-example.json").read_bytes())
    study["started"] = datetime.now(UTC).replace(microsecond=0).isoformat()
    r = world.upload(
        "admin_a", json.dumps(study).encode(), world.did("patient"), record_id="ct-head-1"
    )
    assert r.status_code == 201, r.text
    record = world.node.record("ct-head-1")
    assert record["exam_code"] == CT and record["performed_ms"] > 0
    far = world.block_time_ms() + 365 * DAY_MS
    world.ok(
        "root",
        "recognition",
        "set_rule",
        {"exam_code": CT, "max_age_days": 180, "min_level": "3B"},
    )
    world.ok(
        "root",
        "recognition",
        "accredit",
        {"org_id": "hosp-a", "level": "3A", "expires_ms": far},
    )
    patient, doctor = world.did("patient"), world.did("doctor_b")

    assert world.node.recognition_candidates(patient, doctor) == []  # no consent
    refused = world.send("doctor_b", "recognition", "accept", {"record_id": "ct-head-1"})
    assert refused["code_name"] == "UNAUTHORIZED"
    world.grant("doctor_b", ["ImagingStudy"])
    found = world.node.recognition_candidates(patient, doctor, CT)
    assert [(c["record_id"], c["eligible"]) for c in found] == [("ct-head-1", True)]
    world.ok("doctor_b", "recognition", "accept", {"record_id": "ct-head-1"})

    report = world.node.recognition_report()["hospitals"]
    assert report == [
        {"org_id": "hosp-b", "exams_avoided": 1, "repeated": 0, "recognition_rate": 1.0}
    ]
    kinds = [e["kind"] for e in world.node.audit(patient=patient)["events"]]
    assert "recognition.accepted" in kinds


VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "set_rule": {"exam_code": CT_HEAD, "max_age_days": 30, "min_level": "3A"},
    "accredit": {"org_id": "pumch", "level": "3A", "expires_ms": 2_000_000_000_000},
    "accept": {"record_id": "dr-1", "reason": "recent and from a 3A hospital"},
    "decline": {"record_id": "dr-1", "reason": "the image is blurred"},
}


@pytest.mark.parametrize("action", sorted(VALID_PAYLOADS))
def test_malformed_payloads_are_refused_before_any_state_read(action: str) -> None:
    valid = VALID_PAYLOADS[action]
    first = next(iter(valid))
    for payload in (
        {k: v for k, v in valid.items() if k != first},  # missing
        {**valid, "x": 1},  # extra
        {**valid, first: 7},  # wrong type
    ):
        with pytest.raises(InvalidTransaction) as refused:
            apply_without_state(RecognitionHandler(), action, payload)
        assert refused.value.code == Code.INVALID_PAYLOAD, payload
    with pytest.raises(AssertionError, match="state read"):  # well formed: on to state
        apply_without_state(RecognitionHandler(), action, valid)


@pytest.mark.parametrize(
    ("action", "change"),
    [
        ("set_rule", {"exam_code": "CT head"}),
        ("set_rule", {"exam_code": CT_HEAD + "\n"}),
        ("set_rule", {"max_age_days": 0}),
        ("set_rule", {"max_age_days": m.MAX_AGE_DAYS + 1}),
        ("set_rule", {"max_age_days": True}),
        ("set_rule", {"min_level": "4A"}),
        ("accredit", {"level": "3a"}),
        ("accredit", {"expires_ms": "soon"}),
        ("accept", {"reason": b"bytes"}),
        ("decline", {"reason": "    ok   "}),
        ("decline", {"reason": "x" * (m.MAX_REASON + 1)}),
    ],
)
def test_recognition_payload_rules_hold_before_any_state_read(
    action: str, change: dict[str, Any]
) -> None:
    with pytest.raises(InvalidTransaction) as refused:
        apply_without_state(RecognitionHandler(), action, {**VALID_PAYLOADS[action], **change})
    assert refused.value.code == Code.INVALID_PAYLOAD


def test_levels_in_the_payload_type_are_the_model_levels_in_order() -> None:
    assert get_args(Level) == m.LEVELS


def test_every_action_publishes_a_json_schema() -> None:
    for action, kind in RecognitionHandler.payloads.items():
        assert payload_schema(kind)["$ref"].endswith(kind.__name__), action
