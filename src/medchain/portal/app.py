"""The portal's pages: one FastAPI app per user, serving 127.0.0.1 only, that reads
and signs through the SDK's Client with the user's key.

Every page shows what the node answers to this key's signed reads and nothing
else: the node decides who may see what (gateway/policy.py), so a page never
widens it. A refusal is shown as the node words it (code, message, hint).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader

from medchain import crypto
from medchain.contracts.identity.model import did_for_key
from medchain.edge.requester import ExchangeFailed, fetch_record
from medchain.exceptions import MedChainError
from medchain.portal.fhir_view import resource_view
from medchain.portal.guard import SESSION_COOKIE, Guard
from medchain.portal.messages import LANGUAGES, language_of, translator
from medchain.sdk.client import Client, ClientError
from medchain.sdk.proofs import BadProof, verify_proof

HERE = Path(__file__).parent
DAY_MS = 86_400_000
MAX_FORM_BYTES = 16_384
MAX_DAYS = 3650
LANG_COOKIE = "medchain_lang"
SECURITY_HEADERS = {
    # No script at all, nothing from elsewhere, never framed: a page can only be what
    # this app rendered, and a form can only post back to it.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make Origin "null"
    "Cache-Control": "no-store",
}


class Refused(MedChainError):
    """A page cannot be shown or an action was refused: what, and what to do."""

    def __init__(self, code: str, message: str, hint: str = "", status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.hint, self.status = code, message, hint, status


@dataclass(frozen=True)
class Me:
    """Who this app speaks for, as the chain's public DID document says."""

    did: str
    roles: tuple[str, ...]
    org_id: str
    registered: bool


def when(time_ms: int) -> str:
    """A block time as `2026-12-06 09:30 UTC` (the chain's clock is UTC)."""
    return datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def refusal_of(e: ClientError | ExchangeFailed) -> Refused:
    """The node's or the exchange's refusal, as the page shows it."""
    status = e.status if isinstance(e, ClientError) and e.status else 400
    return Refused(e.code, e.message, e.hint, status)


def is_break_glass(row: dict[str, Any]) -> bool:
    """An event of emergency access: a request, an approval, or a read on that basis."""
    attrs = row.get("attributes") or {}
    return "break_glass" in row["kind"] or attrs.get("basis") == "break_glass"


def is_refusal(row: dict[str, Any]) -> bool:
    """An access the chain refused (it is audited like one it allowed)."""
    return str(row["kind"]).endswith(".refused") or row.get("code", 0) != 0


