"""CheckTx's stateless half in a worker process, a batch of txs per round trip.

In one Python process a thread that verifies SM2 must take the GIL back after
every OpenSSL call, and the threads running Python (the block producer, the
other submitters) hold it: verifying threads convoy on the GIL. A worker
process has its own interpreter, so the node's process keeps its GIL for
decode, nonce checks and blocks while the worker verifies on another core.

One round trip per tx (tried first) lost to in-process verification: each tx
paid a pipe round trip and a GIL re-acquisition. Here submitting threads put
raw txs on an admission queue; one collector thread takes everything waiting
(at most `MAX_BATCH`) and sends it to the worker in one frame, keeping up to
two batches in flight so the worker never waits for the node. The worker runs
the same `check_stateless` (decode, size, chain id, SM2 signature) as the
in-process path and answers, per tx, ok or the refusal's code and message, so a
refused tx gets the same code and text either way.

The worker is a `python -m medchain.consensus.verifier` subprocess speaking
length-prefixed frames on its stdin and stdout. It exits at EOF on stdin, so
it dies with the node however the node dies. A worker that dies is restarted
(its in-flight txs are checked in-process meanwhile), at most
`MAX_RESTARTS` times; after that, and after `close`, every check runs in the
calling thread, with a log line: a verifier fault never admits or refuses a
tx that the in-process check would not.
"""

from __future__ import annotations

import logging
import queue
import signal
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field
from typing import BinaryIO

from medchain.core.tx import SignedTx, check_stateless, decode_tx
from medchain.exceptions import Code, InvalidTransaction

MAX_BATCH = 256
MAX_IN_FLIGHT = 3
MAX_RESTARTS = 3
STOP_TIMEOUT_S = 5.0

_LEN = struct.Struct(">I")
_ITEM = struct.Struct(">IHI")  # max_bytes, chain id length, raw length
_ANSWER = struct.Struct(">HI")  # code (0 = ok), message length

log = logging.getLogger("medchain.verifier")

Verdict = tuple[Code, str] | None  # None: the tx passed the stateless checks


# -- wire format ----------------------------------------------------------------


def encode_batch(items: list[tuple[bytes, str, int]]) -> bytes:
    """One request frame's body: (raw, chain id, max tx bytes) per tx."""
    parts = [_LEN.pack(len(items))]
    for raw, chain_id, max_bytes in items:
        cid = chain_id.encode()
        parts += [_ITEM.pack(max_bytes, len(cid), len(raw)), cid, raw]
    return b"".join(parts)


def decode_batch(body: bytes) -> list[tuple[bytes, str, int]]:
    """The inverse of encode_batch."""
    (count,) = _LEN.unpack_from(body)
    at = _LEN.size
    items = []
    for _ in range(count):
        max_bytes, cid_len, raw_len = _ITEM.unpack_from(body, at)
        at += _ITEM.size
        chain_id = body[at : at + cid_len].decode()
        at += cid_len
        items.append((body[at : at + raw_len], chain_id, max_bytes))
        at += raw_len
    return items


def verdict(raw: bytes, chain_id: str, max_bytes: int) -> Verdict:
    """The stateless check of one tx: None if it passes, else its code and message."""
    try:
        check_stateless(raw, chain_id=chain_id, max_bytes=max_bytes)
    except InvalidTransaction as e:
        return e.code, e.message
    return None


def encode_verdicts(verdicts: list[Verdict]) -> bytes:
    """One answer frame's body: per tx, code 0 or the refusal's code and message."""
    parts = []
    for v in verdicts:
        if v is None:
            parts.append(_ANSWER.pack(0, 0))
        else:
            message = v[1].encode()
            parts += [_ANSWER.pack(int(v[0]), len(message)), message]
    return b"".join(parts)


def decode_verdicts(body: bytes, count: int) -> list[Verdict]:
    """The inverse of encode_verdicts."""
    at = 0
    out: list[Verdict] = []
    for _ in range(count):
        code, length = _ANSWER.unpack_from(body, at)
        at += _ANSWER.size
        if code == 0:
            out.append(None)
        else:
            out.append((Code(code), body[at : at + length].decode()))
            at += length
    return out


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError("verifier pipe closed")
    return data


def read_frame(stream: BinaryIO) -> bytes:
    """One length-prefixed frame; EOFError when the other side closed the pipe."""
    (length,) = _LEN.unpack(_read_exact(stream, _LEN.size))
    return _read_exact(stream, length)


def write_frame(stream: BinaryIO, body: bytes) -> None:
    """Write one length-prefixed frame and flush it."""
    stream.write(_LEN.pack(len(body)) + body)
    stream.flush()


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The worker's loop: answer each batch until the node closes the pipe."""
    while True:
        try:
            body = read_frame(requests)
        except EOFError:
            return
        write_frame(answers, encode_verdicts([verdict(*item) for item in decode_batch(body)]))


def main() -> None:
    """Entry point of the worker process (`python -m medchain.consensus.verifier`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the node; EOF stops us
    with suppress(BrokenPipeError):  # the node died while we answered
        serve(sys.stdin.buffer, sys.stdout.buffer)


# -- the node's side ------------------------------------------------------------


def _passed(tx: SignedTx) -> SignedTx:
    return tx


@dataclass
class _Pending:
    """One tx waiting for its verdict, and what to do with it once it passed."""

    raw: bytes
    chain_id: str
    max_bytes: int
    then: Callable[[SignedTx], SignedTx] = _passed
    future: Future[SignedTx] = field(default_factory=Future)

    def settle(self, answer: Verdict) -> None:
        """Refuse with the verdict's code and message, or decode and run `then`."""
        if answer is not None:
            self.future.set_exception(InvalidTransaction(*answer))
            return
        try:
            result = self.then(decode_tx(self.raw, max_bytes=self.max_bytes))
        except BaseException as e:  # the submitter sees it, as if it ran there
            self.future.set_exception(e)
        else:
            self.future.set_result(result)


