"""Real mode: one process per party, on Flower's deployment engine (issue 17 point 2).

    python -m medchain.fl.deploy superlink --port 9093 --insecure
    python -m medchain.fl.deploy supernode --org hosp-a --workdir W --superlink HOST:9093 \
        --port 9101 --insecure
    python -m medchain.fl.deploy submit --workdir W --superlink HOST:9093 --config C.json \
        --insecure --wait

The sponsor runs the SuperLink (Flower 1.42 serves its Fleet, Control and runtime APIs
on one HTTP port) and submits the run; each hospital runs one SuperNode whose node
config names its org and its own work directory. `submit` lays out W as the embedded
run does, writes the Flower App (W/app/pyproject.toml naming medchain.fl.apps) and a
Flower CLI connection (W/flwr-home/config.toml), and calls Flower's own `flwr run`;
with --wait it polls `flwr ls` until the run ends. The launchers exec Flower's
commands with this venv's bin first on PATH, because the SuperLink and SuperNodes
start `flower-superexec` and the app processes by name. Arguments after `--` go to
Flower unchanged (TLS files, SuperNode authentication keys: docs/federated.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from medchain.exceptions import MedChainError
from medchain.fl.config import load_config

APP_DIR = "app"
FLWR_HOME_DIR = "flwr-home"
CONNECTION = "medchain"
POLL_S = 1.0

APP_PYPROJECT = """\
# Written by `python -m medchain.fl.deploy submit`: the Flower App `flwr run` ships.
# The code is medchain.fl.apps, installed in every party's .venv-fl.
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "medchain-fl"
version = "1.0.0"
description = "MedChain federated training: FedAvg over CKKS-encrypted updates"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "medchain"

[tool.flwr.app.components]
serverapp = "medchain.fl.apps:server_app"
clientapp = "medchain.fl.apps:client_app"

