"""`medchain zk`: zero-knowledge eligibility from the shell.

A regulator accredits labs and sets criteria; a lab technician attests a value
(the commitment goes on chain, the opening to the patient in a file only the
patient's key opens); a verifier challenges; the patient proves; anyone involved
reads the status. The value itself never leaves the lab and the patient.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
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
)
from medchain.cli.health import Key, send_or_fail
from medchain.cli.scripting import Exit, emit, note_tx
from medchain.contracts.zk import model as zk
from medchain.crypto import rangeproof
from medchain.sdk.client import Client, ClientError

zk_app = typer.Typer(
    help="Zero-knowledge eligibility: accredit labs, set criteria, attest, challenge, prove.",
    no_args_is_help=True,
)
DAY_MS = 86_400_000
OPENING_FORMAT = "medchain/zk-opening/v1"
OpeningFile = Annotated[Path, typer.Option("--opening", help="the opening file from the lab")]


def register(app: typer.Typer) -> None:
    """Add the `zk` command group."""
    app.add_typer(zk_app, name="zk")


def scaled_value(text: str, quantity: str, scale: int) -> int:
    """A measured value as the integer the chain's criteria use: "7.1" at scale 1 is
    71 (exact decimal arithmetic, no floats); a birthDate "1950-03-01" is its days
    since 1900-01-01. ValueError says what is wrong."""
    if quantity == zk.BIRTH_DATE:
        try:
            year, month, day = (int(part) for part in text.split("-"))
        except ValueError:
            raise ValueError(f"a birthDate is YYYY-MM-DD, not {text!r}") from None
        days = zk.days_from_civil(year, month, day) - zk.EPOCH_1900
        if zk.civil_from_days(days + zk.EPOCH_1900) != (year, month, day) or days < 0:
            raise ValueError(f"{text!r} is not a date from 1900-01-01 on")
        return days
    try:
        exact = Decimal(text) * (Decimal(10) ** scale)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None
    if exact != exact.to_integral_value():
        raise ValueError(f"{text} has more than {scale} decimal place(s) (the scale)")
    value = int(exact)
    if not 0 <= value < 2**rangeproof.BITS:
        raise ValueError(f"{text} is out of the provable range")
    return value


def seal_opening(
    recipient_suite: str, recipient_public: bytes, attestation_id: str, patient: str, opening: Any
) -> dict[str, Any]:
    """The opening (value and blinding) encrypted to the patient: a fresh SM4 data key
    seals it, bound to the attestation and the patient, and SM2 wraps the key."""
    data_key = crypto.new_data_key()
    aad = _opening_aad(attestation_id, patient)
    return {
        "format": OPENING_FORMAT,
        "attestation_id": attestation_id,
        "patient": patient,
        "wrapped_key": crypto.wrap_key(recipient_public, data_key, recipient_suite).hex(),
        "sealed": crypto.seal(data_key, json.dumps(opening).encode(), aad).hex(),
    }


def open_opening(key: crypto.KeyPair, doc: dict[str, Any]) -> dict[str, Any]:
    """The opening inside a file `seal_opening` wrote; DecryptionFailed if it is not
    for this key or was altered."""
    aad = _opening_aad(doc["attestation_id"], doc["patient"])
    data_key = crypto.unwrap_key(key, bytes.fromhex(doc["wrapped_key"]))
    return dict(json.loads(crypto.open_sealed(data_key, bytes.fromhex(doc["sealed"]), aad)))


def _opening_aad(attestation_id: str, patient: str) -> bytes:
    """What the sealed opening is bound to: a file renamed to another attestation or
    patient does not open."""
    return json.dumps([OPENING_FORMAT, attestation_id, patient]).encode()


def _patient_key(client: Client, patient: str) -> tuple[str, bytes]:
    """The patient's active signing key from their public DID document (SM2 keys also
    encrypt)."""
    doc = client.did_document(patient)
    for method in doc["verificationMethod"]:
        if method["status"] == "active" and method["type"].startswith("SM2"):
            return "sm", bytes.fromhex(method["publicKeyHex"])
    fail(
        f"{patient} has no active SM2 key to encrypt the opening to",
        "the patient must hold an SM2 (suite sm) key",
        Exit.REFUSED,
    )


# -- governance -------------------------------------------------------------------


@zk_app.command("accredit")
def accredit(
    org_id: Annotated[str, typer.Argument(help="the lab, hospital or clinic")],
    quantities: Annotated[
        str, typer.Option(help="what it may attest: LOINC codes and/or birthDate, comma separated")
    ],
    key: Key,
    days: Annotated[int, typer.Option(min=1, help="the accreditation holds for")] = 365,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Accredit an organisation to attest values (a regulator or consortium admin)."""
    try:
        now = now_ms(Client(node))
    except ClientError as e:
        client_failed(e)
    payload = {
        "org_id": org_id,
        "quantities": comma_list(quantities),
        "expires_ms": now + days * DAY_MS,
    }
    out = send_or_fail(node, home, key, "zk", "accredit", payload)
    console.print(f"{org_id} accredited for {quantities} at height {out['height']}.")


