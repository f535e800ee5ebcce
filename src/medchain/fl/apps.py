"""The Flower apps: the sponsor's aggregator (ServerApp) and one ClientApp per hospital.

A round r: the aggregator sends the round's published model file; each hospital
trains on its own rows, sends Enc(n_i × params_i) and n_i; the aggregator adds the
ciphertexts with the public context and sends the sum back; each hospital decrypts
it, divides by Σn, reports accuracy and AUC on its own held-out part with the SM3 of
the model it got, and the publishing hospital hands the model file back. The
aggregator checks every hospital decrypted the same model, writes
W/models/round-<r>.bin and the round report W/rounds/<r>.json.

The chain's seams are plain files and two hooks named in the configuration
("module:function", called with (workdir, round) before and after each round):
the hooks are resolved with pkgutil.resolve_name, so the fl layer names no chain
module; the caller that configures a hook owns that dependency.

In the embedded run the apps are built with the work directory; under Flower's
deployment engine (`server_app`, `client_app` below) the aggregator reads it from the
run config key "workdir" and a hospital from its node config ("workdir", "org").
"""

from __future__ import annotations

import json
import pickle
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from medchain.crypto import sm3
from medchain.exceptions import MedChainError
from medchain.fl import ckks
from medchain.fl.config import FlConfig, load_config
from medchain.fl.data import Part, read_part
from medchain.fl.model import (
    MICRO,
    evaluate,
    initial_params,
    model_bytes,
    model_sm3,
    parse_model,
    train,
)
from medchain.fl.privacy import clip_and_noise, gaussian_epsilon, noise_rng

SECRET_CONTEXT = Path("keys") / "hospitals.secret.ctx"
PUBLIC_CONTEXT = Path("keys") / "aggregator.public.ctx"
NODES_TIMEOUT_S = 120.0


class FederationError(MedChainError):
    """A round that cannot go on: a hospital missing, refusing, or disagreeing."""


@dataclass(frozen=True)
class ReceivedUpdate:
    """One hospital's update as the aggregator received and kept it."""

    round: int
    org: str
    node_id: int
    kind: str
    n: int
    payload: bytes
    records: tuple[str, ...]  # every record name the message held


@dataclass
class AggregatorState:
    """Everything the aggregator keeps across rounds (pickled to W/server/state.pkl).

    For the CKKS mode this is the claim to check: the context is public, every update
    is a ciphertext, and the sums are ciphertexts too.
    """

    mode: str
    public_context: bytes | None
    received: list[ReceivedUpdate] = field(default_factory=list)
    sums: list[bytes] = field(default_factory=list)


# --- the aggregator ---------------------------------------------------------------


def make_server_app(workdir: Path | None = None) -> Any:
    """The sponsor's ServerApp; without `workdir` it reads run_config["workdir"]."""
    app = ServerApp()

    def main(grid: Grid, context: Context) -> None:
        where = workdir or Path(str(context.run_config["workdir"]))
        run_rounds(grid, where, load_config(where / "config.json"))

    app.main()(main)
    return app


