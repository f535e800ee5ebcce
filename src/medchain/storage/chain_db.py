"""SQLite chain database: state, blocks, tx index, audit index, in one file.

One SQLite transaction per block holds its writes, its block record, its tx
results, its audit rows and the new height and app hash, with
synchronous=FULL, so after a crash (even kill -9 or power loss) the node finds
exactly the last committed block and nothing half-written.

The audit index is derived from committed tx results: every event with an
`actor` attribute (records, consent, exchange; refusals included) becomes one
row, indexed by patient, actor and record. It is not part of the app hash:
replaying the blocks rebuilds it exactly.

Projections (storage/projection.py) are read tables derived from state the
same way: each block's writes under a projection's prefix are applied in the
block's transaction, and `add_projection` rebuilds one from a state scan when
its stored version or height says it may be out of step.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medchain import encoding
from medchain.core.block import Block, BlockResult, TxResult, results_to_cbor
from medchain.exceptions import InternalError
from medchain.sqlite_schema import SchemaMigrationFailed, migrate
from medchain.storage.projection import Projection

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    header BLOB NOT NULL,
    txs BLOB NOT NULL,
    results BLOB NOT NULL,
    app_hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS txs (
    tx_id BLOB PRIMARY KEY,
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    code INTEGER NOT NULL,
    result BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state_nodes (hash BLOB PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS roots (
    height INTEGER PRIMARY KEY,
    state_root BLOB NOT NULL,
    results_root BLOB NOT NULL,
    app_hash BLOB NOT NULL,
    time_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    height INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    tx_id BLOB NOT NULL,
    code INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    patient TEXT,
    record_id TEXT,
    attributes BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_patient ON audit (patient, seq) WHERE patient IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_by_actor ON audit (actor, seq);
CREATE INDEX IF NOT EXISTS audit_by_record ON audit (record_id, seq) WHERE record_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (time_ms, seq);
"""
# Schema versions (PRAGMA user_version, medchain/sqlite_schema.py): migration i takes a
# file from version i to i + 1. 1: the schema above (a file from before versions gains
# what it lacks, e.g. audit_by_time). A change to SCHEMA needs a new migration; none may
# touch state, state_nodes, roots or meta's height/app_hash: the app hash never moves.
MIGRATIONS = (SCHEMA,)
WAL_LIMIT_BYTES = 64 * 2**20
NODE_CACHE = 200_000
WRITER_CACHE_KIB = 64 * 1024
AUDIT_COLUMNS = "seq, height, time_ms, tx_id, code, kind, actor, patient, record_id, attributes"
SCAN_BATCH = 10_000  # state rows read at a time while rebuilding a projection
log = logging.getLogger("medchain.storage")


