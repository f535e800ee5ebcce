"""`medchain gov`: propose consortium-wide changes, vote for an organisation, execute
accepted proposals after their timelock, and read proposals with their tally.

A proposal's change is given as JSON (`--action '{"kind": "set_validator", ...}'`,
byte strings as hex), checked by the chain exactly as the direct action would be.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

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
from medchain.cli.health import Key, send_or_fail
from medchain.cli.scripting import emit
from medchain.sdk.client import Client, ClientError

gov_app = typer.Typer(
    help="Governance by weighted vote: propose, vote, execute, list, show.",
    no_args_is_help=True,
)
# Fields that are byte strings on chain, given as hex in the --action JSON.
BYTES_FIELDS = ("pub_key", "admin_public_key")


def register(app: typer.Typer) -> None:
    """Add the `gov` command group."""
    app.add_typer(gov_app, name="gov")


def parse_action(text: str) -> dict[str, Any]:
    """The --action JSON as a payload map (hex byte-string fields decoded)."""
    try:
        action = json.loads(text)
        if not isinstance(action, dict) or "kind" not in action:
            raise ValueError("an object with a 'kind'")
        for field in BYTES_FIELDS:
            if field in action:
                action[field] = bytes.fromhex(action[field])
    except (ValueError, TypeError) as e:
        fail(
            f"--action: {e}",
            hint='e.g. \'{"kind": "set_validator", "pub_key": "<hex>", "power": 1}\'',
        )
    return action


@gov_app.command("propose")
def propose(
    action: Annotated[str, typer.Option("--action", help="the change as JSON with its kind")],
    key: Key,
    description: Annotated[str, typer.Option(help="why")] = "",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Put one change to the member organisations' vote."""
    payload = {"action": parse_action(action), "description": description}
    out = send_or_fail(node, home, key, "governance", "propose", payload)
    proposed = next(e for e in out["events"] if e["type"] == "governance.proposed")
    attrs = proposed["attributes"]
    console.print(
        f"proposal {attrs['proposal_id']} at height {out['height']}: vote until "
        f"{attrs['end_height']}, executable from {attrs['executable_height']}."
    )


@gov_app.command("vote")
def vote(
    proposal_id: Annotated[int, typer.Argument(help="the proposal")],
    choice: Annotated[str, typer.Argument(help="yes, no or abstain")],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Vote for your organisation (its admin's key); a later vote replaces this one."""
    payload = {"proposal_id": proposal_id, "choice": choice}
    out = send_or_fail(node, home, key, "governance", "vote", payload)
    console.print(f"voted {choice} on proposal {proposal_id} at height {out['height']}.")


@gov_app.command("execute")
def execute(
    proposal_id: Annotated[int, typer.Argument(help="the proposal")],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Close a proposal whose vote ended: apply it if accepted (after its timelock),
    record it rejected if below quorum or threshold."""
    out = send_or_fail(node, home, key, "governance", "execute", {"proposal_id": proposal_id})
    closed = [e for e in out["events"] if e["type"].startswith("governance.")]
    outcome = closed[-1]["attributes"]["outcome"] if closed else "?"
    console.print(f"proposal {proposal_id}: {outcome} at height {out['height']}.")


@gov_app.command("list")
def list_proposals(
    key: Key,
    status: Annotated[str | None, typer.Option(help="open, executed or rejected")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Proposals newest first with their tally and phase (any member)."""
    try:
        found = Client(node, key=load_key(home, key)).governance_proposals(status)
    except ClientError as e:
        client_failed(e)

    def show() -> None:
        table = Table("id", "kind", "phase", "yes", "no", "abstain", "total", "end", "exec from")
        for p in found:
            t = p["tally"]
            table.add_row(
                str(p["proposal_id"]), p["kind"], p["phase"], str(t["yes"]), str(t["no"]),
                str(t["abstain"]), str(p["total_weight"]), str(p["end_height"]),
                str(p["executable_height"]),
            )  # fmt: skip
        console.print(table)

    emit(found, show)


@gov_app.command("show")
def show(
    proposal_id: Annotated[int, typer.Argument(help="the proposal")],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """One proposal: its change, electorate and weights, votes, tally and phase."""
    try:
        found = Client(node, key=load_key(home, key)).governance_proposal(proposal_id)
    except ClientError as e:
        client_failed(e)
    emit(found, lambda: console.print_json(json.dumps(found)))
