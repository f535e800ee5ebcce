"""A link cannot make the portal say something it did not do.

The portal's status line ("Granted ...", "Added ...") is what a user trusts about
what their key just signed. Pages on other 127.0.0.1 ports are same-site for the
browser, so their links arrive with the session cookie: if a query parameter filled
that line, any local page could show, as the portal's own words, "your key expired:
paste your passphrase at ...". The line comes only from the POST that signed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.consortium import Consortium, running_consortium
from support.servers import free_port

from medchain.portal.app import PortalServer
from medchain.sdk.client import Client

LURE = "Your key expired: paste your passphrase at evil.example"


@pytest.fixture(name="portal")
def portal_fixture(tmp_path: Path) -> Iterator[tuple[Consortium, PortalServer]]:
    run = running_consortium(tmp_path)
    world = next(run)
    key = world.keys["admin_a"]
    server = PortalServer(Client(world.node.url, key=key), key, free_port())
    server.start()
    yield world, server
    server.stop()
    next(run, None)


def test_a_link_cannot_put_words_in_the_portals_status_line(
    portal: tuple[Consortium, PortalServer],
) -> None:
    _, server = portal
    http = httpx.Client(base_url=server.url, follow_redirects=True)
    assert http.get(server.launch_url).status_code == 200
    for path in ("/consent", "/admin"):
        r = http.get(path, params={"done": LURE})
        assert r.status_code == 200, r.text
        assert "evil.example" not in r.text and 'id="done"' not in r.text, path
