"""Coverage-guided fuzzing (atheris/libFuzzer) of the parsers that read untrusted bytes.

Targets (bench/fuzz_targets.py): the tx decoder with its strict canonical CBOR,
the ABCI socket framing and request handling, the HL7 v2 and CSV importers,
and the edge's request-signature check. Each runs in its own process,
seeded with the real samples in tests/data and valid txs and signed requests
built at start. A crash is any exception other than the target's documented
rejections; the fuzzer records it (type and the innermost MedChain frame),
saves the input under --crash-dir and goes on, so one run counts the distinct
crashes instead of stopping at the first. A single input running longer than
--timeout seconds ends its worker (libFuzzer saves it) and counts as a hang.

The baseline is `bytes.decode("utf-8")` under the same fuzzer in the same
run: the fuzzer's own cost per input. `x baseline` = the target's rate over
the baseline's; 1.0 would mean the parser costs nothing.

    nice -n 19 .venv/bin/python bench/fuzz.py                  # 1,000,000 inputs each
    .venv/bin/python bench/fuzz.py --runs 20000 --targets tx,abci
    .venv/bin/python bench/fuzz.py --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
DEFAULT_RUNS = 1_000_000
DEFAULT_TIMEOUT_S = 20
DEFAULT_MAX_LEN = 4096
STATS_EVERY_S = 2.0
INSTRUMENTED = ["medchain", "hl7"]
TARGET_NAMES = ("baseline", "tx", "abci", "hl7v2", "csv", "signed-request")

stderr = Console(stderr=True)


@dataclass
class Crash:
    """One distinct crash: exception type at the innermost frame of our code."""

    kind: str
    where: str
    message: str
    count: int
    input_file: str


@dataclass
class TargetRun:
    """What one worker did; written by the worker, read by the driver."""

    target: str
    what: str
    runs: int = 0
    seconds: float = 0.0
    rejected: int = 0
    slowest_ms: float = 0.0
    coverage: int | None = None
    crashes: dict[str, Crash] = field(default_factory=dict)
    exit: str = "running"

    @property
    def per_s(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0


# -- worker (one process per target) ---------------------------------------------------


def _crash_site(error: BaseException) -> str:
    """file:line of the innermost frame in src/medchain (else the innermost frame)."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/medchain/" in f.filename and "/bench/" not in f.filename]
    frame = (ours or frames)[-1] if frames else None
    if frame is None:
        return "?"
    path = frame.filename.split("/src/")[-1] if "/src/" in frame.filename else frame.filename
    return f"{path}:{frame.lineno}"


def run_worker(
    name: str, runs: int, stats_path: Path, crash_dir: Path, libfuzzer: list[str]
) -> None:
    """Fuzz one target until `runs` inputs; never returns (os._exit after the last)."""
    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED):
        sys.path.insert(0, str(BENCH))
        import fuzz_targets

    target = fuzz_targets.TARGETS[name]
    corpus = Path(tempfile.mkdtemp(prefix=f"medchain-fuzz-{name}-"))
    for i, seed in enumerate(target.seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    run = TargetRun(name, target.what)
    start = time.perf_counter()
    last_write = start

    def save() -> None:
        run.seconds = time.perf_counter() - start
        stats_path.write_text(json.dumps(asdict(run)))

    def one_input(data: bytes) -> None:
        nonlocal last_write
        t0 = time.perf_counter()
        try:
            target.call(data)
        except target.rejections:
            run.rejected += 1
        except Exception as e:
            kind = type(e).__name__
            where = _crash_site(e)
            key = f"{kind}@{where}"
            crash = run.crashes.get(key)
            if crash is None:
                digest = hashlib.sha256(data).hexdigest()[:16]
                path = crash_dir / f"{name}-{kind}-{digest}.bin"
                path.write_bytes(data)
                crash = Crash(kind, where, str(e)[:200], 0, str(path))
                run.crashes[key] = crash
                save()
            crash.count += 1
        now = time.perf_counter()
        run.slowest_ms = max(run.slowest_ms, (now - t0) * 1000)
        run.runs += 1
        if now - last_write > STATS_EVERY_S:
            last_write = now
            save()
        if run.runs >= runs:
            run.exit = "done"
            save()
            sys.stderr.flush()
            os._exit(0)

    atheris.Setup([sys.argv[0], *libfuzzer, str(corpus)], one_input)
    atheris.Fuzz()


# -- driver ----------------------------------------------------------------------------


_COVERAGE = re.compile(rb"cov: (\d+)")


def fuzz_target(name: str, args: argparse.Namespace, workdir: Path) -> TargetRun:
    """Run one target's worker to completion and read back what it did."""
    stats = workdir / f"{name}.json"
    log = workdir / f"{name}.log"
    max_len = args.max_len.get(name, DEFAULT_MAX_LEN)
    libfuzzer = [
        f"-max_len={max_len}",
        f"-timeout={args.timeout}",
        "-rss_limit_mb=3072",
        f"-artifact_prefix={args.crash_dir}/{name}-",
        f"-seed={args.seed}",
    ]
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", name,
        "--runs", str(args.runs), "--stats", str(stats), "--crash-dir", str(args.crash_dir),
        "--", *libfuzzer,
    ]  # fmt: skip
    stderr.print(f"[dim]fuzzing {name}: {args.runs:,} inputs, max_len {max_len}…[/dim]")
    with log.open("wb") as out:
        proc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    run = read_stats(stats, name)
    if proc.returncode != 0:
        output = log.read_bytes()
        hang = b"timeout" in output.lower()
        kind = "hang" if hang else f"worker exit {proc.returncode}"
        tail = output.decode(errors="replace").strip().splitlines()[-3:]
        run.crashes[kind] = Crash(kind, "-", " / ".join(tail)[:200], 1, str(args.crash_dir))
        run.exit = kind
    coverage = _COVERAGE.findall(log.read_bytes())
    run.coverage = int(coverage[-1]) if coverage else None
    return run


