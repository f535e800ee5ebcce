"""The hospital admin's pages: add a member."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from medchain import crypto
from medchain.contracts.identity.model import did_for_key
from medchain.portal.core import FormFields, NavEntry, Portal, Refused, items, words_for

NAV: tuple[NavEntry, ...] = (("/admin", "nav.admin"),)


def register(app: FastAPI, portal: Portal) -> None:
    """The admin's routes."""

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
        return portal.page(request, "admin.html", done=done, me=me)
