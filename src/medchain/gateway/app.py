"""The gateway: REST API over a running engine. OpenAPI docs at /docs."""

from __future__ import annotations

from fastapi import FastAPI

from medchain import __version__
from medchain.consensus.solo import SoloEngine
from medchain.gateway import errors
from medchain.gateway.routes import chain, fhir, health, identity, supervision, supply, txs


def create_app(engine: SoloEngine) -> FastAPI:
    """A FastAPI app serving `engine`."""
    app = FastAPI(
        title="MedChain gateway",
        version=__version__,
        description=(
            "Submit signed transactions, follow them to commit, read blocks and state, "
            "health records, consent, exchange sessions and the audit trail (also as FHIR R4)."
        ),
    )
    app.state.engine = engine
    errors.install(app)
    for module in (txs, chain, identity, health, fhir, supervision, supply):
        app.include_router(module.router)
    return app
