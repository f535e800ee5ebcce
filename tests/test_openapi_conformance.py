"""The node's and the edge's OpenAPI documents, checked against the running apps by schemathesis.

For every operation, schemathesis sends requests generated from the document
(valid and invalid ones) to the real app in-process (ASGI) over a real solo
chain, and fails on any 5xx answer or any status the document does not declare
(gateway/errors.py ERROR_RESPONSES declares the error answers once for all).
Requests go unsigned and signed (SM2 request signatures over the exact bytes
sent), so signed reads are exercised past the signature gate. Rate limits are
off here: a 429 would hide the route behind it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, status_code_conformance
from schemathesis.generation.modes import GenerationMode
from support.ledger import Ledger

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.edge.custodian import CustodianEdge
from medchain.edge.http.app import create_edge_app
from medchain.edge.vault import Vault
from medchain.gateway.app import create_app
from medchain.gateway.limits import Limits
from medchain.node import GatewayServer, free_port
from medchain.sdk.client import Client
from medchain.sdk.signing import sign_request

EXAMPLES = 20
CHECKS = [not_a_server_error, status_code_conformance]
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


class SignedRequests(requests.auth.AuthBase):
    """Signs each request as it is sent (path, query and body exactly as on the wire)."""

    def __init__(self, key: crypto.KeyPair, chain_id: str) -> None:
        self.key, self.chain_id = key, chain_id

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body.encode() if isinstance(r.body, str) else (r.body or b"")
        method = r.method or "GET"
        r.headers.update(
            sign_request(self.key, self.chain_id, method, r.path_url, body, purpose="TREAT")
        )
        return r


def signed_as(key: crypto.KeyPair, chain_id: str) -> requests.Session:
    session = requests.Session()
    session.auth = SignedRequests(key, chain_id)
    return session


class World:
    """A solo chain with a hospital whose admin runs the edge, and a patient."""

    def __init__(self, directory: Path) -> None:
        self.admin = crypto.generate_keypair()
        self.patient = crypto.generate_keypair()
        self.ledger = Ledger(directory / "chain.db", crypto.generate_keypair())
        self.ledger.add_org("hosp-a", self.admin)
        self.ledger.add_patient(self.patient)
        self.engine = SoloEngine(self.ledger.app, block_interval=0.02)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("openapi"))
    w.engine.start()
    yield w
    w.engine.stop()


def conformance_failures(schema: Any, session: requests.Session | None = None) -> list[str]:
    """Each operation with valid and invalid generated requests; what went wrong, by operation.

    (schemathesis' own pytest plugin needs a pytest private API that pytest 9 removed,
    so the operations are driven here, each as its own hypothesis run.)
    """
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        cases = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )

        @SETTINGS
        @given(case=cases)
        def answers_as_declared(case: Any) -> None:
            case.call_and_validate(checks=CHECKS, session=session)

        try:
            answers_as_declared()
        except Exception as e:  # collect every operation's failure, not only the first
            failures.append(f"{operation.label}: {e}")
    return failures


def test_node_api_answers_only_what_its_document_declares(world: World) -> None:
    app = create_app(world.engine, limits=Limits.unlimited())
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = conformance_failures(schema)
    failures += conformance_failures(schema, signed_as(world.patient, world.ledger.chain_id))
    assert not failures, "\n\n".join(failures)


def test_edge_api_answers_only_what_its_document_declares(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    operators = frozenset({(world.admin.suite, world.admin.public)})  # the edge reads state
    gateway = GatewayServer(
        world.engine, port=free_port(), operators=operators, limits=Limits.unlimited()
    )
    gateway.start()
    try:
        node = Client(gateway.url, key=world.admin)
        vault = Vault(tmp_path_factory.mktemp("edge") / "vault", world.admin)
        app = create_edge_app(CustodianEdge(vault, world.admin, node), limits=Limits.unlimited())
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        failures = conformance_failures(schema)
        failures += conformance_failures(schema, signed_as(world.admin, world.ledger.chain_id))
    finally:
        gateway.stop()
    assert not failures, "\n\n".join(failures)
