"""What strict validation costs per resource, against the lax validation it adds to.

Same run, same resources (every entry of the Synthea bundles in tests/data),
already parsed from JSON as the importer has them:

- `model`: fhir.resources R4B `model_validate` alone (lax pydantic: the baseline,
  and what `validate_resource` did before the strict pass);
- `strict`: the strict JSON-type and required-binding pass alone;
- `validate_resource`: both, plus the canonical JSON the importer hashes.

    .venv/bin/python bench/fhir_validation.py             # 5 rounds
    .venv/bin/python bench/fhir_validation.py --rounds 20 --json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from rich.console import Console
from rich.table import Table

from medchain.fhir.strict import check_resource
from medchain.fhir.validate import validate_resource

SYNTHEA = sorted((Path(__file__).resolve().parents[1] / "tests/data/fhir/synthea").glob("*.json"))


def resources() -> list[dict[str, Any]]:
    """Every resource of the Synthea bundles."""
    return [e["resource"] for f in SYNTHEA for e in json.loads(f.read_bytes())["entry"]]


def per_resource_us(
    check: Callable[[dict[str, Any]], object], items: list[dict[str, Any]], rounds: int
) -> float:
    """Mean microseconds per resource over `rounds` passes (best of 3 repeats)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(rounds):
            for resource in items:
                check(resource)
        best = min(best, time.perf_counter() - t0)
    return best / (rounds * len(items)) * 1e6


def main() -> None:
    """Print the table (or JSON) of per-resource costs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    items = resources()
    check_resource(items[0])  # build the per-model tables once, outside the timing
    rows = {
        "model": per_resource_us(
            lambda r: get_fhir_model_class(r["resourceType"]).model_validate(r), items, args.rounds
        ),
        "strict": per_resource_us(check_resource, items, args.rounds),
        "validate_resource": per_resource_us(validate_resource, items, args.rounds),
    }
    result = {
        "resources": len(items),
        "rounds": args.rounds,
        "us_per_resource": {k: round(v, 1) for k, v in rows.items()},
        "strict_share_of_model": round(rows["strict"] / rows["model"], 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    table = Table(title=f"FHIR validation, {len(items)} Synthea resources x {args.rounds}")
    table.add_column("step")
    table.add_column("µs / resource", justify="right")
    table.add_column("resources / s", justify="right")
    for name, us in rows.items():
        table.add_row(name, f"{us:.1f}", f"{1e6 / us:.0f}")
    Console().print(table)
    print(f"strict pass = {result['strict_share_of_model']:.1%} of plain model validation")


if __name__ == "__main__":
    main()
