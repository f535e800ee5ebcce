"""Supply-chain throughput and forward trace, in one run.

1. EPCIS events recorded per second on the embedded engine: signed
   `supply.record_event` txs (commissioning events of `--per-event` units,
   then shipping and receiving of the same units in events of the same size),
   submitted to a solo engine and committed (SQLite, fsync, state tree).
2. The time to trace one ingredient lot forward to every unit made from it
   (`--units` units in `--batches` batches), with `supply.trace_ingredient`
   over the chain database as the gateway runs it (units from the node's
   `supply_units` read table), and as it ran before that table (a range scan
   decoding every unit record), against the baseline of the same question as
   one plain SQL join over the same data in ordinary indexed tables.

    .venv/bin/python bench/supply_chain.py                 # 100,000 units
    .venv/bin/python bench/supply_chain.py --units 20000 --json
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from medchain import crypto, encoding
from medchain.consensus.application import Application
from medchain.consensus.projections import indexed_units
from medchain.consensus.solo import SoloEngine
from medchain.contracts.identity.model import did_for_key
from medchain.contracts.supply import model as supply
from medchain.core.genesis import parse_genesis
from medchain.core.tx import build_tx
from medchain.storage.chain_db import ChainDB

CHAIN_ID = "bench-supply"
GTIN = "06901234567892"
stderr = Console(stderr=True)


class Chain:
    def __init__(self, directory: Path) -> None:
        self.root = crypto.generate_keypair()
        genesis = parse_genesis(
            {
                "chain_id": CHAIN_ID,
                "genesis_time_ms": int(time.time() * 1000) - 3_600_000,
                "consortium_admins": [{"name": "root", "public_key": self.root.public.hex()}],
                "params": {"max_block_txs": 200},
            }
        )
        self.app = Application(ChainDB(directory / "chain.db"))
        self.app.init_chain(genesis)
        self.engine = SoloEngine(self.app, block_interval=0.05)
        self.engine.start()
        self.nonces: dict[bytes, int] = {}

    def tx(self, key: crypto.KeyPair, contract: str, action: str, payload: dict[str, Any]) -> bytes:
        nonce = self.nonces.get(key.public, 0)
        self.nonces[key.public] = nonce + 1
        return build_tx(
            key, chain_id=CHAIN_ID, contract=contract, action=action, payload=payload, nonce=nonce
        )

    def run(self, raws: list[bytes], progress: Progress | None = None) -> float:
        """Submit, wait for every tx; seconds from first submit to last commit."""
        t0 = time.perf_counter()
        ids = [self.engine.submit(raw).tx_id for raw in raws]
        task = progress.add_task("committing", total=len(ids)) if progress else None
        for tx_id in ids:
            done = self.engine.wait_for(tx_id, 120)
            if done is None:
                raise SystemExit("a tx was not committed in 120 s")
            if progress is not None and task is not None:
                progress.advance(task)
        seconds = time.perf_counter() - t0
        for tx_id in ids:
            found = self.app.db.tx_result(tx_id)
            assert found is not None
            if found[2].code != 0:
                raise SystemExit(f"tx refused: {found[2].log}")
        return seconds


def setup(chain: Chain, args: argparse.Namespace) -> dict[str, crypto.KeyPair]:
    k = {n: crypto.generate_keypair() for n in ("maker", "logistics", "logger", "pharmacy")}
    calls = [
        (
            chain.root,
            "identity",
            "register_org",
            {
                "org_id": "maker",
                "name": "Maker",
                "org_type": "manufacturer",
                "admin_public_key": k["maker"].public,
            },
        ),
        (
            chain.root,
            "identity",
            "register_org",
            {
                "org_id": "logistics",
                "name": "Logistics",
                "org_type": "logistics",
                "admin_public_key": k["logistics"].public,
            },
        ),
        (
            chain.root,
            "identity",
            "register_org",
            {
                "org_id": "pharmacy",
                "name": "Pharmacy",
                "org_type": "pharmacy",
                "admin_public_key": k["pharmacy"].public,
            },
        ),
    ]
    chain.run([chain.tx(key, c, a, p) for key, c, a, p in calls])
    chain.run(
        [
            chain.tx(
                k["logistics"],
                "identity",
                "add_member",
                {"org_id": "logistics", "public_key": k["logger"].public, "roles": ["device"]},
            ),
            chain.tx(
                k["maker"],
                "supply",
                "register_ingredient",
                {"lot_id": "API-1", "substance": "insulin"},
            ),
            chain.tx(
                k["maker"],
                "supply",
                "register_product",
                {"gtin": GTIN, "name": "Insulin pen", "kind": "drug"},
            ),
        ]
    )
    chain.run(
        [
            chain.tx(
                k["maker"],
                "supply",
                "register_batch",
                {
                    "gtin": GTIN,
                    "lot": f"L{b:03d}",
                    "expiry": "2040-01-01",
                    "ingredients": ["API-1"],
                },
            )
            for b in range(args.batches)
        ]
    )
    return k


def event(n: int, step: str, epcs: list[str], **extra: str) -> dict[str, Any]:
    return {
        "event_hash": f"ni:///sha-256;{n:064x}?ver=CBV2.0",
        "biz_step": step,
        "event_time_ms": int(time.time() * 1000) - 60_000,
        "epcs": epcs,
        **extra,
    }


def record_events(
    chain: Chain, k: dict[str, crypto.KeyPair], args: argparse.Namespace
) -> dict[str, Any]:
    per_batch = args.units // args.batches
    groups = []
    for b in range(args.batches):
        serials = [f"{GTIN}/B{b:03d}-{i:06d}" for i in range(per_batch)]
        groups += [
            (f"L{b:03d}", serials[i : i + args.per_event])
            for i in range(0, per_batch, args.per_event)
        ]
    n, phases = 0, {}
    logger = did_for_key("sm", k["logger"].public)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as progress:
        for phase in ("commissioning", "shipping", "receiving"):
            raws = []
            for g, (lot, units) in enumerate(groups):
                n += 1
                if phase == "commissioning":
                    raws.append(
                        chain.tx(
                            k["maker"], "supply", "record_event", event(n, phase, units, lot=lot)
                        )
                    )
                elif phase == "shipping":
                    raws.append(
                        chain.tx(
                            k["maker"],
                            "supply",
                            "record_event",
                            event(
                                n,
                                phase,
                                units,
                                destination="pharmacy",
                                shipment=f"SH-{g}",
                                device=logger,
                            ),
                        )
                    )
                else:
                    raws.append(
                        chain.tx(
                            k["pharmacy"],
                            "supply",
                            "record_event",
                            event(n, phase, units, shipment=f"SH-{g}"),
                        )
                    )
            seconds = chain.run(raws, progress)
            phases[phase] = {
                "events": len(raws),
                "units": sum(len(u) for _, u in groups),
                "seconds": seconds,
            }
    return phases


def measure_trace(chain: Chain, repeats: int, indexed: bool) -> tuple[list[float], int]:
    """The trace as the gateway's /v1/supply/trace runs it: readers of committed
    state like gateway.deps' getter and scanner, decoding with `decode_trusted`
    (the node wrote that state itself; the canonical re-encode check is for
    bytes arriving from outside), and, if `indexed`, the units from the node's
    `supply_units` table (else from a scan of every unit record, as before it)."""
    db = chain.app.db
    units = indexed_units(db) if indexed else None
    if indexed and units is None:
        raise SystemExit("the chain database keeps no supply_units table")

    def get(key: str) -> Any:
        raw = db.get(key)
        return None if raw is None else encoding.decode_trusted(raw)

    def scan(prefix: str) -> Iterator[tuple[str, Any]]:
        for key, raw in db.scan(prefix, 10_000_000):
            yield key, encoding.decode_trusted(raw)

    times, found = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        found = len(supply.trace_ingredient(get, scan, "API-1", units=units)["units"])
        times.append(time.perf_counter() - t0)
    return times, found


def measure_sql(chain: Chain, directory: Path, repeats: int) -> tuple[list[float], int]:
    """The same question over the same data, as plain indexed tables and one join."""
    conn = sqlite3.connect(directory / "plain.db")
    conn.executescript(
        "CREATE TABLE batch_ingredients (lot_id TEXT, gtin TEXT, lot TEXT);"
        "CREATE TABLE units (unit TEXT PRIMARY KEY, gtin TEXT, lot TEXT, status TEXT, holder TEXT);"
        "CREATE INDEX bi ON batch_ingredients (lot_id);"
        "CREATE INDEX ub ON units (gtin, lot);"
    )
    db = chain.app.db
    for _, raw in db.scan(supply.by_ingredient_prefix("API-1"), 10_000_000):
        e = encoding.decode(raw)
        conn.execute(
            "INSERT INTO batch_ingredients VALUES (?, ?, ?)", ("API-1", e["gtin"], e["lot"])
        )
    rows = []
    for _, raw in db.scan(supply.UNITS_PREFIX, 10_000_000):
        u = encoding.decode(raw)
        rows.append((u["unit"], u["gtin"], u["lot"], u["status"], u["holder"]))
    conn.executemany("INSERT INTO units VALUES (?, ?, ?, ?, ?)", rows)
    conn.commit()
    times, found = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        found = len(
            conn.execute(
                "SELECT u.unit, u.status, u.holder FROM batch_ingredients b JOIN units u "
                "ON u.gtin = b.gtin AND u.lot = b.lot WHERE b.lot_id = ?",
                ("API-1",),
            ).fetchall()
        )
        times.append(time.perf_counter() - t0)
    conn.close()
    return times, found


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--units", type=int, default=100_000)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--per-event", type=int, default=100, help="units per EPCIS event")
    ap.add_argument("--repeats", type=int, default=5, help="timed trace runs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="medchain-supply-") as tmp:
        chain = Chain(Path(tmp))
        try:
            k = setup(chain, args)
            phases = record_events(chain, k, args)
            trace_times, traced = measure_trace(chain, args.repeats, indexed=True)
            scan_times, scanned = measure_trace(chain, args.repeats, indexed=False)
            sql_times, sql_found = measure_sql(chain, Path(tmp), args.repeats)
        finally:
            chain.engine.stop()
    if not traced == scanned == sql_found:
        raise SystemExit(f"trace found {traced} units, by a state scan {scanned}, SQL {sql_found}")
    events = sum(p["events"] for p in phases.values())
    seconds = sum(p["seconds"] for p in phases.values())
    result = {
        "units": traced,
        "events": events,
        "events_per_s": round(events / seconds, 1),
        "unit_moves_per_s": round(sum(p["units"] for p in phases.values()) / seconds, 1),
        "phases": phases,
        "trace_median_s": round(statistics.median(trace_times), 4),
        "scan_trace_median_s": round(statistics.median(scan_times), 4),
        "sql_median_s": round(statistics.median(sql_times), 4),
    }
    result["trace_over_sql"] = round(result["trace_median_s"] / result["sql_median_s"], 2)
    result["scan_trace_over_sql"] = round(result["scan_trace_median_s"] / result["sql_median_s"], 2)
    if args.json:
        print(json.dumps(result))
        return 0
    table = Table(
        title=f"Supply chain: {traced:,} units in {args.batches} batches of one ingredient lot"
    )
    for col in ("measure", "count", "seconds", "rate / time"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    for phase, p in phases.items():
        table.add_row(
            f"EPCIS {phase} events ({args.per_event} units each)",
            f"{p['events']:,}",
            f"{p['seconds']:.2f}",
            f"{p['events'] / p['seconds']:,.1f} events/s",
        )
    table.add_row(
        "all recorded events",
        f"{events:,}",
        f"{seconds:.2f}",
        f"{result['events_per_s']:,.1f} events/s ({result['unit_moves_per_s']:,.0f} unit moves/s)",
    )
    table.add_row(
        "trace one ingredient lot forward (ledger, supply_units table)",
        f"{traced:,} units",
        "",
        f"{result['trace_median_s'] * 1000:,.0f} ms median",
    )
    table.add_row(
        "the same trace scanning every unit record (before the table)",
        f"{scanned:,} units",
        "",
        f"{result['scan_trace_median_s'] * 1000:,.0f} ms median",
    )
    table.add_row(
        "baseline: the same as one plain SQL join",
        f"{sql_found:,} units",
        "",
        f"{result['sql_median_s'] * 1000:,.0f} ms median",
    )
    Console().print(table)
    Console().print(
        f"trace / SQL: {result['trace_over_sql']}x "
        f"(scanning unit records: {result['scan_trace_over_sql']}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
