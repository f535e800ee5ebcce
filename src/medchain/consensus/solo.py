"""The embedded single-node engine: one process makes and commits blocks.

For a laptop demo and for tests. It runs the same Application as the
CometBFT engine; only who orders transactions differs. A block is made when
the oldest pending tx has waited `block_interval` seconds or enough txs for a
full block are pending; no empty blocks are made.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from medchain.consensus.application import Application
from medchain.consensus.mempool import Mempool
from medchain.core.block import Block, BlockResult, TxResult
from medchain.core.tx import SignedTx

log = logging.getLogger("medchain.solo")


@dataclass(frozen=True)
class CommittedTx:
    """Where a committed tx landed and what happened to it."""

    height: int
    index: int
    result: TxResult


class SoloEngine:
    """Mempool + block producer thread around an Application."""

    def __init__(
        self, app: Application, block_interval: float = 0.2, mempool: Mempool | None = None
    ) -> None:
        self.app = app
        self.block_interval = block_interval
        self.mempool = mempool or Mempool(app)
        self._wake = threading.Condition()
        self._committed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="solo-producer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread:
            self._thread.join(timeout=30)

    # -- client side ---------------------------------------------------------

    def submit(self, raw: bytes) -> SignedTx:
        """CheckTx and queue; raises InvalidTransaction with a code if refused."""
        tx = self.mempool.add(raw)
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
        with self._committed:
            self._committed.notify_all()
        log.info(
            "committed block %d with %d txs, app hash %s",
            block.height,
            len(txs),
            result.app_hash.hex()[:16],
        )
        return result
