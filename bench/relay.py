"""Relay delay: from a block's commit on the business chain to its digest's
commit on the regulator chain, under steady load, in one run.

Two solo networks (each `medchain node`'s 200 ms block interval, each with its
HTTP gateway) and the relay between them, all on this machine. A load thread
submits patient registrations to the business chain at a steady rate; the
relay follows. For every business block, delay = time of the regulator block
holding its digest - time of the business block (both are block times taken
from the same clock). Baseline in the same run: one tx submitted to the
regulator chain until committed, which is the floor any relayed digest pays
on top of the relay noticing the block.

    .venv/bin/python bench/relay.py                     # 20 s at 100 tx/s
    .venv/bin/python bench/relay.py --seconds 60 --rate 300 --json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import patient_registration, start_chain  # bench/common.py
from rich.console import Console
from rich.table import Table

from medchain import crypto
from medchain.contracts.identity.model import did_for_key
from medchain.network.relay import Relay

SOURCE = "bench-business"


def pct(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=20.0, help="load duration")
    ap.add_argument("--rate", type=int, default=100, help="business txs per second")
    ap.add_argument("--interval", type=float, default=0.2, help="block interval of both chains")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    stack: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="medchain-relay-") as tmp:
        try:
            result = run(Path(tmp), args, stack)
        finally:
            for part in stack:
                part.stop()
    if args.json:
        print(json.dumps(result))
    else:
        report(result, args)
    return 0


def run(directory: Path, args: argparse.Namespace, stack: list[Any]) -> dict[str, Any]:
    biz_admin, reg_admin = crypto.generate_keypair(), crypto.generate_keypair()
    business, parts = start_chain(directory, SOURCE, biz_admin, args.interval)
    stack += parts
    regulator, parts = start_chain(
        directory, "bench-regulator", reg_admin, args.interval, "regulator"
    )
    stack += parts
    relayer, bureau = crypto.generate_keypair(), crypto.generate_keypair()
    org = {
        "org_id": "nhc",
        "name": "NHC",
        "org_type": "regulator",
        "admin_public_key": bureau.public,
    }
    assert regulator.send(reg_admin, "identity", "register_org", org)["code"] == 0
    member = {"org_id": "nhc", "public_key": relayer.public, "roles": ["device"]}
    assert regulator.send(bureau, "identity", "add_member", member)["code"] == 0
    grant = {"source": SOURCE, "relayer": did_for_key("sm", relayer.public)}
    assert regulator.send(reg_admin, "supervision", "authorize_relayer", grant)["code"] == 0

    stop = threading.Event()
    relay = Relay(business, regulator, relayer, SOURCE, batch=50)
    relay_thread = threading.Thread(target=relay.run, args=(stop, 0.02), daemon=True)
    relay_thread.start()
    start_height = business.status()["height"]

    def load() -> None:
        period = 1.0 / args.rate
        deadline = time.monotonic() + args.seconds
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            raw = patient_registration(SOURCE)
            business.submit_raw(raw, wait=False)
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    baseline = []
    while loader.is_alive():  # baseline: plain txs on the regulator chain, same run
        t0 = time.perf_counter()
        key = crypto.generate_keypair()
        assert regulator.send(key, "identity", "register_patient", {})["code"] == 0
        baseline.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.3)
    head = business.status()["height"]
    deadline = time.monotonic() + 60
    while relay.stream().height < head and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    relay_thread.join(10)

    business_time = {
        h: business.block(h)["header"]["time_ms"] for h in range(start_height + 1, head + 1)
    }
    delays, txs = [], 0
    for h in range(1, regulator.status()["height"] + 1):
        block = regulator.block(h)
        for result in block["results"]:
            for event in result["events"]:
                if event["type"] == "supervision.digest":
                    height = int(event["attributes"]["height"])
                    if height in business_time:
                        delays.append(block["header"]["time_ms"] - business_time[height])
    for h in business_time:
        txs += len(business.block(h)["txs"])
    return {
        "business_blocks": len(business_time),
        "business_txs": txs,
        "relayed": len(delays),
        "delay_ms": {p: pct(delays, p) for p in (50, 95, 99)} | {"max": max(delays)},
        "baseline_tx_commit_ms": {p: round(pct(baseline, p), 1) for p in (50, 95)},
        "rate": args.rate,
        "interval_s": args.interval,
    }


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    table = Table(title="Business block commit -> digest committed on the regulator chain")
    for col in ("measure", "n", "p50 ms", "p95 ms", "p99/max ms"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    d = r["delay_ms"]
    table.add_row(
        "relay delay per block",
        str(r["relayed"]),
        f"{d[50]:.0f}",
        f"{d[95]:.0f}",
        f"{d[99]:.0f} / {d['max']:.0f}",
    )
    b = r["baseline_tx_commit_ms"]
    table.add_row(
        "baseline: one tx to commit on the regulator chain", "-", f"{b[50]:.0f}", f"{b[95]:.0f}", ""
    )
    console = Console()
    console.print(table)
    console.print(
        f"{r['business_txs']:,} business txs in {r['business_blocks']} blocks at {args.rate} tx/s; "
        f"both chains {args.interval * 1000:.0f} ms blocks"
    )


if __name__ == "__main__":
    sys.exit(main())
