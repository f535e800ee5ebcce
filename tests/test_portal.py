"""The portal's guard and its FHIR rendering without a browser: who may drive the
local app (launch link, Host, Origin, CSRF) and how a resource reads."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.consortium import PRESCRIPTION, SPEC, Consortium, running_consortium
from support.servers import free_port

from medchain.portal.app import PortalServer, local_path
from medchain.portal.fhir_view import resource_view
from medchain.portal.guard import SESSION_SECONDS, Guard
from medchain.portal.messages import CATALOGUE, LANGUAGES
from medchain.sdk.client import Client
from medchain.sdk.keystore import Keystore


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[tuple[Consortium, PortalServer]]:
    run = running_consortium(tmp_path)
    world = next(run)
    server = PortalServer(
        Client(world.node.url, key=world.keys["patient"]), world.keys["patient"], free_port()
    )
    server.start()
    yield world, server
    server.stop()
    next(run, None)


def signed_in(server: PortalServer) -> tuple[httpx.Client, str]:
    """A client holding the session cookie, and the page's CSRF token."""
    http = httpx.Client(base_url=server.url, follow_redirects=True)
    assert http.get(server.launch_url).status_code == 200  # the redirect lands on /
    page = http.get("/consent").text
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert token
    return http, token.group(1)


def test_without_the_launch_link_no_page_shows_anything(
    portal: tuple[Consortium, PortalServer],
) -> None:
    world, server = portal
    for path in ("/", "/records", "/timeline", "/consent", "/explorer"):
        r = httpx.get(server.url + path)
        assert r.status_code == 401
        assert world.did("patient") not in r.text and "report-1" not in r.text
    wrong = httpx.get(f"{server.url}/login?token=not-the-token", follow_redirects=False)
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers


def test_a_rebinding_host_is_refused(portal: tuple[Consortium, PortalServer]) -> None:
    _, server = portal
    http, _ = signed_in(server)
    r = http.get("/records", headers={"Host": f"evil.example:{server.server.config.port}"})
    assert r.status_code == 421 and "report-1" not in r.text
    assert http.get("/records").status_code == 200


def test_posts_need_the_session_token_and_our_origin(
    portal: tuple[Consortium, PortalServer],
) -> None:
    world, server = portal
    http, csrf = signed_in(server)
    before = len(world.node.grants(world.did("patient")))
    form = {"kind": "role", "grantee": "doctor", "types": "Observation", "days": "1"}
    assert http.post("/consent/grant", data=form).status_code == 403  # no token
    assert http.post("/consent/grant", data=form | {"csrf": "0" * 64}).status_code == 403
    cross = http.post(
        "/consent/grant", data=form | {"csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert len(world.node.grants(world.did("patient"))) == before  # nothing was signed
    ok = http.post("/consent/grant", data=form | {"csrf": csrf}, headers={"Origin": server.url})
    assert ok.status_code == 200 and "Granted" in ok.text
    assert len(world.node.grants(world.did("patient"))) == before + 1
    # The answer's language link leads to the consent page, not to the POST-only path.
    switch = re.search(r'href="(/lang/zh-CN\?next=[^"]*)"', ok.text)
    assert switch and switch.group(1) == "/lang/zh-CN?next=/consent"
    assert "授权管理" in http.get(switch.group(1)).text


def test_pages_carry_headers_that_forbid_framing_and_script(
    portal: tuple[Consortium, PortalServer],
) -> None:
    _, server = portal
    http, _ = signed_in(server)
    r = http.get("/records")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none'
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    assert "<script" not in r.text


def test_sessions_are_named_by_port_and_end() -> None:
    """Two portals of one machine keep their own cookie (browsers share cookies across
    ports), and a session ends after SESSION_SECONDS."""
    a, b = Guard(8780), Guard(8781)
    assert a.cookie != b.cookie and a.cookie.endswith("8780")
    session = a.open_session(a.launch_token)
    assert session and a.has_session(a.session_in({a.cookie: session}))
    assert not a.has_session(a.session_in({b.cookie: session}))  # the other portal's cookie
    assert a.open_session(b.launch_token) is None
    a._sessions[session] -= SESSION_SECONDS  # as if opened a working day ago
    assert not a.has_session(session)


def test_a_redirect_stays_inside_the_portal() -> None:
    assert local_path("/consent") == "/consent"
    assert local_path("//evil.example/x") == "/"
    assert local_path("https://evil.example") == "/"


def test_an_observation_reads_as_value_unit_and_range() -> None:
    view = resource_view(json.loads((SPEC / "Observation-f001.json").read_bytes()))
    lines = dict(view.lines)
    assert view.title == "Glucose [Moles/volume] in Blood"
    assert lines["fhir.value"] == "6.3 mmol/l"
    assert lines["fhir.range"] == "3.1 – 6.2 mmol/l"
    assert lines["fhir.interpretation"] == "High" and view.flag == "H"


def test_a_medication_request_reads_as_a_prescription() -> None:
    view = resource_view(json.loads(PRESCRIPTION))
    lines = dict(view.lines)
    assert view.title == "Azithromycin 250mg capsule (product)"
    assert lines["fhir.quantity"] == "6 TAB" and lines["fhir.repeats"] == "1"
    assert lines["fhir.note"] == "Patient told to take with food"
    assert lines["fhir.prescriber"] == "Patrick Pump"


def test_every_message_has_every_language() -> None:
    missing = [
        (m, lang) for m, texts in CATALOGUE.items() for lang in LANGUAGES if not texts.get(lang)
    ]
    assert not missing


def test_medchain_portal_serves_the_key_files_owner_on_loopback(
    portal: tuple[Consortium, PortalServer], tmp_path: Path
) -> None:
    world, _ = portal
    path = Keystore(tmp_path / "keys").save(
        "zhang", world.keys["patient"], "a long passphrase", 1000
    )
    port = free_port()
    env = os.environ | {"MEDCHAIN_PASSPHRASE": "a long passphrase"}
    cmd = [sys.executable, "-m", "medchain.cli", "portal", "--key", str(path)]
    proc = subprocess.Popen(
        [*cmd, "--node", world.node.url, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        link = re.search(r"(http://127\.0\.0\.1:\d+/login\?token=\S+)", "".join(lines))
        assert link, lines
        http = httpx.Client(follow_redirects=True)
        home = http.get(link.group(1))
        assert home.status_code == 200 and world.did("patient") in home.text
        assert "report-1" in http.get(f"http://127.0.0.1:{port}/records").text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
