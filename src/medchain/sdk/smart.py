"""SMART on FHIR tokens for integrators: sign a statement, get a token, use it.

    auth = SmartAuth(key, did, "https://edge.hosp-a.example", scope="system/*.rs",
                     custodian="hosp-a", chain_id="medchain-main")
    httpx.get(f"{edge}/fhir/Observation", params={"patient": p}, auth=auth)

`SmartAuth` is an `httpx.Auth`: it reads the edge's /.well-known/smart-configuration
once (token endpoint, chain id, custodian) and refuses one naming another custodian
or chain than the caller expects (a rogue edge could otherwise have the member sign
for a victim custodian and relay it), asks for a token with a statement
signed by the member's ledger key, sends it as `Authorization: Bearer`, asks for
a new one shortly before it expires, and once more if the edge answers 401
invalid_token (an edge that restarted forgets its tokens). Two flows:

  BACKEND    SMART Backend Services: client_credentials with a JWT assertion
             (RFC 7523), alg SM2SM3 or Ed25519 by the key's suite; system/ scopes.
  CHALLENGE  a person's signed challenge (canonical CBOR); patient/ and user/ scopes.

The purpose of use rides in the signed statement, so the chain audits the
purpose the member gave, and the scopes the member signed bound what the
custodian can claim with the token.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any

import httpx
from joserfc import jwt

from medchain import crypto
from medchain.contracts.exchange.smart import STATEMENT_MS, challenge_message
from medchain.exceptions import MedChainError
from medchain.sdk.jose import algorithm_of, signing_key

BACKEND, CHALLENGE = "backend", "challenge"
CLIENT_CREDENTIALS = "client_credentials"
CHALLENGE_GRANT = "urn:medchain:params:oauth:grant-type:signed-challenge"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
STATEMENT_SECONDS = STATEMENT_MS // 1000
REFRESH_MARGIN = 30.0  # seconds before expiry a token is replaced


class WrongEdge(MedChainError):
    """The edge's discovery names another custodian or chain than the one expected."""


class TokenRefused(MedChainError):
    """The edge refused a token request; `error` is the OAuth error code."""

    def __init__(self, error: str, description: str, status: int) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status


