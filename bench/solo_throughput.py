"""Solo-engine throughput against the raw SM2 verify rate, measured in one run.

The full path is what a node does for every transaction: CheckTx (decode and
SM2 verify on the submitter's thread, nonce check under the mempool lock),
then block execution (apply the identity contract) and one SQLite commit per
block (synchronous=FULL). The load is self-registration of fresh patients:
every tx has its own key and nonce 0, so every tx verifies, applies and writes
state. All txs are signed before the clock starts.

The baseline is the same library's SM2 verify (OpenSSL through
medchain.crypto) on one of the same tx bodies, single thread, then two.
`ratio` = tx_per_s / sm2_verify_per_s: 1.0 would mean the ledger commits txs
as fast as one core can verify their signatures.

    .venv/bin/python bench/solo_throughput.py
    .venv/bin/python bench/solo_throughput.py --json
    .venv/bin/python bench/solo_throughput.py --profile /tmp/solo.pstats
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from medchain import crypto
from medchain.consensus.application import Application
from medchain.consensus.solo import SoloEngine
from medchain.core.genesis import parse_genesis
from medchain.core.tx import build_tx, decode_tx, tx_id_of
from medchain.exceptions import Code, InvalidTransaction
from medchain.storage.chain_db import ChainDB

CHAIN_ID = "bench-solo"
DEFAULT_TXS = 4000
DEFAULT_SUBMITTERS = 2
# Chosen by sweeping interval x block size x submitters on the 2-core machine;
# see bench/README.md for the numbers.
DEFAULT_BLOCK_INTERVAL = 0.05
DEFAULT_MAX_BLOCK_TXS = 500
DEFAULT_VERIFY_SECONDS = 3.0
SIGN_WORKERS = 2
COMMIT_TIMEOUT_S = 600.0
POLL_S = 0.002
PRODUCER_THREAD = "solo-producer"
COLD_KEYS = 5000  # more than the 4096 public keys openssl_sm2 caches
QUIET_SCALING = 1.6  # 2-thread verify below this multiple of 1 thread: a core was busy

stderr = Console(stderr=True)


@dataclass(frozen=True)
class SignedLoad:
    """Pre-signed wire bytes and their tx ids, in submission order."""

    raws: tuple[bytes, ...]
    tx_ids: tuple[bytes, ...]


Signed = tuple[bytes, bytes, bytes]  # (public key, message, signature) for crypto.verify


@dataclass(frozen=True)
class EngineRun:
    """What one timed run of the solo engine did."""

    txs: int
    seconds: float
    submit_seconds: float
    blocks: int
    committed_ok: int
    failures: Counter[str]
    cpu_seconds: float
    producer_cpu_seconds: float | None

    @property
    def tx_per_s(self) -> float:
        return self.committed_ok / self.seconds

    @property
    def admit_per_s(self) -> float:
        return self.txs / self.submit_seconds

    @property
    def cores_used(self) -> float:
        return self.cpu_seconds / self.seconds


# -- load ---------------------------------------------------------------------


def _sign_registration(_: int) -> tuple[bytes, bytes]:
    key = crypto.generate_keypair()
    raw = build_tx(
        key, chain_id=CHAIN_ID, contract="identity", action="register_patient", payload={}, nonce=0
    )
    return raw, tx_id_of(raw)


def sign_load(n: int, cold: int, progress: Progress) -> tuple[SignedLoad, list[Signed]]:
    """N self-registrations for the engine and `cold` more for the cold-key baseline.

    Every tx has a fresh SM2 key; signing runs on SIGN_WORKERS threads
    (OpenSSL releases the GIL).
    """
    task = progress.add_task("signing txs", total=n + cold)
    pairs: list[tuple[bytes, bytes]] = []
    with ThreadPoolExecutor(SIGN_WORKERS) as pool:
        for pair in pool.map(_sign_registration, range(n + cold), chunksize=64):
            pairs.append(pair)
            if len(pairs) % 100 == 0 or len(pairs) == n + cold:
                progress.update(task, completed=len(pairs))
    load = SignedLoad(tuple(r for r, _ in pairs[:n]), tuple(i for _, i in pairs[:n]))
    return load, [verify_args(raw) for raw, _ in pairs[n:]]


def verify_args(raw: bytes) -> Signed:
    """What CheckTx hands to crypto.verify for this tx."""
    tx = decode_tx(raw)
    return tx.envelope.signer, tx.body, tx.signature


# -- SM2 baseline ---------------------------------------------------------------


def verify_rate(samples: Sequence[Signed], seconds: float, threads: int) -> float:
    """crypto.verify calls per second, cycling through `samples`, summed over `threads`."""
    if not all(crypto.verify("sm", *sample) for sample in samples[:1]):
        raise SystemExit("baseline: the sample signature does not verify")
    counts = [0] * threads
    start = threading.Barrier(threads + 1)

    def loop(slot: int) -> None:
        i = slot * len(samples) // threads
        start.wait()
        deadline = time.perf_counter() + seconds
        done = 0
        while time.perf_counter() < deadline:
            for _ in range(25):
                crypto.verify("sm", *samples[i % len(samples)])
                i += 1
            done += 25
        counts[slot] = done

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - t0)


@dataclass(frozen=True)
class Baseline:
    """SM2 verify rates of medchain.crypto on tx bodies of the benchmark's size."""

    same_key: float
    cold_key: float
    same_key_2threads: float


