"""kill -9 a real node process under load: nothing committed is lost or changed."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
from support.ledger import patient_registration
from support.servers import free_port, start_node

from medchain import crypto
from medchain.consensus.application import Application
from medchain.core.block import Block
from medchain.node import NodeHome
from medchain.storage.chain_db import ChainDB

CHAIN = "medchain-crash"




def load(url: str, stop: threading.Event, confirmed: dict[str, tuple[int, int]]) -> None:
    """Register patients as fast as the node takes them; note every confirmed commit."""
    with httpx.Client(base_url=url, timeout=5) as client:
        while not stop.is_set():
            raw = patient_registration(CHAIN)
            try:
                r = client.post("/v1/txs", params={"wait": True}, json={"tx": raw.hex()})
            except httpx.HTTPError:
                continue
            body = r.json()
            if body.get("status") == "committed":
                confirmed[body["tx_id"]] = (body["height"], body["code"])


def test_kill_9_under_load_loses_no_committed_tx(tmp_path: Path) -> None:
    home = NodeHome(tmp_path / "home")
    home.write_genesis(CHAIN, "root", crypto.generate_keypair(), genesis_time_ms=0)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    confirmed: dict[str, tuple[int, int]] = {}
    rng = random.Random(11)

    for _ in range(3):
        proc = start_node(home.root, port)
        stop = threading.Event()
        threads = [threading.Thread(target=load, args=(url, stop, confirmed)) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.8, 2.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stop.set()
        for t in threads:
            t.join()

        proc = start_node(home.root, port)
        try:
            status = httpx.get(f"{url}/v1/status").json()
            assert status["height"] >= max(h for h, _ in confirmed.values())
            for tx_id, (height, code) in confirmed.items():
                got = httpx.get(f"{url}/v1/txs/{tx_id}").json()
                assert (got["status"], got["height"], got["code"]) == ("committed", height, code)
        finally:
            proc.terminate()
            proc.wait(timeout=20)

    assert len(confirmed) > 50, "the load generator did not get enough txs committed"
    assert sqlite3.connect(home.db_path).execute("PRAGMA integrity_check").fetchone() == ("ok",)

    # Replaying every stored block on a fresh node reproduces every stored app hash.
    stored = ChainDB(home.db_path)
    fresh = Application(ChainDB(tmp_path / "replay.db"))
    fresh.init_chain(home.genesis())
    for height in range(1, stored.height + 1):
        b = stored.block(height)
        assert b is not None
        h = b["header"]
        block = Block(
            h["chain_id"], height, h["time_ms"], tuple(b["txs"]), h["prev_hash"], h["proposer"]
        )
        result = fresh.finalize_block(block)
        fresh.commit(result)
        assert result.app_hash == b["app_hash"], f"divergence at height {height}"
    assert fresh.db.app_hash == stored.app_hash
