"""The patient's pages in a real browser and over HTTP: guardians (and a guardian acting
for their ward), erasure with the custodian's purge receipt verified, the studies the
patient joined, and their insurance claims, against a running solo node and hosp-a's
edge; and that a stranger and another patient see none of it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Page, expect
from support.browser import Portals, check, chromium
from support.consortium import DAY_MS, Consortium, running_consortium

from medchain import crypto
from medchain.contracts.claims import model as claims
from medchain.edge.receipts import check_purge_receipt, fetch_purge_receipt
from medchain.portal.app import PortalServer
from medchain.sdk.client import Client, ClientError

VISIT = "http://www.nhsa.gov.cn/service|110200001"  # an outpatient consultation
STUDY = "diabetes-outcomes"


@dataclass
class World:
    c: Consortium
    portals: Portals

    def page_of(self, who: str) -> Page:
        return self.portals.page_of(who)

    def server(self, who: str) -> PortalServer:
        return self.portals.servers[who]


def set_up_claims(c: Consortium) -> None:
    """An insurer with a plan the patient is enrolled in, a visit hosp-a claimed for
    30.00 yuan (20 % co-payment: 24.00 payable) and the insurer's payment of it."""
    c.keys["insurer"] = crypto.generate_keypair()
    c.ok(
        "root",
        "identity",
        "register_org",
        {
            "org_id": "pingan",
            "name": "Ping An",
            "org_type": "insurer",
            "admin_public_key": c.keys["insurer"].public,
        },
    )
    plan = {
        "plan_id": "basic-2027",
        "covered": [{"code": VISIT, "unit_cap_fen": 5_000}],
        "copay_bp": 2_000,
        "annual_limit_fen": 1_000_000,
    }
    c.ok("insurer", "claims", "set_plan", plan)
    c.ok("insurer", "claims", "enrol", {"plan_id": "basic-2027", "patient": c.did("patient")})
    claim = {
        "claim_id": "CLM-1",
        "patient": c.did("patient"),
        "plan_id": "basic-2027",
        "insurer": "pingan",
        "encounter_hash": claims.encounter_hash("hosp-a", "Encounter/v-1"),
        "items": [{"code": VISIT, "quantity": 1, "unit_price_fen": 3_000}],
        "claim_hash": crypto.sm3(b"the FHIR Claim hosp-a keeps"),
    }
    c.ok("doctor_a", "claims", "submit", claim)
    settle = {"claim_id": "CLM-1", "reference": "PAY-1", "amount_fen": 2_400}
    c.ok("insurer", "claims", "settle", settle)


def set_up_study(c: Consortium) -> None:
    """hosp-b sponsors an open study the patient joins by consent."""
    c.ok(
        "admin_b",
        "research",
        "create_study",
        {
            "study_id": STUDY,
            "title": "Diabetes outcomes",
            "protocol_hash": crypto.sm3(b"protocol"),
            "ethics_record_id": "report-1",
            "data_types": ["DiagnosticReport"],
            "features": ["age"],
            "hospitals": ["hosp-a", "hosp-b"],
            "rounds_planned": 1,
            "aggregation": "fedavg",
            "expires_ms": c.block_time_ms() + DAY_MS,
        },
    )
    c.grant(STUDY, ["DiagnosticReport"], ["HRESEARCH"], kind="study")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    run = running_consortium(tmp_path_factory.mktemp("portal-patient"))
    c = next(run)
    set_up_claims(c)
    set_up_study(c)
    c.keys["stranger"] = crypto.generate_keypair()  # a key the chain has never heard of
    c.keys["other"], _ = c.new_patient()
    with ExitStack() as stack:
        portals = Portals(stack.enter_context(chromium()))
        stack.callback(portals.stop)
        for who in ("patient", "parent", "stranger", "other"):
            portals.start(who, Client(c.node.url, key=c.keys[who]), c.keys[who])
        yield World(c, portals)
    next(run, None)


def signed_in(server: PortalServer) -> tuple[httpx.Client, str]:
    """An HTTP client holding a portal's session cookie, and its CSRF token."""
    http = httpx.Client(base_url=server.url, follow_redirects=True, timeout=30)
    assert http.get(server.launch_url).status_code == 200
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', http.get("/guardians").text)
    return http, token.group(1) if token else ""


