"""MedChain on a 4-validator CometBFT localnet against CometBFT's kvstore, in one run.

Two networks, built by medchain.network.localnet with the same config.toml choices
and genesis params, each on its own loopback range (127.0.6.x MedChain,
127.0.7.x kvstore), run one after the other: MedChain (Python ABCI app
beside each CometBFT, signed txs) and CometBFT's built-in in-memory kvstore
(no app process, `key=value` txs of the same size): the engine's ceiling.

The same load generator drives both: `--senders` threads with one keep-alive
HTTP connection each, spread round-robin over the nodes, call
`broadcast_tx_sync` (the tx is back from CheckTx before the next is sent),
as fast as accepted or at `--rate` txs/s. Every tx is signed before the
clock starts (MedChain: a fresh patient self-registration each).

Latency, as in CometBFT's QA reports, comes from the committed blocks read
after the run, all on this machine's clock: commit time of the tx's block
minus the tx's send time. The commit time of height H is when the +2/3
quorum of H's precommits was cast (their timestamps, from `commit?height=H`).
The QA reports use the block header time instead, which in v0.38 (BFT time)
is the median precommit time of H-1, about one block earlier; it is given too
as `*_latency_header_s`. Throughput is txs committed with code 0 over first
send to last commit.

The reachable limit on this machine, from the same run: every validator runs
CometBFT and verifies every tx's SM2 signature once (a new key each), so
`limit_tx_per_s` = cores / (nodes x (kvstore's CometBFT CPU per committed tx
per node + one SM2 verify with key parsing, timed here on fresh keys)), and
`ratio_to_limit` = MedChain tx/s / limit. CPU per committed tx of each
process kind (CometBFT, MedChain ABCI app) comes from /proc/<pid>/stat.
`--profile DIR` runs MedChain's apps under cProfile (bench/abci_profile) and
prints where their CPU goes per tx; that run's throughput is not comparable.

    .venv/bin/python bench/localnet_throughput.py            # table, progress on stderr
    .venv/bin/python bench/localnet_throughput.py --json     # one JSON object on stdout
    .venv/bin/python bench/localnet_throughput.py --only medchain --profile /tmp/prof
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import json
import math
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from common import patient_registration, percentile  # bench/common.py
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
from medchain.core.genesis import Params
from medchain.core.tx import decode_tx
from medchain.network import cometbft as cmt
from medchain.network.localnet import Localnet, rpc

NODES = 4
MEDCHAIN_FIRST_IP = "127.0.6.1"
KVSTORE_FIRST_IP = "127.0.7.1"
# Defaults chosen by the sweep in bench/README.md (2-core machine).
DEFAULT_TXS = 4000
DEFAULT_SENDERS = 16
DEFAULT_RATE = 0.0  # 0: as fast as the nodes accept
DEFAULT_BROADCAST = "sync"
DEFAULT_TIMEOUT_COMMIT = "300ms"
DEFAULT_MAX_BLOCK_TXS = 5000
SIGN_WORKERS = 2
READY_TIMEOUT_S = 90.0
SENDER_JOIN_S = 5.0
STALL_TIMEOUT_S = 30.0  # give up waiting for commits after this long without one
POLL_S = 0.5
RPC_TIMEOUT_S = 30.0
COMMIT_FLAG = 2  # BlockIDFlagCommit in a commit's signatures
DEFAULT_VERIFY_SAMPLES = 1000  # fresh keys timed for the SM2 verify in the limit
PROFILE_HOOK = Path(__file__).resolve().parent / "abci_profile"  # its sitecustomize.py
PROFILE_ENV = "MEDCHAIN_BENCH_PROFILE"
PROFILE_TOP = 30  # functions shown, by own time

stderr = Console(stderr=True)


@dataclass(frozen=True)
class Settings:
    """What both networks share: load shape, consensus timing and chain params."""

    txs: int
    senders: int
    rate: float  # offered txs/s over all senders; 0 = as fast as accepted
    broadcast: str  # sync or async
    timeout_commit: str
    max_block_txs: int
    extra_config: dict[tuple[str, str], str]

    @property
    def config(self) -> dict[tuple[str, str], str]:
        """config.toml settings on top of medchain.network.cometbft.CONSENSUS_CONFIG."""
        return {("consensus", "timeout_commit"): f'"{self.timeout_commit}"', **self.extra_config}

    @property
    def params(self) -> Params:
        return Params(max_block_txs=self.max_block_txs)


# -- load -------------------------------------------------------------------------


def sign_medchain_load(chain_id: str, n: int, progress: Progress) -> list[bytes]:
    """N patient self-registrations, each from a fresh SM2 key (valid and independent)."""
    task = progress.add_task("signing MedChain txs", total=n)
    txs: list[bytes] = []
    with ThreadPoolExecutor(SIGN_WORKERS) as pool:
        for raw in pool.map(patient_registration, [chain_id] * n, chunksize=64):
            txs.append(raw)
            if len(txs) % 100 == 0 or len(txs) == n:
                progress.update(task, completed=len(txs))
    return txs


def kvstore_load(n: int, size: int) -> list[bytes]:
    """N unique `key=value` txs of `size` bytes (one '=', no ':', as kvstore wants)."""
    txs = []
    for i in range(n):
        head = f"bench{i:08d}="
        txs.append((head + "v" * max(1, size - len(head))).encode())
    return txs


def sm2_verify_cpu_seconds(samples: int, progress: Progress) -> float:
    """CPU seconds of one `crypto.verify` of a self-registration, key parsing included.

    Fresh registrations (a new key each, as in the load), verified once each on
    this thread with no network running; the key cache never holds them, since
    this process has verified none before. Timed with the thread's CPU clock.
    """
    task = progress.add_task("signing txs for the SM2 verify timing", total=samples)
    args = []
    with ThreadPoolExecutor(SIGN_WORKERS) as pool:
        for raw in pool.map(patient_registration, ["chain-sm2-timing"] * samples, chunksize=64):
            tx = decode_tx(raw)
            args.append((tx.envelope.suite, tx.envelope.signer, tx.body, tx.signature))
            progress.advance(task)
    progress.remove_task(task)
    t0 = time.thread_time()
    ok = sum(crypto.verify(*a) for a in args)
    spent = time.thread_time() - t0
    if ok != samples:
        raise SystemExit(f"SM2 timing: {samples - ok} of {samples} signatures did not verify")
    return spent / samples


@dataclass(frozen=True)
class Limit:
    """What this machine can commit at most: its cores over the CPU every tx needs."""

    cores: int
    nodes: int
    kvstore_cpu_s_per_tx_per_node: float  # CometBFT alone, from the kvstore run
    sm2_verify_s: float  # one verify with key parsing, this run

    @property
    def tx_per_s(self) -> float:
        """cores / (nodes x (CometBFT's CPU per tx per node + one SM2 verify))."""
        per_tx = self.nodes * (self.kvstore_cpu_s_per_tx_per_node + self.sm2_verify_s)
        return self.cores / per_tx if per_tx > 0 else math.nan


def cores() -> int:
    """CPUs this process may run on (what the nodes it starts share)."""
    return len(os.sched_getaffinity(0))


# -- the load generator -------------------------------------------------------------


class RpcConnection:
    """One keep-alive HTTP connection to a node's JSON-RPC endpoint (light on CPU)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 26657
        self._conn = http.client.HTTPConnection(self._host, self._port, timeout=RPC_TIMEOUT_S)
        self._id = 0

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The whole JSON-RPC response (with `result` or `error`)."""
        self._id += 1
        body = json.dumps(
            {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
        ).encode()
        try:
            self._conn.request("POST", "/", body, {"Content-Type": "application/json"})
            data = self._conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            self._conn.close()  # the next call reconnects
            raise
        reply: dict[str, Any] = json.loads(data)
        return reply

    def close(self) -> None:
        self._conn.close()


@dataclass
class SendLog:
    """What the generator saw, by tx index (shared by the sender threads)."""

    sent_at: list[float]  # wall clock, the clock CometBFT's timestamps use; 0.0 = not sent
    refused: dict[int, str] = field(default_factory=dict)  # not admitted: why
    done: list[int] = field(default_factory=list)  # txs handled, per sender
    finished_at: list[float] = field(default_factory=list)  # wall clock, per sender
    crashed: list[BaseException] = field(default_factory=list)


def _refusal(reply: dict[str, Any]) -> str | None:
    if "error" in reply:
        err = reply["error"]
        return f"RPC error: {str(err.get('data') or err.get('message'))[:60]}"
    code = int(reply.get("result", {}).get("code", 0))
    return None if code == 0 else f"CheckTx code {code}"


def _send_share(
    url: str,
    method: str,
    slot: int,
    indices: Sequence[int],
    encoded: Sequence[str],
    t0: float,
    rate: float,
    log: SendLog,
    start: threading.Barrier,
    stop: threading.Event,
) -> None:
    conn = RpcConnection(url)
    try:
        start.wait()
        for i in indices:
            if rate > 0:
                delay = t0 + i / rate - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return
            if stop.is_set():
                return
            log.sent_at[i] = time.time()
            try:
                why = _refusal(conn.call(method, {"tx": encoded[i]}))
            except (OSError, http.client.HTTPException) as e:
                why = f"transport: {type(e).__name__}"
            if why is not None:
                log.refused[i] = why
            log.done[slot] += 1
    except BaseException as e:  # let the main thread stop instead of waiting
        log.crashed.append(e)
        raise
    finally:
        log.finished_at[slot] = time.time()
        conn.close()


class CommitCounter:
    """Counts txs in blocks committed after `start_height` (cheap `blockchain` metas)."""

    def __init__(self, url: str, start_height: int) -> None:
        self.url = url
        self.scanned = start_height
        self.txs = 0
        self.heights_with_txs: list[int] = []

    def poll(self) -> int:
        """Scan newly committed heights; returns the total tx count so far."""
        latest = int(rpc(self.url, "status")["sync_info"]["latest_block_height"])
        while self.scanned < latest:
            top = min(latest, self.scanned + 20)
            metas = rpc(self.url, "blockchain", minHeight=self.scanned + 1, maxHeight=top)
            for meta in metas["block_metas"]:
                n = int(meta["num_txs"])
                if n:
                    self.txs += n
                    self.heights_with_txs.append(int(meta["header"]["height"]))
            self.scanned = top
        return self.txs


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc), 0.0 if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (Linux /proc/stat), 0.0 elsewhere."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _node_cpu(net: Localnet) -> dict[str, float]:
    """CPU seconds so far of every node's processes, summed by kind (abci, cometbft)."""
    total: dict[str, float] = {}
    for node in net.nodes:
        for kind, pid in net.pids(node.index).items():
            total[kind] = total.get(kind, 0.0) + _cpu_seconds(pid)
    return total


@dataclass(frozen=True)
class LoadRun:
    """The generator's side of one run."""

    log: SendLog
    start_height: int
    heights_with_txs: list[int]
    window_seconds: float
    cpu_seconds: dict[str, float]  # abci, cometbft, generator, machine over the window


def drive_load(
    net: Localnet,
    txs: Sequence[bytes],
    settings: Settings,
    label: str,
    progress: Progress,
) -> LoadRun:
    """Send every tx, then wait until as many txs are committed as were admitted."""
    encoded = [base64.b64encode(t).decode() for t in txs]
    urls = [n.rpc for n in net.nodes]
    senders, rate = settings.senders, settings.rate
    log = SendLog(sent_at=[0.0] * len(txs), done=[0] * senders, finished_at=[0.0] * senders)
    start_height = int(rpc(urls[0], "status")["sync_info"]["latest_block_height"])
    counter = CommitCounter(urls[0], start_height)
    stop = threading.Event()
    start = threading.Barrier(senders + 1)
    t0 = time.monotonic() + 0.2
    threads = [
        threading.Thread(
            target=_send_share,
            name=f"sender-{k}",
            args=(
                urls[k % len(urls)],
                f"broadcast_tx_{settings.broadcast}",
                k,
                range(k, len(txs), senders),
                encoded,
                t0,
                rate,
                log,
                start,
                stop,
            ),
            daemon=True,
        )
        for k in range(senders)
    ]
    for t in threads:
        t.start()
    sent = progress.add_task(f"{label}: sent", total=len(txs))
    committed = progress.add_task(f"{label}: committed", total=len(txs))
    try:
        cpu0 = _node_cpu(net)
        wall0, gen0, machine0 = time.monotonic(), time.process_time(), _machine_busy_seconds()
        start.wait()
        last_count, last_change = 0, time.monotonic()
        while True:
            time.sleep(POLL_S)
            if log.crashed:
                raise SystemExit(f"{label}: a sender crashed: {log.crashed[0]!r}")
            sending = any(t.is_alive() for t in threads)
            count = counter.poll()
            progress.update(sent, completed=sum(log.done))
            progress.update(committed, completed=count, total=len(txs) - len(log.refused))
            if count != last_count or sending:
                last_count, last_change = count, time.monotonic()
            if not sending and count >= len(txs) - len(log.refused):
                break
            if time.monotonic() - last_change > STALL_TIMEOUT_S:
                stderr.print(
                    f"[yellow]{label}: no commit for {STALL_TIMEOUT_S:.0f} s; "
                    f"{count} of {len(txs) - len(log.refused)} admitted txs committed"
                )
                break
        window = time.monotonic() - wall0
        cpu1 = _node_cpu(net)
        gen_cpu = time.process_time() - gen0
        machine = _machine_busy_seconds() - machine0
    finally:
        stop.set()
        deadline = time.monotonic() + SENDER_JOIN_S
        for t in threads:  # daemon threads: one stuck in a call cannot keep us alive
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        progress.remove_task(sent)
        progress.remove_task(committed)
    cpu = {k: cpu1.get(k, 0.0) - cpu0.get(k, 0.0) for k in cpu1}
    cpu["generator"] = gen_cpu
    cpu["machine"] = machine  # every process, ours or not, and the kernel
    return LoadRun(log, start_height, counter.heights_with_txs, window, cpu)


# -- reading the committed blocks -------------------------------------------------------


def parse_time(stamp: str) -> float:
    """RFC 3339 with nanoseconds (CometBFT's JSON) to Unix seconds."""
    base, _, frac = stamp.rstrip("Z").partition(".")
    whole = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return whole + (int(frac.ljust(9, "0")[:9]) / 1e9 if frac else 0.0)


@dataclass(frozen=True)
class CommittedBlock:
    """One block holding load txs, as committed."""

    height: int
    header_time: float
    commit_time: float  # when +2/3 of the voting power had precommitted it
    tx_hashes: tuple[bytes, ...]  # SHA-256 of the tx bytes, CometBFT's tx hash
    codes: tuple[int, ...]


def quorum_time(signatures: Sequence[dict[str, Any]], power: dict[str, int]) -> float:
    """Timestamp of the precommit that took the block past 2/3 of the voting power."""
    total = sum(power.values())
    votes = sorted(
        (parse_time(s["timestamp"]), power.get(s["validator_address"], 0))
        for s in signatures
        if s["block_id_flag"] == COMMIT_FLAG
    )
    acc = 0
    for stamp, p in votes:
        acc += p
        if 3 * acc > 2 * total:
            return stamp
    raise SystemExit("a commit without a +2/3 quorum of precommits")


def read_block(url: str, height: int, power: dict[str, int]) -> CommittedBlock:
    """A block's txs, their result codes, header time and commit (quorum) time."""
    block = rpc(url, "block", timeout=RPC_TIMEOUT_S, height=height)["block"]
    results = rpc(url, "block_results", timeout=RPC_TIMEOUT_S, height=height)["txs_results"] or []
    commit = rpc(url, "commit", timeout=RPC_TIMEOUT_S, height=height)["signed_header"]["commit"]
    txs = [base64.b64decode(t) for t in block["data"]["txs"] or []]
    if len(results) != len(txs):
        raise SystemExit(f"height {height}: {len(txs)} txs but {len(results)} results")
    return CommittedBlock(
        height=height,
        header_time=parse_time(block["header"]["time"]),
        commit_time=quorum_time(commit["signatures"], power),
        tx_hashes=tuple(hashlib.sha256(t).digest() for t in txs),
        codes=tuple(int(r.get("code", 0)) for r in results),
    )


def read_blocks(net: Localnet, heights: Sequence[int], progress: Progress) -> list[CommittedBlock]:
    """The blocks at `heights`, from node 0 (validator powers from its current set)."""
    url = net.nodes[0].rpc
    vals = rpc(url, "validators", timeout=RPC_TIMEOUT_S, per_page=100)["validators"]
    power = {v["address"]: int(v["voting_power"]) for v in vals}
    task = progress.add_task("reading blocks", total=len(heights))
    blocks = []
    for h in heights:
        blocks.append(read_block(url, h, power))
        progress.advance(task)
    progress.remove_task(task)
    return blocks


# -- one network ------------------------------------------------------------------------


def _num(x: float, digits: int = 3) -> float | None:
    """Rounded for JSON; None where there was nothing to measure (NaN)."""
    return None if math.isnan(x) else round(x, digits)


@dataclass(frozen=True)
class NetworkRun:
    """The outcome of one network's run."""

    app: str
    txs: int
    tx_bytes: int
    admitted: int
    committed_ok: int
    failures: Counter[str]
    blocks: int
    max_txs_per_block: int
    seconds: float  # first send to last commit
    send_seconds: float  # first send to last sender done
    latencies: list[float]  # commit latency per committed-ok tx, ascending
    header_latencies: list[float]  # QA-report style (block header time), ascending
    window_seconds: float
    cpu_seconds: dict[str, float]

    @property
    def tx_per_s(self) -> float:
        return self.committed_ok / self.seconds if self.seconds > 0 else 0.0

    def latency(self, q: float, header: bool = False) -> float:
        return percentile(self.header_latencies if header else self.latencies, q)

    def cpu_per_tx(self, kind: str, per_node: bool = False) -> float:
        """CPU seconds of one process kind (all nodes, or one) per tx committed ok."""
        if not self.committed_ok:
            return math.nan
        spent = self.cpu_seconds.get(kind, 0.0) / self.committed_ok
        return spent / NODES if per_node else spent

    def to_json(self) -> dict[str, Any]:
        cores = {k: round(v / self.window_seconds, 2) for k, v in self.cpu_seconds.items()}
        return {
            "tx_per_s": round(self.tx_per_s, 1),
            "p50_latency_s": _num(self.latency(0.50)),
            "p95_latency_s": _num(self.latency(0.95)),
            "max_latency_s": _num(self.latency(1.0)),
            "p50_latency_header_s": _num(self.latency(0.50, header=True)),
            "p95_latency_header_s": _num(self.latency(0.95, header=True)),
            "txs": self.txs,
            "tx_bytes": self.tx_bytes,
            "admitted": self.admitted,
            "committed_ok": self.committed_ok,
            "failures": dict(self.failures),
            "blocks": self.blocks,
            "mean_txs_per_block": round(self.committed_ok / self.blocks, 1) if self.blocks else 0,
            "max_txs_per_block": self.max_txs_per_block,
            "seconds": round(self.seconds, 3),
            "send_seconds": round(self.send_seconds, 3),
            "admitted_per_s": round(self.admitted / self.send_seconds, 1)
            if self.send_seconds
            else 0,
            "cores_busy": cores,
            "cpu_ms_per_tx": {
                k: _num(1000 * self.cpu_per_tx(k)) for k in ("abci", "cometbft", "generator")
            },
            "cpu_ms_per_tx_per_node": {
                k: _num(1000 * self.cpu_per_tx(k, per_node=True)) for k in ("abci", "cometbft")
            },
        }


def analyse(
    app: str, txs: Sequence[bytes], load: LoadRun, blocks: Sequence[CommittedBlock]
) -> NetworkRun:
    """Match every tx to its block by SHA-256; latency and throughput of the code-0 ones."""
    where: dict[bytes, tuple[CommittedBlock, int]] = {}
    for b in blocks:
        for h, code in zip(b.tx_hashes, b.codes, strict=True):
            where[h] = (b, code)
    log = load.log
    failures: Counter[str] = Counter()
    latencies, header_latencies = [], []
    last_commit = 0.0
    for i, raw in enumerate(txs):
        if i in log.refused:
            failures[log.refused[i]] += 1
            continue
        if log.sent_at[i] == 0.0:
            failures["not sent"] += 1
            continue
        found = where.get(hashlib.sha256(raw).digest())
        if found is None:
            failures["not committed"] += 1
            continue
        block, code = found
        if code != 0:
            failures[f"block code {code}"] += 1
            continue
        latencies.append(block.commit_time - log.sent_at[i])
        header_latencies.append(block.header_time - log.sent_at[i])
        last_commit = max(last_commit, block.commit_time)
    sent = [t for t in log.sent_at if t > 0]
    first_send = min(sent) if sent else 0.0
    ok = len(latencies)
    return NetworkRun(
        app=app,
        txs=len(txs),
        tx_bytes=round(sum(map(len, txs)) / max(1, len(txs))),
        admitted=len(txs) - len(log.refused),
        committed_ok=ok,
        failures=failures,
        blocks=sum(1 for b in blocks if b.tx_hashes),
        max_txs_per_block=max((len(b.tx_hashes) for b in blocks), default=0),
        seconds=last_commit - first_send if ok else 0.0,
        send_seconds=max(log.finished_at) - first_send if sent else 0.0,
        latencies=sorted(latencies),
        header_latencies=sorted(header_latencies),
        window_seconds=load.window_seconds,
        cpu_seconds=load.cpu_seconds,
    )


def wait_ready(net: Localnet, label: str) -> None:
    """Every node answers, has committed a few blocks and sees all its peers."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with stderr.status(f"{label}: waiting for {NODES} nodes to connect and commit"):
        while time.monotonic() < deadline:
            rows = net.status()
            if all(
                r["height"] is not None and r["height"] >= 2 and r["peers"] == NODES - 1
                for r in rows
            ):
                return
            time.sleep(0.5)
    raise SystemExit(f"{label}: network not ready after {READY_TIMEOUT_S:.0f} s: {net.status()}")


def stop_idle_abci_apps(net: Localnet) -> None:
    """With a built-in app CometBFT never connects to the MedChain app; don't leave it running.

    Localnet.up() starts an ABCI app per node whatever the proxy_app; it only
    sits in accept() here, but the baseline should be CometBFT alone.
    """
    for node in net.nodes:
        net.kill(node.index, "abci", signal.SIGTERM)


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    """Hold off Ctrl-C and SIGTERM while the nodes are being stopped."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _kill_strays(home: Path) -> None:
    """Kill any process still running from this network's directory.

    Localnet.down() stops what pids.json lists; a Ctrl-C inside Localnet.up()
    can land after a process started and before its pid was written.
    """
    needle = str(home).encode() + b"/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(proc.name), 0)


def _profile_env(prefix: Path) -> dict[str, str]:
    """Environment that makes an ABCI app load bench/abci_profile/sitecustomize.py."""
    path = os.pathsep.join(p for p in (str(PROFILE_HOOK), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, PROFILE_ENV: str(prefix)}


def run_network(
    app: str,
    root: Path,
    settings: Settings,
    tx_bytes: int,
    progress: Progress,
    profile: Path | None = None,
) -> tuple[NetworkRun, int]:
    """Create, start, load, read and stop one network; returns the run and its tx size.

    With `profile` (MedChain only), each ABCI app runs under cProfile and writes
    its threads' stats into that directory when stopped.
    """
    first_ip = MEDCHAIN_FIRST_IP if app == "medchain" else KVSTORE_FIRST_IP
    label = "MedChain" if app == "medchain" else "kvstore"
    net = Localnet(root / app)
    net.create(
        NODES,
        first_ip=first_ip,
        params=settings.params,
        extra_config=settings.config,
        builtin_app=None if app == "medchain" else "kvstore",
    )
    if app == "medchain":
        txs = sign_medchain_load(net.chain_id, settings.txs, progress)
    else:
        txs = kvstore_load(settings.txs, tx_bytes)
    try:
        stderr.print(f"[dim]{label}: starting {NODES} nodes on {first_ip}…[/dim]")
        if app == "medchain" and profile is not None:
            for node in net.nodes:
                net.start_node(node.index, _profile_env(profile / f"abci-node{node.index}"))
        else:
            net.up()
        if app != "medchain":
            stop_idle_abci_apps(net)
        wait_ready(net, label)
        load = drive_load(net, txs, settings, label, progress)
        blocks = read_blocks(net, load.heights_with_txs, progress)
    finally:
        with stderr.status(f"{label}: stopping nodes"), _uninterruptible():
            net.down()
            _kill_strays(root / app)
    run = analyse(app, txs, load, blocks)
    return run, run.tx_bytes


# -- profile ---------------------------------------------------------------------------


def _where(func: tuple[str, int, str]) -> str:
    """`path/in/src:line(name)` for a pstats function key, builtins as pstats shows them."""
    filename, line, name = func
    if filename == "~":
        return name
    marker = "/src/medchain/"
    short = filename.split(marker, 1)[1] if marker in filename else filename.rsplit("/", 2)[-1]
    if "site-packages/" in filename:
        short = filename.split("site-packages/", 1)[1]
    return f"{short}:{line}({name})"


def profile_summary(directory: Path, committed: int) -> dict[str, Any]:
    """Merge every app thread's cProfile stats; per tx per node, the top functions.

    Writes the merged stats to DIR/abci.pstats (`python -m pstats` reads it).
    Times are profiled CPU (cProfile's overhead included) divided by the txs
    committed and the number of nodes: every node runs every tx.
    """
    files = sorted(directory.glob("abci-node*.prof"))
    if not files or not committed:
        return {"files": 0}
    stats = pstats.Stats(*map(str, files))
    stats.dump_stats(directory / "abci.pstats")
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    per = 1e6 / (committed * NODES)  # seconds over the run -> µs per tx per node

    def entry(func: tuple[str, int, str], row: tuple[Any, ...]) -> dict[str, Any]:
        _cc, calls, own, cumulative = row[:4]
        return {
            "function": _where(func),
            "calls_per_tx": round(calls / (committed * NODES), 2),
            "own_us_per_tx": round(own * per, 1),
            "cumulative_us_per_tx": round(cumulative * per, 1),
        }

    by_own = sorted(table.items(), key=lambda kv: kv[1][2], reverse=True)[:PROFILE_TOP]
    server = sorted(
        (kv for kv in table.items() if kv[0][0].endswith("consensus/abci/server.py")),
        key=lambda kv: kv[1][3],
        reverse=True,
    )[: PROFILE_TOP // 2]
    return {
        "files": len(files),
        "pstats": str(directory / "abci.pstats"),
        "profiled_us_per_tx_per_node": round(sum(r[2] for r in table.values()) * per, 1),
        "top_own_time": [entry(f, r) for f, r in by_own],
        "abci_server_cumulative": [entry(f, r) for f, r in server],
    }


def print_profile(summary: dict[str, Any]) -> None:
    """The profile's two lists, µs of profiled CPU per tx per node."""
    if not summary.get("files"):
        stderr.print("[yellow]no profile written by the ABCI apps[/yellow]")
        return
    out = Console(width=max(Console().width, 120))
    for key, title in (
        ("top_own_time", "own time"),
        ("abci_server_cumulative", "consensus/abci/server.py, cumulative"),
    ):
        table = Table(
            title=f"ABCI apps under cProfile, {title}: µs per tx per node "
            f"(all profiled: {summary['profiled_us_per_tx_per_node']:,.0f})"
        )
        for name in ("function", "calls/tx", "own µs", "cumulative µs"):
            table.add_column(name, justify="left" if name == "function" else "right")
        for e in summary[key]:
            table.add_row(
                e["function"],
                f"{e['calls_per_tx']:g}",
                f"{e['own_us_per_tx']:.1f}",
                f"{e['cumulative_us_per_tx']:.1f}",
            )
        out.print(table)
    stderr.print(f"[dim]merged stats: {summary['pstats']}[/dim]")


# -- report --------------------------------------------------------------------------


def _fmt_s(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.2f}"


def limit_of(runs: Sequence[NetworkRun], sm2_verify_s: float) -> Limit | None:
    """The machine's limit, when the kvstore run committed something."""
    kv = next((r for r in runs if r.app == "kvstore"), None)
    if kv is None or not kv.committed_ok or math.isnan(sm2_verify_s):
        return None
    return Limit(cores(), NODES, kv.cpu_per_tx("cometbft", per_node=True), sm2_verify_s)


def print_table(
    runs: Sequence[NetworkRun], settings: Settings, limit: Limit | None, sm2_verify_s: float
) -> None:
    """The two networks side by side on stdout."""
    by_app = {r.app: r for r in runs}
    med, kv = by_app.get("medchain"), by_app.get("kvstore")
    table = Table(
        title=f"{NODES}-validator localnet: {settings.txs} txs, "
        f"{settings.senders} senders, broadcast_tx_{settings.broadcast}"
        f"{f' at {settings.rate:g} tx/s' if settings.rate else ''}, "
        f"timeout_commit {settings.timeout_commit}"
    )
    table.add_column("measure")
    cols = [r for r in (med, kv) if r is not None]
    for r in cols:
        table.add_column(
            "MedChain" if r.app == "medchain" else "kvstore (baseline)", justify="right"
        )
    if med and kv:
        table.add_column("MedChain / kvstore", justify="right")

    def row(name: str, values: list[str], ratio: str = "") -> None:
        table.add_row(name, *values, *([ratio] if med and kv else []))

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b else "—"

    row(
        "committed tx/s",
        [f"{r.tx_per_s:,.0f}" for r in cols],
        ratio(med.tx_per_s, kv.tx_per_s) if med and kv else "",
    )
    row("p50 commit latency s", [_fmt_s(r.latency(0.5)) for r in cols])
    row("p95 commit latency s", [_fmt_s(r.latency(0.95)) for r in cols])
    row("max commit latency s", [_fmt_s(r.latency(1.0)) for r in cols])
    row(
        "p50 latency to header time s (QA style)",
        [_fmt_s(r.latency(0.5, header=True)) for r in cols],
    )
    row(
        "txs sent / admitted / committed ok",
        [f"{r.txs} / {r.admitted} / {r.committed_ok}" for r in cols],
    )
    row("failures", [", ".join(f"{k}: {v}" for k, v in r.failures.items()) or "0" for r in cols])
    row("tx size bytes", [str(r.tx_bytes) for r in cols])
    row(
        "blocks (mean / max txs)",
        [
            f"{r.blocks} ({r.committed_ok / max(1, r.blocks):.0f} / {r.max_txs_per_block})"
            for r in cols
        ],
    )
    row("first send → last commit s", [f"{r.seconds:.2f}" for r in cols])
    row(
        "all sent after s (admitted tx/s)",
        [f"{r.send_seconds:.2f} ({r.admitted / max(r.send_seconds, 1e-9):,.0f})" for r in cols],
    )
    for kind in ("abci", "cometbft", "generator", "machine"):
        row(
            f"cores busy: {'whole machine' if kind == 'machine' else kind}",
            [f"{r.cpu_seconds.get(kind, 0.0) / r.window_seconds:.2f}" for r in cols],
        )

    def ms(x: float) -> str:
        return "—" if math.isnan(x) or x == 0 else f"{1000 * x:.3f}"

    for kind in ("abci", "cometbft"):
        row(
            f"CPU ms per committed tx: {kind}, {NODES} nodes (per node)",
            [
                "—"
                if r.app == "kvstore" and kind == "abci"
                else f"{ms(r.cpu_per_tx(kind))} ({ms(r.cpu_per_tx(kind, per_node=True))})"
                for r in cols
            ],
        )
    row("CPU ms per committed tx: generator", [ms(r.cpu_per_tx("generator")) for r in cols])
    if not math.isnan(sm2_verify_s):
        row(
            "SM2 verify with key parsing, CPU ms (this run)",
            [ms(sm2_verify_s) if r.app == "medchain" else "" for r in cols],
        )
    if limit is not None and med is not None:
        row(
            f"limit tx/s = {limit.cores} cores / ({NODES} × (kvstore CometBFT "
            f"{1000 * limit.kvstore_cpu_s_per_tx_per_node:.3f} + SM2 "
            f"{1000 * limit.sm2_verify_s:.3f} ms))",
            [f"{limit.tx_per_s:,.0f}" if r.app == "medchain" else "" for r in cols],
            f"ratio_to_limit {ratio(med.tx_per_s, limit.tx_per_s)}" if kv else "",
        )
    Console(width=max(Console().width, 110)).print(table)


def cometbft_version() -> str:
    """`cometbft version` of the binary both networks ran."""
    out = subprocess.run([cmt.binary(), "version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def to_json(
    runs: Sequence[NetworkRun],
    settings: Settings,
    seconds: float,
    limit: Limit | None,
    sm2_verify_s: float,
    profile: dict[str, Any] | None,
) -> dict[str, Any]:
    """The required keys first (MedChain's ratios and latencies), then both runs in full."""
    by_app = {r.app: r for r in runs}
    med, kv = by_app.get("medchain"), by_app.get("kvstore")
    limit_tx_per_s = limit.tx_per_s if limit is not None else math.nan
    config = {
        **{f"{s}.{k}": v.strip('"') for (s, k), v in cmt.CONSENSUS_CONFIG.items()},
        **{f"{s}.{k}": v.strip('"') for (s, k), v in settings.config.items()},
    }
    return {
        "medchain_tx_per_s": round(med.tx_per_s, 1) if med else None,
        "kvstore_tx_per_s": round(kv.tx_per_s, 1) if kv else None,
        "ratio": round(med.tx_per_s / kv.tx_per_s, 3) if med and kv and kv.tx_per_s else None,
        "limit_tx_per_s": _num(limit_tx_per_s, 1),
        "ratio_to_limit": _num(med.tx_per_s / limit_tx_per_s) if med and limit else None,
        "limit": {
            "cores": limit.cores,
            "nodes": limit.nodes,
            "kvstore_cometbft_cpu_ms_per_tx_per_node": _num(
                1000 * limit.kvstore_cpu_s_per_tx_per_node
            ),
            "sm2_verify_ms": _num(1000 * limit.sm2_verify_s),
        }
        if limit
        else None,
        "sm2_verify_ms": _num(1000 * sm2_verify_s),
        "medchain_cpu_ms_per_tx_per_node": {
            k: _num(1000 * med.cpu_per_tx(k, per_node=True)) for k in ("abci", "cometbft")
        }
        if med
        else None,
        "kvstore_cpu_ms_per_tx_per_node": {"cometbft": _num(1000 * kv.cpu_per_tx("cometbft", True))}
        if kv
        else None,
        "p50_latency_s": _num(med.latency(0.5)) if med else None,
        "p95_latency_s": _num(med.latency(0.95)) if med else None,
        "kvstore_p50_latency_s": _num(kv.latency(0.5)) if kv else None,
        "kvstore_p95_latency_s": _num(kv.latency(0.95)) if kv else None,
        "medchain": med.to_json() if med else None,
        "kvstore": kv.to_json() if kv else None,
        "config": {
            "nodes": NODES,
            "txs": settings.txs,
            "senders": settings.senders,
            "rate": settings.rate or "max",
            "broadcast": f"broadcast_tx_{settings.broadcast}",
            "max_block_txs": settings.max_block_txs,
            "config_toml": config,
            "cometbft": cometbft_version(),
            "cpus": os.cpu_count(),
        },
        "bench_seconds": round(seconds, 1),
        **({"abci_profile": profile} if profile is not None else {}),
    }


# -- main ------------------------------------------------------------------------------


def _parse_set(item: str) -> tuple[tuple[str, str], str]:
    name, sep, value = item.partition("=")
    section, dot, key = name.rpartition(".")
    if not sep or not dot:
        raise argparse.ArgumentTypeError(f"expected section.key=value, got {item!r}")
    return (section, key), value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line; defaults are the settings bench/README.md explains."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--txs", type=int, default=DEFAULT_TXS, help="txs sent to each network")
    p.add_argument(
        "--senders",
        type=int,
        default=DEFAULT_SENDERS,
        help="sender threads, one keep-alive connection each, round-robin over nodes",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help="offered txs/s over all senders (0: as fast as accepted)",
    )
    p.add_argument(
        "--broadcast",
        choices=("sync", "async"),
        default=DEFAULT_BROADCAST,
        help="broadcast_tx_sync waits for CheckTx on the receiving node; async does not",
    )
    p.add_argument(
        "--timeout-commit",
        default=DEFAULT_TIMEOUT_COMMIT,
        help="consensus.timeout_commit for both networks",
    )
    p.add_argument(
        "--max-block-txs",
        type=int,
        default=DEFAULT_MAX_BLOCK_TXS,
        help="MedChain genesis param max_block_txs",
    )
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        type=_parse_set,
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="extra config.toml setting for both networks, TOML value "
        "(e.g. mempool.recheck=false, mempool.size=5000, "
        "consensus.timeout_propose='\"1s\"')",
    )
    p.add_argument("--only", choices=("medchain", "kvstore"), help="run one network only")
    p.add_argument("--dir", type=Path, help="keep the networks (configs, logs) here")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument(
        "--verify-samples",
        type=int,
        default=DEFAULT_VERIFY_SAMPLES,
        help="fresh-key SM2 verifies timed for the limit (0: skip, no limit)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run MedChain's ABCI apps under cProfile, stats into DIR (slows them)",
    )
    args = p.parse_args(argv)
    if args.txs < 1 or args.senders < 1 or args.rate < 0 or args.verify_samples < 0:
        p.error("--txs and --senders must be at least 1, --rate and --verify-samples not negative")
    if args.profile and args.only == "kvstore":
        p.error("--profile profiles MedChain's apps: not with --only kvstore")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # run the finally blocks that stop the nodes


def main(argv: Sequence[str] | None = None) -> int:
    """Run MedChain, then kvstore; report; exit 1 if any tx did not commit with code 0."""
    args = parse_args(argv)
    settings = Settings(
        args.txs,
        args.senders,
        args.rate,
        args.broadcast,
        args.timeout_commit,
        args.max_block_txs,
        dict(args.settings),
    )
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    root = args.dir or Path(tempfile.mkdtemp(prefix="medchain-bench-localnet-"))
    if args.dir and any((args.dir / app).exists() for app in ("medchain", "kvstore")):
        raise SystemExit(f"{args.dir} already holds a benchmark network; pick an empty --dir")
    columns: list[ProgressColumn] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    runs: list[NetworkRun] = []
    profile: dict[str, Any] | None = None
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        for old in args.profile.glob("abci-node*.prof"):
            old.unlink()
    try:
        with Progress(*columns, console=stderr, refresh_per_second=4) as progress:
            # Before any node runs, so nothing else is on the cores.
            sm2_verify_s = (
                sm2_verify_cpu_seconds(args.verify_samples, progress)
                if args.verify_samples
                else math.nan
            )
            tx_bytes = 0
            if args.only in (None, "medchain"):
                run, tx_bytes = run_network(
                    "medchain", root, settings, 0, progress, profile=args.profile
                )
                runs.append(run)
                if args.profile:
                    profile = profile_summary(args.profile, run.committed_ok)
            if args.only in (None, "kvstore"):
                if not tx_bytes:  # size of a signed registration, without running MedChain
                    tx_bytes = len(patient_registration("chain-XXXXXX"))
                runs.append(run_network("kvstore", root, settings, tx_bytes, progress)[0])
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    seconds = time.monotonic() - started
    limit = limit_of(runs, sm2_verify_s)
    if args.json:
        print(json.dumps(to_json(runs, settings, seconds, limit, sm2_verify_s, profile)))
    else:
        print_table(runs, settings, limit, sm2_verify_s)
        if profile is not None:
            print_profile(profile)
        stderr.print(f"[dim]benchmark took {seconds:.0f} s[/dim]")
    failed = [r for r in runs if r.failures]
    for r in failed:
        stderr.print(
            f"[red]{r.app}: {sum(r.failures.values())} txs did not commit with "
            f"code 0: {dict(r.failures)}[/red]"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stderr.print("[red]interrupted; every node was stopped[/red]")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
