"""`medchain token`: the incentive token from the shell.

Governors set the minting rules; an organisation's staff claim the reward of a
fact the chain holds (a record it registered, an exam another hospital accepted,
its share of a completed study); holders transfer and burn. Anyone reads the
supply and runs `medchain token audit`, which sums every committed mint and burn
event and compares the result with the supply the state holds.
"""

from __future__ import annotations

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
from medchain.cli.scripting import Exit, emit
from medchain.contracts.token import model as token
from medchain.sdk.client import Client, ClientError

token_app = typer.Typer(
    help="Incentive token: rules, reward claims, transfers, burns, supply and its audit.",
    no_args_is_help=True,
)
Amount = Annotated[int, typer.Argument(min=1, help="whole units (the smallest unit)")]
MAX_LEDGER_PAGES = 100_000  # a safety stop for a node whose pages never end


def register(app: typer.Typer) -> None:
    """Add the `token` command group."""
    app.add_typer(token_app, name="token")


@token_app.command("set-rules")
def set_rules(
    key: Key,
    cap: Annotated[int, typer.Option(min=1, help="the most tokens ever in circulation")],
    record: Annotated[int, typer.Option(min=0, help="reward per registered record")] = 0,
    exam: Annotated[int, typer.Option(min=0, help="reward per recognised exam")] = 0,
    fl: Annotated[int, typer.Option(min=0, help="pool per completed FL study")] = 0,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Set the minting rules (a consortium admin or a regulator); they replace the
    rules in force, and the cap may not fall below the supply."""
    payload = {"cap": cap, "amounts": {"record": record, "exam": exam, "fl": fl}}
    out = send_or_fail(node, home, key, "token", "set_rules", payload)
    console.print(
        f"Rules set at height {out['height']}: cap {cap}, record {record}, exam {exam}, fl {fl}."
    )


@token_app.command("claim")
def claim(
    basis: Annotated[str, typer.Argument(help="record, exam or fl")],
    fact_id: Annotated[
        str, typer.Argument(help="the record id, recognition decision id, or study id")
    ],
    org: Annotated[str, typer.Option(help="the organisation to reward (yours)")],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Claim the governed reward of one fact for your organisation (once per fact)."""
    if basis not in token.BASES:
        fail(
            f"basis must be one of {', '.join(token.BASES)}", "e.g. medchain token claim record r-1"
        )
    payload = {"basis": basis, "fact_id": fact_id, "org_id": org}
    out = send_or_fail(node, home, key, "token", "claim_reward", payload)
    minted = next(
        (e["attributes"]["amount"] for e in out.get("events", []) if e["type"] == "token.minted"),
        "?",
    )
    console.print(f"{minted} minted to org:{org} for {basis} {fact_id} at height {out['height']}.")


@token_app.command("transfer")
def transfer(
    sender: Annotated[str, typer.Argument(help="your account: org:<id> or your DID")],
    recipient: Annotated[str, typer.Argument(help="org:<id> or a DID")],
    amount: Amount,
    key: Key,
    memo: Annotated[str, typer.Option(help="why (kept in the event)")] = "",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Move tokens from an account you hold (your organisation's, as its admin; your DID's)."""
    payload = {"sender": sender, "recipient": recipient, "amount": amount, "memo": memo}
    out = send_or_fail(node, home, key, "token", "transfer", payload)
    console.print(f"{amount} moved from {sender} to {recipient} at height {out['height']}.")


@token_app.command("burn")
def burn(
    account: Annotated[str, typer.Argument(help="your account: org:<id> or your DID")],
    amount: Amount,
    key: Key,
    memo: Annotated[str, typer.Option(help="why (kept in the event)")] = "",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Destroy tokens of an account you hold: the supply falls by `amount`."""
    payload = {"account": account, "amount": amount, "memo": memo}
    out = send_or_fail(node, home, key, "token", "burn", payload)
    console.print(f"{amount} burned from {account} at height {out['height']}.")


@token_app.command("balance")
def balance(
    account: Annotated[str, typer.Argument(help="org:<id> or a DID")],
    key: Annotated[str | None, typer.Option("--key", help="needed for a DID's balance")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """One account's balance (an organisation's: anyone; a DID's: itself, regulators)."""
    try:
        if key is None and account.startswith(token.ORG_PREFIX):
            org_id = account.removeprefix(token.ORG_PREFIX)
            found = Client(node).token_org(org_id)
            found = {"account": account, "balance": found["balance"]}
        elif key is None:
            fail("a DID's balance is a signed read", "pass --key with the DID's own key")
        else:
            found = Client(node, key=load_key(home, key)).token_balance(account)
    except ClientError as e:
        client_failed(e)
    emit(found, lambda: console.print(f"{found['account']}: {found['balance']}"))


@token_app.command("supply")
def supply(home: Home = DEFAULT_HOME, node: NodeUrl = DEFAULT_URL) -> None:
    """The supply, what was ever minted and burned, and the cap (public)."""
    del home
    try:
        found = Client(node).token_supply()
    except ClientError as e:
        client_failed(e)
    emit(found, lambda: _show_supply(found))


def _show_supply(found: dict[str, Any]) -> None:
    console.print(
        f"supply {found['supply']} (minted {found['minted']}, burned {found['burned']}) of a "
        f"cap of {found['cap'] or 'none set'} at height {found['height']}",
        highlight=False,
    )


@token_app.command("orgs")
def orgs(home: Home = DEFAULT_HOME, node: NodeUrl = DEFAULT_URL) -> None:
    """Every rewarded organisation's balance and contribution (its vote weight)."""
    del home
    try:
        found = Client(node).token_orgs()
    except ClientError as e:
        client_failed(e)

    def show() -> None:
        table = Table("organisation", "balance", "contribution")
        for row in found["orgs"]:
            table.add_row(row["org_id"], row["balance"], row["contribution"])
        console.print(table)

    emit(found, show)


def audit_supply(client: Client) -> dict[str, Any]:
    """Sum every committed mint and burn event up to the supply's height and compare
    with the supply record the state holds. The node answers both, but the events are
    each tied to a tx id anyone can look up (and prove with /v1/proofs/tx), so a node
    that inflates the supply must also forge the events it lists."""
    record = client.token_supply()
    height = int(record["height"])
    minted = burned = count = 0
    after, pages = 0, 0
    while pages < MAX_LEDGER_PAGES:
        page = client.token_ledger(after=after, to_height=height)
        for event in page["events"]:
            if event["type"] == "token.minted":
                minted += int(event["amount"])
            else:
                burned += int(event["amount"])
            count += 1
        after, pages = int(page["next"]), pages + 1
        if page["done"]:
            break
    matches = (minted, burned) == (int(record["minted"]), int(record["burned"])) and int(
        record["supply"]
    ) == minted - burned
    return {
        "height": height,
        "supply": record["supply"],
        "state_minted": record["minted"],
        "state_burned": record["burned"],
        "events": count,
        "event_minted": str(minted),
        "event_burned": str(burned),
        "matches": matches,
    }


@token_app.command("audit")
def audit(home: Home = DEFAULT_HOME, node: NodeUrl = DEFAULT_URL) -> None:
    """Check the supply: the sum of every mint event minus every burn event must equal
    the supply in state (exit 1 if it does not). Anyone may run it."""
    del home
    try:
        found = audit_supply(Client(node))
    except ClientError as e:
        client_failed(e)
    if not found["matches"]:
        fail(
            f"supply {found['supply']} at height {found['height']} does not match the events: "
            f"minted {found['event_minted']} (state {found['state_minted']}), burned "
            f"{found['event_burned']} (state {found['state_burned']})",
            "ask another node; report this node to the consortium",
            code=Exit.REFUSED,
            error="SUPPLY_MISMATCH",
        )
    emit(
        found,
        lambda: console.print(
            f"supply {found['supply']} at height {found['height']} = {found['event_minted']} "
            f"minted - {found['event_burned']} burned over {found['events']} events: verified",
            highlight=False,
        ),
    )