def test_patient_names_a_guardian_erases_with_a_verified_receipt_and_leaves_a_study(
    world: World,
) -> None:
    c = world.c
    patient, parent = world.page_of("patient"), world.page_of("parent")

    # Guardians: the patient names their parent, who then manages consent for them.
    patient.goto("/guardians")
    expect(patient.locator("#no-guardians")).to_be_visible()
    patient.get_by_label("Guardian's DID").fill(c.did("parent"))
    patient.get_by_role("button", name="Name guardian").click()
    expect(patient.locator("#done")).to_contain_text("is your guardian from block")
    expect(patient.locator("#guardians")).to_contain_text(c.did("parent"))
    check(patient, "patient-guardians")

    parent.goto("/guardians")
    expect(parent.locator("#wards")).to_contain_text(c.did("patient"))
    parent.get_by_role("link", name=f"Manage consent {c.did('patient')}").click()
    expect(parent.locator("#ward")).to_have_text(c.did("patient"))
    parent.get_by_label("Grant to").select_option("did")
    parent.get_by_label("Who (DID, organisation id or role)").fill(c.did("doctor_a"))
    parent.get_by_label("Record types (comma separated)").fill("DiagnosticReport")
    parent.get_by_role("button", name="Grant", exact=True).click()
    expect(parent.locator("#done")).to_contain_text("Granted")
    check(parent, "patient-ward")
    granted = [g for g in c.node.grants(c.did("patient")) if g["grantee"] == c.did("doctor_a")]
    assert [g["granted_by"] for g in granted] == [c.did("parent")]  # signed by the guardian
    parent.get_by_role("button", name=f"Revoke {granted[0]['grant_id']}").click()
    expect(parent.locator("#done")).to_contain_text("Revoked")
    states = {g["grant_id"]: g["state"] for g in c.node.grants(c.did("patient"))}
    assert states[granted[0]["grant_id"]] == "revoked"

    # Erasure: the custodian's receipt, fetched and verified in the portal.
    patient.goto("/erasure")
    check(patient, "patient-erasure")
    row = patient.locator("#erasable tr", has_text="rx-1")
    row.get_by_label("Reason (optional)").fill("moved abroad")
    row.get_by_label("I understand this cannot be undone").check()
    row.get_by_role("button", name="Erase rx-1").click()
    expect(patient.locator("#done")).to_contain_text("Erased rx-1")
    expect(patient.locator("#verdict")).to_contain_text("Verified: signed by hosp-a")
    expect(patient.locator("#receipt")).to_contain_text("rx-1")
    check(patient, "patient-receipt")
    assert c.node.record("rx-1")["status"] == "erased"
    patient.goto("/erasure")
    patient.get_by_role("link", name="Purge receipt rx-1").click()
    expect(patient.locator("#verdict")).to_contain_text("Verified")

    # Research: the study the patient joined, with its title and status; leaving it
    # revokes the grant that joined it.
    patient.goto("/studies")
    studies = patient.locator("#studies")
    expect(studies).to_contain_text("Diabetes outcomes")
    expect(studies).to_contain_text("open")
    check(patient, "patient-studies")
    patient.get_by_role("button", name=f"Leave {STUDY}").click()
    expect(patient.locator("#done")).to_contain_text("Left")
    expect(studies).to_contain_text("(revoked)")
    expect(patient.get_by_role("button", name=f"Leave {STUDY}")).to_have_count(0)

    # Claims: the plan, the claim in yuan and its settlement.
    patient.goto("/claims")
    expect(patient.locator("#enrolments")).to_contain_text("basic-2027")
    claim_row = patient.locator("#claims tr", has_text="CLM-1")
    for text in ("complete", "30.00", "24.00", "paid", "hosp-a"):
        expect(claim_row).to_contain_text(text)
    expect(patient.locator("#settlements")).to_contain_text("PAY-1")
    expect(patient.locator("#settlements")).to_contain_text("24.00")
    check(patient, "patient-claims")

    # The same pages in Chinese.
    patient.goto("/lang/zh-CN?next=/guardians")
    expect(patient.get_by_role("heading", level=1)).to_have_text("监护人")
    check(patient, "patient-guardians-zh")
    patient.goto("/claims")
    expect(patient.get_by_role("heading", level=1)).to_have_text("医保理赔")
    patient.goto("/lang/en?next=/guardians")

    # The patient takes the guardianship back: the parent's ward page refuses.
    patient.get_by_role("button", name=f"Revoke {c.did('parent')}").click()
    expect(patient.locator("#no-guardians")).to_be_visible()
    parent.goto(f"/guardians/ward?patient={c.did('patient')}")
    expect(parent.locator("#refusal")).to_contain_text("NOT_GUARDIAN")
    parent.goto("/guardians")
    expect(parent.locator("#no-wards")).to_be_visible()


