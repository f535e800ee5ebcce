"""The clinician's workspace in a real browser (Debian's Chromium under Playwright)
against a running solo node and two hospitals' edges: break-glass asked for and
approved through the pages, the patient's timeline and the regulator's alerts
showing it; a referral from one hospital to the other, approved by the patient on
the same page, accepted and reported; a prior exam recognised. axe-core runs on
every page (support/browser.check), and strangers see nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect
from support.browser import Portals, check, chromium
from support.consortium import DAY_MS, REPORT, Consortium, running_consortium
from support.ledger import CHAIN_ID
from support.regulator import Regulator, regulator_chain
from support.servers import free_port

from medchain import crypto
from medchain.edge.custodian import CustodianEdge
from medchain.edge.requester import upload_record
from medchain.edge.vault import Vault
from medchain.network.relay import Relay
from medchain.node import EdgeServer
from medchain.sdk.client import Client, ClientError

EXAM_CODE = "http://snomed.info/sct|429858000"  # DiagnosticReport-f201's code
REASON = "unconscious in the emergency room, allergy history needed"


def recent_report() -> bytes:
    """The spec's DiagnosticReport performed today: a prior exam young enough to count."""
    today = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    resource = json.loads(REPORT) | {"effectiveDateTime": today, "issued": today}
    return json.dumps(resource).encode()


def service_request(patient: str) -> bytes:
    """The FHIR ServiceRequest a referral carries, stored at the referring hospital."""
    return json.dumps(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": f"Patient/{patient}"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "11429006"}]},
            "authoredOn": "2026-12-01",
        }
    ).encode()


def refer(page: Page, patient: str, to_doctor: str) -> str:
    """Refer `patient` to hosp-b (to `to_doctor` if named) through the form; the id."""
    page.goto("/referrals")
    page.get_by_label("Patient DID").fill(patient)
    page.get_by_label("To hospital (organisation id)").fill("hosp-b")
    page.get_by_label("To doctor (DID, optional)").fill(to_doctor)
    page.get_by_label("Reason code (system|code, e.g. ICD-10|I48.0)").fill("ICD-10|I48.0")
    page.get_by_label("Urgency").select_option("urgent")
    page.get_by_label("Records to send (ids, comma separated)").fill("exam-1")
    page.get_by_label("ServiceRequest record id").fill("sr-1")
    page.get_by_label("Open for (days)").fill("7")
    page.get_by_role("button", name="Refer", exact=True).click()
    expect(page.locator("#done")).to_contain_text("waits for the patient's approval")
    return re.findall(r"ref-[0-9a-f]{12}", page.locator("#done").inner_text())[0]


@dataclass
class World:
    consortium: Consortium
    regulator: Regulator
    portals: Portals
    edge_b_url: str

    def page_of(self, who: str) -> Page:
        """A fresh browser context signed in to `who`'s portal."""
        return self.portals.page_of(who)

    def reader(self, who: str) -> Client:
        """`who`'s own signed client, to ask the node what it answers them."""
        return Client(self.consortium.node.url, key=self.consortium.keys[who])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("clinician")
    consortium_run = running_consortium(tmp)
    c = next(consortium_run)
    c.keys["stranger"] = crypto.generate_keypair()
    c.keys["nurse_a"] = crypto.generate_keypair()
    c.ok(
        "admin_a",
        "identity",
        "add_member",
        {"org_id": "hosp-a", "public_key": c.keys["nurse_a"].public, "roles": ["nurse"]},
    )
    with ExitStack() as stack:
        # hosp-b's own edge, where its consultation reports are stored and registered.
        edge_b = CustodianEdge(Vault(tmp / "vault-b", c.keys["admin_b"]), c.keys["admin_b"], c.node)
        server_b = EdgeServer(edge_b, "127.0.0.1", free_port(), sync_interval=0.1)
        server_b.start()
        stack.callback(server_b.stop)
        c.ok("admin_b", "identity", "set_endpoint", {"org_id": "hosp-b", "edge_url": server_b.url})
        for record_id, content in (
            ("exam-1", recent_report()),
            ("sr-1", service_request(c.did("patient"))),
        ):
            r = c.upload("doctor_a", content, patient=c.did("patient"), record_id=record_id)
            assert r.status_code == 201, r.text
        c.grant("doctor_a", ["DiagnosticReport"])  # what doctor_a may pass on in a referral
        c.ok(
            "root",
            "recognition",
            "set_rule",
            {"exam_code": EXAM_CODE, "max_age_days": 30, "min_level": "3B"},
        )
        expires = c.block_time_ms() + 365 * DAY_MS
        c.ok(
            "root",
            "recognition",
            "accredit",
            {"org_id": "hosp-a", "level": "3A", "expires_ms": expires},
        )
        portals = Portals(stack.enter_context(chromium()))
        stack.callback(portals.stop)
        for who in ("doctor_a", "attending_a", "patient", "doctor_b", "stranger"):
            portals.start(who, Client(c.node.url, key=c.keys[who]), c.keys[who])
        db = tmp_path_factory.mktemp("clinician-regulator") / "regulator.db"
        reg = stack.enter_context(regulator_chain(db, c.keys["admin_a"], CHAIN_ID))
        portals.start("regulator", Client(reg.client.url, key=reg.inspector), reg.inspector)
        yield World(c, reg, portals, server_b.url)
    next(consortium_run, None)


