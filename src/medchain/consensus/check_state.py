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
from medchain.core.tx import COSTLY_SUITES, SignedTx


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

    def screen(self, tx: SignedTx) -> None:
        """Refuse an sm9 tx whose signer is not an active, registered member, before
        its signature is verified (pass this to check_stateless as `screen`).

        An SM9 verification costs two pairings, and anyone can run a KGC of their own
        and sign valid sm9 txs; verifying those first would let a stranger keep the
        node's cores busy. No sm9 key can self-register (patients and new orgs' first
        admins hold none), so a key identity does not know is refused here, even for
        an open action. Only admission order changes: a block still verifies first,
        so the app hash is the same."""
        if tx.envelope.suite not in COSTLY_SUITES:
            return
        with self._lock:
            try:
                self.app.registry.authenticate(self._view, tx, False)
            finally:
                self._view.rollback_tx()

    def reset(self) -> None:
        """Start again from newly committed state (after every commit)."""
        with self._lock:
            self._view = StateView(self.app.db)

    def next_nonce(self, signer_key_id: bytes) -> int:
        """The nonce a new tx from this key must carry, counting admitted txs."""
        with self._lock:
            raw = self._view.get(NONCE_PREFIX + signer_key_id.hex())
        return 0 if raw is None else int(encoding.decode(raw))
