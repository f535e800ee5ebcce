"""`medchain study | models`: federated studies and the model registry from the shell.

What a sponsor (create, status), a patient (join, leave, cohort-proof), a
hospital (commit-cohort), an auditor (status, cohort-proof) and a clinician
(models provenance) run directly. Training itself is `medchain fl`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medchain import crypto
from medchain.cli.common import (
    DEFAULT_HOME,
    DEFAULT_URL,
    Home,
    NodeUrl,
    client_failed,
    comma_list,
    console,
    fail,
    load_key,
    now_ms,
    print_json,
)
from medchain.cli.health import Key, send_or_fail
from medchain.cli.scripting import Exit, emit, note_tx
from medchain.contracts.identity.model import did_for_key
from medchain.contracts.research import model as research
from medchain.sdk.client import Client, ClientError

study_app = typer.Typer(
    help="Federated research studies: create, join, leave, cohorts and their proofs.",
    no_args_is_help=True,
)
models_app = typer.Typer(help="The model registry and AI-result provenance.", no_args_is_help=True)
StudyId = Annotated[str, typer.Argument(help="the study id")]
ForPatient = Annotated[
    str | None, typer.Option("--patient", help="default: yourself (guardians name the patient)")
]
Round = Annotated[int, typer.Option("--round", min=1, help="the round number")]
Org = Annotated[str, typer.Option("--org", help="the participating hospital's org id")]
DAY_MS = 86_400_000


def register(app: typer.Typer) -> None:
    """Add the research command groups (study, models)."""
    app.add_typer(study_app, name="study")
    app.add_typer(models_app, name="models")


def _signed(node: str, home: Path, key: str) -> tuple[Client, crypto.KeyPair]:
    signer = load_key(home, key)
    return Client(node, key=signer), signer


def _did(signer: crypto.KeyPair) -> str:
    return did_for_key(signer.suite, signer.public)


# -- study ----------------------------------------------------------------------


@study_app.command("create")
def study_create(
    study_id: StudyId,
    title: Annotated[str, typer.Option(help="what the study is about")],
    protocol: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="the protocol file (its SM3 goes on chain)"),
    ],
    ethics_record: Annotated[
        str, typer.Option(help="record id of the ethics approval, registered on chain")
    ],
    data_types: Annotated[str, typer.Option(help="FHIR resource types it reads, comma separated")],
    features: Annotated[
        str, typer.Option(help="model inputs in order, comma separated (LOINC codes, age, ...)")
    ],
    hospitals: Annotated[str, typer.Option(help="participating org ids, comma separated")],
    rounds: Annotated[int, typer.Option(min=1, help="rounds planned")],
    key: Key,
    aggregation: Annotated[str, typer.Option(help="ckks-fedavg or fedavg")] = "ckks-fedavg",
    dp_epsilon_milli: Annotated[
        int | None,
        typer.Option(help="differential privacy budget ε in thousandths (8000 = ε 8.0)"),
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="the study is open for")] = 365,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Open a study as its sponsor (an org admin or researcher of your organisation)."""
    try:
        now = now_ms(Client(node))
    except ClientError as e:
        client_failed(e)
    payload: dict[str, Any] = {
        "study_id": study_id,
        "title": title,
        "protocol_hash": crypto.sm3(protocol.read_bytes()),
        "ethics_record_id": ethics_record,
        "data_types": comma_list(data_types),
        "features": comma_list(features),
        "hospitals": comma_list(hospitals),
        "rounds_planned": rounds,
        "aggregation": aggregation,
        "expires_ms": now + days * DAY_MS,
    }
    if dp_epsilon_milli is not None:
        payload["dp_epsilon_milli"] = dp_epsilon_milli
    out = send_or_fail(node, home, key, "research", "create_study", payload)
    console.print(
        f"Study [bold]{study_id}[/] opened at height {out['height']}: "
        f"{rounds} round(s) across {', '.join(payload['hospitals'])}."
    )