def measure_baseline(load: SignedLoad, cold: Sequence[Signed], seconds: float) -> Baseline:
    """One key verified over and over (the library's raw rate), then fresh keys.

    openssl_sm2 caches parsed public keys, so a repeated key skips parsing; a
    self-registration's key is new, as in the cold pool, which is larger than
    the cache so cycling through it never hits.
    """
    stderr.print(f"[dim]SM2 verify baseline: 3 x {seconds:g} s…[/dim]")
    one = [verify_args(load.raws[0])]
    return Baseline(
        same_key=verify_rate(one, seconds, threads=1),
        cold_key=verify_rate(cold, seconds, threads=1),
        same_key_2threads=verify_rate(one, seconds, threads=2),
    )


# -- the engine run -------------------------------------------------------------


@dataclass
class Submitters:
    """Shared bookkeeping of the submitter threads (one slot per thread)."""

    submitted: list[int]
    finished: list[float]
    last_admitted: list[bytes | None]
    refused: dict[bytes, str]
    crashed: list[BaseException]


def _submit_all(
    engine: SoloEngine,
    share: Sequence[tuple[bytes, bytes]],
    start: threading.Barrier,
    book: Submitters,
    slot: int,
) -> None:
    start.wait()
    try:
        for raw, tx_id in share:
            while True:
                try:
                    engine.submit(raw)
                except InvalidTransaction as e:
                    if e.code == Code.MEMPOOL_FULL:
                        time.sleep(0.005)
                        continue
                    book.refused[tx_id] = f"CheckTx {e.code.name}"
                else:
                    book.last_admitted[slot] = tx_id
                break
            book.submitted[slot] += 1
    except BaseException as e:  # a node fault: make the main thread stop, not time out
        book.crashed.append(e)
        raise
    finally:
        book.finished[slot] = time.perf_counter()


def _thread_cpu_seconds(name: str) -> float | None:
    """CPU time of a live thread found by name (Linux /proc), None elsewhere."""
    thread = next((t for t in threading.enumerate() if t.name == name), None)
    if thread is None or thread.native_id is None:
        return None
    try:
        stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_committed(engine: SoloEngine, last_ids: Sequence[bytes]) -> None:
    """Return once every submitter's last admitted tx is in a committed block.

    The mempool takes txs oldest first, so a submitter's last admitted tx
    commits after all of its earlier ones. tx_location is the index lookup of tx_result
    without decoding the whole block.
    """
    deadline = time.monotonic() + COMMIT_TIMEOUT_S
    pending = list(last_ids)
    while pending:
        if engine.failure is not None:
            raise SystemExit(f"block production failed: {engine.failure!r}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(pending)} txs not committed after {COMMIT_TIMEOUT_S:.0f}s")
        pending = [i for i in pending if engine.app.db.tx_location(i) is None]
        if pending:
            time.sleep(POLL_S)


