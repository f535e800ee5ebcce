"""One watcher of the edge's node height, shared by every request that waits for it.

A request may name a block its answer depends on (a fetch's session, the grant a
FHIR read relies on: X-MedChain-Height); the edge waits briefly for its node to
commit it (CustodianEdge.catch_up). The wait comes before the chain has said who
the caller is, so it must cost the node and the edge the same however many
requests wait: one poller thread asks the node for its height while anyone waits
(and stops when nobody does), the waiters sleep on a condition it feeds, and at
most `max_waiters` wait at once; past that a request is refused at once (Busy).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from medchain.exceptions import MedChainError


class WaitersFull(MedChainError):
    """As many requests as allowed already wait for a height; retry in a moment."""


class HeightWatcher:
    """The node's committed height as one poll loop sees it, for many waiters."""

    def __init__(
        self,
        height_of_node: Callable[[], int],
        max_waiters: int = 8,
        poll_seconds: float = 0.05,
    ) -> None:
        self._height_of_node = height_of_node
        self.max_waiters, self.poll_seconds = max_waiters, poll_seconds
        self._cond = threading.Condition()
        self._height = -1  # the highest height a poll has seen
        self._polls = 0  # polls so far: a waiter knows a height is fresh once it grows
        self._waiters = 0
        self._poller: threading.Thread | None = None

    @property
    def waiters(self) -> int:
        """How many requests wait now."""
        return self._waiters

    def wait_for(self, height: int, seconds: float, ahead: int) -> bool:
        """Wait up to `seconds` until the node has committed `height`; True if it has.
        A height more than `ahead` blocks past the node's (by a fresh poll) is not
        waited for. WaitersFull if `max_waiters` requests wait already."""
        deadline = time.monotonic() + seconds
        with self._cond:
            if self._height >= height:
                return True
            if self._waiters >= self.max_waiters:
                raise WaitersFull(f"{self._waiters} requests already wait for a block")
            self._waiters += 1
            arrived_at = self._polls
            if self._poller is None:
                self._poller = threading.Thread(
                    target=self._poll, name="edge-height-watch", daemon=True
                )
                self._poller.start()
            try:
                while self._height < height:
                    if self._polls > arrived_at and height > self._height + ahead:
                        return False
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._waiters -= 1

    def _poll(self) -> None:
        """Ask the node for its height every poll_seconds while anyone waits."""
        while True:
            with self._cond:
                if self._waiters == 0:
                    self._poller = None
                    return
            try:
                height: int | None = self._height_of_node()
            except Exception:  # an unreachable node: the waiters time out, the request
                height = None  # then meets the same error on its own call
            with self._cond:
                if height is not None:
                    self._height = max(self._height, height)
                self._polls += 1
                self._cond.notify_all()
            time.sleep(self.poll_seconds)
