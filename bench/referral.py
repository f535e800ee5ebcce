"""End-to-end cross-hospital referral time on the embedded (solo) engine.

The issue's reference case is a referral with record transfer taking 48 h; this
measures what the ledger part of it costs, from `refer` to the consultation
report registered, through real HTTP servers: a solo node with `medchain node`'s
200 ms block interval and its gateway, and two custodian edges (hosp-a and
hosp-b), each with its own vault and org key. Per referral:

1. refer    hosp-a's doctor stores the FHIR ServiceRequest at hosp-a's edge (which
            registers it: a block) and submits referral.refer (a block)
2. approve  the patient's referral.approve (a block; issues the package grant)
3. fetch    hosp-b's doctor fetches the package (one DiagnosticReport) and the
            ServiceRequest from hosp-a's edge through the exchange: request,
            signed fetch (release), decrypt + hash check, ack (3 blocks each)
4. accept   referral.accept (a block)
5. report   the report stored at hosp-b's edge (registered: a block) and
            referral.report (a block)

Baseline, measured in the same run, interleaved with the referrals: one plain
exchange (request -> release -> ack) of one record under an existing grant. The
human parts of a referral (the patient deciding, the consultation itself) are
not in these numbers.

    .venv/bin/python bench/referral.py              # table
    .venv/bin/python bench/referral.py --n 50 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import percentile, start_chain  # bench/common.py
from rich.console import Console
from rich.table import Table

from medchain import crypto
from medchain.contracts.identity.model import did_for_key
from medchain.edge.custodian import CustodianEdge
from medchain.edge.requester import fetch_record, upload_record
from medchain.edge.vault import Vault
from medchain.gateway.limits import Limits
from medchain.node import EdgeServer, free_port
from medchain.sdk.client import Client

CHAIN_ID = "bench-referral"
NODE_BLOCK_INTERVAL = 0.2  # `medchain node`'s default
DAY_MS = 86_400_000
STEPS = ("refer", "approve", "fetch", "accept", "report")
DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "fhir" / "spec-examples"
stderr = Console(stderr=True)


def service_request(patient: str, n: int) -> bytes:
    """A FHIR ServiceRequest for referral `n` (cardiology consult, urgent)."""
    return json.dumps(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "priority": "urgent",
            "subject": {"reference": f"Patient/{patient}"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "11429006"}]},
            "note": [{"text": f"referral {n}"}],
        }
    ).encode()


class Bench:
    """The running parts and keys, and helpers that fail loudly on any refusal."""

    def __init__(self, directory: Path, interval: float) -> None:
        names = ("root", "admin_a", "admin_b", "doctor_a", "doctor_b", "patient")
        self.k = {n: crypto.generate_keypair() for n in names}
        # Each edge reads raw blocks and state as its org key: operators of the node.
        operators = frozenset((self.k[a].suite, self.k[a].public) for a in ("admin_a", "admin_b"))
        root, self.stops = start_chain(
            directory, CHAIN_ID, self.k["root"], interval, operators=operators
        )
        self.url = root.url
        self.node = Client(self.url, key=self.k["admin_a"])
        self.edges: dict[str, str] = {}

    def did(self, who: str) -> str:
        return did_for_key(self.k[who].suite, self.k[who].public)

    def send(self, who: str, contract: str, action: str, payload: dict[str, Any]) -> Any:
        out = self.node.send(self.k[who], contract, action, payload)
        if out.get("code") != 0:
            raise SystemExit(f"{contract}.{action} by {who} refused: {out.get('log')}")
        return out

    def upload(self, who: str, org: str, content: bytes, record_id: str) -> None:
        r = upload_record(
            self.k[who], CHAIN_ID, self.edges[org], content, self.did("patient"), record_id
        )
        if r.status_code != 201:
            raise SystemExit(f"storing {record_id} at {org}'s edge failed: {r.text}")

    def set_up(self, directory: Path) -> None:
        """Two hospitals, their doctors and edges, a patient who lets hosp-a's doctor
        read their reports (what the doctor may pass on)."""
        for org, admin in (("hosp-a", "admin_a"), ("hosp-b", "admin_b")):
            payload = {
                "org_id": org,
                "name": org,
                "org_type": "hospital",
                "admin_public_key": self.k[admin].public,
            }
            self.send("root", "identity", "register_org", payload)
        for org, admin, doctor in (
            ("hosp-a", "admin_a", "doctor_a"),
            ("hosp-b", "admin_b", "doctor_b"),
        ):
            member = {"org_id": org, "public_key": self.k[doctor].public, "roles": ["doctor"]}
            self.send(admin, "identity", "add_member", member)
        self.send("patient", "identity", "register_patient", {})
        for org, admin in (("hosp-a", "admin_a"), ("hosp-b", "admin_b")):
            reader = Client(self.url, key=self.k[admin])
            edge = CustodianEdge(
                Vault(directory / f"vault-{org}", self.k[admin]), self.k[admin], reader
            )
            server = EdgeServer(edge, "127.0.0.1", free_port(), limits=Limits.unlimited())
            server.start()
            self.stops.insert(0, server)
            self.edges[org] = server.url
            self.send(admin, "identity", "set_endpoint", {"org_id": org, "edge_url": server.url})
        grant = {
            "patient": self.did("patient"),
            "grantee_kind": "did",
            "grantee": self.did("doctor_a"),
            "purposes": ["TREAT"],
            "scope_types": ["DiagnosticReport", "ServiceRequest"],
            "expires_ms": self.node.block_time_ms() + 30 * DAY_MS,
        }
        self.send("patient", "consent", "grant", grant)

    def stop(self) -> None:
        for part in self.stops:
            part.stop()


def timed(fn: Callable[[], object]) -> float:
    """Seconds `fn` takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def one_referral(b: Bench, n: int, report: bytes) -> dict[str, float]:
    """One referral, every step timed (s); its package record is stored beforehand."""
    rid, package, sr, consult = f"ref-{n}", f"report-{n}", f"sr-{n}", f"consult-{n}"
    b.upload("admin_a", "hosp-a", report, package)

    def refer() -> None:
        b.upload("doctor_a", "hosp-a", service_request(b.did("patient"), n), sr)
        payload = {
            "referral_id": rid,
            "patient": b.did("patient"),
            "to_org": "hosp-b",
            "to_doctor": b.did("doctor_b"),
            "reason_code": "http://snomed.info/sct|49436004",
            "urgency": "urgent",
            "record_ids": [package],
            "service_request_id": sr,
            "expires_ms": b.node.block_time_ms() + 7 * DAY_MS,
        }
        b.send("doctor_a", "referral", "refer", payload)

    def fetch() -> None:
        for record_id in (package, sr):
            fetch_record(b.node, b.k["doctor_b"], record_id)

    def report_back() -> None:
        b.upload("doctor_b", "hosp-b", report, consult)
        b.send("doctor_b", "referral", "report", {"referral_id": rid, "record_id": consult})

    steps = {
        "refer": timed(refer),
        "approve": timed(lambda: b.send("patient", "referral", "approve", {"referral_id": rid})),
        "fetch": timed(fetch),
        "accept": timed(lambda: b.send("doctor_b", "referral", "accept", {"referral_id": rid})),
        "report": timed(report_back),
    }
    steps["total"] = sum(steps.values())
    return steps


