"""The ABCI++ server CometBFT v0.38 talks to over a socket.

CometBFT opens four connections (consensus, mempool, info, snapshot). Each is
served by its own thread, requests strictly in order; replies are buffered and
flushed when CometBFT sends Flush.
A bad request gets an `exception` response and the connection carries on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from tendermint.abci import types_pb2 as abci
from tendermint.crypto import keys_pb2
from tendermint.crypto import proof_pb2 as merkle_pb2

from medchain import __version__
from medchain.consensus.abci.pending import PendingTxs
from medchain.consensus.abci.wire import FramingError, frame, read_message
from medchain.consensus.application import Application
from medchain.consensus.check_state import CheckState
from medchain.consensus.snapshots import (
    DEFAULT_MAX_RESTORE_BYTES,
    BadSnapshot,
    ChunkOutcome,
    Restore,
    SnapshotInfo,
    SnapshotStore,
)
from medchain.contracts.identity.model import VALIDATOR_EVENT
from medchain.core import proofs
from medchain.core.block import Block, BlockResult, TxResult
from medchain.core.genesis import GenesisError, parse_genesis
from medchain.core.tx import SignedTx, check_stateless, tx_id_of
from medchain.exceptions import Code, InternalError, InvalidTransaction

log = logging.getLogger("medchain.abci")

VERIFIED_CACHE = 200_000
APP_VERSION = 1
# Fault injection for tests only: a real node cannot be made to compute a wrong
# state on demand. "wrong-app-hash@H" flips the app hash from height H on.
FAULT_ENV = "MEDCHAIN_FAULT_INJECT"


class VerifiedCache(Mapping[bytes, SignedTx]):
    """Txs this node decoded and signature-checked, by id (bounded, thread-safe)."""

    def __init__(self, size: int = VERIFIED_CACHE) -> None:
        self._txs: OrderedDict[bytes, SignedTx] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def add(self, tx: SignedTx) -> None:
        """Keep a tx CheckTx verified, so FinalizeBlock and rechecks skip its signature;
        the oldest go first past the bound."""
        with self._lock:
            self._txs[tx.tx_id] = tx
            while len(self._txs) > self._size:
                self._txs.popitem(last=False)

    def __getitem__(self, tx_id: bytes) -> SignedTx:
        return self._txs[tx_id]

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(self._txs))

    def __len__(self) -> int:
        return len(self._txs)


def _ms(ts: Any) -> int:
    return int(ts.seconds) * 1000 + int(ts.nanos) // 1_000_000


def _exec_result(r: TxResult) -> abci.ExecTxResult:
    return abci.ExecTxResult(
        code=int(r.code),
        log=r.log,
        codespace="medchain" if r.code else "",
        events=[
            abci.Event(
                type=e.type,
                attributes=[
                    abci.EventAttribute(key=k, value=v, index=True) for k, v in e.attributes
                ],
            )
            for e in r.events
        ],
    )


def _validator_updates(results: tuple[TxResult, ...]) -> list[abci.ValidatorUpdate]:
    """Validator changes made by this block's committed identity txs (last one wins)."""
    power: dict[str, int] = {}
    for r in results:
        for e in r.events:
            if r.code == Code.OK and e.type == VALIDATOR_EVENT:
                attrs = dict(e.attributes)
                power[attrs["pub_key"]] = int(attrs["power"])
    return [
        abci.ValidatorUpdate(pub_key=keys_pb2.PublicKey(ed25519=bytes.fromhex(k)), power=p)
        for k, p in sorted(power.items())
    ]


