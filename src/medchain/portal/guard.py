"""Who may drive the local app: the browser that opened its launch link, and only
pages the app served itself.

The app listens on 127.0.0.1, but any process of any user on this machine can reach
loopback, and any web page the user visits can make the browser send requests to
it. So, as Jupyter does:
- `medchain portal` prints a link with a random launch token; opening it sets an
  HttpOnly, SameSite=Strict session cookie named after the port (browsers do not
  keep cookies apart by port: two portals of one machine must not overwrite each
  other's). A session lasts SESSION_SECONDS. Without the cookie every page answers
  401 and shows nothing of the chain.
- Every request must name this app in its Host header (127.0.0.1 or localhost with
  our port): a DNS-rebinding page has some other host name there.
- Every POST must carry the form's CSRF token (an HMAC of the session under a key
  only this process knows) and, when the browser sends one, an Origin of this app.

What this does not stop (docs/web.md): cookies are not kept apart by port, so a
hostile process of another user on the same machine that gets the user's browser
to visit its own loopback port receives the session cookie and can drive the
portal until the session ends. Run the portal on a machine you do not share.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
SESSION_SECONDS = 12 * 3600  # a working day; then open the launch link again


@dataclass
class Guard:
    """The launch token, the sessions it opened and the CSRF key of one app run."""

    port: int
    launch_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _csrf_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _sessions: dict[str, float] = field(default_factory=dict)  # session -> opened (monotonic)

    @property
    def cookie(self) -> str:
        """The session cookie's name: this portal's own, by port."""
        return f"medchain_portal_{self.port}"

    def session_in(self, cookies: Mapping[str, str]) -> str:
        """The session a request's cookies carry ("" if none)."""
        return cookies.get(self.cookie) or ""

    def open_session(self, token: str) -> str | None:
        """A new session id for the right launch token (compared in constant time)."""
        if not hmac.compare_digest(token.encode(), self.launch_token.encode()):
            return None
        session = secrets.token_urlsafe(32)
        self._sessions[session] = time.monotonic()
        return session

    def has_session(self, session: str | None) -> bool:
        """Whether the cookie names a session this run opened, not yet SESSION_SECONDS old."""
        opened = self._sessions.get(session or "")
        return opened is not None and time.monotonic() - opened < SESSION_SECONDS

    def csrf_token(self, session: str) -> str:
        """The token every form of this session carries."""
        return hmac.new(self._csrf_key, session.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: str, token: str) -> bool:
        """Whether a POSTed token is this session's."""
        return hmac.compare_digest(self.csrf_token(session), token)

    def host_ok(self, host: str | None) -> bool:
        """Whether the Host header names this app on loopback (not a rebinding name)."""
        return host in {f"{h}:{self.port}" for h in LOOPBACK_HOSTS}

    def origin_ok(self, origin: str | None) -> bool:
        """An Origin, when sent, must be this app (browsers send it on every POST)."""
        if origin is None:
            return True
        return origin in {f"http://{h}:{self.port}" for h in LOOPBACK_HOSTS}
