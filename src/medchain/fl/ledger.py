"""The chain's round hooks, run inside the aggregator's process in .venv-fl.

`medchain fl run` (main venv) names `medchain.fl.ledger:before_round` and
`:after_round` in the run's configuration. This venv cannot import the chain side
(Flower's pins clash with FastAPI's, Typer's and protobuf's), so each hook shells
out to the main venv's `medchain` CLI, whose path W/chain.json gives (or the
MEDCHAIN_FL_CLI environment variable), and only turns files into files:

- before round r: `medchain fl prepare-round` commits every hospital's cohort and
  writes W/data/<org>/round-<r>.json from that hospital's own vault; here each
  becomes the round-<r>.npz and heldout.npz its ClientApp reads.
- after round r: `medchain fl record-round` records the round on chain.

`python -m medchain.fl.ledger initial-model|contributions` are the two steps of
`medchain fl run` that need numpy or the CKKS keys: a zero model to start a study
from, and the leave-one-out values after its last round.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from medchain.exceptions import MedChainError
from medchain.fl import ckks
from medchain.fl.apps import PUBLIC_CONTEXT, SECRET_CONTEXT, AggregatorState
from medchain.fl.data import Part, read_part, write_part
from medchain.fl.model import evaluate, initial_params, model_bytes, model_sm3

CHAIN_SETTINGS = "chain.json"
CLI_ENV = "MEDCHAIN_FL_CLI"
BASIS_POINTS = 10_000
FL_VENV_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


class LedgerHookError(MedChainError):
    """A chain step of a round failed; the message carries the CLI's own reason."""


def before_round(workdir: Path, r: int) -> None:
    """Commit the round's cohorts on chain, then lay out each hospital's files."""
    _medchain(workdir, "prepare-round", r)
    for org in _hospitals(workdir):
        folder = workdir / "data" / org
        rows = json.loads((folder / f"round-{r}.json").read_text())
        write_part(folder / f"round-{r}.npz", _part(rows["train"]))
        write_part(folder / "heldout.npz", _part(rows["heldout"]))


def after_round(workdir: Path, r: int) -> None:
    """Record the round (model hash, metrics, update hashes) on chain."""
    _medchain(workdir, "record-round", r)


def _medchain(workdir: Path, command: str, r: int) -> None:
    settings = json.loads((workdir / CHAIN_SETTINGS).read_text())
    cli = os.environ.get(CLI_ENV) or str(settings["medchain"])
    args = [cli, "fl", command, "--workdir", str(workdir), "--round", str(r)]
    # Ray puts this venv's site-packages on PYTHONPATH once it runs: the main venv's
    # command must not see them (Flower's typer would shadow its own).
    env = {k: v for k, v in os.environ.items() if k not in FL_VENV_VARIABLES}
    done = subprocess.run(args, stdout=sys.stdout, stderr=subprocess.PIPE, text=True, env=env)
    if done.returncode != 0:
        raise LedgerHookError(
            f"round {r}: `medchain fl {command}` failed (exit {done.returncode}): "
            f"{done.stderr.strip()[-2000:]}"
        )


def _hospitals(workdir: Path) -> list[str]:
    return [str(o) for o in json.loads((workdir / "config.json").read_text())["hospitals"]]


def _part(rows: dict[str, Any]) -> Part:
    x = np.asarray(rows["X"], dtype=np.float64)
    return Part(
        x.reshape(len(rows["y"]), -1),
        np.asarray(rows["y"], dtype=np.int64),
        np.asarray(rows["sample_ids"], dtype=np.str_),
    )


def write_initial_model(path: Path, features: int) -> str:
    """Round 0 of a study: all-zero parameters (no party picks the start); its SM3."""
    data = model_bytes(initial_params(features))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return model_sm3(data)


def leave_one_out(workdir: Path, r: int) -> dict[str, Any]:
    """Each hospital's value in round r: the validation AUC of the round's aggregate
    minus that of the aggregate without its update, in basis points.

    Without hospital i the sum is the other hospitals' ciphertexts added (the
    aggregator can do that much, with its public context), decrypted with the
    hospitals' key and divided by their row count. The validation set is the union of
    the hospitals' held-out parts of round r, the rows each one reports its metrics
    on: in a deployment each hospital evaluates on its own part and sends counts;
    this embedded run holds them all in W, so one process evaluates.
    """
    with (workdir / "server" / "state.pkl").open("rb") as f:
        state: AggregatorState = pickle.load(f)
    updates = [u for u in state.received if u.round == r]
    if not updates:
        raise LedgerHookError(f"W/server/state.pkl holds no update of round {r}")
    orgs = [u.org for u in updates]
    parts = [read_part(workdir / "data" / org / "heldout.npz") for org in orgs]
    validation = Part(
        np.concatenate([p.X for p in parts]),
        np.concatenate([p.y for p in parts]),
        np.concatenate([p.sample_ids for p in parts]),
    )
    length = validation.X.shape[1] + 1

    def auc_of(chosen: list[int]) -> float:
        payloads = [updates[i].payload for i in chosen]
        if state.mode == ckks.CKKS:
            public = ckks.load_context((workdir / PUBLIC_CONTEXT).read_bytes())
            secret = ckks.load_context((workdir / SECRET_CONTEXT).read_bytes())
            total = ckks.decrypt_sum(secret, ckks.add_ciphertexts(public, payloads), length)
        else:
            total = ckks.read_plain(ckks.add_plain(payloads))
        params = total / sum(updates[i].n for i in chosen)
        auc = evaluate(params, validation).auc
        if auc is None:
            raise LedgerHookError("the validation rows hold one class only: no AUC")
        return auc

    everyone = list(range(len(updates)))
    full = auc_of(everyone)
    values = {
        org: round((full - auc_of([j for j in everyone if j != i])) * BASIS_POINTS)
        for i, org in enumerate(orgs)
    }
    return {
        "round": r,
        "method": "leave-one-out",
        "metric": "auc",
        "full_auc_bp": round(full * BASIS_POINTS),
        "validation": {"n": len(validation), "rows": "the hospitals' held-out parts of the round"},
        "values_bp": values,
    }


def main(argv: list[str] | None = None) -> int:
    """`initial-model --out F --features N` or `contributions --workdir W --round R`."""
    parser = argparse.ArgumentParser(prog="python -m medchain.fl.ledger")
    sub = parser.add_subparsers(dest="step", required=True)
    init = sub.add_parser("initial-model")
    init.add_argument("--out", type=Path, required=True)
    init.add_argument("--features", type=int, required=True)
    loo = sub.add_parser("contributions")
    loo.add_argument("--workdir", type=Path, required=True)
    loo.add_argument("--round", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        if args.step == "initial-model":
            digest = write_initial_model(args.out, args.features)
            print(json.dumps({"path": str(args.out), "sm3": digest}))
        else:
            result = leave_one_out(args.workdir.resolve(), args.round)
            (args.workdir / "contributions.json").write_text(json.dumps(result, indent=2) + "\n")
            print(json.dumps(result))
    except (MedChainError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
