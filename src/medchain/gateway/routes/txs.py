"""Submit signed transactions and follow them to commit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from medchain.consensus.solo import SoloEngine
from medchain.exceptions import Code, InvalidTransaction
from medchain.gateway.deps import Engine
from medchain.gateway.errors import NotFound
from medchain.gateway.schemas import EventOut, TxIn, TxResultOut

router = APIRouter(prefix="/v1/txs", tags=["transactions"])


def _parse_hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidTransaction(Code.MALFORMED, f"{what} is not valid hex") from None


def _result(engine: SoloEngine, tx_id: bytes) -> TxResultOut | None:
    found = engine.app.db.tx_result(tx_id)
    if found is None:
        return None
    height, index, r = found
    return TxResultOut(
        tx_id=tx_id.hex(),
        status="committed",
        height=height,
        index=index,
        code=int(r.code),
        code_name=r.code.name,
        log=r.log,
        events=[EventOut(type=e.type, attributes=dict(e.attributes)) for e in r.events],
    )


@router.post(
    "",
    response_model=TxResultOut,
    status_code=202,
    summary="Submit a signed transaction (CheckTx), optionally wait for its block",
)
def submit_tx(
    body: TxIn,
    engine: Engine,
    wait: Annotated[bool, Query(description="wait until the tx is committed")] = False,
    timeout: Annotated[float, Query(gt=0, le=60)] = 10.0,
) -> TxResultOut:
    tx = engine.submit(_parse_hex(body.tx, "tx"))
    if wait:
        committed = engine.wait_for(tx.tx_id, timeout)
        if committed is not None:
            out = _result(engine, tx.tx_id)
            assert out is not None
            return out
    return TxResultOut(tx_id=tx.tx_id.hex(), status="pending")


@router.get("/{tx_id}", response_model=TxResultOut, summary="Status and result of a transaction")
def get_tx(tx_id: str, engine: Engine) -> TxResultOut:
    tid = _parse_hex(tx_id, "tx id")
    out = _result(engine, tid)
    if out is not None:
        return out
    if engine.mempool.contains(tid):
        return TxResultOut(tx_id=tx_id, status="pending")
    raise NotFound(f"no transaction {tx_id} (never submitted, or dropped from the mempool)")
