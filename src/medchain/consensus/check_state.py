"""CheckTx's view of the world: committed state plus admitted txs' nonces.

Both engines admit transactions through this one class, so the solo mempool
and CometBFT's mempool apply exactly the same rules, and neither can admit
what a block would refuse for a bad nonce, an unknown or inactive signer, or
an unknown contract.
"""

from __future__ import annotations

import threading

from medchain import encoding
from medchain.consensus.application import Application
from medchain.core.execution import NONCE_PREFIX, authorize, nonce_key
from medchain.core.state import StateView
from medchain.core.tx import SignedTx


class CheckState:
    """Stateful admission against committed state and pending nonces."""

    def __init__(self, app: Application) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._view = StateView(app.db)

    def admit(self, tx: SignedTx) -> None:
        """Raise InvalidTransaction, or record the tx's nonce as used."""
        with self._lock:
            try:
                authorize(self._view, tx, self.app.registry)
            finally:
                self._view.rollback_tx()
            self._view.set(nonce_key(tx), encoding.encode(tx.envelope.nonce + 1))
            self._view.commit_tx()

    def reset(self) -> None:
        """Start again from newly committed state (after every commit)."""
        with self._lock:
            self._view = StateView(self.app.db)

    def next_nonce(self, signer_key_id: bytes) -> int:
        """The nonce a new tx from this key must carry, counting admitted txs."""
        with self._lock:
            raw = self._view.get(NONCE_PREFIX + signer_key_id.hex())
        return 0 if raw is None else int(encoding.decode(raw))