def test_break_glass_asked_and_approved_in_the_pages_reaches_timeline_and_regulator(
    world: World,
) -> None:
    c = world.consortium
    patient_did = c.did("patient")
    doctor = world.page_of("doctor_a")
    # No approved request yet: an emergency read is refused by the chain.
    doctor.goto("/clinician")
    doctor.get_by_label("Record", exact=True).fill("rx-1")
    doctor.locator("#read-purpose").select_option("ETREAT")
    doctor.get_by_role("button", name="Request and read").click()
    expect(doctor.locator("#refusal")).to_be_visible()

    doctor.goto("/clinician/break-glass")
    expect(doctor.locator("#waiting")).to_have_count(0)  # a doctor is no approver
    doctor.get_by_label("Patient DID").fill(patient_did)
    doctor.get_by_label("Reason (why the patient cannot consent and what you need)").fill(REASON)
    doctor.get_by_role("button", name="Request emergency access").click()
    expect(doctor.locator("#done")).to_contain_text("Requested emergency access")
    mine = doctor.locator("#mine tbody tr")
    expect(mine).to_have_count(1)
    expect(mine).to_contain_text("Waiting for approval")
    request_id = mine.locator("td").first.inner_text()
    check(doctor, "clinician-break-glass-requested")

    # The other hospital's doctor sees none of it.
    other = world.page_of("doctor_b")
    other.goto("/clinician/break-glass")
    expect(other.locator("#none-mine")).to_be_visible()
    assert request_id not in other.content() and patient_did not in other.content()

    attending = world.page_of("attending_a")
    attending.goto("/clinician/break-glass")
    waiting = attending.locator("#waiting tbody tr", has_text=request_id)
    expect(waiting).to_contain_text(REASON)
    check(attending, "clinician-break-glass-waiting")
    attending.get_by_role("button", name=f"Approve {request_id}").focus()  # by keyboard
    attending.keyboard.press("Enter")
    expect(attending.locator("#done")).to_contain_text(f"Approved {request_id}")
    expect(attending.locator("#none-waiting")).to_be_visible()

    doctor.goto("/clinician/break-glass")
    expect(mine).to_contain_text("Open until")
    doctor.get_by_role("link", name="Read the records (ETREAT)").click()
    expect(doctor.locator("#etreat")).to_be_visible()
    expect(doctor.locator("#records")).to_contain_text("rx-1")
    check(doctor, "clinician-etreat-records")
    doctor.get_by_role("button", name="Request and read rx-1").click()
    expect(doctor.locator("#resource")).to_contain_text("Azithromycin")
    expect(doctor.locator("#etreat-read")).to_be_visible()
    check(doctor, "clinician-etreat-read")

    patient = world.page_of("patient")
    patient.goto("/clinician/break-glass")  # the patient sees it, and cannot ask for one
    expect(patient.locator("#others")).to_contain_text(c.did("attending_a"))
    expect(patient.get_by_role("button", name="Request emergency access")).to_have_count(0)
    patient.goto("/timeline")
    glass = patient.locator("#timeline tr.glass")
    expect(glass.filter(has_text="consent.break_glass_requested")).to_have_count(1)
    expect(glass.filter(has_text="consent.break_glass_opened")).to_contain_text(
        c.did("attending_a")
    )

    Relay(c.node, world.regulator.client, c.keys["admin_a"], CHAIN_ID).step()
    regulator = world.page_of("regulator")
    regulator.goto("/regulator")
    expect(regulator.locator("#alerts tbody tr", has_text="break_glass")).to_have_count(1)

    # The node's list answers each reader only what they may see.
    def listed(who: str) -> list[str]:
        answer = world.reader(who).get("/v1/consent/break-glass")
        return [r["request_id"] for r in answer["requests"]]

    assert request_id in listed("patient") and request_id in listed("attending_a")
    assert listed("doctor_b") == [] and listed("parent") == [] and listed("admin_b") == []
    # A nurse of the hospital reads the request by its id but finds none in a list.
    assert listed("nurse_a") == []
    found = world.reader("nurse_a").get(f"/v1/consent/break-glass/{request_id}")
    assert found["status"] == "approved"
    with pytest.raises(ClientError) as refused:
        listed("stranger")
    assert refused.value.status == 401


