"""The regulator's dashboard: supervision alerts to acknowledge."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from medchain.portal.core import FormFields, NavEntry, Portal, words_for

NAV: tuple[NavEntry, ...] = (("/regulator", "nav.regulator"),)


def register(app: FastAPI, portal: Portal) -> None:
    """The regulator's routes."""
    node = portal.node

    @app.get("/regulator", response_class=HTMLResponse)
    def regulator(request: Request) -> HTMLResponse:
        """Supervision alerts (regulators and operators only; the node refuses others)."""
        alerts = portal.read(lambda: node.alerts())
        return portal.page(request, "regulator.html", alerts=alerts, done="")

    @app.post("/regulator/ack", response_class=HTMLResponse)
    def acknowledge(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign supervision.ack_alert with the regulator's note."""
        alert_id = fields.get("alert_id", "")
        portal.send(
            "supervision", "ack_alert", {"alert_id": alert_id, "note": fields.get("note", "")}
        )
        alerts = portal.read(lambda: node.alerts())
        done = words_for(request)("regulator.acked", alert=alert_id)
        return portal.page(request, "regulator.html", alerts=alerts, done=done)
