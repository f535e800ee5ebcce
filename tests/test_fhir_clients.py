"""Standard FHIR clients against a running edge with SMART tokens (issue 15.1).

The pinned `fhirclient` (SMART on FHIR's Python client) does SMART Backend
Services itself: it reads the token endpoint from the CapabilityStatement's
oauth-uris, posts our SM2SM3-signed assertion (its `jwt_token` setting) and sends
the token. `fhirpy` gets the token from medchain.sdk.smart and sends it. Both
read metadata, read a resource, search and follow every `next` page, and get
OperationOutcomes for errors, over real HTTP against the edge's uvicorn server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from fhirclient import client as smart_client
from fhirclient.models.diagnosticreport import DiagnosticReport
from fhirclient.models.observation import Observation
from fhirclient.server import FHIRNotFoundException, FHIRUnauthorizedException
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, ForbiddenError, ResourceNotFound
from support.consortium import Consortium, running_consortium
from support.ledger import CHAIN_ID, DATA

from medchain.sdk.smart import (
    SmartAuth,
    backend_form,
    client_assertion,
    request_token,
)

WEIGHT = (DATA / "fhir" / "spec-examples" / "Observation-example.json").read_bytes()
OBSERVATIONS = [f"obs-{i}" for i in range(5)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    for world in running_consortium(tmp_path):
        for record_id in OBSERVATIONS:
            r = world.upload("admin_a", WEIGHT, world.did("patient"), record_id=record_id)
            assert r.status_code == 201, r.text
        world.grant("doctor_b", ["DiagnosticReport", "Observation"])
        yield world


def token_url(world: Consortium) -> str:
    return world.edge_url + "/auth/token"


def assertion(world: Consortium, who: str = "doctor_b") -> str:
    return client_assertion(world.keys[who], world.did(who), token_url(world), CHAIN_ID, "hosp-a")


def test_fhirclient_does_backend_services_reads_searches_every_page_and_errors(
    world: Consortium,
) -> None:
    settings = {
        "app_id": world.did("doctor_b"),
        "api_base": world.edge_url + "/fhir/",
        "jwt_token": assertion(world),
        "scope": "system/*.read",
    }
    smart = smart_client.FHIRClient(settings=settings, save_func=lambda state: None)
    assert smart.prepare() is False  # metadata read; no token yet
    security = smart.server.capabilityStatement.rest[0].security
    assert security.service[0].coding[0].code == "SMART-on-FHIR"
    smart.authorize()  # client_credentials with our SM2SM3 assertion
    assert smart.ready and smart.server.auth.access_token
    report = DiagnosticReport.read("report-1", smart.server)
    assert report.id == "report-1" and report.status == "final"
    search = Observation.where(struct={"patient": world.did("patient"), "_count": "2"})
    pages = list(search.perform_iter(smart.server))
    assert len(pages) == 3  # 2 + 2 + 1: every page followed by its next link
    ids = [
        e.resource.id
        for page in pages
        for e in page.entry or []
        if e.resource.resource_type == "Observation"
    ]
    assert sorted(ids) == OBSERVATIONS
    with pytest.raises(FHIRNotFoundException) as missing:
        DiagnosticReport.read("no-such-report", smart.server)
    outcome = missing.value.response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "not-found"
    smart.server.auth.access_token = "forged"
    with pytest.raises(FHIRUnauthorizedException) as unauthorized:
        DiagnosticReport.read("report-1", smart.server)
    assert 'error="invalid_token"' in unauthorized.value.response.headers["WWW-Authenticate"]
    assert unauthorized.value.response.json()["resourceType"] == "OperationOutcome"


class BearerFromSdk(requests.auth.AuthBase):
    """requests auth that sends the token medchain.sdk.smart.SmartAuth holds."""

    def __init__(self, auth: SmartAuth) -> None:
        self.auth = auth

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.auth.access_token()}"
        return r


def test_fhirpy_reads_searches_every_page_and_gets_operation_outcomes(
    world: Consortium,
) -> None:
    token = request_token(token_url(world), backend_form(assertion(world), "system/*.rs"))
    client = SyncFHIRClient(
        world.edge_url + "/fhir", authorization=f"Bearer {token['access_token']}"
    )
    metadata = client.execute("metadata", method="get")
    assert metadata["resourceType"] == "CapabilityStatement"
    report = client.reference("DiagnosticReport", "report-1").to_resource()
    assert report["id"] == "report-1" and report["resourceType"] == "DiagnosticReport"
    observations = (
        client.resources("Observation").search(patient=world.did("patient")).limit(2).fetch_all()
    )
    assert sorted(o["id"] for o in observations) == OBSERVATIONS
    with pytest.raises(ResourceNotFound) as missing:
        client.reference("Observation", "no-such-observation").to_resource()
    assert json.loads(str(missing.value))["resourceType"] == "OperationOutcome"
    # A token (from the SDK's challenge flow) scoped narrower than the consent.
    auth = SmartAuth(
        world.keys["doctor_b"],
        world.did("doctor_b"),
        world.edge_url,
        "user/DiagnosticReport.rs",
        flow="challenge",
        custodian="hosp-a",
        chain_id=CHAIN_ID,
    )
    narrow = SyncFHIRClient(world.edge_url + "/fhir", requests_config={"auth": BearerFromSdk(auth)})
    assert narrow.reference("DiagnosticReport", "report-1").to_resource()["id"] == "report-1"
    with pytest.raises(ForbiddenError) as forbidden:
        narrow.resources("Observation").search(patient=world.did("patient")).fetch_all()
    assert json.loads(str(forbidden.value))["issue"][0]["code"] == "forbidden"
    unauthenticated = SyncFHIRClient(world.edge_url + "/fhir")
    with pytest.raises(AuthorizationError) as refused:
        unauthenticated.reference("DiagnosticReport", "report-1").to_resource()
    assert json.loads(str(refused.value))["resourceType"] == "OperationOutcome"
