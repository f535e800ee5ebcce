"""Importing real FHIR data through a custodian's edge: every shared example
validates, Synthea bundles split per patient with their references kept,
nothing is half-imported, a second import finds everything already there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.consortium import Consortium, running_consortium
from support.ledger import CHAIN_ID, DATA

from medchain.edge.requester import import_file, link_patient
from medchain.sdk.signing import send_signed

SYNTHEA = sorted((DATA / "fhir" / "synthea").glob("*.json"))
SPEC = sorted((DATA / "fhir" / "spec-examples").glob("*.json"))
RECORD_TYPES = {
    "Patient",
    "Encounter",
    "Observation",
    "DiagnosticReport",
    "MedicationRequest",
    "Condition",
    "Procedure",
    "Immunization",
    "ImagingStudy",
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def imported(world: Consortium, path: Path, patient: str | None = None) -> dict[str, Any]:
    r = import_file(
        world.keys["admin_a"], CHAIN_ID, world.edge_url, "fhir", path.read_bytes(), patient
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_synthea_bundles_import_per_patient_with_references_kept(world: Consortium) -> None:
    path = SYNTHEA[0]  # Buster Hoeger: 66 entries
    bundle = json.loads(path.read_bytes())
    source_patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    patient_key, did = world.new_patient()
    unlinked = imported(world, path)
    assert unlinked["imported"] == 0 and unlinked["unresolved_patients"]
    mrn = next(
        i
        for i in source_patient["identifier"]
        if i.get("type", {}).get("text") == "Medical Record Number"
    )
    r = link_patient(
        world.keys["admin_a"], CHAIN_ID, world.edge_url, mrn["system"], mrn["value"], did
    )
    assert r.status_code == 200, r.text
    report = imported(world, path)
    expected = sum(e["resource"]["resourceType"] in RECORD_TYPES for e in bundle["entry"])
    assert report["imported"] == expected and report["rejected"] == 0
    assert any("Claim/" in s for s in report["skipped"])
    records = {r["record_id"]: r for r in world.node.patient_records(did)}
    assert len(records) == expected
    # Read back through the FHIR API: references now point at the imported records.
    grant = {
        "patient": did,
        "grantee_kind": "did",
        "grantee": world.did("doctor_b"),
        "purposes": ["TREAT"],
        "scope_types": ["Observation"],
        "expires_ms": world.block_time_ms() + 86_400_000,
    }
    assert world.node.send(patient_key, "consent", "grant", grant)["code_name"] == "OK"
    headers = {"X-MedChain-Purpose": "TREAT"}
    found = send_signed(
        world.keys["doctor_b"],
        CHAIN_ID,
        "GET",
        world.edge_url,
        "/fhir/Observation",
        {"patient": did, "_count": "100"},
        headers=headers,
    ).json()
    observations = [e["resource"] for e in found["entry"]]
    assert len(observations) == 33
    for obs in observations:
        subject = obs["subject"]["reference"].split("/")
        encounter = obs["encounter"]["reference"].split("/")
        assert subject[0] == "Patient" and records[subject[1]]["resource_type"] == "Patient"
        assert encounter[0] == "Encounter" and encounter[1] in records


def test_every_shared_example_validates_and_imports(world: Consortium) -> None:
    _, did = world.new_patient()
    totals = {"imported": 0, "skipped": 0}
    for path in SPEC:
        r = import_file(
            world.keys["admin_a"],
            CHAIN_ID,
            world.edge_url,
            "fhir",
            path.read_bytes(),
            None if path.name.startswith("Bundle") else did,
        )
        assert r.status_code == 200, f"{path.name}: {r.text}"
        body = r.json()
        totals["imported"] += body["imported"]
        totals["skipped"] += len(body["skipped"])
        assert body["rejected"] == 0, body
    # AuditEvent, Consent, Provenance are ledger-native; the rest became records.
    assert totals["imported"] >= 7 and totals["skipped"] >= 3


def test_invalid_input_imports_nothing(world: Consortium) -> None:
    _, did = world.new_patient()
    bundle = json.loads(SYNTHEA[1].read_bytes())
    entries = [e["resource"] for e in bundle["entry"]]
    last_obs = [r for r in entries if r["resourceType"] == "Observation"][-1]
    del last_obs["code"]  # required in R4; the bad resource is near the end of the file
    broken = json.dumps(bundle).encode()
    r = import_file(world.keys["admin_a"], CHAIN_ID, world.edge_url, "fhir", broken, did)
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert "code" in message and last_obs["id"] in message
    assert "nothing was imported" in r.json()["error"]["hint"]
    assert world.node.patient_records(did) == []
    assert world.edge.vault.count() == 2  # only the fixture's two records
    for bad in (b"", b"{not json", b'{"no": "resourceType"}'):
        r = import_file(world.keys["admin_a"], CHAIN_ID, world.edge_url, "fhir", bad, did)
        assert r.status_code == 422, bad


def test_reimport_finds_records_already_there(world: Consortium) -> None:
    _, did = world.new_patient()
    first = imported(world, SYNTHEA[2], did)
    again = imported(world, SYNTHEA[2], did)
    assert first["imported"] > 30 and again["imported"] == 0
    assert again["rejected"] == first["imported"]
    assert len(world.node.patient_records(did)) == first["imported"]


def test_only_custodian_staff_may_import(world: Consortium) -> None:
    _, did = world.new_patient()
    r = import_file(
        world.keys["doctor_b"], CHAIN_ID, world.edge_url, "fhir", SYNTHEA[0].read_bytes(), did
    )
    assert r.status_code == 403
    r = httpx.post(f"{world.edge_url}/edge/v1/import/fhir", content=b"{}")
    assert r.status_code == 401
    r = send_signed(
        world.keys["admin_a"],
        CHAIN_ID,
        "POST",
        world.edge_url,
        "/edge/v1/import/xml",
        None,
        b"<x/>",
    )
    assert r.status_code == 404


def test_ndjson_export_imports_like_the_bundle(world: Consortium, tmp_path: Path) -> None:
    bundle = json.loads(SYNTHEA[3].read_bytes())
    ndjson = tmp_path / "export.ndjson"
    ndjson.write_text("\n".join(json.dumps(e["resource"]) for e in bundle["entry"]) + "\n")
    _, did = world.new_patient()
    report = imported(world, ndjson, did)
    expected = sum(e["resource"]["resourceType"] in RECORD_TYPES for e in bundle["entry"])
    assert report["imported"] == expected and report["rejected"] == 0


def test_an_interrupted_import_is_redone_not_reported_as_done(world: Consortium) -> None:
    key, did = world.new_patient()
    world.edge.vault.store("orphan-1", b"half-imported", key.public)  # crash before register
    report = send_signed(
        world.keys["admin_a"],
        CHAIN_ID,
        "POST",
        world.edge_url,
        "/edge/v1/records",
        {"patient": did, "record_id": "orphan-1"},
        (DATA / "fhir" / "spec-examples" / "Observation-f001.json").read_bytes(),
    )
    assert report.status_code == 201, report.text
    assert world.node.record("orphan-1")["resource_type"] == "Observation"
