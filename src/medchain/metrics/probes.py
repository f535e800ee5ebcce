"""Readiness probes shared by node, edge and relay (each answers True or False)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

WRITE_WAIT = 2.0  # seconds to wait for the writer lock (a block commit holds it briefly)


def sqlite_writable(path: Path) -> bool:
    """Whether this process can take the write lock of the SQLite database at `path`
    now (file present, writable, disk not read-only, no stuck writer); nothing is
    written: the transaction is rolled back at once."""
    if not path.is_file():
        return False
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=WRITE_WAIT)
    except sqlite3.Error:
        return False
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.Error:
        return False
    finally:
        conn.close()