def local_path(path: str) -> str:
    """Where a redirect may go: a path of this app, never another site ("//evil")."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


class Portal:
    """The state of one portal run: the user's key, their client and the guard."""

    def __init__(self, node: Client, key: crypto.KeyPair, port: int) -> None:
        self.node = node
        self.key = key
        self.guard = Guard(port)
        self.did = did_for_key(key.suite, key.public)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
        self.tx_lock = threading.Lock()  # one tx at a time: nonces follow each other

    def me(self) -> Me:
        """The user's roles and organisation from their public DID document."""
        try:
            doc = self.node.did_document(self.did)
        except ClientError:
            return Me(self.did, (), "", False)
        info = doc.get("medchain") or {}
        return Me(self.did, tuple(info.get("roles") or ()), str(info.get("org_id") or ""), True)

    def send(self, contract: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Sign with the user's key, submit and wait for the block; Refused if refused."""
        with self.tx_lock:
            try:
                out = self.node.send(self.key, contract, action, payload)
            except ClientError as e:
                raise refusal_of(e) from None
        if out.get("code") != 0:
            raise Refused(str(out.get("code_name")), str(out.get("log", "")), "", 409)
        return out

    def read(self, fn: Callable[[], Any]) -> Any:
        """A signed read; the node's refusal as Refused."""
        try:
            return fn()
        except ClientError as e:
            raise refusal_of(e) from None

    def page(
        self, request: Request, template: str, http_status: int = 200, **context: Any
    ) -> HTMLResponse:
        """Render a page in the user's language, with the session's CSRF token."""
        lang = language_of(request.cookies.get(LANG_COOKIE))
        session = request.cookies.get(SESSION_COOKIE) or ""
        html = self.env.get_template(template).render(
            t=translator(lang),
            lang=lang,
            languages=LANGUAGES,
            path=request.url.path,
            csrf=self.guard.csrf_token(session) if self.guard.has_session(session) else "",
            me=context.pop("me", None) or self.me(),
            when=when,
            **context,
        )
        return HTMLResponse(html, status_code=http_status)


async def posted_form(request: Request) -> dict[str, str]:
    """A POSTed form (urlencoded, bounded), only with this session's CSRF token."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Refused("TOO_LARGE", "the form is too large", "", 413)
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    session = request.cookies.get(SESSION_COOKIE) or ""
    if not request.app.state.portal.guard.csrf_ok(session, fields.pop("csrf", "")):
        raise Refused("CSRF", "this form did not come from the portal", "reload the page", 403)
    return fields


FormFields = Annotated[dict[str, str], Depends(posted_form)]


def create_app(node: Client, key: crypto.KeyPair, port: int) -> FastAPI:
    """The portal app for `key`, reading and signing through `node`; `port` is the one
    it will be served on (the Host and Origin it accepts name it)."""
    portal = Portal(node, key, port)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.portal = portal
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Any]) -> Response:
        """Host on every request, Origin on POSTs, a session everywhere but the login."""
        g = portal.guard
        if not g.host_ok(request.headers.get("host")):
            return Response("wrong Host: open the portal at 127.0.0.1", 421)
        if request.method == "POST" and not g.origin_ok(request.headers.get("origin")):
            return Response("cross-site request refused", 403)
        path = request.url.path
        public = path == "/login" or path.startswith("/static/")
        if not public and not g.has_session(request.cookies.get(SESSION_COOKIE)):
            response: Response = portal.page(request, "login.html", 401, me=Me("", (), "", False))
            return _secured(response)
        return _secured(await call_next(request))

    @app.exception_handler(Refused)
    async def refused(request: Request, e: Refused) -> Response:
        """A refusal as a page: the code, what happened and what to do."""
        return _secured(portal.page(request, "error.html", e.status, error=e))

    @app.get("/login")
    def login(token: str = "") -> Response:
        """The launch link: a right token opens a session cookie for this browser."""
        session = portal.guard.open_session(token)
        if session is None:
            return Response("wrong or missing launch token", 401)
        response = RedirectResponse("/", 303)
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict")
        return response

    @app.get("/lang/{lang}")
    def set_language(lang: str, next: str = "/") -> Response:
        """Switch the pages' language (a preference cookie, nothing on chain)."""
        response = RedirectResponse(local_path(next), 303)
        response.set_cookie(LANG_COOKIE, language_of(lang), samesite="strict")
        return response

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        """Who this key is on the chain, and where to go."""
        return portal.page(request, "home.html")

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
                "scope_types": _items(fields.get("types", "")),
                "scope_records": [],
                "expires_ms": now + days * DAY_MS,
            },
        )
        grant_id = out["events"][0]["attributes"]["grant_id"]
        t = translator(language_of(request.cookies.get(LANG_COOKIE)))
        grants = portal.read(lambda: node.grants(portal.did))
        done = t("consent.granted", grant=grant_id, height=out["height"])
        return portal.page(request, "consent.html", grants=grants, done=done)

    @app.post("/consent/revoke", response_class=HTMLResponse)
    def revoke(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign consent.revoke; the page says from which block it holds."""
        grant_id = fields.get("grant_id", "")
        out = portal.send("consent", "revoke", {"grant_id": grant_id})
        t = translator(language_of(request.cookies.get(LANG_COOKIE)))
        grants = portal.read(lambda: node.grants(portal.did))
        done = t("consent.revoked", grant=grant_id, height=out["height"])
        return portal.page(request, "consent.html", grants=grants, done=done)

    @app.get("/clinician", response_class=HTMLResponse)
    def clinician(request: Request, patient: str = "") -> HTMLResponse:
        """A patient's records this clinician may see (the node leaves out the rest)."""
        rows = portal.read(lambda: node.patient_records(patient)) if patient else None
        return portal.page(request, "clinician.html", patient=patient, records=rows)

    @app.post("/clinician/read", response_class=HTMLResponse)
    def read_record(request: Request, fields: FormFields) -> HTMLResponse:
        """The whole exchange (request on chain, fetch from the custodian's edge,
        decrypt here, check the hash, acknowledge), then the record rendered."""
        record_id, purpose = fields.get("record_id", ""), fields.get("purpose", "TREAT")
        with portal.tx_lock:
            try:
                got = fetch_record(node, key, record_id, purpose)
            except (ExchangeFailed, ClientError) as e:
                raise refusal_of(e) from None
        try:
            resource = json.loads(got.plaintext)
        except ValueError:
            raise Refused("NOT_FHIR", "the record is not FHIR JSON", "", 422) from None
        return portal.page(
            request,
            "record.html",
            record_id=record_id,
            session_id=got.session_id,
            view=resource_view(resource if isinstance(resource, dict) else {}),
        )

    @app.get("/admin", response_class=HTMLResponse)
    def admin(request: Request) -> HTMLResponse:
        """The form an organisation's admin adds staff with (the status line is filled
        only by the POST that signed, never from a link)."""
        return portal.page(request, "admin.html", done="")

    @app.post("/admin/members", response_class=HTMLResponse)
    def add_member(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign identity.add_member: the chain checks this key administers the org."""
        try:
            public = bytes.fromhex(fields.get("public_key", "").strip())
        except ValueError:
            raise Refused("BAD_FORM", "the public key is not hex", "paste it as hex") from None
        roles = _items(fields.get("roles", ""))
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
        t = translator(language_of(request.cookies.get(LANG_COOKIE)))
        done = t("admin.added", did=did, roles=", ".join(roles))
        return portal.page(request, "admin.html", done=done, me=me)

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
        t = translator(language_of(request.cookies.get(LANG_COOKIE)))
        alerts = portal.read(lambda: node.alerts())
        return portal.page(
            request, "regulator.html", alerts=alerts, done=t("regulator.acked", alert=alert_id)
        )

    @app.get("/explorer", response_class=HTMLResponse)
    def explorer(request: Request) -> HTMLResponse:
        """The chain's public status and, for those the node shows them to, the last blocks."""
        status = portal.read(node.status)
        return portal.page(
            request, "explorer.html", status=status, blocks=_recent_blocks(node, status)
        )

    @app.post("/explorer/verify", response_class=HTMLResponse)
    def verify(request: Request, fields: FormFields) -> HTMLResponse:
        """Fetch a proof for a tx id or a state key and check it here, against the app
        hash the node gives for that block (see docs/web.md for what that trusts)."""
        target = fields.get("target", "").strip()
        is_tx = len(target) == 64 and all(c in "0123456789abcdef" for c in target.lower())
        doc = portal.read(lambda: node.prove_tx(target) if is_tx else node.prove_state(target))
        trusted, height = _trusted_app_hash(node, int(doc["height"]))
        try:
            verdict, ok = verify_proof(doc, trusted), True
        except BadProof as e:
            verdict, ok = str(e), False
        status = portal.read(node.status)
        return portal.page(
            request,
            "explorer.html",
            status=status,
            blocks=_recent_blocks(node, status),
            verdict=verdict,
            verified=ok,
            trusted_height=height,
            target=target,
        )

    return app


def _items(text: str) -> list[str]:
    """A comma-separated field as its items, blanks dropped."""
    return [v.strip() for v in text.split(",") if v.strip()]


def _secured(response: Response) -> Response:
    """Add the headers that keep the pages from being framed, cached or scripted."""
    response.headers.update(SECURITY_HEADERS)
    return response


def _recent_blocks(node: Client, status: dict[str, Any], count: int = 5) -> list[Any] | None:
    """The last `count` blocks, or None if the node shows blocks only to others."""
    top = int(status["height"])
    out = []
    for height in range(top, max(top - count, 0), -1):
        try:
            out.append(node.block(height))
        except ClientError:
            return None
    return out


def _trusted_app_hash(node: Client, height: int) -> tuple[bytes | None, int | None]:
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


class PortalServer:
    """uvicorn serving a portal on 127.0.0.1 from a background thread."""

    def __init__(self, node: Client, key: crypto.KeyPair, port: int) -> None:
        self.app = create_app(node, key, port)
        self.portal: Portal = self.app.state.portal
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self.server.run, name="portal", daemon=True)

    @property
    def launch_url(self) -> str:
        """The link that signs a browser in (print it only to the user's terminal)."""
        return f"{self.url}/login?token={self.portal.guard.launch_token}"

    def start(self, timeout: float = 15.0) -> None:
        """Serve, returning once listening; RuntimeError if not within `timeout`."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the portal did not start on {self.url} (port in use?)")
            time.sleep(0.05)

    def stop(self) -> None:
        """Finish the requests in flight and stop."""
        self.server.should_exit = True
        self._thread.join(timeout=5)