def run_rounds(grid: Grid, workdir: Path, config: FlConfig) -> None:
    """All rounds of a run, then the final model, the result and the kept state."""
    public, public_bytes = None, None
    if config.mode == ckks.CKKS:
        public_bytes = (workdir / PUBLIC_CONTEXT).read_bytes()
        public = ckks.load_context(public_bytes)
        if ckks.is_private(public):
            raise FederationError(
                "the aggregator's context holds the secret key: give it the public context"
            )
    state = AggregatorState(config.mode, public_bytes)
    nodes = _wait_for_nodes(grid, len(config.hospitals))
    model = _initial_model(workdir, config)
    timings: list[dict[str, float]] = []
    for r in config.round_numbers:
        _call_hook(config.before_round, workdir, r)
        started = time.perf_counter()
        updates, data = _train_round(grid, nodes, r, model, config)
        state.received.extend(updates)
        agg_started = time.perf_counter()
        if public is not None:
            total = ckks.add_ciphertexts(public, [u.payload for u in updates])
        else:
            total = ckks.add_plain([u.payload for u in updates])
        aggregation_s = time.perf_counter() - agg_started
        state.sums.append(total)
        model, metrics = _evaluate_round(grid, nodes, r, total, updates, config)
        (workdir / "models").mkdir(exist_ok=True)
        (workdir / "models" / f"round-{r}.bin").write_bytes(model)
        report = _round_report(r, config, updates, data, model, metrics)
        _write_json(workdir / "rounds" / f"{r}.json", report)
        round_s = time.perf_counter() - started
        timings.append({"round": r, "aggregation_s": aggregation_s, "round_s": round_s})
        _call_hook(config.after_round, workdir, r)
    (workdir / "models" / "final.bin").write_bytes(model)
    _write_json(workdir / "server" / "timings.json", {"rounds": timings})
    with (workdir / "server" / "state.pkl").open("wb") as f:
        pickle.dump(state, f)
    _write_json(
        workdir / "result.json",
        {
            "rounds": config.rounds,
            "mode": config.mode,
            "final_model": {"path": "models/final.bin", "sm3": model_sm3(model)},
        },
    )


def _train_round(
    grid: Grid, nodes: list[int], r: int, model: bytes, config: FlConfig
) -> tuple[list[ReceivedUpdate], dict[str, dict[str, str]]]:
    """Send the round's model, collect one update per hospital."""
    content = {"round": r, "model": model, "model_sm3": model_sm3(model)}
    replies = _ask(grid, nodes, r, MessageType.TRAIN, content)
    updates: list[ReceivedUpdate] = []
    data: dict[str, dict[str, str]] = {}
    for msg in replies:
        rec = msg.content["update"]
        org, kind, n = str(rec["org"]), str(rec["kind"]), int(rec["n"])
        if kind != config.mode or n < 1:
            raise FederationError(f"{org} sent a {kind} update of {n} rows in a {config.mode} run")
        node = int(msg.metadata.src_node_id)
        records = tuple(sorted(msg.content.keys()))
        updates.append(ReceivedUpdate(r, org, node, kind, n, bytes(rec["payload"]), records))
        data[org] = {"file": str(rec["data_file"]), "sample_ids_sm3": str(rec["sample_ids_sm3"])}
    _check_orgs([u.org for u in updates], config)
    return sorted(updates, key=lambda u: config.hospitals.index(u.org)), data


def _evaluate_round(
    grid: Grid,
    nodes: list[int],
    r: int,
    total: bytes,
    updates: list[ReceivedUpdate],
    config: FlConfig,
) -> tuple[bytes, dict[str, dict[str, int | None]]]:
    """Send the sum back; every hospital must decrypt the same model; the publisher's file."""
    content = {"round": r, "sum": total, "total_n": sum(u.n for u in updates)}
    replies = _ask(grid, nodes, r, MessageType.EVALUATE, content)
    published: bytes | None = None
    hashes: dict[str, str] = {}
    metrics: dict[str, dict[str, int | None]] = {}
    for msg in replies:
        rec = msg.content["eval"]
        org = str(rec["org"])
        hashes[org] = str(rec["model_sm3"])
        metrics[org] = {
            "n": int(rec["n"]),
            "accuracy_micro": int(rec["accuracy_micro"]),
            "auc_micro": int(rec["auc_micro"]) if "auc_micro" in rec else None,
        }
        if org == config.publisher:
            published = bytes(rec["model"])
    _check_orgs(list(hashes), config)
    if published is None:
        raise FederationError(f"{config.publisher} did not hand back the model file")
    parse_model(published)
    digest = model_sm3(published)
    disagreeing = sorted(o for o, h in hashes.items() if h != digest)
    if disagreeing:
        raise FederationError(f"round {r}: {disagreeing} decrypted another model than published")
    return published, {o: metrics[o] for o in config.hospitals}


