"""SMART on FHIR tokens at a custodian's edge: who gets one, for what, and how long.

Two ways in, both a statement signed by a member's own ledger key
(contracts/exchange/smart.py):

  client_credentials  SMART Backend Services: a JWT assertion (RFC 7523),
                      signed SM2SM3 or Ed25519 by the member's key on chain;
                      client_id = the member's DID; system/ scopes.
  signed challenge    for people: canonical CBOR naming the member, this
                      custodian, a fresh jti, the scopes and the purpose of
                      use; patient/ and user/ scopes.

The edge checks the signature, the audience (its canonical token URL: the
edge URL its org published on chain, or one configured; never the request's
Host), the times (a statement lives at most 5 minutes) and that its jti is new
(spent jtis are kept on disk, edge/smart_jtis.py), then issues an opaque bearer token that
lives until 15 minutes after the statement's issue at most. Every read the token
makes still goes to chain: the statement rides in `exchange.token_access`,
which the contract re-verifies, decides by consent and role, and audits; so a
revoked consent or a deactivated member stops a token at the next request.

Tokens are opaque (random, 256 bits) with their state here, not JWS: the state
must hold the member's statement anyway (it goes on chain with each read), an
opaque token has no algorithm or claim a client could get wrong or forge, and
dropping the state revokes it. The price: tokens do not survive a restart of
the edge and are not shared by several edge processes; a client then gets
401 invalid_token and asks for a new one (medchain.sdk.smart does so itself).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import secrets
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry

from medchain.contracts.consent.model import PURPOSES
from medchain.contracts.exchange.proof import purpose_of_use
from medchain.contracts.exchange.smart import (
    CHALLENGE,
    JWS,
    TOKEN_MS,
    ScopeGrant,
    Statement,
    StatementError,
    parse_scopes,
    read_header,
    read_statement,
    verify_statement,
)
from medchain.contracts.identity.model import DID_METHOD
from medchain.crypto.jws import SUITE_OF_JWS_ALG
from medchain.edge.custodian import CustodianEdge, EdgeError
from medchain.edge.smart_jtis import FILE_NAME, JtiRefused, SpentJtis
from medchain.sdk.client import ClientError
from medchain.sdk.jose import algorithms_for, verifying_key
from medchain.sdk.signing import RequestSigner

TOKEN_PATH = "/auth/token"
CLIENT_CREDENTIALS = "client_credentials"
CHALLENGE_GRANT = "urn:medchain:params:oauth:grant-type:signed-challenge"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRANT_TYPES = (CLIENT_CREDENTIALS, CHALLENGE_GRANT)
# The scope contexts each way in may be granted.
CONTEXTS_OF_GRANT = {CLIENT_CREDENTIALS: ("system",), CHALLENGE_GRANT: ("patient", "user")}
SCOPES_SUPPORTED = (
    "system/*.read",
    "system/*.rs",
    "user/*.read",
    "user/*.rs",
    "patient/*.read",
    "patient/*.rs",
)
# Live tokens and spent jtis (one per token issued in a statement's lifetime, about
# 6 minutes) a member may hold; patients (anyone may become one) fewer. The global
# caps are a last resort: the per-member ones stop one member's flood first.
MAX_TOKENS, MAX_TOKENS_PER_MEMBER, MAX_TOKENS_PER_PATIENT = 100_000, 20, 5
MAX_JTIS, MAX_JTIS_PER_MEMBER, MAX_JTIS_PER_PATIENT = 200_000, 120, 20
# How long the canonical token URL read from chain is trusted before it is read again.
PUBLISHED_URL_TTL_S = 60.0
# How far a client's clock may be off for an assertion's or challenge's times.
CLOCK_LEEWAY_S = 60
DID = re.compile(re.escape(DID_METHOD) + r"[1-9A-HJ-NP-Za-km-z]{1,64}")
# One answer for an unknown, inactive or keyless client and a signature that does
# not verify: before a signature checks out, a stranger learns nothing of membership.
NOT_VERIFIED = "the client is not an active member here or its statement does not verify"

log = logging.getLogger(__name__)


class OAuthError(EdgeError):
    """A token request refused, with its RFC 6749 error code (the `code` lower-cased)."""

    code = "INVALID_REQUEST"

    @property
    def error(self) -> str:
        """The OAuth `error` value of this refusal."""
        return self.code.lower()


class InvalidClient(OAuthError):
    """The client is unknown, inactive, or its assertion does not verify."""

    code = "INVALID_CLIENT"


class InvalidGrant(OAuthError):
    """The signed challenge does not verify, is stale, replayed or for someone else."""

    code = "INVALID_GRANT"


class InvalidScope(OAuthError):
    """No scope asked for is one this edge grants to this client."""

    code = "INVALID_SCOPE"


class UnsupportedGrantType(OAuthError):
    """A grant type other than client_credentials or the signed challenge."""

    code = "UNSUPPORTED_GRANT_TYPE"


class TemporarilyUnavailable(OAuthError):
    """The edge holds as many live tokens as it keeps; retry in a while."""

    code = "TEMPORARILY_UNAVAILABLE"


class InvalidToken(EdgeError):
    """A bearer token that is unknown, expired, or no longer its member's."""

    code = "INVALID_TOKEN"


