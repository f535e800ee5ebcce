"""The portal in a real browser: Playwright drives Debian's Chromium (never a browser
Playwright downloads) through each role's pages against a running solo node and a
custodian edge, runs axe-core on every page, and saves a screenshot of each under
test-artifacts/portal/ (gitignored; MEDCHAIN_TEST_ARTIFACTS moves it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect
from support.browser import Portals, check, chromium
from support.consortium import SPEC, Consortium, running_consortium
from support.ledger import CHAIN_ID
from support.regulator import Regulator, regulator_chain

from medchain import crypto
from medchain.network.relay import Relay
from medchain.sdk.client import Client

OBSERVATION = (SPEC / "Observation-f001.json").read_bytes()


@dataclass
class World:
    consortium: Consortium
    regulator: Regulator
    portals: Portals

    def page_of(self, who: str) -> Page:
        """A fresh browser context signed in to `who`'s portal through its launch link."""
        return self.portals.page_of(who)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    consortium_run = running_consortium(tmp_path_factory.mktemp("portal"))
    c = next(consortium_run)
    r = c.upload("admin_a", OBSERVATION, patient=c.did("patient"), record_id="obs-1")
    assert r.status_code == 201, r.text
    c.keys["stranger"] = crypto.generate_keypair()  # a key the chain has never heard of
    with ExitStack() as stack:
        portals = Portals(stack.enter_context(chromium()))
        stack.callback(portals.stop)
        for who in ("patient", "doctor_b", "admin_a", "stranger"):
            portals.start(who, Client(c.node.url, key=c.keys[who]), c.keys[who])
        # The regulator's chain, fed by a relay signing as hosp-a's admin (an operator of
        # the business node); its inspector gets a portal of their own on that chain.
        db = tmp_path_factory.mktemp("regulator") / "regulator.db"
        reg = stack.enter_context(regulator_chain(db, c.keys["admin_a"], CHAIN_ID))
        portals.start("regulator", Client(reg.client.url, key=reg.inspector), reg.inspector)
        yield World(c, reg, portals)
    next(consortium_run, None)


def test_patient_grants_doctor_reads_then_revocation_shows_the_refusal(world: World) -> None:
    c = world.consortium
    patient, doctor = world.page_of("patient"), world.page_of("doctor_b")

    patient.goto("/records")
    table = patient.locator("#records")
    for record_id in ("obs-1", "rx-1", "report-1"):
        expect(table).to_contain_text(record_id)
    expect(table).to_contain_text("hosp-a")
    expect(table).to_contain_text("Observation")
    check(patient, "patient-records")

    # Before any grant the doctor of the other hospital finds nothing.
    doctor.goto(f"/clinician?patient={c.did('patient')}")
    expect(doctor.locator("#none")).to_be_visible()

    patient.goto("/consent")
    patient.get_by_label("Grant to").select_option("did")
    patient.get_by_label("Who (DID, organisation id or role)").fill(c.did("doctor_b"))
    patient.get_by_label("Record types (comma separated)").fill("Observation, MedicationRequest")
    patient.get_by_role("button", name="Grant", exact=True).click()
    expect(patient.locator("#done")).to_contain_text("Granted")
    expect(patient.locator("#grants")).to_contain_text(c.did("doctor_b"))
    check(patient, "patient-consent-granted")

    doctor.goto(f"/clinician?patient={c.did('patient')}")
    expect(doctor.locator("#records")).to_contain_text("obs-1")
    expect(doctor.locator("#records")).not_to_contain_text("report-1")  # not in the grant
    check(doctor, "clinician-records")
    doctor.get_by_role("button", name="Request and read obs-1").click()
    resource = doctor.locator("#resource")
    expect(resource).to_contain_text("6.3 mmol/l")
    expect(resource).to_contain_text("3.1 – 6.2 mmol/l")
    expect(doctor.get_by_role("heading", level=1)).to_contain_text("Glucose")
    check(doctor, "clinician-observation")

    doctor.goto(f"/clinician?patient={c.did('patient')}")
    doctor.get_by_role("button", name="Request and read rx-1").click()
    expect(doctor.get_by_role("heading", level=1)).to_contain_text("Prescription")
    expect(doctor.locator("#resource")).to_contain_text("Azithromycin")
    expect(doctor.locator("#resource")).to_contain_text("6 TAB")
    check(doctor, "clinician-prescription")

    patient.goto("/consent")
    grant_id = patient.locator("#grants tbody tr td").first.inner_text()
    patient.get_by_role("button", name=f"Revoke {grant_id}").click()
    expect(patient.locator("#done")).to_contain_text(f"Revoked {grant_id}")
    check(patient, "patient-consent-revoked")

    doctor.goto("/clinician")
    doctor.get_by_label("Record", exact=True).fill("obs-1")
    doctor.get_by_role("button", name="Request and read").click()
    refusal = doctor.locator("#refusal")
    expect(refusal).to_be_visible()
    expect(doctor.locator("#resource")).to_have_count(0)
    check(doctor, "clinician-refused")

    patient.goto("/timeline")
    refused_rows = patient.locator("#timeline tr.refused")
    expect(refused_rows.first).to_contain_text("Refused")
    expect(refused_rows.first).to_contain_text(c.did("doctor_b"))
    check(patient, "patient-timeline")