def _ask(grid: Grid, nodes: list[int], r: int, kind: str, content: dict[str, Any]) -> list[Message]:
    """One message to every hospital's node and every reply, refusing error replies."""
    messages = [
        Message(RecordDict({"fl": ConfigRecord(content)}), node, kind, group_id=str(r))
        for node in nodes
    ]
    replies = list(grid.send_and_receive(messages))
    failed = [m for m in replies if m.has_error()]
    if failed:
        reasons = "; ".join(str(m.error.reason) for m in failed)
        raise FederationError(f"round {r} {kind}: a hospital failed: {reasons}")
    return replies


def _check_orgs(orgs: list[str], config: FlConfig) -> None:
    if sorted(orgs) != sorted(config.hospitals):
        raise FederationError(
            f"answers came from {sorted(orgs)}, the run names {sorted(config.hospitals)}: "
            "every hospital of the run must answer once"
        )


def _wait_for_nodes(grid: Grid, count: int) -> list[int]:
    """The hospitals' node ids, once all have connected (a deployment starts them apart)."""
    deadline = time.monotonic() + NODES_TIMEOUT_S
    while True:
        nodes = sorted(int(n) for n in grid.get_node_ids())
        if len(nodes) == count:
            return nodes
        if len(nodes) > count:
            raise FederationError(f"{len(nodes)} nodes connected, the run names {count} hospitals")
        if time.monotonic() > deadline:
            raise FederationError(f"{len(nodes)} of {count} hospitals connected in time")
        time.sleep(0.2)


def _initial_model(workdir: Path, config: FlConfig) -> bytes:
    """The model the run starts from: zeros, or the given file (a study's previous
    round, when a later run continues it)."""
    if config.initial_model is None:
        return model_bytes(initial_params(_features(workdir)))
    data = (workdir / config.initial_model).read_bytes()  # an absolute path stays itself
    parse_model(data)
    return data


def _features(workdir: Path) -> int:
    """The feature count, from the validation file the sponsor holds (no hospital's rows)."""
    return int(read_part(workdir / "data" / "validation.npz").X.shape[1])


def _round_report(
    r: int,
    config: FlConfig,
    updates: list[ReceivedUpdate],
    data: dict[str, dict[str, str]],
    model: bytes,
    metrics: dict[str, dict[str, int | None]],
) -> dict[str, Any]:
    """W/rounds/<r>.json: what the chain records of the round (integers only)."""
    dp = None
    if config.dp is not None:
        dp = {
            "clip_norm_micro": round(config.dp.clip_norm * MICRO),
            "noise_multiplier_micro": round(config.dp.noise_multiplier * MICRO),
            "delta_inverse": round(1 / config.dp.delta),
            "epsilon_micro": round(gaussian_epsilon(config.dp, r) * MICRO),
            "unit": "one hospital's update per round, replace-one (sensitivity 2·clip)",
        }
    return {
        "round": r,
        "aggregation": f"fedavg-{config.mode}",
        "participants": [u.org for u in updates],
        "samples": {u.org: u.n for u in updates},
        "data": {u.org: data[u.org] for u in updates},
        "model": {"path": f"models/round-{r}.bin", "sm3": model_sm3(model)},
        "metrics": metrics,
        "dp": dp,
        "received": {
            u.org: {"kind": u.kind, "bytes": len(u.payload), "sm3": sm3(u.payload).hex()}
            for u in updates
        },
    }


def _call_hook(spec: str | None, workdir: Path, r: int) -> None:
    if spec is not None:
        hook = cast(Callable[[Path, int], None], pkgutil.resolve_name(spec))
        hook(workdir, r)


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


