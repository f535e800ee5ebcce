"""The explorer: the chain's status, recent blocks, and a proof checked here."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from medchain.portal.core import FormFields, NavEntry, Portal
from medchain.sdk.client import Client, ClientError
from medchain.sdk.proofs import BadProof, verify_proof

NAV: tuple[NavEntry, ...] = (("/explorer", "nav.explorer"),)


def register(app: FastAPI, portal: Portal) -> None:
    """The explorer's routes."""
    node = portal.node

    @app.get("/explorer", response_class=HTMLResponse)
    def explorer(request: Request) -> HTMLResponse:
        """The chain's public status and, for those the node shows them to, the last blocks."""
        status = portal.read(node.status)
        return portal.page(
            request, "explorer.html", status=status, blocks=recent_blocks(node, status)
        )

    @app.post("/explorer/verify", response_class=HTMLResponse)
    def verify(request: Request, fields: FormFields) -> HTMLResponse:
        """Fetch a proof for a tx id or a state key and check it here, against the app
        hash the node gives for that block (see docs/web.md for what that trusts)."""
        target = fields.get("target", "").strip()
        is_tx = len(target) == 64 and all(c in "0123456789abcdef" for c in target.lower())
        doc = portal.read(lambda: node.prove_tx(target) if is_tx else node.prove_state(target))
        trusted, height = trusted_app_hash(node, int(doc["height"]))
        try:
            verdict, ok = verify_proof(doc, trusted), True
        except BadProof as e:
            verdict, ok = str(e), False
        status = portal.read(node.status)
        return portal.page(
            request,
            "explorer.html",
            status=status,
            blocks=recent_blocks(node, status),
            verdict=verdict,
            verified=ok,
            trusted_height=height,
            target=target,
        )


def recent_blocks(node: Client, status: dict[str, Any], count: int = 5) -> list[Any] | None:
    """The last `count` blocks, or None if the node shows blocks only to others."""
    top = int(status["height"])
    out = []
    for height in range(top, max(top - count, 0), -1):
        try:
            out.append(node.block(height))
        except ClientError:
            return None
    return out


def trusted_app_hash(node: Client, height: int) -> tuple[bytes | None, int | None]:
    """The app hash of block `height` as the node reports it: its block if the viewer
    may read blocks, else its public status if still at that height; else none."""
    try:
        return bytes.fromhex(node.block(height)["app_hash"]), height
    except ClientError:
        pass
    status = node.status()
    if int(status["height"]) == height:
        return bytes.fromhex(status["app_hash"]), height
    return None, None
