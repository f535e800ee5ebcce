"""The portal in a real browser, shared by the browser test files: Debian's Chromium
driven by Playwright (never a browser Playwright downloads), portals signed in
through their launch links, and `check`: a screenshot of the page saved under
test-artifacts/portal/ (gitignored; MEDCHAIN_TEST_ARTIFACTS moves it) and axe-core
run on it, with no serious or critical violation allowed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, sync_playwright

from medchain import crypto
from medchain.portal.app import PortalServer
from medchain.sdk.client import Client
from support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MEDCHAIN_TEST_ARTIFACTS", REPO / "test-artifacts")) / "portal"
AXE = Axe()


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium under Playwright, for one test module."""
    executable = shutil.which("chromium")
    assert executable, "Chromium is missing: `make browser` installs Debian's chromium"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Portals:
    """Portals for several keys, each on its own 127.0.0.1 port, and a browser."""

    browser: Browser
    servers: dict[str, PortalServer] = field(default_factory=dict)

    def start(self, who: str, node: Client, key: crypto.KeyPair) -> PortalServer:
        """A portal for `key`, reading and signing through `node`."""
        server = PortalServer(node, key, free_port())
        server.start()
        self.servers[who] = server
        return server

    def page_of(self, who: str) -> Page:
        """A fresh browser context signed in to `who`'s portal through its launch link."""
        context = self.browser.new_context(base_url=self.servers[who].url)
        page = context.new_page()
        page.goto(self.servers[who].launch_url)
        return page

    def stop(self) -> None:
        """Stop every portal."""
        for server in self.servers.values():
            server.stop()
        self.servers.clear()


def check(page: Page, name: str) -> None:
    """Save the page's screenshot and require no serious or critical axe violation."""
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
    result = AXE.run(page)
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]])
        for v in result.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{name}: {bad}"
