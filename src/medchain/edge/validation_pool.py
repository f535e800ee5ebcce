"""FHIR validation of imports in worker processes, beside the edge's own.

Validating a resource (fhir.resources' models, the strict JSON walk, the search
index entry) is pure Python: in the edge's process it holds the interpreter
lock, so four uploads at once validate one at a time while the second core
waits, and the edge's other threads (HTTP, the chain client, sealing into the
vault) queue behind them. A pool of worker processes takes that work: a file's
resources are split across the workers, each returns what `prepare_record`
makes (or the refusal it would raise), and the edge keeps sealing, storing and
talking to the chain. The answers are exactly those of validating in-process:
the same records, and the same first refusal in file order.

Workers are spawned (not forked: the edge process has threads and open SQLite
files) and build their model tables at start, so no upload pays for that.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from medchain.contracts.records.model import RESOURCE_TYPES
from medchain.edge.custodian import BadRecord, Prepared, prepare_record
from medchain.fhir import strict
from medchain.fhir.validate import InvalidFhir, validate_resource

# What an import asks of a worker: a resource and its record id, or None for a
# resource that is only checked (it will not become a record).
Job = tuple[dict[str, Any], str | None]


@dataclass(frozen=True)
class Refusal:
    """The refusal a job would raise in-process, carried back from a worker."""

    message: str
    hint: str
    issues: list[tuple[str, str]]


Outcome = Prepared | Refusal | None
log = logging.getLogger(__name__)


def check_jobs(jobs: list[Job]) -> list[Outcome]:
    """Run in a worker: each job's record (Prepared), its refusal, or None for a
    resource that is only checked and valid."""
    out: list[Outcome] = []
    for resource, record_id in jobs:
        try:
            if record_id is None:
                validate_resource(resource)
                out.append(None)
            else:
                out.append(prepare_record(resource, record_id))
        except InvalidFhir as e:
            out.append(Refusal(str(e), "", e.issues))
        except BadRecord as e:
            out.append(Refusal(e.message, e.hint, e.issues))
    return out


def _start_worker() -> None:
    """Build the strict validator's tables and load every record type's models, then
    take them out of the collector's full passes (each would walk ~200,000 objects,
    ~0.15 s, while validation allocates enough to trigger them)."""
    strict.prepare(sorted(RESOURCE_TYPES))
    for resource_type in sorted(RESOURCE_TYPES):
        with contextlib.suppress(InvalidFhir):  # most types need more than a type
            validate_resource({"resourceType": resource_type})
    gc.freeze()  # the models live as long as the worker: full collections skip them


def _ready() -> bool:
    return True


class ValidationPool:
    """`workers` processes that validate import jobs; close() when the edge stops."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("a validation pool needs at least one worker")
        self.workers = workers
        self._lock = threading.Lock()
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            self.workers, multiprocessing.get_context("spawn"), initializer=_start_worker
        )
        for ready in [pool.submit(_ready) for _ in range(self.workers)]:
            ready.result()  # every worker started and built its tables
        return pool

    def check(self, jobs: list[Job]) -> list[Outcome]:
        """Every job's outcome, in order, the jobs split across the workers. Should a
        worker die (killed, out of memory), this call validates in the caller's
        thread and the pool is started afresh for the next."""
        pool = self._pool
        size = -(-len(jobs) // self.workers) or 1
        try:
            parts: list[Future[list[Outcome]]] = [
                pool.submit(check_jobs, jobs[i : i + size]) for i in range(0, len(jobs), size)
            ]
            return [outcome for part in parts for outcome in part.result()]
        except BrokenProcessPool:
            log.warning("a validation worker died; validating in-process, restarting the pool")
            with self._lock:
                if self._pool is pool:
                    pool.shutdown(wait=False)
                    self._pool = self._start()
            return check_jobs(jobs)

    def close(self) -> None:
        """Stop the workers (pending jobs are finished first)."""
        self._pool.shutdown(wait=True)
