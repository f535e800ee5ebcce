"""`medchain models infer`: a clinician runs a registered model on a record and
registers the AI result; and the model file check `models verify` shares with it.

The path, in the order that spends nothing on a wrong model: the file's SM3 must be
the one the chain records for the model version (an altered file is refused before
any record is fetched); the input record comes through the exchange as the clinician
(the chain's consent and role decide, and audit the read); the prediction runs here in
pure Python (fl/inference.py); the result is a FHIR Observation stored at the
clinician's own hospital edge (the `records add` path) and tied to the model version
and the input's content hash by models.register_result.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated, Any

import httpx
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
from medchain.cli.health import Key, edge_of
from medchain.cli.research import models_app
from medchain.cli.scripting import Exit, emit, note_tx
from medchain.fl import inference
from medchain.sdk.client import Client, ClientError, response_error

# The local code of the result: what fl/features.py's label asks, as a probability.
PREDICTION_SYSTEM = "urn:medchain:models:prediction"
PREDICTION_CODE = "progression-above-median-probability"
PREDICTION_DISPLAY = (
    "Predicted probability (0-1) that diabetes progression one year on is above the "
    "median (AI model output; research use)"
)
RECORD_SYSTEM = "urn:medchain:record"  # a derivedFrom identifier: the input's ledger record id
UCUM = "http://unitsofmeasure.org"


def register(app: typer.Typer) -> None:
    """Add `medchain models infer` to the registry's group (cli/research.py)."""
    models_app.command("infer")(models_infer)


def check_model_file(
    client: Client, file: Path, model_id: str, version: int | None
) -> dict[str, Any]:
    """The file's SM3 against the chain's model_hash of (model, version; default the
    latest): a document whose `verified` says whether they are the same."""
    try:
        if version is None:
            version = int(client.model(model_id)["latest_version"])
        recorded = client.model_version(model_id, version)
    except ClientError as e:
        client_failed(e)
    actual = crypto.sm3(file.read_bytes()).hex()
    return {
        "model_id": model_id,
        "version": version,
        "file_sm3": actual,
        "chain_sm3": recorded["model_hash"],
        "verified": actual == recorded["model_hash"],
    }


def refuse_altered(doc: dict[str, Any], file: Path) -> None:
    """Exit 1 (ALTERED) when check_model_file found another hash: a clinician's tool
    never runs a model other than the one the chain records."""
    if doc["verified"]:
        return
    emit(doc, lambda: None)
    fail(
        f"{file} is altered: SM3 {doc['file_sm3']}, the chain records {doc['chain_sm3']} "
        f"for {doc['model_id']} version {doc['version']}",
        "fetch the model file again from its publisher",
        Exit.REFUSED,
        "ALTERED",
    )


def result_observation(
    record_id: str,
    panel: list[dict[str, Any]],
    input_record_id: str,
    model: dict[str, Any],
    probability: float,
) -> dict[str, Any]:
    """The AI result as a FHIR R4 Observation: the patient's, derived from the input
    record, naming the model version and its SM3 (method and device), so the stored
    result says what made it even without the chain."""
    made_by = f"model {model['model_id']} version {model['version']}, SM3 {model['chain_sm3']}"
    patient = next((r for r in panel if r.get("resourceType") == "Patient"), None)
    subject: dict[str, Any] = {"display": "the patient of the input record"}
    if patient is not None and isinstance(patient.get("id"), str):
        subject = {"reference": f"Patient/{patient['id']}"}
    return {
        "resourceType": "Observation",
        "id": record_id,
        "status": "final",
        "code": {
            "coding": [
                {
                    "system": PREDICTION_SYSTEM,
                    "code": PREDICTION_CODE,
                    "display": PREDICTION_DISPLAY,
                }
            ],
            "text": PREDICTION_DISPLAY,
        },
        "subject": subject,
        "valueQuantity": {"value": probability, "unit": "1", "system": UCUM, "code": "1"},
        "derivedFrom": [
            {
                "identifier": {"system": RECORD_SYSTEM, "value": input_record_id},
                "display": f"input record {input_record_id}",
            }
        ],
        "method": {"text": made_by},
        "device": {"display": made_by},
    }


