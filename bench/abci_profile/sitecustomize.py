"""cProfile inside a MedChain ABCI app, for `bench/localnet_throughput.py --profile`.

The benchmark puts this directory first on the app's PYTHONPATH and sets
MEDCHAIN_BENCH_PROFILE to a file prefix; Python imports `sitecustomize` at
start-up, before the app. Without the variable this module does nothing.

cProfile only sees the thread that enabled it, so every thread started from
then on (the server's connection threads, any worker pool) runs under its own
profiler, timed by the thread's CPU clock (the default wall clock would count
waits on the socket and for the GIL). SIGTERM, which Localnet.stop_node sends,
is blocked in those threads so that it reaches the main thread (blocked in
accept(), which the signal interrupts); its handler writes each thread's
stats, marshalled as pstats expects, to PREFIX.<pid>.<n>.prof and exits. The
benchmark merges them with pstats.Stats. Nothing is stored on SIGTERM either
way: the app commits per block.
"""

from __future__ import annotations

import os

PROFILE_ENV = "MEDCHAIN_BENCH_PROFILE"


def _install(prefix: str) -> None:
    import cProfile
    import marshal
    import signal
    import threading
    import time
    from types import FrameType

    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        profile = cProfile.Profile(time.thread_time)  # CPU, not waits for a socket or the GIL
        with lock:
            profiles.append(profile)
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()

    def dump(signum: int, frame: FrameType | None) -> None:
        with lock:
            taken = list(profiles)
        for n, profile in enumerate(taken):
            # snapshot_stats reads the counters only (no disable() from this thread);
            # the GIL is held throughout, so the other threads do not move meanwhile.
            profile.snapshot_stats()
            with open(f"{prefix}.{os.getpid()}.{n}.prof", "wb") as out:
                marshal.dump(profile.stats, out)
        os._exit(0)

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    signal.signal(signal.SIGTERM, dump)


if os.environ.get(PROFILE_ENV):
    _install(os.environ[PROFILE_ENV])