def b64url(data: bytes) -> str:
    """Base64url without padding, as JOSE and our token form use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def client_assertion(
    key: crypto.KeyPair,
    client_id: str,
    token_url: str,
    chain_id: str,
    custodian: str,
    scope: str = "",
    purpose: str = "",
    now: int | None = None,
    lifetime: int = STATEMENT_SECONDS,
    jti: str | None = None,
) -> str:
    """A SMART Backend Services client assertion (a JWT) signed by the member's key:
    iss = sub = the member's DID, aud = the token URL, a fresh jti, and the chain,
    custodian and purpose of use the chain checks (the `medchain` claim)."""
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": issued,
        "exp": issued + lifetime,
        "jti": jti or secrets.token_urlsafe(16),
        "medchain": {"chain_id": chain_id, "custodian": custodian, "purpose_of_use": purpose},
    }
    if scope:
        claims["scope"] = scope
    alg = algorithm_of(key.suite)
    return jwt.encode({"alg": alg}, claims, signing_key(key), algorithms=[alg])


def backend_form(assertion: str, scope: str) -> dict[str, str]:
    """The token request of SMART Backend Services for a signed assertion."""
    return {
        "grant_type": CLIENT_CREDENTIALS,
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
        "scope": scope,
    }


def challenge_form(
    key: crypto.KeyPair,
    member: str,
    chain_id: str,
    custodian: str,
    scope: str,
    purpose: str = "",
    patient: str = "",
    now_ms: int | None = None,
    lifetime_ms: int = STATEMENT_MS,
    jti: str | None = None,
    audience: str = "",
) -> dict[str, str]:
    """The token request for a person: a challenge signed by the member's ledger key.
    `audience` is the edge's token URL (its discovery's token_endpoint), which the
    edge requires; patient/ scopes need `patient`, the patient the token is for."""
    issued = int(time.time() * 1000) if now_ms is None else now_ms
    message = challenge_message(
        chain_id,
        member,
        custodian,
        jti or secrets.token_urlsafe(16),
        issued,
        issued + lifetime_ms,
        scope,
        purpose,
        patient,
        audience,
    )
    return {
        "grant_type": CHALLENGE_GRANT,
        "challenge": b64url(message),
        "suite": key.suite,
        "signature": b64url(crypto.sign(key, message)),
    }


def request_token(
    token_url: str, form: dict[str, str], http: httpx.Client | None = None
) -> dict[str, Any]:
    """POST a token request; the token response, or TokenRefused."""
    client = http or httpx.Client(timeout=30.0)
    try:
        answer = client.post(token_url, data=form)
    finally:
        if http is None:
            client.close()
    return token_of(answer)


def token_of(answer: httpx.Response) -> dict[str, Any]:
    """The token response in an answer of the token endpoint, or TokenRefused."""
    body = (
        answer.json()
        if answer.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    if answer.status_code != 200:
        raise TokenRefused(
            str(body.get("error", "server_error")),
            str(body.get("error_description", answer.text[:200])),
            answer.status_code,
        )
    token: dict[str, Any] = body
    return token


class SmartAuth(httpx.Auth):
    """httpx authentication with SMART bearer tokens from a MedChain edge, got and
    renewed with statements signed by the member's ledger key (see module doc).
    `custodian` and `chain_id` are the org whose edge `edge_url` must be and its
    chain: a discovery document naming others is refused (WrongEdge)."""

    def __init__(
        self,
        key: crypto.KeyPair,
        member: str,
        edge_url: str,
        scope: str,
        purpose: str = "",
        flow: str = BACKEND,
        patient: str = "",
        http: httpx.Client | None = None,
        *,
        custodian: str,
        chain_id: str,
    ) -> None:
        if flow not in (BACKEND, CHALLENGE):
            raise ValueError(f"flow must be {BACKEND!r} or {CHALLENGE!r}")
        self.custodian, self.chain_id = custodian, chain_id
        self.key, self.member, self.scope, self.purpose = key, member, scope, purpose
        self.flow, self.patient = flow, patient
        self.edge_url = edge_url.rstrip("/")
        self._http = http or httpx.Client(timeout=30.0)
        self._lock = threading.Lock()
        self._config: dict[str, Any] | None = None
        self._token: dict[str, Any] | None = None
        self._expires_at = 0.0

    def configuration(self) -> dict[str, Any]:
        """The edge's SMART configuration (read once)."""
        if self._config is None:
            answer = self._http.get(f"{self.edge_url}/.well-known/smart-configuration")
            answer.raise_for_status()
            self._config = self._expected(answer.json())
        return self._config

    def _expected(self, config: Any) -> dict[str, Any]:
        """The discovery document if it names the custodian and chain expected and a
        token endpoint, else WrongEdge (nothing is signed for it)."""
        named = config.get("medchain") if isinstance(config, dict) else None
        if not isinstance(named, dict) or not isinstance(config.get("token_endpoint"), str):
            raise WrongEdge(f"{self.edge_url} has no MedChain SMART configuration")
        if named.get("custodian") != self.custodian or named.get("chain_id") != self.chain_id:
            raise WrongEdge(
                f"{self.edge_url} is the edge of {named.get('custodian')!r} on chain "
                f"{named.get('chain_id')!r}, not of {self.custodian!r} on {self.chain_id!r}"
            )
        return dict(config)

    def form(self) -> dict[str, str]:
        """A fresh token request: a newly signed assertion or challenge."""
        token_url = self.configuration()["token_endpoint"]
        if self.flow == BACKEND:
            assertion = client_assertion(
                self.key,
                self.member,
                token_url,
                self.chain_id,
                self.custodian,
                self.scope,
                self.purpose,
            )
            return backend_form(assertion, self.scope)
        return challenge_form(
            self.key,
            self.member,
            self.chain_id,
            self.custodian,
            self.scope,
            self.purpose,
            self.patient,
            audience=token_url,
        )

    def _current(self, renew: bool) -> dict[str, Any] | None:
        """The token response still good to send, or None when a new one is due."""
        fresh = self._token is not None and time.time() < self._expires_at - REFRESH_MARGIN
        return self._token if fresh and not renew else None

    def _keep(self, token: dict[str, Any], asked: float) -> dict[str, Any]:
        self._token, self._expires_at = token, asked + float(token["expires_in"])
        return token

    def token_response(self, renew: bool = False) -> dict[str, Any]:
        """The current token response, asking for a new token if there is none, it
        expires within REFRESH_MARGIN seconds, or `renew`."""
        with self._lock:
            current = self._current(renew)
            if current is not None:
                return current
            asked = time.time()
            url = self.configuration()["token_endpoint"]
            return self._keep(request_token(url, self.form(), self._http), asked)

    async def async_token_response(self, renew: bool = False) -> dict[str, Any]:
        """token_response for an httpx.AsyncClient: the edge is asked without blocking
        the event loop (two tasks that both find the token stale may both renew it)."""
        current = self._current(renew)
        if current is not None:
            return current
        async with httpx.AsyncClient(timeout=30.0) as http:
            if self._config is None:
                answer = await http.get(f"{self.edge_url}/.well-known/smart-configuration")
                answer.raise_for_status()
                self._config = self._expected(answer.json())
            asked = time.time()
            answer = await http.post(self._config["token_endpoint"], data=self.form())
        token = token_of(answer)
        with self._lock:
            return self._keep(token, asked)

    def access_token(self, renew: bool = False) -> str:
        """The bearer token to send now (see token_response)."""
        return str(self.token_response(renew)["access_token"])

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send with the token; once more with a new token after 401 invalid_token."""
        request.headers["Authorization"] = f"Bearer {self.access_token()}"
        response = yield request
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code == 401 and 'error="invalid_token"' in challenge:
            request.headers["Authorization"] = f"Bearer {self.access_token(renew=True)}"
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """auth_flow for an httpx.AsyncClient, without blocking its event loop."""
        token = await self.async_token_response()
        request.headers["Authorization"] = f"Bearer {token['access_token']}"
        response = yield request
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code == 401 and 'error="invalid_token"' in challenge:
            token = await self.async_token_response(renew=True)
            request.headers["Authorization"] = f"Bearer {token['access_token']}"
            yield request