class AbciApplication:
    """Translates ABCI requests into Application calls."""

    def __init__(
        self,
        app: Application,
        snapshots: SnapshotStore | None = None,
        state_sync_max_bytes: int = DEFAULT_MAX_RESTORE_BYTES,
    ) -> None:
        self.app = app
        # The memory a restore may take (a larger snapshot is refused, see snapshots.py).
        self.state_sync_max_bytes = state_sync_max_bytes
        # Snapshots written every `snapshots.interval` heights and offered to joining
        # nodes (state sync); None: none made or offered, but this node can still join
        # a network by state sync.
        self.snapshots = snapshots
        self._restore: Restore | None = None
        self._resumed = False  # the offered snapshot is already restored here
        self.check_state = CheckState(app)
        self.verified = VerifiedCache()
        self.mempool = PendingTxs()
        # Called after every Commit (the gateway's waits for commit wake on it).
        self.commit_listeners: list[Callable[[], None]] = []
        # Told of each block after Commit (metrics count from it); must not raise.
        self.block_listeners: list[Callable[[BlockResult], None]] = []
        # ABCI requests answered, by type (read by the node's metrics).
        self.requests: Counter[str] = Counter()
        self._requests_lock = threading.Lock()
        self._pending: BlockResult | None = None
        fault = os.environ.get(FAULT_ENV, "")
        self._wrong_hash_from = (
            int(fault.split("@")[1]) if fault.startswith("wrong-app-hash@") else None
        )

    # -- info connection ----------------------------------------------------

    def info(self, req: abci.RequestInfo) -> abci.ResponseInfo:
        """Info: the last committed height and app hash, so CometBFT replays only the
        blocks this app has not committed."""
        info = self.app.info()
        height = max(info.height, 0)
        return abci.ResponseInfo(
            data="medchain",
            version=__version__,
            app_version=APP_VERSION,
            last_block_height=height,
            last_block_app_hash=info.app_hash if height else b"",
        )

    def query(self, req: abci.RequestQuery) -> abci.ResponseQuery:
        """`/state` (data: a state key): its committed value; with `prove`, a
        medchain-proof/v1 document (value or absence) in proof_ops, checkable offline with
        `medchain verify` against the app hash in the next signed header."""
        db = self.app.db
        if req.path != "/state":
            return abci.ResponseQuery(code=int(Code.NOT_FOUND), log=f"unknown path {req.path!r}")
        key = req.data.decode(errors="replace")
        with db.snapshot():
            value, height = db.get(key), db.height
            proof = None
            if req.prove:
                roots = db.roots(height)
                if roots is not None:
                    doc = proofs.state_proof(self.app.chain_id, roots, db.state_node, key, value)
                    op = merkle_pb2.ProofOp(
                        type=proofs.FORMAT, key=req.data, data=json.dumps(doc).encode()
                    )
                    proof = merkle_pb2.ProofOps(ops=[op])
        if value is None:
            return abci.ResponseQuery(
                code=int(Code.NOT_FOUND),
                key=req.data,
                height=height,
                log=f"no state at {key!r}",
                proof_ops=proof,
            )
        return abci.ResponseQuery(code=0, key=req.data, value=value, height=height, proof_ops=proof)

    # -- mempool connection -------------------------------------------------

    def check_tx(self, req: abci.RequestCheckTx) -> abci.ResponseCheckTx:
        """CheckTx: admit a tx to CometBFT's mempool or refuse it with its code (cheap
        checks only; a tx this node already decoded and verified, in an earlier CheckTx
        or in a proposal, is not decoded or verified again)."""
        recheck = req.type == abci.RECHECK
        tid = tx_id_of(req.tx)
        try:
            tx = self._verified_tx(req.tx, tid)
            self.check_state.admit(tx)
        except InvalidTransaction as e:
            if recheck:
                self.mempool.dropped(tid)
            return abci.ResponseCheckTx(code=int(e.code), log=e.message, codespace="medchain")
        self.mempool.admitted(tx.tx_id)
        return abci.ResponseCheckTx(code=0, gas_wanted=1)

    def _verified_tx(self, raw: bytes, tid: bytes) -> SignedTx:
        """The decoded, signature-checked tx for `raw`: from the cache when this node
        has verified the same bytes before (the id is SM3 of the bytes, the chain id
        and signature were checked then), otherwise checked now and cached."""
        cached = self.verified.get(tid)
        if cached is not None and len(raw) <= self.app.params.max_tx_bytes:
            return cached
        return self._check_stateless(raw, self.check_state.screen)

    def _check_stateless(
        self, raw: bytes, screen: Callable[[SignedTx], None] | None = None
    ) -> SignedTx:
        tx = check_stateless(
            raw, chain_id=self.app.chain_id, max_bytes=self.app.params.max_tx_bytes, screen=screen
        )
        self.verified.add(tx)
        return tx

    # -- consensus connection -----------------------------------------------

    def init_chain(self, req: abci.RequestInitChain) -> abci.ResponseInitChain:
        """InitChain: load the MedChain genesis from app_state, refusing to start if
        its chain id or validators differ from CometBFT's."""
        try:
            genesis = parse_genesis(json.loads(req.app_state_bytes or b"null"))
        except (GenesisError, json.JSONDecodeError) as e:
            raise InternalError(
                f"app_state in CometBFT genesis is not a MedChain genesis: {e}"
            ) from e
        if genesis.chain_id != req.chain_id:
            raise InternalError(
                f"chain id mismatch: CometBFT {req.chain_id!r}, MedChain {genesis.chain_id!r}"
            )
        wanted = sorted((v["pub_key"], v["power"]) for v in genesis.validators)
        given = sorted((v.pub_key.ed25519.hex(), v.power) for v in req.validators)
        if wanted != given:
            raise InternalError("CometBFT's genesis validators differ from app_state.validators")
        app_hash = self.app.init_chain(genesis)
        self.check_state.reset()
        return abci.ResponseInitChain(app_hash=app_hash)

    def _valid_for_block(self, raw: bytes) -> bool:
        tid = tx_id_of(raw)
        if tid in self.verified:
            return len(raw) <= self.app.params.max_tx_bytes
        try:
            self._check_stateless(raw)
        except InvalidTransaction:
            return False
        return True

    def prepare_proposal(self, req: abci.RequestPrepareProposal) -> abci.ResponsePrepareProposal:
        """Keep, in mempool order, the txs that decode and verify and fit the block."""
        params = self.app.params
        budget = min(req.max_tx_bytes, params.max_block_bytes)
        txs: list[bytes] = []
        size = 0
        for raw in req.txs:
            if len(txs) >= params.max_block_txs or size + len(raw) > budget:
                break
            if self._valid_for_block(raw):
                txs.append(raw)
                size += len(raw)
        return abci.ResponsePrepareProposal(txs=txs)

    def process_proposal(self, req: abci.RequestProcessProposal) -> abci.ResponseProcessProposal:
        """Reject a proposal with a tx an honest proposer would have dropped."""
        params = self.app.params
        ok = (
            len(req.txs) <= params.max_block_txs
            and sum(len(t) for t in req.txs) <= params.max_block_bytes
            and all(self._valid_for_block(raw) for raw in req.txs)
        )
        status = abci.ResponseProcessProposal.ACCEPT if ok else abci.ResponseProcessProposal.REJECT
        if not ok:
            log.warning("rejecting proposal at height %d", req.height)
        return abci.ResponseProcessProposal(status=status)

    def finalize_block(self, req: abci.RequestFinalizeBlock) -> abci.ResponseFinalizeBlock:
        """FinalizeBlock: apply the decided block and answer tx results, app hash and
        validator changes; nothing is stored until Commit."""
        db = self.app.db
        block = Block(
            chain_id=self.app.chain_id,
            height=req.height,
            time_ms=_ms(req.time),
            txs=tuple(req.txs),
            prev_hash=db.last_block_hash,
            proposer=req.proposer_address.hex(),
        )
        result = self.app.finalize_block(block, self.verified)
        if self._wrong_hash_from is not None and req.height >= self._wrong_hash_from:
            log.warning("FAULT INJECTION: reporting a wrong app hash at height %d", req.height)
            result = replace(result, app_hash=bytes([result.app_hash[0] ^ 1]) + result.app_hash[1:])
        self._pending = result
        return abci.ResponseFinalizeBlock(
            tx_results=[_exec_result(r) for r in result.tx_results],
            app_hash=result.app_hash,
            validator_updates=_validator_updates(result.tx_results),
        )

    def commit(self, req: abci.RequestCommit) -> abci.ResponseCommit:
        """Commit: store the block FinalizeBlock applied, in one DB transaction."""
        if self._pending is None:
            raise InternalError("Commit without FinalizeBlock")
        committed = self._pending
        self.app.commit(committed)
        self.mempool.committed(r.tx_id for r in committed.tx_results)
        self._pending = None
        for observer in self.block_listeners:
            observer(committed)
        self.check_state.reset()
        for listener in self.commit_listeners:
            listener()
        if self.snapshots is not None:
            self.snapshots.after_commit(self.app.db)
        return abci.ResponseCommit(retain_height=0)

    # -- snapshot connection (state sync, see consensus/snapshots.py) --------

    def list_snapshots(self, req: abci.RequestListSnapshots) -> abci.ResponseListSnapshots:
        """The snapshots this node keeps, newest first (none when it makes none)."""
        if self.snapshots is None:
            return abci.ResponseListSnapshots()
        return abci.ResponseListSnapshots(
            snapshots=[
                abci.Snapshot(
                    height=s.height,
                    format=s.format,
                    chunks=s.chunks,
                    hash=s.hash,
                    metadata=s.metadata,
                )
                for s in self.snapshots.list()
            ]
        )

    def offer_snapshot(self, req: abci.RequestOfferSnapshot) -> abci.ResponseOfferSnapshot:
        """Take a snapshot to restore if it is format 1 and its metadata names the app
        hash CometBFT's light client verified for its height (req.app_hash)."""
        result = abci.ResponseOfferSnapshot
        self._restore, self._resumed = None, False
        db = self.app.db
        if db.height >= 0:
            if db.snapshot_base == db.height == req.snapshot.height and db.app_hash == req.app_hash:
                # Restored, then stopped before CometBFT recorded it: nothing to write.
                log.info("state sync: height %d is already restored here", db.height)
                self._resumed = True
                return result(result=result.ACCEPT)
            if db.snapshot_base != db.height:
                log.error("state sync offered, but this node already holds height %d", db.height)
                return result(result=result.ABORT)
            # Restored at another height, then stopped before CometBFT recorded it
            # (CometBFT offers snapshots only to a node it holds no state for): the
            # offered one replaces it once verified, in the transaction that writes it.
            log.info(
                "state sync: height %d was restored here but not recorded by CometBFT; "
                "the snapshot at height %d will replace it",
                db.height,
                req.snapshot.height,
            )
        offered = SnapshotInfo(
            req.snapshot.height,
            req.snapshot.format,
            req.snapshot.chunks,
            req.snapshot.hash,
            req.snapshot.metadata,
        )
        try:
            self._restore = Restore(self.app.db, offered, req.app_hash, self.state_sync_max_bytes)
        except BadSnapshot as e:
            log.warning("state sync: snapshot at height %d refused: %s", offered.height, e)
            known = offered.format == 1
            return result(result=result.REJECT if known else result.REJECT_FORMAT)
        log.info(
            "state sync: restoring the snapshot at height %d (%d chunks)",
            offered.height,
            offered.chunks,
        )
        return result(result=result.ACCEPT)

    def load_snapshot_chunk(
        self, req: abci.RequestLoadSnapshotChunk
    ) -> abci.ResponseLoadSnapshotChunk:
        """One chunk of a snapshot this node keeps (empty if it has been pruned)."""
        if self.snapshots is None:
            return abci.ResponseLoadSnapshotChunk()
        return abci.ResponseLoadSnapshotChunk(
            chunk=self.snapshots.chunk(req.height, req.format, req.chunk)
        )

    def apply_snapshot_chunk(
        self, req: abci.RequestApplySnapshotChunk
    ) -> abci.ResponseApplySnapshotChunk:
        """Check a chunk against the metadata's hash (a bad one is fetched again from
        another peer, its sender rejected); after the last, write the state only if it
        hashes to the verified app hash, then Info reports that height."""
        result = abci.ResponseApplySnapshotChunk
        if self._resumed:
            return result(result=result.ACCEPT)
        if self._restore is None:
            log.warning("state sync: chunk %d with no snapshot accepted", req.index)
            return result(result=result.ABORT)
        outcome = self._restore.apply(req.index, req.chunk, req.sender)
        if outcome is ChunkOutcome.RETRY:
            return result(
                result=result.RETRY,
                refetch_chunks=[req.index],
                reject_senders=[req.sender] if req.sender else [],
            )
        if outcome is ChunkOutcome.REFETCH:  # out of order: its sender is not at fault
            return result(result=result.RETRY, refetch_chunks=[req.index])
        if outcome is ChunkOutcome.REJECT_SNAPSHOT:
            self._restore = None
            return result(result=result.REJECT_SNAPSHOT)
        if outcome is ChunkOutcome.REJECT_SENDERS:
            senders, self._restore = self._restore.senders, None
            return result(result=result.REJECT_SNAPSHOT, reject_senders=senders)
        if outcome is ChunkOutcome.ABORT:
            return result(result=result.ABORT)
        if self._restore.restored is not None:
            self._restore = None
            self.app.restored()
            self.check_state.reset()
            for listener in self.commit_listeners:
                listener()
        return result(result=result.ACCEPT)

    def extend_vote(self, req: abci.RequestExtendVote) -> abci.ResponseExtendVote:
        """Vote extensions are not used: an empty one."""
        return abci.ResponseExtendVote()

    def verify_vote_extension(self, req: Any) -> abci.ResponseVerifyVoteExtension:
        """Vote extensions are not used: accept the empty ones."""
        return abci.ResponseVerifyVoteExtension(status=abci.ResponseVerifyVoteExtension.ACCEPT)

    # -- dispatch -----------------------------------------------------------

    def handle(self, req: abci.Request) -> abci.Response:
        """Answer one request; the Response field name equals the Request's."""
        kind = req.WhichOneof("value")
        with self._requests_lock:  # connections answer on threads of their own
            self.requests[str(kind)] += 1
        if kind == "echo":
            return abci.Response(echo=abci.ResponseEcho(message=req.echo.message))
        if kind == "flush":
            return abci.Response(flush=abci.ResponseFlush())
        handler: Callable[[Any], Any] | None = getattr(self, str(kind), None)
        if kind is None or handler is None:
            return abci.Response(exception=abci.ResponseException(error=f"unsupported {kind}"))
        return abci.Response(**{str(kind): handler(getattr(req, str(kind)))})