def test_an_admin_adds_a_member(world: World) -> None:
    c = world.consortium
    nurse = crypto.generate_keypair()
    admin = world.page_of("admin_a")
    admin.goto("/admin")
    expect(admin.get_by_label("Organisation id")).to_have_value("hosp-a")
    admin.get_by_label("Their public key (hex)").fill(nurse.public.hex())
    admin.get_by_label("Roles (comma separated)").fill("nurse")
    admin.get_by_label("Name").fill("Nurse Li")
    admin.get_by_role("button", name="Add member").click()
    expect(admin.locator("#done")).to_contain_text("with roles nurse")
    check(admin, "admin-member-added")
    doc = c.node.did_document(c.node.account(nurse)["did"])
    assert doc["medchain"]["org_id"] == "hosp-a" and doc["medchain"]["roles"] == ["nurse"]


def test_the_explorer_verifies_a_proof(world: World) -> None:
    c = world.consortium
    tx = c.ok(
        "patient",
        "consent",
        "grant",
        {
            "patient": c.did("patient"),
            "grantee_kind": "role",
            "grantee": "pharmacist",
            "purposes": ["TREAT"],
            "scope_types": ["MedicationRequest"],
            "expires_ms": c.block_time_ms() + 86_400_000,
        },
    )
    for who in ("admin_a", "patient"):  # an operator, and the patient whose tx it is
        page = world.page_of(who)
        page.goto("/explorer")
        page.get_by_label("A transaction id or a state key").fill(tx["tx_id"])
        page.get_by_role("button", name="Verify").click()
        verdict = page.locator("#verdict")
        expect(verdict).to_contain_text("Verified")
        expect(verdict).to_contain_text(f"at height {tx['height']}")
        check(page, f"explorer-verified-{who}")
    admin = world.page_of("admin_a")
    admin.goto("/explorer")
    expect(admin.locator("#blocks tbody tr")).to_have_count(5)


def test_no_page_shows_data_its_viewer_may_not_see(world: World) -> None:
    c = world.consortium
    record_ids = re.compile("obs-1|rx-1|report-1")
    # A browser that never opened the launch link gets the sign-in page, and nothing else.
    outsider = world.portals.browser.new_page(base_url=world.portals.servers["patient"].url)
    outsider.goto("/records")
    expect(outsider.get_by_role("heading", level=1)).to_have_text("Open the portal from its link")
    assert not record_ids.search(outsider.content())
    check(outsider, "login")
    stranger = world.page_of("stranger")
    for path in ("/", "/records", "/timeline", "/consent", "/admin", "/explorer"):
        stranger.goto(path)
        assert not record_ids.search(stranger.content()), path
        check(stranger, "stranger" + path.replace("/", "-").rstrip("-"))
    stranger.goto(f"/clinician?patient={c.did('patient')}")
    expect(stranger.locator("#refusal")).to_contain_text("not registered")
    assert not record_ids.search(stranger.locator("main").inner_text())
    stranger.goto("/explorer")
    expect(stranger.locator("#blocks-refused")).to_be_visible()
    for who in ("stranger", "patient", "doctor_b"):  # alerts are for regulators
        page = world.page_of(who)
        page.goto("/regulator")
        expect(page.locator("#refusal")).to_be_visible()
        expect(page.locator("#alerts")).to_have_count(0)
    doctor = world.page_of("doctor_b")  # the grant was revoked: nothing again
    doctor.goto(f"/clinician?patient={c.did('patient')}")
    expect(doctor.locator("#none")).to_be_visible()


def test_pages_switch_language_and_work_by_keyboard(world: World) -> None:
    page = world.page_of("patient")
    page.goto("/records")
    page.get_by_role("link", name="中文").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("我的健康记录")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    check(page, "patient-records-zh")
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("My records")


def test_break_glass_with_approval_is_highlighted_in_the_patients_timeline(world: World) -> None:
    c = world.consortium
    asked = c.ok(
        "doctor_a",
        "consent",
        "break_glass",
        {
            "patient": c.did("patient"),
            "reason": "unconscious in the emergency room, allergy history needed",
        },
    )
    request_id = asked["events"][0]["attributes"]["request_id"]
    c.ok("attending_a", "consent", "approve_break_glass", {"request_id": request_id})
    page = world.page_of("patient")
    page.goto("/timeline")
    glass = page.locator("#timeline tr.glass")
    expect(glass.first).to_contain_text("Emergency access")
    assert glass.count() >= 2  # the request and its approval
    expect(page.locator("#timeline")).to_contain_text(c.did("attending_a"))
    check(page, "patient-timeline-break-glass")

    Relay(c.node, world.regulator.client, c.keys["admin_a"], CHAIN_ID).step()
    regulator = world.page_of("regulator")
    regulator.goto("/regulator")
    alert = regulator.locator("#alerts tbody tr", has_text="break_glass")
    expect(alert).to_have_count(1)
    check(regulator, "regulator-alerts")
    alert.get_by_label("Note").fill("called the ward: the patient was unconscious")
    alert.get_by_role("button", name="Acknowledge").click()
    expect(regulator.locator("#done")).to_contain_text("Acknowledged")
    expect(regulator.locator("#alerts tbody tr", has_text="break_glass")).to_contain_text(
        "acknowledged"
    )
    check(regulator, "regulator-acknowledged")
