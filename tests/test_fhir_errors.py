"""Every error of the edge's FHIR API is an OperationOutcome (application/fhir+json):
the routes' own refusals, FastAPI's (unknown path, 405, request validation), the
limits' (413, 429) and a fault (500); `_format` and Accept are honoured for JSON and
refused with 406 otherwise; the FHIR validator's (path, message) problems become one
issue each, on REST as `error.issues`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from support.consortium import Consortium, running_consortium
from support.ledger import CHAIN_ID

from medchain.edge.http.app import create_edge_app
from medchain.edge.http.errors import FhirErrors, operation_outcome
from medchain.gateway.limits import Limits
from medchain.sdk.signing import send_signed

FHIR_JSON = "application/fhir+json"
BAD_OBSERVATION = {
    "resourceType": "Observation",
    "status": "FINAL",
    "code": {"text": "glucose"},
    "valueQuantity": {"value": "6.3"},
    "category": {"text": "laboratory"},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path_factory.mktemp("fhir-errors"))


def get(
    world: Consortium, path: str, headers: dict[str, str] | None = None, **params: str
) -> httpx.Response:
    return send_signed(
        world.keys["doctor_a"], CHAIN_ID, "GET", world.edge_url, path, params, headers=headers
    )


def outcome_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON), r.headers
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"] and all(i["severity"] == "error" for i in body["issue"])
    return body


def test_routes_and_framework_errors_are_operation_outcomes(world: Consortium) -> None:
    url = world.edge_url
    # 401: unsigned; 403: not the patient; 404: a type not served and a path unknown
    outcome_of(httpx.get(f"{url}/fhir/Observation"), 401)
    r = get(world, "/fhir/Consent", patient=world.did("patient"))
    assert outcome_of(r, 403)["issue"][0]["code"] == "forbidden"
    assert outcome_of(get(world, "/fhir/Spaceship"), 404)["issue"][0]["code"] == "not-found"
    assert outcome_of(httpx.get(f"{url}/fhir/Observation/a/b/c"), 404)
    # 405: the FHIR API is read-only; the Allow header is kept
    r = httpx.post(f"{url}/fhir/Observation", json={"resourceType": "Observation"})
    body = outcome_of(r, 405)
    assert body["issue"][0]["code"] == "not-supported"
    assert "GET" in r.headers.get("allow", "")
    # request validation (FastAPI's 422): names the parameter at fault
    body = outcome_of(get(world, "/fhir/Observation", _count="0"), 422)
    assert "_count" in body["issue"][0]["diagnostics"], body
    # the REST routes keep their own error body
    r = httpx.get(f"{url}/edge/v1/no-such-route")
    assert r.status_code == 404 and not r.headers["content-type"].startswith(FHIR_JSON)


def test_formats_json_is_served_anything_else_is_406(world: Consortium) -> None:
    url = world.edge_url
    meta = httpx.get(f"{url}/fhir/metadata").json()
    assert meta["format"] == ["json"]
    for fmt in ("json", "application/json", FHIR_JSON):
        r = httpx.get(f"{url}/fhir/metadata", params={"_format": fmt})
        assert r.status_code == 200 and r.json()["resourceType"] == "CapabilityStatement"
    for accept in (
        "*/*",
        "application/json",
        FHIR_JSON,
        f"{FHIR_JSON}; fhirVersion=4.0",
        "text/html, application/fhir+json;q=0.9",
    ):
        r = httpx.get(f"{url}/fhir/metadata", headers={"Accept": accept})
        assert r.status_code == 200, (accept, r.text)
    for params, headers in (
        ({"_format": "xml"}, {}),
        ({"_format": "application/fhir+xml"}, {}),
        ({"_format": "xml"}, {"Accept": FHIR_JSON}),  # _format wins over Accept
        ({}, {"Accept": "application/fhir+xml"}),
        ({}, {"Accept": "text/html"}),
        ({}, {"Accept": f"{FHIR_JSON}; fhirVersion=3.0"}),
    ):
        r = httpx.get(f"{url}/fhir/metadata", params=params, headers=headers)
        body = outcome_of(r, 406)
        assert body["issue"][0]["code"] == "not-supported"
        assert "json" in body["issue"][0]["details"]["text"]
    # a signed read honours _format too (it is part of the signed query)
    r = get(world, f"/fhir/Patient/{world.did('patient')}", _format="xml")
    outcome_of(r, 406)
    r = get(world, "/fhir/Observation", _format="json", patient=world.did("patient"))
    assert r.status_code == 200, r.text


def test_validator_problems_are_issues_on_rest_and_fhir(world: Consortium) -> None:
    content = json.dumps(BAD_OBSERVATION).encode()
    r = world.upload("admin_a", content, world.did("patient"), record_id="obs-bad")
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "INVALID_RECORD" and "FINAL" in error["message"]
    paths = {i["path"]: i["message"] for i in error["issues"]}
    assert "not a code of the required value set" in paths["Observation.status"]
    assert "Observation.valueQuantity.value" in paths
    # the same problems as an OperationOutcome, one issue each with its FHIRPath
    body = operation_outcome(422, error["message"], error["hint"], list(paths.items()))
    by_path = {i["expression"][0]: i for i in body["issue"][1:]}
    assert by_path["Observation.status"]["code"] == "code-invalid"
    assert by_path["Observation.valueQuantity.value"]["code"] == "value"
    assert by_path["Observation.category"]["code"] == "structure"
    from fhir.resources.R4B.operationoutcome import OperationOutcome

    OperationOutcome.model_validate(body)


def test_limits_and_faults_are_operation_outcomes(world: Consortium) -> None:
    # 429 from the limits (outside the app) and 413 for a body past the default cap
    app = create_edge_app(world.edge, Limits(rate=0.001, burst=1))
    with TestClient(app) as client:
        assert client.get("/fhir/metadata").status_code == 200
        r = client.get("/fhir/metadata")
        assert r.status_code == 429 and r.headers["content-type"].startswith(FHIR_JSON)
        assert r.json()["issue"][0]["code"] == "throttled" and "retry-after" in r.headers
    with TestClient(create_edge_app(world.edge)) as client:
        r = client.post("/fhir/Observation", content=b"x" * (2 * 1024 * 1024))
        assert r.status_code == 413 and r.json()["issue"][0]["code"] == "too-long", r.text

    # 500: a fault no real part produces on demand, injected behind the middleware
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("injected fault")

    r = TestClient(FhirErrors(broken), raise_server_exceptions=False).get("/fhir/metadata")
    assert r.status_code == 500 and r.headers["content-type"].startswith(FHIR_JSON)
    assert r.json()["issue"][0]["code"] == "exception"
    assert "injected" not in r.text  # no internals leak
