"""Test vectors under tests/vectors/: loading them and replaying their blocks on
the Application and on the solo engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medchain.consensus.application import Application
from medchain.consensus.solo import SoloEngine
from medchain.core.block import Block
from medchain.core.genesis import parse_genesis
from medchain.storage.chain_db import ChainDB

VECTORS = sorted((Path(__file__).resolve().parents[1] / "vectors").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def replay_with_application(vector: dict[str, Any], db_path: Path) -> list[tuple[str, list[str]]]:
    app = Application(ChainDB(db_path))
    out = [(app.init_chain(parse_genesis(vector["genesis"])).hex(), [])]
    for height, b in enumerate(vector["blocks"], start=1):
        block = Block(
            app.chain_id,
            height,
            b["time_ms"],
            tuple(bytes.fromhex(t) for t in b["txs"]),
            app.db.last_block_hash,
        )
        result = app.finalize_block(block)
        app.commit(result)
        out.append((result.app_hash.hex(), [r.code.name for r in result.tx_results]))
    return out


def replay_with_solo_engine(vector: dict[str, Any], db_path: Path) -> list[tuple[str, list[str]]]:
    app = Application(ChainDB(db_path))
    engine = SoloEngine(app)
    out = [(app.init_chain(parse_genesis(vector["genesis"])).hex(), [])]
    for b in vector["blocks"]:
        result = engine.produce_block([bytes.fromhex(t) for t in b["txs"]], time_ms=b["time_ms"])
        out.append((result.app_hash.hex(), [r.code.name for r in result.tx_results]))
    return out


def expected(vector: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [(e["app_hash"], e.get("codes", [])) for e in vector["expected"]]
