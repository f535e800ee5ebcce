"""The gateway: REST API over a running engine. OpenAPI docs at /docs."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from medchain import __version__
from medchain.consensus.engine import Engine as ChainEngine
from medchain.contracts.schemas import openapi_components
from medchain.gateway import errors
from medchain.gateway.limits import NODE_RULES, Limiter, Limits, install_limits
from medchain.gateway.logs import RequestLog
from medchain.gateway.operations import install_operations
from medchain.gateway.routes import (
    chain,
    claims,
    contracts,
    fhir,
    governance,
    health,
    htlc,
    identity,
    referral,
    research,
    supervision,
    supply,
    token,
    txs,
    zk,
)

SIGNING = (
    " Reads that concern a person or an organisation's business are signed requests "
    "(headers X-MedChain-Suite, -Key, -Time, -Signature and the optional, signed "
    "X-MedChain-Purpose; see medchain.sdk.signing.sign_request) and answer only what "
    "the signer may see. Public: status, accounts, transactions, DID documents, the "
    "organisation directory and the GS1 Digital Link pages."
)
# The routers anyone may use without a signature; everything else is a signed read.
PUBLIC_ROUTERS = (
    txs.router,
    chain.public_router,
    identity.router,
    supply.public_router,
    token.public_router,
    contracts.router,
    zk.public_router,
    htlc.public_router,
)


def create_app(
    engine: ChainEngine,
    operators: frozenset[tuple[str, bytes]] = frozenset(),
    limits: Limits | Limiter | None = None,
    min_peers: int = 0,
) -> FastAPI:
    """A FastAPI app serving `engine`; `operators` are the (suite, public key) pairs this
    node trusts with raw blocks and state (see gateway/auth.py); `limits` what one
    client may ask (gateway/limits.py; the defaults if None); `min_peers` the CometBFT
    peers /readyz requires (gateway/operations.py)."""
    app = FastAPI(
        title="MedChain gateway",
        version=__version__,
        description=(
            "Submit signed transactions, follow them to commit, read blocks and state, "
            "health records, consent, exchange sessions and the audit trail (also as FHIR R4)."
            + SIGNING
        ),
        responses=errors.ERROR_RESPONSES,
    )
    app.state.engine = engine
    app.state.operators = operators
    errors.install(app)
    install_limits(app, limits, NODE_RULES)
    for router in PUBLIC_ROUTERS:
        app.include_router(router)
    for module in (chain, claims, health, fhir, htlc, research, referral, supervision, supply, zk):
        app.include_router(module.router)
    app.include_router(token.router)
    app.include_router(governance.router)
    publish_payload_schemas(app)
    install_operations(app, engine, min_peers)  # /healthz, /readyz, /metrics; counts requests
    app.add_middleware(RequestLog)  # outermost: a request id and an access line each
    return app


def publish_payload_schemas(app: FastAPI) -> None:
    """Add every contract action's payload schema to the app's OpenAPI document
    (components.schemas, `<contract>.<action>`): transactions are submitted as
    signed CBOR, so no route's body model would otherwise show integrators them."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            document.setdefault("components", {}).setdefault("schemas", {}).update(
                openapi_components()
            )
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_public_app(engine: ChainEngine, limits: Limits | Limiter | None = None) -> FastAPI:
    """Only the public routes of `engine`'s gateway, to serve on a port of its own (the
    drug-verification page a patient's phone reaches): nothing here needs a signature,
    and nothing personal is reachable through it."""
    app = FastAPI(
        title="MedChain public gateway",
        version=__version__,
        description="Chain status, accounts and transaction submission, DID documents, "
        "the organisation directory and GS1 Digital Link pack pages.",
        responses=errors.ERROR_RESPONSES,
    )
    app.state.engine = engine
    app.state.operators = frozenset()
    errors.install(app)
    install_limits(app, limits, NODE_RULES)
    for router in PUBLIC_ROUTERS:
        app.include_router(router)
    publish_payload_schemas(app)
    app.add_middleware(RequestLog)
    return app
