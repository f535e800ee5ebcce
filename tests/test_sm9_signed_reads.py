"""The gateway looks an sm9 reader up before paying for its signature.

A signed read's sm9 signature costs two pairings to verify, and anyone can sign
valid sm9 reads with a KGC of their own. So for sm9 the gateway first checks that
the key is registered (and still under its org's published master key), then
verifies; an SM2 reader is verified first, as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from support.ledger import CHAIN_ID, Ledger
from test_sm9_chain import ORG, add_sm9, publish

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.contracts.identity.model import sm9_did
from medchain.exceptions import Code
from medchain.gateway.app import create_app
from medchain.sdk.signing import sign_request

PATH = "/v1/records/no-such-record"


def forged_headers(key: crypto.KeyPair) -> dict[str, str]:
    """Signature headers for PATH by `key`, carrying a well-formed sm9 signature of
    another message: it costs a whole verification and fails it."""
    headers = sign_request(key, CHAIN_ID, "GET", PATH)
    headers["X-MedChain-Signature"] = crypto.sign(key, b"another message").hex()
    return headers


@pytest.fixture(name="world")
def world_fixture(
    tmp_path: Path,
) -> Iterator[tuple[TestClient, crypto.KeyPair, crypto.KeyPair]]:
    ledger = Ledger(tmp_path / "chain.db", crypto.generate_keypair())
    admin = crypto.generate_keypair()
    ledger.add_org(ORG, admin)
    kgc = crypto.generate_sm9_master()
    assert publish(ledger, admin, kgc).code == Code.OK
    old = kgc.issue(sm9_did(ORG, "dr-old"))
    assert add_sm9(ledger, admin, old).code == Code.OK
    assert publish(ledger, admin, crypto.generate_sm9_master()).code == Code.OK
    stranger = crypto.generate_sm9_master().issue(sm9_did(ORG, "dr-stranger"))
    engine = SoloEngine(ledger.app, block_interval=0.01)
    engine.start()
    with TestClient(create_app(engine)) as client:
        yield client, stranger, old
    engine.stop()


def test_unregistered_sm9_reader_is_refused_before_its_signature_is_checked(
    world: tuple[TestClient, crypto.KeyPair, crypto.KeyPair],
) -> None:
    client, stranger, _ = world
    r = client.get(PATH, headers=forged_headers(stranger))
    # Verified first, this would have been "request signature does not verify".
    assert r.status_code == 401, r.text
    assert "not registered" in r.json()["error"]["message"]


def test_sm9_reader_under_a_replaced_master_is_refused_before_its_signature_is_checked(
    world: tuple[TestClient, crypto.KeyPair, crypto.KeyPair],
) -> None:
    client, _, old = world
    r = client.get(PATH, headers=forged_headers(old))
    assert r.status_code == 403, r.text
    assert "master key" in r.json()["error"]["message"]
