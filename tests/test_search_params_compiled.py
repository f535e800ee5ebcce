"""The search index's compiled path walker gives exactly what fhirpathpy gives.

An import extracts every search parameter's values from every resource; plain
path expressions are walked directly (fhir/search_params.py `_path_walker`)
instead of by fhirpathpy. Here both evaluate every served type's parameters on
every FHIR resource under tests/data (Synthea bundles, specification examples,
nested bundle entries) and on resources written to reach the corners: choice
types, `ofType`/`as`, primitive extensions (`_birthDate`), nulls in arrays,
backbone elements, references filtered by `resolve() is`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from support.ledger import DATA

from medchain.fhir.search_params import SERVED_TYPES, index_values, params_of

CORNERS: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "active": True,
        "birthDate": "1970-03-04",
        "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "x"}]},
        "name": [{"family": "Chén", "given": ["Li", None], "_given": [None, {"id": "g2"}]}],
        "gender": "female",
        "generalPractitioner": [{"reference": "Practitioner/p1"}, {"reference": "#c1"}],
    },
    {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Group/g1"},
        "effectivePeriod": {"start": "2020-01-01T10:00:00+08:00"},
        "valueQuantity": {"value": 0.1, "unit": "mmHg", "system": "http://unitsofmeasure.org"},
        "component": [
            {"code": {"text": "a"}, "valueQuantity": {"value": 12, "code": "mm[Hg]"}},
            {"code": {"text": "b"}, "valueCodeableConcept": {"coding": [{"code": "x"}]}},
            {"code": {"text": "c"}, "valueString": "not a quantity"},
        ],
    },
    {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "t"},
        "subject": {"reference": "Patient/p9"},
        "effectiveDateTime": "2021-05",
        "valueCodeableConcept": {"coding": [{"system": "s", "code": "pos"}]},
    },
    {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p9", "type": "Patient"},
        "onsetAge": {"value": 40, "unit": "a"},
        "abatementPeriod": {"start": "2019", "end": "2020-02"},
        "recordedDate": "2019-01-01",
    },
    {
        "resourceType": "Condition",
        "subject": {"reference": "urn:uuid:1234", "type": "Patient"},
        "onsetDateTime": "2018-07-01T00:00:00Z",
        "abatementString": "in spring",
    },
    {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "subject": {"reference": "Patient/p9"},
        "startDate": "2020-01-01",
        "target": [{"dueDate": "2020-06-01"}, {"dueDuration": {"value": 3}}, {"dueDate": "2021"}],
    },
    {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p9"},
        "medicationCodeableConcept": {"coding": [{"system": "rx", "code": "123"}]},
        "dosageInstruction": [{"timing": {"event": ["2020-01-01", "2020-01-02T08:00:00Z"]}}],
    },
    {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}},
    {"resourceType": "Observation", "status": "final", "code": {}, "valueQuantity": None},
]


def fhir_resources() -> Iterator[dict[str, Any]]:
    """Every resource (nested ones too) of every JSON file under tests/data."""
    for path in sorted(DATA.rglob("*.json")):
        try:
            stack: list[Any] = [json.loads(path.read_bytes())]
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if isinstance(node.get("resourceType"), str):
                    yield node
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)


def as_fhirpathpy_returns(value: Any) -> Any:
    """fhirpathpy's output form: decimals for floats, copies without extension-only
    objects in lists."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: as_fhirpathpy_returns(v) for k, v in value.items()}
    if isinstance(value, list):
        return [
            as_fhirpathpy_returns(v)
            for v in value
            if not (isinstance(v, dict) and list(v) == ["extension"])
        ]
    return value


SERVED = [r for r in fhir_resources() if r["resourceType"] in SERVED_TYPES]


def test_the_data_reaches_every_served_type_it_holds() -> None:
    kinds = {r["resourceType"] for r in SERVED}
    assert len(SERVED) >= 250
    assert {"Patient", "Observation", "Condition", "Encounter", "MedicationRequest"} <= kinds


@pytest.mark.parametrize("resource", SERVED + CORNERS, ids=lambda r: r["resourceType"])
def test_compiled_extraction_equals_fhirpathpy(resource: dict[str, Any]) -> None:
    direct = params_of(resource["resourceType"])
    by_fhirpathpy = params_of(resource["resourceType"], direct=False)
    assert direct.keys() == by_fhirpathpy.keys()
    for code, param in direct.items():
        walked = as_fhirpathpy_returns(param.evaluate(resource))
        assert walked == by_fhirpathpy[code].evaluate(resource), code
    assert index_values(resource) == index_values(resource, direct=False)


def test_the_corners_are_reached() -> None:
    """The handwritten resources exercise what they are there for (a walker that
    skipped choices, ofType or backbone elements would index none of these)."""
    patient, obs, _, onset, _, goal, request, _, _ = (index_values(r) for r in CORNERS)
    assert {(v.param, v.value) for v in patient} >= {("family", "chen"), ("given", "li")}
    assert ("birthdate", "") in {(v.param, v.value) for v in patient}
    assert {"component-value-quantity", "value-quantity", "date"} <= {v.param for v in obs}
    assert "subject" in {v.param for v in obs} and "patient" not in {v.param for v in obs}
    assert {"onset-date", "abatement-date", "patient"} - {v.param for v in onset} == {"onset-date"}
    assert len([v for v in goal if v.param == "target-date"]) == 2
    assert "date" in {v.param for v in request}
