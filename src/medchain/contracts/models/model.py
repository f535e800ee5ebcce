"""Model registry and AI-result provenance: state records, keys, pure queries.

A model version is registered with the SM3 of its published file and of its
model card, its licence and owner; when it came out of a federated study, its
lineage copies the study's rounds with each round's global model hash and
cohort roots (the data commitments the chain recomputed under consent). An AI
result is a record (registered by the records contract) that a clinician ties
to the model version and the input record it was computed from, so anyone
who may see the result can ask which model made it and how it was trained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NotRequired, TypedDict

from medchain.contracts.records.model import ACTIVE as RECORD_ACTIVE
from medchain.contracts.records.model import record_key
from medchain.contracts.research import model as research

NAMESPACE = "models"

# Who may register a model for its organisation.
REGISTRAR_ROLES = frozenset({"org_admin", "researcher"})
# Who may register an AI result on a patient's record: treating clinicians.
CLINICIAN_ROLES = frozenset({"doctor", "attending", "department_head"})
# The record types an AI result may be. FHIR's RiskAssessment is not a record type
# of the consent policy yet, so a risk score is registered as an Observation.
RESULT_TYPES = frozenset({"Observation", "DiagnosticReport"})
MAX_VERSION = 1_000_000

Get = Callable[[str], Any]
Scan = Callable[[str], Iterator[tuple[str, Any]]]


class CohortCommitment(TypedDict):
    """One hospital's cohort of one round, as the model's lineage names it."""

    org_id: str
    count: int
    root: bytes


class LineageRound(TypedDict):
    """One training round of the model's study."""

    round: int
    global_model_hash: bytes
    cohorts: list[CohortCommitment]


class Lineage(TypedDict):
    """The study a model was trained in and its data commitments, round by round."""

    study_id: str
    sponsor_org: str
    aggregation: str
    dp_epsilon_milli: NotRequired[int]
    rounds: list[LineageRound]


class ModelHead(TypedDict):
    """`models/model/<model_id>`: who owns the id and its latest version."""

    model_id: str
    owner_org: str
    latest_version: int


class ModelVersion(TypedDict):
    """`models/version/<model_id>/<version:06d>`: one published model file."""

    model_id: str
    version: int
    model_hash: bytes
    card_hash: bytes
    licence: str
    owner_org: str
    registered_by: str
    lineage: NotRequired[Lineage]
    height: int
    time_ms: int


class AiResult(TypedDict):
    """`models/result/<result_id>`: a model version's output on a patient's record."""

    result_id: str
    model_id: str
    version: int
    model_hash: bytes
    input_record_id: str
    input_content_hash: bytes
    output_record_id: str
    patient: str
    org_id: str
    clinician: str
    height: int
    time_ms: int


class ResultRef(TypedDict):
    """`models/result-of/<output record id>`: the result a record is."""

    result_id: str


def model_key(model_id: str) -> str:
    """Where a model id's owner and latest version live."""
    return f"{NAMESPACE}/model/{model_id}"


def model_prefix() -> str:
    """Every model id."""
    return f"{NAMESPACE}/model/"


def version_prefix(model_id: str) -> str:
    """Every version of one model, in order."""
    return f"{NAMESPACE}/version/{model_id}/"


def version_key(model_id: str, version: int) -> str:
    """One version of a model."""
    return f"{version_prefix(model_id)}{version:06d}"


def result_key(result_id: str) -> str:
    """Where an AI result lives."""
    return f"{NAMESPACE}/result/{result_id}"


def result_of_key(record_id: str) -> str:
    """Which AI result a record is, if it is one."""
    return f"{NAMESPACE}/result-of/{record_id}"


def lineage_of(get: Get, scan: Scan, study: research.Study) -> Lineage:
    """A completed study's rounds and cohort roots, as a model's lineage copies them."""
    lineage: Lineage = {
        "study_id": study["study_id"],
        "sponsor_org": study["sponsor_org"],
        "aggregation": study["aggregation"],
        "rounds": [
            {
                "round": r["round"],
                "global_model_hash": r["global_model_hash"],
                "cohorts": [
                    {"org_id": c["org_id"], "count": c["count"], "root": c["root"]}
                    for c in r["cohorts"]
                ],
            }
            for r in research.rounds(scan, study["study_id"])
        ],
    }
    if "dp_epsilon_milli" in study:
        lineage["dp_epsilon_milli"] = study["dp_epsilon_milli"]
    return lineage


def model_version(get: Get, model_id: str, version: int) -> ModelVersion | None:
    """One registered version of a model, or None."""
    value: ModelVersion | None = get(version_key(model_id, version))
    return value


def versions(scan: Scan, model_id: str) -> list[ModelVersion]:
    """Every registered version of a model, oldest first."""
    return [value for _, value in scan(version_prefix(model_id))]


def models(scan: Scan) -> list[ModelHead]:
    """Every model id with its owner and latest version, by id."""
    return [value for _, value in scan(model_prefix())]


def provenance(get: Get, scan: Scan, record_id: str) -> dict[str, Any] | None:
    """For a record that is an AI result: the result, the model version that made it
    (file and card hashes, licence, owner), its training lineage (study, rounds,
    cohort roots) and the study's contributions; None for any other record.

    `input_unchanged` says whether the input record still has the content hash
    the result was computed from (False once it was superseded or erased)."""
    ref = get(result_of_key(record_id))
    if ref is None:
        return None
    result: AiResult = get(result_key(ref["result_id"]))
    version = model_version(get, result["model_id"], result["version"])
    if version is None:
        return None
    input_record = get(record_key(result["input_record_id"]))
    answer: dict[str, Any] = {
        "result": result,
        "model": version,
        "input_unchanged": input_record is not None
        and input_record["status"] == RECORD_ACTIVE
        and input_record["content_hash"] == result["input_content_hash"],
        "trained_under_consent": "lineage" in version,
    }
    if "lineage" in version:
        answer["contributions"] = research.contributions(scan, version["lineage"]["study_id"])
    return answer
