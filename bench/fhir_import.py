"""FHIR import throughput through a custodian edge, against plain validation.

The import path is what a hospital runs: `POST /edge/v1/import/fhir` to a real
edge over HTTP, which validates every resource (fhir.resources R4B models, the
strict check, the search index entry; in --validate-workers processes),
rewrites references, encrypts each record with its own SM4-GCM key into the
vault (one pack file per patient batch, fsync'd), wraps the keys for the
patient under one SM2-wrapped import key, and registers the records on chain
(one records.register_batch tx per patient batch, in blocks made by a solo
node with its HTTP gateway); each upload answers once its block is committed.
The input is the Synthea bundles in tests/data, each imported once per round
for a fresh patient (so nothing is "already there").

Baseline, same run, same resources: `json.loads` + fhir.resources model
validation of every resource of the same files. `ratio` = import rate /
validation rate: the share of plain validation speed the whole pipeline keeps.
`cpu_s_per_1000`: CPU seconds the import window took in this process (edge,
node, HTTP clients) and its validation workers, per 1,000 resources: the cost
that wall-clock rates hide on a shared, busy machine (Linux /proc; absent
elsewhere).

    .venv/bin/python bench/fhir_import.py               # 5 rounds of the 4 bundles, 4 workers
    .venv/bin/python bench/fhir_import.py --rounds 20 --json
    .venv/bin/python bench/fhir_import.py --validate-workers 0 --workers 20 --json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import free_port, start_chain  # bench/common.py
from fhir.resources.R4B import get_fhir_model_class
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from medchain import crypto
from medchain.contracts.records.model import RESOURCE_TYPES
from medchain.edge.custodian import CustodianEdge
from medchain.edge.requester import import_file
from medchain.edge.validation_pool import ValidationPool
from medchain.edge.vault import Vault
from medchain.gateway.limits import Limits
from medchain.node import EdgeServer

CHAIN_ID = "bench-fhir-import"
DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
SYNTHEA = sorted((DATA / "fhir" / "synthea").glob("*.json"))
stderr = Console(stderr=True)


def baseline(files: Sequence[Path], rounds: int) -> tuple[int, float]:
    """Resources validated per second by fhir.resources alone (parse + validate)."""
    raws = [f.read_bytes() for f in files]
    count, t0 = 0, time.perf_counter()
    for _ in range(rounds):
        for raw in raws:
            for entry in json.loads(raw)["entry"]:
                resource = entry["resource"]
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)
                count += 1
    return count, time.perf_counter() - t0


def record_count(files: Sequence[Path]) -> int:
    """Resources per round that become records (the rest are validated and skipped)."""
    return sum(
        e["resource"]["resourceType"] in RESOURCE_TYPES
        for f in files
        for e in json.loads(f.read_bytes())["entry"]
    )


def cpu_seconds() -> float | None:
    """CPU time (user + system) of this process and its live children (the
    validation workers), from /proc; None where there is no /proc."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    try:
        children = Path(f"/proc/{os.getpid()}/task")
        pids = {
            pid for task in children.iterdir() for pid in (task / "children").read_text().split()
        }
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    except OSError:
        return None
    return total


