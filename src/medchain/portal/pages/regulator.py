"""The regulator's dashboard: supervision alerts to acknowledge, the relayed streams
(heights, gaps, recent events), charts of what the regulator chain holds, and
downloads of the alerts and of each chart's data.

Every page and download starts with a signed read the node answers to regulators
and operators only (`/v1/supervision/...`): anyone else gets the node's refusal and
no data. The charts are counted here from the relayed digests the node returned.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from medchain.portal.charts import bar_chart
from medchain.portal.core import FormFields, NavEntry, Portal, Refused, words_for
from medchain.portal.supervision_stats import (
    RECENT,
    WINDOW,
    Table,
    chart_series,
    chart_tables,
    complete_height,
    readable_source,
    recent_events,
    relayed_digests,
    source_head,
    stream_view,
)
from medchain.sdk.client import Client

NAV: tuple[NavEntry, ...] = (
    ("/regulator", "nav.regulator"),
    ("/regulator/stream", "regulator.nav.stream"),
    ("/regulator/charts", "regulator.nav.charts"),
    ("/regulator/exports", "regulator.nav.exports"),
)
CHARTS = ("accesses", "refusals", "break_glass", "cold_chain", "recognition")
ALERT_COLUMNS = (
    "alert_id",
    "rule",
    "source",
    "height",
    "subject",
    "patient",
    "detail",
    "business_time_ms",
    "raised_at_ms",
    "status",
    "acked_by",
    "note",
)
LIVE_SECONDS = 5
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def register(app: FastAPI, portal: Portal) -> None:
    """The regulator's routes. `app.state.regulator_sources` maps a relayed source's
    name to its business node's URL (`medchain portal --source`), whose public
    status gives the source's height on the stream page."""
    node = portal.node
    if not hasattr(app.state, "regulator_sources"):
        app.state.regulator_sources = {}

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

    @app.get("/regulator/stream", response_class=HTMLResponse)
    def stream(request: Request, live: bool = False) -> HTMLResponse:
        """Each relayed source: last relayed height, the source's own height when
        known, missing heights, and the newest relayed events. `?live=1` reloads
        every few seconds (an HTTP Refresh, no script) until the user stops it."""
        streams = portal.read(lambda: node.get("/v1/supervision/streams"))
        sources: dict[str, str] = request.app.state.regulator_sources
        views, recent = [], {}
        for s in sorted(streams, key=lambda s: str(s["source"])):
            relayed = complete_height(s)
            window_from = max(int(s["first_height"]), relayed - RECENT + 1)
            digests = _digests(portal, node, s, window_from, relayed)
            recent[str(s["source"])] = digests
            head = source_head(sources.get(str(s["source"])))
            views.append(stream_view(s, digests, window_from, head))
        response = portal.page(
            request, "regulator_stream.html", streams=views, events=recent_events(recent), live=live
        )
        if live:
            response.headers["Refresh"] = str(LIVE_SECONDS)
        return response

    @app.get("/regulator/charts", response_class=HTMLResponse)
    def charts(request: Request) -> HTMLResponse:
        """Charts of the relayed audit events, each with its data table."""
        tables = chart_tables_of(portal, node)
        drawn = {name: _drawing(tables[name]) for name in CHARTS}
        return portal.page(
            request,
            "regulator_charts.html",
            tables=tables,
            charts=CHARTS,
            drawn=drawn,
            window=WINDOW,
        )

    @app.get("/regulator/exports", response_class=HTMLResponse)
    def exports(request: Request) -> HTMLResponse:
        """Links to the downloads (shown only to those the node shows alerts to)."""
        portal.read(lambda: node.alerts(status="open"))
        return portal.page(request, "regulator_exports.html", charts=CHARTS)

    @app.get("/regulator/export/{name}.{fmt}")
    def export(name: str, fmt: str) -> Response:
        """The alerts or one chart's data as CSV or JSON, as an attachment."""
        if fmt not in ("csv", "json") or (name != "alerts" and name not in CHARTS):
            raise Refused("NOT_FOUND", "no such download", "pick one from the exports page", 404)
        if name == "alerts":
            alerts = portal.read(lambda: node.alerts())
            table = Table(
                "alerts",
                ALERT_COLUMNS,
                [tuple(a.get(c, "") for c in ALERT_COLUMNS) for a in alerts],
            )
        else:
            table = chart_tables_of(portal, node)[name]
        body = table_csv(table) if fmt == "csv" else table_json(table)
        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
        disposition = f'attachment; filename="medchain-{name}.{fmt}"'
        return Response(body, media_type=media, headers={"Content-Disposition": disposition})


def _digests(
    portal: Portal, node: Client, stream: dict[str, Any], first: int, last: int
) -> list[dict[str, Any]]:
    """A stream's digests first..last, through the node's refusal if it refuses."""
    if not readable_source(str(stream["source"])) or last < first:
        return []
    digests: list[dict[str, Any]] = portal.read(
        lambda: relayed_digests(node, str(stream["source"]), first, last)
    )
    return digests


def chart_tables_of(portal: Portal, node: Client) -> dict[str, Table]:
    """The charts' data from the newest WINDOW relayed heights of every source."""
    streams = portal.read(lambda: node.get("/v1/supervision/streams"))
    digests: list[dict[str, Any]] = []
    for s in streams:
        relayed = complete_height(s)
        digests += _digests(
            portal, node, s, max(int(s["first_height"]), relayed - WINDOW + 1), relayed
        )
    return chart_tables(digests)


def _drawing(table: Table) -> Markup | None:
    """A chart's SVG, or None when it has no data (the page says so instead)."""
    if not table.rows:
        return None
    categories, series, percent = chart_series(table)
    return bar_chart(table.name, categories, series, stacked=not percent, percent=percent)


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula (chain text is anyone's)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def table_csv(table: Table) -> str:
    """A table as CSV: a header row of its column names, then its rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(table.columns)
    writer.writerows([_cell(v) for v in row] for row in table.rows)
    return out.getvalue()


def table_json(table: Table) -> str:
    """A table as JSON: one object per row, keyed by column."""
    rows = [dict(zip(table.columns, row, strict=True)) for row in table.rows]
    return json.dumps({"name": table.name, "rows": rows}, ensure_ascii=False, indent=1)
