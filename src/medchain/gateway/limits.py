"""What one client may ask of a node's gateway or an edge, enforced before any work.

Both servers are reachable by strangers: a patient's phone, a self-registered
key, anyone on the network. Without limits a few requests could hold every
worker (long waits), fill memory (a body read whole before its size is known)
or flood the chain (self-registrations). So, in front of every route:

- a token bucket per client address (and, once a signature verified, per
  signing key) answers 429 with Retry-After when a client asks too fast, and a
  cap on the requests one address has in flight at once;
- the body is counted as it streams in and refused with 413 the moment it
  passes the route's cap, whatever Content-Length said (chunked bodies too);
- on signed routes the signature headers must be present, well formed and
  fresh before a byte of the body is read (the signature itself needs the body
  and is checked by the route);
- JSON bodies nested deeper than MAX_JSON_DEPTH are refused with 400 before
  any parser recurses into them.

Limits are configuration of one server (`Limits`), never consensus: two nodes
may set them differently. Counters live in memory and start empty on restart.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medchain import crypto
from medchain.contracts.exchange.proof import MAX_SKEW_MS
from medchain.exceptions import MedChainError
from medchain.gateway.errors import RateLimited, error_body
from medchain.gateway.limit_config import Limits as Limits  # re-exported for the servers
from medchain.sdk.signing import HEADERS, BadRequestSignature

KIB = 1024
# The largest record an edge stores; an import may send a few in one body.
MAX_RECORD_BYTES = 64 * 1024 * 1024
MIB = 1024 * KIB
DEFAULT_BODY_CAP = 64 * KIB
# The largest EPCIS document an edge captures in one request: thousands of events,
# more than a capture batch needs, and a bound on the work of hashing one.
MAX_EPCIS_BYTES = 8 * MIB
MAX_JSON_DEPTH = 100
MAX_TRACKED_CLIENTS = 50_000
SELF_REGISTRATION = ("identity", "register_patient")
MAX_SQL_INT = 2**63 - 1  # bound for any integer a route passes to SQLite


class JsonTooDeep(MedChainError, ValueError):
    """A JSON body nests arrays or objects deeper than MAX_JSON_DEPTH."""


# -- token buckets -------------------------------------------------------------


class Buckets:
    """A token bucket per key (client address, signing key, or one for all).

    `rate` tokens per second refill up to `burst`; a request takes one. Least
    recently used keys are forgotten beyond MAX_TRACKED_CLIENTS, so many
    addresses cannot grow memory without bound (a forgotten key starts full).
    """

    def __init__(self, rate: float, burst: int, what: str) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.what = what
        self._lock = threading.Lock()
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def unlimited(self) -> bool:
        """A rate of zero or less turns the limit off (e.g. in tests)."""
        return self.rate <= 0

    def take(self, key: str, now: float | None = None) -> None:
        """Spend one token of `key`'s bucket, or raise RateLimited."""
        if self.unlimited:
            return
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._state.pop(key, (float(self.burst), t))
            tokens = min(float(self.burst), tokens + (t - last) * self.rate)
            if tokens < 1.0:
                self._state[key] = (tokens, t)
                raise RateLimited(f"too many {self.what}", (1.0 - tokens) / self.rate)
            self._state[key] = (tokens - 1.0, t)
            while len(self._state) > MAX_TRACKED_CLIENTS:
                self._state.popitem(last=False)


class Counters:
    """How many of something (requests in flight, open waits) each key holds."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    def held(self, key: str | None = None) -> int:
        """What `key` holds now, or everyone together."""
        with self._lock:
            return sum(self._held.values()) if key is None else self._held.get(key, 0)

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold one for the duration, or raise RateLimited if `key` holds its limit."""
        with self._lock:
            n = self._held.get(key, 0)
            if self.limit > 0 and n >= self.limit:
                raise RateLimited(f"too many {self.what} at once ({self.limit})", 1.0)
            self._held[key] = n + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._held[key] - 1
                if left:
                    self._held[key] = left
                else:
                    del self._held[key]


