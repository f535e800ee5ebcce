"""`medchain claims`: insurance plans, enrolment, claims and settlement from the shell.

An insurer's admin publishes a plan (`plan`), its staff enrol patients (`enrol`)
and record payments (`settle`); a hospital's, clinic's or pharmacy's staff submit
a FHIR Claim (`submit --claim claim.json`), which the chain adjudicates at once;
the parties read a claim and its FHIR ClaimResponse / ExplanationOfBenefit
(`show`, `list`). Amounts on the command line are yuan; on chain they are fen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from medchain.cli.common import (
    DEFAULT_HOME,
    DEFAULT_URL,
    Home,
    NodeUrl,
    client_failed,
    console,
    fail,
    load_key,
    print_json,
)
from medchain.cli.health import Key, send_or_fail
from medchain.contracts.claims import model
from medchain.sdk.client import Client, ClientError

claims_app = typer.Typer(
    help="Insurance claims: plans, enrolment, submit a FHIR Claim, settle, show.",
    no_args_is_help=True,
)
ClaimId = Annotated[str, typer.Argument(help="the claim id")]
Repeated = Annotated[list[str] | None, typer.Option()]
VIEWS = {"claim": "", "response": "/ClaimResponse", "eob": "/ExplanationOfBenefit"}


def register(app: typer.Typer) -> None:
    """Add the insurance claims commands (claims)."""
    app.add_typer(claims_app, name="claims")


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, json.JSONDecodeError) as e:
        fail(f"cannot read {path}: {e}", "give a JSON file")


@claims_app.command("plan")
def plan(
    plan_file: Annotated[
        Path,
        typer.Option(
            "--plan",
            help="JSON: {plan_id, covered: [{code, unit_cap_fen, required_criteria}], "
            "copay_bp, annual_limit_fen}",
        ),
    ],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Publish or replace a plan (the insurer's org admin)."""
    payload = _json_file(plan_file)
    out = send_or_fail(node, home, key, "claims", "set_plan", payload)
    console.print(f"Plan {payload.get('plan_id')} set at height {out['height']}.")


@claims_app.command("enrol")
def enrol(
    plan_id: Annotated[str, typer.Option("--plan")],
    patient: Annotated[str, typer.Option(help="the patient's DID")],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Cover a patient under one of your insurer's plans (insurer staff)."""
    payload = {"plan_id": plan_id, "patient": patient}
    out = send_or_fail(node, home, key, "claims", "enrol", payload)
    console.print(f"Enrolled {patient} in {plan_id} at height {out['height']}.")


@claims_app.command("submit")
def submit(
    claim_file: Annotated[Path, typer.Option("--claim", help="a FHIR R4 Claim (JSON)")],
    patient: Annotated[str, typer.Option(help="the patient's DID")],
    plan_id: Annotated[str, typer.Option("--plan")],
    insurer: Annotated[str, typer.Option(help="the insurer's org id")],
    org: Annotated[str, typer.Option(help="your organisation's id (the provider)")],
    key: Key,
    record: Repeated = None,
    zk: Annotated[
        list[str] | None, typer.Option(help="a zk challenge id the patient answered; repeat")
    ] = None,
    encounter: Annotated[
        str | None, typer.Option(help="the encounter reference (default: the Claim's)")
    ] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Submit a FHIR Claim: validated, its items mapped, its SM3 and the encounter's
    hash sent (never the encounter id); the chain answers with the adjudication."""
    from medchain.fhir.claims import read_claim
    from medchain.fhir.validate import InvalidFhir

    try:
        claim = read_claim(_json_file(claim_file))
    except InvalidFhir as e:
        fail(str(e), "fix the Claim so it validates as FHIR R4")
    reference = encounter or claim.encounter
    if not reference:
        fail("the Claim names no encounter", "pass --encounter Encounter/<id>")
    if not claim.claim_id:
        fail("the Claim has no id", "give the Claim an id: it becomes the claim id")
    payload = {
        "claim_id": claim.claim_id,
        "patient": patient,
        "plan_id": plan_id,
        "insurer": insurer,
        "encounter_hash": model.encounter_hash(org, reference),
        "items": claim.items,
        "record_ids": record or [],
        "zk_challenges": zk or [],
        "claim_hash": claim.claim_hash,
    }
    out = send_or_fail(node, home, key, "claims", "submit", payload)
    attributes = out["events"][0]["attributes"]
    print_json(
        {
            "claim_id": claim.claim_id,
            "height": out["height"],
            "outcome": attributes["outcome"],
            "claimed_fen": int(attributes["claimed_fen"]),
            "payable_fen": int(attributes["payable_fen"]),
        }
    )


@claims_app.command("settle")
def settle(
    claim_id: ClaimId,
    reference: Annotated[str, typer.Option(help="your payment reference")],
    amount: Annotated[str, typer.Option(help="amount paid, in yuan (e.g. 64.00)")],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Record the payment of an adjudicated claim (insurer staff; at most its payable)."""
    from medchain.fhir.claims import to_fen
    from medchain.fhir.validate import InvalidFhir

    try:
        fen = to_fen(amount, "--amount")
    except InvalidFhir as e:
        fail(str(e), "give yuan with at most two decimals")
    payload = {"claim_id": claim_id, "reference": reference, "amount_fen": fen}
    out = send_or_fail(node, home, key, "claims", "settle", payload)
    console.print(f"Claim {claim_id} paid {amount} yuan at height {out['height']}.")


@claims_app.command("show")
def show(
    claim_id: ClaimId,
    key: Key,
    view: Annotated[str, typer.Option(help="claim, response (ClaimResponse) or eob")] = "claim",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """A claim and its adjudication, or its FHIR ClaimResponse / ExplanationOfBenefit
    (the patient's side, the provider's or insurer's staff, regulators)."""
    if view not in VIEWS:
        fail(f"unknown view {view!r}", f"one of {', '.join(VIEWS)}")
    client = Client(node, key=load_key(home, key))
    try:
        print_json(client.get(f"/v1/claims/{claim_id}{VIEWS[view]}"))
    except ClientError as e:
        client_failed(e)


@claims_app.command("list")
def list_claims(
    key: Key,
    patient: Annotated[str | None, typer.Option(help="a patient's DID")] = None,
    provider: Annotated[str | None, typer.Option(help="a provider's org id")] = None,
    insurer: Annotated[str | None, typer.Option(help="an insurer's org id")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Claims of one patient, provider or insurer, with their adjudication."""
    named = {
        k: v for k, v in (("patient", patient), ("provider", provider), ("insurer", insurer)) if v
    }
    if len(named) != 1:
        fail("name one of --patient, --provider, --insurer")
    client = Client(node, key=load_key(home, key))
    try:
        print_json(client.get("/v1/claims", **named))
    except ClientError as e:
        client_failed(e)
