"""Node-local read tables derived from state (storage/projection.py): the supply
units table kept block by block on a real ChainDB equals a scan of state, is
rebuilt for a database that predates it or holds another version, commits or
rolls back with its block, and answers a forward trace exactly as state does."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support.ledger import Ledger, did_of
from support.supply_chain import GTIN, Chain

from medchain import crypto, encoding
from medchain.consensus.application import Application
from medchain.consensus.projections import SupplyUnits, indexed_units
from medchain.contracts.supply import model as supply
from medchain.exceptions import Code
from medchain.storage.chain_db import ChainDB


def run_supply_flow(chain: Chain) -> list[str]:
    """Commission two batches of one ingredient lot and one of another, ship, receive,
    dispense, quarantine nothing, recall the first lot: units in every status."""
    units = chain.setup_batch("L2401", serials=4)
    chain.ok("api_supplier", "register_ingredient", {"lot_id": "API-88", "substance": "saline"})
    for lot, ingredient in (("L2402", "API-77"), ("L9000", "API-88")):
        batch = {"gtin": GTIN, "lot": lot, "expiry": "2030-12-31", "ingredients": [ingredient]}
        chain.ok("maker", "register_batch", batch)
    # serials that sort before and after the first batch's, so order is by unit id
    second = [f"{GTIN}/T{i:04d}" for i in range(3)]
    other = [f"{GTIN}/A{i:04d}" for i in range(3)]
    assert chain.event("maker", "commissioning", second, lot="L2402").code == Code.OK
    assert chain.event("maker", "commissioning", other, lot="L9000").code == Code.OK
    logger = did_of(chain.k["logger"])
    moved = units[1:] + second[:2] + other[:1]
    ship = {"destination": "yifeng", "shipment": "SH-1", "device": logger}
    assert chain.event("maker", "shipping", moved, **ship).code == Code.OK
    assert chain.event("pharmacy", "receiving", moved, shipment="SH-1").code == Code.OK
    assert chain.event("pharmacy", "dispensing", [units[1], second[0]]).code == Code.OK
    chain.ok("api_supplier", "recall", {"ingredient_lot": "API-77", "reason": "endotoxin"})
    return units + second + other


def units_from_state(db: ChainDB) -> list[tuple[str, str, str, str, str]]:
    """What the projection must hold: every unit record in state, as its five columns."""
    rows = []
    for _, raw in db.scan(supply.UNITS_PREFIX, 1_000_000):
        unit = encoding.decode(raw)
        rows.append((unit["unit"], unit["gtin"], unit["lot"], unit["status"], unit["holder"]))
    return rows


def projected_units(db: ChainDB) -> list[tuple[Any, ...]]:
    """The projection's rows, in unit order."""
    return db.query("SELECT unit, gtin, lot, status, holder FROM supply_units ORDER BY unit")


def readers(db: ChainDB) -> tuple[supply.Get, supply.Scan]:
    """The pure queries' get and scan over committed state."""

    def get(key: str) -> Any:
        raw = db.get(key)
        return None if raw is None else encoding.decode(raw)

    def scan(prefix: str) -> Any:
        return ((key, encoding.decode(raw)) for key, raw in db.scan(prefix, 1_000_000))

    return get, scan


@pytest.fixture
def chain(ledger: Ledger) -> Chain:
    return Chain(ledger)


def test_supply_units_equal_a_state_scan_after_a_realistic_flow(chain: Chain) -> None:
    made = run_supply_flow(chain)
    db = chain.ledger.app.db
    rows = projected_units(db)
    assert rows == units_from_state(db)
    assert sorted(unit for unit, *_ in rows) == sorted(made)
    statuses = {status for _, _, _, status, _ in rows}
    assert statuses == {supply.COMMISSIONED, supply.RECEIVED, supply.DISPENSED}
    assert db.has_projection(SupplyUnits.name)


def test_trace_through_the_projection_equals_the_pure_trace(chain: Chain) -> None:
    run_supply_flow(chain)
    db = chain.ledger.app.db
    get, scan = readers(db)
    units = indexed_units(db)
    assert units is not None
    for lot_id in ("API-77", "API-88", "API-none"):
        pure = supply.trace_ingredient(get, scan, lot_id)
        assert supply.trace_ingredient(get, scan, lot_id, units=units) == pure
    traced = [u["unit"] for u in supply.trace_ingredient(get, scan, "API-77", units=units)["units"]]
    assert len(traced) == 7 and traced == sorted(traced)  # two lots, in unit id order


