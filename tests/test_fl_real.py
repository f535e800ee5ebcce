"""Federated learning, real mode: a SuperLink and one SuperNode per hospital as processes.

The same 2-round CKKS run as tests/test_federated.py (3 hospitals, the same round
hooks), but on Flower's deployment engine: `python -m medchain.fl.deploy superlink`,
three `... supernode` processes on loopback with free ports, and the run submitted
with Flower's own `flwr run`. The checks on what the run left behind are
test_federated's own, applied to this work directory. Every process started here
(and every one Flower started under them) is stopped at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_federated import FL_PYTHON, HOOKS, HOSPITALS
from test_federated import (
    test_aggregator_holds_only_ciphertexts_it_cannot_decrypt as check_only_ciphertexts_kept,
)
from test_federated import (
    test_round_hooks_run_and_a_round_cohort_file_is_what_trains as check_hooks_and_cohorts,
)
from test_federated import test_round_reports_match_the_model_files as check_round_reports

REPO = Path(__file__).resolve().parents[1]
TAG = "MEDCHAIN_FL_REAL_TEST"


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tagged_processes(tag: str) -> list[int]:
    """Live (not zombie) processes whose environment carries this test's tag: every
    process started here and every one Flower started under them, detached or not."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"{TAG}={tag}".encode() in environ.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """SuperLink + 3 SuperNodes + `submit --wait`; yields W; stops everything."""
    if not FL_PYTHON.exists():
        pytest.fail(f"{FL_PYTHON} is missing: run make setup (it makes the second venv)")
    root = tmp_path_factory.mktemp("flreal")
    (root / "hooks").mkdir()
    (root / "hooks" / "test_fl_hooks.py").write_text(HOOKS)
    workdir = root / "w"
    config = {
        "rounds": 2,
        "hospitals": HOSPITALS,
        "seed": 7,
        "mode": "ckks",
        "epochs": 2,
        "before_round": "test_fl_hooks:before",
        "after_round": "test_fl_hooks:after",
    }
    (root / "config.json").write_text(json.dumps(config))
    tag = uuid.uuid4().hex
    env = {**os.environ, TAG: tag, "PYTHONPATH": str(root / "hooks")}
    link = f"127.0.0.1:{free_port()}"
    deploy = [str(FL_PYTHON), "-m", "medchain.fl.deploy"]
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> None:
        log = (root / f"{name}.log").open("wb")
        started.append(
            subprocess.Popen(
                [*deploy, *args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root
            )
        )

    try:
        start("superlink", "superlink", "--port", link.split(":")[1], "--insecure")
        # the hospitals' node config needs W/config.json; submit writes the rest of W
        workdir.mkdir()
        (workdir / "config.json").write_text(json.dumps(config))
        for org in HOSPITALS:
            start(
                org,
                "supernode",
                "--org",
                org,
                "--workdir",
                str(workdir),
                "--superlink",
                link,
                "--port",
                str(free_port()),
                "--insecure",
            )
        done = subprocess.run(
            [
                *deploy,
                "submit",
                "--workdir",
                str(workdir),
                "--superlink",
                link,
                "--insecure",
                "--wait",
                "--timeout",
                "300",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=360,
        )
        logs = "".join((root / f"{n}.log").read_text()[-1500:] for n in ["superlink", *HOSPITALS])
        assert done.returncode == 0, done.stderr[-3000:] + logs
        assert json.loads(done.stdout.splitlines()[0])["run_id"]
        yield workdir
    finally:
        for proc in started:
            proc.send_signal(signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        leftovers = tagged_processes(tag)
        deadline = time.monotonic() + 20  # Flower's helpers exit once they see their parent gone
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.5)
            leftovers = tagged_processes(tag)
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        assert leftovers == [], f"processes left running after SIGTERM: {leftovers}"


def test_real_mode_runs_rounds_like_the_embedded_run(real_run: Path) -> None:
    """Under SuperLink/SuperNodes the round reports match the model files, the hooks run
    around each round (a cohort file replaces train.npz), and the aggregator kept only
    ciphertexts its public context cannot decrypt: the embedded run's checks, unchanged."""
    check_round_reports(real_run)
    check_hooks_and_cohorts(real_run)
    check_only_ciphertexts_kept(real_run)
    app = (real_run / "app" / "pyproject.toml").read_text()
    assert 'serverapp = "medchain.fl.apps:server_app"' in app


def test_a_supernode_without_its_work_directory_is_refused(tmp_path: Path) -> None:
    """`medchain fl client` (main venv, exec'ing the .venv-fl launcher) pointed at a folder
    without the run's config.json gets a reason and exit 1, before Flower starts."""
    done = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "medchain"),
            "fl",
            "client",
            "--org",
            "hospital-a",
            "--workdir",
            str(tmp_path),
            "--superlink",
            "127.0.0.1:1",
            "--insecure",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "config.json is missing" in done.stderr
