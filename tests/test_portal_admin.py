"""The hospital admin's pages in a real browser (Debian's Chromium under Playwright)
against a running solo node and hosp-a's edge: members and roles, the edge's status,
imports with their reports; axe-core and a screenshot on every page; and what the
same pages show a stranger, a patient and the admin of another hospital (none of it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from support.browser import Portals, check, chromium
from support.consortium import Consortium, running_consortium
from support.ledger import DATA
from support.servers import free_port

from medchain import crypto
from medchain.portal.app import PortalServer
from medchain.sdk.client import Client, ClientError
from medchain.sdk.signing import send_signed

SYNTHEA = sorted((DATA / "fhir" / "synthea").glob("*.json"))
IMPORT_WAIT_S = 60  # an import run ends well within this (waited for, never slept)


@dataclass
class World:
    c: Consortium
    portals: Portals
    ndjson: Path  # a small FHIR NDJSON export: a patient and a few of their records
    garbage: Path  # a file no FHIR importer can read

    def page_of(self, who: str) -> Page:
        return self.portals.page_of(who)

    def runs_ended(self, who: str, page: Page) -> None:
        """Wait until the upload's answer (a redirect to its run's page) has loaded and
        every import run of `who`'s portal has ended, then reload `page` (the pages do
        not reload themselves; a reload while the POST's navigation is in flight fails)."""
        page.wait_for_url(re.compile(r"/admin/imports/\d+$"))
        runs = self.portals.servers[who].app.state.import_runs
        for run in runs.runs():
            assert run.ended.wait(IMPORT_WAIT_S), f"import {run.run_id} did not end"
        page.reload()


def small_export(path: Path) -> Path:
    """The patient and their first observations and conditions from a Synthea bundle,
    with the encounters they name, as NDJSON."""
    entries = [e["resource"] for e in json.loads(SYNTHEA[0].read_bytes())["entry"]]
    kept = [r for r in entries if r["resourceType"] == "Patient"]
    for kind in ("Observation", "Condition"):
        kept += [r for r in entries if r["resourceType"] == kind][:2]
    named = {r.get("encounter", {}).get("reference", "").removeprefix("urn:uuid:") for r in kept}
    kept += [r for r in entries if r["resourceType"] == "Encounter" and r["id"] in named]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("portal-admin")
    consortium_run = running_consortium(tmp)
    c = next(consortium_run)
    c.keys["stranger"] = crypto.generate_keypair()  # a key the chain has never heard of
    garbage = tmp / "notes.json"
    garbage.write_text("this is not FHIR")
    with ExitStack() as stack:
        portals = Portals(stack.enter_context(chromium()))
        stack.callback(portals.stop)
        # Everyone is pointed at hosp-a's edge: the edge, not the portal, says who may.
        for who in ("admin_a", "doctor_a", "admin_b", "patient", "stranger"):
            server = PortalServer(
                Client(c.node.url, key=c.keys[who]), c.keys[who], free_port(), c.edge_url
            )
            server.start()
            portals.servers[who] = server
        yield World(c, portals, small_export(tmp / "export.ndjson"), garbage)
    next(consortium_run, None)


