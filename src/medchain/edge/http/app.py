"""HTTP face of a custodian's edge (see edge/custodian.py). OpenAPI at /docs.

Requests that act for someone are signed (edge/signing.py); the chain says
whether that someone may. Records go in as FHIR R4 JSON (or raw bytes with
resource_type=Binary) and come out only as ciphertext with a wrapped key.
The routes are in routes/, the edge they serve reaches them through deps.Edge.
"""

from __future__ import annotations

from fastapi import FastAPI

from medchain import __version__
from medchain.edge.custodian import CustodianEdge
from medchain.edge.epcis_capture import EpcisDocuments
from medchain.edge.epcis_store import EpcisStore
from medchain.edge.http import errors
from medchain.edge.http.audit import RefusalAudit
from medchain.edge.http.operations import install_operations
from medchain.edge.http.routes import (
    audit_log,
    epcis,
    erasure,
    fhir,
    records,
    sessions,
    smart,
    status,
)
from medchain.gateway.errors import ERROR_RESPONSES
from medchain.gateway.limits import EDGE_RULES, Limiter, Limits, install_limits
from medchain.gateway.logs import RequestLog

# In this order, so the OpenAPI document lists the paths as it always has.
ROUTERS = (
    status.router,
    records.router,
    sessions.router,
    erasure.router,
    smart.router,  # before fhir: /fhir/.well-known/... is not a FHIR read
    fhir.router,
    audit_log.router,
    epcis.router,
)


def create_edge_app(edge: CustodianEdge, limits: Limits | Limiter | None = None) -> FastAPI:
    """The edge's app; `limits` what one client may ask of it (gateway/limits.py)."""
    app = FastAPI(
        title=f"MedChain edge of {edge.org_id}",
        version=__version__,
        description="Custodian record vault and exchange service.",
        responses=ERROR_RESPONSES,
    )
    app.state.edge = edge
    app.state.epcis = EpcisDocuments(
        edge, EpcisStore(edge.vault.root / "epcis", edge.vault.custodian)
    )
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(RefusalAudit, log=edge.audit_log)  # every refusal, into the audit log
    # a flood is refused before any work
    install_limits(app, limits, EDGE_RULES + smart.SMART_RULES)
    app.add_middleware(errors.FhirErrors)  # every /fhir error an OperationOutcome
    install_operations(app, edge)  # /healthz, /readyz, /metrics; counts FHIR errors too
    app.add_middleware(RequestLog)  # outermost: a request id and an access line each
    return app