def test_projection_is_rebuilt_for_a_database_made_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with monkeypatch.context() as patch:  # the code before the projection existed
        patch.setattr(Application, "_add_projections", lambda self: None)
        ledger = Ledger(tmp_path / "old.db", crypto.generate_keypair())
        run_supply_flow(Chain(ledger))
        assert not ledger.app.db.has_projection(SupplyUnits.name)
        ledger.app.db.close()
    plain = sqlite3.connect(tmp_path / "old.db")
    tables = {row[0] for row in plain.execute("SELECT name FROM sqlite_master")}
    plain.close()
    assert "supply_units" not in tables
    db = ChainDB(tmp_path / "old.db")
    with caplog.at_level(logging.INFO, logger="medchain.storage"):
        db.add_projection(SupplyUnits())
    assert projected_units(db) == units_from_state(db) and len(units_from_state(db)) == 10
    assert "projection supply_units v1 rebuilt from 10 state keys" in caplog.text
    caplog.clear()
    again = ChainDB(tmp_path / "old.db")  # current now: opened without a rebuild
    with caplog.at_level(logging.INFO, logger="medchain.storage"):
        Application(again)
    assert again.has_projection(SupplyUnits.name) and "rebuilt" not in caplog.text


def test_projection_is_rebuilt_when_its_version_or_height_is_stale(
    chain: Chain, caplog: pytest.LogCaptureFixture
) -> None:
    run_supply_flow(chain)
    path, height = chain.ledger.app.db.path, chain.ledger.app.db.height
    chain.ledger.app.db.close()
    plain = sqlite3.connect(path)
    plain.execute("DELETE FROM supply_units WHERE unit LIKE ?", (f"{GTIN}/T%",))
    # as if written by an older version of the projection, one block ago
    stale = encoding.encode([SupplyUnits.version - 1, height - 1])
    plain.execute("UPDATE meta SET value = ? WHERE name = 'projection/supply_units'", (stale,))
    plain.commit()
    plain.close()
    db = ChainDB(path)
    with caplog.at_level(logging.INFO, logger="medchain.storage"):
        db.add_projection(SupplyUnits())
    assert projected_units(db) == units_from_state(db)
    assert "(was v0 at height" in caplog.text


class Failing(SupplyUnits):
    """A projection whose apply breaks, to show it shares the block's transaction."""

    def apply(self, conn: sqlite3.Connection, key: str, value: bytes | None) -> None:
        super().apply(conn, key, value)
        raise RuntimeError("disk full")


def test_a_block_and_its_projection_rows_commit_or_roll_back_together(chain: Chain) -> None:
    units = chain.setup_batch()
    db = chain.ledger.app.db
    before = (db.height, db.app_hash, projected_units(db))
    db._projections[SupplyUnits.name] = Failing()
    ship = {"destination": "yifeng", "shipment": "SH-1", "device": did_of(chain.k["logger"])}
    with pytest.raises(RuntimeError, match="disk full"):
        chain.event("maker", "shipping", units, **ship)
    assert (db.height, db.app_hash, projected_units(db)) == before
    db._projections[SupplyUnits.name] = SupplyUnits()
    chain.n -= 1  # the same event again, now committed
    assert chain.event("maker", "shipping", units, **ship).code == Code.OK
    assert projected_units(db) == units_from_state(db)
    assert {status for _, _, _, status, _ in projected_units(db)} == {supply.IN_TRANSIT}


def test_a_deleted_unit_leaves_the_projection() -> None:
    conn = sqlite3.connect(":memory:")
    projection = SupplyUnits()
    for statement in projection.schema:
        conn.execute(statement)
    unit = f"{GTIN}/S1"
    record = {"unit": unit, "gtin": GTIN, "lot": "L1", "status": "received", "holder": "yifeng"}
    projection.apply(conn, supply.unit_key(unit), encoding.encode(record))
    assert conn.execute("SELECT count(*) FROM supply_units").fetchone() == (1,)
    projection.apply(conn, supply.unit_key(unit), None)
    assert conn.execute("SELECT count(*) FROM supply_units").fetchone() == (0,)


def test_regulator_chains_keep_no_supply_units(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "regulator.db", crypto.generate_keypair(), profile="regulator")
    assert not ledger.app.db.has_projection(SupplyUnits.name)
    assert indexed_units(ledger.app.db) is None
