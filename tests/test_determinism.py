"""Same transactions, same app hash: on every node, on every engine, after restart."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.ledger import CHAIN_ID, Ledger
from support.vectors import (
    VECTORS,
    departures,
    load,
    replay_with_application,
    write_set_digest,
)

from medchain import crypto
from medchain.consensus.application import Application
from medchain.contracts.registry import registry_for
from medchain.core.tx import build_tx
from medchain.storage.chain_db import ChainDB

TESTS = Path(__file__).resolve().parent
HASH_SEEDS = ("0", "1", "12345")
# Every contract either chain runs: a new contract without a vector fails below.
CONTRACTS = {
    name for profile in ("business", "regulator") for name, _ in registry_for(profile).contracts
}


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vector_replays_on_every_engine_in_separate_processes(path: Path) -> None:
    """Each hash seed gets its own process, replaying on the Application, the solo
    engine and the ABCI adapter: set or str-keyed dict order cannot hide."""
    runs = {
        seed: subprocess.Popen(
            [sys.executable, "-m", "support.replay", str(path)],
            cwd=TESTS,
            env={**os.environ, "PYTHONHASHSEED": seed},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in HASH_SEEDS
    }
    outcomes = {seed: run.communicate(timeout=120) for seed, run in runs.items()}
    for seed, run in runs.items():
        out, err = outcomes[seed]
        assert run.returncode == 0, f"PYTHONHASHSEED={seed}: {out}{err[-2000:]}"
        assert json.loads(out) == {"application": [], "solo": [], "abci": []}


def test_a_departure_names_its_height_and_keys(tmp_path: Path) -> None:
    """A replay that writes one value differently is caught at that height, by key."""
    vector = load(TESTS / "vectors" / "records_erasure.json")
    got = replay_with_application(vector, tmp_path / "a.db")
    assert departures(vector["expected"], got) == []
    tombstone = "records/record/note-1"
    assert tombstone in got[5]["writes"]
    got[5]["writes"][tombstone] = "00" * 32
    got[5]["writes"]["records/extra"] = "11" * 32
    got[5]["writes_digest"] = write_set_digest(got[5]["writes"])
    assert departures(vector["expected"], got) == [
        f"height 5: key records/extra: expected unwritten, got {'11' * 32}",
        f"height 5: key {tombstone}: expected {vector['expected'][5]['writes'][tombstone]}, "
        f"got {'00' * 32}",
    ]


def test_vectors_exist_and_cover_rejections() -> None:
    vectors = [load(p) for p in VECTORS]
    codes = {c for v in vectors for e in v["expected"] for c in e.get("codes", [])}
    assert {
        "OK",
        "INVALID_PAYLOAD",
        "UNAUTHORIZED",
        "BAD_NONCE",
        "MALFORMED",
        "SIGNER_INACTIVE",
        "INVALID_STATE",
        "NOT_FOUND",
    } <= codes
    events = {
        ev["type"]
        for v in vectors
        for e in v["expected"]
        for r in e["results"]
        for ev in r["events"]
    }
    assert {t.split(".")[0] for t in events} | {"identity"} >= CONTRACTS
    assert all("writes_digest" in e for v in vectors for e in v["expected"])


def random_workload(admin: crypto.KeyPair, seed: int) -> list[list[bytes]]:
    """Blocks of mixed valid and invalid txs, built once and fed to both nodes."""
    rng = random.Random(seed)
    nonces: dict[bytes, int] = {}

    def tx(k: crypto.KeyPair, action: str, payload: dict[str, Any]) -> bytes:
        n = nonces.get(k.public, 0)
        nonces[k.public] = n + 1
        return build_tx(
            k, chain_id=CHAIN_ID, contract="identity", action=action, payload=payload, nonce=n
        )

    admins = [crypto.generate_keypair() for _ in range(3)]
    blocks = [
        [
            tx(
                admin,
                "register_org",
                {
                    "org_id": f"org-{i}",
                    "name": f"Org {i}",
                    "org_type": "hospital",
                    "admin_public_key": a.public,
                },
            )
            for i, a in enumerate(admins)
        ]
    ]
    for _ in range(8):
        block = []
        for _ in range(rng.randint(1, 12)):
            i = rng.randrange(3)
            choice = rng.random()
            if choice < 0.4:
                block.append(tx(crypto.generate_keypair(), "register_patient", {}))
            elif choice < 0.8:
                block.append(
                    tx(
                        admins[i],
                        "add_member",
                        {
                            "org_id": f"org-{rng.randrange(3)}",
                            "public_key": crypto.generate_keypair().public,
                            "roles": rng.choice(
                                [["doctor"], ["nurse"], ["regulator"], ["patient"]]
                            ),
                        },
                    )
                )
            else:
                block.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))))
        blocks.append(block)
    return blocks


def test_two_fresh_nodes_agree_at_every_height(tmp_path: Path) -> None:
    admin = crypto.generate_keypair()
    blocks = random_workload(admin, seed=7)
    hashes = []
    for node in ("node-a", "node-b"):
        ledger = Ledger(tmp_path / f"{node}.db", admin)
        hashes.append([ledger.commit(txs).app_hash for txs in blocks])
    assert hashes[0] == hashes[1]
    assert len(set(hashes[0])) == len(blocks)  # every height moved the hash


def test_app_hash_survives_restart_from_disk(tmp_path: Path) -> None:
    admin = crypto.generate_keypair()
    ledger = Ledger(tmp_path / "chain.db", admin)
    for txs in random_workload(admin, seed=3):
        ledger.commit(txs)
    height, app_hash = ledger.app.db.height, ledger.app.db.app_hash
    ledger.app.db.close()
    reopened = Application(ChainDB(tmp_path / "chain.db"))
    reopened.init_chain(ledger.genesis)  # a restart re-reads genesis; must not rewrite state
    assert reopened.info().height == height and reopened.info().app_hash == app_hash


def test_the_app_hash_commits_to_codes_and_events_but_not_the_log() -> None:
    """Refusal wording may improve without forking the chain; what auditors rely on
    (code, audit events) stays committed."""
    from medchain.core.block import TxResult, result_leaf
    from medchain.core.context import Event
    from medchain.exceptions import Code

    event = Event("exchange.refused", (("reason", "no grant"),))
    base = TxResult(b"\x01" * 32, Code.UNAUTHORIZED, "no grant covers this", (event,))
    reworded = TxResult(base.tx_id, base.code, "nothing covers this record", base.events)
    assert result_leaf(base) == result_leaf(reworded)
    other_code = TxResult(base.tx_id, Code.NOT_FOUND, base.log, base.events)
    other_reason = TxResult(base.tx_id, base.code, base.log, (Event("exchange.refused", ()),))
    assert result_leaf(other_code) != result_leaf(base) != result_leaf(other_reason)
