"""The node's read tables derived from contract state (storage/projection.py).

They live here, not in storage, because building one means reading a contract's
records (storage may not import contracts) and the Application, which both
engines drive, is what registers them. None is in the app hash.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

from medchain import encoding
from medchain.contracts.supply import model as supply
from medchain.storage.chain_db import ChainDB


class SupplyUnits:
    """`supply_units`: each unit's GTIN, lot, status and holder, indexed by (gtin, lot),
    from the `supply/unit/...` records. A forward trace of an ingredient lot reads
    these columns instead of decoding every unit record (history included) of the
    product; bench/supply_chain.py measures the difference. The index covers the
    columns a trace returns, so a trace reads the index alone."""

    name = "supply_units"
    version = 1
    prefix = supply.UNITS_PREFIX
    tables: tuple[str, ...] = ("supply_units",)
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS supply_units (unit TEXT PRIMARY KEY, gtin TEXT NOT NULL, "
        "lot TEXT NOT NULL, status TEXT NOT NULL, holder TEXT NOT NULL) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS supply_units_by_batch "
        "ON supply_units (gtin, lot, unit, status, holder)",
    )

    def apply(self, conn: sqlite3.Connection, key: str, value: bytes | None) -> None:
        """Upsert the unit's row from its committed record, or delete it."""
        if value is None:
            conn.execute("DELETE FROM supply_units WHERE unit = ?", (supply.unit_of_key(key),))
            return
        unit: supply.Unit = encoding.decode_trusted(value)
        conn.execute(
            "INSERT INTO supply_units VALUES (?, ?, ?, ?, ?) ON CONFLICT(unit) DO UPDATE SET "
            "gtin = excluded.gtin, lot = excluded.lot, status = excluded.status, "
            "holder = excluded.holder",
            (unit["unit"], unit["gtin"], unit["lot"], unit["status"], unit["holder"]),
        )


def indexed_units(db: ChainDB) -> supply.UnitsOf | None:
    """`units(gtin, lots)` for `supply.trace_ingredient` from the `supply_units` table
    (one indexed query per product, in unit id order like the state scan), or None
    where this database does not keep it (then the trace scans state).

    The rows come lot by lot, each lot in unit order, from the index; sorting them
    here rather than with ORDER BY (a temporary B-tree) costs little, as Python's
    sort merges those runs."""
    if not db.has_projection(SupplyUnits.name):
        return None

    def units(gtin: str, lots: Collection[str]) -> list[supply.UnitPlace]:
        wanted = sorted(lots)
        marks = ", ".join("?" * len(wanted))
        rows = db.query(
            f"SELECT unit, status, holder FROM supply_units WHERE gtin = ? AND lot IN ({marks})",
            [gtin, *wanted],
        )
        rows.sort()
        return [{"unit": unit, "status": status, "holder": holder} for unit, status, holder in rows]

    return units
