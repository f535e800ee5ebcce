"""The portal: one FastAPI app per user, serving 127.0.0.1 only, that reads and
signs through the SDK's Client with the user's key (portal/core.py), with each
area's pages in portal/pages/."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from medchain import crypto
from medchain.portal.core import HERE, LANG_COOKIE, Me, Portal, Refused, local_path
from medchain.portal.messages import language_of
from medchain.portal.pages import AREAS
from medchain.sdk.client import Client

__all__ = ["PortalServer", "create_app", "local_path"]

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


def create_app(node: Client, key: crypto.KeyPair, port: int, edge: str | None = None) -> FastAPI:
    """The portal app for `key`, reading and signing through `node`; `port` is the one
    it will be served on (the Host and Origin it accepts name it); `edge` the user's
    organisation's edge (default: the endpoint it published on chain)."""
    portal = Portal(node, key, port, edge)
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
        if not public and not g.has_session(g.session_in(request.cookies)):
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
        response.set_cookie(portal.guard.cookie, session, httponly=True, samesite="strict")
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

    for area in AREAS:
        portal.nav.append(area.NAV)
        area.register(app, portal)
    return app


def _secured(response: Response) -> Response:
    """Add the headers that keep the pages from being framed, cached or scripted."""
    response.headers.update(SECURITY_HEADERS)
    return response


class PortalServer:
    """uvicorn serving a portal on 127.0.0.1 from a background thread."""

    def __init__(
        self, node: Client, key: crypto.KeyPair, port: int, edge: str | None = None
    ) -> None:
        self.app = create_app(node, key, port, edge)
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
