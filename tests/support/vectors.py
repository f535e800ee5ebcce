"""Test vectors under tests/vectors/: loading them, replaying their blocks on each
engine (the Application, the solo engine, the ABCI adapter) and saying where a
replay departs from what the vector expects.

A vector expects, per height: the app hash; per tx its code and its events;
and the write set, i.e. every state key the height changed with the SM3 of its
new value (None when deleted), plus one SM3 digest over the whole write set.
The app hash alone says only *that* something differs; the write set says at
which height and which keys.

Every engine is observed the same way, from what it committed to its chain
database (the state table and the stored tx results), so the comparison needs
nothing from the engine beyond blocks in and app hashes out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from tendermint.abci import types_pb2 as abci
from tendermint.crypto import keys_pb2

from medchain import crypto, encoding
from medchain.consensus.abci.server import AbciApplication
from medchain.consensus.application import Application
from medchain.consensus.solo import SoloEngine
from medchain.core.block import Block
from medchain.core.genesis import parse_genesis
from medchain.storage.chain_db import ChainDB

VECTORS = sorted((Path(__file__).resolve().parents[1] / "vectors").glob("*.json"))
ENGINES = ("application", "solo", "abci")

Observation = dict[str, Any]


def load(path: Path) -> dict[str, Any]:
    """A vector file as a dict: genesis, blocks (time and tx hex) and expected."""
    return dict(json.loads(path.read_text()))


def expected(vector: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(app hash, codes) per height, the part every vector has had since the first."""
    return [(e["app_hash"], e.get("codes", [])) for e in vector["expected"]]


def write_set_digest(writes: dict[str, str | None]) -> str:
    """SM3 over the canonical encoding of the sorted (key, value SM3) pairs."""
    return crypto.sm3(encoding.encode([[k, writes[k]] for k in sorted(writes)])).hex()


class StateWatcher:
    """Reads a chain database after each commit and reports what changed."""

    def __init__(self, db: ChainDB) -> None:
        self.db = db
        self.state: dict[str, bytes] = {}

    def observe(self, height: int, app_hash: bytes) -> Observation:
        """The committed outcome of `height`: app hash, tx results and write set."""
        now = dict(self.db.scan("", 1 << 62))
        writes: dict[str, str | None] = {
            k: crypto.sm3(v).hex() for k, v in now.items() if self.state.get(k) != v
        }
        writes |= {k: None for k in self.state if k not in now}
        self.state = now
        results = [
            {"code": r.code.name, "events": [e.to_dict() for e in r.events]}
            for r in (self.db.block_results(height) if height > 0 else [])
        ]
        return {
            "height": height,
            "app_hash": app_hash.hex(),
            "codes": [r["code"] for r in results],
            "results": results,
            "writes": dict(sorted(writes.items())),
            "writes_digest": write_set_digest(writes),
        }


def _txs(block: dict[str, Any]) -> list[bytes]:
    return [bytes.fromhex(t) for t in block["txs"]]


def replay_with_application(vector: dict[str, Any], db_path: Path) -> list[Observation]:
    """Blocks straight into Application.finalize_block and commit."""
    app = Application(ChainDB(db_path))
    watch = StateWatcher(app.db)
    out = [watch.observe(0, app.init_chain(parse_genesis(vector["genesis"])))]
    for height, b in enumerate(vector["blocks"], start=1):
        block = Block(app.chain_id, height, b["time_ms"], tuple(_txs(b)), app.db.last_block_hash)
        result = app.finalize_block(block)
        app.commit(result)
        out.append(watch.observe(height, result.app_hash))
    app.db.close()
    return out


def replay_with_solo_engine(vector: dict[str, Any], db_path: Path) -> list[Observation]:
    """Blocks through the solo engine's block production, at the vector's times."""
    app = Application(ChainDB(db_path))
    engine = SoloEngine(app)
    watch = StateWatcher(app.db)
    out = [watch.observe(0, app.init_chain(parse_genesis(vector["genesis"])))]
    for height, b in enumerate(vector["blocks"], start=1):
        result = engine.produce_block(_txs(b), time_ms=b["time_ms"])
        out.append(watch.observe(height, result.app_hash))
    app.db.close()
    return out


def abci_init_chain(app: AbciApplication, genesis: dict[str, Any]) -> bytes:
    """InitChain as CometBFT sends it: the genesis document as app state bytes."""
    req = abci.RequestInitChain(
        chain_id=genesis["chain_id"],
        app_state_bytes=json.dumps(genesis).encode(),
        validators=[
            abci.ValidatorUpdate(
                pub_key=keys_pb2.PublicKey(ed25519=bytes.fromhex(v["pub_key"])), power=v["power"]
            )
            for v in genesis.get("validators", [])
        ],
    )
    return bytes(app.init_chain(req).app_hash)


def abci_finalize(
    app: AbciApplication, height: int, time_ms: int, txs: list[bytes]
) -> abci.ResponseFinalizeBlock:
    """FinalizeBlock then Commit, as CometBFT drives one height."""
    ts = Timestamp(seconds=time_ms // 1000, nanos=(time_ms % 1000) * 1_000_000)
    resp = app.finalize_block(abci.RequestFinalizeBlock(txs=txs, height=height, time=ts))
    app.commit(abci.RequestCommit())
    return resp


def replay_with_abci(vector: dict[str, Any], db_path: Path) -> list[Observation]:
    """Blocks through the ABCI adapter's protobuf requests, as CometBFT sends them."""
    application = Application(ChainDB(db_path))
    app = AbciApplication(application)
    watch = StateWatcher(application.db)
    out = [watch.observe(0, abci_init_chain(app, vector["genesis"]))]
    for height, b in enumerate(vector["blocks"], start=1):
        resp = abci_finalize(app, height, b["time_ms"], _txs(b))
        out.append(watch.observe(height, bytes(resp.app_hash)))
    application.db.close()
    return out


REPLAYS: dict[str, Callable[[dict[str, Any], Path], list[Observation]]] = {
    "application": replay_with_application,
    "solo": replay_with_solo_engine,
    "abci": replay_with_abci,
}


def departures(want: list[Observation], got: list[Observation]) -> list[str]:
    """Where a replay departs from a vector, first height first: which part differs
    and, for the write set, which keys. Empty when the replay matches."""
    if len(want) != len(got):
        return [f"{len(got)} heights replayed, the vector has {len(want)}"]
    found = []
    for w, g in zip(want, got, strict=True):
        at = f"height {w['height']}"
        if "writes_digest" in w and w["writes_digest"] != g["writes_digest"]:
            keys = sorted(set(w["writes"]) | set(g["writes"]))
            for k in (k for k in keys if w["writes"].get(k, "-") != g["writes"].get(k, "-")):
                found.append(
                    f"{at}: key {k}: expected {w['writes'].get(k, 'unwritten')}, "
                    f"got {g['writes'].get(k, 'unwritten')}"
                )
        if w.get("codes", []) != g["codes"]:
            found.append(f"{at}: codes {g['codes']}, expected {w.get('codes', [])}")
        for i, (wr, gr) in enumerate(zip(w.get("results", []), g["results"], strict=False)):
            if wr["events"] != gr["events"]:
                found.append(f"{at} tx {i}: events {gr['events']}, expected {wr['events']}")
        if w["app_hash"] != g["app_hash"]:
            found.append(f"{at}: app hash {g['app_hash']}, expected {w['app_hash']}")
        if found:
            return found  # later heights follow from this one
    return found