class Limiter:
    """The live counters behind one server's `Limits` (kept in app.state.limiter)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.requests = Buckets(limits.rate, limits.burst, "requests from this address")
        self.signers = Buckets(limits.signer_rate, limits.signer_burst, "requests by this key")
        self.in_flight = Counters(limits.concurrency, "requests from this address")
        self.waits = Counters(limits.max_waits, "open transaction waits from this address")
        per_minute = 1 / 60
        self.self_registrations = Buckets(
            limits.self_registration_rate * per_minute,
            limits.self_registration_burst,
            "patient self-registrations from this address",
        )
        self.all_self_registrations = Buckets(
            limits.self_registration_gateway_rate * per_minute,
            limits.self_registration_gateway_burst,
            "patient self-registrations at this gateway",
        )

    def wait_seconds(self, asked: float) -> float:
        """The time a wait is held: what the client asked, at most the cap."""
        return max(0.0, min(asked, self.limits.max_wait_seconds))

    def charge_signer(self, suite: str, public_key: bytes) -> None:
        """Count one request by a key whose signature verified (RateLimited if over)."""
        self.signers.take(f"{suite}:{public_key.hex()}")

    def charge_self_registration(self, client: str) -> None:
        """Count one identity.register_patient tx from `client` against the
        per-address and the gateway-wide budgets (RateLimited if either is spent)."""
        self.self_registrations.take(client)
        self.all_self_registrations.take("*")

    @asynccontextmanager
    async def wait_slot(self, client: str) -> AsyncIterator[None]:
        """One of the client's open waits, for the duration."""
        with self.waits.hold(client):
            yield


def limiter_of(app: Any) -> Limiter:
    """The app's Limiter (a default one if the app was built without)."""
    state = app.state
    if not hasattr(state, "limiter"):
        state.limiter = Limiter(Limits())
    limiter: Limiter = state.limiter
    return limiter


def client_address(scope: Mapping[str, Any]) -> str:
    """Who is asking, for counting: the peer address of the connection."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


# -- bodies --------------------------------------------------------------------


@dataclass(frozen=True)
class RouteRule:
    """What a route accepts: the largest body, whether the request must carry
    signature headers (checked before the body), and whether the body is JSON
    (its nesting is checked before any parser sees it)."""

    method: str
    path: re.Pattern[str]
    max_body: int
    signed: bool = False
    json: bool = False


def rule(
    method: str, path: str, max_body: int, signed: bool = False, json: bool = False
) -> RouteRule:
    """A RouteRule from a path pattern, so the rule tables read as one line a route."""
    return RouteRule(method, re.compile(path), max_body, signed, json)


TX_HEX_BYTES = 2 * MIB  # TxIn.tx: hex of a tx, at most 2 MiB of characters
NODE_RULES = (
    rule("POST", r"/v1/txs", TX_HEX_BYTES + 4 * KIB, json=True),
    rule("POST", r"/v1/txs/batch", 16 * MIB, json=True),
    rule("POST", r"/v1/txs/wait", 256 * KIB, json=True),
)
EDGE_RULES = (
    rule("POST", r"/edge/v1/records", MAX_RECORD_BYTES, signed=True),
    rule("POST", r"/edge/v1/import/[^/]+", 4 * MAX_RECORD_BYTES, signed=True),
    rule("POST", r"/edge/v1/patients", DEFAULT_BODY_CAP, signed=True, json=True),
    rule("POST", r"/edge/v1/sessions/[^/]+/fetch", 4 * KIB, signed=True),
    rule("POST", r"/edge/v1/epcis/capture", MAX_EPCIS_BYTES, signed=True),
)


def rule_for(rules: tuple[RouteRule, ...], method: str, path: str) -> RouteRule | None:
    """The first rule matching this request, or None (the default cap applies)."""
    for r in rules:
        if r.method == method and r.path.fullmatch(path):
            return r
    return None


class BodyTooLarge(MedChainError):
    """The body streamed past its route's cap."""


