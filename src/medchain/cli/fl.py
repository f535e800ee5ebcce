"""`medchain fl`: train a study's model with Flower and record every round on chain.

`medchain fl run` is the sponsor's one command for issue 17's embedded run: it reads
the study from the chain, writes the fl configuration, and runs
`.venv-fl/bin/python -m medchain.fl.run` (Flower's pins keep it in a second venv).
That run calls `medchain.fl.ledger`'s hooks around each round, which call back into
this venv: `medchain fl prepare-round` (each hospital commits its cohort and reads
its cohort's rows from its own vault) and `medchain fl record-round` (the sponsor
records the round). After the study's last round, the leave-one-out contributions
and the model registry entry follow. A study's rounds may span several runs: a
later run starts at the chain's next round from the previous round's model file,
which must still hash to what the chain recorded.

Everything one run needs across processes is in W/chain.json: the study, node, home
and the key name of the sponsor and of each hospital (passphrases come the usual
way: MEDCHAIN_PASSPHRASE_<KEY>, --passphrase-file, MEDCHAIN_PASSPHRASE).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from medchain import crypto
from medchain.cli.common import (
    DEFAULT_HOME,
    DEFAULT_URL,
    Home,
    NodeUrl,
    client_failed,
    console,
    fail,
    load_key,
)
from medchain.cli.health import Key, submit_or_fail
from medchain.cli.models_infer import check_model_file, refuse_altered
from medchain.cli.models_infer import register as register_infer
from medchain.cli.research import commit_cohort, models_app
from medchain.cli.scripting import Exit, emit, note_tx
from medchain.contracts.research import model as research
from medchain.fl import budget
from medchain.fl.features import FEATURE_NAMES, FEATURES, STUDY_FEATURES, patient_row
from medchain.sdk.client import Client, ClientError

fl_app = typer.Typer(
    help="Federated training of a study's model (Flower, CKKS) recorded on chain.",
    no_args_is_help=True,
)

CHAIN_SETTINGS = "chain.json"
FL_CONFIG = "fl-config.json"
FL_PYTHON_ENV = "MEDCHAIN_FL_PYTHON"
MODES = {"ckks-fedavg": "ckks", "fedavg": "plain"}
# The resource types patient_row reads; a study's grants must cover them (and
# prepare-round reads nothing else from a vault).
TRAINER_TYPES = ("Observation", "Patient")
HELD_OUT_ONE_IN = 5  # a patient is held out when the first byte of their sample id ≡ 0 (mod 5)
PROGRESS = re.compile(r"^round \d+")  # the hooks' progress lines, echoed by `fl run`
RAISED = re.compile(r"^[\w.]*(Error|Exception): ")  # a traceback's last line

Workdir = Annotated[Path, typer.Option("--workdir", help="the study's work directory W")]
RoundNo = Annotated[int, typer.Option("--round", min=1, help="the round number")]


def register(app: typer.Typer) -> None:
    """Add `medchain fl` (run, prepare-round, record-round) and `medchain models verify`
    (the registry's group lives in cli/research.py; the check is the run's last step)."""
    app.add_typer(fl_app, name="fl")
    models_app.command("verify")(verify_model)
    register_infer(app)  # `models infer`: runs the model a verify accepts


# -- fl run ---------------------------------------------------------------------


@fl_app.command("run")
def run(
    study_id: Annotated[str, typer.Option("--study", help="the study id")],
    rounds: Annotated[int, typer.Option(min=1, help="how many of the study's rounds to train now")],
    key: Annotated[
        str, typer.Option("--key", help="the sponsor's stored key (org admin or researcher)")
    ],
    site: Annotated[
        list[str],
        typer.Option(
            help="ORG=KEY: a hospital and the stored key of its edge (repeat per hospital)"
        ),
    ],
    workdir: Workdir,
    model_id: Annotated[
        str | None, typer.Option(help="registry id (default: the study id)")
    ] = None,
    licence: Annotated[str, typer.Option(help="SPDX licence id of the model")] = "CC-BY-4.0",
    seed: Annotated[int, typer.Option(help="training seed")] = 0,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Train the study's next rounds (hospitals from the chain, Flower embedded), with
    every round's cohorts and results on chain; after the last planned round, record
    contributions and register the model."""
    workdir = workdir.resolve()
    sponsor = load_key(home, key)
    client = Client(node, key=sponsor)
    study = _study(client, study_id)
    first = int(study["rounds_recorded"]) + 1
    planned = int(study["rounds_planned"])
    if study["status"] != research.OPEN or first > planned:
        fail(
            f"study {study_id} is {study['status']} with {study['rounds_recorded']} of "
            f"{planned} rounds recorded: there is no round left to train",
            "see `medchain study status`; a new model needs a new study",
            Exit.REFUSED,
            "STUDY_COMPLETE",
        )
    if first + rounds - 1 > planned:
        fail(
            f"rounds {first}..{first + rounds - 1} asked, the study plans {planned}",
            f"use --rounds {planned - first + 1} or fewer",
        )
    sites = _sites(site, list(study["hospitals"]))
    unconsented = sorted(set(TRAINER_TYPES) - set(study["data_types"]))
    if unconsented:
        fail(
            f"study {study_id}'s patients consented to {', '.join(study['data_types'])}; "
            f"this trainer also reads {', '.join(unconsented)} (medchain.fl.features)",
            f"create the study with data types {', '.join(TRAINER_TYPES)}",
            Exit.REFUSED,
            "DATA_TYPES_NOT_CONSENTED",
        )
    if list(study["features"]) != list(STUDY_FEATURES):
        fail(
            f"study {study_id} asks for features {study['features']}; this trainer reads "
            f"{list(STUDY_FEATURES)} (medchain.fl.features)",
            "create the study with these features",
        )
    fl_python = _fl_python()
    workdir.mkdir(parents=True, exist_ok=True)
    initial = _initial_model(client, study_id, first, workdir, fl_python)
    settings = {
        "study_id": study_id,
        "rounds_planned": planned,
        "node": node,
        "home": str(home.resolve()),
        "sponsor_key": key,
        "sites": sites,
        "medchain": _medchain_cli(),
    }
    (workdir / CHAIN_SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")
    config = {
        "rounds": rounds,
        "first_round": first,
        "initial_model": str(initial.relative_to(workdir)),
        "hospitals": list(study["hospitals"]),
        "mode": MODES[str(study["aggregation"])],
        "dp": dp_config(study),
        "data": "hooks",
        "seed": seed,
        "before_round": "medchain.fl.ledger:before_round",
        "after_round": "medchain.fl.ledger:after_round",
    }
    (workdir / FL_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    last = first + rounds - 1
    console.print(f"Training rounds {first} to {last} of {planned} of study {study_id}.")
    _run_flower(fl_python, workdir, first)
    doc: dict[str, Any] = {"study_id": study_id, "rounds": list(range(first, last + 1))}
    if last == planned:
        doc |= _finish(client, sponsor, study, workdir, fl_python, model_id or study_id, licence)
    emit(doc, lambda: console.print(f"Recorded rounds {first} to {last} of {planned} on chain."))


def dp_config(study: dict[str, Any]) -> dict[str, float] | None:
    """The clipping and noise that spend the study's ε (dp_epsilon_milli on chain)
    over its planned rounds at δ = 1e-5, or None when the study sets no budget. Each
    round's record on chain copies the study's ε; each round's report says the ε
    spent so far, which reaches the study's at its last planned round."""
    if "dp_epsilon_milli" not in study:
        return None
    epsilon = int(study["dp_epsilon_milli"]) / 1000
    rounds = int(study["rounds_planned"])
    return {
        "clip_norm": budget.STUDY_CLIP_NORM,
        "noise_multiplier": budget.noise_multiplier_for(epsilon, budget.STUDY_DELTA, rounds),
        "delta": budget.STUDY_DELTA,
    }


def _study(client: Client, study_id: str) -> dict[str, Any]:
    try:
        return client.study(study_id)
    except ClientError as e:
        client_failed(e)


def _sites(given: list[str], hospitals: list[str]) -> dict[str, str]:
    """ORG=KEY options, one for exactly each of the study's hospitals."""
    sites: dict[str, str] = {}
    for item in given:
        org, sep, name = item.partition("=")
        if not sep or not org or not name:
            fail(f"--site {item!r}: write ORG=KEY, e.g. --site hosp-a=admin-a")
        sites[org] = name
    if sorted(sites) != sorted(hospitals):
        fail(
            f"--site names {sorted(sites)}; the study's hospitals are {sorted(hospitals)}",
            "give one --site ORG=KEY per hospital of the study, and no other",
        )
    return sites


def _fl_python() -> Path:
    """The second venv's Python: MEDCHAIN_FL_PYTHON, else .venv-fl beside this venv."""
    path = Path(os.environ.get(FL_PYTHON_ENV) or Path(sys.prefix).parent / ".venv-fl/bin/python")
    if not path.exists():
        fail(
            f"{path} is missing: Flower runs in the second venv",
            f"run make setup (it makes .venv-fl), or set {FL_PYTHON_ENV}",
            Exit.NOT_FOUND,
            "NO_FL_VENV",
        )
    return path


def _medchain_cli() -> str:
    """This venv's `medchain`, for the hooks to call back (they run in .venv-fl)."""
    beside = Path(sys.executable).parent / "medchain"
    found = str(beside) if beside.exists() else shutil.which("medchain")
    if found is None:
        fail(
            "cannot find the medchain command for the round hooks", "install medchain in this venv"
        )
    return found


def _initial_model(
    client: Client, study_id: str, first: int, workdir: Path, fl_python: Path
) -> Path:
    """The model round `first` starts from: zeros for round 1; else the previous
    round's file, refused unless its SM3 is the one the chain recorded."""
    if first == 1:
        path = workdir / "models" / "round-0.bin"
        done = subprocess.run(
            [
                str(fl_python),
                "-m",
                "medchain.fl.ledger",
                "initial-model",
                "--out",
                str(path),
                "--features",
                str(len(FEATURES)),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            fail(f"cannot write the initial model: {done.stderr.strip()}", code=Exit.INTERNAL)
        return path
    path = workdir / "models" / f"round-{first - 1}.bin"
    try:
        recorded = client.study_rounds(study_id)[first - 2]
    except ClientError as e:
        client_failed(e)
    if not path.exists():
        fail(
            f"{path} is missing: round {first - 1}'s model file continues the study",
            "run from the work directory of the earlier rounds",
            Exit.NOT_FOUND,
        )
    if crypto.sm3(path.read_bytes()).hex() != recorded["global_model_hash"]:
        fail(
            f"{path} does not hash to round {first - 1}'s model on chain "
            f"({recorded['global_model_hash']})",
            "restore the published model file; an altered file cannot continue the study",
            Exit.REFUSED,
            "ALTERED_MODEL",
        )
    return path


def _run_flower(fl_python: Path, workdir: Path, first: int) -> None:
    """Run the embedded Flower run, echoing the hooks' progress lines; the whole
    output goes to W/logs/run-<first round>.log."""
    log_path = workdir / "logs" / f"run-{first}.log"
    log_path.parent.mkdir(exist_ok=True)
    args = [
        str(fl_python),
        "-m",
        "medchain.fl.run",
        "--workdir",
        str(workdir),
        "--config",
        str(workdir / FL_CONFIG),
    ]
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if PROGRESS.match(line):
                console.print(line.rstrip(), highlight=False, soft_wrap=True)
        code = proc.wait()
    if code != 0:
        # The exception that stopped it (a hook's carries the chain step's own message),
        # not Flower's closing lines.
        raised = [ln for ln in log_path.read_text().splitlines() if RAISED.match(ln)]
        reason = RAISED.sub("", raised[-1]) if raised else "see the log"
        fail(
            f"the federated run stopped (exit {code}): {reason}",
            f"the whole output is in {log_path}",
            Exit.REFUSED,
            "FL_RUN_FAILED",
        )


def _finish(
    client: Client,
    sponsor: crypto.KeyPair,
    study: dict[str, Any],
    workdir: Path,
    fl_python: Path,
    model_id: str,
    licence: str,
) -> dict[str, Any]:
    """After the last planned round: contributions, then the model registry entry."""
    study_id, last = str(study["study_id"]), int(study["rounds_planned"])
    done = subprocess.run(
        [
            str(fl_python),
            "-m",
            "medchain.fl.ledger",
            "contributions",
            "--workdir",
            str(workdir),
            "--round",
            str(last),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        fail(f"leave-one-out failed: {done.stderr.strip()[-1000:]}", code=Exit.INTERNAL)
    loo = json.loads((workdir / "contributions.json").read_text())
    values = [{"org_id": o, "value_bp": int(v)} for o, v in loo["values_bp"].items()]
    payload = {"study_id": study_id, "method": "leave-one-out", "values": values}
    submit_or_fail(client, sponsor, "research", "record_contributions", payload)
    console.print(
        "Contributions (leave-one-out, validation AUC lost without the hospital): "
        + ", ".join(f"{v['org_id']} {v['value_bp']} bp" for v in values),
        highlight=False,
    )
    model = (workdir / "models" / f"round-{last}.bin").read_bytes()
    version = _next_version(client, model_id)
    card = _model_card(study, workdir, model_id, version, licence, model, loo)
    card_bytes = json.dumps(card, indent=2, sort_keys=True).encode() + b"\n"
    (workdir / "model-card.json").write_bytes(card_bytes)
    model_hash, card_hash = crypto.sm3(model), crypto.sm3(card_bytes)
    registered = {
        "model_id": model_id,
        "version": version,
        "model_hash": model_hash,
        "card_hash": card_hash,
        "licence": licence,
        "study_id": study_id,
    }
    out = submit_or_fail(client, sponsor, "models", "register", registered)
    console.print(
        f"Registered model {model_id} version {version}: SM3 {model_hash.hex()} "
        f"(file {workdir / 'models' / f'round-{last}.bin'}, card {workdir / 'model-card.json'}).",
        highlight=False,
    )
    return {
        "contributions": loo,
        "model": {
            "model_id": model_id,
            "version": version,
            "sm3": model_hash.hex(),
            "card_sm3": card_hash.hex(),
            "height": out["height"],
        },
    }


def _next_version(client: Client, model_id: str) -> int:
    try:
        return int(client.model(model_id)["latest_version"]) + 1
    except ClientError as e:
        if e.status == 404:
            return 1
        client_failed(e)


def _model_card(
    study: dict[str, Any],
    workdir: Path,
    model_id: str,
    version: int,
    licence: str,
    model: bytes,
    loo: dict[str, Any],
) -> dict[str, Any]:
    """The model card: what the model is, what it was trained on, how it did."""
    last = int(study["rounds_planned"])
    report = json.loads((workdir / "rounds" / f"{last}.json").read_text())
    return {
        "model_id": model_id,
        "version": version,
        "format": "logistic-regression/1 (medchain.fl.model)",
        "model_sm3": crypto.sm3(model).hex(),
        "licence": licence,
        "task": "binary: diabetes progression above the median one year on",
        "inputs": [
            {
                "name": f.name,
                "code": f.code or None,
                "unit": f.unit,
                "centre": f.centre,
                "scale": f.scale,
                "log": f.log,
            }
            for f in FEATURES
        ],
        "training": {
            "study_id": study["study_id"],
            "sponsor_org": study["sponsor_org"],
            "hospitals": study["hospitals"],
            "rounds": last,
            "aggregation": study["aggregation"],
            # what each hospital's updates were noised with (dp_config), or None
            "differential_privacy": None
            if (dp := dp_config(study)) is None
            else {**dp, "epsilon_milli": study["dp_epsilon_milli"]},
        },
        "evaluation": {"round": last, "per_hospital": report["metrics"]},
        "contributions": loo,
        "intended_use": "research only; not for clinical decisions",
    }


# -- the hooks' commands -----------------------------------------------------------


def _settings(workdir: Path) -> dict[str, Any]:
    path = workdir / CHAIN_SETTINGS
    if not path.exists():
        fail(f"{path} is missing", "these steps run under `medchain fl run`", Exit.NOT_FOUND)
    return dict(json.loads(path.read_text()))


@fl_app.command("prepare-round")
def prepare_round(workdir: Workdir, round_no: RoundNo) -> None:
    """(Called by the before-round hook.) Each hospital commits its cohort of the round
    and writes the rows of exactly those patients, read from its own vault, to
    W/data/<org>/round-<r>.json: about one in five held out by sample id."""
    workdir = workdir.resolve()
    s = _settings(workdir)
    home, study_id = Path(s["home"]), str(s["study_id"])
    for org, key_name in s["sites"].items():
        signer = load_key(home, key_name)
        client = Client(s["node"], key=signer)
        members, out, root = _commit_cohort(client, signer, study_id, round_no, org)
        consented = list(_study(client, study_id)["data_types"])
        rows = _cohort_rows(home, org, signer, study_id, members, consented)
        rows["cohort"] = {"count": len(members), "root": root.hex(), "height": out["height"]}
        folder = workdir / "data" / org
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"round-{round_no}.json").write_text(json.dumps(rows) + "\n")
        train, held = len(rows["train"]["y"]), len(rows["heldout"]["y"])
        print(
            f"round {round_no} of {s['rounds_planned']}: {org} committed a cohort of "
            f"{len(members)} (root {root.hex()[:16]}…, height {out['height']}); "
            f"{train} train, {held} held out, {rows['unusable']} without every feature",
            flush=True,
        )


def _commit_cohort(
    client: Client, signer: crypto.KeyPair, study_id: str, round_no: int, org: str
) -> tuple[list[str], dict[str, Any], bytes]:
    """Commit the hospital's cohort (`medchain study commit-cohort`'s way), or reuse the
    one a run that stopped mid-round committed. The members are exactly those the
    committed root covers."""
    out, members, root = commit_cohort(client, signer, study_id, round_no, org)
    if out.get("code") == 0:
        note_tx(out)
        return members, out, root
    if out.get("code_name") == "ALREADY_EXISTS":  # a run that stopped mid-round
        return members, _same_cohort(client, study_id, round_no, org, root), root
    fail(
        f"{org}: {out.get('code_name')}: {out.get('log')}", code=1, error=str(out.get("code_name"))
    )


def _same_cohort(
    client: Client, study_id: str, round_no: int, org: str, root: bytes
) -> dict[str, Any]:
    """The cohort this hospital committed for the round before a run stopped: usable
    again only if the members read now are exactly the ones it commits to."""
    try:
        cohorts = client.study_cohorts(study_id, round_no)["cohorts"]
    except ClientError as e:
        client_failed(e)
    committed = next(c for c in cohorts if c["org_id"] == org)
    if committed["root"] != root.hex():
        fail(
            f"{org} committed round {round_no}'s cohort before the last run stopped, and "
            "the consenting patients have changed since: its rows cannot be read again",
            "the round cannot be trained as committed; ask the sponsor to close the study",
            Exit.REFUSED,
            "COHORT_CHANGED",
        )
    return {"height": committed["height"]}


def _cohort_rows(
    home: Path,
    org: str,
    signer: crypto.KeyPair,
    study_id: str,
    members: list[str],
    consented: list[str],
) -> dict[str, Any]:
    """The cohort's feature rows from the hospital's own vault (decrypted with its
    custodian key; no other hospital's data), split by sample id into train and held out.
    Only records of the study's data types (what each member's grant covers) are read."""
    from medchain.edge.vault import Vault
    from medchain.node.vaults import opens_with, org_vault_dir

    root = org_vault_dir(home, org)
    if not opens_with(root, signer):  # never make an empty vault here, nor guess a key
        fail(
            f"{root} holds no vault that {org}'s --site key opens",
            "name the key its edge serves with (--site ORG=KEY), in the same --home",
            Exit.NOT_FOUND,
            "NO_VAULT",
        )
    vault = Vault(root, signer)
    parts: dict[str, dict[str, list[Any]]] = {
        name: {"X": [], "y": [], "sample_ids": []} for name in ("train", "heldout")
    }
    unusable = 0
    try:
        for did in members:
            ids = vault.patient_records(did, consented)
            resources = [json.loads(vault.plaintext(record_id)) for record_id in ids]
            found = patient_row(resources)
            if found is None:
                unusable += 1
                continue
            sample = research.sample_id(study_id, did)
            part = parts["heldout" if sample[0] % HELD_OUT_ONE_IN == 0 else "train"]
            part["X"].append(found[0])
            part["y"].append(found[1])
            part["sample_ids"].append(sample.hex())
    finally:
        vault.close()
    return {"features": list(FEATURE_NAMES), **parts, "unusable": unusable}


@fl_app.command("record-round")
def record_round(workdir: Workdir, round_no: RoundNo) -> None:
    """(Called by the after-round hook.) The sponsor records the round: the SM3 of
    W/models/round-<r>.bin, each hospital's held-out metrics in basis points, and the
    SM3 of each ciphertext the aggregator received."""
    workdir = workdir.resolve()
    s = _settings(workdir)
    report = json.loads((workdir / "rounds" / f"{round_no}.json").read_text())
    model = crypto.sm3((workdir / "models" / f"round-{round_no}.bin").read_bytes())
    if model.hex() != report["model"]["sm3"]:
        fail(f"models/round-{round_no}.bin does not match its round report", code=Exit.INTERNAL)
    metrics = [
        {
            "org_id": org,
            "accuracy_bp": round(int(m["accuracy_micro"]) / 100),
            # AUC is undefined on a held-out part of one class: recorded as 0 (docs).
            "auc_bp": 0 if m["auc_micro"] is None else round(int(m["auc_micro"]) / 100),
            "n_eval": int(m["n"]),
        }
        for org, m in report["metrics"].items()
    ]
    updates = [
        {"org_id": org, "hash": bytes.fromhex(r["sm3"])} for org, r in report["received"].items()
    ]
    payload = {
        "study_id": s["study_id"],
        "round": round_no,
        "global_model_hash": model,
        "metrics": metrics,
        "update_hashes": updates,
    }
    client = Client(s["node"])
    out = submit_or_fail(
        client, load_key(Path(s["home"]), s["sponsor_key"]), "research", "record_round", payload
    )
    accuracy = ", ".join(f"{m['org_id']} {m['accuracy_bp'] / 100:.1f} %" for m in metrics)
    print(
        f"round {round_no} of {s['rounds_planned']}: recorded at height {out['height']}: "
        f"model SM3 {model.hex()}, "
        f"held-out accuracy {accuracy}",
        flush=True,
    )


# -- models verify ---------------------------------------------------------------


def verify_model(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the model file")],
    model_id: Annotated[str, typer.Option("--model", help="the registered model id")],
    key: Key,
    version: Annotated[int | None, typer.Option(help="default: the latest")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Check a model file against the registry: exit 0 when its SM3 is the one the
    chain records for the version, 1 (altered) otherwise."""
    client = Client(node, key=load_key(home, key))
    doc = check_model_file(client, file, model_id, version)
    refuse_altered(doc, file)
    emit(
        doc,
        lambda: console.print(
            f"verified: {file} is {model_id} version {doc['version']}.", highlight=False
        ),
    )
