"""The MedChain application: the state machine behind either engine.

The solo engine and the CometBFT ABCI server both drive this one object,
which is why a tx sequence gives the same app hash in both modes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from medchain import encoding
from medchain.consensus.projections import SupplyUnits
from medchain.contracts.registry import PROFILE_KEY, ContractRegistry, registry_for
from medchain.core.block import Block, BlockResult
from medchain.core.execution import EMPTY_VERIFIED, apply_block, init_chain, read_params
from medchain.core.genesis import BUSINESS, Genesis, Params
from medchain.core.tx import SignedTx, check_stateless, decode_tx
from medchain.exceptions import InternalError, InvalidTransaction
from medchain.storage.chain_db import ChainDB

log = logging.getLogger("medchain.chain")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


@dataclass(frozen=True)
class AppInfo:
    """What Info returns: where this node's committed state stands."""

    chain_id: str
    height: int
    app_hash: bytes


class Application:
    """Applies blocks to the chain database, one committed height at a time."""

    def __init__(self, db: ChainDB, registry: ContractRegistry | None = None) -> None:
        self.db = db
        self._chosen = registry is not None
        self.registry = registry or registry_for(self._stored_profile())
        self._params: Params | None = None
        self._chain_id: str | None = None
        if self.db.height >= 0:  # a new database gets them in init_chain, by its profile
            self._add_projections()

    def _add_projections(self) -> None:
        """The node-local read tables this chain's contracts need (business chains:
        supply units for traces); rebuilt from state if the database predates them."""
        if self.registry.profile == BUSINESS:
            self.db.add_projection(SupplyUnits())

    def _stored_profile(self) -> str:
        raw = self.db.get(PROFILE_KEY)
        return BUSINESS if raw is None else str(encoding.decode(raw))

    @property
    def chain_id(self) -> str:
        """The chain id from the DB, read once; InternalError before init_chain."""
        if self._chain_id is None:
            self._chain_id = self.db.chain_id
        if self._chain_id is None:
            raise InternalError("chain not initialised: run init_chain with a genesis first")
        return self._chain_id

    @property
    def params(self) -> Params:
        """The chain's parameters (tx and block size limits), read once from state."""
        if self._params is None:
            self._params = read_params(self.db)
        return self._params

    def info(self) -> AppInfo:
        """The chain id, last committed height and app hash (ABCI Info and the gateway)."""
        return AppInfo(self.db.chain_id or "", self.db.height, self.db.app_hash)

    def init_chain(self, genesis: Genesis) -> bytes:
        """Write genesis state once; on restart, check it is the same genesis."""
        if self.db.height >= 0:
            if self.db.chain_id != genesis.chain_id:
                raise InternalError(
                    f"database holds chain {self.db.chain_id!r}, genesis is {genesis.chain_id!r}"
                )
            return self.db.app_hash
        if not self._chosen:
            self.registry = registry_for(genesis.profile)
        result = init_chain(genesis, self.registry)
        self._add_projections()
        self.db.commit_block(result)
        self._params = None
        return result.app_hash

    def restored(self) -> None:
        """After state sync wrote a snapshot into the empty database: take the chain's
        contracts from the restored state's profile, forget cached params and chain
        id, and rebuild the projections from state."""
        if not self._chosen:
            self.registry = registry_for(self._stored_profile())
        self._params = None
        self._chain_id = None
        self._add_projections()

    def check_stateless(
        self, raw: bytes, screen: Callable[[SignedTx], None] | None = None
    ) -> SignedTx:
        """Decode, size, chain id and signature: no state needed, any thread (`screen`
        may refuse the tx before its signature is verified; see CheckState.screen)."""
        return check_stateless(
            raw, chain_id=self.chain_id, max_bytes=self.params.max_tx_bytes, screen=screen
        )

    def finalize_block(
        self, block: Block, verified: Mapping[bytes, SignedTx] = EMPTY_VERIFIED
    ) -> BlockResult:
        """Execute a block over committed state; nothing is stored yet."""
        if block.height != self.db.height + 1:
            raise InternalError(f"block {block.height} does not follow {self.db.height}")
        return apply_block(self.db, block, self.registry, self.db.state_root, verified)

    def commit(self, result: BlockResult, store_block: bool = True) -> None:
        """Persist a finalized block atomically."""
        self.db.commit_block(result, store_block=store_block)
        log_commit(result)


def log_commit(result: BlockResult) -> None:
    """One line per committed block (height, txs, refused, app hash prefix) and one per
    refused tx: its code, contract and action. Never the payload or the refusal's
    message, which may quote it; the full hash and tx ids are on the chain."""
    if not log.isEnabledFor(logging.INFO):
        return
    block = result.block
    refused = [(raw, r) for raw, r in zip(block.txs, result.tx_results, strict=False) if r.code]
    app_hash = result.app_hash.hex()[:16]
    log.info(
        "committed block %d: %d txs (%d refused), app hash %s",
        block.height,
        len(block.txs),
        len(refused),
        app_hash,
        extra={
            "height": block.height,
            "txs": len(block.txs),
            "refused": len(refused),
            "app_hash": app_hash,
        },
    )
    for raw, r in refused:
        contract, action = _contract_action(raw)
        log.info(
            "refused %s.%s: %s",
            contract,
            action,
            r.code.name,
            extra={
                "height": block.height,
                "code": r.code.name,
                "contract": contract,
                "action": action,
            },
        )


def _contract_action(raw: bytes) -> tuple[str, str]:
    """The contract and action a tx names; "?" for bytes that are no tx or a name that
    is no identifier (a refused tx's names are the sender's: no free text in logs)."""
    try:
        envelope = decode_tx(raw, max_bytes=len(raw)).envelope
    except InvalidTransaction:
        return "?", "?"
    names = (envelope.contract, envelope.action)
    return (names[0], names[1]) if all(map(_NAME.fullmatch, names)) else ("?", "?")
