"""The solo engine's mempool: ordered pending txs, rechecked after each commit.

CheckTx has two halves. The stateless half (decode, size, chain id, SM2
signature) needs no lock and runs on any thread; OpenSSL releases the GIL,
so two submitters use both cores. The stateful half is CheckState.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from medchain.consensus.application import Application
from medchain.consensus.check_state import CheckState
from medchain.core.tx import SignedTx
from medchain.exceptions import Code, InvalidTransaction

DEFAULT_MAX_TXS = 50_000


class Mempool:
    """Pending transactions in arrival order."""

    def __init__(self, app: Application, max_txs: int = DEFAULT_MAX_TXS) -> None:
        self.app = app
        self.max_txs = max_txs
        self.check_state = CheckState(app)
        self._lock = threading.Lock()
        self._txs: OrderedDict[bytes, SignedTx] = OrderedDict()
        self.verified: dict[bytes, SignedTx] = {}

    def __len__(self) -> int:
        return len(self._txs)

    def contains(self, tx_id: bytes) -> bool:
        """Whether a tx is pending, so a status query can answer `pending`."""
        return tx_id in self._txs

    def add(self, raw: bytes, screen: Callable[[SignedTx], None] | None = None) -> SignedTx:
        """CheckTx: admit `raw` or raise InvalidTransaction saying why.

        `screen`, if given, runs between the stateless and the stateful half
        (a signed, well-formed tx) and refuses the tx by raising."""
        tx = self.app.check_stateless(raw, self.check_state.screen)
        if screen is not None:
            screen(tx)
        with self._lock:
            if tx.tx_id in self._txs:
                raise InvalidTransaction(Code.DUPLICATE_TX, "transaction is already pending")
            if len(self._txs) >= self.max_txs:
                raise InvalidTransaction(Code.MEMPOOL_FULL, "mempool is full; retry shortly")
            self.check_state.admit(tx)
            self._txs[tx.tx_id] = tx
            self.verified[tx.tx_id] = tx
        return tx

    def next_nonce(self, signer_key_id: bytes) -> int:
        """The nonce a signer's next tx must carry, counting its pending txs."""
        return self.check_state.next_nonce(signer_key_id)

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
                self.verified.pop(tx_id, None)
            self.check_state.reset()
            for tx_id, tx in list(self._txs.items()):
                try:
                    self.check_state.admit(tx)
                except InvalidTransaction:
                    del self._txs[tx_id]
                    self.verified.pop(tx_id, None)
