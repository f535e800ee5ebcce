"""`medchain referral`: cross-hospital referral and consultation from the shell.

A referring doctor stores the FHIR ServiceRequest at their edge (`medchain records
add`) and runs `referral refer`; the patient runs `referral approve` (or
`decline`); the receiving doctor fetches the package with `medchain exchange
get`, runs `referral accept`, stores the consultation report at their own edge
and runs `referral report`. `referral timeline` shows every step with its time.
docs/referral.md walks through it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
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
    load_key,
    print_json,
)
from medchain.cli.health import Key, send_or_fail
from medchain.cli.scripting import emit
from medchain.sdk.client import Client, ClientError

referral_app = typer.Typer(
    help="Refer a patient to another hospital; approve, accept, report, follow the timeline.",
    no_args_is_help=True,
)
ReferralId = Annotated[str, typer.Argument(help="the referral id")]
Reason = Annotated[str, typer.Option(help="why, in a few words (kept on chain)")]
DAY_MS = 86_400_000


def register(app: typer.Typer) -> None:
    """Add the `referral` command group."""
    app.add_typer(referral_app, name="referral")


def _signed_client(node: str, home: Path, key: str) -> Client:
    return Client(node, key=load_key(home, key))


def _send(node: str, home: Path, key: str, action: str, payload: dict[str, Any]) -> Any:
    return send_or_fail(node, home, key, "referral", action, payload)


def _when(time_ms: int | None) -> str:
    if time_ms is None:
        return "(not on this node)"
    return datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@referral_app.command("refer")
def refer(
    referral_id: ReferralId,
    patient: Annotated[str, typer.Option(help="the patient's DID")],
    to_org: Annotated[str, typer.Option("--to-org", help="the receiving hospital's org id")],
    reason_code: Annotated[
        str, typer.Option(help='coded reason, "<system>|<code>" (SNOMED CT, ICD-10)')
    ],
    records: Annotated[str, typer.Option(help="record ids of the package, comma separated")],
    service_request_id: Annotated[
        str, typer.Option(help="the ServiceRequest's record id (medchain records add, first)")
    ],
    key: Key,
    to_doctor: Annotated[
        str | None, typer.Option("--to-doctor", help="the receiving doctor's DID (optional)")
    ] = None,
    urgency: Annotated[str, typer.Option(help="routine, urgent, asap or stat")] = "routine",
    days: Annotated[float, typer.Option(min=0.01, max=90, help="open for, in days")] = 14.0,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Refer a patient (as a doctor of a hospital or clinic) with records you may read."""
    try:
        now = max(Client(node).block_time_ms(), int(time.time() * 1000))
    except ClientError as e:
        client_failed(e)
    payload: dict[str, Any] = {
        "referral_id": referral_id,
        "patient": patient,
        "to_org": to_org,
        "reason_code": reason_code,
        "urgency": urgency,
        "record_ids": [r.strip() for r in records.split(",") if r.strip()],
        "service_request_id": service_request_id,
        "expires_ms": int(now + days * DAY_MS),
    }
    if to_doctor:
        payload["to_doctor"] = to_doctor
    out = _send(node, home, key, "refer", payload)
    console.print(
        f"Referral [bold]{referral_id}[/] sent to {to_org} at height {out['height']}; "
        "it waits for the patient's approval (medchain referral approve)."
    )


@referral_app.command("approve")
def approve(
    referral_id: ReferralId, key: Key, home: Home = DEFAULT_HOME, node: NodeUrl = DEFAULT_URL
) -> None:
    """Approve a referral as the patient (or guardian): the receiving side may read
    exactly its package, for treatment, until it expires; its report comes back to
    the referring doctor."""
    out = _send(node, home, key, "approve", {"referral_id": referral_id})
    grant_id = next(
        e["attributes"]["grant_id"] for e in out["events"] if e["type"] == "referral.approved"
    )
    console.print(
        f"Approved {referral_id}: grant [bold]{grant_id}[/] at height {out['height']} "
        f"(revoke it, or `medchain referral cancel {referral_id}`, to stop it)."
    )