@dataclass(frozen=True)
class TokenHolder(RequestSigner):
    """The member behind a bearer token, in the shape of a request's signer: reads
    go on chain with the member's statement (`exchange.token_access`)."""

    statement: dict[str, Any] = field(default_factory=dict)
    grants: tuple[ScopeGrant, ...] = ()
    patient: str = ""

    def access_call(
        self, method: str, path: str, record_ids: list[str]
    ) -> tuple[str, dict[str, object]]:
        """The token's statement and the records, for exchange.token_access."""
        return "token_access", {"statement": self.statement, "record_ids": record_ids}


@dataclass(frozen=True)
class Issued:
    """A token as the edge keeps it (the token itself only as a hash)."""

    holder: TokenHolder
    member: str
    scope: str
    expires_at: float  # wall-clock seconds

    def answer(self, token: str, now: float) -> dict[str, Any]:
        """The token response (RFC 6749 5.1, SMART)."""
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": max(0, int(self.expires_at - now)),
            "scope": self.scope,
        }
        if self.holder.patient:
            body["patient"] = self.holder.patient
        return body


def b64url_decode(text: str, what: str) -> bytes:
    """Base64url without padding, or InvalidRequest naming `what`."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise OAuthError(f"{what} must be base64url") from None


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class SmartTokens:
    """The edge's token service: checks statements, issues and resolves tokens.

    `public_url` is the edge's URL as published (tokens' audience); without it, the
    edge URL its org published on chain (identity.set_endpoint) is used."""

    def __init__(
        self,
        edge: CustodianEdge,
        clock: Callable[[], float] = time.time,
        public_url: str | None = None,
    ) -> None:
        self.edge = edge
        self._clock = clock  # wall-clock seconds (tests move it)
        self._public_url = public_url.rstrip("/") if public_url else None
        self._published: tuple[str | None, float] = (None, float("-inf"))
        self._lock = threading.Lock()
        self._tokens: dict[bytes, Issued] = {}
        self._by_member: dict[str, deque[bytes]] = {}
        self._jtis = SpentJtis(edge.vault.root / FILE_NAME, MAX_JTIS)

    def base_url(self) -> str | None:
        """The edge's canonical URL (configured, else as its org published it on
        chain, re-read every PUBLISHED_URL_TTL_S), or None if it has none yet."""
        if self._public_url:
            return self._public_url
        url, read_at = self._published
        now = self._clock()
        if url is None or now - read_at >= PUBLISHED_URL_TTL_S:
            try:
                published = self.edge.node.org(self.edge.org_id).get("edge_url")
            except ClientError as e:
                log.warning("cannot read this edge's published URL: %s", e)
                return url
            url = str(published).rstrip("/") if published else None
            self._published = (url, now)
        return url

    def token_url(self) -> str:
        """The token URL every assertion's `aud` and challenge's audience must name,
        or TemporarilyUnavailable if this edge has no canonical URL."""
        base = self.base_url()
        if base is None:
            raise TemporarilyUnavailable(
                "this edge has not published its URL on chain yet: retry in a while"
            )
        return base + TOKEN_PATH

    # -- issuing -------------------------------------------------------------

    def issue(
        self,
        form: dict[str, str],
        token_url: str | None = None,
        charge: Callable[[str, bytes], None] | None = None,
    ) -> dict[str, Any]:
        """A token response for a token request's form, or an OAuthError. `token_url`
        is the audience statements must name (default: token_url(), read only once
        a statement's signature verified); `charge` counts the request against the
        member's key once its statement verified (gateway/limits.py: RateLimited
        past the key's rate)."""
        audience = self.token_url if token_url is None else (lambda: token_url)
        grant_type = form.get("grant_type", "")
        if grant_type == CLIENT_CREDENTIALS:
            holder, statement, member = self._assertion(form, audience)
        elif grant_type == CHALLENGE_GRANT:
            holder, statement, member = self._challenge(form, audience)
        elif not grant_type:
            raise OAuthError("grant_type is required")
        else:
            raise UnsupportedGrantType(f"grant_type must be one of {list(GRANT_TYPES)}")
        requested = statement.scope or form.get("scope", "")
        if statement.scope and form.get("scope", statement.scope) != statement.scope:
            raise InvalidScope("scope differs from the scope the statement signed")
        granted = grantable(parse_scopes(requested), grant_type, holder.patient)
        if not granted:
            raise InvalidScope(
                f"no scope this edge grants was asked for: {grant_type} gets "
                f"{'/, '.join(CONTEXTS_OF_GRANT[grant_type])}/ scopes with read or search "
                "rights (patient/ needs the patient signed in the statement)"
            )
        holder = replace(holder, grants=granted)
        if charge is not None:
            charge(holder.suite, holder.public_key)
        now = self._clock()
        expires_at = min((statement.issued_ms + TOKEN_MS) / 1000, now + TOKEN_MS / 1000)
        issued = Issued(holder, statement.member, " ".join(g.text() for g in granted), expires_at)
        token = secrets.token_urlsafe(32)
        refusal = InvalidClient if grant_type == CLIENT_CREDENTIALS else InvalidGrant
        self._keep(token, issued, statement, "patient" in member["roles"], now, refusal)
        return issued.answer(token, now)

    def _assertion(
        self, form: dict[str, str], audience: Callable[[], str]
    ) -> tuple[TokenHolder, Statement, dict[str, Any]]:
        if form.get("client_assertion_type") != JWT_BEARER:
            raise InvalidClient(f"client_assertion_type must be {JWT_BEARER}")
        assertion = form.get("client_assertion", "")
        signing_input, _, signature_b64 = assertion.rpartition(".")
        try:  # our own reading first: bounded, before any other parser sees the bytes
            header = read_header(signing_input.encode())
            statement = read_statement(JWS, signing_input.encode())
        except StatementError as e:
            raise InvalidClient(f"client_assertion: {e}") from None
        suite = SUITE_OF_JWS_ALG.get(str(header.get("alg")))
        if suite is None:
            raise InvalidClient(f"alg must be one of {sorted(SUITE_OF_JWS_ALG)}")
        if form.get("client_id", statement.member) != statement.member:
            raise InvalidClient("client_id is not the assertion's iss")
        signature = b64url_decode(signature_b64, "the assertion's signature")
        self._addressed_here(statement, InvalidClient)
        signed = signing_input.encode()
        public, member = self._signer(
            statement.member, JWS, suite, signed, signature, InvalidClient
        )
        try:  # the signature verified: now the claims, by a stock JWT library too
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "EdDSA" is deprecated by RFC 9864, not wrong
                token = jwt.decode(assertion, verifying_key(suite, public), algorithms_for(suite))
            claims = JWTClaimsRegistry(
                now=int(self._clock()),
                leeway=CLOCK_LEEWAY_S,
                iss={"essential": True, "value": statement.member},
                sub={"essential": True, "value": statement.member},
                aud={"essential": True, "value": audience()},
                exp={"essential": True},
                iat={"essential": False},
                jti={"essential": True},
            )
            claims.validate(token.claims)
        except JoseError as e:
            raise InvalidClient(f"client_assertion refused: {e.error}: {e.description}") from None
        if not self._in_time(statement):
            raise InvalidClient("the assertion has expired (or is not yet valid): sign a new one")
        proof = {
            "form": JWS,
            "suite": suite,
            "public_key": public,
            "signed": signed,
            "signature": signature,
        }
        return self._holder(statement, proof), statement, member

    def _challenge(
        self, form: dict[str, str], audience: Callable[[], str]
    ) -> tuple[TokenHolder, Statement, dict[str, Any]]:
        signed = b64url_decode(form.get("challenge", ""), "challenge")
        signature = b64url_decode(form.get("signature", ""), "signature")
        try:
            statement = read_statement(CHALLENGE, signed)
        except StatementError as e:
            raise InvalidGrant(f"challenge: {e}") from None
        self._addressed_here(statement, InvalidGrant)
        suite = form.get("suite", "sm")
        public, member = self._signer(
            statement.member, CHALLENGE, suite, signed, signature, InvalidGrant
        )
        token_url = audience()
        if statement.audience != token_url:
            raise InvalidGrant(
                f"the challenge's audience must be this edge's token URL {token_url}"
            )
        if not self._in_time(statement):
            raise InvalidGrant("the challenge has expired (or is not yet valid): sign a new one")
        proof = {
            "form": CHALLENGE,
            "suite": suite,
            "public_key": public,
            "signed": signed,
            "signature": signature,
        }
        return self._holder(statement, proof), statement, member

    def _in_time(self, statement: Statement) -> bool:
        """Whether now (give or take CLOCK_LEEWAY_S) is within the statement's validity."""
        now_ms, leeway_ms = int(self._clock() * 1000), CLOCK_LEEWAY_S * 1000
        return statement.issued_ms - leeway_ms <= now_ms <= statement.expires_ms + leeway_ms

    def _signer(
        self,
        did: str,
        form: str,
        suite: str,
        signed: bytes,
        signature: bytes,
        refusal: type[OAuthError],
    ) -> tuple[bytes, dict[str, Any]]:
        """The active key of this suite on chain that signed the statement (each of the
        member's active keys of the suite is tried) and the member's identity record;
        else `refusal` with one message whatever went wrong (NOT_VERIFIED: the detail
        is logged here, never told to the client)."""
        if not DID.fullmatch(did):
            raise refusal("the client id must be a member's DID (did:medchain:...)")
        try:
            member = self.edge.node.member(did)
        except ClientError:
            log.info("token request refused: %s is not a member on chain", did)
            raise refusal(NOT_VERIFIED) from None
        if member.get("status") != "active":
            log.info("token request refused: %s is %s on chain", did, member.get("status"))
            raise refusal(NOT_VERIFIED)
        keys = [
            bytes.fromhex(k["public_key"])
            for k in member["keys"]
            if k["status"] == "active" and k["suite"] == suite
        ]
        for public in keys:
            if verify_statement(form, suite, public, signed, signature):
                return public, member
        log.info(
            "token request refused: no active %s key of %s (of %d) verifies", suite, did, len(keys)
        )
        raise refusal(NOT_VERIFIED)

    def _addressed_here(self, statement: Statement, refusal: type[OAuthError]) -> None:
        """Refuse a statement for another chain or custodian, or an unknown purpose,
        before any lookup or signature check."""
        if statement.chain_id != self.edge.node.chain_id:
            raise refusal("the statement is for another chain")
        if statement.custodian != self.edge.org_id:
            raise refusal(f"the statement is for custodian {statement.custodian!r}, not this one")
        if purpose_of_use(statement.purpose_of_use) not in PURPOSES:
            raise refusal(f"the signed purpose of use must be one of {sorted(PURPOSES)}")

    def _holder(self, statement: Statement, proof: dict[str, Any]) -> TokenHolder:
        """The holder of a token issued on a verified statement. Its patient in context
        is the one the statement signed, and only that one: the chain bounds the
        token's reads to it (contracts/exchange/smart.py)."""
        return TokenHolder(
            suite=proof["suite"],
            public_key=proof["public_key"],
            time_ms=statement.issued_ms,
            signature=proof["signature"],
            body_sm3=b"",
            purpose=statement.purpose_of_use,
            statement=proof,
            patient=statement.patient,
        )

    def _keep(
        self,
        token: str,
        issued: Issued,
        statement: Statement,
        patient_role: bool,
        now: float,
        refusal: type[OAuthError],
    ) -> None:
        """Remember the token, once its statement's jti is new (each statement once,
        across restarts and processes) and its member is under its caps."""
        member = statement.member
        jti_cap = MAX_JTIS_PER_PATIENT if patient_role else MAX_JTIS_PER_MEMBER
        token_cap = MAX_TOKENS_PER_PATIENT if patient_role else MAX_TOKENS_PER_MEMBER
        with self._lock:
            if len(self._tokens) >= MAX_TOKENS:
                self._sweep(now)
            if len(self._tokens) >= MAX_TOKENS:
                raise TemporarilyUnavailable("this edge holds all the tokens it keeps; retry")
            try:
                # A jti is kept while its statement could still be accepted.
                until = statement.expires_ms / 1000 + CLOCK_LEEWAY_S
                self._jtis.spend(member, statement.jti, until, now, jti_cap)
            except JtiRefused as e:
                if e.reason == "replayed":
                    raise refusal("this statement's jti was already used: sign a new one") from None
                if e.reason == "member_full":
                    raise TemporarilyUnavailable(
                        f"this member got {jti_cap} tokens in the last minutes: reuse them "
                        "(a token lives up to 15 minutes) or retry in a few minutes"
                    ) from None
                raise TemporarilyUnavailable(
                    "this edge holds all the jtis it keeps; retry"
                ) from None
            mine = self._by_member.setdefault(member, deque())
            while len(mine) >= token_cap:
                self._tokens.pop(mine.popleft(), None)  # its oldest make room for its new one
            digest = _token_hash(token)
            mine.append(digest)
            self._tokens[digest] = issued

    def _sweep(self, now: float) -> None:
        """Forget expired tokens (lock held)."""
        self._tokens = {h: i for h, i in self._tokens.items() if i.expires_at > now}
        for member, digests in list(self._by_member.items()):
            live = deque(h for h in digests if h in self._tokens)
            if live:
                self._by_member[member] = live
            else:
                del self._by_member[member]

    # -- using ---------------------------------------------------------------

    def holder_of(self, token: str) -> TokenHolder:
        """The holder of a live bearer token, or InvalidToken."""
        with self._lock:
            issued = self._tokens.get(_token_hash(token))
            if issued is not None and issued.expires_at <= self._clock():
                del self._tokens[_token_hash(token)]
                issued = None
        if issued is None:
            raise InvalidToken("the access token is unknown or expired", "get a new token")
        return issued.holder

    def live_tokens(self) -> int:
        """How many tokens the edge holds (expired ones included until swept)."""
        with self._lock:
            return len(self._tokens)


def grantable(
    asked: tuple[ScopeGrant, ...], grant_type: str, patient: str
) -> tuple[ScopeGrant, ...]:
    """The asked scopes this way in may have: its contexts only; patient/ only with
    a patient in context."""
    contexts = CONTEXTS_OF_GRANT[grant_type]
    return tuple(g for g in asked if g.context in contexts and (g.context != "patient" or patient))


def smart_configuration(base_url: str, chain_id: str, custodian: str) -> dict[str, Any]:
    """The SMART discovery document (/.well-known/smart-configuration); `medchain`
    names the chain and custodian a member's statement must name."""
    return {
        "medchain": {"chain_id": chain_id, "custodian": custodian},
        "issuer": base_url,
        "token_endpoint": base_url + TOKEN_PATH,
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": sorted(SUITE_OF_JWS_ALG),
        "scopes_supported": list(SCOPES_SUPPORTED),
        "response_types_supported": [],
        "capabilities": [
            "client-confidential-asymmetric",
            "permission-v1",
            "permission-v2",
            "context-standalone-patient",
        ],
        "code_challenge_methods_supported": [],
    }
