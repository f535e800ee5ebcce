"""What every portal page shares: who the user is, signing and reading through the
SDK's Client with their key, rendering a page in their language, and refusals.

Every page shows what the node answers to this key's signed reads and nothing
else: the node decides who may see what (gateway/policy.py), so a page never
widens it. A refusal is shown as the node words it (code, message, hint).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

import httpx
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader

from medchain import crypto
from medchain.contracts.identity.model import did_for_key
from medchain.edge.requester import ExchangeFailed
from medchain.exceptions import MedChainError
from medchain.portal.guard import Guard
from medchain.portal.messages import LANGUAGES, language_of, translator
from medchain.sdk.client import Client, ClientError, response_error
from medchain.sdk.signing import send_signed

HERE = Path(__file__).parent
DAY_MS = 86_400_000
MAX_FORM_BYTES = 16_384
MAX_DAYS = 3650
LANG_COOKIE = "medchain_lang"

NavEntry = tuple[str, str]  # (path, message id)


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


def local_path(path: str) -> str:
    """Where a redirect may go: a path of this app, never another site ("//evil")."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


def items(text: str) -> list[str]:
    """A comma-separated field as its items, blanks dropped."""
    return [v.strip() for v in text.split(",") if v.strip()]


def words_for(request: Request) -> Callable[..., str]:
    """`t(id, **fields)` in the language this browser chose."""
    return translator(language_of(request.cookies.get(LANG_COOKIE)))


class Portal:
    """The state of one portal run: the user's key, their client and the guard."""

    def __init__(
        self, node: Client, key: crypto.KeyPair, port: int, edge: str | None = None
    ) -> None:
        self.node = node
        self.key = key
        self.edge = edge.rstrip("/") if edge else None  # `--edge`: the org's edge, if given
        self.guard = Guard(port)
        self.did = did_for_key(key.suite, key.public)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
        self.tx_lock = threading.Lock()  # one tx at a time: nonces follow each other
        self.nav: list[tuple[NavEntry, ...]] = []  # each area's pages, the first its entry

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

    def edge_url(self, me: Me) -> str:
        """The edge this portal talks to: `--edge`, else the one the chain says the
        user's organisation published; Refused if neither."""
        if self.edge:
            return self.edge
        published = ""
        if me.org_id:
            published = str(self.read(lambda: self.node.org(me.org_id)).get("edge_url") or "")
        if not published:
            raise Refused(
                "NO_EDGE",
                "this portal knows no edge of your organisation",
                "start it with --edge URL, or publish the endpoint (identity.set_endpoint)",
                404,
            )
        return published

    def edge_call(
        self,
        me: Me,
        method: str,
        path: str,
        body: bytes = b"",
        timeout: float = 30.0,
        **params: str,
    ) -> Any:
        """A request signed with the user's key to their organisation's edge, and its JSON
        answer; the edge's refusal (or silence) as Refused. The edge decides who may."""
        url = self.edge_url(me)
        try:
            r = send_signed(
                self.key, self.node.chain_id, method, url, path, params or None, body, timeout
            )
        except httpx.HTTPError as e:
            raise Refused(
                "EDGE_UNREACHABLE",
                f"the edge at {url} does not answer: {e}",
                "is `medchain edge serve` running?",
                502,
            ) from None
        if r.status_code >= 400:
            raise refusal_of(response_error(r))
        return r.json()

    def page(
        self, request: Request, template: str, http_status: int = 200, **context: Any
    ) -> HTMLResponse:
        """Render a page in the user's language, with the session's CSRF token."""
        lang = language_of(request.cookies.get(LANG_COOKIE))
        session = self.guard.session_in(request.cookies)
        path = request.url.path
        # The area whose page this is; a form's answer (/referrals/act) belongs to its page's.
        area = next((a for a in self.nav if any(path == href for href, _ in a)), ()) or next(
            (a for a in self.nav if any(path.startswith(href + "/") for href, _ in a)), ()
        )
        # Where the language links come back to: this page, or for a form's answer (a
        # POST-only path such as /consent/grant) the page it is under, so switching
        # language never lands on a 405.
        under = [href for a in self.nav for href, _ in a if path.startswith(href + "/")]
        here = path if request.method == "GET" else max(under, key=len, default="/")
        html = self.env.get_template(template).render(
            t=translator(lang),
            lang=lang,
            languages=LANGUAGES,
            path=path,
            here=here,
            nav=self.nav,
            area=area,
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
    guard = request.app.state.portal.guard
    if not guard.csrf_ok(guard.session_in(request.cookies), fields.pop("csrf", "")):
        raise Refused("CSRF", "this form did not come from the portal", "reload the page", 403)
    return fields


FormFields = Annotated[dict[str, str], Depends(posted_form)]
