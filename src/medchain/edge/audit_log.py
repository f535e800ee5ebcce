"""The edge's own audit log: every refusal it answers, anchored on chain.

Most refusals at an edge never reach the chain: an unsigned or stale
request, a key nobody registered, a caller with no standing with the
patient, a replay, an oversized body. Putting each on chain would let any
stranger make the edge sign transactions at will. Instead each is appended
here (a local SQLite file, append-only), and the edge anchors the Merkle root
of every new run of entries with one `records.anchor_log` transaction per
interval. The chain then holds, for each run, (first_seq, last_seq, root);
runs follow on without gaps, so an edge cannot drop or rewrite an entry
afterwards without its anchored root no longer matching. A regulator (all
entries) or a patient (entries that name them) reads the log with proofs
and checks each entry against the root the chain holds.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medchain import encoding
from medchain.core.merkle import leaf_hash, merkle_path, merkle_root, root_from_path
from medchain.sqlite_schema import migrate, write_transaction

MAX_FIELD_CHARS = 300
MAX_RUN = 10_000  # entries per anchor transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq   INTEGER PRIMARY KEY,
    body  BLOB NOT NULL,
    leaf  BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS anchors (
    last_seq  INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    root      BLOB NOT NULL
);
"""
MIGRATIONS = (SCHEMA,)  # schema versions (medchain/sqlite_schema.py); 1: the schema above


@dataclass(frozen=True)
class Run:
    """Entries first_seq..last_seq and the Merkle root over their leaves."""

    first_seq: int
    last_seq: int
    root: bytes


def entry_leaf(entry: dict[str, Any]) -> bytes:
    """The leaf of one entry: SM3 over its canonical CBOR, domain-separated."""
    return leaf_hash(encoding.encode(entry))


def verify_entry(
    entry: dict[str, Any], seq: int, path: Sequence[tuple[bool, bytes]], run: Run
) -> bool:
    """Whether `entry` is entry `seq` of an anchored run with root `run.root`
    (the root to trust is the one the chain holds, not the edge's answer)."""
    if not run.first_seq <= seq <= run.last_seq:
        return False
    return root_from_path(entry_leaf(entry), path) == run.root


class EdgeAuditLog:
    """Append-only refusal log of one edge, next to its vault."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        migrate(self._db, path, MIGRATIONS)
        self._lock = threading.Lock()

    def append(self, **fields: str | int | None) -> int:
        """Record one refusal; text fields are cut short so a flood of long
        requests cannot grow the log faster than its request count."""
        entry = {
            k: (v[:MAX_FIELD_CHARS] if isinstance(v, str) else v)
            for k, v in fields.items()
            if v is not None
        }
        body = encoding.encode(entry)
        with write_transaction(self._db, self._lock) as db:
            cursor = db.execute(
                "INSERT INTO entries (body, leaf) VALUES (?, ?)", (body, leaf_hash(body))
            )
            return int(cursor.lastrowid or 0)

    def anchored_through(self) -> int:
        """The last seq whose run the chain holds; the next anchor starts after it."""
        row = self._db.execute("SELECT COALESCE(MAX(last_seq), 0) FROM anchors").fetchone()
        return int(row[0])

    def next_run(self) -> Run | None:
        """The entries not yet anchored (at most MAX_RUN), with their root."""
        start = self.anchored_through() + 1
        rows = self._db.execute(
            "SELECT seq, leaf FROM entries WHERE seq >= ? ORDER BY seq LIMIT ?", (start, MAX_RUN)
        ).fetchall()
        if not rows:
            return None
        return Run(rows[0][0], rows[-1][0], merkle_root([bytes(r[1]) for r in rows]))

    def run_of(self, first_seq: int, last_seq: int) -> Run:
        """Entries first_seq..last_seq as a run (to compare with an anchor on chain)."""
        leaves = [
            bytes(r[0])
            for r in self._db.execute(
                "SELECT leaf FROM entries WHERE seq BETWEEN ? AND ? ORDER BY seq",
                (first_seq, last_seq),
            )
        ]
        return Run(first_seq, last_seq, merkle_root(leaves))

    def mark_anchored(self, run: Run) -> None:
        """Record that the chain now holds this run, once its anchor tx is committed."""
        with write_transaction(self._db, self._lock) as db:
            db.execute(
                "INSERT OR REPLACE INTO anchors (last_seq, first_seq, root) VALUES (?, ?, ?)",
                (run.last_seq, run.first_seq, run.root),
            )

    def entries(self, after: int = 0, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        """A page of entries after seq `after`, oldest first, for regulators reading the log."""
        rows = self._db.execute(
            "SELECT seq, body FROM entries WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        ).fetchall()
        return [(int(seq), encoding.decode(bytes(body))) for seq, body in rows]

    def proof(self, seq: int) -> tuple[Run, list[tuple[bool, bytes]]] | None:
        """The anchored run holding entry `seq` and the entry's Merkle path; None if
        the entry is not anchored yet."""
        row = self._db.execute(
            "SELECT first_seq, last_seq, root FROM anchors WHERE first_seq <= ? AND last_seq >= ?",
            (seq, seq),
        ).fetchone()
        if row is None:
            return None
        run = Run(int(row[0]), int(row[1]), bytes(row[2]))
        leaves = [
            bytes(r[0])
            for r in self._db.execute(
                "SELECT leaf FROM entries WHERE seq BETWEEN ? AND ? ORDER BY seq",
                (run.first_seq, run.last_seq),
            )
        ]
        return run, merkle_path(leaves, seq - run.first_seq)

    def entries_naming(
        self, field: str, value: str, after: int = 0, limit: int = 100
    ) -> list[tuple[int, dict[str, Any]]]:
        """Entries whose `field` is `value` (a patient's own view), oldest first."""
        found: list[tuple[int, dict[str, Any]]] = []
        while len(found) < limit:
            page = self.entries(after, 1000)
            if not page:
                break
            found += [(seq, e) for seq, e in page if e.get(field) == value]
            after = page[-1][0]
        return found[:limit]

    def close(self) -> None:
        """Close the SQLite file (on edge shutdown and in tests)."""
        self._db.close()
