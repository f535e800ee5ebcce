"""`medchain import | recognition`: HIS data into the ledger, exams across hospitals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
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
    print_json,
)
from medchain.cli.health import Key, edge_of, send_or_fail
from medchain.cli.scripting import Exit
from medchain.contracts.identity.model import did_for_key
from medchain.sdk.client import Client, ClientError, response_error

import_app = typer.Typer(
    help="Import HIS data (FHIR, HL7 v2, CSV) through your organisation's edge.",
    no_args_is_help=True,
)
recognition_app = typer.Typer(help="Cross-hospital exam mutual recognition.", no_args_is_help=True)
Files = Annotated[list[Path], typer.Argument(exists=True, dir_okay=False)]
Patient = Annotated[
    str | None, typer.Option(help="the patient's DID (default: the edge's patient index)")
]
Edge = Annotated[str | None, typer.Option(help="edge URL (default: from chain)")]
DAY_MS = 86_400_000


def register(app: typer.Typer) -> None:
    """Add the interoperability command groups (import, recognition)."""
    app.add_typer(import_app, name="import")
    app.add_typer(recognition_app, name="recognition")


MAX_REASONS = 20


def _reasons(report: dict[str, Any]) -> list[str]:
    """Why records were not imported: refused or already there, and unlinked patients."""
    out = [
        f"{r['record_id']}: {r['reason']}"
        for intake in report["patients"].values()
        for r in intake["rejected"]
    ]
    return out + [
        f"{u} (link it: medchain import link-patient)" for u in report["unresolved_patients"]
    ]


def _import(
    kind: str,
    files: list[Path],
    key: str,
    patient: str | None,
    mapping: str | None,
    edge: str | None,
    home: Path,
    node: str,
) -> None:
    from medchain.edge.requester import import_file

    signer = load_key(home, key)
    client = Client(node)
    url = edge or edge_of(client, signer)
    table = Table("file", "imported", "already there / refused", "skipped", "no patient link")
    failed = 0
    not_imported = 0  # records refused or already there, and patients not linked
    reasons: list[str] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"importing {kind}", total=len(files))
        for path in files:
            progress.update(task, description=f"importing {path.name}")
            try:
                r = import_file(
                    signer, client.chain_id, url, kind, path.read_bytes(), patient, mapping
                )
            except httpx.HTTPError as e:
                fail(
                    f"cannot reach the edge at {url}: {e}",
                    "is `medchain edge serve` running?",
                    Exit.UNREACHABLE,
                )
            if r.status_code != 200:
                failed += 1
                table.add_row(path.name, "0", "-", "-", f"[red]{response_error(r).message}")
            else:
                body = r.json()
                table.add_row(
                    path.name,
                    str(body["imported"]),
                    str(body["rejected"]),
                    str(len(body["skipped"])),
                    str(len(body["unresolved_patients"])),
                )
                reasons += [f"{path.name}: {why}" for why in _reasons(body)]
                not_imported += int(body["rejected"]) + len(body["unresolved_patients"])
            progress.advance(task)
    console.print(table)
    for line in reasons[:MAX_REASONS]:
        console.print(f"  {line}", highlight=False)
    if len(reasons) > MAX_REASONS:
        console.print(f"  … and {len(reasons) - MAX_REASONS} more")
    if failed == len(files):
        fail(f"{failed} of {len(files)} file(s) were refused; nothing of them was imported", code=1)
    if failed or not_imported:
        fail(
            f"partial import: {failed} of {len(files)} file(s) refused, {not_imported} "
            "record(s) refused or already there or patient(s) without a link",
            "see the reasons above; link patients with `medchain import link-patient`",
            Exit.PARTIAL,
        )


@import_app.command("fhir")
def import_fhir(
    files: Files,
    key: Key,
    patient: Patient = None,
    edge: Edge = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """FHIR R4 JSON resources, Bundles (e.g. Synthea) or NDJSON."""
    _import("fhir", files, key, patient, None, edge, home, node)


@import_app.command("hl7")
def import_hl7(
    files: Files,
    key: Key,
    patient: Patient = None,
    edge: Edge = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """HL7 v2 messages: ADT^A01/A08, ORU^R01, RDE^O11."""
    _import("hl7", files, key, patient, None, edge, home, node)


@import_app.command("csv")
def import_csv(
    files: Files,
    key: Key,
    mapping: Annotated[str, typer.Option(help="lab-result or prescription (bundled at the edge)")],
    patient: Patient = None,
    edge: Edge = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """CSV exports (lab results, prescriptions) through a column mapping."""
    _import("csv", files, key, patient, mapping, edge, home, node)


@import_app.command("link-patient")
def import_link_patient(
    system: Annotated[str, typer.Option(help="the HIS identifier's system (e.g. MRN system)")],
    identifier: Annotated[str, typer.Option("--id", help="the HIS identifier value")],
    did: Annotated[str, typer.Option(help="the patient's ledger DID")],
    key: Key,
    edge: Edge = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Tell your edge which ledger patient a HIS identifier belongs to."""
    from medchain.edge.requester import link_patient

    signer = load_key(home, key)
    client = Client(node)
    url = edge or edge_of(client, signer)
    r = link_patient(signer, client.chain_id, url, system, identifier, did)
    if r.status_code != 200:
        fail(response_error(r).message, code=1)
    console.print(f"Linked {system}|{identifier} to {did}.")