def test_an_admin_manages_members_and_roles(world: World) -> None:
    c = world.c
    admin = world.page_of("admin_a")
    admin.goto("/admin")
    members = admin.locator("#members")
    for who in ("admin_a", "doctor_a", "attending_a"):
        expect(members).to_contain_text(c.did(who))
    expect(members).not_to_contain_text(c.did("doctor_b"))  # hosp-b's
    check(admin, "admin-members")

    doctor = c.did("doctor_a")
    admin.get_by_label("Member").first.select_option(doctor)
    admin.get_by_label("New roles").fill("doctor, attending")
    admin.get_by_role("button", name="Set roles").click()
    expect(admin.locator("#done")).to_contain_text(f"{doctor} now has the roles")
    assert c.node.member(doctor)["roles"] == ["attending", "doctor"]
    expect(admin.locator("#members tr", has_text=doctor)).to_contain_text("attending, doctor")

    status_form = admin.locator("#status-form")
    status_form.get_by_label("Member").select_option(doctor)
    status_form.get_by_label("Action").select_option("suspend")
    status_form.get_by_label("Reason").fill("investigation 7")
    status_form.get_by_role("button", name="Apply").click()
    expect(admin.locator("#members tr", has_text=doctor)).to_contain_text("suspended")
    assert c.node.member(doctor)["status"] == "suspended"
    check(admin, "admin-member-suspended")

    # Revoking is for good: without the box ticked nothing is signed.
    status_form = admin.locator("#status-form")
    status_form.get_by_label("Member").select_option(doctor)
    status_form.get_by_label("Action").select_option("revoke")
    status_form.get_by_role("button", name="Apply").click()
    expect(admin.locator("#refusal")).to_contain_text("NOT_CONFIRMED")
    assert c.node.member(doctor)["status"] == "suspended"

    admin.goto("/admin")
    status_form = admin.locator("#status-form")
    status_form.get_by_label("Member").select_option(doctor)
    status_form.get_by_label("Action").select_option("reinstate")
    status_form.get_by_role("button", name="Apply").click()
    expect(admin.locator("#members tr", has_text=doctor)).to_contain_text("active")

    attending = c.did("attending_a")
    status_form = admin.locator("#status-form")
    status_form.get_by_label("Member").select_option(attending)
    status_form.get_by_label("Action").select_option("revoke")
    status_form.get_by_label("I understand that revoking cannot be undone").check()
    status_form.get_by_role("button", name="Apply").click()
    expect(admin.locator("#members tr", has_text=attending)).to_contain_text("revoked")
    assert c.node.member(attending)["status"] == "revoked"

    # A doctor of the org sees the list (they work with these people) but the chain
    # refuses them any change.
    doctor_page = world.page_of("doctor_a")
    doctor_page.goto("/admin")
    expect(doctor_page.locator("#members")).to_contain_text(c.did("admin_a"))
    status_form = doctor_page.locator("#status-form")
    status_form.get_by_label("Member").select_option(c.did("admin_a"))
    status_form.get_by_role("button", name="Apply").click()
    expect(doctor_page.locator("#refusal")).to_contain_text("UNAUTHORIZED")
    assert c.node.member(c.did("admin_a"))["status"] == "active"

    admin.goto("/admin")
    admin.get_by_role("link", name="中文").click()
    expect(admin.get_by_role("heading", level=1)).to_have_text("医院管理")
    expect(admin.locator("#members")).to_contain_text("已撤销")
    check(admin, "admin-members-zh")


def test_the_edge_status_shows_records_sync_and_endpoint(world: World) -> None:
    c = world.c
    admin = world.page_of("admin_a")
    admin.goto("/admin")
    admin.get_by_role("link", name="Edge status").click()
    expect(admin.get_by_role("heading", level=1)).to_have_text("The edge's status")
    expect(admin.locator("#readiness")).to_contain_text("ready")
    expect(admin.locator("#edge-records")).to_have_text(str(c.edge.vault.count()))
    expect(admin.locator("#edge-synced")).to_contain_text(re.compile(r"^\d+ \(the chain is at"))
    expect(admin.locator("#edge-published")).to_contain_text(c.edge_url)
    expect(admin.locator("#edge-published")).not_to_contain_text("differs")
    check(admin, "admin-edge")


