"""Imports a hospital admin starts from the portal.

Each uploaded file goes to the organisation's edge as `medchain import fhir` sends it
(POST /edge/v1/import/fhir, signed with the user's key; the edge checks that the
signer is staff of its organisation). The sending runs in a background thread of the
portal, one file after another, so the imports page can show how far a run has got
and, at the end, the edge's report: what was imported, what was rejected and why,
record ids. No JavaScript: while a run is going its page offers Refresh, and "Follow
until done", an opt-in reload (HTTP Refresh header) with a link to stop it; a page
that reloads itself with no way to stop it fails WCAG 2.2.1 (and axe-core).

The runs live in this process only, for the user who started the portal: nothing
about them is on chain or shown to anyone else. The file contents are dropped as
soon as they are sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from medchain.exceptions import MedChainError

MAX_UPLOAD_BYTES = 16 * 1024 * 1024  # one upload, every file in it
MAX_FILES = 20  # files in one upload
MAX_RUNS = 50  # runs kept for the list; the oldest finished ones are forgotten first

Send = Callable[[bytes, str | None], dict[str, Any]]
"""Send one file's bytes (and the patient DID, if given) to the edge; its report."""


@dataclass
class FileImport:
    """One file of a run: waiting, sending, done (with the edge's report) or refused."""

    name: str
    size: int
    state: str = "waiting"
    report: dict[str, Any] | None = None
    error: str = ""


@dataclass
class ImportRun:
    """One upload's files, sent in order, with their outcomes."""

    run_id: int
    started: str
    patient: str | None
    files: list[FileImport] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)  # set once all are sent

    @property
    def sent(self) -> int:
        """How many files have an outcome (done or refused)."""
        return sum(f.state in ("done", "refused") for f in self.files)

    @property
    def finished(self) -> bool:
        """Whether every file has an outcome."""
        return self.sent == len(self.files)

    @property
    def state(self) -> str:
        """waiting, running, done (every file imported) or refused (some file was)."""
        if self.finished:
            return "refused" if any(f.state == "refused" for f in self.files) else "done"
        return "running" if any(f.state != "waiting" for f in self.files) else "waiting"

    def total(self, what: str) -> int:
        """Records `what` ("imported" or "rejected") over the files' reports."""
        return sum(int(f.report[what]) for f in self.files if f.report is not None)


class ImportRuns:
    """The portal's import runs, sent by one worker thread in the order they came."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[int, ImportRun] = {}
        self._next = 1
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="portal-import")

    def start(self, files: list[tuple[str, bytes]], patient: str | None, send: Send) -> ImportRun:
        """Queue `files` (name, bytes) for sending with `send`; the run, at once."""
        with self._lock:
            run = ImportRun(
                self._next,
                datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                patient,
                [FileImport(name, len(body)) for name, body in files],
            )
            self._next += 1
            self._runs[run.run_id] = run
            self._forget_old()
        self._worker.submit(self._run, run, [body for _, body in files], send)
        return run

    def runs(self) -> list[ImportRun]:
        """Every run kept, newest first."""
        with self._lock:
            return sorted(self._runs.values(), key=lambda r: -r.run_id)

    def get(self, run_id: int) -> ImportRun | None:
        """One run, or None if there is no such run (any more)."""
        with self._lock:
            return self._runs.get(run_id)

    def _forget_old(self) -> None:
        finished = sorted(r.run_id for r in self._runs.values() if r.finished)
        while len(self._runs) > MAX_RUNS and finished:
            del self._runs[finished.pop(0)]

    def _run(self, run: ImportRun, bodies: list[bytes], send: Send) -> None:
        """Send each file in turn; a refusal of one file does not stop the next."""
        for item, body in zip(run.files, bodies, strict=True):
            item.state = "sending"
            try:
                item.report = send(body, run.patient)
                item.state = "done"
            except (MedChainError, ValueError) as e:  # the edge refused, or answered no JSON
                item.error, item.state = str(e), "refused"
        bodies.clear()
        run.ended.set()

    def close(self) -> None:
        """Stop taking runs; the one being sent finishes."""
        self._worker.shutdown(wait=False, cancel_futures=True)