@study_app.command("join")
def study_join(
    study_id: StudyId,
    key: Key,
    days: Annotated[float, typer.Option(help="how long your consent lasts")] = 365.0,
    patient: ForPatient = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Join a study: a research-only consent (HRESEARCH) scoped to the study's data
    types, read from chain. It opens no record to anyone; `study leave` ends it."""
    client, signer = _signed(node, home, key)
    try:
        found = client.study(study_id)
        now = now_ms(client)
    except ClientError as e:
        client_failed(e)
    expires_ms = int(now + days * DAY_MS)
    payload = {
        "patient": patient or _did(signer),
        "grantee_kind": "study",
        "grantee": study_id,
        "purposes": ["HRESEARCH"],
        "scope_types": list(found["data_types"]),
        "scope_records": [],
        "expires_ms": expires_ms,
    }
    out = send_or_fail(node, home, key, "consent", "grant", payload)
    grant_id = out["events"][0]["attributes"]["grant_id"]
    console.print(
        f"Joined {study_id} (grant [bold]{grant_id}[/], {', '.join(found['data_types'])}); "
        f"you are in the cohorts of the hospitals holding your records from the next round."
    )


@study_app.command("leave")
def study_leave(
    study_id: StudyId,
    key: Key,
    patient: ForPatient = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Leave a study: revoke the patient's grant to it; every cohort committed from the
    next block on leaves the patient out (rounds already committed keep them)."""
    client, signer = _signed(node, home, key)
    whose = patient or _did(signer)
    try:
        grants = client.grants(whose)
    except ClientError as e:
        client_failed(e)
    active = [
        g
        for g in grants
        if g["grantee_kind"] == "study" and g["grantee"] == study_id and g["in_force"]
    ]
    if not active:
        fail(
            f"{whose} holds no grant in force to study {study_id!r}",
            "`medchain consent list --patient <DID>` shows the grants",
            Exit.NOT_FOUND,
            "NOT_FOUND",
        )
    for g in active:
        payload = {"grant_id": g["grant_id"], "reason": f"left study {study_id}"}
        out = send_or_fail(node, home, key, "consent", "revoke", payload)
        console.print(f"Left {study_id}: revoked {g['grant_id']} at height {out['height']}.")


@study_app.command("status")
def study_status(
    study_id: StudyId,
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Where a study stands: protocol, recorded rounds, each hospital's cohort per round
    (count and root), the cohorts still missing, and contributions (any member)."""
    client, _ = _signed(node, home, key)
    try:
        found = client.study(study_id)
        rounds = client.study_rounds(study_id)
        last = found["open_round"] or found["rounds_recorded"]
        cohorts = [client.study_cohorts(study_id, r) for r in range(1, last + 1)]
        contributions = client.study_contributions(study_id)
    except ClientError as e:
        client_failed(e)
    doc = {"study": found, "rounds": rounds, "cohorts": cohorts, "contributions": contributions}
    emit(doc, lambda: _show_status(doc))


def _show_status(doc: dict[str, Any]) -> None:
    s = doc["study"]
    epsilon = "none" if "dp_epsilon_milli" not in s else f"ε {s['dp_epsilon_milli'] / 1000:g}"
    console.print(
        f"[bold]{s['study_id']}[/] — {s['title']}\n"
        f"sponsor {s['sponsor_org']}, {s['status']}, {s['rounds_recorded']} of "
        f"{s['rounds_planned']} rounds recorded, {s['aggregation']}, DP {epsilon}\n"
        f"data types {', '.join(s['data_types'])}; features {', '.join(s['features'])}",
        highlight=False,
    )
    table = Table("round", "hospital", "count", "root", "height", title="Cohorts")
    for per_round in doc["cohorts"]:
        for c in per_round["cohorts"]:
            table.add_row(
                str(per_round["round"]), c["org_id"], str(c["count"]), c["root"], str(c["height"])
            )
        for org in per_round["missing"]:
            table.add_row(str(per_round["round"]), org, "[yellow]missing", "-", "-")
    console.print(table)
    if doc["rounds"]:
        rounds = Table("round", "global model (SM3)", "accuracy / AUC per hospital", title="Rounds")
        for r in doc["rounds"]:
            metrics = ", ".join(
                f"{m['org_id']} {m['accuracy_bp'] / 100:.2f}%/{m['auc_bp'] / 100:.2f}%"
                for m in r["metrics"]
            )
            rounds.add_row(str(r["round"]), r["global_model_hash"], metrics)
        console.print(rounds)
    if doc["contributions"]:
        table = Table("hospital", "samples × rounds", "value (bp)", "method", title="Contributions")
        for c in doc["contributions"]:
            table.add_row(c["org_id"], str(c["samples_x_rounds"]), str(c["value_bp"]), c["method"])
        console.print(table)


@study_app.command("cohort-proof")
def study_cohort_proof(
    study_id: StudyId,
    round_no: Round,
    org: Org,
    key: Key,
    patient: Annotated[str | None, typer.Option(help="the patient's DID (default: yours)")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Prove whether a patient is in a hospital's cohort of a round, and check the proof
    here against the root and count read from chain, with the sample id computed
    here from the DID: exit 0 if it verifies (in or out), 1 if it does not."""
    client, signer = _signed(node, home, key)
    whose = patient or _did(signer)
    try:
        answer = client.cohort_proof(study_id, round_no, org, patient=whose)
        committed = client.study_cohorts(study_id, round_no)
    except ClientError as e:
        client_failed(e)
    cohort = next((c for c in committed["cohorts"] if c["org_id"] == org), None)
    if cohort is None:
        fail(f"no cohort of round {round_no} from {org}", code=Exit.NOT_FOUND, error="NOT_FOUND")
    sample = research.sample_id(study_id, whose)
    root = {"root": bytes.fromhex(cohort["root"]), "count": cohort["count"]}
    verified, included = research.verify_cohort_proof(answer["proof"], sample, root)
    doc = {
        "study_id": study_id,
        "round": round_no,
        "org_id": org,
        "patient": whose,
        "sample_id": sample.hex(),
        "root": cohort["root"],
        "count": cohort["count"],
        "included": included,
        "verified": verified,
        "proof": answer["proof"],
    }
    where = "IN" if included else "NOT in"
    emit(
        doc,
        lambda: console.print(
            f"{whose} is {where} {org}'s cohort of round {round_no} ({cohort['count']} patients, "
            f"root {cohort['root']}): proof "
            + ("[green]verified[/]" if verified else "[red]does NOT verify[/]"),
            highlight=False,
        ),
    )
    if not verified:
        fail(
            "the proof does not verify against the cohort's root and count on chain",
            "ask another node (--node), and report this node",
            Exit.REFUSED,
            "BAD_PROOF",
        )


@study_app.command("commit-cohort")
def study_commit_cohort(
    study_id: StudyId,
    round_no: Round,
    org: Org,
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """As a participating hospital (org admin or researcher): compute your cohort from
    chain state (patients with an active study grant and an active record with you)
    and commit its count and SM3 Merkle root; the chain recomputes and must agree."""
    client, signer = _signed(node, home, key)
    out, members, root = commit_cohort(client, signer, study_id, round_no, org)
    count = len(members)
    if out.get("code") != 0:
        fail(f"{out.get('code_name')}: {out.get('log')}", code=1, error=str(out.get("code_name")))
    note_tx(out)
    doc = {
        "study_id": study_id,
        "round": round_no,
        "org_id": org,
        "count": count,
        "root": root.hex(),
        "height": out["height"],
        "tx_id": out["tx_id"],
    }
    emit(
        doc,
        lambda: console.print(
            f"Committed {org}'s cohort of round {round_no}: {count} patients, "
            f"root {root.hex()} (height {out['height']}).",
            highlight=False,
        ),
    )


def commit_cohort(
    client: Client, signer: crypto.KeyPair, study_id: str, round_no: int, org: str
) -> tuple[dict[str, Any], list[str], bytes]:
    """Read the hospital's cohort members from the last block, compute the root here and
    submit the commit; once more if a grant changed between the read and the commit's
    block. (the tx's answer, whatever its code; the members; the root.)"""
    for _ in range(2):
        try:
            members = list(client.cohort_members(study_id, org)["members"])
            root = research.cohort_root(research.cohort_leaves(study_id, members))
            payload = {"study_id": study_id, "round": round_no, "count": len(members), "root": root}
            out = dict(client.send(signer, "research", "commit_cohort", payload))
        except ClientError as e:
            client_failed(e)
        if not _cohort_moved(out):
            break
    return out, members, root


def _cohort_moved(out: dict[str, Any]) -> bool:
    """The chain counted another cohort at the commit's block than we read before it."""
    return out.get("code_name") == "INVALID_STATE" and "cohort mismatch" in str(out.get("log"))


# -- models ---------------------------------------------------------------------


@models_app.command("list")
def models_list(key: Key, home: Home = DEFAULT_HOME, node: NodeUrl = DEFAULT_URL) -> None:
    """Every registered model with its owner and latest version."""
    client, _ = _signed(node, home, key)
    try:
        found = client.models()
    except ClientError as e:
        client_failed(e)
    table = Table("model", "owner", "latest version")
    for m in found:
        table.add_row(m["model_id"], m["owner_org"], str(m["latest_version"]))
    console.print(table if found else "No models registered yet.")


@models_app.command("show")
def models_show(
    model_id: Annotated[str, typer.Argument(help="the model id")],
    key: Key,
    version: Annotated[int | None, typer.Option(min=1, help="default: every version")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """A model's registry entry with its lineage: the study, its rounds' global model
    hashes and each hospital's cohort count and root."""
    client, _ = _signed(node, home, key)
    try:
        found = (
            client.model(model_id) if version is None else client.model_version(model_id, version)
        )
    except ClientError as e:
        client_failed(e)
    print_json(found)


@models_app.command("provenance")
def models_provenance(
    record_id: Annotated[str, typer.Argument(help="the result record's id")],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Which model produced this result, trained on which study, rounds and cohort roots,
    and whether its input record is unchanged (whoever may see the record)."""
    client, _ = _signed(node, home, key)
    try:
        found = client.provenance(record_id)
    except ClientError as e:
        client_failed(e)
    print_json(found)
