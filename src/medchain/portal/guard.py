"""Who may drive the local app: the browser that opened its launch link, and only
pages the app served itself.

The app listens on 127.0.0.1, but any process of any user on this machine can reach
loopback, and any web page the user visits can make the browser send requests to
it. So, as Jupyter does:
- `medchain portal` prints a link with a random launch token; opening it sets an
  HttpOnly, SameSite=Strict session cookie. Without the cookie every page answers
  401 and shows nothing of the chain.
- Every request must name this app in its Host header (127.0.0.1 or localhost with
  our port): a DNS-rebinding page has some other host name there.
- Every POST must carry the form's CSRF token (an HMAC of the session under a key
  only this process knows) and, when the browser sends one, an Origin of this app.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

SESSION_COOKIE = "medchain_portal"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


@dataclass
class Guard:
    """The launch token, the sessions it opened and the CSRF key of one app run."""

    port: int
    launch_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _csrf_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _sessions: set[str] = field(default_factory=set)

    def open_session(self, token: str) -> str | None:
        """A new session id for the right launch token (compared in constant time)."""
        if not hmac.compare_digest(token.encode(), self.launch_token.encode()):
            return None
        session = secrets.token_urlsafe(32)
        self._sessions.add(session)
        return session

    def has_session(self, session: str | None) -> bool:
        """Whether the cookie names a session this run opened."""
        return session is not None and session in self._sessions

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
