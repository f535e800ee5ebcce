"""The engine interface the gateway serves: one Protocol, two engines behind it.

`SoloEngine` (consensus/solo.py) orders txs itself; `CometEngine`
(consensus/cometbft_engine.py) submits them to CometBFT over RPC and reads the
state its own ABCI app committed. Routes see only this interface, so no route
knows which engine runs, and both answer with the same codes: a refusal is the
same InvalidTransaction CheckTx raises on either engine.
"""

from __future__ import annotations

from typing import Protocol

from medchain.consensus.application import Application
from medchain.consensus.solo import BlockListener, CommittedTx, Screen
from medchain.core.tx import SignedTx

__all__ = ["BlockListener", "CommittedTx", "Engine", "Screen"]


class Engine(Protocol):
    """What the gateway needs from a running engine.

    Committed state is read through `app` (`app.db`, `app.chain_id`,
    `app.registry`): on every engine it is this node's own committed ChainDB,
    and a route that needs several reads to agree takes them inside
    `app.db.snapshot()`.
    """

    @property
    def name(self) -> str:
        """`solo` or `cometbft`, as GET /v1/status reports it."""
        ...

    @property
    def app(self) -> Application:
        """The application whose committed state this node serves."""
        ...

    @property
    def block_listeners(self) -> list[BlockListener]:
        """Called with each block this node commits, after the commit (on the thread
        that committed it): the node's metrics count from them."""
        ...

    def submit(self, raw: bytes, screen: Screen | None = None) -> SignedTx:
        """CheckTx and hand the tx to the engine's mempool; raises InvalidTransaction
        with CheckTx's code if refused. `screen` sees the signed tx first and may
        refuse it by raising."""
        ...

    async def wait_async(self, tx_id: bytes, timeout: float) -> CommittedTx | None:
        """Wait until `tx_id` is committed or `timeout` passes; None at once for a tx
        that is neither pending nor committed."""
        ...

    def committed(self, tx_id: bytes) -> CommittedTx | None:
        """Where `tx_id` was committed on this node, if it was."""
        ...

    def pending(self, tx_id: bytes) -> bool:
        """Whether `tx_id` waits in this node's mempool."""
        ...

    def pending_count(self) -> int:
        """How many txs wait in this node's mempool."""
        ...

    def next_nonce(self, signer_key_id: bytes) -> int:
        """The nonce a signer's next tx must carry, counting its pending txs."""
        ...
