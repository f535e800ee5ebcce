"""The hospital admin's pages: the organisation's members and their roles, its edge's
status, and imports sent to the edge.

Members come from the node's signed read `/v1/identity/orgs/{org}/members` (the org's
staff and node operators only); changes are identity transactions the chain checks
(only an org admin of that org may). The edge's status and the imports are signed
requests to the org's edge, which answers its own staff only. The portal decides
nothing about who may: a refusal is shown as the node or the edge words it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from medchain import crypto
from medchain.contracts.identity.model import did_for_key
from medchain.portal.core import FormFields, Me, NavEntry, Portal, Refused, items, words_for
from medchain.portal.imports import MAX_FILES, MAX_UPLOAD_BYTES, ImportRun, ImportRuns

NAV: tuple[NavEntry, ...] = (
    ("/admin", "nav.admin"),
    ("/admin/edge", "nav.admin_edge"),
    ("/admin/imports", "nav.admin_imports"),
)
STATUS_ACTIONS = {
    "suspend": "suspend_member",
    "reinstate": "reinstate_member",
    "revoke": "revoke_member",
}
FOLLOW_SECONDS = 2  # how often a followed import run's page reloads until the run ends


def members_of(portal: Portal, me: Me) -> dict[str, Any]:
    """The user's organisation's members as the node answers them to this key (a key
    of no organisation has none to list: nothing is asked)."""
    if not me.org_id:
        return {"org_id": "", "members": [], "complete": True}
    return dict(portal.read(lambda: portal.node.org_members(me.org_id)))


def edge_view(portal: Portal, me: Me) -> dict[str, Any]:
    """What the page shows of the edge: its signed staff status (the edge refuses
    anyone else), the endpoint the chain publishes for the org, and the chain's height."""
    url = portal.edge_url(me)
    status = dict(portal.edge_call(me, "GET", "/edge/v1/staff/status"))
    org = portal.read(lambda: portal.node.org(str(status["org_id"])))
    height = int(portal.read(portal.node.status)["height"])
    synced = status.get("synced_height")
    return {
        "url": url,
        "status": status,
        "published": str(org.get("edge_url") or ""),
        "chain_height": height,
        "behind": None if synced is None else max(height - int(synced), 0),
        "same_org": status["org_id"] == me.org_id,
    }


