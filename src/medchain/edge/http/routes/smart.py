"""SMART on FHIR at the edge: discovery, the token endpoint, and bearer tokens on /fhir.

POST /auth/token takes a form (application/x-www-form-urlencoded, RFC 6749) and
answers a token or an OAuth error ({"error", "error_description"}), never cached.
The FHIR API (routes/fhir.py) calls `reader_of` for each request: a bearer token
(edge/smart.py) or, as before, a signed request.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from medchain.contracts.exchange.smart import covers
from medchain.edge.custodian import EdgeError
from medchain.edge.http.audit import READER_KEY
from medchain.edge.http.deps import Edge, read_limited, request_signer
from medchain.edge.http.errors import status_of
from medchain.edge.smart import (
    GRANT_TYPES,
    JWT_BEARER,
    TOKEN_PATH,
    InvalidToken,
    OAuthError,
    SmartTokens,
    TokenHolder,
    smart_configuration,
)
from medchain.gateway.limits import KIB, limiter_of, rule
from medchain.sdk.signing import RequestSigner

__all__ = [
    "SMART_RULES",
    "InvalidToken",
    "capability_security",
    "challenge_header",
    "reader_of",
    "router",
    "scope_refusal",
]

router = APIRouter(tags=["SMART on FHIR"])

FORM = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 16
REALM = 'Bearer realm="medchain-edge"'
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# The token endpoint's body cap (an assertion is a few hundred bytes; scopes a few more).
SMART_RULES = (rule("POST", TOKEN_PATH, 8 * KIB),)
# Ledger resources a patient/ token searches by patient (see scope_refusal).
LEDGER_SEARCHES = ("Consent", "AuditEvent")


class InsufficientScope(EdgeError):
    """The token's scopes do not cover this type or interaction."""

    code = "INSUFFICIENT_SCOPE"


def tokens_of(request: Request) -> SmartTokens:
    """The app's token service (made on first use, one per app); its canonical URL is
    `app.state.public_url` if set, else the edge URL its org published on chain."""
    state = request.app.state
    if not hasattr(state, "smart_tokens"):
        state.smart_tokens = SmartTokens(state.edge, public_url=getattr(state, "public_url", None))
    tokens: SmartTokens = state.smart_tokens
    return tokens


def base_url(request: Request) -> str:
    """This edge's URL as the client reached it, without a trailing slash (what
    discovery names until the edge has a canonical URL; never a token's audience)."""
    return str(request.base_url).rstrip("/")


def bearer_token(request: Request) -> str | None:
    """The bearer token of an `Authorization: Bearer` header, if there is one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def reader_of(request: Request) -> RequestSigner:
    """Who reads: the holder of a live bearer token (InvalidToken if it is not
    live), else the signer of the request (BadRequestSignature if unsigned). Both
    count against their key's rate (gateway/limits.py)."""
    token = bearer_token(request)
    if token is None:
        return request_signer(request.app.state.edge, request)
    holder = tokens_of(request).holder_of(token)
    setattr(request.state, READER_KEY, holder.public_key.hex())  # for the refusal audit
    limiter_of(request.app).charge_signer(holder.suite, holder.public_key)
    return holder


def scope_refusal(reader: RequestSigner, request: Request) -> InsufficientScope | None:
    """Why a token's scopes do not cover this FHIR read or search, or None (also for
    a signed request, which scopes do not bound)."""
    if not isinstance(reader, TokenHolder):
        return None
    resource_type = request.path_params.get("resource_type")
    if resource_type is None:
        return None
    right, doing = ("r", "read") if "record_id" in request.path_params else ("s", "search")
    if not covers(reader.grants, resource_type, right):
        return InsufficientScope(
            f"the token's scopes do not let it {doing} {resource_type}",
            "ask for a token with a scope that covers it, e.g. user/" + resource_type + ".rs",
        )
    if "_include" in request.query_params and not covers(reader.grants, "Patient", "r"):
        # Included resources are patients (routes/fhir.py): the token must cover them too.
        return InsufficientScope(
            "the token's scopes do not let it read the Patient resources _include brings",
            "leave _include out, or ask for a scope that covers Patient",
        )
    searched = request.query_params.get("patient")
    in_context = reader.patient and any(g.context == "patient" for g in reader.grants)
    if in_context and resource_type in LEDGER_SEARCHES and searched != reader.patient:
        # The chain bounds clinical reads to the token's patient; these come from the
        # ledger without it, so the edge holds a patient/ token to its patient here.
        return InsufficientScope(
            f"a token for patient {reader.patient} searches {resource_type} of that patient only",
            f"search {resource_type}?patient={reader.patient}",
        )
    return None