def models_infer(
    model_id: Annotated[str, typer.Option("--model", help="the registered model id")],
    model_file: Annotated[
        Path,
        typer.Option("--model-file", exists=True, dir_okay=False, help="the model file"),
    ],
    input_record: Annotated[
        str, typer.Option("--input", help="the record to run it on: the patient's panel")
    ],
    key: Key,
    version: Annotated[int | None, typer.Option(help="default: the latest")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Run a registered model on a record you may read for treatment, store the
    result at your hospital's edge and register it as an AI result on chain. The
    input is one record: a FHIR Bundle holding the Patient and their Observations."""
    from medchain.edge.requester import ExchangeFailed, fetch_record, upload_record

    signer = load_key(home, key)
    client = Client(node, key=signer)
    model = check_model_file(client, model_file, model_id, version)
    refuse_altered(model, model_file)
    try:
        params = inference.parse_model(model_file.read_bytes())
    except inference.InferenceError as e:
        fail(f"{model_file}: {e}", "the file is not a MedChain model file", Exit.BAD_INPUT)
    try:
        got = fetch_record(client, signer, input_record, "TREAT")
        patient_did = str(client.record(input_record, purpose="TREAT")["patient"])
    except ExchangeFailed as e:
        fail(f"{e.code}: {e.message}", e.hint, Exit.REFUSED, e.code)
    except ClientError as e:
        client_failed(e)
    try:
        document = json.loads(got.plaintext)
        panel = inference.panel_resources(document if isinstance(document, dict) else {})
        probability = inference.predict(params, inference.feature_row(panel))
    except (ValueError, inference.InferenceError) as e:
        fail(
            f"record {input_record}: {e}",
            "run it on a Bundle of the patient's Patient and Observations",
            Exit.BAD_INPUT,
            "UNREADABLE_INPUT",
        )
    output_id = f"ai-{secrets.token_hex(8)}"
    observation = result_observation(output_id, panel, input_record, model, probability)
    url = edge_of(client, signer)
    try:
        r = upload_record(
            signer,
            client.chain_id,
            url,
            json.dumps(observation, sort_keys=True).encode(),
            patient_did,
            output_id,
        )
    except httpx.HTTPError as e:
        fail(f"cannot reach your edge at {url}: {e}", "is `medchain edge serve` running?", 5)
    if r.status_code != 201:
        error = response_error(r)
        fail(f"{error.code}: {error.message}", error.hint, Exit.REFUSED, error.code)
    payload = {
        "result_id": output_id,
        "model_id": model_id,
        "version": model["version"],
        "input_record_id": input_record,
        "output_record_id": output_id,
    }
    try:
        out = client.send(signer, "models", "register_result", payload)
        if out.get("code") != 0:
            fail(
                f"{out.get('code_name')}: {out.get('log')} (the result {output_id} is stored "
                "at your edge but not registered)",
                code=Exit.REFUSED,
                error=str(out.get("code_name")),
            )
        note_tx(out)
        provenance = client.provenance(output_id, purpose="TREAT")
    except ClientError as e:
        client_failed(e)
    doc = {
        "result_id": output_id,
        "output_record_id": output_id,
        "input_record_id": input_record,
        "patient": patient_did,
        "model": model,
        "probability": probability,
        "observation": observation,
        "height": out["height"],
        "provenance": provenance,
    }
    emit(
        doc,
        lambda: console.print(
            f"{model_id} version {model['version']} on {input_record}: probability "
            f"{probability:.4f}. Stored as Observation {output_id} at your edge and "
            f"registered at height {out['height']}.\n"
            + json.dumps(provenance, indent=2, sort_keys=True),
            highlight=False,
        ),
    )
