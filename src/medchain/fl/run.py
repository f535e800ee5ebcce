"""`python -m medchain.fl.run --workdir W --config C.json`: one federated run, embedded.

Prepares the work directory (the configuration, the CKKS keys as one hospital would
make them, each hospital's data files unless the chain side wrote them) and runs the
ServerApp and one ClientApp per hospital on Flower's simulation engine (Ray). On
this 2-core machine Ray starts in about 8 s and then a round takes well under a
second; see docs/federated.md. Exit 0 with W/result.json written, or 1 with a reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flwr.simulation import run_simulation

from medchain.exceptions import MedChainError
from medchain.fl import ckks
from medchain.fl.apps import PUBLIC_CONTEXT, SECRET_CONTEXT, make_client_app, make_server_app
from medchain.fl.config import FlConfig, load_config
from medchain.fl.data import DataError, split_dataset, write_split


def prepare(workdir: Path, config: FlConfig) -> None:
    """Lay out W: config.json, the keys (CKKS mode) and the hospitals' data files."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
    if config.mode == ckks.CKKS and not (workdir / SECRET_CONTEXT).exists():
        make_keys(workdir)
    if config.data == "hooks":  # the before-round hook writes each round's files
        return
    present = [(workdir / "data" / org / "train.npz").exists() for org in config.hospitals]
    if not any(present):
        split = split_dataset(
            config.dataset, list(config.hospitals), config.seed, config.iid, config.alpha
        )
        write_split(workdir, split)
    elif not all(present):
        raise DataError("some hospitals have data files under W/data and some not: all or none")


def make_keys(workdir: Path) -> None:
    """The publishing hospital's CKKS keys: the secret context for the hospitals, the
    public one for the aggregator (a deployment wraps the secret one to each hospital
    with SM2 instead of leaving it in a shared folder)."""
    secret = ckks.new_secret_context()
    (workdir / SECRET_CONTEXT).parent.mkdir(parents=True, exist_ok=True)
    (workdir / SECRET_CONTEXT).write_bytes(ckks.secret_context_bytes(secret))
    (workdir / SECRET_CONTEXT).chmod(0o600)
    (workdir / PUBLIC_CONTEXT).write_bytes(ckks.public_context_bytes(secret))


def run_embedded(workdir: Path, config: FlConfig) -> None:
    """All hospitals and the aggregator in Flower's simulation engine, in this process."""
    run_simulation(
        server_app=make_server_app(workdir),
        client_app=make_client_app(workdir),
        num_supernodes=len(config.hospitals),
        backend_config={
            # Every hospital may train at once: one logical CPU each (Ray's default
            # would be the machine's two cores, queuing the third hospital).
            "init_args": {"num_cpus": len(config.hospitals)},
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        },
    )


def main(argv: list[str] | None = None) -> int:
    """Run the configured rounds; print W/result.json's content."""
    parser = argparse.ArgumentParser(prog="python -m medchain.fl.run", description=__doc__)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    try:
        config = load_config(args.config)
        prepare(workdir, config)
    except MedChainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    result = workdir / "result.json"
    result.unlink(missing_ok=True)
    run_embedded(workdir, config)
    if not result.exists():
        print(
            "error: the run stopped before its last round; Flower's log above says why",
            file=sys.stderr,
        )
        return 1
    print(result.read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
