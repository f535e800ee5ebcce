"""Who is asking the node: signed reads, resolved to an on-chain identity.

Reads that concern a person or an organisation's business are signed with the
caller's ledger key, exactly as requests to an edge are (edge/signing.py: SM2
over chain id, method, path with query, time, SM3 of the body and the purpose
of use). The gateway verifies the signature, then resolves the key to its
member record on chain, so every answer can be cut to what that caller may
see (gateway/policy.py). Nobody needs an account on the node.

Node operators are the keys the node's own home lists in `operators.json`
(written by `medchain init` with the admin key, extended with `medchain
operators add`), plus the chain's consortium admins. They may read raw
blocks and raw state: a node operator holds the database anyway, and tools
that run beside a node (a custodian's edge, the relay) need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from medchain import encoding
from medchain.consensus.engine import Engine as ChainEngine
from medchain.contracts.identity import model as identity
from medchain.core.tx import key_id
from medchain.crypto import COSTLY_SUITES
from medchain.gateway.deps import get_engine
from medchain.gateway.errors import Forbidden, Unauthenticated
from medchain.gateway.limits import limiter_of
from medchain.gateway.operators import OPERATORS_FILE as OPERATORS_FILE
from medchain.gateway.operators import add_operator as add_operator
from medchain.gateway.operators import load_operators as load_operators
from medchain.sdk.signing import BadRequestSignature, verify_request

# The signature headers, as OpenAPI header parameters of every signed route.
SIGNATURE_HEADERS: list[dict[str, Any]] = [
    {
        "name": name,
        "in": "header",
        "required": required,
        "schema": {"type": "string"},
        "description": description,
    }
    for name, required, description in (
        ("X-MedChain-Suite", True, "signature suite of your ledger key: sm or intl"),
        ("X-MedChain-Key", True, "your public key, hex"),
        ("X-MedChain-Time", True, "ms since the epoch; within 5 minutes of the node's clock"),
        (
            "X-MedChain-Signature",
            True,
            "hex signature over medchain.contracts.exchange.proof.request_message(chain id, "
            "method, path with query, time, SM3 of the body, purpose): "
            "medchain.sdk.signing.sign_request makes these headers",
        ),
        ("X-MedChain-Purpose", False, "purpose of use (TREAT by default); signed"),
    )
]
SIGNED = {"parameters": SIGNATURE_HEADERS}


@dataclass(frozen=True)
class Caller:
    """The verified signer of a read: their DID, org and roles on chain, the purpose of
    use they signed, and whether this node counts them as an operator."""

    did: str
    org_id: str | None
    roles: frozenset[str]
    purpose: str
    operator: bool

    @property
    def regulator(self) -> bool:
        """Regulators may read across organisations (see supervises)."""
        return "regulator" in self.roles

    @property
    def supervises(self) -> bool:
        """Operators and regulators see across patients and organisations."""
        return self.operator or self.regulator


def signed_path(request: Request) -> str:
    """The path and raw query string, as the client signed them."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _state(engine: ChainEngine, key: str) -> Any:
    raw = engine.app.db.get(key)
    return None if raw is None else encoding.decode(raw)


def get_caller(request: Request, engine: Annotated[ChainEngine, Depends(get_engine)]) -> Caller:
    """The signer of this request, refused with 401 if unsigned, stale, forged or
    unknown, and 403 if their key or membership is not active."""
    operators: frozenset[tuple[str, bytes]] = getattr(request.app.state, "operators", frozenset())

    def screen(suite: str, public_key: bytes) -> None:
        # An sm9 signature costs two pairings and anyone can make valid ones with a
        # KGC of their own: refuse a key the chain would refuse before verifying it.
        if suite in COSTLY_SUITES:
            _member_of(engine, operators, suite, public_key)

    try:
        signer = verify_request(
            request.headers,
            engine.app.chain_id,
            request.method,
            signed_path(request),
            b"",
            screen=screen,
        )
    except BadRequestSignature as e:
        raise Unauthenticated(str(e)) from None
    limiter_of(request.app).charge_signer(signer.suite, signer.public_key)
    listed = (signer.suite, signer.public_key) in operators
    member = _member_of(engine, operators, signer.suite, signer.public_key)
    if member is None:  # an operator's key need not be a member of the chain
        return Caller("", None, frozenset(), signer.purpose, operator=True)
    roles = frozenset(member["roles"])
    return Caller(
        did=member["did"],
        org_id=member.get("org_id"),
        roles=roles,
        purpose=signer.purpose,
        operator=listed or "consortium_admin" in roles,
    )


def _member_of(
    engine: ChainEngine, operators: frozenset[tuple[str, bytes]], suite: str, public_key: bytes
) -> Any:
    """The active member this key signs for (None for a listed operator's key that is
    no member); Unauthenticated if unknown, Forbidden if it may not act."""
    entry = _state(engine, identity.pubkey_key(key_id(suite, public_key)))
    member = None if entry is None else _state(engine, identity.did_key(entry["did"]))
    if member is None:
        if (suite, public_key) in operators:
            return None
        raise Unauthenticated(
            "the signing key is not registered on this chain",
            "register the key first (identity.register_patient, or ask your org admin)",
        )
    if entry["status"] != identity.ACTIVE or member["status"] != identity.ACTIVE:
        raise Forbidden(f"the signing key or its member is not active ({member['status']})")
    if suite == identity.SM9_SUITE:  # the chain's own rule (identity.authenticate)
        org = _state(engine, identity.org_key(member["org_id"])) if member["org_id"] else None
        problem = identity.sm9_key_problem(org, member["did"], public_key)
        if problem is not None:
            raise Forbidden(problem)
    return member


SignedCaller = Annotated[Caller, Depends(get_caller)]


def require_operator(caller: Caller, what: str, regulators_too: bool = False) -> None:
    """Raw chain data is for the node's operators (and, for blocks, regulators)."""
    if caller.operator or (regulators_too and caller.regulator):
        return
    who = "node operators and regulators" if regulators_too else "node operators"
    raise Forbidden(
        f"{what} is for {who} only",
        "ask the node's operator to list your key with `medchain operators add`",
    )