class _Stop:
    """Queue sentinel: the collector exits."""


class VerifierProcess:
    """A worker process that runs CheckTx's stateless half for a whole batch at once.

    `check(raw, chain_id, max_bytes)` has the contract of `core.tx.check_stateless`
    (the SignedTx, or InvalidTransaction with the same code and message); call it
    from any number of threads.
    """

    def __init__(self, max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        self.restarts = 0
        self._queue: queue.SimpleQueue[_Pending | _Stop] = queue.SimpleQueue()
        self._closed = False
        self._stopping = False  # the collector saw _Stop
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = self._spawn()
        self._thread = threading.Thread(target=self._collect, name="solo-verifier", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int | None:
        """The worker's process id (None once the verifier fell back to in-process)."""
        process = self._process
        return None if process is None else process.pid

    @property
    def in_process(self) -> bool:
        """Whether checks now run in the calling thread (closed, or the worker gave up)."""
        return self._closed or self._process is None

    def check(
        self,
        raw: bytes,
        chain_id: str,
        max_bytes: int,
        then: Callable[[SignedTx], SignedTx] = _passed,
    ) -> SignedTx:
        """Decode, size, chain id and signature of `raw`, the SM2 verify in the worker.

        `then` runs on the tx once it passed (on the collector thread, a whole batch
        in one go: fewer GIL handoffs than waking each submitter first); its result
        or exception is what `check` returns or raises."""
        pending = _Pending(raw, chain_id, max_bytes, then)
        with self._lock:  # a tx queued before close is always answered by the collector
            queued = not self.in_process
            if queued:
                self._queue.put(pending)
        if not queued:
            return then(check_stateless(raw, chain_id=chain_id, max_bytes=max_bytes))
        return pending.future.result()

    def close(self) -> None:
        """Stop the collector (txs still queued are checked in-process) and the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_Stop())
        self._thread.join(timeout=STOP_TIMEOUT_S * 2)
        self._end_process()

    # -- internals --------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "medchain.consensus.verifier"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def _end_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with suppress(OSError):
                    stream.close()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)

    def _take(self, first: _Pending | _Stop | None, limit: int) -> list[_Pending]:
        """Up to `limit` waiting txs (starting with `first`); notes _Stop when seen."""
        batch: list[_Pending] = []
        item = first
        while True:
            if isinstance(item, _Stop):
                self._stopping = True
                return batch
            if item is not None:
                batch.append(item)
            if len(batch) >= limit:
                return batch
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch

    def _collect(self) -> None:
        in_flight: deque[list[_Pending]] = deque()
        while True:
            if not in_flight:
                if self._stopping:
                    break
                first = self._queue.get()
                # half of what waits now, the rest as a second batch: the worker
                # then has the next batch queued while the node handles an answer
                limit = max(1, min(self.max_batch, (self._queue.qsize() + 2) // 2))
                batch = self._take(first, limit)
                if batch and not self._send(batch, in_flight):
                    continue
            self._top_up(in_flight)
            if in_flight:
                self._receive(in_flight)
        # stopping: whatever is still queued (a submitter racing close) is checked here
        self._check_here(self._take(None, sys.maxsize))

    def _top_up(self, in_flight: deque[list[_Pending]]) -> None:
        """Send what waits, up to MAX_IN_FLIGHT batches."""
        while not self._stopping and len(in_flight) < MAX_IN_FLIGHT and not self._queue.empty():
            batch = self._take(None, self.max_batch)
            if batch and not self._send(batch, in_flight):
                break

    def _send(self, batch: list[_Pending], in_flight: deque[list[_Pending]]) -> bool:
        process = self._process
        if process is None or process.stdin is None:
            self._check_here(batch)
            return False
        in_flight.append(batch)
        try:
            write_frame(
                process.stdin,  # type: ignore[arg-type]
                encode_batch([(p.raw, p.chain_id, p.max_bytes) for p in batch]),
            )
        except OSError as e:
            self._lost(in_flight, e)
            return False
        return True

    def _receive(self, in_flight: deque[list[_Pending]]) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        try:
            body = read_frame(process.stdout)  # type: ignore[arg-type]
            verdicts = decode_verdicts(body, len(in_flight[0]))
        except (EOFError, OSError, struct.error, ValueError) as e:
            self._lost(in_flight, e)
            return
        done = in_flight.popleft()
        self._top_up(in_flight)  # the worker verifies the next batch meanwhile
        for pending, answer in zip(done, verdicts, strict=True):
            pending.settle(answer)

    def _lost(self, in_flight: deque[list[_Pending]], error: BaseException) -> None:
        """The worker died or spoke nonsense: check its txs here, then restart it."""
        process = self._process
        code = None if process is None else process.poll()
        while in_flight:
            self._check_here(in_flight.popleft())
        self._end_process()
        if self._closed or self.restarts >= MAX_RESTARTS:
            log.error(
                "signature verifier worker lost (%s, exit %s); verifying in-process from now on",
                error,
                code,
            )
            return
        self.restarts += 1
        log.error(
            "signature verifier worker lost (%s, exit %s); restarting it (%d of %d)",
            error,
            code,
            self.restarts,
            MAX_RESTARTS,
        )
        try:
            self._process = self._spawn()
        except OSError as e:
            log.error("cannot restart the signature verifier (%s); verifying in-process", e)

    @staticmethod
    def _check_here(batch: list[_Pending]) -> None:
        for p in batch:
            p.settle(verdict(p.raw, p.chain_id, p.max_bytes))


if __name__ == "__main__":
    main()