# --- a hospital -------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """Who this client is: its org, its work directory and the run's configuration."""

    org: str
    index: int
    workdir: Path
    config: FlConfig

    @classmethod
    def of(cls, context: Context, workdir: Path | None) -> Site:
        """From the embedded run's workdir and partition id, or a node's own config."""
        node = context.node_config
        where = workdir or Path(str(node["workdir"]))
        config = load_config(where / "config.json")
        org = str(node["org"]) if "org" in node else config.hospitals[int(node["partition-id"])]
        if org not in config.hospitals:
            raise FederationError(f"{org} is not a hospital of this run")
        return cls(org, config.hospitals.index(org), where, config)

    def training_part(self, r: int) -> tuple[Part, str]:
        """The round's rows if the chain side wrote them (its cohort), else train.npz."""
        folder = self.workdir / "data" / self.org
        path = folder / f"round-{r}.npz"
        if not path.exists():
            path = folder / "train.npz"
        return read_part(path), path.name


def make_client_app(workdir: Path | None = None) -> Any:
    """A hospital's ClientApp; without `workdir` it reads node_config["workdir"]."""
    app = ClientApp()

    def on_train(msg: Message, context: Context) -> Message:
        return train_update(msg, Site.of(context, workdir))

    def on_evaluate(msg: Message, context: Context) -> Message:
        return evaluate_sum(msg, Site.of(context, workdir))

    app.train()(on_train)
    app.evaluate()(on_evaluate)
    return app


def train_update(msg: Message, site: Site) -> Message:
    """Train on this hospital's rows; reply with Enc(n × params) (or clear, plain mode)."""
    rec = msg.content["fl"]
    r = int(rec["round"])
    model = bytes(rec["model"])
    if model_sm3(model) != str(rec["model_sm3"]):
        raise FederationError("the round's model file does not match its SM3")
    start = parse_model(model)
    part, file_name = site.training_part(r)
    rng = np.random.default_rng([site.config.seed, r, site.index])
    params = train(start, part, site.config.plan, rng)
    if site.config.dp is not None:
        params = start + clip_and_noise(params - start, site.config.dp, noise_rng())
    weighted = len(part) * params
    if site.config.mode == ckks.CKKS:
        payload = ckks.encrypt_update(_secret_context(site.workdir / SECRET_CONTEXT), weighted)
    else:
        payload = ckks.plain_bytes(weighted)
    ids = "\n".join(sorted(str(i) for i in part.sample_ids)).encode()
    update = {
        "org": site.org,
        "n": len(part),
        "kind": site.config.mode,
        "payload": payload,
        "data_file": file_name,
        "sample_ids_sm3": sm3(ids).hex(),
    }
    return Message(RecordDict({"update": ConfigRecord(update)}), reply_to=msg)


def evaluate_sum(msg: Message, site: Site) -> Message:
    """Decrypt the sum, divide by Σn, report on the held-out part (publisher: the file)."""
    rec = msg.content["fl"]
    total_n = int(rec["total_n"])
    features = read_part(site.workdir / "data" / site.org / "heldout.npz").X.shape[1] + 1
    if site.config.mode == ckks.CKKS:
        secret = _secret_context(site.workdir / SECRET_CONTEXT)
        summed = ckks.decrypt_sum(secret, bytes(rec["sum"]), features)
    else:
        summed = ckks.read_plain(bytes(rec["sum"]))
    params = summed / total_n
    data = model_bytes(params)
    metrics = evaluate(params, read_part(site.workdir / "data" / site.org / "heldout.npz"))
    reply: dict[str, Any] = {"org": site.org, "model_sm3": model_sm3(data)}
    reply.update({k: v for k, v in metrics.as_report().items() if v is not None})
    if site.org == site.config.publisher:
        reply["model"] = data
    return Message(RecordDict({"eval": ConfigRecord(reply)}), reply_to=msg)


@lru_cache(maxsize=4)
def _secret_context(path: Path) -> Any:
    """The hospitals' CKKS context, loaded once per process."""
    context = ckks.load_context(path.read_bytes())
    if not ckks.is_private(context):
        raise FederationError(f"{path} holds no secret key: hospitals need the secret context")
    return context


# Under Flower's deployment engine (`flwr run`, flower-supernode): the apps by name.
server_app = make_server_app()
client_app = make_client_app()