@referral_app.command("decline")
def decline(
    referral_id: ReferralId,
    key: Key,
    reason: Reason = "",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Decline a referral as the patient (or guardian); nothing is shared."""
    out = _send(node, home, key, "decline", {"referral_id": referral_id, "reason": reason})
    console.print(f"Declined {referral_id} at height {out['height']}.")


@referral_app.command("accept")
def accept(
    referral_id: ReferralId, key: Key, home: Home = DEFAULT_HOME, node: NodeUrl = DEFAULT_URL
) -> None:
    """Accept an approved referral as the receiving doctor."""
    out = _send(node, home, key, "accept", {"referral_id": referral_id})
    console.print(f"Accepted {referral_id} at height {out['height']}.")


@referral_app.command("report")
def report(
    referral_id: ReferralId,
    record_id: Annotated[
        str, typer.Option(help="the report's record id, stored at your edge first")
    ],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Close a referral with its consultation report (a DiagnosticReport or
    DocumentReference your hospital registered); the referring doctor may read it."""
    payload = {"referral_id": referral_id, "record_id": record_id}
    out = _send(node, home, key, "report", payload)
    console.print(f"Reported {referral_id} with {record_id} at height {out['height']}.")


@referral_app.command("cancel")
def cancel(
    referral_id: ReferralId,
    key: Key,
    reason: Reason = "",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Cancel an open referral (the patient, a guardian or the referring doctor); the
    receiving side's access ends from the next block."""
    out = _send(node, home, key, "cancel", {"referral_id": referral_id, "reason": reason})
    console.print(f"Cancelled {referral_id} at height {out['height']}.")


@referral_app.command("show")
def show(
    referral_id: ReferralId, key: Key, home: Home = DEFAULT_HOME, node: NodeUrl = DEFAULT_URL
) -> None:
    """A referral as the chain has it (for its parties and regulators)."""
    try:
        found = _signed_client(node, home, key).get(f"/v1/referrals/{referral_id}")
    except ClientError as e:
        client_failed(e)
    print_json(found)


@referral_app.command("timeline")
def timeline(
    referral_id: ReferralId, key: Key, home: Home = DEFAULT_HOME, node: NodeUrl = DEFAULT_URL
) -> None:
    """Every step of a referral with its block time: requested, approved, fetched
    (exchange sessions), accepted, reported, revoked, cancelled."""
    try:
        found = _signed_client(node, home, key).get(f"/v1/referrals/{referral_id}/timeline")
    except ClientError as e:
        client_failed(e)

    def table() -> None:
        t = Table(title=f"referral {referral_id}: {found['effective_status']}")
        for column in ("time (UTC)", "height", "step", "by", "detail"):
            t.add_column(column)
        for s in found["steps"]:
            detail = s.get("record_id", "") or s.get("grant_id", "")
            if s["step"] == "fetched":
                detail = f"{s['record_id']} ({s['session_status']})"
            t.add_row(_when(s["time_ms"]), str(s["height"]), s["step"], s["actor"], detail)
        console.print(t)
        if found["elapsed_ms"] is not None:
            console.print(f"{found['elapsed_ms'] / 3_600_000:.2f} h from request to last step")

    emit(found, table)


@referral_app.command("list")
def list_referrals(
    key: Key,
    patient: Annotated[str | None, typer.Option(help="a patient's DID")] = None,
    org: Annotated[str | None, typer.Option(help="a hospital's org id")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """A patient's referrals, or a hospital's (sent and received)."""
    params = {"patient": patient} if patient else {"org": org}
    try:
        found = _signed_client(node, home, key).get("/v1/referrals", **params)
    except ClientError as e:
        client_failed(e)
    print_json(found)
