"""Typed payloads of the research contract, validated before any state read.

Ids a payload creates (a study id) carry their pattern here; ids it only refers
to (the ethics record, an organisation) are looked up by the handler. Hashes
are SM3 digests, CBOR byte strings on chain (hex in JSON). No floats: accuracy
and AUC are basis points, the privacy budget epsilon is in thousandths.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from medchain.contracts.consent.model import ClinicalType
from medchain.contracts.identity.payloads import OrgId
from medchain.contracts.payload import Payload, whole
from medchain.contracts.records.payloads import Sm3Digest
from medchain.contracts.research.model import (
    BASIS_POINTS,
    MAX_FEATURES,
    MAX_HOSPITALS,
    MAX_ROUNDS,
    MAX_STUDY_GRANTS,
    MAX_TITLE,
    MIN_HOSPITALS,
)

STUDY_ID = r"[a-z0-9][a-z0-9._-]{2,63}"
FEATURE = r"[A-Za-z0-9][A-Za-z0-9._:|/-]{0,63}"  # a code: LOINC "4548-4", "age", "bmi"

StudyId = Annotated[str, msgspec.Meta(pattern=whole(STUDY_ID))]
Title = Annotated[str, msgspec.Meta(pattern=whole(rf"[^\x00-\x1f]{{1,{MAX_TITLE}}}"))]
Feature = Annotated[str, msgspec.Meta(pattern=whole(FEATURE))]
RoundNo = Annotated[int, msgspec.Meta(ge=1, le=MAX_ROUNDS)]
BasisPoints = Annotated[int, msgspec.Meta(ge=0, le=BASIS_POINTS)]
SignedBasisPoints = Annotated[int, msgspec.Meta(ge=-BASIS_POINTS, le=BASIS_POINTS)]
Aggregation = Literal["ckks-fedavg", "fedavg"]


def _distinct(values: list[str], what: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must be distinct")


class CreateStudy(Payload, frozen=True, kw_only=True):
    """research.create_study: the protocol, its ethics approval (a record on chain),
    what it reads, from which hospitals, for how many rounds, aggregated how."""

    study_id: StudyId
    title: Title
    protocol_hash: Sm3Digest
    ethics_record_id: str
    data_types: Annotated[tuple[ClinicalType, ...], msgspec.Meta(min_length=1, max_length=32)]
    features: Annotated[tuple[Feature, ...], msgspec.Meta(min_length=1, max_length=MAX_FEATURES)]
    hospitals: Annotated[
        tuple[OrgId, ...], msgspec.Meta(min_length=MIN_HOSPITALS, max_length=MAX_HOSPITALS)
    ]
    rounds_planned: RoundNo
    aggregation: Aggregation
    dp_epsilon_milli: Annotated[int, msgspec.Meta(gt=0, le=10**9)] | UnsetType = UNSET
    expires_ms: int

    def __post_init__(self) -> None:
        """Each data type, feature and hospital once: they are compared as sets."""
        _distinct(list(self.data_types), "data_types")
        _distinct(list(self.features), "features")
        _distinct(list(self.hospitals), "hospitals")


class CommitCohort(Payload, frozen=True, kw_only=True):
    """research.commit_cohort: a hospital's cohort of one round, as it computed it
    (the chain recomputes both and refuses a mismatch)."""

    study_id: str
    round: RoundNo
    count: Annotated[int, msgspec.Meta(ge=0, le=MAX_STUDY_GRANTS)]
    root: Sm3Digest


class HospitalMetricsIn(Payload, frozen=True, kw_only=True):
    """A hospital's evaluation of the round's global model on its held-out part."""

    org_id: str
    accuracy_bp: BasisPoints
    auc_bp: BasisPoints
    n_eval: Annotated[int, msgspec.Meta(ge=0, le=10**9)]


class UpdateHashIn(Payload, frozen=True, kw_only=True):
    """SM3 of the ciphertext a hospital sent for the round."""

    org_id: str
    hash: Sm3Digest


class RecordRound(Payload, frozen=True, kw_only=True):
    """research.record_round: the global model of a round and each hospital's metrics."""

    study_id: str
    round: RoundNo
    global_model_hash: Sm3Digest
    metrics: Annotated[tuple[HospitalMetricsIn, ...], msgspec.Meta(max_length=MAX_HOSPITALS)]
    update_hashes: Annotated[tuple[UpdateHashIn, ...], msgspec.Meta(max_length=MAX_HOSPITALS)] = ()

    def __post_init__(self) -> None:
        """One metrics entry and at most one update hash per hospital."""
        _distinct([m.org_id for m in self.metrics], "metrics org_ids")
        _distinct([u.org_id for u in self.update_hashes], "update_hashes org_ids")


class ContributionIn(Payload, frozen=True, kw_only=True):
    """A hospital's value on the validation set: the drop (in basis points, may be
    negative) when the model is trained without it."""

    org_id: str
    value_bp: SignedBasisPoints


class RecordContributions(Payload, frozen=True, kw_only=True):
    """research.record_contributions: each hospital's measured value, by a named
    method; the chain adds the samples × rounds it counted itself."""

    study_id: str
    method: Literal["leave-one-out"]
    values: Annotated[tuple[ContributionIn, ...], msgspec.Meta(max_length=MAX_HOSPITALS)]

    def __post_init__(self) -> None:
        """One value per hospital."""
        _distinct([v.org_id for v in self.values], "values org_ids")
