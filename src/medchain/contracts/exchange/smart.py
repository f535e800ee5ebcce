"""SMART on FHIR statements: what a member signs to get a token, as the chain reads it.

A member gets a bearer token from a custodian's edge with a statement signed by
its own ledger key: a JWT assertion (SMART Backend Services, RFC 7523) or a
signed challenge (canonical CBOR, like a signed request). The edge puts that
statement on chain with every read the token makes (`exchange.token_access`),
and the exchange contract checks it as it checks a signed request: the member's
active key signed it, for this chain and this custodian, the block falls within
its validity, and the record is inside the scopes and the patient it names. So
an audited read still carries the reader's own signature; what a custodian can
claim with it is bounded by the statement (docs/smart.md).

Times: a statement is valid for at most STATEMENT_MS between its issue and
expiry (the token request must reach the edge in that window), and reads on its
authority are accepted until TOKEN_MS after its issue (the token's longest
life). Block time decides on chain, never a wall clock.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from medchain import crypto, encoding
from medchain.crypto.jws import SUITE_OF_JWS_ALG, verify_jws
from medchain.exceptions import MedChainError

STATEMENT_MS = 5 * 60_000
TOKEN_MS = 15 * 60_000
MAX_STATEMENT_BYTES = 4096
MAX_SCOPE_CHARS = 1000
MAX_JSON_STRUCTURES = 16  # objects and arrays in one JWS segment
# Digits of a JSON integer: claims are times below 2**53 (16 digits); more would be
# parsed or refused by each node's int_max_str_digits, which nodes may set apart.
MAX_INT_DIGITS = 16
CHALLENGE_PURPOSE = "medchain/smart-challenge/v1"
# A statement's two forms: a JWS compact (header.payload, signed) or a CBOR challenge.
JWS, CHALLENGE = "jws", "cbor"
FORMS = (JWS, CHALLENGE)
# The private claim of a JWT assertion that names what the chain checks.
CLAIM = "medchain"

# SMART scopes we grant: a context, a type (or *), and v1 (.read) or v2 (.rs) rights.
SCOPE = re.compile(r"(patient|user|system)/(\*|[A-Z][A-Za-z]{0,63})\.(read|write|\*|c?r?u?d?s?)")
CONTEXTS = ("patient", "user", "system")


class StatementError(MedChainError, ValueError):
    """A statement that cannot be read: wrong form, bad encoding, a claim missing."""


@dataclass(frozen=True)
class Statement:
    """The claims of a member's signed statement, in one shape for both forms."""

    member: str  # the member's DID (client_id, iss and sub of an assertion)
    chain_id: str
    custodian: str  # the org whose edge may act on it
    purpose_of_use: str
    scope: str  # space-separated SMART scopes; "" puts no bound beyond consent
    patient: str  # the patient in context, "" for none
    jti: str
    issued_ms: int
    expires_ms: int
    audience: str  # the token URL (assertion; a challenge's, or "" in an older challenge)


@dataclass(frozen=True)
class ScopeGrant:
    """One SMART scope we honour: reading (r) and/or searching (s) a type in a context."""

    context: str
    resource_type: str  # "*" for every type
    read: bool
    search: bool

    def text(self) -> str:
        """The scope in SMART v2 form, e.g. `user/Observation.rs`."""
        rights = ("r" if self.read else "") + ("s" if self.search else "")
        return f"{self.context}/{self.resource_type}.{rights}"


def parse_scopes(scope: str) -> tuple[ScopeGrant, ...]:
    """The read and search rights of a scope string. Rights we never grant (create,
    update, delete), granular scopes (`?category=`) and other scopes (openid,
    launch) give nothing; v1 `.read` and `.*` read as v2 `.rs`."""
    grants = []
    for item in scope.split():
        match = SCOPE.fullmatch(item)
        if match is None:
            continue
        context, resource_type, rights = match.groups()
        if rights in ("read", "*"):
            read = search = True
        elif rights == "write":
            continue
        else:
            read, search = "r" in rights, "s" in rights
        if read or search:
            grants.append(ScopeGrant(context, resource_type, read, search))
    return tuple(grants)


def covers(grants: tuple[ScopeGrant, ...], resource_type: str, right: str = "") -> bool:
    """Whether a grant covers this type for `right` ("r" read, "s" search, "" either)."""
    for g in grants:
        if g.resource_type not in ("*", resource_type):
            continue
        if (right == "r" and g.read) or (right == "s" and g.search) or (not right):
            return True
    return False


def challenge_message(
    chain_id: str,
    member: str,
    custodian: str,
    jti: str,
    issued_ms: int,
    expires_ms: int,
    scope: str,
    purpose_of_use: str = "",
    patient: str = "",
    audience: str = "",
) -> bytes:
    """The canonical bytes a member signs to exchange for a token (the people flow).
    `audience` is the token URL of the edge it is for: an edge takes only a challenge
    naming its own (so no other edge can relay it); without one, the claim is left
    out, as in challenges made before it existed."""
    claims = {
        "purpose": CHALLENGE_PURPOSE,
        "chain_id": chain_id,
        "member": member,
        "custodian": custodian,
        "jti": jti,
        "issued_ms": issued_ms,
        "expires_ms": expires_ms,
        "scope": scope,
        "purpose_of_use": purpose_of_use,
        "patient": patient,
    }
    if audience:
        claims["audience"] = audience
    return encoding.encode(claims)


def verify_statement(form: str, suite: str, public_key: bytes, signed: bytes, sig: bytes) -> bool:
    """True only if `public_key` signed the statement (a JWS under its suite's alg)."""
    if form == CHALLENGE:
        return crypto.verify(suite, public_key, signed, sig)
    try:
        header = read_header(signed)
    except StatementError:
        return False
    if SUITE_OF_JWS_ALG.get(str(header.get("alg"))) != suite or "crit" in header:
        return False
    return verify_jws(suite, public_key, signed, sig)


