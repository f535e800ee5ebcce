"""What a node committed, as Prometheus counters, gauges and histograms.

Every count is taken from a committed block's results (`observe_block`, called by
the engine after Commit), so the counters agree with the chain: blocks committed
since the process started, and txs by contract, action and result code. Latencies
compare the block's time (the proposer's) and the moment this node's gateway
admitted a tx with this node's wall clock at commit; nothing here reaches state.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter as Counter_
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from medchain import encoding
from medchain.core.block import BlockResult
from medchain.exceptions import Code

log = logging.getLogger("medchain.metrics")

# Results that only a tx whose contract and action the registry knows can get: their
# names are bounded by the registry. Any other result (a malformed tx, an unknown
# contract or action, ...) is counted under "other", so a tx cannot mint label values.
NAMED_CODES = frozenset(
    {
        Code.OK,
        Code.INVALID_PAYLOAD,
        Code.UNAUTHORIZED,
        Code.NOT_FOUND,
        Code.ALREADY_EXISTS,
        Code.INVALID_STATE,
    }
)
NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAX_ACTIONS = 500  # distinct (contract, action) label pairs before "other"
OTHER = "other"
TRACKED_ADMISSIONS = 100_000  # admission times kept for txs not yet committed
SESSION_EVENTS = {
    ("exchange", "request"): "opened",
    ("exchange", "release"): "released",
    ("exchange", "ack"): "acknowledged",
}
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, float("inf"))


def envelope_names(raw: bytes) -> tuple[str, str] | None:
    """The contract and action a committed tx names, if both are label-safe names.

    The block's execution already decoded the tx strictly (its result code says so), so
    this reads the two fields without re-proving the CBOR canonical: a full decode of a
    1,000-tx block took ~80 ms on the thread that commits blocks, this a fraction."""
    try:
        wire = encoding.decode_trusted(raw)
        body = wire.get("body") if isinstance(wire, dict) else None
        fields = encoding.decode_trusted(body) if isinstance(body, bytes) else None
    except encoding.DecodeError:
        return None
    if not isinstance(fields, dict):
        return None
    contract, action = fields.get("contract"), fields.get("action")
    if not (isinstance(contract, str) and isinstance(action, str)):
        return None
    if not (NAME.fullmatch(contract) and NAME.fullmatch(action)):
        return None
    return contract, action


class CountsCollector(Collector):
    """A counter family read at scrape time from a live mapping of plain ints (kept
    by a lower layer that must not import prometheus_client, e.g. ABCI requests)."""

    def __init__(
        self, name: str, documentation: str, label: str, counts: Callable[[], Mapping[str, int]]
    ) -> None:
        self.name, self.documentation, self.label, self.counts = name, documentation, label, counts

    def collect(self) -> Iterator[Metric]:
        """One sample per key of the mapping, as it stands now."""
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for key, value in sorted(dict(self.counts()).items()):
            family.add_metric([key], value)
        yield family

    def describe(self) -> Iterator[Metric]:
        """The family's name, so the registry refuses a second collector of it."""
        yield CounterMetricFamily(self.name, self.documentation, labels=[self.label])


class ChainMetrics:
    """A node's chain metrics, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.blocks = Counter(
            "medchain_blocks_committed",
            "Blocks this node committed since it started.",
            registry=registry,
        )
        self.txs = Counter(
            "medchain_txs_committed",
            "Committed txs by contract, action and result code (code name; 'other' for "
            "a tx whose contract or action the chain does not know).",
            ["contract", "action", "code"],
            registry=registry,
        )
        self.height = Gauge(
            "medchain_chain_height",
            "Height of this node's last committed block.",
            registry=registry,
        )
        self.block_latency = Histogram(
            "medchain_block_commit_latency_seconds",
            "From a block's time (the proposer's clock) to its commit on this node.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.tx_latency = Histogram(
            "medchain_tx_commit_latency_seconds",
            "From this node's gateway admitting a tx to the commit of its block.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.sessions = Counter(
            "medchain_exchange_sessions",
            "Exchange sessions by what the chain committed: opened (exchange.request), "
            "released (exchange.release) and acknowledged (exchange.ack).",
            ["event"],
            registry=registry,
        )
        for event in SESSION_EVENTS.values():
            self.sessions.labels(event)
        self._named: set[tuple[str, str]] = set()
        self._admitted: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def watch_height(self, height: Callable[[], int]) -> None:
        """Report `height()` (the committed height) at every scrape."""
        self.height.set_function(lambda: float(height()))

    def watch_mempool(self, pending: Callable[[], int]) -> None:
        """Report the mempool size `pending()` at every scrape."""
        gauge = Gauge(
            "medchain_mempool_txs", "Txs waiting in this node's mempool.", registry=self.registry
        )
        gauge.set_function(lambda: float(pending()))

    def watch_abci(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Report the ABCI requests this node's app answered, by request type."""
        self.registry.register(
            CountsCollector(
                "medchain_abci_requests",
                "ABCI requests this node's app answered since it started, by type.",
                "request",
                counts,
            )
        )

    def admitted(self, tx_id: bytes) -> None:
        """This node's gateway handed `tx_id` to the mempool now (for the admission to
        commit latency); the oldest entries go past TRACKED_ADMISSIONS."""
        with self._lock:
            self._admitted[tx_id] = time.monotonic()
            while len(self._admitted) > TRACKED_ADMISSIONS:
                self._admitted.popitem(last=False)

    def observe_block(self, result: BlockResult) -> None:
        """Count a block this node has just committed. Called on the thread that commits
        blocks: a fault in counting is logged and skipped, never raised into the engine
        (a node must not stop, or diverge, over its metrics)."""
        try:
            self._count(result)
        except Exception:
            log.exception("metrics: block %d not counted", result.block.height)

    def _count(self, result: BlockResult) -> None:
        now = time.monotonic()
        block = result.block
        self.blocks.inc()
        self.block_latency.observe(max(0.0, time.time() - block.time_ms / 1000))
        counts: Counter_[tuple[str, str, str]] = Counter_()
        waited = []
        with self._lock:
            for tx_result in result.tx_results:
                since = self._admitted.pop(tx_result.tx_id, None)
                if since is not None:
                    waited.append(now - since)
        for raw, tx_result in zip(block.txs, result.tx_results, strict=False):
            contract, action = self._names(raw, tx_result.code)
            counts[contract, action, tx_result.code.name] += 1
        for (contract, action, code), n in counts.items():
            self.txs.labels(contract, action, code).inc(n)
            if code == Code.OK.name and (contract, action) in SESSION_EVENTS:
                self.sessions.labels(SESSION_EVENTS[contract, action]).inc(n)
        for seconds in waited:
            self.tx_latency.observe(seconds)

    def _names(self, raw: bytes, code: Code) -> tuple[str, str]:
        """The tx's contract and action as labels, or "other" (see NAMED_CODES)."""
        if code not in NAMED_CODES:
            return OTHER, OTHER
        pair = envelope_names(raw)
        if pair is None:
            return OTHER, OTHER
        with self._lock:
            if pair not in self._named:
                if len(self._named) >= MAX_ACTIONS:
                    return OTHER, OTHER
                self._named.add(pair)
        return pair
