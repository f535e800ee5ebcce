"""Node status, blocks, state and accounts.

Status and accounts are public (`public_router`): the chain id and a key's next
nonce are what anyone needs to sign a transaction. Raw blocks and raw state
carry everyone's transactions and records, so they are signed reads for the
node's operators (blocks also for regulators); proofs go to whoever may see
what they prove."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from medchain import crypto, encoding
from medchain.consensus.engine import Engine as ChainEngine
from medchain.contracts.identity import model as identity
from medchain.core import proofs
from medchain.core.tx import key_id
from medchain.exceptions import Code, InvalidTransaction
from medchain.gateway import policy
from medchain.gateway.auth import SIGNED, SignedCaller, require_operator
from medchain.gateway.deps import (
    Engine,
    getter,
    history_note,
    scanner,
    snapshot_note,
    tx_proof_of,
)
from medchain.gateway.errors import NotFound
from medchain.gateway.limits import MAX_SQL_INT
from medchain.gateway.schemas import AccountOut, StatusOut, to_json

router = APIRouter(prefix="/v1", tags=["chain"])
# SQLite integers are signed 64-bit: a larger height is refused with 400, not a 500.
Height = Annotated[int, Path(ge=0, le=MAX_SQL_INT, description="block height")]
public_router = APIRouter(prefix="/v1", tags=["chain"])


@public_router.get("/status", response_model=StatusOut, summary="Chain id, height, app hash")
def status(engine: Engine) -> StatusOut:
    """Where the chain stands, for anyone (no signature): poll it to see blocks advance
    and which contract versions this node runs."""
    db = engine.app.db
    return StatusOut(
        chain_id=engine.app.chain_id,
        engine=engine.name,
        height=db.height,
        app_hash=db.app_hash.hex(),
        last_block_hash=db.last_block_hash.hex(),
        last_block_time_ms=db.block_time_ms(),
        last_block_unverified=snapshot_note(engine, db.height),
        mempool_size=engine.pending_count(),
        contracts=[f"{n}/v{v}" for n, v in engine.app.registry.contracts],
    )


def _block_json(engine: ChainEngine, height: int) -> dict[str, Any]:
    b = engine.app.db.block(height)
    if b is None:
        raise NotFound(
            f"no block at height {height}; the chain is at {engine.app.db.height}"
            + history_note(engine)
        )
    roots = engine.app.db.roots(height)
    return {
        "height": height,
        "hash": b["hash"].hex(),
        "header": to_json(b["header"]),
        "app_hash": b["app_hash"].hex(),
        # With the results, what the app hash commits to (a relay binds events to it).
        "state_root": roots["state_root"].hex() if roots else None,
        "txs": [t.hex() for t in b["txs"]],
        "results": [to_json(r.to_dict()) | {"code_name": r.code.name} for r in b["results"]],
    } | (
        # The first block after a restore: its prev_hash is the snapshot's, unverified.
        {"prev_hash_unverified": note} if (note := snapshot_note(engine, height - 1)) else {}
    )


@router.get(
    "/blocks/latest",
    summary="The last committed block (node operators and regulators)",
    openapi_extra=SIGNED,
)
def latest_block(engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """The newest block with its txs and results, for a node operator or a regulator
    following the chain; anyone else is refused."""
    require_operator(caller, "raw blocks", regulators_too=True)
    return _block_json(engine, engine.app.db.height)


@router.get(
    "/blocks/{height}",
    summary="A committed block with its tx results (node operators and regulators)",
    openapi_extra=SIGNED,
)
def block(height: Height, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """The block at `height` with its txs and results, for a node operator or a regulator;
    404 above the committed height."""
    require_operator(caller, "raw blocks", regulators_too=True)
    return _block_json(engine, height)


@router.get(
    "/state",
    summary="Committed state: one key, or every key under a prefix (node operators)",
    openapi_extra=SIGNED,
)
def state(
    engine: Engine,
    caller: SignedCaller,
    key: Annotated[str | None, Query(max_length=512)] = None,
    prefix: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Raw committed state for a node operator debugging the node: the value at `key`,
    or up to `limit` keys under `prefix` (one of the two is required)."""
    require_operator(caller, "raw state")
    db = engine.app.db
    if key is not None:
        raw = db.get(key)
        if raw is None:
            raise NotFound(f"no state at key {key!r}")
        return {"height": db.height, "key": key, "value": to_json(encoding.decode(raw))}
    if prefix is None:
        raise InvalidTransaction(Code.MALFORMED, "give ?key=... or ?prefix=...")
    items = [{"key": k, "value": to_json(encoding.decode(v))} for k, v in db.scan(prefix, limit)]
    return {"height": db.height, "prefix": prefix, "items": items}


