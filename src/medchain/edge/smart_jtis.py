"""The jtis of SMART statements an edge has exchanged, on disk (edge/smart.py).

A statement's jti is spent once it got a token. Every read on that token puts
the statement on chain, where anyone can copy it; so the spent jtis must outlive
the edge process (a restart) and be shared by every edge process on the same
vault, until the statement itself could no longer be accepted. A small SQLite
table in WAL mode beside the vault's db holds (member, jti, until); rows whose
statements expired are swept. Counting a member's live jtis here also bounds
how many tokens one member may ask for in a statement's lifetime.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from medchain.exceptions import MedChainError
from medchain.sqlite_schema import migrate

FILE_NAME = "smart-jtis.db"
SWEEP_EVERY_S = 60.0  # how often expired rows are deleted, at most
BUSY_TIMEOUT_MS = 5_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS spent_jtis (
    member TEXT NOT NULL,
    jti TEXT NOT NULL,
    until REAL NOT NULL,
    PRIMARY KEY (member, jti)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spent_jtis_until ON spent_jtis (until);
"""
MIGRATIONS = (SCHEMA,)  # schema versions (medchain/sqlite_schema.py); 1: the schema above


class JtiRefused(MedChainError):
    """A jti that cannot be spent: `reason` is "replayed", "member_full" or "full"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SpentJtis:
    """The spent jtis of one edge's vault, shared by every process that opens it.
    Callers serialise calls on one instance (SQLite serialises processes)."""

    def __init__(self, path: Path, max_total: int) -> None:
        self.path = path
        self.max_total = max_total
        self._db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        migrate(self._db, path, MIGRATIONS)
        self._swept_at = float("-inf")
        self._total = 0  # rows as of the last sweep, plus this process's inserts since

    def spend(self, member: str, jti: str, until: float, now: float, member_cap: int) -> None:
        """Record `jti` of `member` as spent until `until` (wall-clock seconds), or
        JtiRefused: "replayed" if it is already spent, "member_full" if the member
        has `member_cap` live jtis, "full" if the table holds max_total rows."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # the check and the insert as one, across processes
        try:
            if now - self._swept_at >= SWEEP_EVERY_S:
                self._sweep(now)
            row = db.execute(
                "SELECT until FROM spent_jtis WHERE member = ? AND jti = ?", (member, jti)
            ).fetchone()
            if row is not None and row[0] > now:
                raise JtiRefused("replayed")
            (live,) = db.execute(
                "SELECT COUNT(*) FROM spent_jtis WHERE member = ? AND until > ?", (member, now)
            ).fetchone()
            if live >= member_cap:
                raise JtiRefused("member_full")
            if self._total >= self.max_total:
                self._sweep(now)
                if self._total >= self.max_total:
                    raise JtiRefused("full")
            db.execute(
                "INSERT OR REPLACE INTO spent_jtis (member, jti, until) VALUES (?, ?, ?)",
                (member, jti, until),
            )
            self._total += 1
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _sweep(self, now: float) -> None:
        """Delete the rows of statements that can no longer be accepted, and recount
        (in the caller's transaction)."""
        self._db.execute("DELETE FROM spent_jtis WHERE until <= ?", (now,))
        self._swept_at, self._total = now, self.count()

    def count(self) -> int:
        """How many jtis the table holds (expired ones included until swept)."""
        (n,) = self._db.execute("SELECT COUNT(*) FROM spent_jtis").fetchone()
        return int(n)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()
