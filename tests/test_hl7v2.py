"""HL7 v2 -> FHIR R4: the shared sample messages become valid FHIR holding their exact values."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from support.ledger import DATA

from medchain.fhir import hl7v2
from medchain.fhir.conversion import Conversion, MappingError
from medchain.fhir.hl7v2 import convert_message, split_messages
from medchain.fhir.hl7v2.versions import mapping_hash
from medchain.fhir.validate import canonical_json

HL7 = DATA / "hl7v2"
SAMPLES = [
    "ADT01-23",
    "LRI_2.0-NG_CBC_Typ_Message",
    "ORU-R01-RMGEAD",
    "RDE-O11-01",
    "ORM-O01-medchain",
    "OMI-O23-medchain",
]
DCM = "http://dicom.nema.org/resources/ontology/DCM"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
V2 = "http://terminology.hl7.org/CodeSystem/v2-"
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
SYSTEMS = {"LN": LOINC, "SCT": SNOMED, "NDC": "http://hl7.org/fhir/sid/ndc"}
GENDERS = {"M": "male", "F": "female"}
FLAGS = {"N", "L", "H", "HH", "A"}


def sample(name: str) -> bytes:
    with open(HL7 / f"{name}.hl7", "rb") as f:  # binary: segments end with \r
        return f.read()


def facts(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HL7 / f"{name}.expected.json").read_text())
    return data


def of_type(conv: Conversion, resource_type: str) -> list[dict[str, Any]]:
    return [r for r in conv.resources if r["resourceType"] == resource_type]


def one(conv: Conversion, resource_type: str) -> dict[str, Any]:
    found = of_type(conv, resource_type)
    assert len(found) == 1, found
    return found[0]


def fhir_date(hl7_ts: str) -> str:
    return f"{hl7_ts[:4]}-{hl7_ts[4:6]}-{hl7_ts[6:8]}"


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return own + [r for v in node.values() for r in references(v)]
    if isinstance(node, list):
        return [r for v in node for r in references(v)]
    return []


def edit(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert raw.count(old) == 1, old
    return raw.replace(old, new)


def drop_segment(raw: bytes, name: bytes) -> bytes:
    return b"\r".join(s for s in raw.split(b"\r") if not s.startswith(name + b"|"))


# ---- every sample ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_converts_to_valid_r4_resources_that_refer_to_each_other(name: str) -> None:
    conv = convert_message(sample(name))
    assert conv.input == sample(name)
    ids = {f"{r['resourceType']}/{r['id']}" for r in conv.resources}
    assert len(ids) == len(conv.resources)
    for resource in conv.resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert FHIR_ID.fullmatch(resource["id"])
        assert set(references(resource)) <= ids, resource["resourceType"]
    json.dumps(conv.resources)  # plain JSON, nothing a serializer would choke on


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_patient_carries_the_source_identity(name: str) -> None:
    expected = facts(name)["patient"]
    conv = convert_message(sample(name))
    patient = one(conv, "Patient")
    assert conv.resources[0] is patient
    assert patient["identifier"][0]["value"] == expected["id"]
    assert patient["name"][0]["family"] == expected["family_name"]
    assert patient["name"][0]["given"][0] == expected["given_name"]
    assert patient["birthDate"] == fhir_date(expected["birth_date"])
    assert patient["gender"] == GENDERS[expected["sex"]]
    if "id_type" in expected:
        assert patient["identifier"][0]["type"]["coding"][0]["code"] == expected["id_type"]
    if "city" in expected:
        assert patient["address"][0]["city"] == expected["city"]
        assert patient["address"][0]["state"] == expected["state"]
    source = conv.patient
    assert (source.identifier, source.system) == (
        expected["id"],
        patient["identifier"][0]["system"],
    )
    assert (source.family, source.given) == (expected["family_name"], expected["given_name"])
    assert source.birth_date == fhir_date(expected["birth_date"])
    assert source.sex == GENDERS[expected["sex"]]


@pytest.mark.parametrize("name", SAMPLES)
def test_converting_the_same_message_twice_gives_identical_output(name: str) -> None:
    first, second = convert_message(sample(name)), convert_message(sample(name))
    assert first == second
    assert [canonical_json(r) for r in first.resources] == [
        canonical_json(r) for r in second.resources
    ]


@pytest.mark.parametrize(
    ("name", "mapping_id"),
    [
        ("ADT01-23", "hl7v2-adt-a01/2"),
        ("LRI_2.0-NG_CBC_Typ_Message", "hl7v2-oru-r01/2"),
        ("ORU-R01-RMGEAD", "hl7v2-oru-r01/2"),
        ("RDE-O11-01", "hl7v2-rde-o11/2"),
        ("ORM-O01-medchain", "hl7v2-orm-o01/2"),
        ("OMI-O23-medchain", "hl7v2-omi-o23/2"),
    ],
)
def test_mapping_id_and_hash_name_the_mapper(name: str, mapping_id: str) -> None:
    conv = convert_message(sample(name))
    assert conv.mapping_id == mapping_id
    # The declared version and the tables as data name the mapping, not its source text.
    assert conv.mapping_hash == hl7v2.MAPPING_HASHES[mapping_id]
    assert conv.mapping_hash == mapping_hash(mapping_id.split("/")[0], hl7v2.VERSION)


# ---- ADT ------------------------------------------------------------------------------


def test_adt_a01_admission_becomes_patient_and_inpatient_encounter() -> None:
    expected = facts("ADT01-23")
    conv = convert_message(sample("ADT01-23"))
    patient, encounter = conv.resources
    assert encounter["resourceType"] == "Encounter"
    assert encounter["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert encounter["class"]["code"] == "IMP"  # PV1-2 "I"
    assert encounter["status"] == "in-progress"
    assert encounter["identifier"][0]["value"] == expected["patient"]["account_number"]
    assert encounter["identifier"][0]["system"] == "urn:medchain:visit:AccMgr"
    assert encounter["period"] == {"start": "2005-01-10T04:55:02+07:00"}
    attender = encounter["participant"][0]
    assert attender["type"][0]["coding"][0]["code"] == "ATND"
    assert attender["individual"]["identifier"]["value"] == expected["visit"]["attending_doctor_id"]
    assert expected["visit"]["attending_doctor_family_name"] in attender["individual"]["display"]
    assert encounter["location"][0]["location"]["display"] == "PREOP, 101, 1"
    diagnosis = encounter["reasonCode"][0]["coding"][0]
    assert diagnosis["system"] == "http://hl7.org/fhir/sid/icd-9-cm"  # DG1-3.3 "I9"
    assert diagnosis["code"] == expected["diagnoses"][0]["code"]
    assert diagnosis["display"] == "OSTEOARTHROS NOS-L/LEG "  # trailing space as written
    kin = expected["next_of_kin"][0]
    contact = patient["contact"][0]
    assert contact["name"] == {"family": kin["family_name"], "given": [kin["given_name"]]}
    assert contact["relationship"][0]["coding"][0] == {"system": V2 + "0063", "code": "SO"}


def test_adt_a08_update_uses_its_own_mapping_id_and_resource_ids() -> None:
    a01 = convert_message(sample("ADT01-23"))
    a08 = convert_message(edit(sample("ADT01-23"), b"|ADT^A01|", b"|ADT^A08|"))
    assert a08.mapping_id == "hl7v2-adt-a08/2"
    assert [r["resourceType"] for r in a08.resources] == ["Patient", "Encounter"]
    assert a08.resources[1]["class"] == a01.resources[1]["class"]
    assert {r["id"] for r in a08.resources}.isdisjoint(r["id"] for r in a01.resources)


@pytest.mark.parametrize("event", ["A04", "A05", "A13", "A14", "A28", "A31"])
def test_adt_events_sharing_a01s_structure_map_like_a01(event: str) -> None:
    """Issue 15.5: ADT^A04 (register) and the other ADT_A01/ADT_A05 events are imported
    as A01 is: the same Patient and Encounter, under their own mapping id and ids."""
    a01 = convert_message(sample("ADT01-23"))
    raw = edit(sample("ADT01-23"), b"|ADT^A01|", f"|ADT^{event}|".encode())
    other = convert_message(edit(raw, b"EVN|A01|", f"EVN|{event}|".encode()))
    assert other.mapping_id == f"hl7v2-adt-{event.lower()}/2"
    assert other.patient == a01.patient

    def without_ids(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in ("id", "subject")} for r in resources]

    assert without_ids(other.resources) == without_ids(a01.resources)
    assert {r["id"] for r in other.resources}.isdisjoint(r["id"] for r in a01.resources)


# ---- ORU ------------------------------------------------------------------------------


def assert_observation_matches(obs: dict[str, Any], fact: dict[str, Any]) -> None:
    code = obs["code"]["coding"][0]
    assert code["code"] == fact["code"]
    if "coding_system" in fact:
        assert code["system"] == SYSTEMS[fact["coding_system"]]
    assert obs["status"] == {"F": "final"}[fact["status"]]
    if fact["value_type"] == "NM":
        quantity = obs["valueQuantity"]
        assert Decimal(str(quantity["value"])) == Decimal(fact["value"])
        assert (quantity["system"], quantity["code"]) == (UCUM, fact["units"])
    elif fact["value_type"] == "CWE":
        value = obs["valueCodeableConcept"]["coding"][0]
        assert (value["system"], value["code"]) == (SNOMED, fact["value"])
    else:
        assert obs["valueString"] == fact["value"]
    if fact["reference_range"]:
        ref = obs["referenceRange"][0]
        assert ref["text"] == fact["reference_range"]
        low, high = fact["reference_range"].split(" to ")
        assert Decimal(str(ref["low"]["value"])) == Decimal(low)
        assert Decimal(str(ref["high"]["value"])) == Decimal(high)
    else:
        assert "referenceRange" not in obs
    assert fact["abnormal_flag"] in FLAGS
    assert obs["interpretation"][0]["coding"][0]["code"] == fact["abnormal_flag"]


def test_nist_cbc_keeps_every_observation_code_value_unit_range_and_flag() -> None:
    expected = facts("LRI_2.0-NG_CBC_Typ_Message")
    conv = convert_message(sample("LRI_2.0-NG_CBC_Typ_Message"))
    observations = of_type(conv, "Observation")
    assert len(observations) == expected["obx_count"]
    for fact in expected["observations"]:
        assert_observation_matches(observations[int(fact["set_id"]) - 1], fact)
    order = expected["orders"][0]
    report = one(conv, "DiagnosticReport")
    placer, filler = report["identifier"]
    assert (placer["value"], placer["type"]["coding"][0]["code"]) == (
        order["placer_order_number"],
        "PLAC",
    )
    assert (filler["value"], filler["type"]["coding"][0]["code"]) == (
        order["filler_order_number"],
        "FILL",
    )
    assert report["code"]["coding"][0] == {
        "system": LOINC,
        "code": order["service_code"],
        "display": "CBC W Auto Differential panel in Blood",
    }
    local = report["code"]["coding"][1]  # OBR-4.4-6: the lab's own code travels along
    assert local == {
        "system": "urn:medchain:local:NIST%20Lab%20Facility:99USI",
        "code": "4456544",
        "display": "CBC",
    }
    assert report["status"] == "final"
    assert report["effectiveDateTime"] == "2011-01-03T14:34:28-08:00"
    assert report["issued"] == "2011-01-04T17:00:28-08:00"
    assert report["result"] == [{"reference": f"Observation/{o['id']}"} for o in observations]
    assert {o["subject"]["reference"] for o in observations} == {
        f"Patient/{conv.resources[0]['id']}"
    }


def test_nist_units_and_text_results_are_kept_as_written() -> None:
    observations = of_type(convert_message(sample("LRI_2.0-NG_CBC_Typ_Message")), "Observation")
    rbc = observations[0]["valueQuantity"]
    assert rbc == {
        "value": 4.41,
        "unit": "million per microliter",
        "system": UCUM,
        "code": "10*6/uL",
    }
    anisocytosis = observations[19]["valueCodeableConcept"]
    assert anisocytosis["coding"][0]["display"] == "Present ++ out of ++++"
    assert anisocytosis["text"] == "Moderate Anisocytosis"  # CWE-9 original text
    assert observations[27]["valueString"] == "Platelets show defective granulation."


def test_ghh_glucose_structured_numeric_and_its_quirks() -> None:
    expected = facts("ORU-R01-RMGEAD")
    fact = expected["observations"][0]
    conv = convert_message(sample("ORU-R01-RMGEAD"))
    obs = one(conv, "Observation")
    assert obs["valueQuantity"] == {
        "value": int(fact["numeric_value"]),
        "unit": "mg/dl",
        "system": UCUM,
        "code": fact["units"],
    }
    assert "comparator" not in obs["valueQuantity"]  # SN component 1 is empty
    assert obs["referenceRange"][0]["text"] == fact["reference_range"]  # "70_105"
    assert obs["referenceRange"][0]["low"]["value"] == 70
    assert obs["referenceRange"][0]["high"]["value"] == 105
    assert obs["interpretation"][0]["coding"][0]["code"] == fact["abnormal_flag"]
    assert obs["status"] == "final"
    # OBX-3.3 holds text, not a coding system: the code stays local, the text as written.
    assert obs["code"]["coding"][0]["code"] == fact["code"] == "1554-5"
    assert obs["code"]["coding"][0]["display"] == fact["text"]
    system = obs["code"]["coding"][0]["system"]
    assert system == "urn:medchain:local:ELAB-3:POST%2012H%20CFST%3AMCNC%3APT%3ASER%2FPLAS%3AQN"
    order = expected["orders"][0]
    report = one(conv, "DiagnosticReport")
    assert report["code"]["coding"] == [
        {
            "system": "urn:medchain:local:ELAB-3:code",
            "code": order["service_code"],  # "15545", sic
            "display": order["service_text"],
        }
    ]
    assert [i["value"] for i in report["identifier"]] == [
        order["placer_order_number"],
        order["filler_order_number"],
    ]
    assert report["result"] == [{"reference": f"Observation/{obs['id']}"}]
    assert "issued" not in report  # OBR-22 is empty


# ---- RDE ------------------------------------------------------------------------------


def test_rde_order_becomes_prescribed_and_pharmacy_encoded_medication_requests() -> None:
    expected = facts("RDE-O11-01")
    order = expected["orders"][0]
    conv = convert_message(sample("RDE-O11-01"))
    requested, encoded = of_type(conv, "MedicationRequest")
    for mr in (requested, encoded):
        assert mr["identifier"][0]["value"] == order["placer_order_number"]
        assert mr["status"] == "active"  # ORC-1 "NW"
        assert mr["dosageInstruction"][0]["route"]["coding"][0]["code"] == order["route"]
        assert mr["dosageInstruction"][0]["route"]["coding"][0]["system"] == V2 + "0162"
        assert mr["authoredOn"] == "2019-11-04T06:27:26+02:15"
    assert requested["intent"] == "order"
    assert requested["medicationCodeableConcept"]["coding"][0] == {
        "system": SYSTEMS[order["requested_coding_system"]],
        "code": order["requested_code"],
        "display": order["requested_code_text"],
    }
    assert encoded["intent"] == "filler-order"
    assert encoded["basedOn"] == [{"reference": f"MedicationRequest/{requested['id']}"}]
    give = encoded["medicationCodeableConcept"]["coding"][0]
    assert (give["system"], give["code"]) == (
        SYSTEMS[order["give_coding_system"]],
        order["give_code"],
    )
    dose = encoded["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert dose["value"] == int(order["give_amount_minimum"])
    assert dose["unit"] == order["give_units"]  # RXE-5 "43^mg/hr": text mg/hr, local code 43
    assert dose["code"] == "43"
    dispense = encoded["dispenseRequest"]["quantity"]
    assert (dispense["value"], dispense["code"]) == (
        int(order["dispense_amount"]),
        order["dispense_units"],
    )
    assert encoded["dispenseRequest"]["numberOfRepeatsAllowed"] == 12
    timing = requested["dosageInstruction"][0]["timing"]
    assert timing["code"]["coding"][0]["code"] == "TID"
    assert timing["repeat"] == {"frequency": 3, "period": 1, "periodUnit": "d"}
    assert requested["substitution"] == {"allowedBoolean": True}  # RXO-9 "G"


def test_rde_observation_keeps_both_repetitions_and_supports_the_order() -> None:
    fact = facts("RDE-O11-01")["observations"][0]
    conv = convert_message(sample("RDE-O11-01"))
    obs = one(conv, "Observation")
    assert obs["code"]["coding"][0]["code"] == fact["code"]
    assert obs["code"]["coding"][0]["system"] == SYSTEMS[fact["coding_system"]]
    values = [c["valueCodeableConcept"]["coding"][0]["code"] for c in obs["component"]]
    assert values == fact["values"]
    ref = obs["referenceRange"][0]
    assert (ref["text"], ref["low"]["value"], ref["high"]["value"]) == (
        fact["reference_range"],
        100,
        120,
    )
    assert ref["low"]["unit"] == fact["units"]
    assert obs["status"] == "preliminary"  # OBX-11 "S" (partial)
    encoded = of_type(conv, "MedicationRequest")[1]
    assert encoded["supportingInformation"] == [{"reference": f"Observation/{obs['id']}"}]


def test_rde_patient_keeps_other_ids_and_birth_time() -> None:
    expected = facts("RDE-O11-01")["patient"]
    patient = one(convert_message(sample("RDE-O11-01")), "Patient")
    other = patient["identifier"][1]
    assert other["value"] == expected["other_ids"][0]["id"]
    assert other["type"]["coding"][0]["code"] == expected["other_ids"][0]["id_type"]
    birth_time = patient["_birthDate"]["extension"][0]
    assert birth_time == {
        "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
        "valueDateTime": "1988-08-18T11:26:00+02:15",  # PID-7 "198808181126+0215"
    }


# ---- ORM^O01 / OMI^O23 (orders) -------------------------------------------------------


def hl7_time(ts: str) -> str:
    """20250310082900+0800 -> 2025-03-10T08:29:00+08:00 (what the samples write)."""
    return f"{fhir_date(ts)}T{ts[8:10]}:{ts[10:12]}:{ts[12:14]}{ts[14:17]}:{ts[17:19]}"


def assert_service_request(
    request: dict[str, Any], order: dict[str, str], conv: Conversion
) -> None:
    assert request["status"] == order["fhir_status"]
    assert request["intent"] == "order"
    coding = request["code"]["coding"][0]
    assert (coding["system"], coding["code"]) == (
        SYSTEMS[order["service_system"]],
        order["service_code"],
    )
    assert coding["display"] == order["service_text"]
    assert request["subject"] == {"reference": f"Patient/{one(conv, 'Patient')['id']}"}
    assert request["encounter"] == {"reference": f"Encounter/{one(conv, 'Encounter')['id']}"}
    assert request["authoredOn"] == hl7_time(order["authored"])
    requester = request["requester"]
    assert requester["identifier"]["value"] == order["ordering_provider_id"]
    assert order["ordering_provider_family_name"] in requester["display"]
    numbers = {i["type"]["coding"][0]["code"]: i["value"] for i in request["identifier"]}
    written = {"PLAC": order["placer_order_number"], "FILL": order["filler_order_number"]}
    assert numbers == {kind: value for kind, value in written.items() if value}
    priorities = {"R": "routine", "S": "stat", "": None}
    assert request.get("priority") == priorities[order["priority"]]


def test_orm_orders_become_service_requests_with_status_from_order_control() -> None:
    expected = facts("ORM-O01-medchain")
    conv = convert_message(sample("ORM-O01-medchain"))
    assert conv.mapping_id == "hl7v2-orm-o01/2"
    requests = of_type(conv, "ServiceRequest")
    assert len(requests) == len(expected["orders"]) == 2
    for request, order in zip(requests, expected["orders"], strict=True):
        assert_service_request(request, order, conv)
    assert [r["status"] for r in requests] == ["active", "revoked"]  # NW, and CA/CA
    assert of_type(conv, "ImagingStudy") == []


def test_omi_imaging_order_becomes_service_request_and_registered_imaging_study() -> None:
    expected = facts("OMI-O23-medchain")
    conv = convert_message(sample("OMI-O23-medchain"))
    assert conv.mapping_id == "hl7v2-omi-o23/2"
    order, ipc = expected["orders"][0], expected["imaging"][0]
    request = one(conv, "ServiceRequest")
    assert_service_request(request, order, conv)
    assert request["occurrencePeriod"] == {"start": hl7_time(order["start"])}
    study = one(conv, "ImagingStudy")
    assert study["status"] == "registered"
    assert study["identifier"][0] == {
        "system": "urn:dicom:uid",
        "value": f"urn:oid:{ipc['study_instance_uid']}",
    }
    accession = study["identifier"][1]
    assert accession["type"]["coding"][0]["code"] == "ACSN"
    assert accession["value"] == ipc["accession_number"]
    assert accession["system"].endswith(ipc["accession_authority"])
    assert study["modality"] == [
        {"system": DCM, "code": ipc["modality"], "display": ipc["modality_text"]}
    ]
    assert study["basedOn"] == [{"reference": f"ServiceRequest/{request['id']}"}]
    assert study["subject"] == request["subject"]
    assert "started" not in study and "series" not in study  # nothing acquired yet


def test_omi_ipc_without_accession_or_study_uid_makes_no_imaging_study() -> None:
    raw = sample("OMI-O23-medchain")
    ipc = raw[raw.index(b"IPC|") :]
    bare = raw.replace(ipc, b"IPC|||||CT^Computed Tomography^DCM\r")
    conv = convert_message(bare)
    assert of_type(conv, "ImagingStudy") == []
    assert len(of_type(conv, "ServiceRequest")) == 1


@pytest.mark.parametrize(
    ("control", "status", "fhir_status"),
    [
        ("NW", "", "active"),
        ("CA", "", "revoked"),
        ("DC", "", "revoked"),
        ("HD", "", "on-hold"),
        ("SC", "CM", "completed"),
        ("XO", "IP", "active"),
    ],
)
def test_order_control_and_status_give_service_request_status(
    control: str, status: str, fhir_status: str
) -> None:
    raw = edit(sample("OMI-O23-medchain"), b"ORC|NW|", f"ORC|{control}|".encode())
    raw = edit(raw, b"|FIL-7730^RIS||SC|", f"|FIL-7730^RIS||{status}|".encode())
    assert one(convert_message(raw), "ServiceRequest")["status"] == fhir_status


def test_version_1_does_not_take_orders() -> None:
    with pytest.raises(MappingError, match="ORM\\^O01' is not supported"):
        convert_message(sample("ORM-O01-medchain"), version="1")


# ---- what the converter rejects -------------------------------------------------------

Corruption = Callable[[bytes], bytes]
REJECTED: list[tuple[str, str, Corruption, str, str]] = [
    (
        "bad birth date",
        "ORU-R01-RMGEAD",
        lambda raw: edit(raw, b"|19620320|", b"|19621320|"),
        "PID-7",
        "'19621320' is not a date",
    ),
    ("missing PID", "ORU-R01-RMGEAD", lambda raw: drop_segment(raw, b"PID"), "PID", "missing"),
    (
        "NM value abc",
        "LRI_2.0-NG_CBC_Typ_Message",
        lambda raw: edit(raw, b"||4.41|", b"||abc|"),
        "OBX[1]-5",
        "'abc' is not a number",
    ),
    (
        "SN value abc",
        "ORU-R01-RMGEAD",
        lambda raw: edit(raw, b"|^182|", b"|^abc|"),
        "OBX[1]-5",
        "'abc' is not a number",
    ),
    (
        "unsupported message type",
        "ADT01-23",
        lambda raw: edit(raw, b"|ADT^A01|", b"|ADT^A03|"),
        "MSH-9",
        "message type 'ADT^A03' is not supported; supported: ADT^A01, ADT^A04, ADT^A05,"
        " ADT^A08, ADT^A13, ADT^A14, ADT^A28, ADT^A31, ORU^R01, RDE^O11",
    ),
    (
        "message cut inside OBX",
        "ORU-R01-RMGEAD",
        lambda raw: raw[: raw.index(b"|mg/dl|")],
        "OBX[1]-11",
        "result status is empty",
    ),
    (
        "message cut before OBR",
        "LRI_2.0-NG_CBC_Typ_Message",
        lambda raw: raw[: raw.index(b"OBR|")],
        "OBR",
        "missing",
    ),
    (
        "OBX before any OBR",
        "ORU-R01-RMGEAD",
        lambda raw: drop_segment(raw, b"OBR"),
        "OBR",
        "OBX[1]",
    ),
    ("RDE without RXE", "RDE-O11-01", lambda raw: drop_segment(raw, b"RXE"), "RXE", "no RXE"),
    (
        "unknown sex code",
        "ORU-R01-RMGEAD",
        lambda raw: edit(raw, b"|19620320|F|", b"|19620320|X|"),
        "PID-8",
        "unknown sex code 'X'",
    ),
    (
        "unknown patient class",
        "ADT01-23",
        lambda raw: edit(raw, b"PV1|1|I|", b"PV1|1|Q|"),
        "PV1-2",
        "unknown patient class 'Q'",
    ),
    (
        "unknown abnormal flag",
        "ORU-R01-RMGEAD",
        lambda raw: edit(raw, b"|70_105|H|", b"|70_105|ZZ|"),
        "OBX[1]-8",
        "unknown abnormal flag 'ZZ'",
    ),
    (
        "unknown result status",
        "ORU-R01-RMGEAD",
        lambda raw: edit(raw, b"|H|||F", b"|H|||Q"),
        "OBX[1]-11",
        "unknown observation result status 'Q'",
    ),
    (
        "unsupported value type",
        "ORU-R01-RMGEAD",
        lambda raw: edit(raw, b"OBX|1|SN|", b"OBX|1|ED|"),
        "OBX[1]-2",
        "value type 'ED' is not supported",
    ),
    (
        "bad observation time",
        "LRI_2.0-NG_CBC_Typ_Message",
        lambda raw: raw.replace(b"|F|||20110103143428-0800|", b"|F|||20110132143428-0800|", 1),
        "OBX[1]-14",
        "is not a date/time",
    ),
    (
        "empty control id",
        "ORU-R01-RMGEAD",
        lambda raw: edit(raw, b"|CNTRL-3456|", b"||"),
        "MSH-10",
        "control id is empty",
    ),
    ("not HL7", "ORU-R01-RMGEAD", lambda raw: b"PID|||123\r", "MSH", "does not start with an MSH"),
    (
        "not UTF-8 and no MSH-18",
        "ORU-R01-RMGEAD",
        lambda raw: edit(raw, b"EVERYWOMAN", "EVERYWOMAN张".encode("gb18030")),
        "MSH-18",
        "is not UTF-8",
    ),
    (
        "unknown character set",
        "ORU-R01-RMGEAD",
        lambda raw: edit(raw, b"|P|2.4|", b"|P|2.4||||||EBCDIC"),
        "MSH-18",
        "unknown character set 'EBCDIC'",
    ),
    (
        "unknown order control",
        "ORM-O01-medchain",
        lambda raw: raw.replace(b"ORC|CA|", b"ORC|ZZ|"),
        "ORC[2]-1",
        "unknown order control 'ZZ'",
    ),
    (
        "unknown order status",
        "OMI-O23-medchain",
        lambda raw: edit(raw, b"|FIL-7730^RIS||SC|", b"|FIL-7730^RIS||XX|"),
        "ORC[1]-5",
        "unknown order status 'XX'",
    ),
    (
        "order without OBR",
        "ORM-O01-medchain",
        lambda raw: drop_segment(raw, b"OBR"),
        "OBR",
        "has no OBR segment",
    ),
    (
        "imaging order without IPC",
        "OMI-O23-medchain",
        lambda raw: drop_segment(raw, b"IPC"),
        "IPC",
        "has no IPC segment",
    ),
    (
        "study instance UID that is not a DICOM UID",
        "OMI-O23-medchain",
        lambda raw: edit(raw, b"|2.25.3298", b"|2.25.x3298"),
        "IPC[1]-3",
        "is not a DICOM UID",
    ),
    (
        "two patients",
        "ORU-R01-RMGEAD",
        lambda raw: raw + raw[raw.index(b"PID|") : raw.index(b"OBR|")],
        "PID",
        "one patient",
    ),
]


@pytest.mark.parametrize(
    ("sample_name", "corrupt", "where", "reason"),
    [case[1:] for case in REJECTED],
    ids=[case[0] for case in REJECTED],
)
def test_invalid_message_is_rejected_naming_the_field(
    sample_name: str, corrupt: Corruption, where: str, reason: str
) -> None:
    with pytest.raises(MappingError) as caught:
        convert_message(corrupt(sample(sample_name)))
    assert caught.value.where == where
    assert reason in caught.value.reason
    assert str(caught.value) == f"{caught.value.where}: {caught.value.reason}"


def test_bad_date_error_reads_as_place_and_reason() -> None:
    with pytest.raises(MappingError, match=r"^PID-7: '19621320' is not a date$"):
        convert_message(edit(sample("ORU-R01-RMGEAD"), b"|19620320|", b"|19621320|"))


# ---- values, times and encodings ------------------------------------------------------


MG_DL = {"unit": "mg/dl", "system": UCUM, "code": "mg/dl"}
PRECISION_2 = {
    "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/quantity-precision", "valueInteger": 2}
    ]
}


@pytest.mark.parametrize(
    ("sn", "expected"),
    [
        (b">^182", {"valueQuantity": {"value": 182, **MG_DL, "comparator": ">"}}),
        (
            b"<=^0.50",
            {"valueQuantity": {"value": 0.5, "_value": PRECISION_2, **MG_DL, "comparator": "<="}},
        ),
        (
            b"^10^-^20",
            {"valueRange": {"low": {"value": 10, **MG_DL}, "high": {"value": 20, **MG_DL}}},
        ),
        (b"^1^:^128", {"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 128}}}),
        (b"^2^+", {"valueString": "2+"}),
    ],
)
def test_structured_numeric_becomes_quantity_range_ratio_or_ordinal(
    sn: bytes, expected: dict[str, Any]
) -> None:
    raw = edit(sample("ORU-R01-RMGEAD"), b"|^182|", b"|" + sn + b"|")
    obs = one(convert_message(raw), "Observation")
    ((key, value),) = expected.items()
    assert obs[key] == value


@pytest.mark.parametrize(
    ("obx6", "expected"),
    [
        # true UCUM codes (https://ucum.org/ucum): tagged with system and code
        (b"mg/dl", MG_DL),
        (b"g/L", {"unit": "g/L", "system": UCUM, "code": "g/L"}),
        (b"g.l-1", {"unit": "g.l-1", "system": UCUM, "code": "g.l-1"}),
        (b"10*9/L", {"unit": "10*9/L", "system": UCUM, "code": "10*9/L"}),
        (b"umol/L", {"unit": "umol/L", "system": UCUM, "code": "umol/L"}),
        (b"[IU]/L", {"unit": "[IU]/L", "system": UCUM, "code": "[IU]/L"}),
        (b"mmol/L^^UCUM", {"unit": "mmol/L", "system": UCUM, "code": "mmol/L"}),
        (b"\xce\xbcmol/L", {"unit": "\u03bcmol/L", "system": UCUM, "code": "umol/L"}),
        # not UCUM: the text only, no system or code
        (b"g/l-1", {"unit": "g/l-1"}),  # parses, but means g.l: a mistyped g/l
        (b"mg/10*-3", {"unit": "mg/10*-3"}),
        (b"mg/hr", {"unit": "mg/hr"}),
        (b"mg/dl^^UCUM", MG_DL),
        (b"g/l-1^^UCUM", {"unit": "g/l-1"}),  # the sender's claim is not enough
        (b"per litre^^UCUM", {"unit": "per litre"}),
        (b"GPL", {"unit": "GPL"}),
    ],
)
def test_only_true_ucum_units_are_tagged_as_ucum(obx6: bytes, expected: dict[str, Any]) -> None:
    """Issue 15.5: version 2 tags a unit UCUM only when it is a true UCUM code."""
    raw = edit(sample("ORU-R01-RMGEAD"), b"|^182|mg/dl|", b"|^182|" + obx6 + b"|")
    quantity = one(convert_message(raw), "Observation")["valueQuantity"]
    assert {k: v for k, v in quantity.items() if k in ("unit", "system", "code")} == expected


def test_version_1_still_tags_what_it_tagged() -> None:
    raw = edit(sample("ORU-R01-RMGEAD"), b"|^182|mg/dl|", b"|^182|g/l-1|")
    quantity = one(convert_message(raw, version="1"), "Observation")["valueQuantity"]
    assert (quantity["system"], quantity["code"]) == (UCUM, "g/l-1")


def test_written_decimal_precision_is_kept() -> None:
    raw = edit(sample("LRI_2.0-NG_CBC_Typ_Message"), b"||10.5|%", b"||10.50|%")
    obs = of_type(convert_message(raw), "Observation")[8]
    assert obs["valueQuantity"]["value"] == 10.5
    precision = obs["valueQuantity"]["_value"]["extension"][0]
    assert precision == {
        "url": "http://hl7.org/fhir/StructureDefinition/quantity-precision",
        "valueInteger": 2,
    }


def test_time_without_offset_takes_the_senders_offset_from_msh7() -> None:
    raw = edit(sample("ORU-R01-RMGEAD"), b"|20020215073000+0600|", b"|200202150730|")
    report = one(convert_message(raw), "DiagnosticReport")
    assert report["effectiveDateTime"] == "2002-02-15T07:30:00+06:00"


def test_time_with_no_known_offset_keeps_the_date_and_the_original_text() -> None:
    raw = edit(sample("ORU-R01-RMGEAD"), b"|20020215093000+0600|", b"|20020215093000|")
    raw = edit(raw, b"|20020215073000+0600|", b"|200202150730|")
    report = one(convert_message(raw), "DiagnosticReport")
    assert report["effectiveDateTime"] == "2002-02-15"
    assert report["_effectiveDateTime"]["extension"][0]["valueString"] == "200202150730"


def test_gb18030_message_named_in_msh18_keeps_chinese_text() -> None:
    raw = edit(sample("ORU-R01-RMGEAD"), b"|P|2.4|", b"|P|2.4||||||GB 18030-2000")
    raw = edit(raw, b"EVERYWOMAN^EVE", "张^秀英".encode("gb18030"))
    raw = edit(raw, b"15545^GLUCOSE", "15545^血糖".encode("gb18030"))
    conv = convert_message(raw)
    assert conv.resources[0]["name"][0] == {
        "use": "official",
        "family": "张",
        "given": ["秀英", "E"],
    }
    assert one(conv, "DiagnosticReport")["code"]["coding"][0]["display"] == "血糖"
    assert conv.input == raw


def test_escaped_delimiters_are_unescaped() -> None:
    raw = edit(sample("ORU-R01-RMGEAD"), b"15545^GLUCOSE", b"15545^GLUCOSE \\T\\ FASTING")
    report = one(convert_message(raw), "DiagnosticReport")
    assert report["code"]["coding"][0]["display"] == "GLUCOSE & FASTING"


# ---- files with several messages ------------------------------------------------------


@pytest.mark.parametrize("line_end", [b"\r", b"\n", b"\r\n"])
def test_split_messages_finds_each_message_whatever_the_line_ends(line_end: bytes) -> None:
    originals = [sample(n) for n in SAMPLES]
    file = b"".join(m.replace(b"\r", line_end) for m in originals) + line_end
    messages = split_messages(file)
    assert len(messages) == len(SAMPLES)
    for original, message in zip(originals, messages, strict=True):
        assert message == original.replace(b"\r", line_end)
        assert convert_message(message).resources == convert_message(original).resources


def test_split_messages_drops_mllp_framing_and_rejects_leading_junk() -> None:
    raw = sample("ORU-R01-RMGEAD")
    assert split_messages(b"\x0b" + raw + b"\x1c\r") == [raw]
    with pytest.raises(MappingError) as caught:
        split_messages(b"garbage\r" + raw)
    assert caught.value.where == "line 1"
    with pytest.raises(MappingError):
        split_messages(b"no messages here\r")
