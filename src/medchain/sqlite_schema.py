"""Schema versions of MedChain's SQLite files, and moving a file forward to this one.

Each database keeps its schema version in `PRAGMA user_version` (the file header:
no table of its own, readable by the stock sqlite3 tool). Version 0 is a file made
before versions existed. A module lists its migrations in order: migration i takes
a file from version i to i + 1, so the version this software writes is the number
of migrations. Each runs with its new version number in one transaction: a crash
leaves the file at the old version or the new one, never between.

A file from a newer MedChain (a version above the list) is refused, not opened: an
older program would not know what the newer columns or tables mean, and writing to
it could corrupt it for the newer one. `write_transaction` is the one write
transaction the edge's own small databases share. Imports no other layer.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from medchain.exceptions import MedChainError


class SchemaTooNew(MedChainError):
    """The database was written by a newer MedChain than this one."""


class SchemaMigrationFailed(MedChainError):
    """A migration could not move the database forward (it was left as it was)."""


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's schema version (0: made before versions existed)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: Path, migrations: Sequence[str]) -> int:
    """Bring the database on `conn` (autocommit mode) to the newest version in
    `migrations` (SQL scripts, oldest first); its version afterwards.

    SchemaTooNew, naming the file and both versions, if the file is newer than this
    software; SchemaMigrationFailed if a script fails (its transaction is rolled back).
    """
    newest = len(migrations)
    _refuse_newer(conn, path, newest)
    while (current := schema_version(conn)) < newest:
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Another process may have migrated while this one waited for the lock.
            if schema_version(conn) == current:
                for statement in _statements(migrations[current]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {current + 1}")
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise SchemaMigrationFailed(
                f"{path}: migration to schema version {current + 1} failed: {e}"
            ) from e
    _refuse_newer(conn, path, newest)
    return newest


def _refuse_newer(conn: sqlite3.Connection, path: Path, newest: int) -> None:
    current = schema_version(conn)
    if current > newest:
        raise SchemaTooNew(
            f"{path} has schema version {current}, but this MedChain knows versions up to "
            f"{newest}: run the MedChain release that wrote it (or newer), or restore a "
            "backup made by this release"
        )


def _statements(script: str) -> list[str]:
    """The statements of an SQL script, each whole (sqlite3.complete_statement)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip() and not pending.strip().startswith("--"):
        raise SchemaMigrationFailed(f"an incomplete SQL statement in a migration: {pending!r}")
    return statements


@contextmanager
def write_transaction(
    conn: sqlite3.Connection, lock: threading.Lock
) -> Iterator[sqlite3.Connection]:
    """One write transaction on `conn` (autocommit mode, shared by threads under
    `lock`): BEGIN IMMEDIATE, COMMIT at the end, ROLLBACK on any exception."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