@zk_app.command("withdraw")
def withdraw(
    org_id: Annotated[str, typer.Argument(help="the accredited organisation")],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Withdraw an accreditation now: its attestations prove nothing from the next block."""
    out = send_or_fail(node, home, key, "zk", "withdraw", {"org_id": org_id})
    console.print(f"{org_id}'s accreditation withdrawn at height {out['height']}.")


@zk_app.command("criteria")
def criteria(home: Home = DEFAULT_HOME, node: NodeUrl = DEFAULT_URL) -> None:
    """List the eligibility criteria (public; --home is accepted like everywhere)."""
    del home
    try:
        found = Client(node).zk_criteria()
    except ClientError as e:
        client_failed(e)
    emit(found, lambda: _show_criteria(found))


def _show_criteria(found: list[dict[str, Any]]) -> None:
    table = Table("criterion", "quantity", "op", "threshold", "upper", "unit", "scale")
    for c in found:
        table.add_row(
            c["criterion_id"],
            c["quantity"],
            c["op"],
            str(c["threshold"]),
            str(c.get("upper", "")),
            c["unit"],
            str(c["scale"]),
        )
    console.print(table)


@zk_app.command("set-criterion")
def set_criterion(
    key: Key,
    criterion_id: Annotated[str | None, typer.Argument(help="e.g. diabetes-hba1c")] = None,
    quantity: Annotated[str, typer.Option(help="LOINC code or birthDate")] = "",
    unit: Annotated[str, typer.Option(help='UCUM unit; "a" (years) for an age')] = "",
    scale: Annotated[int, typer.Option(help="thresholds are in units of 10**-scale")] = 0,
    op: Annotated[str, typer.Option(help="ge, le or between")] = "ge",
    threshold: Annotated[int, typer.Option(help="integer at the scale (years for an age)")] = 0,
    upper: Annotated[int | None, typer.Option(help='the upper bound, for "between"')] = None,
    defaults: Annotated[
        bool, typer.Option("--defaults", help="install HbA1c, eGFR and age defaults instead")
    ] = False,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Set an eligibility criterion, or install the defaults (a regulator or consortium
    admin). Strict bounds are written with the integer +-1: eGFR < 60 is --op le
    --threshold 59."""
    if defaults:
        out = send_or_fail(node, home, key, "zk", "set_defaults", {})
        console.print(f"Default criteria installed at height {out['height']}.")
        return
    if not criterion_id or not quantity or not unit:
        fail("give the criterion id, --quantity and --unit (or --defaults)")
    payload: dict[str, Any] = {
        "criterion_id": criterion_id,
        "quantity": quantity,
        "unit": unit,
        "scale": scale,
        "op": op,
        "threshold": threshold,
    }
    if upper is not None:
        payload["upper"] = upper
    out = send_or_fail(node, home, key, "zk", "set_criterion", payload)
    console.print(f"Criterion {criterion_id} set at height {out['height']}.")


# -- attest, challenge, prove, status ---------------------------------------------


@zk_app.command("attest")
def attest(
    attestation_id: Annotated[str, typer.Argument(help="a new id for this attestation")],
    patient: Annotated[str, typer.Option(help="the patient's DID")],
    record: Annotated[str, typer.Option(help="the record (held by your lab) the value is from")],
    quantity: Annotated[str, typer.Option(help="LOINC code (4548-4 HbA1c) or birthDate")],
    value: Annotated[str, typer.Option(help="the measured value (7.1) or birth date (YYYY-MM-DD)")],
    out: Annotated[Path, typer.Option(help="where to write the patient's opening file")],
    key: Key,
    unit: Annotated[str, typer.Option(help='UCUM unit ("d" for a birthDate)')] = "%",
    scale: Annotated[int, typer.Option(min=0, max=6, help="decimal places kept")] = 1,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Commit to a value on chain (as a lab technician or doctor of an accredited lab)
    and write its opening, encrypted to the patient, to --out for the patient."""
    if quantity == zk.BIRTH_DATE:
        unit, scale = zk.BIRTH_DATE_UNIT, 0
    try:
        number = scaled_value(value, quantity, scale)
    except ValueError as e:
        fail(str(e), "e.g. --value 7.1 --scale 1, or --quantity birthDate --value 1950-03-01")
    if out.exists():
        fail(f"{out} exists; the opening file is not overwritten", "choose another --out")
    client = Client(node)
    try:
        suite, public = _patient_key(client, patient)
    except ClientError as e:
        client_failed(e)
    blinding = rangeproof.random_blinding()
    opening = {"value": number, "blinding": f"{blinding:064x}"}
    payload = {
        "attestation_id": attestation_id,
        "patient": patient,
        "record_id": record,
        "quantity": quantity,
        "unit": unit,
        "scale": scale,
        "commitment": rangeproof.commit(number, blinding),
    }
    signer = load_key(home, key)
    # Written before submitting: a commitment on chain whose opening is lost proves nothing.
    out.write_text(json.dumps(seal_opening(suite, public, attestation_id, patient, opening)) + "\n")
    try:
        result = client.send(signer, "zk", "attest", payload)
    except ClientError as e:  # it may still commit: the opening file stays
        client_failed(e)
    if result.get("code") != 0:
        out.unlink()
        fail(f"{result.get('code_name')}: {result.get('log')}", code=Exit.REFUSED)
    note_tx(result)
    console.print(
        f"Attestation {attestation_id} committed at height {result['height']}; give {out} to "
        "the patient (only their key opens it)."
    )


@zk_app.command("challenge")
def challenge(
    challenge_id: Annotated[str, typer.Argument(help="a new id for this challenge")],
    criterion: Annotated[str, typer.Option(help="the criterion id, e.g. diabetes-hba1c")],
    patient: Annotated[str, typer.Option(help="the patient's DID")],
    key: Key,
    days: Annotated[int, typer.Option(min=1, max=90, help="the patient has this long")] = 7,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Ask a patient to prove a criterion (a member of an insurer, research organisation
    or hospital). The chain adds a fresh nonce, so only a new proof can answer it."""
    try:
        now = now_ms(Client(node))
    except ClientError as e:
        client_failed(e)
    payload = {
        "challenge_id": challenge_id,
        "criterion_id": criterion,
        "patient": patient,
        "expires_ms": now + days * DAY_MS,
    }
    out = send_or_fail(node, home, key, "zk", "challenge", payload)
    console.print(f"Challenge {challenge_id} posted at height {out['height']}.")


@zk_app.command("prove")
def prove(
    challenge_id: Annotated[str, typer.Argument(help="the challenge to answer")],
    opening_file: OpeningFile,
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Answer a challenge as the patient: open the lab's opening file with your key,
    make the range proof(s) and submit them. If the value does not meet the criterion
    no proof can be made, and nothing is sent."""
    signer = load_key(home, key)
    try:
        doc = json.loads(opening_file.read_text())
        opening = open_opening(signer, doc)
    except (OSError, ValueError, KeyError, crypto.DecryptionFailed):
        fail(
            f"{opening_file} is not an opening file this key opens",
            "use the file the lab wrote for you, with your own --key",
        )
    client = Client(node, key=signer)
    try:
        found = client.zk_challenge(challenge_id)
        attestation = client.zk_attestation(doc["attestation_id"])
        at_ms = now_ms(client)
    except ClientError as e:
        client_failed(e)
    if found["status"] != "open":
        fail(f"challenge {challenge_id} is {found['status']}", code=Exit.REFUSED)
    ch = _from_hex(found, ("nonce",))
    att = _from_hex(attestation, ("commitment", "content_hash"))
    context = zk.proof_context(client.chain_id, ch, att)
    blinding = int(opening["blinding"], 16)
    criterion = found["criterion"]
    try:
        proofs = [
            rangeproof.prove_threshold(opening["value"], blinding, op, threshold, context)
            for op, threshold in zk.statements(criterion, at_ms)
        ]
    except rangeproof.ProofError:
        fail(
            f"the attested value does not meet criterion {criterion['criterion_id']}; "
            "no proof can be made and nothing was sent",
            code=Exit.REFUSED,
            error="NOT_ELIGIBLE",
        )
    payload = {
        "challenge_id": challenge_id,
        "attestation_id": doc["attestation_id"],
        "proofs": proofs,
    }
    out = send_or_fail(node, home, key, "zk", "prove", payload)
    console.print(
        f"Criterion {criterion['criterion_id']} proven for challenge {challenge_id} at height "
        f"{out['height']}; the value was not revealed."
    )


def _from_hex(view: dict[str, Any], fields: tuple[str, ...]) -> Any:
    """A state record read through the API, with its byte fields back as bytes."""
    return view | {f: bytes.fromhex(view[f]) for f in fields}


@zk_app.command("status")
def status(
    challenge_id: Annotated[str, typer.Argument(help="the challenge")],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Whether a challenge is open, expired or proven (the verifier's organisation, the
    patient and regulators may ask)."""
    client = Client(node, key=load_key(home, key))
    try:
        found = client.zk_challenge(challenge_id)
    except ClientError as e:
        client_failed(e)
    emit(found, lambda: _show_status(found))


def _show_status(found: dict[str, Any]) -> None:
    proof = found.get("proof")
    console.print(
        f"challenge [bold]{found['challenge_id']}[/]: {found['status']}; criterion "
        f"{found['criterion']['criterion_id']}, patient {found['patient']}, verifier "
        f"{found['verifier_org']}"
        + (f"; proven at height {proof['height']} with {proof['attestation_id']}" if proof else ""),
        highlight=False,
    )