def baseline_exchange(b: Bench, n: int) -> float:
    """One plain exchange of one record under the doctor's existing grant (s)."""
    return timed(lambda: fetch_record(b.node, b.k["doctor_a"], f"report-{n}"))


def summarise(samples: list[dict[str, float]], baseline: list[float]) -> dict[str, Any]:
    """p50/p95 (ms) of each step, the whole, and the baseline."""
    result: dict[str, Any] = {}
    for name in (*STEPS, "total"):
        xs = sorted(s[name] * 1000 for s in samples)
        result[name] = {
            "p50_ms": round(percentile(xs, 0.5), 1),
            "p95_ms": round(percentile(xs, 0.95), 1),
        }
    xs = sorted(x * 1000 for x in baseline)
    result["baseline_exchange"] = {
        "p50_ms": round(percentile(xs, 0.5), 1),
        "p95_ms": round(percentile(xs, 0.95), 1),
    }
    result["total_over_baseline_p50"] = round(
        result["total"]["p50_ms"] / result["baseline_exchange"]["p50_ms"], 2
    )
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the bench; print a table, or one JSON object with --json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="referrals (default 20)")
    parser.add_argument(
        "--interval", type=float, default=NODE_BLOCK_INTERVAL, help="block interval (s)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    report = (DATA / "DiagnosticReport-f201.json").read_bytes()
    with tempfile.TemporaryDirectory(prefix="medchain-referral-") as tmp:
        b = Bench(Path(tmp), args.interval)
        try:
            b.set_up(Path(tmp))
            samples, baseline = [], []
            for n in range(args.n):
                samples.append(one_referral(b, n, report))
                baseline.append(baseline_exchange(b, n))
                stderr.print(f"referral {n + 1}/{args.n}: {samples[-1]['total']:.2f} s", end="\r")
            stderr.print()
        finally:
            b.stop()
    result = {
        "engine": "solo",
        "referrals": args.n,
        "block_interval_s": args.interval,
        "package_records": 1,
        **summarise(samples, baseline),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    table = Table(title=f"Referral on the solo engine, {args.n} referrals (ms)")
    for column in ("step", "p50", "p95"):
        table.add_column(column, justify="right" if column != "step" else "left")
    for name in (*STEPS, "total", "baseline_exchange"):
        table.add_row(name, f"{result[name]['p50_ms']:.1f}", f"{result[name]['p95_ms']:.1f}")
    Console().print(table)
    Console().print(
        f"whole referral p50 = {result['total_over_baseline_p50']}x one plain exchange "
        f"(block interval {args.interval} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
