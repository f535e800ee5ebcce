"""Signed HTTP requests: the client signs, a node's gateway or a custodian's edge verifies.

It lives in the SDK, the lowest layer that makes requests, so the SDK, the gateway
and the edge share one format without the SDK or the gateway importing the edge.

Every signed request to an edge or to a node's gateway names its signer's
public key and carries a signature over (chain id, method, path with query,
time, SM3 of the body, purpose of use; see contracts/exchange/proof.py), so
the server can check who is asking against the chain (a session's requester,
a custodian's staff, a patient) without accounts or passwords of its own. A
request more than five minutes from the server's clock is refused, so a
captured request cannot be replayed later.

    X-MedChain-Suite      sm | intl
    X-MedChain-Key        hex public key
    X-MedChain-Time       ms since the epoch
    X-MedChain-Signature  hex signature
    X-MedChain-Purpose    optional purpose of use (TREAT, HRESEARCH, ...); signed
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from medchain import crypto
from medchain.contracts.exchange.proof import MAX_SKEW_MS, request_message
from medchain.exceptions import MedChainError
from medchain.sdk.tls import default_client_tls

HEADERS = ("x-medchain-suite", "x-medchain-key", "x-medchain-time", "x-medchain-signature")
PURPOSE_HEADER = "X-MedChain-Purpose"
MAX_PURPOSE_CHARS = 20


class BadRequestSignature(MedChainError):
    """The request is unsigned, stale, or its signature does not verify."""


@dataclass(frozen=True)
class RequestSigner:
    """Who signed a request that verified, the purpose they signed ("" if none), and
    the proof (for `exchange.access`)."""

    suite: str
    public_key: bytes
    time_ms: int
    signature: bytes
    body_sm3: bytes
    purpose: str = ""

    def proof(self, method: str, path: str) -> dict[str, object]:
        """The request as the exchange contract re-verifies it."""
        return {
            "suite": self.suite,
            "public_key": self.public_key,
            "method": method.upper(),
            "path": path,
            "time_ms": self.time_ms,
            "body_sm3": self.body_sm3,
            "purpose": self.purpose,
            "signature": self.signature,
        }

    def access_call(
        self, method: str, path: str, record_ids: list[str]
    ) -> tuple[str, dict[str, object]]:
        """The exchange action and payload that put a read by this signer on chain:
        its own signed request (`access`); a SMART token holder overrides this
        (edge/smart.py) with the member statement the token was issued on."""
        return "access", {"request": self.proof(method, path), "record_ids": record_ids}


def sign_request(
    key: crypto.KeyPair,
    chain_id: str,
    method: str,
    path: str,
    body: bytes = b"",
    now_ms: int | None = None,
    purpose: str = "",
) -> dict[str, str]:
    """Headers that authenticate this exact request as `key`'s, for `purpose` (set
    as X-MedChain-Purpose and signed, so nobody in between can change it)."""
    t = int(time.time() * 1000) if now_ms is None else now_ms
    message = request_message(chain_id, method, path, t, crypto.sm3(body), purpose)
    headers = {
        "X-MedChain-Suite": key.suite,
        "X-MedChain-Key": key.public.hex(),
        "X-MedChain-Time": str(t),
        "X-MedChain-Signature": crypto.sign(key, message).hex(),
    }
    if purpose:
        headers[PURPOSE_HEADER] = purpose
    return headers


def verify_request(
    headers: Mapping[str, str],
    chain_id: str,
    method: str,
    path: str,
    body: bytes,
    now_ms: int | None = None,
    screen: Callable[[str, bytes], None] | None = None,
) -> RequestSigner:
    """The signer of a fresh, correctly signed request, with the purpose it signed;
    BadRequestSignature otherwise (a purpose header changed after signing fails).

    `screen(suite, public_key)`, if given, may refuse the claimed signer by raising
    before the signature is verified (a server looks a costly suite's key up first)."""
    lower = {k.lower(): v for k, v in headers.items()}
    missing = [h for h in HEADERS if h not in lower]
    if missing:
        raise BadRequestSignature(f"unsigned request: missing {', '.join(missing)}")
    try:
        suite = lower["x-medchain-suite"]
        public = bytes.fromhex(lower["x-medchain-key"])
        t = int(lower["x-medchain-time"])
        signature = bytes.fromhex(lower["x-medchain-signature"])
        crypto.get_suite(suite)
        purpose = lower.get(PURPOSE_HEADER.lower(), "")
        if len(purpose) > MAX_PURPOSE_CHARS:
            raise ValueError(f"{PURPOSE_HEADER} is longer than {MAX_PURPOSE_CHARS} characters")
    except (ValueError, crypto.UnknownSuite) as e:
        raise BadRequestSignature(f"malformed signature headers: {e}") from None
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now - t) > MAX_SKEW_MS:
        raise BadRequestSignature("request time is more than 5 minutes off: check your clock")
    if screen is not None:
        screen(suite, public)
    body_sm3 = crypto.sm3(body)
    message = request_message(chain_id, method, path, t, body_sm3, purpose)
    if not crypto.verify(suite, public, message, signature):
        raise BadRequestSignature("request signature does not verify")
    return RequestSigner(suite, public, t, signature, body_sm3, purpose)


def with_query(path: str, params: Mapping[str, str | None] | None = None) -> str:
    """`path?query` exactly as it will be signed and sent (None values left out)."""
    query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
    return f"{path}?{query}" if query else path


def send_signed(
    key: crypto.KeyPair,
    chain_id: str,
    method: str,
    base_url: str,
    path: str,
    params: Mapping[str, str | None] | None = None,
    body: bytes = b"",
    timeout: float = 60.0,
    headers: Mapping[str, str] | None = None,
    purpose: str = "",
    verify: ssl.SSLContext | None = None,
) -> httpx.Response:
    """Sign and send one request to an edge; httpx errors propagate. The purpose of
    use is signed with the request (an X-MedChain-Purpose in `headers` counts).
    `verify`: the TLS context that checks the edge's certificate (default: the
    process's, see medchain.sdk.tls.use_client_tls)."""
    target = with_query(path, params)
    others = {k: v for k, v in (headers or {}).items() if k.lower() != PURPOSE_HEADER.lower()}
    purpose = purpose or next(
        (v for k, v in (headers or {}).items() if k.lower() == PURPOSE_HEADER.lower()), ""
    )
    signed = {**others, **sign_request(key, chain_id, method, target, body, purpose=purpose)}
    return httpx.request(
        method,
        base_url.rstrip("/") + target,
        content=body,
        headers=signed,
        timeout=timeout,
        verify=verify or default_client_tls().context(),
    )
