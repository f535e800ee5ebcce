"""A new node joining a 4-validator localnet: by state sync vs by replaying from genesis.

One run: a 4-validator MedChain localnet (127.0.8.x) whose apps write a snapshot
every `--interval` heights takes `--txs` signed patient self-registrations
(fresh SM2 keys, signed before the clock starts, sent with `broadcast_tx_sync`
by 8 threads spread over the validators). Once they are committed and a
snapshot holding them exists, a fifth node joins (a) by state sync (CometBFT's
light client checks the snapshot's app hash against two validators' headers;
the app checks every chunk and the rebuilt state's app hash), then, after it
has been stopped, a sixth (b) by block sync from genesis. Each join is timed
from the start of the node's processes until its app has committed the height
the validators were at when it started. App hash agreement: each joiner's
app hash at its last heights equals the one in the validators' signed headers.

    .venv/bin/python bench/state_sync.py              # 10,000 txs, table
    .venv/bin/python bench/state_sync.py --txs 1000 --json
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from common import patient_registration  # bench/common.py
from rich.console import Console
from rich.table import Table

from medchain.network.localnet import Localnet, rpc
from medchain.storage.chain_db import ChainDB

NODES = 4
FIRST_IP = "127.0.8.1"
DEFAULT_TXS = 10_000
DEFAULT_INTERVAL = 50
SENDERS = 8
SIGN_WORKERS = 2
JOIN_TIMEOUT_S = 1800.0
DISCOVERY_S = 5  # [statesync] discovery_time that Localnet.add_node sets
stderr = Console(stderr=True)


@dataclass
class Join:
    """One joining node's result."""

    mode: str
    seconds: float
    start_height: int  # the validators' height when the node started
    reached_height: int  # the node's app height when the clock stopped
    snapshot_height: int | None  # where state sync restored (None: replayed all)
    app_hash_agrees: bool


def height_of(url: str) -> int:
    """The latest committed height CometBFT at `url` reports."""
    return int(rpc(url, "status")["sync_info"]["latest_block_height"])


def header_app_hash(url: str, height: int) -> bytes:
    """The app hash after block `height` (it is in the header of height + 1)."""
    return bytes.fromhex(rpc(url, "block", height=height + 1)["block"]["header"]["app_hash"])