def challenge_header(error: EdgeError | None = None) -> dict[str, str]:
    """WWW-Authenticate for a FHIR answer refused for want of (a good) token (RFC 6750)."""
    if error is None:
        return {"WWW-Authenticate": REALM}
    kind = "insufficient_scope" if isinstance(error, InsufficientScope) else "invalid_token"
    description = error.message.replace('"', "'")
    return {"WWW-Authenticate": f'{REALM}, error="{kind}", error_description="{description}"'}


def oauth_error(e: OAuthError) -> JSONResponse:
    """An OAuth error answer (RFC 6749 5.2), with its status from the edge's table."""
    body = {"error": e.error, "error_description": e.message}
    return JSONResponse(body, status_code=status_of(e.code), headers=NO_STORE)


def read_form(body: bytes, content_type: str) -> dict[str, str]:
    """The token request's fields; OAuthError if it is not one form with each field once."""
    if content_type.split(";")[0].strip().lower() != FORM:
        raise OAuthError(f"send the token request as {FORM}")
    try:
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=bool(body),
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("the token request is not a well-formed form") from None
    form = dict(pairs)
    if len(form) != len(pairs):
        raise OAuthError("a token request field appears more than once")
    return form


TOKEN_FORM_SCHEMA = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {"type": "string", "enum": list(GRANT_TYPES)},
        "scope": {"type": "string", "description": "space-separated SMART scopes"},
        "client_assertion_type": {"type": "string", "enum": [JWT_BEARER]},
        "client_assertion": {"type": "string", "description": "JWT signed by the member"},
        "client_id": {"type": "string", "description": "the member's DID (optional)"},
        "challenge": {"type": "string", "description": "base64url canonical CBOR"},
        "signature": {"type": "string", "description": "base64url, of the challenge"},
        "suite": {"type": "string", "enum": ["sm", "intl"]},
    },
}


@router.post(
    TOKEN_PATH,
    summary="OAuth 2.0 token endpoint (SMART Backend Services, challenge)",
    openapi_extra={
        "requestBody": {"required": True, "content": {FORM: {"schema": TOKEN_FORM_SCHEMA}}}
    },
)
async def token(edge: Edge, request: Request) -> JSONResponse:
    """A short-lived bearer token for a member's signed statement: client_credentials
    with a JWT assertion (private_key_jwt), or a signed challenge."""
    del edge  # the token service holds it
    try:
        form = read_form(await read_limited(request), request.headers.get("content-type", ""))
        answer = await run_in_threadpool(
            tokens_of(request).issue, form, None, limiter_of(request.app).charge_signer
        )
    except OAuthError as e:
        return oauth_error(e)
    return JSONResponse(answer, headers=NO_STORE)


def discovery(request: Request) -> dict[str, Any]:
    """The SMART configuration of this edge, with its canonical URL (as the client
    reached it while it has none: token requests are then refused anyway)."""
    edge = request.app.state.edge
    base = tokens_of(request).base_url() or base_url(request)
    return smart_configuration(base, edge.node.chain_id, edge.org_id)


@router.get("/.well-known/smart-configuration", summary="SMART discovery")
def well_known(request: Request) -> JSONResponse:
    """Where to get tokens and what this edge grants (SMART App Launch 2.x)."""
    return JSONResponse(discovery(request))


@router.get("/fhir/.well-known/smart-configuration", summary="SMART discovery (FHIR base)")
def well_known_fhir(request: Request) -> JSONResponse:
    """The same document at the FHIR base, where SMART clients look first."""
    return JSONResponse(discovery(request))


SMART_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def capability_security(base: str) -> dict[str, Any]:
    """CapabilityStatement.rest.security: SMART on FHIR (the service coding and the
    oauth-uris extension naming the token endpoint) beside per-request signatures."""
    return {
        "extension": [
            {"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": base + TOKEN_PATH}]}
        ],
        "cors": False,
        "service": [
            {
                "coding": [{"system": SMART_SERVICE, "code": "SMART-on-FHIR"}],
                "text": "OAuth2 bearer tokens in the SMART on FHIR way (Backend Services; "
                "a member's signed challenge); see /.well-known/smart-configuration",
            }
        ],
        "description": "Send a SMART bearer token (Authorization: Bearer) or sign each "
        "request with your ledger key (X-MedChain-Suite/-Key/-Time/-Signature, "
        "X-MedChain-Purpose inside the signature). Either way, reads are decided by "
        "consent and role and audited on chain with a statement the reader signed: the "
        "token's purpose of use is the one its member signed (default TREAT).",
    }
