"""The public pack page in a real browser: headless Debian Chromium renders the
page a patient reaches by scanning a pack's QR code."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.ledger import Ledger
from support.servers import free_port
from support.supply_chain import GTIN, Chain

from medchain.consensus.solo import SoloEngine
from medchain.node import GatewayServer

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def rendered(url: str) -> str:
    """The DOM Chromium builds for `url`."""
    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: `make test` installs Debian's chromium"
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture
def node(ledger: Ledger) -> Iterator[tuple[str, Chain]]:
    chain = Chain(ledger)
    engine = SoloEngine(ledger.app, block_interval=0.02)
    engine.start()
    server = GatewayServer(engine, port=free_port())
    server.start()
    yield server.url, chain
    server.stop()
    engine.stop()


def test_a_scanned_pack_page_renders_its_verdict(node: tuple[str, Any]) -> None:
    url, chain = node
    units = chain.setup_batch(serials=2)
    chain.ok("api_supplier", "recall", {"ingredient_lot": "API-77", "reason": "endotoxin"})
    gtin, serial = units[0].split("/")
    dom = rendered(f"{url}/01/{gtin}/10/L2401/21/{serial}")
    assert "Insulin pen 3 ml" in dom
    assert 'id="verdict" class="bad"' in dom and "Do not use this pack" in dom
    assert "endotoxin" in dom and "commissioning" in dom
    missing = rendered(f"{url}/01/{GTIN}/21/NOPE")
    assert "may be counterfeit" in missing


def test_the_pack_page_allows_only_its_own_stylesheet(node: tuple[str, Any]) -> None:
    """Nothing but the page's inline stylesheet may load or run: the CSP names it by hash."""
    url, chain = node
    gtin, serial = chain.setup_batch(serials=1)[0].split("/")
    page = httpx.get(f"{url}/01/{gtin}/21/{serial}")
    style = re.search(r"<style>(.*?)</style>", page.text, re.S)
    assert style
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    policy = page.headers["content-security-policy"]
    assert policy.startswith("default-src 'none';") and f"'sha256-{digest}'" in policy
    assert "script" not in policy and page.headers["x-content-type-options"] == "nosniff"
