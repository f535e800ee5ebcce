"""Projections: node-local read tables derived from committed state.

A projection turns the state keys under one prefix into ordinary indexed SQL
rows, so a read that would decode thousands of CBOR records (a forward trace of
an ingredient lot) becomes one indexed query. Like the audit index it is not in
the app hash and never read by consensus: `ChainDB.commit_block` applies each
block's writes to it inside the block's own transaction, so the table always
matches the committed height, and `ChainDB.add_projection` rebuilds it from a
state scan whenever it may not (a new projection over an existing database, a
new version, a database last written by code that did not keep it).

Which projections exist is the business of the layers above storage (they know
the contracts' records); storage only keeps them in step with state.
"""

from __future__ import annotations

import sqlite3
from typing import Protocol


class Projection(Protocol):
    """A derived table kept from the state keys under `prefix`.

    `apply` must give the same rows whatever order the keys of one block arrive
    in (a block writes each key once), and must only touch the projection's own
    `tables`: it runs inside the block's transaction on the writer connection.
    """

    name: str  # unique among a database's projections; names its meta row
    version: int  # bump when `schema` or `apply` changes: the table is rebuilt
    prefix: str  # state keys under this prefix feed the projection
    tables: tuple[str, ...]  # dropped before a rebuild
    schema: tuple[str, ...]  # CREATE TABLE / CREATE INDEX statements, one each

    def apply(self, conn: sqlite3.Connection, key: str, value: bytes | None) -> None:
        """Bring the rows for `key` in line with its new committed value (None: deleted)."""
        ...
