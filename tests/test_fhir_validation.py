"""Strict FHIR JSON at the validation boundary: wrong JSON types and codes outside a
required value set are refused with the element's path; real resources still pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medchain.fhir.bindings import REQUIRED_BINDINGS
from medchain.fhir.conversion import MappingError, validated
from medchain.fhir.strict import check_resource, resolved_bindings
from medchain.fhir.validate import InvalidFhir, parse_resource, validate_resource

DATA = Path(__file__).parent / "data" / "fhir"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"


def observation(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "t"}, **fields}


def patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **fields}


# (resource, path named in the refusal, what the message says)
REFUSED: list[tuple[dict[str, Any], str, str]] = [
    # wrong JSON types
    (
        observation(valueQuantity={"value": "36.5"}),
        "Observation.valueQuantity.value",
        "expected a JSON number, got a string",
    ),
    (
        patient(active="yes"),
        "Patient.active",
        "expected a JSON boolean (true or false), got a string",
    ),
    (patient(active=1), "Patient.active", "got a number"),
    (
        patient(multipleBirthInteger="2"),
        "Patient.multipleBirthInteger",
        "expected a JSON number without a fraction, got a string",
    ),
    (patient(multipleBirthInteger=2.5), "Patient.multipleBirthInteger", "without a fraction"),
    (patient(multipleBirthBoolean="false"), "Patient.multipleBirthBoolean", "JSON boolean"),
    (observation(valueInteger=True), "Observation.valueInteger", "got a boolean"),
    (
        observation(valueQuantity={"value": True}),
        "Observation.valueQuantity.value",
        "got a boolean",
    ),
    (
        observation(valueString=42),
        "Observation.valueString",
        "expected a JSON string, got a number",
    ),
    (
        observation(code={"coding": [{"system": "http://loinc.org", "code": 8310}]}),
        "Observation.code.coding[0].code",
        "expected a JSON string, got a number",
    ),
    (patient(birthDate=19740612), "Patient.birthDate", "expected a JSON string, got a number"),
    (patient(birthDate="1974-13-12"), "Patient.birthDate", "'1974-13-12' is not a FHIR date"),
    (
        observation(effectiveDateTime="2020-01-01T10:00:00"),
        "Observation.effectiveDateTime",
        "is not a FHIR dateTime",
    ),  # a time needs a zone
    (observation(issued="2020-01-01"), "Observation.issued", "is not a FHIR instant"),
    (
        observation(category={"text": "vital"}),
        "Observation.category",
        "expected a JSON array, got an object",
    ),
    (
        observation(subject=[{"reference": "Patient/p"}]),
        "Observation.subject",
        "expected a single value, got a JSON array",
    ),
    (
        observation(valueQuantity="36.5 Cel"),
        "Observation.valueQuantity",
        "expected a JSON object, got a string",
    ),
    (
        observation(component=[{"code": {"text": "c"}, "valueQuantity": {"value": "1"}}]),
        "Observation.component[0].valueQuantity.value",
        "expected a JSON number",
    ),
    (patient(name=[{"given": ["Ann", 7]}]), "Patient.name[0].given[1]", "expected a JSON string"),
    (
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": observation(valueQuantity={"value": "1"})}],
        },
        "Bundle.entry[0].resource.valueQuantity.value",
        "expected a JSON number",
    ),
    # codes outside a required value set (case-sensitive)
    (
        observation(status="FINAL"),
        "Observation.status",
        "'FINAL' is not a code of the required value set "
        "http://hl7.org/fhir/ValueSet/observation-status",
    ),
    (patient(gender="M"), "Patient.gender", "ValueSet/administrative-gender"),
    (patient(name=[{"use": "Official", "family": "X"}]), "Patient.name[0].use", "name-use"),
    (
        observation(valueQuantity={"value": 1, "comparator": "=<"}),
        "Observation.valueQuantity.comparator",
        "quantity-comparator",
    ),
    (
        {"resourceType": "DiagnosticReport", "status": "done", "code": {"text": "x"}},
        "DiagnosticReport.status",
        "diagnostic-report-status",
    ),
    (
        {"resourceType": "Encounter", "status": "complete", "class": {"code": "AMB"}},
        "Encounter.status",
        "encounter-status",
    ),
    (
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "Order",
            "subject": {"reference": "Patient/p"},
            "medicationCodeableConcept": {"text": "m"},
        },
        "MedicationRequest.intent",
        "medicationrequest-intent",
    ),
    (
        {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/p"},
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "Active"}]},
        },
        "Condition.clinicalStatus",
        "'Active' is not a code of the required value set",
    ),
    (
        {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/p"},
            "clinicalStatus": {"text": "active"},
        },
        "Condition.clinicalStatus",
        f"needs a coding from {CONDITION_CLINICAL}",
    ),
    (
        {
            "resourceType": "AllergyIntolerance",
            "patient": {"reference": "Patient/p"},
            "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": "gone"}]},
        },
        "AllergyIntolerance.clinicalStatus",
        "allergyintolerance-clinical",
    ),
    (
        {
            "resourceType": "Immunization",
            "status": "given",
            "vaccineCode": {"text": "v"},
            "patient": {"reference": "Patient/p"},
            "occurrenceDateTime": "2020-01-01",
        },
        "Immunization.status",
        "immunization-status",
    ),
    (
        {"resourceType": "Procedure", "status": "done", "subject": {"reference": "Patient/p"}},
        "Procedure.status",
        "event-status",
    ),
]


@pytest.mark.parametrize(("resource", "path", "message"), REFUSED)
def test_wrong_json_types_and_codes_are_refused_naming_the_element(
    resource: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(InvalidFhir) as caught:
        validate_resource(resource)
    assert [p for p, _ in caught.value.issues] == [path]
    assert message in caught.value.issues[0][1]
    assert f"{path}: " in str(caught.value)


def test_a_refusal_from_raw_bytes_reads_as_an_operation_outcome_diagnostic() -> None:
    raw = json.dumps(observation(valueQuantity={"value": "36.5"}, status="FINAL")).encode()
    with pytest.raises(InvalidFhir) as caught:
        parse_resource(raw, "obs-1")
    assert str(caught.value) == (
        "Observation is not valid FHIR R4: Observation.status: 'FINAL' is not a code of the "
        "required value set http://hl7.org/fhir/ValueSet/observation-status; "
        "Observation.valueQuantity.value: expected a JSON number, got a string"
    )


def test_converter_output_is_held_to_the_same_rules() -> None:
    with pytest.raises(MappingError) as caught:
        validated(observation(valueQuantity={"value": "36.5"}))
    assert caught.value.where == "Observation.valueQuantity.value"


def real_resources() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(DATA.glob("*/*.json")):
        resource = json.loads(path.read_bytes())
        found.append((path.name, resource))
        for i, entry in enumerate(resource.get("entry", [])):
            if "resource" in entry:
                found.append((f"{path.name}#{i}", entry["resource"]))
    return found


def test_every_spec_example_and_synthea_resource_still_validates() -> None:
    resources = real_resources()
    assert len(resources) > 290  # 11 spec examples, 4 Synthea bundles and their entries
    for name, resource in resources:
        assert check_resource(resource) == [], name
        validate_resource(resource)


def test_valid_values_of_every_primitive_kind_pass() -> None:
    ok = observation(
        valueQuantity={"value": 36, "comparator": "<", "unit": "Cel"},
        effectiveDateTime="2020-01-01T10:00:00.5+08:00",
        issued="2020-01-01T02:00:00Z",
        category=[{"coding": [{"code": "vital-signs"}]}],
    )
    assert check_resource(ok) == []
    assert check_resource(patient(active=False, birthDate="1974", multipleBirthInteger=2)) == []


def test_every_required_binding_names_a_model_element_and_a_spec_value_set() -> None:
    assert len(resolved_bindings()) == len(REQUIRED_BINDINGS)
    for value_set in REQUIRED_BINDINGS.values():
        assert value_set.url.startswith("http://hl7.org/fhir/ValueSet/")
        assert value_set.page.startswith("http://hl7.org/fhir/R4/valueset-")
        assert value_set.codes
