"""The regulator's dashboard in a real browser: a business chain (solo node, hosp-a's
edge) relayed to a regulator chain, the regulator's portal on that chain showing the
relayed stream (heights, the source's own height, missing heights, recent events,
following it live), charts with their data tables, and CSV/JSON downloads; and no
one else (a stranger, a patient, a doctor) sees any of it, in the browser or from
the node's digests read."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect
from support.browser import Portals, check, chromium
from support.consortium import Consortium, fetch, running_consortium
from support.ledger import CHAIN_ID
from support.regulator import Regulator, regulator_chain

from medchain import crypto
from medchain.edge.requester import ExchangeFailed
from medchain.network.relay import Relay
from medchain.portal.pages.regulator import Table, table_csv
from medchain.portal.supervision_stats import chart_tables, missing_ranges
from medchain.sdk.client import Client, ClientError

PAGES = ("/regulator", "/regulator/stream", "/regulator/charts", "/regulator/exports")
EXPORTS = ("alerts", "accesses", "refusals", "break_glass", "cold_chain", "recognition")


@dataclass
class World:
    consortium: Consortium
    regulator: Regulator
    portals: Portals
    relay: Relay

    def page_of(self, who: str) -> Page:
        return self.portals.page_of(who)

    def relay_all(self) -> None:
        while self.relay.step():
            pass


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    consortium_run = running_consortium(tmp_path_factory.mktemp("portal-regulator"))
    c = next(consortium_run)
    c.keys["stranger"] = crypto.generate_keypair()
    # The business chain's story: an access under consent, a refusal after the
    # revocation, and a break-glass access approved by the attending doctor.
    grant_id = c.grant("doctor_b", ["DiagnosticReport"])
    fetch(c, "doctor_b", "report-1")
    c.ok("patient", "consent", "revoke", {"grant_id": grant_id})
    with pytest.raises(ExchangeFailed):
        fetch(c, "doctor_b", "report-1")
    asked = c.ok(
        "doctor_a",
        "consent",
        "break_glass",
        {"patient": c.did("patient"), "reason": "unconscious in the emergency room"},
    )
    request_id = asked["events"][0]["attributes"]["request_id"]
    c.ok("attending_a", "consent", "approve_break_glass", {"request_id": request_id})
    with ExitStack() as stack:
        portals = Portals(stack.enter_context(chromium()))
        stack.callback(portals.stop)
        db = tmp_path_factory.mktemp("regulator") / "regulator.db"
        reg = stack.enter_context(regulator_chain(db, c.keys["admin_a"], CHAIN_ID))
        server = portals.start(
            "regulator", Client(reg.client.url, key=reg.inspector), reg.inspector
        )
        server.app.state.regulator_sources[CHAIN_ID] = c.node.url
        portals.start(
            "stranger", Client(reg.client.url, key=c.keys["stranger"]), c.keys["stranger"]
        )
        for who in ("patient", "doctor_b"):
            portals.start(who, Client(c.node.url, key=c.keys[who]), c.keys[who])
        relay = Relay(c.node, reg.client, c.keys["admin_a"], CHAIN_ID)
        w = World(c, reg, portals, relay)
        w.relay_all()
        yield w
    next(consortium_run, None)


def test_stream_shows_heights_gaps_and_recent_events_and_follows_live(world: World) -> None:
    c = world.consortium
    page = world.page_of("regulator")
    page.goto("/regulator/stream")
    row = page.locator("#streams tbody tr", has_text=CHAIN_ID)
    relayed = int(row.locator(".relayed").inner_text())
    head = c.node.status()["height"]
    assert relayed <= head
    expect(row.locator(".head")).not_to_have_text("unknown")
    events = page.locator("#events")
    for kind in ("exchange.refused", "consent.break_glass_opened", "exchange.opened"):
        expect(events).to_contain_text(kind)
    expect(events).to_contain_text(c.did("doctor_b"))
    check(page, "regulator-stream")

    # The business chain moves on and nothing is relayed: the heights it committed
    # since show as missing, against the source's own height.
    c.grant("doctor_a", ["Observation"])
    head = c.node.status()["height"]
    page.goto("/regulator/stream")
    expect(row.locator(".missing")).to_contain_text(f"{relayed + 1}")
    expect(row.locator(".missing")).to_contain_text(f"{head}")
    expect(row).to_have_class("glass")
    check(page, "regulator-stream-gap")

    # Followed live, the page reloads by itself and catches the relay up.
    response = page.goto("/regulator/stream?live=1")
    assert response is not None and response.headers.get("refresh") == "5"
    expect(page.locator("#live")).to_be_visible()
    expect(row.locator(".missing")).not_to_have_text("none")
    world.relay_all()
    expect(row.locator(".relayed")).to_have_text(str(head), timeout=20_000)
    expect(row.locator(".missing")).to_have_text("none")
    check(page, "regulator-stream-live")
    page.get_by_role("link", name="Stop reloading").click()
    expect(page.locator("#follow")).to_be_visible()

    page.get_by_role("link", name="中文").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("中继数据流")
    check(page, "regulator-stream-zh")
    page.get_by_role("link", name="English").click()


def test_charts_are_inline_svg_with_their_data_tables(world: World) -> None:
    page = world.page_of("regulator")
    page.goto("/regulator/charts")
    accesses = page.locator("#chart-accesses")
    expect(accesses.locator("svg")).to_have_count(1)
    expect(accesses.locator("svg")).to_have_attribute("aria-hidden", "true")
    expect(accesses.locator("table tbody tr", has_text="hosp-a")).to_have_count(1)
    expect(page.locator("#table-refusals")).to_contain_text("hosp-a")
    glass_count = page.locator("#table-break_glass tbody td").nth(1)
    expect(glass_count).to_have_text("1")
    expect(page.locator("#chart-recognition .empty")).to_be_visible()
    svg = accesses.locator("svg").inner_html()
    assert "style=" not in svg and "<script" not in svg
    fill = accesses.locator("svg path[fill='#1f5fa8']").first
    expect(fill).to_be_attached()  # colours are attributes, which the CSP lets through
    check(page, "regulator-charts")
    page.get_by_role("link", name="中文").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("统计图表")
    check(page, "regulator-charts-zh")
    page.get_by_role("link", name="English").click()


def test_exports_download_alerts_and_each_charts_data(world: World) -> None:
    page = world.page_of("regulator")
    page.goto("/regulator/exports")
    check(page, "regulator-exports")
    with page.expect_download() as info:
        page.locator("a[href='/regulator/export/alerts.csv']").click()
    download = info.value
    assert download.suggested_filename == "medchain-alerts.csv"
    with open(download.path(), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert any(r["rule"] == "break_glass" for r in rows), rows
    for name in EXPORTS:
        for fmt in ("csv", "json"):
            r = page.request.get(f"/regulator/export/{name}.{fmt}")
            assert r.status == 200, (name, fmt)
            assert r.headers["content-disposition"] == (
                f'attachment; filename="medchain-{name}.{fmt}"'
            )
    accesses = json.loads(page.request.get("/regulator/export/accesses.json").text())
    assert accesses["name"] == "accesses"
    assert sum(row["count"] for row in accesses["rows"] if row["organisation"] == "hosp-a") >= 1
    assert page.request.get("/regulator/export/..%2Fetc.csv").status == 404
    assert page.request.get("/regulator/export/alerts.html").status == 404


def test_no_one_else_sees_the_dashboard_or_the_digests(world: World) -> None:
    c = world.consortium
    for who in ("stranger", "patient", "doctor_b"):
        page = world.page_of(who)
        for path in PAGES:
            page.goto(path)
            expect(page.locator("#refusal")).to_be_visible()
            main = page.locator("main").inner_text()
            assert CHAIN_ID not in main and c.did("doctor_b") not in main, (who, path)
            expect(page.locator("main table, main svg")).to_have_count(0)
        check(page, f"regulator-refused-{who}")
        for name in EXPORTS:
            r = page.request.get(f"/regulator/export/{name}.csv")
            assert r.status >= 400 and "content-disposition" not in r.headers, (who, name)
            main = r.text().split("<main", 1)[1].split("</main>", 1)[0]
            assert 'id="refusal"' in main and "<table" not in main, (who, name)
            assert CHAIN_ID not in main and c.did("doctor_b") not in main, (who, name)
    # The node's own read: refused to a key it does not know and to a non-regulator.
    for url, who in ((world.regulator.client.url, "stranger"), (c.node.url, "patient")):
        with pytest.raises(ClientError) as refused:
            Client(url, key=c.keys[who]).get(f"/v1/supervision/digests/{CHAIN_ID}")
        assert refused.value.status in (401, 403)
    relayed = world.regulator.client.get(f"/v1/supervision/digests/{CHAIN_ID}", limit=3)
    assert [d["height"] for d in relayed if d["part"] == 0] == [0, 1, 2]


def test_counts_csv_cells_and_gaps_from_relayed_digests() -> None:
    day_ms = 1_765_000_000_000
    digests = [
        {
            "time_ms": day_ms,
            "events": [
                {"type": "supply.cold_chain_violation", "attributes": {"units": "4"}},
                {"type": "recognition.accepted", "attributes": {"requesting_org": "hosp-b"}},
                {"type": "recognition.accepted", "attributes": {"requesting_org": "hosp-b"}},
                {"type": "recognition.declined", "attributes": {"requesting_org": "hosp-b"}},
                {"type": "exchange.accessed", "attributes": {"custodian": "=cmd|calc"}},
            ],
        }
    ]
    tables = chart_tables(digests)
    assert tables["cold_chain"].rows == [("2025-12-06", 1, 4)]
    assert tables["recognition"].rows == [("hosp-b", 2, 1, 67)]
    text = table_csv(tables["accesses"])
    assert list(csv.reader(io.StringIO(text)))[1] == ["2025-12-06", "'=cmd|calc", "1"]
    assert table_csv(Table("t", ("a",), [])) == "a\r\n"
    assert missing_ranges([1, 2, 5, 9], 1, 10) == [(3, 4), (6, 8), (10, 10)]