def test_a_referral_is_approved_accepted_reported_and_its_exam_recognised_another_declined(
    world: World,
) -> None:
    c = world.consortium
    patient_did = c.did("patient")
    receiving = world.page_of("doctor_b")
    receiving.goto(f"/clinician/exams?patient={patient_did}")
    expect(receiving.locator("#none")).to_be_visible()  # no consent: no prior exam shown

    doctor = world.page_of("doctor_a")
    referral_id = refer(doctor, patient_did, c.did("doctor_b"))
    expect(doctor.locator("#timeline")).to_contain_text("requested")
    check(doctor, "referrals-sent")

    patient = world.page_of("patient")
    patient.goto("/referrals")
    expect(patient.locator("#referrals")).to_contain_text(referral_id)
    expect(patient.get_by_label("To hospital (organisation id)")).to_have_count(0)
    check(patient, "referrals-patient")
    patient.get_by_role("button", name=f"Approve {referral_id}").click()
    expect(patient.locator("#done")).to_contain_text(f"Approved {referral_id}")

    receiving.goto("/referrals")
    receiving.get_by_role("button", name=f"Accept the patient {referral_id}").click()
    expect(receiving.locator("#done")).to_contain_text(f"Accepted {referral_id}")

    # The package's exam, now readable by the receiving doctor, counts instead of a repeat.
    receiving.goto(f"/clinician/exams?patient={patient_did}")
    exam = receiving.locator("#exams tbody tr", has_text="exam-1")
    expect(exam).to_contain_text("Recognisable")
    check(receiving, "clinician-exams")
    exam.get_by_label("Note (optional)").fill("same week, same lab standard")
    exam.get_by_role("button", name="Accept exam-1").click()
    expect(receiving.locator("#done")).to_contain_text("Accepted exam-1")
    expect(receiving.locator("#decisions")).to_contain_text("Accepted (not repeated)")
    exam.get_by_label("Why repeat it (5 to 500 characters)").fill("new symptoms since then")
    exam.get_by_role("button", name="Decline exam-1").click()
    expect(receiving.locator("#done")).to_contain_text("Declined exam-1")
    expect(receiving.locator("#decisions")).to_contain_text("Declined (repeated)")
    check(receiving, "clinician-exams-decided")

    # The consultation report, stored and registered at hosp-b's own edge.
    stored = upload_record(
        c.keys["doctor_b"], c.chain_id, world.edge_b_url, REPORT, patient_did, "consult-1"
    )
    assert stored.status_code == 201, stored.text
    receiving.goto("/referrals")
    row = receiving.locator("#referrals tbody tr", has_text=referral_id)
    row.get_by_label("Report record id").fill("consult-1")
    row.get_by_role("button", name=f"Send report {referral_id}").click()
    expect(receiving.locator("#done")).to_contain_text(f"Report sent for {referral_id}")
    steps = receiving.locator("#timeline tbody")
    for step in ("requested", "approved", "accepted", "reported"):
        expect(steps).to_contain_text(step)
    expect(receiving.locator("#effective-status")).to_have_text("completed")
    section = receiving.get_by_role("navigation", name="In this section")
    expect(section).to_contain_text("Prior exams")  # a form's answer keeps its area's pages
    check(receiving, "referrals-reported")

    # A second referral, to the hospital (no doctor named), which the patient declines.
    second = refer(doctor, patient_did, "")
    patient.goto("/referrals")
    row = patient.locator("#referrals tbody tr", has_text=second)
    row.get_by_label("Reason (optional)").fill("I prefer to stay with hosp-a")
    row.get_by_role("button", name=f"Decline {second}").click()
    expect(patient.locator("#done")).to_contain_text(f"Declined {second}")
    expect(patient.locator("#effective-status")).to_have_text("declined")

    patient.goto("/referrals?show=paste your passphrase at evil.example")
    expect(patient.locator("#referrals")).to_contain_text("completed")
    assert "evil.example" not in patient.content()  # a link's words never become the page's
    patient.get_by_role("link", name="中文").click()
    expect(patient.get_by_role("heading", level=1)).to_have_text("转诊")
    check(patient, "referrals-patient-zh")

    # A stranger's portal shows neither the referral nor the patient.
    stranger = world.page_of("stranger")
    for path in (
        "/referrals",
        f"/referrals?show={referral_id}",
        "/clinician/break-glass",
        f"/clinician/exams?patient={patient_did}",
    ):
        stranger.goto(path)
        text = stranger.locator("main").inner_text()
        assert referral_id not in text and "exam-1" not in text, path
    check(stranger, "stranger-clinician-exams")
    with pytest.raises(ClientError) as refused:
        world.reader("nurse_b").get(f"/v1/referrals/{referral_id}")
    assert refused.value.status == 403  # hosp-b, but not a physician or its admin
