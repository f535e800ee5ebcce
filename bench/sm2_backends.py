"""SM2 sign/verify throughput: OpenSSL 3 via ctypes (ours) against gmssl-pyx.

Runs each backend with 1 and 2 threads on the same keys and messages and
prints one table; the baseline is OpenSSL with 1 thread, measured in this run.
Every result is checked, so a backend that is fast but wrong shows up as
failures rather than as speed.

    .venv/bin/python bench/sm2_backends.py [operations per cell]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import gmssl_pyx

from medchain.crypto import openssl_sm2


@dataclass(frozen=True)
class Backend:
    """One SM2 implementation behind a common (private, public) interface."""

    name: str
    sign: Callable[[bytes, bytes, bytes], bytes]
    verify: Callable[[bytes, bytes, bytes], bool]


OPENSSL = Backend(
    name="OpenSSL 3 (ctypes)",
    sign=lambda private, _public, message: openssl_sm2.sign(private, message),
    verify=openssl_sm2.verify,
)
GMSSL = Backend(
    name="gmssl-pyx (GmSSL 3)",
    sign=gmssl_pyx.sm2_sign,
    verify=gmssl_pyx.sm2_verify,
)


@dataclass(frozen=True)
class Cell:
    """Throughput, CPU cores kept busy and wrong answers for one cell."""

    per_second: float
    cores: float
    failures: int


def run_cell(work: Callable[[int], bool], count: int, threads: int) -> Cell:
    """Run `work(i)` for i in range(count) on `threads` threads; count failures."""

    def guarded(i: int) -> bool:
        try:
            return work(i)
        except Exception:  # a crashing backend is a failure to report, not to stop on
            return False

    start, start_cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(guarded, range(count), chunksize=16))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return Cell(count / elapsed, cpu / elapsed, results.count(False))


def measure(backend: Backend, count: int, threads: int) -> tuple[Cell, Cell]:
    """(sign, verify) cells for one backend; signatures are checked by OpenSSL."""
    private, public = openssl_sm2.generate_keypair()
    messages = [b"medchain bench message %d" % i for i in range(count)]
    signatures: list[bytes] = [b""] * count

    def sign_one(i: int) -> bool:
        signatures[i] = backend.sign(private, public, messages[i])
        return True

    sign_cell = run_cell(sign_one, count, threads)
    bad_signatures = sum(
        not openssl_sm2.verify(public, m, s) for m, s in zip(messages, signatures, strict=True)
    )
    sign_cell = Cell(sign_cell.per_second, sign_cell.cores, sign_cell.failures + bad_signatures)
    verify_cell = run_cell(
        lambda i: backend.verify(public, messages[i], signatures[i]), count, threads
    )
    return sign_cell, verify_cell


def main() -> None:
    """Print the comparison table."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    rows = [
        (backend, threads, *measure(backend, count, threads))
        for backend in (OPENSSL, GMSSL)
        for threads in (1, 2)
    ]
    base_sign, base_verify = rows[0][2].per_second, rows[0][3].per_second
    print(f"SM2, {count} operations per cell; baseline = {OPENSSL.name}, 1 thread")
    print(
        f"{'backend':<22}{'threads':>8}{'sign/s':>9}{'x base':>8}{'cores':>7}"
        f"{'verify/s':>10}{'x base':>8}{'cores':>7}{'failures':>10}"
    )
    for backend, threads, sign, verify in rows:
        print(
            f"{backend.name:<22}{threads:>8}{sign.per_second:>9.0f}"
            f"{sign.per_second / base_sign:>8.2f}{sign.cores:>7.2f}{verify.per_second:>10.0f}"
            f"{verify.per_second / base_verify:>8.2f}{verify.cores:>7.2f}"
            f"{sign.failures + verify.failures:>10}"
        )


if __name__ == "__main__":
    main()