@import_app.command("verify")
def import_verify(
    record_id: str,
    source: Annotated[Path, typer.Option("--input", exists=True, help="the HIS message/file")],
    salt: Annotated[str, typer.Option(help="the record's salt (hex), from the custodian")],
    key: Key,
    mapping: Annotated[str | None, typer.Option(help="CSV mapping name; omit for HL7 v2")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Check that a record is what this mapping version makes from this input (the
    record's registration is a signed read: its custodian's staff, its patient, a
    regulator or an operator may see it)."""
    from medchain.edge.importer import verify_derivation
    from medchain.fhir.conversion import MappingError
    from medchain.fhir.csv_map import convert_csv, load_mapping
    from medchain.fhir.hl7v2 import RUNS, VERSION, convert_message, split_messages

    try:
        record = Client(node, key=load_key(home, key)).record(record_id)
    except ClientError as e:
        client_failed(e)
    raw = source.read_bytes()
    try:
        if mapping is None:
            # Re-run the version the record names when this release still runs it.
            version = str(record["derived_from"]["mapping_id"]).rpartition("/")[2]
            version = version if version in RUNS else VERSION
            candidates = [convert_message(m, version) for m in split_messages(raw)]
        else:
            csv_mapping = load_mapping(mapping).with_facility(record["custodian"])
            candidates = convert_csv(raw, csv_mapping)
        salt_bytes = bytes.fromhex(salt)
    except (MappingError, ValueError) as e:
        fail(str(e))
    results = [verify_derivation(record, salt_bytes, c) for c in candidates]
    if any(not problems for problems in results):
        console.print(
            f"[green]verified[/]: {record_id} is what {record['derived_from']['mapping_id']}"
            " makes from this input"
        )
        return
    closest: list[str] = min(results, key=len)
    fail("; ".join(closest), code=1)


# -- recognition ----------------------------------------------------------------


@recognition_app.command("rule")
def recognition_rule(
    exam_code: Annotated[str, typer.Option(help="system|code, e.g. http://loinc.org|24725-4")],
    max_age_days: Annotated[int, typer.Option()],
    min_level: Annotated[str, typer.Option(help="1, 2C, 2B, 2A, 3C, 3B, 3A")],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Set when an exam may be recognised (consortium admin or regulator)."""
    payload = {"exam_code": exam_code, "max_age_days": max_age_days, "min_level": min_level}
    send_or_fail(node, home, key, "recognition", "set_rule", payload)
    console.print(
        f"Rule for {exam_code}: results up to {max_age_days} days from level {min_level} or better."
    )


@recognition_app.command("accredit")
def recognition_accredit(
    org: Annotated[str, typer.Option(help="organisation id")],
    level: Annotated[str, typer.Option(help="1, 2C, 2B, 2A, 3C, 3B, 3A")],
    key: Key,
    days: Annotated[int, typer.Option(help="valid for")] = 365,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Record an organisation's accreditation level (regulator)."""
    client = Client(node)
    try:
        now = client.block_time_ms()
    except ClientError as e:
        client_failed(e)
    payload = {"org_id": org, "level": level, "expires_ms": now + days * DAY_MS}
    send_or_fail(node, home, key, "recognition", "accredit", payload)
    console.print(f"{org} accredited at level {level} for {days} days.")


@recognition_app.command("find")
def recognition_find(
    patient: Annotated[str, typer.Option()],
    key: Key,
    exam_code: Annotated[str | None, typer.Option()] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Prior exams of a patient you may read, and whether each can be recognised."""
    signer = load_key(home, key)
    me = did_for_key(signer.suite, signer.public)
    try:
        found = Client(node, key=signer).recognition_candidates(patient, me, exam_code)
    except ClientError as e:
        client_failed(e)
    table = Table("record", "exam", "performed by", "recognisable", "why")
    for c in found:
        table.add_row(
            c["record_id"],
            c["exam_code"],
            c["custodian"],
            "yes" if c["eligible"] else "no",
            c["why"],
        )
    console.print(table if found else "No prior exams you may read (consent needed?).")


@recognition_app.command("accept")
def recognition_accept(
    record_id: str, key: Key, home: Home = DEFAULT_HOME, node: NodeUrl = DEFAULT_URL
) -> None:
    """Use another hospital's exam instead of repeating it."""
    send_or_fail(node, home, key, "recognition", "accept", {"record_id": record_id})
    console.print(f"Recognised {record_id}: one exam avoided.")


@recognition_app.command("decline")
def recognition_decline(
    record_id: str,
    reason: Annotated[str, typer.Option(help="why the exam is repeated anyway")],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Record that an eligible prior exam is repeated anyway, and why."""
    payload = {"record_id": record_id, "reason": reason}
    send_or_fail(node, home, key, "recognition", "decline", payload)
    console.print(f"Recorded: {record_id} repeated ({reason}).")


@recognition_app.command("report")
def recognition_report(
    key: Key,
    days: Annotated[int, typer.Option(help="the last N days")] = 30,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Per hospital: exams avoided, repeated, recognition rate (every hospital for a
    regulator or an operator, your own organisation's otherwise; signed by --key)."""
    client = Client(node, key=load_key(home, key))
    try:
        now = client.block_time_ms()
        report: dict[str, Any] = client.recognition_report(now - days * DAY_MS, now + 1)
    except ClientError as e:
        client_failed(e)
    if json_out:
        print_json(report)
        return
    table = Table(
        "hospital",
        "exams avoided",
        "repeated",
        "recognition rate",
        title=f"Exam mutual recognition, last {days} days",
    )
    for row in report["hospitals"]:
        rate = row["recognition_rate"]
        table.add_row(
            row["org_id"],
            str(row["exams_avoided"]),
            str(row["repeated"]),
            "-" if rate is None else f"{rate:.0%}",
        )
    console.print(table)
