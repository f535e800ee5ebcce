"""HIS data through a custodian's edge: HL7 v2 messages and CSV exports become
FHIR records with mapping attestations anyone can re-check; bad input imports
nothing and says where it is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.consortium import Consortium, running_consortium
from support.ledger import CHAIN_ID, DATA

from medchain.edge.importer import verify_derivation
from medchain.edge.requester import import_file, link_patient
from medchain.fhir.conversion import Conversion
from medchain.fhir.csv_map import convert_csv, load_mapping
from medchain.fhir.hl7v2 import MAPPING_HASHES, convert_message
from medchain.sdk.signing import send_signed

HL7 = DATA / "hl7v2"
GHH = (HL7 / "ORU-R01-RMGEAD.hl7").read_bytes()
LAB_CSV = (Path(__file__).parent / "data" / "lis_lab_results.csv").read_bytes()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def staff_import(world: Consortium, kind: str, raw: bytes, **params: str) -> Any:
    return import_file(world.keys["admin_a"], CHAIN_ID, world.edge_url, kind, raw, **params)


def link(world: Consortium, conversion: Conversion, did: str) -> None:
    source = conversion.patient
    r = link_patient(
        world.keys["admin_a"], CHAIN_ID, world.edge_url, source.system, source.identifier, did
    )
    assert r.status_code == 200, r.text


def test_hl7_lab_result_imports_with_a_verifiable_attestation(world: Consortium) -> None:
    conversion = convert_message(GHH)
    unlinked = staff_import(world, "hl7", GHH).json()
    assert unlinked["imported"] == 0 and "555-44-4444" in unlinked["unresolved_patients"][0]
    link(world, conversion, world.did("patient"))
    report = staff_import(world, "hl7", GHH).json()
    assert report["imported"] == len(conversion.resources) and report["rejected"] == 0
    ids = [r["record_id"] for r in report["patients"][world.did("patient")]["imported"]]
    for record_id in ids:
        record = world.node.record(record_id)
        attestation = record["derived_from"]
        assert attestation["mapping_id"] == "hl7v2-oru-r01/2"
        assert attestation["mapping_hash"] == MAPPING_HASHES["hl7v2-oru-r01/2"].hex()
        # The custodian hands an auditor the salt; the auditor re-runs the mapping.
        salt = world.edge.vault.salt(record_id)
        assert verify_derivation(record, salt, conversion) == []
        forged = convert_message(GHH.replace(b"182", b"128"))
        assert "the input is not the one the record was made from" in verify_derivation(
            record, salt, forged
        )
    # The converted lab result reads back through the FHIR API, with consent.
    world.grant("doctor_b", ["Observation"])
    found = send_signed(
        world.keys["doctor_b"],
        CHAIN_ID,
        "GET",
        world.edge_url,
        "/fhir/Observation",
        {"patient": world.did("patient"), "code": "1554-5"},
    ).json()
    obs = found["entry"][0]["resource"]
    assert obs["valueQuantity"]["value"] == 182 and obs["valueQuantity"]["unit"] == "mg/dl"
    assert obs["interpretation"][0]["coding"][0]["code"] == "H"
    assert obs["subject"]["reference"].split("/")[1] in ids  # references rewritten


@pytest.mark.parametrize(
    "name", ["ADT01-23.hl7", "LRI_2.0-NG_CBC_Typ_Message.hl7", "RDE-O11-01.hl7"]
)
def test_every_hl7_sample_imports(world: Consortium, name: str) -> None:
    raw = (HL7 / name).read_bytes()
    conversion = convert_message(raw)
    _, did = world.new_patient()
    report = staff_import(world, "hl7", raw, patient=did).json()
    assert report["imported"] == len(conversion.resources) > 0, report
    types = sorted(r["resource_type"] for r in world.node.patient_records(did))
    assert types == sorted(r["resourceType"] for r in conversion.resources)


def test_bad_hl7_names_the_field_and_imports_nothing(world: Consortium) -> None:
    before = world.edge.vault.count()
    broken = GHH.replace(b"19620320", b"19621320")
    r = staff_import(world, "hl7", broken, patient=world.did("patient"))
    assert r.status_code == 422 and "PID-7" in r.json()["error"]["message"]
    r = staff_import(
        world, "hl7", b"MSH|^~\\&|X|Y|Z|W|2024||ADT^A03|1|P|2.5\r", patient=world.did("patient")
    )
    assert r.status_code == 422 and "MSH-9" in r.json()["error"]["message"]
    assert world.edge.vault.count() == before


def test_csv_lab_export_imports_per_linked_patient(world: Consortium) -> None:
    mapping = load_mapping("lab-result").with_facility("hosp-a")
    conversions = convert_csv(LAB_CSV, mapping)
    first = conversions[0]
    link(world, first, world.did("patient"))
    report = staff_import(world, "csv", LAB_CSV, mapping="lab-result").json()
    mine = [c for c in conversions if c.patient.identifier == first.patient.identifier]
    others = {c.patient.identifier for c in conversions} - {first.patient.identifier}
    assert report["imported"] == len(mine) + 1  # one Observation per row + the Patient once
    assert len(report["unresolved_patients"]) == sum(
        c.patient.identifier in others for c in conversions
    )
    record = world.node.record(report["patients"][world.did("patient")]["imported"][1]["record_id"])
    assert record["derived_from"]["mapping_id"] == "csv-lab/1"
    glucose = next(r for r in mine[0].resources if r["resourceType"] == "Observation")
    assert glucose["code"]["coding"][0]["code"] in {"GLU", "14749-6"}
    r = staff_import(world, "csv", LAB_CSV, mapping="../../etc/passwd")
    assert r.status_code == 422
    r = staff_import(world, "csv", LAB_CSV.replace(b"7.80", b"seven"), mapping="lab-result")
    assert r.status_code == 422 and "row 2" in r.json()["error"]["message"]
