"""SMART on FHIR tokens at a custodian's edge: who gets one, for what, and how long.

Two ways in, both a statement signed by a member's own ledger key
(contracts/exchange/smart.py):

  client_credentials  SMART Backend Services: a JWT assertion (RFC 7523),
                      signed SM2SM3 or Ed25519 by the member's key on chain;
                      client_id = the member's DID; system/ scopes.
  signed challenge    for people: canonical CBOR naming the member, this
                      custodian, a fresh jti, the scopes and the purpose of
                      use; patient/ and user/ scopes.

The edge checks the signature, the audience, the times (a statement lives at
most 5 minutes) and that its jti is new, then issues an opaque bearer token that
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
import re
import secrets
import threading
import time
import warnings
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
MAX_TOKENS, MAX_TOKENS_PER_MEMBER = 100_000, 20
MAX_JTIS = 200_000
# How far a client's clock may be off for an assertion's or challenge's times.
CLOCK_LEEWAY_S = 60
DID = re.compile(re.escape(DID_METHOD) + r"[1-9A-HJ-NP-Za-km-z]{1,64}")


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
    """The edge's token service: checks statements, issues and resolves tokens."""

    def __init__(self, edge: CustodianEdge, clock: Callable[[], float] = time.time) -> None:
        self.edge = edge
        self._clock = clock  # wall-clock seconds (tests move it)
        self._lock = threading.Lock()
        self._tokens: dict[bytes, Issued] = {}
        self._jtis: dict[tuple[str, str], float] = {}

    # -- issuing -------------------------------------------------------------

    def issue(
        self,
        form: dict[str, str],
        token_url: str,
        charge: Callable[[str, bytes], None] | None = None,
    ) -> dict[str, Any]:
        """A token response for a token request's form, or an OAuthError. `charge`
        counts the request against the member's key once its statement verified
        (gateway/limits.py: RateLimited past the key's rate)."""
        grant_type = form.get("grant_type", "")
        if grant_type == CLIENT_CREDENTIALS:
            holder, statement = self._assertion(form, token_url)
        elif grant_type == CHALLENGE_GRANT:
            holder, statement = self._challenge(form)
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
                "rights (patient/ needs a patient in context)"
            )
        holder = replace(holder, grants=granted)
        if charge is not None:
            charge(holder.suite, holder.public_key)
        now = self._clock()
        expires_at = min((statement.issued_ms + TOKEN_MS) / 1000, now + TOKEN_MS / 1000)
        issued = Issued(holder, statement.member, " ".join(g.text() for g in granted), expires_at)
        token = secrets.token_urlsafe(32)
        self._keep(token, issued, statement, now)
        return issued.answer(token, now)

    def _assertion(self, form: dict[str, str], token_url: str) -> tuple[TokenHolder, Statement]:
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
        public, member = self._member_key(statement.member, suite, InvalidClient)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "EdDSA" is deprecated by RFC 9864, not wrong
                token = jwt.decode(assertion, verifying_key(suite, public), algorithms_for(suite))
            claims = JWTClaimsRegistry(
                now=int(self._clock()),
                leeway=CLOCK_LEEWAY_S,
                iss={"essential": True, "value": statement.member},
                sub={"essential": True, "value": statement.member},
                aud={"essential": True, "value": token_url},
                exp={"essential": True},
                iat={"essential": False},
                jti={"essential": True},
            )
            claims.validate(token.claims)
        except JoseError as e:
            raise InvalidClient(f"client_assertion refused: {e.error}: {e.description}") from None
        if not verify_statement(JWS, suite, public, signing_input.encode(), signature):
            raise InvalidClient("client_assertion's signature does not verify")
        if not self._in_time(statement):
            raise InvalidClient("the assertion has expired (or is not yet valid): sign a new one")
        proof = {
            "form": JWS,
            "suite": suite,
            "public_key": public,
            "signed": signing_input.encode(),
            "signature": signature,
        }
        return self._holder(statement, proof, member), statement

    def _challenge(self, form: dict[str, str]) -> tuple[TokenHolder, Statement]:
        signed = b64url_decode(form.get("challenge", ""), "challenge")
        signature = b64url_decode(form.get("signature", ""), "signature")
        try:
            statement = read_statement(CHALLENGE, signed)
        except StatementError as e:
            raise InvalidGrant(f"challenge: {e}") from None
        self._addressed_here(statement, InvalidGrant)
        suite = form.get("suite", "sm")
        public, member = self._member_key(statement.member, suite, InvalidGrant)
        if not verify_statement(CHALLENGE, suite, public, signed, signature):
            raise InvalidGrant("the challenge's signature does not verify")
        if not self._in_time(statement):
            raise InvalidGrant("the challenge has expired (or is not yet valid): sign a new one")
        proof = {
            "form": CHALLENGE,
            "suite": suite,
            "public_key": public,
            "signed": signed,
            "signature": signature,
        }
        return self._holder(statement, proof, member), statement

    def _in_time(self, statement: Statement) -> bool:
        """Whether now (give or take CLOCK_LEEWAY_S) is within the statement's validity."""
        now_ms, leeway_ms = int(self._clock() * 1000), CLOCK_LEEWAY_S * 1000
        return statement.issued_ms - leeway_ms <= now_ms <= statement.expires_ms + leeway_ms

    def _member_key(
        self, did: str, suite: str, refusal: type[OAuthError]
    ) -> tuple[bytes, dict[str, Any]]:
        """The member's active key of this suite on chain and its identity record, or
        `refusal`."""
        if not DID.fullmatch(did):
            raise refusal("the client id must be a member's DID (did:medchain:...)")
        try:
            member = self.edge.node.member(did)
        except ClientError:
            raise refusal(f"unknown client {did!r}: not a member on chain") from None
        if member.get("status") != "active":
            raise refusal(f"client {did!r} is {member.get('status')} on chain")
        for key in member["keys"]:
            if key["status"] == "active" and key["suite"] == suite:
                return bytes.fromhex(key["public_key"]), member
        raise refusal(f"client {did!r} has no active {suite} key on chain")

    def _addressed_here(self, statement: Statement, refusal: type[OAuthError]) -> None:
        """Refuse a statement for another chain or custodian, or an unknown purpose,
        before any lookup or signature check."""
        if statement.chain_id != self.edge.node.chain_id:
            raise refusal("the statement is for another chain")
        if statement.custodian != self.edge.org_id:
            raise refusal(f"the statement is for custodian {statement.custodian!r}, not this one")
        if purpose_of_use(statement.purpose_of_use) not in PURPOSES:
            raise refusal(f"the signed purpose of use must be one of {sorted(PURPOSES)}")

    def _holder(
        self, statement: Statement, proof: dict[str, Any], member: dict[str, Any]
    ) -> TokenHolder:
        """The holder of a token issued on a verified statement of `member`."""
        patient = statement.patient or (statement.member if "patient" in member["roles"] else "")
        return TokenHolder(
            suite=proof["suite"],
            public_key=proof["public_key"],
            time_ms=statement.issued_ms,
            signature=proof["signature"],
            body_sm3=b"",
            purpose=statement.purpose_of_use,
            statement=proof,
            patient=patient,
        )

    def _keep(self, token: str, issued: Issued, statement: Statement, now: float) -> None:
        """Remember the token, once its statement's jti is new (each statement once)."""
        jti = (statement.member, statement.jti)
        with self._lock:
            if jti in self._jtis:
                refusal = InvalidClient if statement.audience else InvalidGrant
                raise refusal("this statement's jti was already used: sign a new one")
            if len(self._jtis) >= MAX_JTIS or len(self._tokens) >= MAX_TOKENS:
                self._sweep(now)
            if len(self._jtis) >= MAX_JTIS or len(self._tokens) >= MAX_TOKENS:
                raise TemporarilyUnavailable("this edge holds all the tokens it keeps; retry")
            # A jti is kept while its statement could still be accepted.
            self._jtis[jti] = statement.expires_ms / 1000 + CLOCK_LEEWAY_S
            mine = [h for h, i in self._tokens.items() if i.member == issued.member]
            for old in mine[: max(0, len(mine) - MAX_TOKENS_PER_MEMBER + 1)]:
                del self._tokens[old]  # a member's oldest (first kept) make room for its new one
            self._tokens[_token_hash(token)] = issued

    def _sweep(self, now: float) -> None:
        """Forget expired tokens and jtis whose statements have expired (lock held)."""
        self._jtis = {k: t for k, t in self._jtis.items() if t > now}
        self._tokens = {h: i for h, i in self._tokens.items() if i.expires_at > now}

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