async def uploaded_files(request: Request, portal: Portal) -> tuple[list[tuple[str, bytes]], str]:
    """The files of a multipart upload (bounded) and its patient field, only with this
    session's CSRF token."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Refused("BAD_FORM", "send the import form as the page does", "", 400)
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > MAX_UPLOAD_BYTES:
        mib = MAX_UPLOAD_BYTES // (1024 * 1024)
        raise Refused("TOO_LARGE", f"an upload may hold at most {mib} MiB", "split it", 413)
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=8)
    except HTTPException as e:  # Starlette's answer to a malformed or oversized form
        raise Refused("BAD_FORM", str(e.detail), f"at most {MAX_FILES} files", 400) from None
    try:
        token = form.get("csrf")
        session = portal.guard.session_in(request.cookies)
        if not isinstance(token, str) or not portal.guard.csrf_ok(session, token):
            raise Refused("CSRF", "this form did not come from the portal", "reload the page", 403)
        files = []
        for upload in form.getlist("file"):
            if isinstance(upload, str):
                continue
            body = await upload.read()
            if body:
                files.append((upload.filename or "upload", body))
        patient = form.get("patient")
        return files, patient.strip() if isinstance(patient, str) else ""
    finally:
        await form.close()


def register(app: FastAPI, portal: Portal) -> None:
    """The admin's routes."""
    runs = ImportRuns()
    app.state.import_runs = runs
    app.router.on_shutdown.append(runs.close)

    def members_page(request: Request, done: str = "", me: Me | None = None) -> HTMLResponse:
        me = me or portal.me()
        listing = members_of(portal, me)
        return portal.page(
            request, "admin.html", done=done, me=me, listing=listing, actions=STATUS_ACTIONS
        )

    @app.get("/admin", response_class=HTMLResponse)
    def admin(request: Request) -> HTMLResponse:
        """The organisation's members with forms to add one, change roles and status
        (the status line is filled only by the POST that signed, never from a link)."""
        return members_page(request)

    @app.post("/admin/members", response_class=HTMLResponse)
    def add_member(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign identity.add_member: the chain checks this key administers the org."""
        try:
            public = bytes.fromhex(fields.get("public_key", "").strip())
        except ValueError:
            raise Refused("BAD_FORM", "the public key is not hex", "paste it as hex") from None
        roles = items(fields.get("roles", ""))
        me = portal.me()
        portal.send(
            "identity",
            "add_member",
            {
                "org_id": fields.get("org_id") or me.org_id,
                "public_key": public,
                "roles": roles,
                "name": fields.get("name", ""),
            },
        )
        did = did_for_key(crypto.DEFAULT_SUITE, public)
        done = words_for(request)("admin.added", did=did, roles=", ".join(roles))
        return members_page(request, done, me)

    @app.post("/admin/members/roles", response_class=HTMLResponse)
    def set_roles(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign identity.set_roles: the member's roles replaced by those given."""
        did, roles = fields.get("did", ""), items(fields.get("roles", ""))
        out = portal.send("identity", "set_roles", {"did": did, "roles": roles})
        t = words_for(request)
        return members_page(
            request, t("admin.roles_set", did=did, roles=", ".join(roles), height=out["height"])
        )

    @app.post("/admin/members/status", response_class=HTMLResponse)
    def set_status(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign identity.suspend_member, reinstate_member or revoke_member; revoking is
        for good, so it needs the confirmation box ticked."""
        did, action = fields.get("did", ""), fields.get("action", "")
        if action not in STATUS_ACTIONS:
            raise Refused("BAD_FORM", "choose suspend, reinstate or revoke")
        if action == "revoke" and fields.get("confirm") != "yes":
            raise Refused(
                "NOT_CONFIRMED",
                "revoking a member cannot be undone",
                "tick the box that says so, or suspend instead",
            )
        payload = {"did": did, "reason": fields.get("reason", "")}
        out = portal.send("identity", STATUS_ACTIONS[action], payload)
        t = words_for(request)
        done = t(
            "admin.status_set", did=did, action=t(f"admin.action_{action}"), height=out["height"]
        )
        return members_page(request, done)

    @app.get("/admin/edge", response_class=HTMLResponse)
    def edge(request: Request) -> HTMLResponse:
        """The org's edge as it reports itself to this key (records, synced height,
        readiness) beside the endpoint the chain publishes for the org."""
        me = portal.me()
        return portal.page(request, "admin_edge.html", me=me, view=edge_view(portal, me))

    @app.get("/admin/imports", response_class=HTMLResponse)
    def imports(request: Request) -> HTMLResponse:
        """This portal's import runs with their progress, and the upload form."""
        listed = runs.runs()
        going = any(not r.finished for r in listed)
        return portal.page(
            request,
            "admin_imports.html",
            runs=listed,
            going=going,
            max_files=MAX_FILES,
            max_mib=MAX_UPLOAD_BYTES // (1024 * 1024),
        )

    @app.post("/admin/imports")
    async def start_import(request: Request) -> Response:
        """Queue the uploaded files for the edge and go to the run's page (303, so a
        reload does not upload again)."""
        files, patient = await uploaded_files(request, portal)
        if not files:
            raise Refused("BAD_FORM", "choose a FHIR Bundle or NDJSON file", "", 400)
        me = portal.me()
        portal.edge_url(me)  # no edge known: say so now, not in the run

        def send(body: bytes, for_patient: str | None) -> dict[str, Any]:
            params = {"patient": for_patient} if for_patient else {}
            path = "/edge/v1/import/fhir"
            return dict(portal.edge_call(me, "POST", path, body, 600.0, **params))

        run = runs.start(files, patient or None, send)
        return RedirectResponse(f"/admin/imports/{run.run_id}", 303)

    @app.get("/admin/imports/{run_id}", response_class=HTMLResponse)
    def import_run(request: Request, run_id: int, live: bool = False) -> HTMLResponse:
        """One run: each file's progress and, once sent, the edge's report. `?live=1`
        (opt-in, with a link to stop) reloads it every few seconds until the run ends,
        by an HTTP Refresh header as the regulator's stream does (see docs/web.md)."""
        run: ImportRun | None = runs.get(run_id)
        if run is None:
            raise Refused("NOT_FOUND", "no such import in this portal", "", 404)
        going = not run.finished  # read once: the page and the header agree
        response = portal.page(
            request, "admin_import.html", run=run, going=going, live=live and going
        )
        if live and going:
            response.headers["Refresh"] = str(FOLLOW_SECONDS)
        return response
