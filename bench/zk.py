"""Zero-knowledge eligibility proofs: size and speed (issue 18).

Times the range proofs the `zk` contract verifies (crypto/rangeproof.py,
Bulletproofs over secp256k1, 32-bit range): proving (the patient's side) and
verifying (what every node does for a `zk.prove` tx), for a one-sided
criterion ("HbA1c >= 6.5 %": one proof) and a two-sided one ("between": two
proofs). The baseline, measured in the same run on the same core: one SM2
signature verification (`crypto.verify`, the check every tx already pays).
Every proof is checked; a proof that does not verify is counted and the script
exits 1. No assertion on any timing.

    .venv/bin/python bench/zk.py            # table
    .venv/bin/python bench/zk.py --json     # one JSON object on stdout

Goals (issue 18): proof_bytes <= 2048, verify_ms p50 <= 50.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from common import percentile  # bench/common.py

from medchain import crypto
from medchain.crypto import rangeproof

GOAL_PROOF_BYTES = 2048
GOAL_VERIFY_MS = 50.0


def timed(work: Callable[[], object], runs: int) -> tuple[list[float], list[object]]:
    """Milliseconds of each of `runs` calls, and what each returned."""
    times, results = [], []
    for _ in range(runs):
        start = time.perf_counter()
        results.append(work())
        times.append((time.perf_counter() - start) * 1000)
    return times, results


def measure_statement(
    name: str, bounds: list[tuple[str, int]], value: int, runs: int
) -> dict[str, Any]:
    """Prove and verify `value` against every (op, threshold) of one criterion."""
    blinding = rangeproof.random_blinding()
    commitment = rangeproof.commit(value, blinding)
    context = b"bench " + name.encode()

    def prove() -> list[bytes]:
        return [rangeproof.prove_threshold(value, blinding, op, t, context) for op, t in bounds]

    prove_ms, proofs = timed(prove, runs)

    def verify(proof_set: list[bytes]) -> bool:
        return all(
            rangeproof.verify_threshold(commitment, op, t, p, context)
            for (op, t), p in zip(bounds, proof_set, strict=True)
        )

    verify_ms, verdicts = [], []
    for proof_set in proofs:
        assert isinstance(proof_set, list)
        start = time.perf_counter()
        verdicts.append(verify(proof_set))
        verify_ms.append((time.perf_counter() - start) * 1000)
    first = proofs[0]
    assert isinstance(first, list)
    return {
        "statement": name,
        "proofs": len(bounds),
        "proof_bytes": sum(len(p) for p in first),
        "prove_ms_p50": statistics.median(prove_ms),
        "prove_ms_p95": percentile(sorted(prove_ms), 0.95),
        "verify_ms_p50": statistics.median(verify_ms),
        "verify_ms_p95": percentile(sorted(verify_ms), 0.95),
        "failures": verdicts.count(False),
    }


def measure_sm2(runs: int) -> float:
    """Median milliseconds of one SM2 verify of a tx-sized message."""
    key = crypto.generate_keypair()
    message = bytes(300)
    signature = crypto.sign(key, message)
    times, _ = timed(lambda: crypto.verify(key.suite, key.public, message, signature), runs * 20)
    return statistics.median(times)


def run(runs: int) -> dict[str, Any]:
    """Every statement, then the baseline, on the same core."""
    rangeproof.commit(1, 1)  # derive the generators before the clock runs
    statements = [
        measure_statement("hba1c >= 6.5 %", [("ge", 65)], 71, runs),
        measure_statement("egfr < 60", [("le", 59)], 42, runs),
        measure_statement("30 <= value <= 90", [("ge", 30), ("le", 90)], 55, runs),
    ]
    sm2_ms = measure_sm2(runs)
    worst_bytes = max(s["proof_bytes"] for s in statements)
    worst_verify = max(s["verify_ms_p50"] for s in statements)
    return {
        "group": rangeproof.GROUP,
        "bits": rangeproof.BITS,
        "runs": runs,
        "statements": statements,
        "proof_bytes": worst_bytes,
        "verify_ms": worst_verify,
        "prove_ms": max(s["prove_ms_p50"] for s in statements),
        "sm2_verify_ms": sm2_ms,
        "verify_over_sm2": worst_verify / sm2_ms,
        "goals": {
            "proof_bytes": {"goal": GOAL_PROOF_BYTES, "met": worst_bytes <= GOAL_PROOF_BYTES},
            "verify_ms_p50": {"goal": GOAL_VERIFY_MS, "met": worst_verify <= GOAL_VERIFY_MS},
        },
        "failures": sum(s["failures"] for s in statements),
    }


def print_table(report: dict[str, Any]) -> None:
    """The human-readable form of the report."""
    print(f"range proofs over {report['group']}, {report['bits']}-bit range, {report['runs']} runs")
    header = (
        f"{'statement':<20} {'proofs':>6} {'bytes':>6} "
        f"{'prove p50':>10} {'verify p50':>11} {'verify p95':>11}"
    )
    print(header)
    print("-" * len(header))
    for s in report["statements"]:
        print(
            f"{s['statement']:<20} {s['proofs']:>6} {s['proof_bytes']:>6} "
            f"{s['prove_ms_p50']:>8.1f}ms {s['verify_ms_p50']:>9.2f}ms {s['verify_ms_p95']:>9.2f}ms"
        )
    print(f"baseline: one SM2 verify {report['sm2_verify_ms']:.3f} ms (same run)")
    print(f"worst verify p50 = {report['verify_over_sm2']:.0f} SM2 verifies")
    for name, goal in report["goals"].items():
        print(f"goal {name} <= {goal['goal']}: {'met' if goal['met'] else 'NOT MET'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="proofs per statement")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    report = run(args.runs)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_table(report)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
