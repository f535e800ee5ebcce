"""The CometBFT engine behind the gateway: submit over RPC, read our own state.

The gateway of a CometBFT node runs in the same process as that node's ABCI
app, so committed state is read from the very ChainDB the app commits to (the
answer is this node's, at its last Commit), CheckTx's view of pending nonces is
the app's own, and a wait for commit wakes on the app's Commit. Transactions go
to CometBFT with `broadcast_tx_sync`: CometBFT runs CheckTx on this app and
gossips the tx; a refusal comes back with CheckTx's code, which becomes the same
InvalidTransaction the solo engine raises.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import httpx

from medchain.consensus.abci.server import AbciApplication
from medchain.consensus.application import Application
from medchain.consensus.solo import BlockListener, CommitSignal, CommittedTx, Screen
from medchain.core.tx import SignedTx
from medchain.exceptions import Code, InternalError, InvalidTransaction

RPC_TIMEOUT = 10.0


class CometEngine:
    """A CometBFT node's engine, as the gateway sees it (consensus/engine.py)."""

    name = "cometbft"

    def __init__(self, abci: AbciApplication, rpc_url: str, timeout: float = RPC_TIMEOUT) -> None:
        """`abci`: this node's ABCI app (same process); `rpc_url`: its CometBFT's RPC."""
        self._abci = abci
        self.rpc_url = rpc_url.rstrip("/")
        self._http = httpx.Client(timeout=timeout)
        self._signal = CommitSignal()
        self._stop = threading.Event()
        abci.commit_listeners.append(self._signal.notify_all)

    @property
    def app(self) -> Application:
        """The application this node's CometBFT drives."""
        return self._abci.app

    @property
    def block_listeners(self) -> list[BlockListener]:
        """Told of each block this node's app commits (the ABCI app's own list)."""
        return self._abci.block_listeners

    def abci_requests(self) -> dict[str, int]:
        """The ABCI requests this node's app has answered, by type."""
        return dict(self._abci.requests)

    def sync_info(self) -> tuple[bool, int]:
        """From this node's CometBFT RPC: whether it is catching up (block sync or
        state sync) and how many peers it has; InternalError if the RPC does not
        answer."""
        status = self._rpc("status", {}).get("result") or {}
        net = self._rpc("net_info", {}).get("result") or {}
        catching_up = bool((status.get("sync_info") or {}).get("catching_up", True))
        return catching_up, int(net.get("n_peers", 0))

    def stop(self) -> None:
        """Wake every waiter and close the RPC connection pool."""
        self._stop.set()
        self._signal.notify_all()
        self._http.close()

    # -- submit ---------------------------------------------------------------

    def submit(self, raw: bytes, screen: Screen | None = None) -> SignedTx:
        """Check the tx here (decode, size, chain, signature, as CheckTx does), let
        `screen` see it, then `broadcast_tx_sync`: CometBFT's CheckTx on this node's
        app admits it or refuses it with the code this raises."""
        tx = self.app.check_stateless(raw, self._abci.check_state.screen)
        if screen is not None:
            screen(tx)
        body = self._rpc("broadcast_tx_sync", {"tx": base64.b64encode(raw).decode()})
        error = body.get("error")
        if error is not None:
            raise self._refusal(tx, f"{error.get('message', '')} {error.get('data', '')}")
        result = body.get("result") or {}
        code = int(result.get("code", 0))
        if code != 0:
            if result.get("codespace") != "medchain" or code not in Code._value2member_map_:
                raise InvalidTransaction(Code.MALFORMED, f"refused by CometBFT: {result}")
            raise InvalidTransaction(Code(code), str(result.get("log", "")))
        return tx

    def _refusal(self, tx: SignedTx, message: str) -> InvalidTransaction:
        """CometBFT's own refusals (before or instead of our CheckTx), in our codes."""
        if "already exists in cache" in message:
            if self.committed(tx.tx_id) is not None:
                return InvalidTransaction(Code.BAD_NONCE, "transaction is already committed")
            return InvalidTransaction(Code.DUPLICATE_TX, "transaction is already pending")
        if "mempool is full" in message:
            return InvalidTransaction(Code.MEMPOOL_FULL, "mempool is full; retry shortly")
        if "too large" in message:
            return InvalidTransaction(Code.TOO_LARGE, message.strip())
        raise InternalError(f"CometBFT refused broadcast_tx_sync: {message.strip()}")

    def _rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        try:
            response = self._http.post(self.rpc_url, json=request)
            body: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as e:
            raise InternalError(f"CometBFT RPC at {self.rpc_url} did not answer: {e}") from e
        return body

    # -- follow ---------------------------------------------------------------

    def committed(self, tx_id: bytes) -> CommittedTx | None:
        """Where `tx_id` was committed on this node, from its own tx index."""
        found = self.app.db.tx_result(tx_id)
        return None if found is None else CommittedTx(found[0], found[1], found[2])

    def pending(self, tx_id: bytes) -> bool:
        """Whether `tx_id` waits in this node's CometBFT mempool (as CheckTx saw it)."""
        return tx_id in self._abci.mempool

    def pending_count(self) -> int:
        """How many txs wait in this node's CometBFT mempool."""
        return len(self._abci.mempool)

    def next_nonce(self, signer_key_id: bytes) -> int:
        """The nonce a signer's next tx must carry, counting txs CheckTx admitted."""
        return self._abci.check_state.next_nonce(signer_key_id)

    async def wait_async(self, tx_id: bytes, timeout: float) -> CommittedTx | None:
        """Wait without a thread until `tx_id` is committed here (woken by each Commit of
        this node's app), or `timeout` passes; None at once for a tx that is neither
        pending nor committed."""
        return await self._signal.until_committed(
            tx_id, timeout, self.committed, self.pending, self._stop
        )