[tool.flwr.app.config]
workdir = ""
"""


class DeployError(MedChainError):
    """A launcher that cannot start or a run that did not complete; the message says why."""


def flower_env() -> dict[str, str]:
    """This environment with this venv's bin first on PATH (Flower starts its helpers by name)."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def flower_command(name: str) -> str:
    """The path of one of Flower's commands in this venv."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise DeployError(f"{path} is missing: install flwr in this venv (make setup)")
    return str(path)


def superlink_argv(host: str, port: int, insecure: bool, extra: list[str]) -> list[str]:
    """flower-superlink on one port; apps run as subprocesses, nothing installed at runtime."""
    argv = [flower_command("flower-superlink"), "--host", host, "--port", str(port)]
    argv += ["--disable-runtime-dependency-installation"]
    return argv + (["--insecure"] if insecure else []) + extra


def supernode_argv(
    org: str, workdir: Path, superlink: str, host: str, port: int, insecure: bool, extra: list[str]
) -> list[str]:
    """flower-supernode for one hospital: its org and work directory as node config."""
    if not (workdir / "config.json").exists():
        raise DeployError(
            f"{workdir}/config.json is missing: give the hospital's copy of the run's work "
            "directory (config.json, keys/hospitals.secret.ctx, data/<org>/)"
        )
    if '"' in org or " " in org:
        raise DeployError("--org: an org id without quotes or spaces")
    node_config = f'org="{org}" workdir="{workdir}"'
    argv = [flower_command("flower-supernode"), "--superlink", superlink]
    argv += ["--host", host, "--port", str(port), "--node-config", node_config]
    return argv + (["--insecure"] if insecure else []) + extra


def write_app(
    workdir: Path, superlink: str, insecure: bool, root_certificates: Path | None
) -> Path:
    """W/app/pyproject.toml (the Flower App) and W/flwr-home/config.toml (the connection)."""
    app = workdir / APP_DIR
    app.mkdir(parents=True, exist_ok=True)
    (app / "pyproject.toml").write_text(APP_PYPROJECT)
    lines = [
        "[superlink]",
        f'default = "{CONNECTION}"',
        "",
        f"[superlink.{CONNECTION}]",
        f"address = {json.dumps(superlink)}",
    ]
    if insecure:
        lines.append("insecure = true")
    elif root_certificates is not None:
        lines.append(f"root-certificates = {json.dumps(str(root_certificates.resolve()))}")
    home = workdir / FLWR_HOME_DIR
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text("\n".join(lines) + "\n")
    return app


def flwr_cli(workdir: Path, *args: str) -> dict[str, Any]:
    """One `flwr` command against W's connection, its --format json answer decoded."""
    env = {**flower_env(), "FLWR_HOME": str(workdir / FLWR_HOME_DIR)}
    done = subprocess.run(
        [flower_command("flwr"), *args, "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    try:
        answer: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        answer = {}
    if done.returncode != 0 or not answer.get("success"):
        said = (answer.get("error-message") or done.stdout + done.stderr).strip()
        raise DeployError(f"flwr {args[0]} failed: {said[-1500:]}")
    return answer


def submit(workdir: Path, superlink: str, insecure: bool, root_certificates: Path | None) -> str:
    """`flwr run` the app with run config workdir=W; the run id."""
    app = write_app(workdir, superlink, insecure, root_certificates)
    run_config = f"workdir={json.dumps(str(workdir))}"
    answer = flwr_cli(workdir, "run", str(app), CONNECTION, "--run-config", run_config)
    return str(answer["run-id"])


def wait_for_run(workdir: Path, run_id: str, timeout_s: float) -> str:
    """Poll `flwr ls --run-id` until the run is finished; its final status."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = flwr_cli(workdir, "ls", CONNECTION, "--run-id", run_id)["runs"]
        status = str(runs[0]["status"]) if runs else "unknown"
        if status.startswith("finished"):
            return status
        if time.monotonic() > deadline:
            raise DeployError(
                f"run {run_id} still {status} after {timeout_s:.0f} s: stop it or wait longer"
            )
        time.sleep(POLL_S)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m medchain.fl.deploy",
        description="Real mode: the SuperLink, one SuperNode per hospital, and the run's "
        "submission. Arguments after -- go to Flower unchanged.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    link = sub.add_parser("superlink", help="start the sponsor's SuperLink (exec)")
    link.add_argument("--host", default="127.0.0.1", help="address to listen on")
    link.add_argument("--port", type=int, default=9093, help="its one HTTP port")
    node = sub.add_parser("supernode", help="start one hospital's SuperNode (exec)")
    node.add_argument("--org", required=True, help="the hospital's org id in the run")
    node.add_argument("--workdir", type=Path, required=True, help="the hospital's work directory")
    node.add_argument("--superlink", required=True, help="the SuperLink's HOST:PORT")
    node.add_argument("--host", default="127.0.0.1", help="its local runtime API address")
    node.add_argument("--port", type=int, default=9094, help="its local runtime API port")
    run = sub.add_parser("submit", help="lay out W and submit the run with flwr run")
    run.add_argument("--workdir", type=Path, required=True, help="the sponsor's work directory")
    run.add_argument("--superlink", required=True, help="the SuperLink's HOST:PORT")
    run.add_argument("--config", type=Path, help="the run configuration (default: W/config.json)")
    run.add_argument("--root-certificates", type=Path, help="CA bundle of the SuperLink's TLS")
    run.add_argument("--wait", action="store_true", help="wait until the run ends")
    run.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits")
    for p in (link, node, run):
        p.add_argument("--insecure", action="store_true", help="no TLS (loopback tests only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exec a SuperLink or SuperNode, or submit a run; exit 0, 1 (refused/failed) or 2 (usage)."""
    args_in = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, extra = args_in[:cut], args_in[cut + 1 :]
    args = _parser().parse_args(args_in)
    try:
        if args.command == "superlink":
            argv_out = superlink_argv(args.host, args.port, args.insecure, extra)
            os.execve(argv_out[0], argv_out, flower_env())
        if args.command == "supernode":
            workdir = args.workdir.resolve()
            argv_out = supernode_argv(
                args.org, workdir, args.superlink, args.host, args.port, args.insecure, extra
            )
            os.execve(argv_out[0], argv_out, flower_env())
        return _submit(args)
    except MedChainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _submit(args: argparse.Namespace) -> int:
    """Prepare W (as the embedded run does), submit, and with --wait report the result."""
    from medchain.fl.run import prepare  # imports Flower's simulation; only submit needs it

    workdir: Path = args.workdir.resolve()
    if not args.insecure and args.root_certificates is None:
        raise DeployError(
            "give --root-certificates (the SuperLink's CA), or --insecure on loopback"
        )
    config = load_config(args.config or workdir / "config.json")
    prepare(workdir, config)
    result = workdir / "result.json"
    result.unlink(missing_ok=True)
    run_id = submit(workdir, args.superlink, args.insecure, args.root_certificates)
    print(json.dumps({"run_id": run_id}), flush=True)
    if not args.wait:
        return 0
    status = wait_for_run(workdir, run_id, args.timeout)
    if status != "finished:completed" or not result.exists():
        raise DeployError(f"run {run_id} ended {status}: the SuperLink's log says why")
    print(result.read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
