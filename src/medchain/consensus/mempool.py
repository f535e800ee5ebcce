"""The mempool: admits a tx only if a block would accept its envelope.

CheckTx has two halves. The stateless half (decode, size, chain id, SM2
signature) needs no lock and runs on any thread; OpenSSL releases the GIL,
so two submitters use both cores. The stateful half (contract exists, nonce
is next, signer active) runs under the lock against a view of committed state
plus the txs already admitted.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from medchain import encoding
from medchain.consensus.application import Application
from medchain.core.execution import NONCE_PREFIX, authorize, nonce_key
from medchain.core.state import StateView
from medchain.core.tx import SignedTx
from medchain.exceptions import Code, InvalidTransaction

DEFAULT_MAX_TXS = 50_000


class Mempool:
    """Ordered pending transactions, rechecked after every commit."""

    def __init__(self, app: Application, max_txs: int = DEFAULT_MAX_TXS) -> None:
        self.app = app
        self.max_txs = max_txs
        self._lock = threading.Lock()
        self._txs: OrderedDict[bytes, SignedTx] = OrderedDict()
        self._view = StateView(app.db)
        self.verified: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._txs)

    def contains(self, tx_id: bytes) -> bool:
        return tx_id in self._txs

    def add(self, raw: bytes) -> SignedTx:
        """CheckTx: admit `raw` or raise InvalidTransaction saying why."""
        tx = self.app.check_stateless(raw)
        with self._lock:
            if tx.tx_id in self._txs:
                raise InvalidTransaction(Code.DUPLICATE_TX, "transaction is already pending")
            if len(self._txs) >= self.max_txs:
                raise InvalidTransaction(Code.MEMPOOL_FULL, "mempool is full; retry shortly")
            self._admit(tx)
            self._txs[tx.tx_id] = tx
            self.verified.add(tx.tx_id)
        return tx

    def _admit(self, tx: SignedTx) -> None:
        try:
            authorize(self._view, tx, self.app.registry)
        finally:
            self._view.rollback_tx()
        self._view.set(nonce_key(tx), encoding.encode(tx.envelope.nonce + 1))
        self._view.commit_tx()

    def next_nonce(self, signer_key_id: bytes) -> int:
        """The nonce a new tx from this key must carry, counting pending txs."""
        with self._lock:
            raw = self._view.get(NONCE_PREFIX + signer_key_id.hex())
        return 0 if raw is None else int(encoding.decode(raw))

    def take(self, max_txs: int, max_bytes: int) -> list[bytes]:
        """The oldest pending txs that fit in one block (they stay pending)."""
        out: list[bytes] = []
        size = 0
        with self._lock:
            for tx in self._txs.values():
                if len(out) >= max_txs or size + len(tx.raw) > max_bytes:
                    break
                out.append(tx.raw)
                size += len(tx.raw)
        return out

    def update(self, committed: list[bytes]) -> None:
        """After a commit: drop committed txs, recheck the rest against new state.

        A tx whose signer was revoked or whose nonce was used by the block
        is dropped here, so it can never reach a later block.
        """
        with self._lock:
            for tx_id in committed:
                self._txs.pop(tx_id, None)
                self.verified.discard(tx_id)
            self._view = StateView(self.app.db)
            for tx_id, tx in list(self._txs.items()):
                try:
                    self._admit(tx)
                except InvalidTransaction:
                    del self._txs[tx_id]
                    self.verified.discard(tx_id)