def _committed_codes(db: ChainDB) -> dict[bytes, Code]:
    codes: dict[bytes, Code] = {}
    for height in range(1, db.height + 1):
        block = db.block(height)
        if block is None:
            raise SystemExit(f"block {height} is missing from the store")
        for result in block["results"]:
            codes[result.tx_id] = result.code
    return codes


def run_engine(
    load: SignedLoad, submitters: int, block_interval: float, max_block_txs: int, progress: Progress
) -> EngineRun:
    """Submit the load from `submitters` threads; time first submit to last commit."""
    admin = crypto.generate_keypair()
    genesis = parse_genesis(
        {
            "chain_id": CHAIN_ID,
            "genesis_time_ms": 0,
            "consortium_admins": [
                {"name": "root", "suite": "sm", "public_key": admin.public.hex()}
            ],
            "params": {"max_block_txs": max_block_txs},
        }
    )
    pairs = list(zip(load.raws, load.tx_ids, strict=True))
    shares = [pairs[i::submitters] for i in range(submitters)]
    book = Submitters([0] * submitters, [0.0] * submitters, [None] * submitters, {}, [])
    task = progress.add_task("submit → commit", total=len(load.raws))
    with tempfile.TemporaryDirectory(prefix="medchain-bench-") as tmp:
        db = ChainDB(Path(tmp) / "chain.db")
        app = Application(db)
        app.init_chain(genesis)
        engine = SoloEngine(app, block_interval=block_interval)
        start = threading.Barrier(submitters + 1)
        threads = [
            threading.Thread(
                target=_submit_all, name=f"submitter-{i}", args=(engine, shares[i], start, book, i)
            )
            for i in range(submitters)
        ]
        engine.start()
        for t in threads:
            t.start()
        try:
            producer_cpu0 = _thread_cpu_seconds(PRODUCER_THREAD)
            start.wait()
            t0, cpu0 = time.perf_counter(), time.process_time()
            while any(t.is_alive() for t in threads):
                progress.update(task, completed=sum(book.submitted))
                time.sleep(0.1)
            progress.update(task, completed=sum(book.submitted))
            if book.crashed:
                raise SystemExit(f"a submitter crashed: {book.crashed[0]!r}")
            _wait_committed(engine, [i for i in book.last_admitted if i is not None])
            seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            producer_cpu1 = _thread_cpu_seconds(PRODUCER_THREAD)
        finally:
            for t in threads:
                t.join()
            engine.stop()
        codes = _committed_codes(db)
        blocks = db.height
        db.close()

    failures: Counter[str] = Counter()
    for tx_id in load.tx_ids:
        code = codes.get(tx_id)
        if code == Code.OK:
            continue
        if code is not None:
            failures[f"block {code.name}"] += 1
        else:
            failures[book.refused.get(tx_id, "not committed")] += 1
    ok = len(load.tx_ids) - sum(failures.values())
    producer_cpu = (
        None if producer_cpu0 is None or producer_cpu1 is None else producer_cpu1 - producer_cpu0
    )
    return EngineRun(
        len(load.raws), seconds, max(book.finished) - t0, blocks, ok, failures, cpu, producer_cpu
    )


# -- profiling ------------------------------------------------------------------


_WAITS = ("acquire", "__enter__", "wait", "sleep")


