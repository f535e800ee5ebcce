"""Submit signed transactions and follow them to commit."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from medchain.consensus.solo import SoloEngine
from medchain.exceptions import Code, InvalidTransaction
from medchain.gateway.deps import Engine
from medchain.gateway.errors import NotFound
from medchain.gateway.schemas import EventOut, TxBatchIn, TxIdsIn, TxIn, TxResultOut

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


@router.post(
    "/batch",
    response_model=list[TxResultOut],
    status_code=202,
    summary="Submit many signed transactions in order (e.g. one signer's consecutive nonces); "
    "a tx refused at CheckTx is answered with its code and the rest go on",
)
def submit_batch(body: TxBatchIn, engine: Engine) -> list[TxResultOut]:
    raws = [_parse_hex(raw, f"txs[{i}]") for i, raw in enumerate(body.txs)]  # all or nothing
    out = []
    for raw in raws:
        try:
            tx = engine.submit(raw)
        except InvalidTransaction as e:
            out.append(
                TxResultOut(
                    tx_id="",
                    status="refused",
                    code=int(e.code),
                    code_name=e.code.name,
                    log=e.message,
                )
            )
            continue
        out.append(TxResultOut(tx_id=tx.tx_id.hex(), status="pending"))
    return out


@router.post(
    "/wait",
    response_model=list[TxResultOut],
    summary="Wait until each of these transactions is committed (or the timeout passes)",
)
def wait_for(
    body: TxIdsIn,
    engine: Engine,
    timeout: Annotated[float, Query(gt=0, le=120)] = 30.0,
) -> list[TxResultOut]:
    deadline = time.monotonic() + timeout
    out = []
    for tx_id in body.tx_ids:
        tid = _parse_hex(tx_id, "tx id")
        engine.wait_for(tid, max(0.0, deadline - time.monotonic()))
        out.append(_result(engine, tid) or TxResultOut(tx_id=tx_id, status="pending"))
    return out


@router.get("/{tx_id}", response_model=TxResultOut, summary="Status and result of a transaction")
def get_tx(tx_id: str, engine: Engine) -> TxResultOut:
    tid = _parse_hex(tx_id, "tx id")
    out = _result(engine, tid)
    if out is not None:
        return out
    if engine.mempool.contains(tid):
        return TxResultOut(tx_id=tx_id, status="pending")
    raise NotFound(f"no transaction {tx_id} (never submitted, or dropped from the mempool)")
