"""Typed payloads of the claims contract, validated before any state read.

Ids a payload creates (a plan, a claim) carry their pattern; ids it only refers
to (a patient DID, a record, an organisation, a zk challenge) are looked up and
an id nothing could have is simply not found. Amounts are integer fen, shares
integer basis points: nothing a float could round differently on another node.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from medchain.contracts.claims.model import (
    BASIS_POINTS,
    MAX_COVERED,
    MAX_CRITERIA,
    MAX_FEN,
    MAX_ITEMS,
    MAX_PACKS,
    MAX_PROOFS,
    MAX_RECORDS,
    gtin_of,
    pack_gtin,
)
from medchain.contracts.payload import Payload, whole
from medchain.contracts.records.payloads import EXAM_CODE, Sm3Digest

ID = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,79}"
Id = Annotated[str, msgspec.Meta(pattern=whole(ID))]
ServiceCode = Annotated[
    str,
    msgspec.Meta(
        pattern=whole(EXAM_CODE),
        description="<code system URI>|<code>, e.g. https://www.gs1.org/gtin|<GTIN-14>",
    ),
]
Fen = Annotated[int, msgspec.Meta(ge=0, le=MAX_FEN, description="amount in fen (0.01 CNY)")]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Benefit(Payload, frozen=True, kw_only=True):
    """A covered code: the most paid per unit, and the zk criteria it requires."""

    code: ServiceCode
    unit_cap_fen: Fen
    required_criteria: Annotated[tuple[Id, ...], msgspec.Meta(max_length=MAX_CRITERIA)] = ()


class SetPlanPayload(Payload, frozen=True, kw_only=True):
    """claims.set_plan: a plan's covered codes, co-payment and annual limit (a plan id
    set again by its insurer replaces the rules for claims adjudicated from then on)."""

    plan_id: Id
    covered: Annotated[list[Benefit], msgspec.Meta(min_length=1, max_length=MAX_COVERED)]
    copay_bp: Annotated[int, msgspec.Meta(ge=0, le=BASIS_POINTS)]
    annual_limit_fen: Fen

    def __post_init__(self) -> None:
        """One rule per code: two would make the adjudication depend on their order."""
        codes = [b.code for b in self.covered]
        if len(set(codes)) != len(codes):
            raise ValueError("each covered code may appear once")


class EnrolPayload(Payload, frozen=True, kw_only=True):
    """claims.enrol: the insurer covers a patient under one of its plans."""

    plan_id: str
    patient: str


class ItemIn(Payload, frozen=True, kw_only=True):
    """A claimed line: a drug line (GTIN code) names each dispensed pack it claims."""

    code: ServiceCode
    quantity: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    unit_price_fen: Fen
    packs: Annotated[tuple[str, ...], msgspec.Meta(max_length=MAX_PACKS)] = ()

    def __post_init__(self) -> None:
        """A drug line claims exactly its packs, each of that GTIN; other lines none."""
        gtin = gtin_of(self.code)
        if gtin is None:
            if self.packs:
                raise ValueError("only a drug line (a GTIN code) names packs")
            return
        if len(self.packs) != self.quantity:
            raise ValueError("a drug line names one dispensed pack per unit of quantity")
        if len(set(self.packs)) != len(self.packs):
            raise ValueError("a pack may be named once")
        for pack in self.packs:
            if pack_gtin(pack) != gtin:
                raise ValueError(f"pack {pack!r} is not <{gtin}>/<serial>")


class SubmitPayload(Payload, frozen=True, kw_only=True):
    """claims.submit: a provider's claim, adjudicated in the block that takes it."""

    claim_id: Id
    patient: str
    plan_id: str
    insurer: str
    encounter_hash: Annotated[
        Sm3Digest, msgspec.Meta(description="claims.model.encounter_hash(provider, reference)")
    ]
    items: Annotated[list[ItemIn], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]
    record_ids: Annotated[tuple[str, ...], msgspec.Meta(max_length=MAX_RECORDS)] = ()
    zk_challenges: Annotated[tuple[str, ...], msgspec.Meta(max_length=MAX_PROOFS)] = ()
    claim_hash: Annotated[Sm3Digest, msgspec.Meta(description="SM3 of the FHIR Claim")]

    def __post_init__(self) -> None:
        """No pack, record or proof named twice (a pack twice would be paid twice)."""
        packs = [p for item in self.items for p in item.packs]
        if len(set(packs)) != len(packs):
            raise ValueError("a pack may be claimed once per claim")
        if len(set(self.record_ids)) != len(self.record_ids):
            raise ValueError("a record may be named once")
        if len(set(self.zk_challenges)) != len(self.zk_challenges):
            raise ValueError("a zk challenge may be named once")


class SettlePayload(Payload, frozen=True, kw_only=True):
    """claims.settle: the insurer paid `amount_fen` (at most the payable) under its
    own payment reference."""

    claim_id: str
    reference: Ref
    amount_fen: Annotated[int, msgspec.Meta(ge=1, le=MAX_FEN)]
