"""Refusing replayed signed requests at an edge.

A signed request is valid for MAX_SKEW_MS either side of the edge's clock, so
without memory a captured upload, import, patient link or fetch could be sent
again within that window and act twice (a second record registered). The edge
remembers every state-changing request it accepted until its time leaves the
window, and refuses the same request again with 409 REPLAYED_REQUEST.

A request is identified by what its signer signed (key, time, method, path,
body hash), not by the signature bytes, so a re-encoded signature over the
same request is the same request. Memory is bounded: when full, the oldest
entries are forgotten and every request signed at or before the newest
forgotten time is refused as possibly replayed. Honest clients sign with the
current time, so only old requests are turned away.
"""

from __future__ import annotations

import heapq
import threading
import time

from medchain import crypto
from medchain.contracts.exchange.proof import MAX_SKEW_MS
from medchain.exceptions import MedChainError
from medchain.sdk.signing import RequestSigner

MAX_REMEMBERED = 100_000


class ReplayedRequest(MedChainError):
    """This signed request was already accepted (or is too old to tell)."""


class ReplayCache:
    """The signed requests an edge accepted while they could still be replayed."""

    def __init__(self, capacity: int = MAX_REMEMBERED, window_ms: int = MAX_SKEW_MS) -> None:
        self.capacity, self.window_ms = capacity, window_ms
        self._seen: set[bytes] = set()
        self._by_time: list[tuple[int, bytes]] = []  # heap of (time_ms, id)
        self._forgotten_up_to_ms = -1
        self._lock = threading.Lock()

    def accept_once(
        self, signer: RequestSigner, method: str, path: str, now_ms: int | None = None
    ) -> None:
        """Remember a verified request; ReplayedRequest if it was seen before."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        request_id = crypto.sm3(
            b"\x00".join(
                [
                    signer.suite.encode(),
                    signer.public_key,
                    str(signer.time_ms).encode(),
                    method.upper().encode(),
                    path.encode(),
                    signer.body_sm3,
                ]
            )
        )
        with self._lock:
            self._expire(now)
            if (
                request_id in self._seen
                or signer.time_ms <= self._forgotten_up_to_ms
                or signer.time_ms < now - self.window_ms  # its earlier copy may be expired
            ):
                raise ReplayedRequest(
                    "this signed request was already received; sign a new one to repeat it"
                )
            while len(self._seen) >= self.capacity:
                oldest, forgotten = heapq.heappop(self._by_time)
                self._seen.discard(forgotten)
                self._forgotten_up_to_ms = max(self._forgotten_up_to_ms, oldest)
            self._seen.add(request_id)
            heapq.heappush(self._by_time, (signer.time_ms, request_id))

    def _expire(self, now_ms: int) -> None:
        """Forget requests whose time is outside the window: they fail verification."""
        while self._by_time and self._by_time[0][0] < now_ms - self.window_ms:
            _, request_id = heapq.heappop(self._by_time)
            self._seen.discard(request_id)

    def __len__(self) -> int:
        return len(self._seen)