@public_router.get(
    "/accounts/{suite}/{public_key}",
    response_model=AccountOut,
    summary="A public key's DID, status and next nonce (counting pending txs)",
)
def account(suite: str, public_key: str, engine: Engine) -> AccountOut:
    """What a client needs before signing its next tx: the key's DID, its status
    (`unregistered` until an identity tx names it) and the nonce to use."""
    try:
        crypto.get_suite(suite)
        public = bytes.fromhex(public_key)
    except (crypto.UnknownSuite, ValueError) as e:
        raise InvalidTransaction(Code.MALFORMED, str(e)) from None
    kid = key_id(suite, public)
    raw = engine.app.db.get(identity.pubkey_key(kid))
    record = None if raw is None else encoding.decode(raw)
    did = None if record is None else record["did"]
    status = "unregistered"
    if record is not None:
        member_raw = engine.app.db.get(identity.did_key(record["did"]))
        member = encoding.decode(member_raw) if member_raw else {"status": "missing"}
        status = record["status"] if record["status"] != "active" else member["status"]
    return AccountOut(key_id=kid.hex(), did=did, status=status, next_nonce=engine.next_nonce(kid))


@router.get(
    "/proofs/state",
    summary="A key's value (or absence) at the last block, with a proof against its app hash "
    "(for whoever may see that value; any key for regulators and operators)",
    openapi_extra=SIGNED,
)
def prove_state(
    engine: Engine, caller: SignedCaller, key: Annotated[str, Query(max_length=512)]
) -> dict[str, Any]:
    """Lets a light client check one state value without trusting this node: the value
    or its absence, proved against the app hash of the last block."""
    db = engine.app.db
    with db.snapshot():
        roots = db.roots(db.height)
        if roots is None:
            raise NotFound("no committed block yet")
        raw = db.get(key)
        value = None if raw is None else encoding.decode(raw)
        get, now = getter(engine), db.block_time_ms()
        if not policy.may_see_state(caller, get, scanner(engine), key, value, now):
            raise NotFound(f"no state you may see at key {key!r}")
        return proofs.state_proof(engine.app.chain_id, roots, db.state_node, key, raw)


@router.get(
    "/proofs/tx/{tx_id}",
    summary="A committed tx's result and audit events, with a proof against its block's app "
    "hash (for whoever may see every audit event in it; any tx for regulators and operators)",
    openapi_extra=SIGNED,
)
def prove_tx(tx_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """Lets an auditor check that a tx and its audit events are on chain without trusting
    this node; 404 for a tx the caller may not see, as for one that does not exist."""
    try:
        tid = bytes.fromhex(tx_id)
    except ValueError:
        raise InvalidTransaction(Code.MALFORMED, "tx id is not valid hex") from None
    found = engine.app.db.tx_result(tid)
    allowed = policy.AuditFilter(caller, getter(engine))
    events = [] if found is None else [dict(e.attributes) for e in found[2].events]
    rows = [{"actor": a.get("actor"), "patient": a.get("patient"), "attributes": a} for a in events]
    if not caller.supervises and not (rows and all(allowed.allows(r) for r in rows)):
        raise NotFound(f"no committed transaction {tx_id} you may see")
    return tx_proof_of(engine, tid)