def test_a_stranger_and_another_patient_see_none_of_the_patients_pages(world: World) -> None:
    c = world.c
    # Make sure there is something to hide, whatever ran before.
    c.ok("patient", "consent", "delegate_guardian", {"guardian": c.did("parent")})
    secrets = (c.did("patient"), c.did("parent"), "CLM-1", "PAY-1", "basic-2027", STUDY)
    for who in ("stranger", "other"):
        http, _ = signed_in(world.server(who))
        for path in ("/guardians", "/studies", "/claims", "/erasure", "/records"):
            r = http.get(path)
            # the chain does not know the stranger's key: every page is its refusal
            assert r.status_code == (401 if who == "stranger" else 200), (who, path)
            assert not any(s in r.text for s in secrets), (who, path)
            assert "rx-1" not in r.text and "report-1" not in r.text, (who, path)
        ward = http.get("/guardians/ward", params={"patient": c.did("patient")})
        refused = 401 if who == "stranger" else 403  # unknown key / not a guardian
        assert ward.status_code == refused and not any(s in ward.text for s in secrets)
        receipt = http.get("/erasure/receipt", params={"record": "rx-1"})
        assert receipt.status_code == (401 if who == "stranger" else 404), receipt.text
        assert "Purge receipt" not in receipt.text and c.did("patient") not in receipt.text
    # The node's reads behind the pages, signed by them directly: another patient gets
    # the answer a patient without guardians gets and a 403 for anyone's wards; the
    # stranger's unknown key is refused before any of it.
    other = Client(c.node.url, key=c.keys["other"])
    assert other.get(f"/v1/patients/{c.did('patient')}/guardians") == []
    stranger = Client(c.node.url, key=c.keys["stranger"])
    for node, status in ((other, 403), (stranger, 401)):
        for did in (c.did("parent"), c.did("patient")):
            with pytest.raises(ClientError) as refused:
                node.get(f"/v1/members/{did}/wards")
            assert refused.value.status == status
    # The guardian sees the patient's guardians; the patient cannot list the parent's wards.
    as_parent = Client(c.node.url, key=c.keys["parent"])
    assert [g["guardian"] for g in as_parent.get(f"/v1/patients/{c.did('patient')}/guardians")] == [
        c.did("parent")
    ]
    with pytest.raises(ClientError):
        Client(c.node.url, key=c.keys["patient"]).get(f"/v1/members/{c.did('parent')}/wards")


def test_an_erase_form_without_the_sessions_token_signs_nothing(world: World) -> None:
    http, token = signed_in(world.server("patient"))
    assert token
    form = {"record_id": "report-1", "confirm": "yes"}
    assert http.post("/erasure/erase", data=form).status_code == 403
    assert http.post("/erasure/erase", data=form | {"csrf": "0" * 64}).status_code == 403
    unconfirmed = http.post("/erasure/erase", data={"record_id": "report-1", "csrf": token})
    assert unconfirmed.status_code == 400
    assert world.c.node.record("report-1")["status"] == "active"


def test_a_tampered_purge_receipt_is_not_verified(world: World) -> None:
    c = world.c
    if c.node.record("rx-1")["status"] != "erased":
        c.ok("patient", "records", "erase", {"record_id": "rx-1"})
    patient = Client(c.node.url, key=c.keys["patient"])
    receipt = fetch_purge_receipt(patient, "rx-1")
    assert check_purge_receipt(patient, "rx-1", receipt).verified
    tampered = receipt | {"body": receipt["body"] | {"cid": "b" + "a" * 58}}
    assert set(check_purge_receipt(patient, "rx-1", tampered).problems) == {"signature", "cid"}
    # rx-1's genuine receipt offered for another record of the patient's
    assert {"record", "not_erased"} <= set(
        check_purge_receipt(patient, "report-1", receipt).problems
    )
