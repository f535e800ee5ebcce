"""The embedded single-node engine: one process makes and commits blocks.

For a laptop demo and for tests. It runs the same Application as the
CometBFT engine; only who orders transactions differs. A block is made when
the oldest pending tx has waited `block_interval` seconds or enough txs for a
full block are pending; no empty blocks are made.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

from medchain.consensus.application import Application
from medchain.consensus.mempool import Mempool
from medchain.contracts.lightclient import solo_header_bytes
from medchain.core.block import Block, BlockResult, TxResult
from medchain.core.tx import SignedTx

Screen = Callable[[SignedTx], None]
# Told of each block after it is committed (metrics count from it); must not raise.
BlockListener = Callable[[BlockResult], None]

# Signs a block header's bytes with the node key (the node layer holds the key, so
# this module needs no crypto): other chains' light clients check the signature.
HeaderSigner = Callable[[bytes], bytes]

log = logging.getLogger("medchain.solo")


@dataclass(frozen=True)
class CommittedTx:
    """Where a committed tx landed and what happened to it."""

    height: int
    index: int
    result: TxResult


class CommitSignal:
    """Wakes asyncio waiters after each commit, on whatever event loop they run.

    A waiter holds a future on its own loop, not a thread: thousands of open
    waits cost a few objects each, and the gateway's worker threads stay free
    for requests that need them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def listen(self) -> asyncio.Future[None]:
        """A future done at the next notify (register before checking, so no commit
        between the check and the wait is missed)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._waiters.add((loop, future))
        return future

    def forget(self, future: asyncio.Future[None]) -> None:
        """Drop a waiter that gave up (timeout), so abandoned waits do not pile up."""
        with self._lock:
            self._waiters = {w for w in self._waiters if w[1] is not future}

    async def until_committed(
        self,
        tx_id: bytes,
        timeout: float,
        committed: Callable[[bytes], CommittedTx | None],
        waiting: Callable[[bytes], bool],
        stop: threading.Event,
    ) -> CommittedTx | None:
        """Wait without a thread until `committed(tx_id)` answers, woken by each commit;
        None once `timeout` passes, the engine stops, or the tx is no longer `waiting`
        for a block (never submitted, or dropped): there is nothing left to wait for."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            woken = self.listen()
            try:
                found = committed(tx_id)
                if found is not None:
                    return found
                left = deadline - loop.time()
                if left <= 0 or stop.is_set() or not waiting(tx_id):
                    return committed(tx_id)
                await asyncio.wait([woken], timeout=left)
            finally:
                self.forget(woken)

    def notify_all(self) -> None:
        """Called on the producer thread after a commit (or at stop)."""
        with self._lock:
            waiters, self._waiters = self._waiters, set()
        for loop, future in waiters:
            with suppress(RuntimeError):  # a closed loop: nobody waits there any more
                loop.call_soon_threadsafe(_wake, future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SoloEngine:
    """Mempool + block producer thread around an Application."""

    name = "solo"

    def __init__(
        self,
        app: Application,
        block_interval: float = 0.2,
        mempool: Mempool | None = None,
        header_signer: HeaderSigner | None = None,
        header_key: tuple[str, bytes] | None = None,
    ) -> None:
        """`header_signer`: signs each block's header (lightclient.solo_header_bytes) for
        the light clients of other chains (htlc), with the key whose (suite, public key)
        is `header_key`; None: this node signs no headers."""
        self.app = app
        self.header_signer = header_signer
        self.header_key = header_key
        self.block_interval = block_interval
        self.mempool = mempool or Mempool(app)
        self._wake = threading.Condition()
        self._committed = threading.Condition()
        self._signal = CommitSignal()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None
        self.block_listeners: list[BlockListener] = []

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Start producing blocks on a background thread."""
        self._thread = threading.Thread(target=self._run, name="solo-producer", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the producer thread is making blocks (False before start, after
        stop, or once a node fault stopped it)."""
        return self._thread is not None and self._thread.is_alive() and self.failure is None

    def stop(self) -> None:
        """Stop producing blocks: wake the producer and every waiter, then wait for the
        producer to finish its block."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._signal.notify_all()
        if self._thread:
            self._thread.join(timeout=30)

    # -- client side ---------------------------------------------------------

    def submit(self, raw: bytes, screen: Screen | None = None) -> SignedTx:
        """CheckTx and queue; raises InvalidTransaction with a code if refused.

        `screen` sees each validly signed tx before it is admitted and may refuse
        it by raising (the gateway's per-client policies, e.g. self-registration)."""
        tx = self.mempool.add(raw, screen)
        with self._wake:
            self._wake.notify()
        return tx

    def wait_for(self, tx_id: bytes, timeout: float) -> CommittedTx | None:
        """Block until `tx_id` is committed (or timeout); None if not yet."""
        deadline = time.monotonic() + timeout
        with self._committed:
            while True:
                found = self.app.db.tx_result(tx_id)
                if found is not None:
                    return CommittedTx(found[0], found[1], found[2])
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return None
                self._committed.wait(min(left, 0.5))

    def committed(self, tx_id: bytes) -> CommittedTx | None:
        """Where `tx_id` was committed, if it was."""
        found = self.app.db.tx_result(tx_id)
        return None if found is None else CommittedTx(found[0], found[1], found[2])

    def known(self, tx_id: bytes) -> bool:
        """Pending in the mempool or committed (checked in that order, so a tx that
        commits between the two looks is still found)."""
        return self.mempool.contains(tx_id) or self.committed(tx_id) is not None

    def pending(self, tx_id: bytes) -> bool:
        """Whether `tx_id` waits in the mempool."""
        return self.mempool.contains(tx_id)

    def pending_count(self) -> int:
        """How many txs wait in the mempool."""
        return len(self.mempool)

    def next_nonce(self, signer_key_id: bytes) -> int:
        """The nonce a signer's next tx must carry, counting its pending txs."""
        return self.mempool.next_nonce(signer_key_id)

    async def wait_async(self, tx_id: bytes, timeout: float) -> CommittedTx | None:
        """Wait without a thread until `tx_id` is committed (or `timeout` passes).

        None at once for a tx that is neither pending nor committed (never
        submitted, or dropped from the mempool): there is nothing to wait for.
        """
        return await self._signal.until_committed(
            tx_id, timeout, self.committed, self.known, self._stop
        )

    def signed_header(self, height: int) -> tuple[bytes, bytes] | None:
        """Block `height`'s header as solo_header_bytes encodes it, and this node's
        signature over it, made on request (only a relayer asks, so the block producer
        signs nothing); None if the node signs no headers or has no such block."""
        if self.header_signer is None:
            return None
        db = self.app.db
        block, roots = db.block(height), db.roots(height)
        if block is None or roots is None:
            return None
        message = solo_header_bytes(
            self.app.chain_id, height, block["hash"], roots["app_hash"], roots["time_ms"]
        )
        return message, self.header_signer(message)

    # -- producer ------------------------------------------------------------

    def _run(self) -> None:
        params = self.app.params
        try:
            while not self._stop.is_set():
                with self._wake:
                    while len(self.mempool) == 0 and not self._stop.is_set():
                        self._wake.wait(timeout=1.0)
                    deadline = time.monotonic() + self.block_interval
                    while (
                        len(self.mempool) < params.max_block_txs
                        and not self._stop.is_set()
                        and (left := deadline - time.monotonic()) > 0
                    ):
                        self._wake.wait(timeout=left)
                if self._stop.is_set():
                    break
                txs = self.mempool.take(params.max_block_txs, params.max_block_bytes)
                if txs:
                    self.produce_block(txs)
        except BaseException as e:  # a node fault: stop producing, never diverge
            self.failure = e
            log.exception("block production stopped: %s", e)
            raise

    def produce_block(self, txs: list[bytes], time_ms: int | None = None) -> BlockResult:
        """Order, execute and commit one block (the proposer picks the time)."""
        db = self.app.db
        now_ms = int(time.time() * 1000) if time_ms is None else time_ms
        block = Block(
            chain_id=self.app.chain_id,
            height=db.height + 1,
            time_ms=max(now_ms, db.block_time_ms() + 1),
            txs=tuple(txs),
            prev_hash=db.last_block_hash,
            proposer="solo",
        )
        result = self.app.finalize_block(block, self.mempool.verified)
        self.app.commit(result)
        self.mempool.update([r.tx_id for r in result.tx_results])
        for listener in self.block_listeners:
            listener(result)
        with self._committed:
            self._committed.notify_all()
        self._signal.notify_all()
        return result
