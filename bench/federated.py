"""Federated vs centralised training, and encrypted vs plain aggregation (issue 17).

Runs in the second venv: `.venv-fl/bin/python bench/federated.py [--json]`.

For each data set (breast cancer; diabetes binarised at the median) and each split
(IID; non-IID, Dirichlet α label skew) it runs `python -m medchain.fl.run` twice, CKKS
and plain, with the same seed, hospitals and rounds, and trains the baseline in this
process: the same logistic regression on the pooled training parts, same seed,
rounds × epochs epochs. Both are scored on the same global validation set nobody
trained on. Aggregation time per round is what the ServerApp measured around its sum
(ciphertext additions vs numpy additions); a micro-benchmark repeats both sums on the
same updates for a steadier ratio. No assertion on any timing.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from medchain.fl import ckks
from medchain.fl.data import read_part, split_dataset
from medchain.fl.model import TrainingPlan, evaluate, parse_model, train_central

REPO = Path(__file__).resolve().parents[1]


def run_federated(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """One embedded run in its own process; what it produced, read back from W."""
    workdir.mkdir(parents=True)
    (workdir.parent / f"{workdir.name}.json").write_text(json.dumps(config))
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "medchain.fl.run",
            "--workdir",
            str(workdir),
            "--config",
            str(workdir.parent / f"{workdir.name}.json"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    wall_s = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"federated run failed:\n{done.stderr[-4000:]}")
    timings = json.loads((workdir / "server" / "timings.json").read_text())["rounds"]
    reports = [
        json.loads((workdir / "rounds" / f"{r}.json").read_text())
        for r in range(1, config["rounds"] + 1)
    ]
    update_bytes = [g["bytes"] for rep in reports for g in rep["received"].values()]
    return {
        "params": parse_model((workdir / "models" / "final.bin").read_bytes()),
        "wall_s": wall_s,
        "first_round_s": timings[0]["round_s"],
        "later_round_s": statistics.median(t["round_s"] for t in timings[1:]),
        "aggregation_s": statistics.median(t["aggregation_s"] for t in timings),
        "update_bytes": statistics.mean(update_bytes),
        "validation": read_part(workdir / "data" / "validation.npz"),
    }


def micro_aggregation(hospitals: int, features: int, repeats: int) -> dict[str, float]:
    """Median time to sum `hospitals` updates, as ciphertexts and in clear."""
    rng = np.random.default_rng(0)
    secret = ckks.new_secret_context()
    public = ckks.load_context(ckks.public_context_bytes(secret))
    vectors = [rng.normal(size=features + 1) * 100 for _ in range(hospitals)]
    encrypted = [ckks.encrypt_update(secret, v) for v in vectors]
    plain = [ckks.plain_bytes(v) for v in vectors]

    def median_time(action: Any) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            action()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    ckks_s = median_time(lambda: ckks.add_ciphertexts(public, encrypted))
    plain_s = median_time(lambda: ckks.add_plain(plain))
    started = time.perf_counter()
    for v in vectors:
        ckks.encrypt_update(secret, v)
    encrypt_s = (time.perf_counter() - started) / hospitals
    return {
        "ckks_sum_s": ckks_s,
        "plain_sum_s": plain_s,
        "ratio": ckks_s / plain_s,
        "encrypt_one_update_s": encrypt_s,
    }


def bench_case(root: Path, dataset: str, iid: bool, args: argparse.Namespace) -> dict[str, Any]:
    """One data set and split: federated CKKS, federated plain, central; all on validation."""
    plan = TrainingPlan()
    base = {
        "rounds": args.rounds,
        "hospitals": args.hospitals,
        "seed": args.seed,
        "iid": iid,
        "alpha": args.alpha,
        "dataset": dataset,
    }
    name = f"{dataset}-{'iid' if iid else 'noniid'}"
    enc = run_federated(root / f"{name}-ckks", {**base, "mode": "ckks"})
    plain = run_federated(root / f"{name}-plain", {**base, "mode": "plain"})
    orgs = [f"hospital-{i}" for i in range(1, args.hospitals + 1)]
    split = split_dataset(dataset, orgs, args.seed, iid, args.alpha)
    central = train_central(split.pooled_train(), plan, args.rounds, args.seed)
    validation = enc["validation"]
    fed_m, plain_m, central_m = (
        evaluate(p, validation) for p in (enc["params"], plain["params"], central)
    )
    return {
        "dataset": dataset,
        "split": "iid" if iid else f"non-iid (Dirichlet α={args.alpha})",
        "hospital_train_sizes": [len(h.train) for h in split.hospitals],
        "hospital_positive_share": [round(float(h.train.y.mean()), 3) for h in split.hospitals],
        "validation_n": len(validation),
        "federated_accuracy": fed_m.accuracy,
        "federated_auc": fed_m.auc,
        "plain_federated_accuracy": plain_m.accuracy,
        "central_accuracy": central_m.accuracy,
        "central_auc": central_m.auc,
        "fed_over_central": fed_m.accuracy / central_m.accuracy,
        "ckks_vs_plain_max_param_diff": float(np.abs(enc["params"] - plain["params"]).max()),
        "ckks_aggregation_s_per_round": enc["aggregation_s"],
        "plain_aggregation_s_per_round": plain["aggregation_s"],
        "aggregation_ratio": enc["aggregation_s"] / plain["aggregation_s"],
        "ckks_round_s": enc["later_round_s"],
        "plain_round_s": plain["later_round_s"],
        "ciphertext_bytes_per_update": round(enc["update_bytes"]),
        "plain_bytes_per_update": round(plain["update_bytes"]),
        "first_round_s_with_ray_start": enc["first_round_s"],
        "run_wall_s": enc["wall_s"],
    }


def print_table(result: dict[str, Any]) -> None:
    """The human view of the JSON result."""
    print(
        f"{'data set / split':34} {'fed acc':>8} {'cen acc':>8} {'fed/cen':>8} "
        f"{'fed AUC':>8} {'cen AUC':>8} {'agg ckks':>10} {'agg plain':>10} {'ratio':>7} "
        f"{'ct bytes':>9}"
    )
    for c in result["cases"]:
        print(
            f"{c['dataset'] + ' ' + c['split']:34} {c['federated_accuracy']:8.4f} "
            f"{c['central_accuracy']:8.4f} {c['fed_over_central']:8.4f} "
            f"{c['federated_auc']:8.4f} {c['central_auc']:8.4f} "
            f"{c['ckks_aggregation_s_per_round'] * 1e3:8.2f}ms "
            f"{c['plain_aggregation_s_per_round'] * 1e3:8.3f}ms {c['aggregation_ratio']:7.0f} "
            f"{c['ciphertext_bytes_per_update']:9d}"
        )
    m = result["micro_aggregation"]
    print(
        f"\nsum of {result['hospitals']} updates, median of {result['micro_repeats']}: "
        f"CKKS {m['ckks_sum_s'] * 1e3:.2f} ms, plain {m['plain_sum_s'] * 1e6:.1f} µs, "
        f"ratio {m['ratio']:.0f}; encrypting one update {m['encrypt_one_update_s'] * 1e3:.1f} ms"
    )
    print(f"peak RSS of the largest run process: {result['max_child_rss_mb']} MB")


def main() -> int:
    """Run every case, print a table (or one JSON object with --json)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hospitals", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--micro-repeats", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medchain-fl-bench-") as tmp:
        cases = []
        for dataset in ("breast_cancer", "diabetes"):
            for iid in (True, False):
                print(f"{dataset} {'iid' if iid else 'non-iid'} …", file=sys.stderr, flush=True)
                cases.append(bench_case(Path(tmp), dataset, iid, args))
    features = 30
    result = {
        "rounds": args.rounds,
        "hospitals": args.hospitals,
        "seed": args.seed,
        "plan": vars(TrainingPlan()),
        "cases": cases,
        "micro_repeats": args.micro_repeats,
        "micro_aggregation": micro_aggregation(args.hospitals, features, args.micro_repeats),
        "max_child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