@contextmanager
def profile_threads(path: Path | None) -> Iterator[None]:
    """cProfile every thread started inside (plain cProfile sees only main)."""
    if path is None:
        yield
        return
    profiles: list[tuple[str, cProfile.Profile]] = []

    def bootstrap(frame: FrameType, event: str, arg: Any) -> None:
        sys.setprofile(None)
        prof = cProfile.Profile()
        profiles.append((threading.current_thread().name, prof))
        prof.enable()

    threading.setprofile(bootstrap)
    try:
        yield
    finally:
        threading.setprofile(None)
        per_thread: list[tuple[str, pstats.Stats]] = []
        for name, prof in profiles:
            prof.create_stats()
            per_thread.append((name, pstats.Stats(prof)))
        stats = pstats.Stats(*(prof for _, prof in profiles))
        stats.dump_stats(path)
        print_threads(per_thread)
        print_hot_spots(stats)
        stderr.print(f"[dim]profile of {len(profiles)} threads written to {path}[/dim]")


def _entries(stats: pstats.Stats) -> dict[tuple[str, int, str], tuple[Any, ...]]:
    entries: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    return entries


def print_threads(per_thread: Sequence[tuple[str, pstats.Stats]]) -> None:
    """Per thread: time running vs. blocked on locks, conditions and sleeps."""
    table = Table(title="threads (profiled; cProfile slows Python code, not OpenSSL)")
    for col in ("thread", "total s", "blocked s", "busy s"):
        table.add_column(col, justify="left" if col == "thread" else "right")
    for name, stats in per_thread:
        entries = _entries(stats)
        total = sum(e[2] for e in entries.values())
        blocked = sum(
            e[2]
            for (_, _, func), e in entries.items()
            if func.startswith("<") and any(w in func for w in _WAITS)
        )
        table.add_row(name, f"{total:.2f}", f"{blocked:.2f}", f"{total - blocked:.2f}")
    stderr.print(table)


def print_hot_spots(stats: pstats.Stats, top: int = 20) -> None:
    """Functions by own time (all threads), with their share of profiled time."""
    entries = _entries(stats)
    total = sum(e[2] for e in entries.values()) or 1.0
    table = Table(title="hot spots (all threads, by own time; blocked time included)")
    for col in ("function", "calls", "own s", "own %", "cum s"):
        table.add_column(col, justify="left" if col == "function" else "right")
    ranked = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    for (file, line, func), (_, ncalls, tottime, cumtime, _) in ranked:
        where = file.split("/src/")[-1] if "/src/" in file else Path(file).name
        table.add_row(
            f"{where}:{line}({func})",
            str(ncalls),
            f"{tottime:.2f}",
            f"{100 * tottime / total:.1f}",
            f"{cumtime:.2f}",
        )
    stderr.print(table)


# -- report ---------------------------------------------------------------------


