"""Submit signed transactions and follow them to commit.

These routes are public (no signed request): a tx carries its own signature,
and a tx's status is looked up by its id, the SM3 of the signed tx, which
nobody can guess without holding the tx itself: the id is the capability.

Waits are async: an open wait is a future on the event loop, not a worker
thread, so a crowd of waiting clients cannot stall status reads or
submissions. Each wait is held at most the server's wait cap (Limits.
max_wait_seconds; a client asks again for what is still pending), one
address may hold only so many at once, and an id that is neither pending nor
committed is answered at once as `unknown`."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from medchain.consensus.engine import Engine as ChainEngine
from medchain.consensus.engine import Screen
from medchain.core.tx import SignedTx
from medchain.exceptions import Code, InvalidTransaction
from medchain.gateway.deps import Engine, history_note
from medchain.gateway.errors import NotFound, RateLimited
from medchain.gateway.limits import SELF_REGISTRATION, Limiter, client_address, limiter_of
from medchain.gateway.schemas import EventOut, TxBatchIn, TxIdsIn, TxIn, TxResultOut
from medchain.metrics.chain import ChainMetrics

router = APIRouter(prefix="/v1/txs", tags=["transactions"])


def _parse_hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidTransaction(Code.MALFORMED, f"{what} is not valid hex") from None


def _result(engine: ChainEngine, tx_id: bytes) -> TxResultOut | None:
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


def _screen(limiter: Limiter, client: str) -> Screen:
    """The gateway's policy on a signed tx before the mempool takes it: patient
    self-registrations are bounded per address and per gateway (Limits)."""

    def screen(tx: SignedTx) -> None:
        if (tx.envelope.contract, tx.envelope.action) == SELF_REGISTRATION:
            limiter.charge_self_registration(client)

    return screen


def _state_now(engine: ChainEngine, tx_id: bytes) -> TxResultOut:
    """Committed with its result, pending, or unknown to this node."""
    out = _result(engine, tx_id)
    if out is not None:
        return out
    if engine.pending(tx_id):
        return TxResultOut(tx_id=tx_id.hex(), status="pending")
    return _result(engine, tx_id) or TxResultOut(tx_id=tx_id.hex(), status="unknown")


@router.post(
    "",
    response_model=TxResultOut,
    status_code=202,
    summary="Submit a signed transaction (CheckTx), optionally wait for its block",
    responses={429: {"description": "too many requests, waits or self-registrations"}},
)
async def submit_tx(
    body: TxIn,
    engine: Engine,
    request: Request,
    wait: Annotated[bool, Query(description="wait until the tx is committed")] = False,
    timeout: Annotated[
        float, Query(gt=0, le=60, description="seconds; held at most the server's wait cap")
    ] = 10.0,
) -> TxResultOut:
    """Send one signed tx (hex). 202 with `pending` once CheckTx takes it; with
    `wait=true`, the answer comes when its block commits or the timeout passes."""
    raw = _parse_hex(body.tx, "tx")
    limiter = limiter_of(request.app)
    client = client_address(request.scope)
    if not wait:
        tx = await run_in_threadpool(engine.submit, raw, _screen(limiter, client))
        _admitted(request, tx.tx_id)
        return TxResultOut(tx_id=tx.tx_id.hex(), status="pending")
    async with limiter.wait_slot(client):  # before submitting: a refusal leaves nothing done
        tx = await run_in_threadpool(engine.submit, raw, _screen(limiter, client))
        _admitted(request, tx.tx_id)
        await engine.wait_async(tx.tx_id, limiter.wait_seconds(timeout))
    return _state_now(engine, tx.tx_id)


@router.post(
    "/batch",
    response_model=list[TxResultOut],
    status_code=202,
    summary="Submit many signed transactions in order (e.g. one signer's consecutive nonces); "
    "a tx refused at CheckTx (or by this gateway's limits) is answered with its code and "
    "the rest go on",
)
async def submit_batch(body: TxBatchIn, engine: Engine, request: Request) -> list[TxResultOut]:
    """Send many signed txs in one call, in order, for bulk loads; one answer per tx in
    the same order, so one refusal does not stop the others."""
    raws = [_parse_hex(raw, f"txs[{i}]") for i, raw in enumerate(body.txs)]  # all or nothing
    screen = _screen(limiter_of(request.app), client_address(request.scope))
    answers = await run_in_threadpool(_submit_each, engine, raws, screen)
    for answer in answers:
        if answer.tx_id:
            _admitted(request, bytes.fromhex(answer.tx_id))
    return answers


def _admitted(request: Request, tx_id: bytes) -> None:
    """Note when the mempool took `tx_id`, for the admission-to-commit latency."""
    chain_metrics: ChainMetrics | None = getattr(request.app.state, "chain_metrics", None)
    if chain_metrics is not None:
        chain_metrics.admitted(tx_id)


def _submit_each(engine: ChainEngine, raws: list[bytes], screen: Screen) -> list[TxResultOut]:
    out = []
    for raw in raws:
        try:
            tx = engine.submit(raw, screen)
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
        except RateLimited as e:
            out.append(
                TxResultOut(
                    tx_id="",
                    status="refused",
                    code_name="RATE_LIMITED",
                    log=f"{e.message}; retry after {e.retry_after} s",
                )
            )
            continue
        out.append(TxResultOut(tx_id=tx.tx_id.hex(), status="pending"))
    return out


@router.post(
    "/wait",
    response_model=list[TxResultOut],
    summary="Wait until each of these transactions is committed (or the timeout passes); "
    "ids this node has never seen (or dropped) answer `unknown` at once",
    responses={429: {"description": "this address holds too many open waits"}},
)
async def wait_for(
    body: TxIdsIn,
    engine: Engine,
    request: Request,
    timeout: Annotated[
        float, Query(gt=0, le=120, description="seconds; held at most the server's wait cap")
    ] = 30.0,
) -> list[TxResultOut]:
    """Block until each tx id is committed, refused or the timeout passes, after a batch
    submit; one answer per id, in the order given."""
    tids = [_parse_hex(tx_id, "tx id") for tx_id in body.tx_ids]
    limiter = limiter_of(request.app)
    loop = asyncio.get_running_loop()
    async with limiter.wait_slot(client_address(request.scope)):
        deadline = loop.time() + limiter.wait_seconds(timeout)
        for tid in tids:
            await engine.wait_async(tid, max(0.0, deadline - loop.time()))
    return [_state_now(engine, tid) for tid in tids]


@router.get("/{tx_id}", response_model=TxResultOut, summary="Status and result of a transaction")
def get_tx(tx_id: str, engine: Engine) -> TxResultOut:
    """Poll one tx by id: `pending` while in the mempool, then its block, code and events;
    404 if this node never saw it or dropped it."""
    tid = _parse_hex(tx_id, "tx id")
    out = _result(engine, tid)
    if out is not None:
        return out
    if engine.pending(tid):
        return TxResultOut(tx_id=tx_id, status="pending")
    raise NotFound(
        f"no transaction {tx_id} (never submitted, or dropped from the mempool)"
        + history_note(engine)
    )