def run_import(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    admin, hospital = crypto.generate_keypair(), crypto.generate_keypair()
    parts: list[Any] = []
    node, started = start_chain(directory, CHAIN_ID, admin, args.block_interval)
    parts += started
    org = {
        "org_id": "hosp-a",
        "name": "Hospital A",
        "org_type": "hospital",
        "admin_public_key": hospital.public,
    }
    assert node.send(admin, "identity", "register_org", org)["code"] == 0
    edge = CustodianEdge(Vault(directory / "vault", hospital), hospital, node)
    if args.validate_workers:
        edge.validation = ValidationPool(args.validate_workers)
        parts.append(edge.validation)  # closed last
    gc.freeze()  # as `medchain edge serve` does once the edge is ready
    # One importer sends everything from one address: no request limits.
    server = EdgeServer(edge, "127.0.0.1", free_port(), limits=Limits.unlimited())
    server.start()
    parts.insert(0, server)
    try:
        patients = []
        for _ in range(args.rounds * len(SYNTHEA)):
            key = crypto.generate_keypair()
            assert node.send(key, "identity", "register_patient", {})["code"] == 0
            patients.append(node.account(key)["did"])
        raws = [f.read_bytes() for f in SYNTHEA]
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=stderr, transient=True) as progress:
            task = progress.add_task(f"importing ({args.workers} workers)", total=len(patients))

            def one(i: int) -> dict[str, Any]:
                r = import_file(
                    hospital, CHAIN_ID, server.url, "fhir", raws[i % len(raws)], patients[i]
                )
                if r.status_code != 200:
                    raise SystemExit(f"import failed: {r.text}")
                progress.advance(task)
                return dict(r.json())

            cpu0, t0 = cpu_seconds(), time.perf_counter()
            with ThreadPoolExecutor(args.workers) as pool:
                bodies = list(pool.map(one, range(len(patients))))
            seconds, cpu1 = time.perf_counter() - t0, cpu_seconds()
        imported = sum(b["imported"] for b in bodies)
        rejected = sum(b["rejected"] for b in bodies)
        return {
            "files": len(patients),
            "records": imported,
            "rejected": rejected,
            "seconds": seconds,
            "cpu_seconds": None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
            "height": node.status()["height"],
        }
    finally:
        for part in parts:
            part.close() if isinstance(part, ValidationPool) else part.stop()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=5, help="imports of each bundle (new patient)")
    p.add_argument("--workers", type=int, default=4, help="bundles uploaded at once")
    p.add_argument("--block-interval", type=float, default=0.2, help="solo block interval, s")
    p.add_argument(
        "--validate-workers",
        type=int,
        default=2,
        help="edge processes that validate imports (0: in the request's thread)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not SYNTHEA:
        raise SystemExit(f"no Synthea bundles under {DATA}: tests/data is part of the repository")
    validated, validate_s = baseline(SYNTHEA, args.rounds)
    with tempfile.TemporaryDirectory(prefix="medchain-import-") as tmp:
        run = run_import(args, Path(tmp))
    per_round = record_count(SYNTHEA)
    if run["records"] != per_round * args.rounds or run["rejected"]:
        raise SystemExit(f"expected {per_round * args.rounds} records, got {run}")
    all_resources = validated  # every resource of every file is validated on import too
    import_rate = all_resources / run["seconds"]
    record_rate = run["records"] / run["seconds"]
    validate_rate = validated / validate_s
    result = {
        "bundles_imported": run["files"],
        "resources": all_resources,
        "records_registered": run["records"],
        "import_seconds": round(run["seconds"], 2),
        "import_resources_per_s": round(import_rate, 1),
        "import_records_per_s": round(record_rate, 1),
        "blocks": run["height"],
        "cpu_s_per_1000": (
            None
            if run["cpu_seconds"] is None
            else round(run["cpu_seconds"] * 1000 / all_resources, 3)
        ),
        "validate_resources_per_s": round(validate_rate, 1),
        "ratio": round(import_rate / validate_rate, 3),
        "block_interval_s": args.block_interval,
        "workers": args.workers,
        "validate_workers": args.validate_workers,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    table = Table(title="FHIR import vs plain validation (Synthea bundles, same resources)")
    for col in ("measure", "resources", "seconds", "resources/s"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    table.add_row(
        "import: validate + encrypt + register, over HTTP",
        f"{all_resources:,}",
        f"{run['seconds']:.2f}",
        f"{import_rate:,.0f}",
    )
    table.add_row(
        "  of which registered as records",
        f"{run['records']:,}",
        f"{run['seconds']:.2f}",
        f"{record_rate:,.0f}",
    )
    table.add_row(
        "baseline: json + fhir.resources validation",
        f"{validated:,}",
        f"{validate_s:.2f}",
        f"{validate_rate:,.0f}",
    )
    Console().print(table)
    Console().print(
        f"ratio import / validation: {result['ratio']:.2f}; {run['files']} bundle imports "
        f"by {args.workers} workers in {run['height']} blocks "
        f"({args.block_interval * 1000:.0f} ms interval)"
    )
    if result["cpu_s_per_1000"] is not None:
        Console().print(
            f"CPU: {result['cpu_s_per_1000']:.2f} s per 1,000 resources imported "
            "(this process and its validation workers)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
