"""The state transition: one transaction, one block, genesis.

A reader can follow a transaction from bytes to state change here:
process_transaction decodes, checks the signature, authenticates the signer
and its nonce, then hands the payload to the contract's handler inside a
rollback scope. apply_block does that for each tx and hashes the result.
Everything is a pure function of (committed state, block).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

from medchain import encoding
from medchain.core.block import Block, BlockResult, TxResult, compute_app_hash, results_root
from medchain.core.context import Context, Signer
from medchain.core.genesis import Genesis, Params
from medchain.core.smt import EMPTY as EMPTY_ROOT
from medchain.core.smt import NodeGet, SparseMerkleTree
from medchain.core.state import EmptyState, StateReader, StateView
from medchain.core.tx import SignedTx, decode_tx, tx_id_of, verify_signature
from medchain.exceptions import Code, InvalidTransaction

PARAMS_KEY = "chain/params"
GENESIS_KEY = "chain/genesis"
NONCE_PREFIX = "nonce/"
EMPTY_VERIFIED: Mapping[bytes, SignedTx] = MappingProxyType({})
MAX_LOG_CHARS = 500


class Handler(Protocol):
    """A system contract: validates its payload, then writes its namespace."""

    namespace: str
    open_actions: frozenset[str]

    def apply(self, tx: SignedTx, ctx: Context) -> None:
        """Validate the tx against state and write; InvalidTransaction rolls the tx back."""
        ...


class Registry(Protocol):
    """Finds handlers and authenticates signers (identity owns key status)."""

    def handler(self, contract: str, version: int) -> Handler:
        """The handler of (contract, version); InvalidTransaction if the chain runs none."""
        ...

    def authenticate(self, state: StateView, tx: SignedTx, open_action: bool) -> Signer:
        """The signer behind the tx's key, refused unless active (an open action, such as
        self-registration, may come from a key nobody registered yet)."""
        ...

    def init_genesis(self, state: StateView, genesis: Genesis) -> None:
        """Write each contract's genesis state (admins, orgs, role policies)."""
        ...


def nonce_key(tx: SignedTx) -> str:
    """Where the next nonce of a tx's signing key is kept: one counter per key,
    so a replayed tx is refused."""
    return NONCE_PREFIX + tx.signer_key_id.hex()


def expected_nonce(state: StateView, tx: SignedTx) -> int:
    """The next nonce the signer's key must use (0 for a fresh key)."""
    raw = state.get(nonce_key(tx))
    return 0 if raw is None else int(encoding.decode(raw))


def read_params(state: StateReader) -> Params:
    """Chain parameters as stored at genesis."""
    raw = state.get(PARAMS_KEY)
    return Params() if raw is None else Params(**encoding.decode(raw))


def authorize(state: StateView, tx: SignedTx, registry: Registry) -> tuple[Handler, Signer]:
    """Stateful admission: contract exists, nonce is next, signer is active.

    Shared by CheckTx (against a mempool view) and block execution, so the
    mempool can never admit what a block would reject for these reasons.
    """
    e = tx.envelope
    handler = registry.handler(e.contract, e.version)
    want = expected_nonce(state, tx)
    if e.nonce != want:
        raise InvalidTransaction(
            Code.BAD_NONCE,
            f"nonce {e.nonce} is not the next for this key (expected {want}); "
            "a replayed or out-of-order transaction",
        )
    signer = registry.authenticate(state, tx, e.action in handler.open_actions)
    return handler, signer


def process_transaction(
    state: StateView,
    raw: bytes,
    block: Block,
    registry: Registry,
    params: Params,
    verified: Mapping[bytes, SignedTx] = EMPTY_VERIFIED,
) -> TxResult:
    """Apply one transaction; a rejected tx leaves no writes behind.

    The nonce is consumed once the signer is authenticated, even if the
    contract then rejects the payload, so a failed tx cannot be replayed.
    """
    tx_id = tx_id_of(raw)
    try:
        known = verified.get(tx_id)
        tx = known if known is not None else decode_tx(raw, max_bytes=params.max_tx_bytes)
        if tx.envelope.chain_id != block.chain_id:
            raise InvalidTransaction(Code.WRONG_CHAIN, "transaction is for another chain")
        if known is None:
            verify_signature(tx)
        handler, signer = authorize(state, tx, registry)
    except InvalidTransaction as e:
        state.rollback_tx()
        return TxResult(tx_id, e.code, e.message[:MAX_LOG_CHARS])

    state.set(nonce_key(tx), encoding.encode(tx.envelope.nonce + 1))
    state.commit_tx()

    ctx = Context(
        state=state,
        namespace=handler.namespace,
        chain_id=block.chain_id,
        height=block.height,
        time_ms=block.time_ms,
        tx_id=tx_id,
        signer=signer,
        nonce=tx.envelope.nonce,
    )
    try:
        handler.apply(tx, ctx)
    except InvalidTransaction as e:
        state.rollback_tx()
        return TxResult(tx_id, e.code, e.message[:MAX_LOG_CHARS], e.audit)
    state.commit_tx()
    return TxResult(tx_id, Code.OK, "", tuple(ctx.events))


class StateStore(StateReader, Protocol):
    """Committed state plus the nodes of its sparse Merkle tree."""

    def state_node(self, node_hash: bytes) -> bytes | None:
        """The encoding of a Merkle tree node by its hash, to build proofs; None if unknown."""
        ...


def seal_block(
    block: Block,
    results: tuple[TxResult, ...],
    writes: dict[str, bytes | None],
    nodes: NodeGet,
    prev_state_root: bytes,
) -> BlockResult:
    """Fold a block's writes into the state tree and compute its app hash."""
    tree = SparseMerkleTree(nodes)
    state_root = tree.update(prev_state_root, writes)
    root = results_root(results)
    app_hash = compute_app_hash(block.height, state_root, root)
    return BlockResult(block, results, writes, state_root, root, app_hash, tree.created)


def apply_block(
    base: StateStore,
    block: Block,
    registry: Registry,
    prev_state_root: bytes,
    verified: Mapping[bytes, SignedTx] = EMPTY_VERIFIED,
) -> BlockResult:
    """Execute every tx of `block` in order over committed state `base`.

    `verified` maps ids of txs this node already decoded and whose signature
    it checked (in CheckTx) to the decoded tx: a pure memo, since the id is
    the hash of the exact signed bytes.
    """
    state = StateView(base)
    params = read_params(base)
    results = tuple(
        process_transaction(state, raw, block, registry, params, verified) for raw in block.txs
    )
    return seal_block(block, results, dict(state.writes), base.state_node, prev_state_root)


def init_chain(genesis: Genesis, registry: Registry) -> BlockResult:
    """The height-0 state: params, genesis record, founding identities."""
    state = StateView(EmptyState())
    state.set(PARAMS_KEY, encoding.encode(genesis.params.to_dict()))
    state.set(GENESIS_KEY, encoding.encode({"chain_id": genesis.chain_id, "hash": genesis.hash}))
    registry.init_genesis(state, genesis)
    state.commit_tx()
    block = Block(genesis.chain_id, 0, genesis.genesis_time_ms, ())
    return seal_block(block, (), dict(state.writes), lambda _: None, EMPTY_ROOT)
