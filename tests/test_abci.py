"""The ABCI adapter and socket server, driven directly (no CometBFT process)."""

from __future__ import annotations

import io
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from support.ledger import patient_registration
from support.vectors import VECTORS, expected, load
from support.vectors import abci_finalize as finalize
from support.vectors import abci_init_chain as init
from tendermint.abci import types_pb2 as abci
from tendermint.crypto import keys_pb2

from medchain import crypto
from medchain.consensus.abci.server import AbciApplication, AbciServer
from medchain.consensus.abci.wire import FramingError, encode_uvarint, frame, read_message
from medchain.consensus.application import Application
from medchain.core.tx import build_tx, tx_id_of
from medchain.exceptions import Code
from medchain.storage.chain_db import ChainDB

VALIDATOR = bytes(range(32))


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vectors_give_the_same_app_hashes_through_abci(path: Path, tmp_path: Path) -> None:
    vector = load(path)
    app = AbciApplication(Application(ChainDB(tmp_path / "abci.db")))
    got = [(init(app, vector["genesis"]).hex(), [])]
    for height, b in enumerate(vector["blocks"], start=1):
        resp = finalize(app, height, b["time_ms"], [bytes.fromhex(t) for t in b["txs"]])
        got.append((resp.app_hash.hex(), [Code(r.code).name for r in resp.tx_results]))
    assert got == expected(vector)
    info = app.info(abci.RequestInfo())
    assert info.last_block_height == len(vector["blocks"])
    assert info.last_block_app_hash.hex() == vector["expected"][-1]["app_hash"]


@pytest.fixture
def chain(tmp_path: Path) -> tuple[AbciApplication, crypto.KeyPair, dict[str, Any]]:
    admin = crypto.generate_keypair()
    genesis = {
        "chain_id": "abci-test",
        "genesis_time_ms": 0,
        "consortium_admins": [{"name": "root", "public_key": admin.public.hex()}],
        "validators": [{"name": "v0", "pub_key": VALIDATOR.hex(), "power": 10}],
    }
    app = AbciApplication(Application(ChainDB(tmp_path / "c.db")))
    init(app, genesis)
    return app, admin, genesis


def test_init_chain_refuses_validators_that_differ_from_app_state(tmp_path: Path) -> None:
    from medchain.exceptions import InternalError

    app = AbciApplication(Application(ChainDB(tmp_path / "c.db")))
    admin = crypto.generate_keypair()
    genesis = {
        "chain_id": "x",
        "genesis_time_ms": 0,
        "consortium_admins": [{"name": "root", "public_key": admin.public.hex()}],
    }
    req = abci.RequestInitChain(
        chain_id="x",
        app_state_bytes=json.dumps(genesis).encode(),
        validators=[abci.ValidatorUpdate(pub_key=keys_pb2.PublicKey(ed25519=VALIDATOR), power=1)],
    )
    with pytest.raises(InternalError, match="validators differ"):
        app.init_chain(req)


def test_validator_changes_come_from_identity_transactions(chain: Any) -> None:
    app, admin, _ = chain
    new_validator = bytes(31) + b"\x07"

    def tx(nonce: int, pub: bytes, power: int) -> bytes:
        return build_tx(
            admin,
            chain_id="abci-test",
            contract="identity",
            action="set_validator",
            payload={"pub_key": pub, "power": power},
            nonce=nonce,
        )

    resp = finalize(app, 1, 1000, [tx(0, new_validator, 5)])
    assert [(u.pub_key.ed25519, u.power) for u in resp.validator_updates] == [(new_validator, 5)]
    resp = finalize(app, 2, 2000, [tx(1, VALIDATOR, 0), tx(2, new_validator, 0)])
    assert [Code(r.code) for r in resp.tx_results] == [Code.OK, Code.INVALID_STATE]
    assert [(u.pub_key.ed25519, u.power) for u in resp.validator_updates] == [(VALIDATOR, 0)]


def test_check_tx_and_recheck_use_the_same_rules(chain: Any) -> None:
    app, _, _ = chain
    raw = patient_registration("abci-test")
    assert app.check_tx(abci.RequestCheckTx(tx=raw)).code == 0
    assert app.check_tx(abci.RequestCheckTx(tx=raw)).code == Code.BAD_NONCE  # pending nonce
    assert app.check_tx(abci.RequestCheckTx(tx=b"junk")).code == Code.MALFORMED
    finalize(app, 1, 1000, [raw])
    again = app.check_tx(abci.RequestCheckTx(tx=raw, type=abci.RECHECK))
    assert again.code == Code.BAD_NONCE