def read_stats(path: Path, name: str) -> TargetRun:
    if not path.exists():
        return TargetRun(name, "?", exit="no stats")
    raw: dict[str, Any] = json.loads(path.read_text())
    crashes = {k: Crash(**v) for k, v in raw.pop("crashes").items()}
    return TargetRun(**raw, crashes=crashes)


def report(runs: Sequence[TargetRun], args: argparse.Namespace) -> None:
    base = next((r for r in runs if r.target == "baseline"), None)
    table = Table(title=f"MedChain fuzzing (atheris/libFuzzer), {args.runs:,} inputs per target")
    for col in ("target", "inputs", "s", "inputs/s", "x baseline", "rejected %", "slowest ms",
                "cov", "crashes"):  # fmt: skip
        table.add_column(col, justify="left" if col == "target" else "right")
    for r in runs:
        ratio = f"{r.per_s / base.per_s:.3f}" if base and base.per_s else "-"
        table.add_row(
            r.target,
            f"{r.runs:,}",
            f"{r.seconds:,.0f}",
            f"{r.per_s:,.0f}",
            ratio,
            f"{100 * r.rejected / r.runs:.1f}" if r.runs else "-",
            f"{r.slowest_ms:,.0f}",
            str(r.coverage or "-"),
            str(len(r.crashes)),
        )
    Console(width=max(Console().width, 110)).print(table)
    for r in runs:
        for key, c in r.crashes.items():
            stderr.print(f"[red]{r.target}: {key} x{c.count}: {c.message}[/red] ({c.input_file})")


def as_json(runs: Sequence[TargetRun]) -> dict[str, Any]:
    base = next((r for r in runs if r.target == "baseline"), None)
    return {
        r.target: {
            "what": r.what,
            "inputs": r.runs,
            "seconds": round(r.seconds, 1),
            "inputs_per_s": round(r.per_s, 1),
            "ratio_to_baseline": round(r.per_s / base.per_s, 4) if base and base.per_s else None,
            "rejected": r.rejected,
            "slowest_ms": round(r.slowest_ms, 1),
            "coverage": r.coverage,
            "distinct_crashes": len(r.crashes),
            "crashes": [asdict(c) for c in r.crashes.values()],
            "exit": r.exit,
        }
        for r in runs
    }


def _max_lens(text: str) -> dict[str, int]:
    """`name=N,name=N` -> {name: N}."""
    pairs = (item.split("=", 1) for item in text.split(",") if item)
    return {name: int(value) for name, value in pairs}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="inputs per target")
    p.add_argument("--targets", default=",".join(TARGET_NAMES), help="comma-separated")
    p.add_argument(
        "--max-len",
        type=_max_lens,
        default="hl7v2=2048,csv=2048",
        help="longest input per target, name=N,... (default %(default)s, others 4096); the "
        "seeds are cut to it, which keeps an HL7 or CSV input from costing a whole import",
    )
    p.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds per input")
    p.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    p.add_argument("--crash-dir", type=Path, default=Path(tempfile.gettempdir()) / "medchain-fuzz")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    p.add_argument("libfuzzer", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.targets.split(",")) - set(TARGET_NAMES)
    if unknown:
        p.error(f"unknown target(s) {sorted(unknown)}; targets: {', '.join(TARGET_NAMES)}")
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.crash_dir.mkdir(parents=True, exist_ok=True)
    if args.worker:
        run_worker(args.worker, args.runs, args.stats, args.crash_dir, args.libfuzzer)
    names = args.targets.split(",")
    if "baseline" not in names:
        names.insert(0, "baseline")
    with tempfile.TemporaryDirectory(prefix="medchain-fuzz-run-") as tmp:
        runs = [fuzz_target(name, args, Path(tmp)) for name in names]
    if args.json:
        print(json.dumps(as_json(runs)))
    else:
        report(runs, args)
    crashed = sum(len(r.crashes) for r in runs)
    if crashed:
        stderr.print(f"[bold red]{crashed} distinct crash(es); inputs in {args.crash_dir}[/]")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
