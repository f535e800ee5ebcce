"""The patient's pages: my records, who accessed them, consent."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from medchain.portal.core import (
    DAY_MS,
    MAX_DAYS,
    FormFields,
    NavEntry,
    Portal,
    Refused,
    items,
    words_for,
)

NAV: tuple[NavEntry, ...] = (
    ("/records", "nav.records"),
    ("/timeline", "nav.timeline"),
    ("/consent", "nav.consent"),
)


def is_break_glass(row: dict[str, Any]) -> bool:
    """An event of emergency access: a request, an approval, or a read on that basis."""
    attrs = row.get("attributes") or {}
    return "break_glass" in row["kind"] or attrs.get("basis") == "break_glass"


def is_refusal(row: dict[str, Any]) -> bool:
    """An access the chain refused (it is audited like one it allowed)."""
    return str(row["kind"]).endswith(".refused") or row.get("code", 0) != 0


def register(app: FastAPI, portal: Portal) -> None:
    """The patient's routes."""
    node = portal.node

    @app.get("/records", response_class=HTMLResponse)
    def records(request: Request) -> HTMLResponse:
        """The patient's records: type, registration date, which organisation holds it."""
        rows = portal.read(lambda: node.patient_records(portal.did))
        rows.sort(key=lambda r: (-int(r["created_time_ms"]), r["record_id"]))
        return portal.page(request, "records.html", records=rows)

    @app.get("/timeline", response_class=HTMLResponse)
    def timeline(request: Request) -> HTMLResponse:
        """Who accessed the patient's records and on what basis, newest first."""
        rows = portal.read(lambda: node.audit(0, 500, patient=portal.did))["events"]
        rows.reverse()
        return portal.page(
            request,
            "timeline.html",
            rows=rows,
            refused=is_refusal,
            break_glass=is_break_glass,
        )

    @app.get("/consent", response_class=HTMLResponse)
    def consent(request: Request) -> HTMLResponse:
        """The patient's grants, each with a revoke button, and the form for a new one.
        (No `done` from the query: the status line says only what a POST here signed.)"""
        grants = portal.read(lambda: node.grants(portal.did))
        return portal.page(request, "consent.html", grants=grants, done="")

    @app.post("/consent/grant", response_class=HTMLResponse)
    def grant(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign consent.grant, then show the grant list with what changed."""
        kind = fields.get("kind", "did")
        grantee = fields.get("grantee", "").strip()
        try:
            days = int(fields.get("days", "30"))
        except ValueError:
            raise Refused("BAD_FORM", "days must be a whole number", "e.g. 30") from None
        if kind not in ("did", "org", "role") or not grantee or not 1 <= days <= MAX_DAYS:
            raise Refused("BAD_FORM", "say who the grant is for", f"and for 1 to {MAX_DAYS} days")
        now = max(portal.read(node.block_time_ms), int(time.time() * 1000))
        out = portal.send(
            "consent",
            "grant",
            {
                "patient": portal.did,
                "grantee_kind": kind,
                "grantee": grantee,
                "purposes": [fields.get("purpose", "TREAT")],
                "scope_types": items(fields.get("types", "")),
                "scope_records": [],
                "expires_ms": now + days * DAY_MS,
            },
        )
        grant_id = out["events"][0]["attributes"]["grant_id"]
        grants = portal.read(lambda: node.grants(portal.did))
        done = words_for(request)("consent.granted", grant=grant_id, height=out["height"])
        return portal.page(request, "consent.html", grants=grants, done=done)

    @app.post("/consent/revoke", response_class=HTMLResponse)
    def revoke(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign consent.revoke; the page says from which block it holds."""
        grant_id = fields.get("grant_id", "")
        out = portal.send("consent", "revoke", {"grant_id": grant_id})
        grants = portal.read(lambda: node.grants(portal.did))
        done = words_for(request)("consent.revoked", grant=grant_id, height=out["height"])
        return portal.page(request, "consent.html", grants=grants, done=done)