def read_header(signed: bytes) -> dict[str, Any]:
    """The protected header of a JWS statement (StatementError if it is not JSON)."""
    if len(signed) > MAX_STATEMENT_BYTES:
        raise StatementError(f"a statement is at most {MAX_STATEMENT_BYTES} bytes")
    return _json(_b64url(signed.split(b".")[0]))


def read_statement(form: str, signed: bytes) -> Statement:
    """The claims of a statement (StatementError if it has not the shape its form needs).
    Its signature is checked apart (verify_statement)."""
    if len(signed) > MAX_STATEMENT_BYTES:
        raise StatementError(f"a statement is at most {MAX_STATEMENT_BYTES} bytes")
    if form == CHALLENGE:
        return _read_challenge(signed)
    if form == JWS:
        return _read_assertion(signed)
    raise StatementError(f"a statement's form is one of {FORMS}")


def _read_challenge(signed: bytes) -> Statement:
    try:
        claims = encoding.decode(signed)
    except ValueError:
        raise StatementError("the challenge is not canonical CBOR") from None
    if not isinstance(claims, dict) or claims.get("purpose") != CHALLENGE_PURPOSE:
        raise StatementError(f"the challenge's purpose must be {CHALLENGE_PURPOSE!r}")
    names = ("chain_id", "member", "custodian", "jti", "scope", "purpose_of_use", "patient")
    text = {n: _text(claims, n) for n in names}
    if set(claims) - {"audience"} != {*names, "purpose", "issued_ms", "expires_ms"}:
        raise StatementError("the challenge has claims missing or unknown")
    return _checked(
        Statement(
            member=text["member"],
            chain_id=text["chain_id"],
            custodian=text["custodian"],
            purpose_of_use=text["purpose_of_use"],
            scope=text["scope"],
            patient=text["patient"],
            jti=text["jti"],
            issued_ms=_int(claims, "issued_ms"),
            expires_ms=_int(claims, "expires_ms"),
            audience=_text(claims, "audience", ""),
        )
    )


def _read_assertion(signed: bytes) -> Statement:
    parts = signed.split(b".")
    if len(parts) != 2:
        raise StatementError("a JWS statement is the compact header.payload it signs")
    claims = _json(_b64url(parts[1]))
    medchain = claims.get(CLAIM)
    if not isinstance(medchain, dict):
        raise StatementError(f"the assertion has no {CLAIM!r} claim (chain_id, custodian)")
    member = _text(claims, "sub")
    if _text(claims, "iss") != member:
        raise StatementError("the assertion's iss and sub must both be the client id")
    audience = claims.get("aud")
    if not isinstance(audience, str):
        raise StatementError("the assertion's aud must be the token URL")
    expires_ms = _int(claims, "exp") * 1000
    # SMART Backend Services makes iat optional (exp is at most 5 minutes ahead):
    # without it, the statement counts as issued STATEMENT_MS before it expires.
    issued_ms = _int(claims, "iat") * 1000 if "iat" in claims else expires_ms - STATEMENT_MS
    return _checked(
        Statement(
            member=member,
            chain_id=_text(medchain, "chain_id"),
            custodian=_text(medchain, "custodian"),
            purpose_of_use=_text(medchain, "purpose_of_use", ""),
            scope=_text(claims, "scope", ""),
            patient=_text(medchain, "patient", ""),
            jti=_text(claims, "jti"),
            issued_ms=issued_ms,
            expires_ms=expires_ms,
            audience=audience,
        )
    )


def _checked(statement: Statement) -> Statement:
    """A statement whose own validity is within the bound (issued before it expires)."""
    span = statement.expires_ms - statement.issued_ms
    if not 0 < span <= STATEMENT_MS:
        raise StatementError(f"a statement must expire within {STATEMENT_MS // 1000} s of issue")
    if not 0 < len(statement.jti) <= 128:
        raise StatementError("jti must be 1 to 128 characters")
    if len(statement.scope) > MAX_SCOPE_CHARS:
        raise StatementError(f"scope is longer than {MAX_SCOPE_CHARS} characters")
    return statement


def _b64url(segment: bytes) -> bytes:
    if not re.fullmatch(rb"[A-Za-z0-9_-]*", segment):
        raise StatementError("a JWS segment must be base64url without padding")
    try:
        return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise StatementError("a JWS segment must be base64url without padding") from None


def _no_floats(text: str) -> Any:
    raise StatementError(f"numbers in a statement are integers, not {text}")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise StatementError(f"numbers in a statement have at most {MAX_INT_DIGITS} digits")
    return int(text)


def _json(raw: bytes) -> dict[str, Any]:
    # Claims nest two levels at most; a bound on brackets keeps the parser from deep
    # recursion (a RecursionError would not be a refusal every node gives alike).
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_STRUCTURES:
        raise StatementError("a JWS segment has too many JSON objects or arrays")
    try:
        value = json.loads(
            raw, parse_float=_no_floats, parse_constant=_no_floats, parse_int=_bounded_int
        )
    except ValueError:  # not JSON, not UTF-8, a float (_no_floats) or a long number
        raise StatementError("a JWS segment is not JSON of integers and text") from None
    if not isinstance(value, dict):
        raise StatementError("a JWS segment must be a JSON object")
    return value


def _text(claims: dict[str, Any], name: str, default: str | None = None) -> str:
    value = claims.get(name, default)
    if not isinstance(value, str) or len(value) > MAX_SCOPE_CHARS:
        raise StatementError(f"claim {name!r} must be text")
    return value


def _int(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise StatementError(f"claim {name!r} must be a whole number")
    return value
