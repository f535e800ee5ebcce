"""CheckTx's stateless half in a worker process: same verdicts as in-process,
and a worker killed mid-run costs nothing (the node goes on, every admitted tx commits)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.ledger import Ledger

from medchain import crypto, encoding
from medchain.consensus.solo import SoloEngine
from medchain.consensus.verifier import VerifierProcess
from medchain.core.tx import build_tx
from medchain.exceptions import InvalidTransaction

WAIT_S = 120.0


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "chain.db", crypto.generate_keypair(), max_tx_bytes=4096)


@pytest.fixture
def engine(ledger: Ledger) -> Iterator[SoloEngine]:
    engine = SoloEngine(ledger.app, block_interval=0.01, verify_workers=1)
    engine.start()
    yield engine
    engine.stop()


def _refusal(check: Callable[[bytes], object], raw: bytes) -> tuple[str, str] | None:
    try:
        check(raw)
    except InvalidTransaction as e:
        return e.code.name, e.message
    return None


def test_worker_refuses_exactly_as_in_process(ledger: Ledger) -> None:
    k = crypto.generate_keypair()
    good = ledger.tx(k, "identity", "register_patient", {})
    wire = encoding.decode(good)
    forged = encoding.encode(
        {"body": wire["body"], "sig": crypto.sign(crypto.generate_keypair(), wire["body"])}
    )
    other_chain = build_tx(
        k,
        chain_id="other-chain",
        contract="identity",
        action="register_patient",
        payload={},
        nonce=0,
    )
    oversized = ledger.tx(k, "identity", "register_patient", {"x": "y" * 5000})
    cases = [good, b"\x13\x37garbage", good[:-5], b"", forged, other_chain, oversized]
    app = ledger.app
    verifier = VerifierProcess()
    try:
        for raw in cases:
            worker = _refusal(
                lambda r: verifier.check(r, app.chain_id, app.params.max_tx_bytes), raw
            )
            assert worker == _refusal(app.check_stateless, raw)
        codes = [
            _refusal(lambda r: verifier.check(r, app.chain_id, app.params.max_tx_bytes), raw)
            for raw in cases
        ]
        assert [c and c[0] for c in codes] == [
            None,
            "MALFORMED",
            "MALFORMED",
            "MALFORMED",
            "BAD_SIGNATURE",
            "WRONG_CHAIN",
            "TOO_LARGE",
        ]
        tx = verifier.check(good, app.chain_id, app.params.max_tx_bytes)
        assert tx == app.check_stateless(good)
        assert verifier.restarts == 0
    finally:
        verifier.close()
    assert verifier.in_process


def _submit_many(engine: SoloEngine, raws: list[bytes], admitted: list[bytes]) -> None:
    for raw in raws:
        admitted.append(engine.submit(raw).tx_id)


def test_a_killed_worker_costs_nothing(ledger: Ledger, engine: SoloEngine) -> None:
    raws = [
        ledger.tx(crypto.generate_keypair(), "identity", "register_patient", {}) for _ in range(300)
    ]
    verifier = engine.verifier
    assert verifier is not None and verifier.pid is not None
    first = verifier.pid
    admitted: list[bytes] = []
    shares = [raws[i::8] for i in range(8)]
    threads = [
        threading.Thread(target=_submit_many, args=(engine, share, admitted)) for share in shares
    ]
    for t in threads:
        t.start()
    while len(admitted) < 50:
        time.sleep(0.001)
    os.kill(first, signal.SIGKILL)
    for t in threads:
        t.join(timeout=WAIT_S)
    assert len(admitted) == len(raws)  # nobody refused, nobody hung
    for tx_id in admitted:
        assert engine.wait_for(tx_id, WAIT_S) is not None
    assert engine.failure is None
    assert verifier.restarts == 1 and verifier.pid not in (None, first)
    # the restarted worker checks too: a forged signature is still refused
    good = ledger.tx(crypto.generate_keypair(), "identity", "register_patient", {})
    wire = encoding.decode(good)
    forged = encoding.encode(
        {"body": wire["body"], "sig": crypto.sign(crypto.generate_keypair(), wire["body"])}
    )
    with pytest.raises(InvalidTransaction) as refused:
        engine.submit(forged)
    assert refused.value.code.name == "BAD_SIGNATURE"


def test_the_worker_ends_with_the_engine(ledger: Ledger) -> None:
    engine = SoloEngine(ledger.app, block_interval=0.01, verify_workers=1)
    engine.start()
    verifier = engine.verifier
    assert verifier is not None
    pid = verifier.pid
    assert pid is not None
    engine.stop()
    assert verifier.in_process and verifier.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie or an orphan
    # after stop, a submit still gets the full check, in-process
    raw = ledger.tx(crypto.generate_keypair(), "identity", "register_patient", {})
    assert engine.submit(raw).tx_id
