"""Typed payloads of the zk contract, validated before any state read.

Ids a payload creates (criterion, attestation, challenge) carry their pattern
here; ids it only refers to are looked up. Commitments are 33-byte compressed
points; each proof is capped at MAX_PROOF_BYTES, so an oversized proof is
refused while decoding, before any curve arithmetic. Whether an expiry is still
ahead needs the block time, so the handler checks that.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType

from medchain.contracts.identity.payloads import OrgId
from medchain.contracts.payload import Payload, whole
from medchain.contracts.records.payloads import RecordId
from medchain.contracts.zk.model import (
    AGE_UNIT,
    BETWEEN,
    BIRTH_DATE,
    BIRTH_DATE_UNIT,
    COMMITMENT_BYTES,
    MAX_AGE_YEARS,
    MAX_PROOF_BYTES,
    MAX_THRESHOLD,
    Op,
)

# A LOINC code ("4548-4") or birthDate: what a value is a measurement of.
QUANTITY = rf"[0-9]{{1,7}}-[0-9]|{BIRTH_DATE}"
CRITERION_ID = r"[a-z0-9][a-z0-9._-]{2,63}"
UNIT = r"[!-~]{1,40}"  # a UCUM unit: printable ASCII, no spaces ("%", "mL/min/{1.73_m2}")

Quantity = Annotated[str, msgspec.Meta(pattern=whole(QUANTITY))]
CriterionId = Annotated[str, msgspec.Meta(pattern=whole(CRITERION_ID))]
Unit = Annotated[str, msgspec.Meta(pattern=whole(UNIT))]
Scale = Annotated[int, msgspec.Meta(ge=0, le=6)]
Threshold = Annotated[int, msgspec.Meta(ge=-MAX_THRESHOLD, le=MAX_THRESHOLD)]
Commitment = Annotated[
    bytes, msgspec.Meta(min_length=COMMITMENT_BYTES, max_length=COMMITMENT_BYTES)
]
RangeProof = Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_PROOF_BYTES)]


class AccreditPayload(Payload, frozen=True, kw_only=True):
    """zk.accredit: an organisation may attest these quantities until `expires_ms`
    (a renewal replaces the previous accreditation)."""

    org_id: OrgId
    quantities: Annotated[list[Quantity], msgspec.Meta(min_length=1, max_length=32)]
    expires_ms: int

    def __post_init__(self) -> None:
        """Distinct quantities, so the record reads as a set."""
        if len(set(self.quantities)) != len(self.quantities):
            raise ValueError("quantities must be distinct")


class WithdrawPayload(Payload, frozen=True, kw_only=True):
    """zk.withdraw: the organisation may no longer attest, nor may patients prove
    with its earlier attestations."""

    org_id: OrgId


class SetCriterionPayload(Payload, frozen=True, kw_only=True):
    """zk.set_criterion: the value of `quantity` (in `unit`, integer at `scale`) is
    >= `threshold` ("ge"), <= it ("le"), or within [threshold, upper] ("between").
    Strict bounds are written with the integer +-1 (eGFR < 60 is le 59). For an age
    (quantity birthDate) the unit is "a", the scale 0 and thresholds whole years."""

    criterion_id: CriterionId
    quantity: Quantity
    unit: Unit
    scale: Scale
    op: Op
    threshold: Threshold
    upper: Threshold | UnsetType = UNSET

    def __post_init__(self) -> None:
        """`upper` exactly for "between", above the threshold; ages in years."""
        if (self.op == BETWEEN) != (self.upper is not UNSET):
            raise ValueError('upper is given exactly when op is "between"')
        if self.upper is not UNSET and self.upper <= self.threshold:
            raise ValueError("upper must be above threshold")
        if self.quantity == BIRTH_DATE:
            if self.unit != AGE_UNIT or self.scale != 0:
                raise ValueError(f'an age criterion is in whole years: unit "{AGE_UNIT}", scale 0')
            top = self.threshold if self.upper is UNSET else self.upper
            if not 0 <= self.threshold <= top <= MAX_AGE_YEARS:
                raise ValueError(f"ages are 0 to {MAX_AGE_YEARS} years")


class SetDefaultsPayload(Payload, frozen=True, kw_only=True):
    """zk.set_defaults: install the default criteria (model.default_criteria) whose
    ids are not yet set; it carries nothing."""


class AttestPayload(Payload, frozen=True, kw_only=True):
    """zk.attest: a commitment to the value of `quantity` in a record of `patient`
    held by the signer's organisation. The opening never goes on chain."""

    attestation_id: RecordId
    patient: str
    record_id: str
    quantity: Quantity
    unit: Unit
    scale: Scale
    commitment: Commitment

    def __post_init__(self) -> None:
        """A birth date is attested in days since 1900-01-01 (unit "d", scale 0), and a
        commitment is a compressed point (its curve check is the proof's)."""
        if self.quantity == BIRTH_DATE and (self.unit, self.scale) != (BIRTH_DATE_UNIT, 0):
            raise ValueError(
                f'a birthDate is attested in days since 1900-01-01: unit "{BIRTH_DATE_UNIT}", '
                "scale 0"
            )
        if self.commitment[0] not in (2, 3):
            raise ValueError("commitment must be a compressed point (first byte 02 or 03)")


class ChallengePayload(Payload, frozen=True, kw_only=True):
    """zk.challenge: ask `patient` to prove criterion `criterion_id` before
    `expires_ms`; the chain adds a nonce nobody knows before the block."""

    challenge_id: RecordId
    criterion_id: str
    patient: str
    expires_ms: int


class ProvePayload(Payload, frozen=True, kw_only=True):
    """zk.prove: the patient's range proof(s) that the value committed in
    `attestation_id` meets the challenge's criterion (two for "between")."""

    challenge_id: str
    attestation_id: str
    proofs: Annotated[list[RangeProof], msgspec.Meta(min_length=1, max_length=2)]