def send_all(net: Localnet, txs: Sequence[bytes]) -> int:
    """Send every tx (broadcast_tx_sync), return how many CheckTx admitted."""
    urls = [n.rpc for n in net.nodes]
    admitted = [0] * SENDERS

    def share(k: int) -> None:
        with httpx.Client(timeout=30) as http:
            for i in range(k, len(txs), SENDERS):
                body = {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "broadcast_tx_sync",
                    "params": {"tx": base64.b64encode(txs[i]).decode()},
                }
                reply = http.post(urls[k % len(urls)], json=body).json()
                if "error" not in reply and int(reply["result"]["code"]) == 0:
                    admitted[k] += 1

    threads = [threading.Thread(target=share, args=(k,)) for k in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(admitted)


def wait_committed(net: Localnet, expected: int, start_height: int) -> int:
    """Wait until `expected` txs are in blocks after `start_height`; returns the height."""
    url = net.nodes[0].rpc
    counted, seen = 0, start_height
    deadline = time.monotonic() + 600
    while counted < expected and time.monotonic() < deadline:
        top = height_of(url)
        while seen < top:
            lo, hi = seen + 1, min(top, seen + 20)
            metas = rpc(url, "blockchain", minHeight=lo, maxHeight=hi)["block_metas"]
            counted += sum(int(m["num_txs"]) for m in metas)
            seen = hi
        time.sleep(0.5)
    if counted < expected:
        raise SystemExit(f"only {counted} of {expected} admitted txs committed in 600 s")
    return seen


def join(net: Localnet, state_sync: bool) -> Join:
    """Add a node, start it, time it until its app has the validators' height at start."""
    index = net.add_node(state_sync=state_sync)
    node = net.nodes[index]
    target = height_of(net.nodes[0].rpc)
    t0 = time.monotonic()
    net.start_node(index)
    db_path = node.home / "medchain" / "chain.db"
    db: ChainDB | None = None
    deadline = t0 + JOIN_TIMEOUT_S
    while time.monotonic() < deadline:
        if db is None and db_path.exists():
            db = ChainDB(db_path)
        if db is not None and db.height >= target:
            break
        time.sleep(0.2)
    else:
        raise SystemExit(f"node {index} did not reach height {target} in {JOIN_TIMEOUT_S:.0f} s")
    seconds = time.monotonic() - t0
    assert db is not None
    reached, base = db.height, db.snapshot_base
    # Agreement: the app hashes this node's app computed (or restored) at its last
    # heights are those in the validators' signed headers.
    while height_of(net.nodes[1].rpc) < reached + 1:
        time.sleep(0.2)
    heights = [h for h in (base, reached - 1, reached) if h is not None and h >= 0]
    agrees = True
    for h in heights:
        roots = db.roots(h)
        agrees &= roots is not None and roots["app_hash"] == header_app_hash(net.nodes[1].rpc, h)
    db.close()
    net.stop_node(index)
    return Join(
        "state sync" if state_sync else "block sync from genesis",
        seconds,
        target,
        reached,
        base,
        agrees,
    )


def snapshot_lines(net: Localnet) -> list[str]:
    """What node 0's app logged about the snapshots it wrote."""
    text = (net.nodes[0].home / "abci.log").read_text(errors="replace")
    return re.findall(r"snapshot at height \d+: .*", text)


def run(txs: int, interval: int, root: Path) -> dict[str, Any]:
    """The whole benchmark in `root`; returns its results."""
    net = Localnet(root / "localnet")
    net.create(NODES, FIRST_IP, snapshot_interval=interval)
    try:
        net.up()
        net.wait_serving(120)
        stderr.print(f"signing {txs} txs")
        with ThreadPoolExecutor(SIGN_WORKERS) as pool:
            load = list(pool.map(patient_registration, [net.chain_id] * txs, chunksize=64))
        start_height = height_of(net.nodes[0].rpc)
        t0 = time.monotonic()
        admitted = send_all(net, load)
        last = wait_committed(net, admitted, start_height)
        load_s = time.monotonic() - t0
        stderr.print(f"{admitted} txs committed by height {last} in {load_s:.1f} s")
        snap = (last // interval + 1) * interval  # the first snapshot holding them all
        while height_of(net.nodes[0].rpc) < snap + 3:
            time.sleep(0.5)
        stderr.print("joining by state sync")
        synced = join(net, state_sync=True)
        stderr.print("joining by block sync from genesis")
        replayed = join(net, state_sync=False)
        return {
            "txs": txs,
            "admitted": admitted,
            "load_seconds": round(load_s, 2),
            "load_last_height": last,
            "snapshot_interval": interval,
            "snapshots": snapshot_lines(net)[-3:],
            "joins": [asdict(synced), asdict(replayed)],
            "speedup": round(replayed.seconds / synced.seconds, 2),
        }
    finally:
        net.down()


def print_table(result: dict[str, Any]) -> None:
    """The two joins side by side."""
    table = Table(
        title=f"A fifth node joins after {result['admitted']} txs "
        f"(committed by height {result['load_last_height']}, "
        f"snapshots every {result['snapshot_interval']} heights)"
    )
    for col in (
        "join by",
        "seconds",
        "validators' height",
        "node reached",
        "from snapshot",
        "app hash",
    ):
        table.add_column(col)
    for j in result["joins"]:
        table.add_row(
            j["mode"],
            f"{j['seconds']:.1f}",
            str(j["start_height"]),
            str(j["reached_height"]),
            "-" if j["snapshot_height"] is None else str(j["snapshot_height"]),
            "agrees" if j["app_hash_agrees"] else "DIFFERS",
        )
    Console().print(table)
    Console().print(
        f"replay from genesis took {result['speedup']}x the time of state sync "
        f"(state sync pays a fixed {DISCOVERY_S} s snapshot discovery)"
    )
    for line in result["snapshots"]:
        Console().print(f"node 0: {line}")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, run once, print a table or JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=DEFAULT_TXS)
    parser.add_argument("--interval", type=int, default=DEFAULT_INTERVAL, help="snapshot heights")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="medchain-state-sync-"))
    try:
        result = run(args.txs, args.interval, root)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)
    return 0 if all(j["app_hash_agrees"] for j in result["joins"]) else 1


if __name__ == "__main__":
    sys.exit(main())
