"""The custodian's FHIR R4 API on its edge: read and search within consent and
role, OperationOutcome errors, every read audited on chain with the reader's
own signed request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.consortium import Consortium, running_consortium
from support.ledger import CHAIN_ID, DATA

from medchain.sdk.signing import send_signed

SPEC = DATA / "fhir" / "spec-examples"
GLUCOSE = (SPEC / "Observation-f001.json").read_bytes()
WEIGHT = (SPEC / "Observation-example.json").read_bytes()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def get(
    world: Consortium, who: str, path: str, purpose: str = "TREAT", **params: str
) -> httpx.Response:
    headers = {"X-MedChain-Purpose": purpose}
    return send_signed(
        world.keys[who], CHAIN_ID, "GET", world.edge_url, path, params, headers=headers
    )


def add_observations(world: Consortium) -> None:
    for record_id, content in (("obs-glucose", GLUCOSE), ("obs-weight", WEIGHT)):
        r = world.upload("admin_a", content, world.did("patient"), record_id=record_id)
        assert r.status_code == 201, r.text


def audit_kinds(world: Consortium, who: str) -> list[tuple[str, str | None]]:
    rows = world.node.audit(actor=world.did(who), limit=1000)["events"]
    return [(r["kind"], r["record_id"]) for r in rows]


def test_metadata_is_a_capability_statement(world: Consortium) -> None:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    body = httpx.get(f"{world.edge_url}/fhir/metadata").json()
    CapabilityStatement.model_validate(body)
    types = {r["type"] for r in body["rest"][0]["resource"]}
    assert {
        "Patient",
        "Observation",
        "DiagnosticReport",
        "MedicationRequest",
        "ImagingStudy",
        "Consent",
        "AuditEvent",
        "Provenance",
    } <= types


def test_read_needs_consent_and_is_audited(world: Consortium) -> None:
    world.grant("doctor_b", ["Observation"])  # standing with the patient, not for reports
    denied = get(world, "doctor_b", "/fhir/DiagnosticReport/report-1")
    assert denied.status_code == 403
    issue = denied.json()["issue"][0]
    assert denied.json()["resourceType"] == "OperationOutcome" and issue["code"] == "forbidden"
    assert "no active consent" in issue["diagnostics"]
    grant_id = world.grant("doctor_b", ["DiagnosticReport"])
    ok = get(world, "doctor_b", "/fhir/DiagnosticReport/report-1")
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/fhir+json"
    report = ok.json()
    assert report["id"] == "report-1" and report["code"]["coding"][0]["code"] == "429858000"
    world.ok("patient", "consent", "revoke", {"grant_id": grant_id})
    assert get(world, "doctor_b", "/fhir/DiagnosticReport/report-1").status_code == 403
    assert audit_kinds(world, "doctor_b") == [
        ("exchange.refused", "report-1"),
        ("exchange.accessed", "report-1"),
        ("exchange.refused", "report-1"),
    ]
    # The audited read carries the reader's request, not just the custodian's word.
    accessed = world.node.audit(actor=world.did("doctor_b"))["events"][1]["attributes"]
    assert accessed["served_by"] == world.did("admin_a") and accessed["basis"].startswith("grant")


def test_search_by_patient_code_and_date(world: Consortium) -> None:
    add_observations(world)
    patient = world.did("patient")
    world.grant("doctor_b", ["DiagnosticReport"])  # standing, so withheld matches are told
    none = get(world, "doctor_b", "/fhir/Observation", patient=patient)
    # the chain withheld both: total counts what it released (none), a note the rest
    assert none.status_code == 200 and none.json()["total"] == 0
    assert not [e for e in none.json()["entry"] if e["search"]["mode"] == "match"]
    withheld = none.json()["entry"][-1]
    assert withheld["search"]["mode"] == "outcome" and "2 matching" in json.dumps(withheld)
    world.grant("doctor_b", ["Observation"])
    both = get(world, "doctor_b", "/fhir/Observation", patient=patient).json()
    assert both["total"] == 2
    by_code = get(
        world, "doctor_b", "/fhir/Observation", patient=patient, code="http://loinc.org|15074-8"
    ).json()
    assert [e["resource"]["id"] for e in by_code["entry"]] == ["obs-glucose"]
    value = by_code["entry"][0]["resource"]["valueQuantity"]
    assert value["value"] == 6.3 and value["unit"] == "mmol/l"
    assert get(world, "doctor_b", "/fhir/Observation", code="29463-7").json()["total"] == 1
    # The glucose's effectivePeriod has no end: ongoing by the specification, so it is
    # not inside the day (eq) but starts on it.
    on_the_day = f"/fhir/Observation?date=ge2013-04-02&date=lt2013-04-03&patient={patient}"
    glucose_day = get(world, "doctor_b", on_the_day).json()
    assert [e["resource"]["id"] for e in glucose_day["entry"]] == ["obs-glucose"]
    later = get(world, "doctor_b", "/fhir/Observation", date="sa2013-04-02").json()
    assert [e["resource"]["id"] for e in later["entry"]] == ["obs-weight"]
    # every hit was decided and audited on chain
    kinds = audit_kinds(world, "doctor_b")
    assert kinds.count(("exchange.accessed", "obs-glucose")) == 3
    assert kinds.count(("exchange.refused", "obs-weight")) == 1


def test_errors_are_operation_outcomes(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    unsigned = httpx.get(f"{world.edge_url}/fhir/DiagnosticReport/report-1")
    assert unsigned.status_code == 401 and unsigned.json()["issue"][0]["code"] == "login"
    missing = get(world, "doctor_b", "/fhir/DiagnosticReport/nope")
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    wrong_type = get(world, "doctor_b", "/fhir/Observation/report-1")
    assert wrong_type.status_code == 404
    unknown = get(world, "doctor_b", "/fhir/Medication/x")
    assert unknown.status_code == 404
    bad_purpose = get(world, "doctor_b", "/fhir/DiagnosticReport/report-1", purpose="FUN")
    assert bad_purpose.status_code == 400
    research = get(world, "doctor_b", "/fhir/DiagnosticReport/report-1", purpose="HRESEARCH")
    assert research.status_code == 403  # granted for TREAT only


def test_ledger_resources_for_the_patient_and_regulators_only(world: Consortium) -> None:
    patient = world.did("patient")
    grant_id = world.grant("doctor_b", ["DiagnosticReport"])
    mine = get(world, "patient", "/fhir/Consent", patient=patient)
    assert mine.status_code == 200 and mine.json()["entry"][0]["resource"]["id"] == grant_id
    assert get(world, "doctor_b", "/fhir/Consent", patient=patient).status_code == 403
    audit = get(world, "patient", "/fhir/AuditEvent", patient=patient).json()
    assert audit["resourceType"] == "Bundle" and audit["total"] >= 3
    assert get(world, "doctor_b", "/fhir/AuditEvent", patient=patient).status_code == 403
    own = get(world, "doctor_b", "/fhir/AuditEvent", agent=world.did("doctor_b"))
    assert own.status_code == 200
    admin = get(world, "admin_b", "/fhir/AuditEvent", agent=world.did("doctor_b"))
    assert admin.status_code == 200  # the doctor's own org admin
    other_admin = get(world, "admin_a", "/fhir/AuditEvent", agent=world.did("doctor_b"))
    assert other_admin.status_code == 403
    provenance = get(world, "doctor_b", "/fhir/Provenance", target="report-1")
    assert provenance.status_code == 200
    read = get(world, "doctor_b", "/fhir/Provenance/report-1").json()
    assert read["resourceType"] == "Provenance"
    assert read["target"][0]["identifier"]["value"] == "report-1"
    consent = get(world, "doctor_b", f"/fhir/Consent/{grant_id}")  # the grantee
    assert consent.status_code == 200 and consent.json()["id"] == grant_id
    assert get(world, "nurse_b", f"/fhir/Consent/{grant_id}").status_code == 403
    assert get(world, "patient", "/fhir/Consent/nope").status_code == 404
    assert get(world, "nurse_b", "/fhir/Provenance", target="report-1").status_code == 403


def test_searchable_index_follows_supersede_and_erase(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    patient = world.did("patient")
    amended = json.loads((SPEC / "DiagnosticReport-f201.json").read_bytes())
    amended["conclusion"] = "Amended."
    r = world.upload(
        "admin_a",
        json.dumps(amended).encode(),
        patient,
        record_id="report-2",
        supersedes="report-1",
    )
    assert r.status_code == 201
    found = get(world, "doctor_b", "/fhir/DiagnosticReport", patient=patient).json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["report-2"]
    world.ok("patient", "records", "erase", {"record_id": "report-2"})
    world.edge.sync()
    gone = get(world, "doctor_b", "/fhir/DiagnosticReport", patient=patient).json()
    assert gone["total"] == 0 and "entry" not in gone


def test_a_page_past_the_end_decides_nothing_and_counts_nothing(world: Consortium) -> None:
    """A caller with standing for one kind of record cannot count another kind by
    asking for a page past the end: that page is decided by no one, so it gives no
    total (the security review's oracle: total 1 with no audit event)."""
    world.grant("doctor_b", ["MedicationRequest"])  # standing, no consent for reports
    patient = world.did("patient")
    before = audit_kinds(world, "doctor_b")
    past = get(world, "doctor_b", "/fhir/DiagnosticReport", patient=patient, _offset="1000")
    assert past.status_code == 200 and "total" not in past.json()
    assert not [link for link in past.json()["link"] if link["relation"] == "next"]
    nothing = get(world, "doctor_b", "/fhir/Condition", patient=patient, _offset="1000")
    assert past.json().keys() == nothing.json().keys()  # the same whether or not any match
    assert audit_kinds(world, "doctor_b") == before
    # The first page is decided on chain (audited): the chain withholds the report,
    # and the total counts what it released.
    first = get(world, "doctor_b", "/fhir/DiagnosticReport", patient=patient)
    assert first.json()["total"] == 0 and "1 matching" in json.dumps(first.json())
    assert len(audit_kinds(world, "doctor_b")) == len(before) + 1


def test_a_withheld_match_brings_no_included_patient(world: Consortium) -> None:
    """_include serves a patient only beside a match the chain released: a patient
    brought by a withheld report would tell the caller what the report was about."""
    patient = json.loads((SPEC / "Patient-example.json").read_bytes())
    patient["id"] = "f201"
    upload = world.upload(
        "admin_a", json.dumps(patient).encode(), world.did("patient"), record_id="f201"
    )
    assert upload.status_code == 201, upload.text
    world.grant("doctor_b", ["Patient"])  # demographics only, no DiagnosticReport
    found = get(
        world,
        "doctor_b",
        "/fhir/DiagnosticReport",
        code="http://snomed.info/sct|429858000",
        _include="DiagnosticReport:subject",
    )
    assert found.status_code == 200, found.text
    modes = [e["search"]["mode"] for e in found.json().get("entry", [])]
    assert modes == ["outcome"]  # no match, no include: one note of what was withheld