def test_check_tx_reuses_a_tx_verified_in_a_proposal(chain: Any) -> None:
    """A tx first seen in a proposal is decoded and verified once: when it then
    arrives by gossip, CheckTx takes it from the verified cache."""
    app, _, _ = chain
    raw = patient_registration("abci-test")
    accept = abci.ResponseProcessProposal.ACCEPT
    assert app.process_proposal(abci.RequestProcessProposal(txs=[raw])).status == accept
    verified_in_proposal = app.verified[tx_id_of(raw)]
    assert app.check_tx(abci.RequestCheckTx(tx=raw, type=abci.NEW)).code == 0
    assert app.verified[tx_id_of(raw)] is verified_in_proposal
    # Still the same stateful rules: a second copy is refused for its nonce.
    assert app.check_tx(abci.RequestCheckTx(tx=raw, type=abci.NEW)).code == Code.BAD_NONCE
    # Bytes that differ are a different tx and are checked on their own.
    forged = raw[:-3] + bytes(3)
    assert app.check_tx(abci.RequestCheckTx(tx=forged)).code in (
        Code.BAD_SIGNATURE,
        Code.MALFORMED,
    )


def test_proposals_with_invalid_txs_are_dropped_or_rejected(chain: Any) -> None:
    app, _, _ = chain
    good = patient_registration("abci-test")
    forged = good[:-3] + bytes(3)
    prepared = app.prepare_proposal(
        abci.RequestPrepareProposal(txs=[forged, good, b"x" * 70_000], max_tx_bytes=1_000_000)
    )
    assert list(prepared.txs) == [good]
    accept = abci.ResponseProcessProposal.ACCEPT
    reject = abci.ResponseProcessProposal.REJECT
    assert app.process_proposal(abci.RequestProcessProposal(txs=[good])).status == accept
    assert app.process_proposal(abci.RequestProcessProposal(txs=[good, forged])).status == reject


def test_uvarint_framing_round_trip() -> None:
    for n in (0, 1, 127, 128, 300, 2**20, 2**35):
        data = encode_uvarint(n)
        value = sum((b & 0x7F) << (7 * i) for i, b in enumerate(data))
        assert value == n and data[-1] < 0x80 and all(b >= 0x80 for b in data[:-1])


def test_socket_server_answers_in_order_and_survives_bad_requests(chain: Any) -> None:
    app, _, _ = chain
    server = AbciServer(app, "tcp://127.0.0.1:0")
    host, port = server.bind().removeprefix("tcp://").rsplit(":", 1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    requests = [
        abci.Request(echo=abci.RequestEcho(message="hello")).SerializeToString(),
        b"\xff\xff not protobuf",
        abci.Request(info=abci.RequestInfo()).SerializeToString(),
        abci.Request(flush=abci.RequestFlush()).SerializeToString(),
    ]
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"".join(frame(r) for r in requests))
        stream = conn.makefile("rb")
        responses = []
        for _ in requests:
            msg = read_message(stream)
            assert msg is not None
            resp = abci.Response()
            resp.ParseFromString(msg)
            responses.append(resp)
        # A second batch on the same connection is still served.
        conn.sendall(frame(requests[0]) + frame(requests[3]))
        again = [read_message(stream) for _ in range(2)]
    assert [r.WhichOneof("value") for r in responses] == ["echo", "exception", "info", "flush"]
    assert responses[0].echo.message == "hello"
    assert responses[2].info.data == "medchain"
    assert all(a is not None for a in again)


def test_framing_errors_are_reported() -> None:
    with pytest.raises(FramingError):
        read_message(io.BytesIO(b"\x05ab"))  # says 5 bytes, has 2
    with pytest.raises(FramingError):
        read_message(io.BytesIO(b"\xff" * 11))
    assert read_message(io.BytesIO(b"")) is None


def test_query_with_prove_returns_a_proof_against_the_app_hash(chain: Any) -> None:
    from medchain.contracts.identity.model import did_for_key, did_key
    from medchain.core import proofs

    app, _, _ = chain
    patient = crypto.generate_keypair()
    raw = build_tx(
        patient,
        chain_id="abci-test",
        contract="identity",
        action="register_patient",
        payload={},
        nonce=0,
    )
    resp = finalize(app, 1, 1_000, [raw])
    key = did_key(did_for_key("sm", patient.public)).encode()
    found = app.query(abci.RequestQuery(path="/state", data=key, prove=True))
    assert found.code == 0 and found.height == 1
    [op] = found.proof_ops.ops
    doc = json.loads(op.data)
    assert op.type == proofs.FORMAT and bytes.fromhex(doc["value"]) == found.value
    # CometBFT puts this app hash in the next header, signed by the validators.
    assert "identity/did/" in proofs.verify(doc, bytes(resp.app_hash))
    absent = app.query(abci.RequestQuery(path="/state", data=b"identity/did/nobody", prove=True))
    assert absent.code == int(Code.NOT_FOUND)
    assert "absent" in proofs.verify(json.loads(absent.proof_ops.ops[0].data), resp.app_hash)
    plain = app.query(abci.RequestQuery(path="/state", data=key))
    assert plain.code == 0 and not plain.proof_ops.ops