def check_json_depth(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise JsonTooDeep if `body` nests arrays/objects deeper than `max_depth`.

    Runs in C-speed passes, never recursing: strings are blanked, brackets kept,
    and each pass deletes the innermost empty pairs, so `max_depth` passes empty
    any body at most that deep. Unbalanced input is left to the parser to refuse.
    """
    brackets = re.sub(rb'"(?:[^"\\]|\\.)*"', b"", body, flags=re.DOTALL)
    brackets = brackets.translate(_BRACKETS, _NOT_BRACKETS)
    for _ in range(max_depth):
        inner = brackets.replace(b"()", b"")
        if inner == brackets:
            return
        brackets = inner
    if b"()" in brackets:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")


_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def precheck_signature(headers: Mapping[str, str], now_ms: int | None = None) -> None:
    """The signature headers are there, well formed and fresh (BadRequestSignature if
    not). Cheap, and needs no body: a stranger's upload is refused before it is read.
    The signature itself is verified by the route, over the body."""
    missing = [h for h in HEADERS if h not in headers]
    if missing:
        raise BadRequestSignature(f"unsigned request: missing {', '.join(missing)}")
    try:
        crypto.get_suite(headers["x-medchain-suite"])
        bytes.fromhex(headers["x-medchain-key"])
        bytes.fromhex(headers["x-medchain-signature"])
        t = int(headers["x-medchain-time"])
    except (ValueError, crypto.UnknownSuite) as e:
        raise BadRequestSignature(f"malformed signature headers: {e}") from None
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now - t) > MAX_SKEW_MS:
        raise BadRequestSignature("request time is more than 5 minutes off: check your clock")


# -- the middleware --------------------------------------------------------------


def _error(status: int, code: str, message: str, hint: str = "") -> JSONResponse:
    return JSONResponse(error_body(code, message, hint), status_code=status)


def too_large(cap: int) -> JSONResponse:
    """The 413 answer, sent before the body is read past its cap."""
    return _error(413, "TOO_LARGE", f"the body is larger than {cap} bytes allowed here")


class RequestLimits:
    """ASGI middleware: rate, concurrency, body caps, early signature headers and
    JSON depth, in that order, before the app sees a request."""

    def __init__(self, app: ASGIApp, limiter: Limiter, rules: tuple[RouteRule, ...]) -> None:
        self.app = app
        self.limiter = limiter
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = client_address(scope)
        try:
            self.limiter.requests.take(client)
            with self.limiter.in_flight.hold(client):
                await self._limited(scope, receive, send)
        except RateLimited as e:
            await e.response()(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        found = rule_for(self.rules, scope["method"], scope["path"])
        cap = found.max_body if found else DEFAULT_BODY_CAP
        try:
            declared = int(headers.get("content-length", "0"))
        except ValueError:
            await _error(400, "MALFORMED", "Content-Length is not a number")(scope, receive, send)
            return
        if declared > cap:
            await too_large(cap)(scope, receive, send)
            return
        if found is not None and found.signed:
            try:
                precheck_signature(headers)
            except BadRequestSignature as e:
                hint = "sign the request with medchain.sdk.signing.sign_request"
                await _error(401, "BAD_SIGNATURE", str(e), hint)(scope, receive, send)
                return
        counted = _CountedBody(receive, cap)
        if found is not None and found.json:
            await self._json(scope, counted, send, cap)
            return
        await self._streamed(scope, counted, send, cap)

    async def _json(self, scope: Scope, counted: _CountedBody, send: Send, cap: int) -> None:
        """Read the (capped) body, check its nesting, then hand it to the app."""
        try:
            body = await counted.read_all()
            check_json_depth(body)
        except BodyTooLarge:
            await too_large(cap)(scope, counted.receive, send)
            return
        except JsonTooDeep as e:
            await _error(400, "MALFORMED", str(e))(scope, counted.receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await counted.receive()

        await self.app(scope, replay, send)

    async def _streamed(self, scope: Scope, counted: _CountedBody, send: Send, cap: int) -> None:
        """Let the app read the body as it comes; past the cap the app's answer
        (or its failure) is replaced by 413 and the rest is never read."""
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if counted.exceeded:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        with suppress(BodyTooLarge):
            await self.app(scope, counted, guarded_send)
        if counted.exceeded and not started:
            await too_large(cap)(scope, counted.receive, send)


class _CountedBody:
    """An ASGI receive that counts body bytes and raises BodyTooLarge past `cap`."""

    def __init__(self, receive: Receive, cap: int) -> None:
        self.receive = receive
        self.cap = cap
        self.seen = 0
        self.exceeded = False

    async def __call__(self) -> Message:
        if self.exceeded:
            raise BodyTooLarge
        message = await self.receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.cap:
                self.exceeded = True
                raise BodyTooLarge
        return message

    async def read_all(self) -> bytes:
        parts: list[bytes] = []
        while True:
            message = await self()
            if message["type"] != "http.request":
                return b"".join(parts)
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(parts)


def install_limits(
    app: FastAPI, limits: Limits | Limiter | None, rules: tuple[RouteRule, ...]
) -> Limiter:
    """Put `RequestLimits` in front of `app` and keep its Limiter in app.state. Apps
    given one Limiter (a node's full and public-only apps) share its counters."""
    limiter = limits if isinstance(limits, Limiter) else Limiter(limits or Limits())
    app.state.limiter = limiter
    app.add_middleware(RequestLimits, limiter=limiter, rules=rules)

    @app.exception_handler(RateLimited)
    async def rate_limited(_: Any, e: RateLimited) -> JSONResponse:
        return e.response()

    return limiter
