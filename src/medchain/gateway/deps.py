"""FastAPI dependencies: the running engine behind the routes, and state reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from medchain import encoding
from medchain.consensus.engine import Engine as ChainEngine
from medchain.core import proofs
from medchain.gateway.errors import NotFound

if TYPE_CHECKING:  # policy imports auth, which imports this module
    from medchain.gateway.policy import Get, Scan


def get_engine(request: Request) -> ChainEngine:
    """The engine this app serves (set on app.state when the node starts)."""
    engine: ChainEngine = request.app.state.engine
    return engine


Engine = Annotated[ChainEngine, Depends(get_engine)]


def history_note(engine: ChainEngine) -> str:
    """What a node restored by state sync lacks, for its not-found answers: '' on a
    node with the whole history, else which heights it never had and where to ask."""
    base = engine.app.db.snapshot_base
    if base is None:
        return ""
    return (
        f"; this node joined by state sync at height {base}: blocks, tx results and audit "
        f"events up to height {base} are not kept here, ask an archive node"
    )


HISTORY_HEADER = "X-MedChain-History-From"
"""The first height whose audit events the answering node holds (0 unless it joined
by state sync), on every audit answer, so a partial trail is not taken for the whole."""


def history_from(engine: ChainEngine) -> int:
    """The first height this node has blocks and audit events of."""
    base = engine.app.db.snapshot_base
    return 0 if base is None else base + 1


def with_history_outcome(engine: ChainEngine, bundle: dict[str, Any]) -> dict[str, Any]:
    """An audit searchset, with an outcome entry saying where this node's trail starts
    when it joined by state sync (the bundle as it is otherwise)."""
    note = history_note(engine).removeprefix("; ")
    if note:
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "incomplete", "diagnostics": note}],
        }
        bundle["entry"] = [
            *bundle.get("entry", []),
            {"resource": outcome, "search": {"mode": "outcome"}},
        ]
    return bundle


def snapshot_note(engine: ChainEngine, height: int) -> str:
    """Why a hash or time this node shows for `height` is not verified: '' unless the
    node was restored by state sync at that height. The last block's MedChain hash
    and time came in the snapshot's metadata, which no app hash covers."""
    if engine.app.db.snapshot_base != height:
        return ""
    return (
        f"from the state-sync snapshot this node restored at height {height}, not "
        "verified: the snapshot's peer chose this block hash and time (the app hash "
        "covers neither); compare them with other nodes' /v1/status or an archive node"
    )


def read(engine: ChainEngine, key: str, what: str) -> Any:
    """Committed, decoded state at `key`; a 404 naming `what` if there is none."""
    raw = engine.app.db.get(key)
    if raw is None:
        raise NotFound(f"no {what}")
    return encoding.decode_trusted(raw)


def getter(engine: ChainEngine) -> Get:
    """`get(key)` over committed state, for the contracts' pure query functions."""

    def get(key: str) -> Any:
        raw = engine.app.db.get(key)
        return None if raw is None else encoding.decode_trusted(raw)

    return get


def scanner(engine: ChainEngine, limit: int = 10_000) -> Scan:
    """`scan(prefix)` over committed state, for the contracts' pure query functions."""

    def scan(prefix: str) -> Iterator[tuple[str, Any]]:
        for key, raw in engine.app.db.scan(prefix, limit):
            yield key, encoding.decode_trusted(raw)

    return scan


def tx_proof_of(engine: ChainEngine, tx_id: bytes) -> dict[str, Any]:
    """A proof of a committed tx's result (its audit events) against its block's app hash."""
    db = engine.app.db
    location = db.tx_location(tx_id)
    if location is None:
        raise NotFound(f"no committed transaction {tx_id.hex()}{history_note(engine)}")
    height, index = location
    roots = db.roots(height)
    if roots is None:
        raise NotFound(f"no roots stored for height {height}")
    return proofs.tx_proof(engine.app.chain_id, roots, db.block_results(height), index)