def _refuse_before_app_hash_v2(conn: sqlite3.Connection, path: Path) -> None:
    """A file with blocks but no `roots` table was written before app hash v2 (f6853d2):
    its stored app hashes are of another formula, so no migration can carry it forward."""
    tables = {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_schema")}
    if "blocks" in tables and "roots" not in tables:
        raise SchemaMigrationFailed(
            f"{path} was written before app hash v2 and cannot be migrated: make a new "
            "node and replay the chain's blocks into it (or restore a newer backup)"
        )


def _projection_meta(name: str) -> str:
    """The meta row holding [version, height] a projection is current at."""
    return f"projection/{name}"


def _audit_row(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "seq": row[0],
        "height": row[1],
        "time_ms": row[2],
        "tx_id": bytes(row[3]),
        "code": row[4],
        "kind": row[5],
        "actor": row[6],
        "patient": row[7],
        "record_id": row[8],
        "attributes": encoding.decode(bytes(row[9])),
    }


def audit_rows(result: BlockResult) -> list[tuple[Any, ...]]:
    """The audit index rows of one block: each event naming an actor."""
    block = result.block
    rows = []
    for r in result.tx_results:
        for e in r.events:
            attrs = dict(e.attributes)
            if "actor" not in attrs:
                continue
            rows.append(
                (
                    block.height,
                    block.time_ms,
                    r.tx_id,
                    int(r.code),
                    e.type,
                    attrs["actor"],
                    attrs.get("patient"),
                    attrs.get("record_id"),
                    encoding.encode(attrs),
                )
            )
    return rows


class ChainDB:
    """The node's durable store. Writes come only from `commit_block`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._write = self._connect()
        # Each block inserts ~12 state tree nodes per tx at random places of the node
        # table: with SQLite's default 2 MiB cache the writer re-reads those pages from
        # the OS every block. Readers keep the default (one per gateway thread).
        self._write.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        _refuse_before_app_hash_v2(self._write, path)
        migrate(self._write, path, MIGRATIONS)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._nodes: dict[bytes, bytes] = {}
        self._projections: dict[str, Projection] = {}

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")  # shrink after big blocks
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads on this thread inside the block see one committed height (a read
        transaction in WAL mode), e.g. a value and the root that proves it."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    # -- StateReader ---------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The committed value at `key`, or None."""
        row = self._reader().execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def scan(self, prefix: str, limit: int) -> Iterator[tuple[str, bytes]]:
        """Committed keys under `prefix` with their values, in key order, at most `limit`."""
        upper = prefix + "\U0010ffff"
        rows = (
            self._reader()
            .execute(
                "SELECT key, value FROM state WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
                (prefix, upper, limit),
            )
            .fetchall()
        )
        for k, v in rows:
            yield k, bytes(v)

    # -- meta ----------------------------------------------------------------

    def _meta(self, name: str) -> bytes | None:
        row = self._reader().execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    @property
    def height(self) -> int:
        """Last committed height; -1 before genesis."""
        raw = self._meta("height")
        return -1 if raw is None else int(encoding.decode(raw))

    @property
    def app_hash(self) -> bytes:
        """The app hash of the last committed block (empty before the first)."""
        return self._meta("app_hash") or b""

    @property
    def state_root(self) -> bytes:
        """Root of the state's sparse Merkle tree at the last committed height."""
        return self._meta("state_root") or bytes(32)

    def state_node(self, node_hash: bytes) -> bytes | None:
        """A state tree node by hash (nodes never change, so they are cached)."""
        body = self._nodes.get(node_hash)
        if body is None:
            row = (
                self._reader()
                .execute("SELECT body FROM state_nodes WHERE hash = ?", (node_hash,))
                .fetchone()
            )
            if row is None:
                return None
            body = bytes(row[0])
            if len(self._nodes) >= NODE_CACHE:
                self._nodes.clear()
            self._nodes[node_hash] = body
        return body

    def roots(self, height: int) -> dict[str, Any] | None:
        """What the app hash at `height` commits to: state root, results root, time."""
        row = (
            self._reader()
            .execute(
                "SELECT state_root, results_root, app_hash, time_ms FROM roots WHERE height = ?",
                (height,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return {
            "height": height,
            "state_root": bytes(row[0]),
            "results_root": bytes(row[1]),
            "app_hash": bytes(row[2]),
            "time_ms": int(row[3]),
        }

    def block_results(self, height: int) -> list[TxResult]:
        """Every tx result of a committed height, in block order."""
        rows = (
            self._reader()
            .execute("SELECT result FROM txs WHERE height = ? ORDER BY idx", (height,))
            .fetchall()
        )
        return [TxResult.from_dict(encoding.decode(bytes(r[0]))) for r in rows]

    @property
    def last_block_hash(self) -> bytes:
        """The hash of the last committed block; zeros before the first, as the first
        block's prev_hash."""
        return self._meta("block_hash") or bytes(32)

    @property
    def chain_id(self) -> str | None:
        """The chain id this DB was made for, or None for a new DB."""
        raw = self._meta("chain_id")
        return None if raw is None else raw.decode()

    # -- projections ----------------------------------------------------------

    def add_projection(self, projection: Projection) -> None:
        """Keep `projection` from now on, rebuilding it first unless its meta row says
        it is current: same version, and kept up to the last committed height (a
        database written without it, or by an older version, is rebuilt from a scan
        of state under its prefix, in one transaction). Adding one twice is a no-op."""
        with self._lock:
            if projection.name in self._projections:
                return
            raw = self._meta(_projection_meta(projection.name))
            stored = None if raw is None else encoding.decode(raw)
            if stored != [projection.version, self.height]:
                self._rebuild(projection, stored)
            else:
                for statement in projection.schema:  # IF NOT EXISTS: a no-op when current
                    self._write.execute(statement)
            self._projections[projection.name] = projection

    def _rebuild(self, projection: Projection, stored: Any) -> None:
        """Drop and refill the projection's tables from state, in one transaction, and
        mark it current at the committed height (the caller holds the write lock)."""
        c, height, keys = self._write, self.height, 0
        try:
            c.execute("BEGIN IMMEDIATE")
            for table in projection.tables:
                c.execute(f'DROP TABLE IF EXISTS "{table}"')
            for statement in projection.schema:
                c.execute(statement)
            rows = c.execute(
                "SELECT key, value FROM state WHERE key >= ? AND key < ? ORDER BY key",
                (projection.prefix, projection.prefix + "\U0010ffff"),
            )
            while batch := rows.fetchmany(SCAN_BATCH):
                for key, value in batch:
                    projection.apply(c, key, bytes(value))
                keys += len(batch)
            c.execute(
                "INSERT INTO meta VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (_projection_meta(projection.name), encoding.encode([projection.version, height])),
            )
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        if stored is not None or keys:
            log.info(
                "projection %s v%d rebuilt from %d state keys at height %d (was %s)",
                projection.name,
                projection.version,
                keys,
                height,
                "absent" if stored is None else f"v{stored[0]} at height {stored[1]}",
            )

    def has_projection(self, name: str) -> bool:
        """Whether this database keeps the projection `name` (its tables are readable)."""
        return name in self._projections

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query over a projection's tables, on this thread's
        reader (inside `snapshot()`, at that snapshot's height)."""
        return self._reader().execute(sql, parameters).fetchall()

    def _apply_projections(self, result: BlockResult) -> list[tuple[str, bytes]]:
        """Apply a block's writes to every projection (inside the block's transaction);
        the meta rows saying each is now current at this height."""
        c = self._write
        for projection in self._projections.values():
            prefix = projection.prefix
            for key, value in result.writes.items():
                if key.startswith(prefix):
                    projection.apply(c, key, value)
        return [
            (_projection_meta(name), encoding.encode([projection.version, result.block.height]))
            for name, projection in self._projections.items()
        ]

    # -- the one write path --------------------------------------------------

    def commit_block(self, result: BlockResult, store_block: bool = True) -> None:
        """Persist a block's writes, record and results atomically (fsync)."""
        block = result.block
        with self._lock:
            if block.height != self.height + 1:
                raise InternalError(
                    f"commit of height {block.height} after {self.height}: store out of order"
                )
            c = self._write
            try:
                c.execute("BEGIN IMMEDIATE")
                deletes = [(k,) for k, v in result.writes.items() if v is None]
                upserts = [(k, v) for k, v in result.writes.items() if v is not None]
                if deletes:
                    c.executemany("DELETE FROM state WHERE key = ?", deletes)
                if upserts:
                    c.executemany(
                        "INSERT INTO state (key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        upserts,
                    )
                if store_block:
                    c.execute(
                        "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            block.height,
                            block.hash,
                            encoding.encode(block.header()),
                            encoding.encode(list(block.txs)),
                            results_to_cbor(result.tx_results),
                            result.app_hash,
                        ),
                    )
                c.executemany(
                    "INSERT OR IGNORE INTO txs VALUES (?, ?, ?, ?, ?)",
                    [
                        (r.tx_id, block.height, i, int(r.code), encoding.encode(r.to_dict()))
                        for i, r in enumerate(result.tx_results)
                    ],
                )
                c.executemany(
                    "INSERT OR IGNORE INTO state_nodes VALUES (?, ?)",
                    list(result.state_nodes.items()),
                )
                c.execute(
                    "INSERT INTO roots VALUES (?, ?, ?, ?, ?)",
                    (
                        block.height,
                        result.state_root,
                        result.results_root,
                        result.app_hash,
                        block.time_ms,
                    ),
                )
                c.executemany(
                    "INSERT INTO audit (height, time_ms, tx_id, code, kind, actor, patient, "
                    "record_id, attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    audit_rows(result),
                )
                projected = self._apply_projections(result)
                meta = {
                    "height": encoding.encode(block.height),
                    "app_hash": result.app_hash,
                    "state_root": result.state_root,
                    "block_hash": block.hash,
                    "chain_id": block.chain_id.encode(),
                    "block_time_ms": encoding.encode(block.time_ms),
                }
                c.executemany(
                    "INSERT INTO meta VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    list(meta.items()) + projected,
                )
                c.execute("COMMIT")
                if len(self._nodes) + len(result.state_nodes) > NODE_CACHE:
                    self._nodes.clear()
                self._nodes.update(result.state_nodes)  # the next block walks these paths
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise

    # -- state sync: export and import of committed state ---------------------

    def open_export(self) -> StateExport:
        """A read view pinned at the height committed right now (its own connection
        and read transaction), for writing a snapshot on another thread while blocks
        go on committing; close it when done."""
        return StateExport(self._connect())

    @property
    def snapshot_base(self) -> int | None:
        """The height this node's state was restored at from a snapshot (it holds no
        blocks, tx results or audit rows up to it), or None for a node with the
        whole history."""
        raw = self._meta("snapshot_base")
        return None if raw is None else int(encoding.decode(raw))

    def restore_state(
        self,
        items: Sequence[tuple[str, bytes]],
        nodes: dict[bytes, bytes],
        roots: dict[str, Any],
        block_hash: bytes,
        chain_id: str,
    ) -> None:
        """Write a verified snapshot into this empty database in one transaction:
        the state, its tree nodes, the roots of its height and the meta a node needs
        to go on from there (height, app hash, last block hash and time). The caller
        has checked the app hash. A database holding only an earlier restore (no block
        after it: CometBFT never recorded it) is replaced in the same transaction; one
        that holds blocks is refused. Projections are added again after (rebuilt)."""
        height = int(roots["height"])
        with self._lock:
            replacing = self.height >= 0 and self.snapshot_base == self.height
            if self.height >= 0 and not replacing:
                raise InternalError(
                    f"restore of a snapshot at height {height} into a database already at "
                    f"height {self.height}: state sync needs an empty database"
                )
            c = self._write
            try:
                c.execute("BEGIN IMMEDIATE")
                if replacing:
                    for table in (
                        "state",
                        "state_nodes",
                        "roots",
                        "meta",
                        "blocks",
                        "txs",
                        "audit",
                    ):
                        c.execute(f"DELETE FROM {table}")
                c.executemany("INSERT INTO state (key, value) VALUES (?, ?)", items)
                c.executemany("INSERT OR IGNORE INTO state_nodes VALUES (?, ?)", nodes.items())
                c.execute(
                    "INSERT INTO roots VALUES (?, ?, ?, ?, ?)",
                    (
                        height,
                        roots["state_root"],
                        roots["results_root"],
                        roots["app_hash"],
                        int(roots["time_ms"]),
                    ),
                )
                meta = {
                    "height": encoding.encode(height),
                    "app_hash": roots["app_hash"],
                    "state_root": roots["state_root"],
                    "block_hash": block_hash,
                    "chain_id": chain_id.encode(),
                    "block_time_ms": encoding.encode(int(roots["time_ms"])),
                    "snapshot_base": encoding.encode(height),
                }
                c.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
            self._nodes.clear()
            self._projections.clear()

    # -- reads for the API ---------------------------------------------------

    def block(self, height: int) -> dict[str, Any] | None:
        """A stored block with its results, decoded."""
        row = (
            self._reader()
            .execute(
                "SELECT hash, header, txs, results, app_hash FROM blocks WHERE height = ?",
                (height,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return {
            "hash": bytes(row[0]),
            "header": encoding.decode(bytes(row[1])),
            "txs": encoding.decode(bytes(row[2])),
            "results": [TxResult.from_dict(r) for r in encoding.decode(bytes(row[3]))],
            "app_hash": bytes(row[4]),
        }

    def tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        """(height, index) of a committed tx."""
        row = (
            self._reader()
            .execute("SELECT height, idx FROM txs WHERE tx_id = ?", (tx_id,))
            .fetchone()
        )
        return None if row is None else (int(row[0]), int(row[1]))

    def tx_result(self, tx_id: bytes) -> tuple[int, int, TxResult] | None:
        """(height, index, result) of a committed tx."""
        row = (
            self._reader()
            .execute("SELECT height, idx, result FROM txs WHERE tx_id = ?", (tx_id,))
            .fetchone()
        )
        if row is None:
            return None
        return int(row[0]), int(row[1]), TxResult.from_dict(encoding.decode(bytes(row[2])))

    def audit(
        self,
        *,
        patient: str | None = None,
        actor: str | None = None,
        record_id: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Audit rows for one patient, actor or record (exactly one), oldest first,
        starting after sequence number `after` (for paging)."""
        given = [
            (c, v)
            for c, v in (("patient", patient), ("actor", actor), ("record_id", record_id))
            if v is not None
        ]
        if len(given) != 1:
            raise ValueError("give exactly one of patient, actor, record_id")
        column, value = given[0]
        rows = (
            self._reader()
            .execute(
                f"SELECT {AUDIT_COLUMNS} FROM audit WHERE {column} = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (value, after, limit),
            )
            .fetchall()
        )
        return [_audit_row(row) for row in rows]

    def audit_period(
        self, from_ms: int, to_ms: int, after: int = 0, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """Audit rows with block time in [from_ms, to_ms), in order, after seq `after`."""
        rows = (
            self._reader()
            .execute(
                f"SELECT {AUDIT_COLUMNS} FROM audit WHERE time_ms >= ? AND time_ms < ? "
                "AND seq > ? ORDER BY seq LIMIT ?",
                (from_ms, to_ms, after, limit),
            )
            .fetchall()
        )
        return [_audit_row(row) for row in rows]

    def block_time_ms(self) -> int:
        """The last block's time: the chain's clock for expiries (0 before the first)."""
        raw = self._meta("block_time_ms")
        return 0 if raw is None else int(encoding.decode(raw))

    def close(self) -> None:
        """Close the writer connection (on shutdown and in tests)."""
        self._write.close()


class StateExport:
    """Committed state at one height, read through its own connection inside one read
    transaction (WAL: later commits do not change what it sees)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        conn.execute("BEGIN")
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        self.height = -1 if "height" not in meta else int(encoding.decode(bytes(meta["height"])))
        self.block_hash = bytes(meta.get("block_hash") or bytes(32))
        self.chain_id = bytes(meta.get("chain_id") or b"").decode()
        row = conn.execute(
            "SELECT state_root, results_root, app_hash, time_ms FROM roots WHERE height = ?",
            (self.height,),
        ).fetchone()
        self.roots: dict[str, Any] | None = (
            None
            if row is None
            else {
                "height": self.height,
                "state_root": bytes(row[0]),
                "results_root": bytes(row[1]),
                "app_hash": bytes(row[2]),
                "time_ms": int(row[3]),
            }
        )

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Every state key with its value, in key order, read in batches."""
        rows = self._conn.execute("SELECT key, value FROM state ORDER BY key")
        while batch := rows.fetchmany(SCAN_BATCH):
            for key, value in batch:
                yield key, bytes(value)

    def close(self) -> None:
        """End the read transaction and close the connection."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("COMMIT")
        self._conn.close()


__all__ = ["Block", "ChainDB", "StateExport"]