class AbciServer:
    """Listens on tcp://host:port or unix://path and serves AbciApplication.

    One thread per connection on a buffered socket: requests are answered in
    order and replies are flushed when CometBFT sends Flush. Connections run
    in parallel (SM2 and SQLite release the GIL), so a long FinalizeBlock does
    not stall CheckTx.
    """

    def __init__(self, app: AbciApplication, address: str) -> None:
        self.app = app
        self.address = address
        self._sock: socket.socket | None = None

    def bind(self) -> str:
        """Open the listening socket; returns the address actually bound."""
        if self.address.startswith("unix://"):
            path = self.address.removeprefix("unix://")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            bound = self.address
        else:
            host, port = self.address.removeprefix("tcp://").rsplit(":", 1)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, int(port)))
            bound = f"tcp://{host}:{sock.getsockname()[1]}"
        sock.listen(8)
        self._sock = sock
        log.info("ABCI server listening on %s", bound)
        return bound

    def serve_forever(self) -> None:
        """Accept CometBFT's connections until the process ends."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        while True:
            conn, _ = self._sock.accept()
            threading.Thread(
                target=self._serve, args=(conn,), daemon=True, name="abci-conn"
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        if conn.family == socket.AF_INET:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = conn.makefile("rb", buffering=1 << 16)
        writer = conn.makefile("wb", buffering=1 << 16)
        try:
            while True:
                try:
                    data = read_message(reader)
                except (FramingError, OSError) as e:
                    log.warning("closing ABCI connection: %s", e)
                    return
                if data is None:
                    return
                resp, flush = self._answer(data)
                writer.write(frame(resp.SerializeToString()))
                if flush:
                    writer.flush()
        except OSError as e:
            log.warning("ABCI connection lost: %s", e)
        finally:
            conn.close()

    def _answer(self, data: bytes) -> tuple[abci.Response, bool]:
        req = abci.Request()
        try:
            req.ParseFromString(data)
            return self.app.handle(req), req.WhichOneof("value") == "flush"
        except InternalError as e:
            log.critical("node fault, stopping rather than diverging: %s", e)
            logging.shutdown()
            os._exit(3)
        except Exception as e:  # a malformed request must not kill the server
            log.error("bad ABCI request: %s", e)
            return abci.Response(exception=abci.ResponseException(error=str(e))), True
