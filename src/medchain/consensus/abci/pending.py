"""Which txs wait in this node's CometBFT mempool, as its ABCI app sees them.

CometBFT has no RPC that asks "is this tx in your mempool?", but every tx it
keeps passes CheckTx on this node's app (new ones, and a recheck after every
commit), and every tx it commits passes FinalizeBlock and Commit. So the app
knows: a tx is pending from an accepted CheckTx until it is committed or a
recheck refuses it. The gateway answers `pending` from this set.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

# More than CometBFT's mempool holds (mempool.size in network/cometbft.py); past it
# the oldest ids go, as CometBFT would have dropped those long before.
MAX_TRACKED = 100_000


class PendingTxs:
    """Tx ids admitted to the mempool and not yet committed or dropped (thread-safe)."""

    def __init__(self, bound: int = MAX_TRACKED) -> None:
        self._ids: OrderedDict[bytes, None] = OrderedDict()
        self._bound = bound
        self._lock = threading.Lock()

    def admitted(self, tx_id: bytes) -> None:
        """CheckTx accepted the tx (new or rechecked)."""
        with self._lock:
            self._ids[tx_id] = None
            while len(self._ids) > self._bound:
                self._ids.popitem(last=False)

    def dropped(self, tx_id: bytes) -> None:
        """A recheck refused the tx: CometBFT removes it from its mempool."""
        with self._lock:
            self._ids.pop(tx_id, None)

    def committed(self, tx_ids: Iterable[bytes]) -> None:
        """A block with these txs was committed."""
        with self._lock:
            for tx_id in tx_ids:
                self._ids.pop(tx_id, None)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