def report(run: EngineRun, base: Baseline, args: argparse.Namespace) -> None:
    table = Table(title=f"MedChain solo engine: {run.txs} patient registrations")
    table.add_column("measure")
    table.add_column("per second", justify="right")
    table.add_column("notes")
    table.add_row(
        "committed txs (full path)",
        f"{run.tx_per_s:,.0f}",
        f"{args.submitters} submitters, {run.blocks} blocks, {run.seconds:.2f} s",
    )
    table.add_row(
        "  CheckTx admission",
        f"{run.admit_per_s:,.0f}",
        f"all submitted in {run.submit_seconds:.2f} s",
    )
    producer = (
        ""
        if run.producer_cpu_seconds is None
        else f", block producer {run.producer_cpu_seconds / run.seconds:.2f}"
    )
    table.add_row("  CPU cores busy", f"{run.cores_used:.2f}", f"whole process{producer}")
    table.add_row(
        "SM2 verify, 1 thread (baseline)", f"{base.same_key:,.0f}", "one key, parsed key cached"
    )
    table.add_row(
        "SM2 verify, 1 thread, new keys",
        f"{base.cold_key:,.0f}",
        f"{COLD_KEYS} keys in turn, as CheckTx sees them",
    )
    table.add_row(
        "SM2 verify, 2 threads",
        f"{base.same_key_2threads:,.0f}",
        f"one key, {base.same_key_2threads / base.same_key:.2f}x one thread",
    )
    table.add_row("ratio tx / verify (baseline)", f"{run.tx_per_s / base.same_key:.2f}", "")
    table.add_row("ratio tx / verify (new keys)", f"{run.tx_per_s / base.cold_key:.2f}", "")
    Console(width=max(Console().width, 100)).print(table)
    stderr.print(
        f"[dim]block_interval={args.block_interval}s max_block_txs={args.max_block_txs}[/dim]"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--txs", type=int, default=DEFAULT_TXS, help="transactions to commit")
    p.add_argument(
        "--submitters", type=int, default=DEFAULT_SUBMITTERS, help="threads calling engine.submit"
    )
    p.add_argument(
        "--block-interval",
        type=float,
        default=DEFAULT_BLOCK_INTERVAL,
        help="seconds the oldest pending tx may wait for a block",
    )
    p.add_argument(
        "--max-block-txs",
        type=int,
        default=DEFAULT_MAX_BLOCK_TXS,
        help="genesis param: txs per block",
    )
    p.add_argument(
        "--verify-seconds",
        type=float,
        default=DEFAULT_VERIFY_SECONDS,
        help="duration of each SM2 baseline measurement",
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="PSTATS",
        help="cProfile all threads of the engine run, write pstats here",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = p.parse_args(argv)
    if args.txs < 1 or args.submitters < 1 or args.max_block_txs < 1:
        p.error("--txs, --submitters and --max-block-txs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    columns: list[ProgressColumn] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=stderr, refresh_per_second=4) as progress:
        load, cold = sign_load(args.txs, COLD_KEYS, progress)
        with profile_threads(args.profile):
            run = run_engine(
                load, args.submitters, args.block_interval, args.max_block_txs, progress
            )
    base = measure_baseline(load, cold, args.verify_seconds)

    if args.json:
        print(
            json.dumps(
                {
                    "tx_per_s": round(run.tx_per_s, 1),
                    "sm2_verify_per_s": round(base.same_key, 1),
                    "ratio": round(run.tx_per_s / base.same_key, 3),
                    "sm2_verify_2threads_per_s": round(base.same_key_2threads, 1),
                    "sm2_verify_new_keys_per_s": round(base.cold_key, 1),
                    "ratio_new_keys": round(run.tx_per_s / base.cold_key, 3),
                    "checktx_admit_per_s": round(run.admit_per_s, 1),
                    "cores_busy": round(run.cores_used, 2),
                    "producer_cores_busy": (
                        None
                        if run.producer_cpu_seconds is None
                        else round(run.producer_cpu_seconds / run.seconds, 2)
                    ),
                    "txs": run.txs,
                    "committed_ok": run.committed_ok,
                    "failures": sum(run.failures.values()),
                    "blocks": run.blocks,
                    "seconds": round(run.seconds, 3),
                    "submitters": args.submitters,
                    "block_interval": args.block_interval,
                    "max_block_txs": args.max_block_txs,
                    "tx_bytes": len(load.raws[0]),
                    "profiled": args.profile is not None,
                }
            )
        )
    else:
        report(run, base, args)

    if base.same_key_2threads < QUIET_SCALING * base.same_key:
        scaling = base.same_key_2threads / base.same_key
        stderr.print(
            f"[yellow]warning: 2 threads verify only {scaling:.2f}x one "
            "thread; another process is probably using a core, so every rate here "
            "is low[/yellow]"
        )
    if run.failures:
        stderr.print(
            f"[bold red]FAILED: {sum(run.failures.values())} of {run.txs} txs did not "
            f"commit with code 0: {dict(run.failures)}[/bold red]"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