def test_an_import_shows_its_progress_and_report(world: World) -> None:
    c = world.c
    _, patient = c.new_patient()
    admin = world.page_of("admin_a")
    admin.goto("/admin/imports")
    expect(admin.locator("#runs")).to_have_count(0)
    check(admin, "admin-imports-empty")
    admin.get_by_label("FHIR Bundle or NDJSON files").set_input_files(world.ndjson)
    admin.get_by_label("Patient DID").fill(patient)
    admin.get_by_role("button", name="Import", exact=True).click()
    expect(admin).to_have_url(re.compile(r"/admin/imports/1$"))
    world.runs_ended("admin_a", admin)
    expect(admin.locator("#run-state")).to_contain_text("Done")
    expect(admin.locator("#refresh")).to_have_count(0)
    followed = admin.request.get("/admin/imports/1?live=1")  # an ended run stops reloading
    assert followed.ok and "refresh" not in followed.headers
    registered = {r["record_id"] for r in c.node.patient_records(patient)}
    assert registered
    imported = admin.locator("table.imported tbody tr")
    expect(imported).to_have_count(len(registered))
    for record_id in registered:
        expect(admin.locator("table.imported")).to_contain_text(record_id)
    expect(admin.locator("main")).to_contain_text(f"{len(registered)} records imported, 0 rejected")
    check(admin, "admin-import-report")

    # Again, with a file no importer can read: the records already there are rejected
    # with the edge's reason, the unreadable file is refused, and the run says so.
    admin.goto("/admin/imports")
    admin.get_by_label("FHIR Bundle or NDJSON files").set_input_files([world.ndjson, world.garbage])
    admin.get_by_label("Patient DID").fill(patient)
    admin.get_by_role("button", name="Import", exact=True).click()
    world.runs_ended("admin_a", admin)
    expect(admin.locator("#run-state")).to_contain_text("refused")
    expect(admin.locator("table.rejected tbody tr")).to_have_count(len(registered))
    expect(admin.locator("[role=alert]")).to_contain_text("cannot read the file")
    check(admin, "admin-import-rejected")
    assert {r["record_id"] for r in c.node.patient_records(patient)} == registered

    admin.get_by_role("link", name="All imports").click()
    runs = admin.locator("#runs tbody tr")
    expect(runs).to_have_count(2)
    expect(runs.nth(0)).to_contain_text("notes.json")
    expect(runs.nth(1)).to_contain_text("Done")
    expect(admin.locator("#going")).to_have_count(0)
    check(admin, "admin-imports")

    # An upload without the form's token is refused before anything is sent.
    answer = admin.request.post(
        "/admin/imports",
        multipart={
            "file": {
                "name": "x.json",
                "mimeType": "application/json",
                "buffer": world.ndjson.read_bytes(),
            }
        },
    )
    assert answer.status == 403
    too_big = {
        "name": "big.ndjson",
        "mimeType": "application/x-ndjson",
        "buffer": b"{}" * (8 << 20),
    }
    answer = admin.request.post("/admin/imports", multipart={"file": too_big})
    assert answer.status == 413  # refused by its length, before the form is parsed
    admin.goto("/admin/imports")
    expect(runs).to_have_count(2)


def test_others_see_none_of_an_organisations_admin_pages(world: World) -> None:
    c = world.c
    hosp_a = re.compile("|".join(re.escape(c.did(w)) for w in ("doctor_a", "attending_a")))
    records_before = c.edge.vault.count()
    for who in ("admin_b", "patient", "stranger"):
        page = world.page_of(who)
        page.goto("/admin")
        assert not hosp_a.search(page.locator("main").inner_text()), who
        check(page, f"admin-as-{who}")
        page.goto("/admin/edge")
        expect(page.locator("#refusal")).to_be_visible()
        expect(page.locator("#edge")).to_have_count(0)
        check(page, f"admin-edge-as-{who}")
        page.goto("/admin/imports")
        expect(page.locator("#runs")).to_have_count(0)  # hosp-a's runs are not here
        page.get_by_label("FHIR Bundle or NDJSON files").set_input_files(world.ndjson)
        page.get_by_role("button", name="Import", exact=True).click()
        world.runs_ended(who, page)
        expect(page.locator("#run-state")).to_contain_text("refused")
        expect(page.locator("table.imported")).to_have_count(0)
        check(page, f"admin-import-as-{who}")
    # hosp-b's admin sees hosp-b's members only.
    admin_b = world.page_of("admin_b")
    admin_b.goto("/admin")
    expect(admin_b.locator("#members")).to_contain_text(c.did("nurse_b"))
    assert c.edge.vault.count() == records_before

    # The reads behind the pages refuse the same people, whatever client asks.
    for who in ("admin_b", "patient", "stranger"):
        with pytest.raises(ClientError) as refused:
            Client(c.node.url, key=c.keys[who]).org_members("hosp-a")
        assert refused.value.status in (401, 403), who
        r = send_signed(c.keys[who], c.chain_id, "GET", c.edge_url, "/edge/v1/staff/status")
        assert r.status_code in (401, 403), (who, r.text)
        assert "records" not in r.json()
    assert httpx.get(f"{c.node.url}/v1/identity/orgs/hosp-a/members").status_code == 401
    assert httpx.get(f"{c.edge_url}/edge/v1/staff/status").status_code == 401
    staff = Client(c.node.url, key=c.keys["doctor_a"]).org_members("hosp-a")
    assert c.did("attending_a") in {m["did"] for m in staff["members"]}
