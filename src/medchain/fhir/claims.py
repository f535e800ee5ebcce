"""FHIR R4 for insurance claims: a provider's Claim in, ClaimResponse and
ExplanationOfBenefit out.

A Claim is validated (fhir.resources R4B) before anything is taken from it, and
its hash is SM3 of its canonical JSON, so the claims contract commits to the
exact document the provider keeps. Money in FHIR is decimal yuan; on chain it
is integer fen, and an amount with a fraction of a fen is refused rather than
rounded. The responses are built from chain state alone and validated before
they leave: they carry what the chain adjudicated, nothing the edge holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir.resources.R4B.claim import Claim
from fhir.resources.R4B.claimresponse import ClaimResponse
from fhir.resources.R4B.explanationofbenefit import ExplanationOfBenefit

from medchain.contracts.claims import model
from medchain.crypto import sm3
from medchain.fhir.export import DID_SYSTEM, ORG_SYSTEM, RECORD_SYSTEM, iso
from medchain.fhir.validate import InvalidFhir, validate_resource

CURRENCY = "CNY"
CLAIM_SYSTEM = "urn:medchain:claim"
# A dispensed pack a Claim item bills, as an extension of the item (valueString
# "<GTIN-14>/<serial>", the supply contract's unit id).
PACK_EXTENSION = "https://medchain.dev/fhir/StructureDefinition/dispensed-pack"
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
PAYMENT_TYPE = "http://terminology.hl7.org/CodeSystem/ex-paymenttype"
FEN_PER_YUAN = 100


@dataclass(frozen=True)
class ClaimIn:
    """What the claims contract needs from a FHIR Claim, and the Claim's hash."""

    claim_id: str
    encounter: str | None  # the first Encounter reference an item names
    items: list[dict[str, Any]]  # code, quantity, unit_price_fen, packs
    claim_hash: bytes


def to_fen(value: Any, where: str) -> int:
    """Decimal yuan to integer fen; a fraction of a fen is an error, not a rounding."""
    try:
        fen = Decimal(str(value)) * FEN_PER_YUAN
    except InvalidOperation:
        raise InvalidFhir(f"{where}: {value!r} is not an amount") from None
    if fen != fen.to_integral_value() or fen < 0:
        raise InvalidFhir(f"{where}: {value} yuan is not a whole number of fen")
    return int(fen)


def yuan(fen: int) -> Decimal:
    """Integer fen as the decimal yuan a FHIR Money carries (exact)."""
    return Decimal(fen) / FEN_PER_YUAN


def read_claim(data: Any) -> ClaimIn:
    """Validate a parsed FHIR Claim and map its items (code, quantity, unit price,
    dispensed packs) to what `claims.submit` takes."""
    resource_type, canonical, resource = validate_resource(data)
    if resource_type != "Claim":
        raise InvalidFhir(f"expected a Claim, got a {resource_type}")
    claim = Claim.model_validate(resource)
    items: list[dict[str, Any]] = []
    encounter: str | None = None
    for n, item in enumerate(claim.item or [], 1):
        where = f"Claim.item[{n}]"
        codings = item.productOrService.coding or []
        if not codings or not codings[0].system or not codings[0].code:
            raise InvalidFhir(f"{where}.productOrService needs a coding with system and code")
        if item.unitPrice is None or item.unitPrice.value is None:
            raise InvalidFhir(f"{where}.unitPrice is required")
        if item.unitPrice.currency not in (None, CURRENCY):
            raise InvalidFhir(f"{where}.unitPrice must be in {CURRENCY}")
        quantity = item.quantity.value if item.quantity is not None else 1
        if quantity is None or Decimal(str(quantity)) != int(quantity) or int(quantity) < 1:
            raise InvalidFhir(f"{where}.quantity must be a whole number of at least 1")
        packs = [
            str(e.valueString)
            for e in item.extension or []
            if e.url == PACK_EXTENSION and e.valueString
        ]
        items.append(
            {
                "code": f"{codings[0].system}|{codings[0].code}",
                "quantity": int(quantity),
                "unit_price_fen": to_fen(item.unitPrice.value, f"{where}.unitPrice"),
                "packs": packs,
            }
        )
        if encounter is None and item.encounter:
            encounter = item.encounter[0].reference
    if not items:
        raise InvalidFhir("a Claim to settle needs at least one item")
    return ClaimIn(claim.id or "", encounter, items, sm3(canonical))


def _validated(kind: Any, resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as JSON once its fhir.resources model accepts it."""
    out: dict[str, Any] = json.loads(
        kind.model_validate(resource).model_dump_json(exclude_none=True)
    )
    return out


def _money(fen: int) -> dict[str, Any]:
    return {"value": yuan(fen), "currency": CURRENCY}


def _adjudication(item: model.Item) -> list[dict[str, Any]]:
    """An item's adjudication as FHIR categories: submitted, eligible, copay, benefit;
    each reason the chain gave as a denial or reduction reason's text."""
    rows = [
        ("submitted", item["claimed_fen"]),
        ("eligible", item["allowed_fen"]),
        ("copay", item["copay_fen"]),
        ("benefit", item["payable_fen"]),
    ]
    out: list[dict[str, Any]] = [
        {"category": {"coding": [{"system": ADJUDICATION, "code": code}]}, "amount": _money(fen)}
        for code, fen in rows
    ]
    for reason in item["reasons"]:
        out.append(
            {
                "category": {"coding": [{"system": ADJUDICATION, "code": "benefit"}]},
                "reason": {"text": f"{item['adjudication']}: {reason}"},
            }
        )
    return out


def _claim_type(claim: model.Claim) -> dict[str, Any]:
    pharmacy = all(model.gtin_of(i["code"]) is not None for i in claim["items"])
    code = "pharmacy" if pharmacy else "professional"
    return {"coding": [{"system": CLAIM_TYPE, "code": code}]}


def _outcome(claim: model.Claim) -> tuple[str, str]:
    """FHIR's RemittanceOutcome (complete or partial) and a disposition in words:
    a denied claim is completely processed, with nothing payable."""
    if claim["outcome"] == model.PARTIAL:
        return "partial", f"partially paid: {claim['payable_fen']} of {claim['claimed_fen']} fen"
    if claim["outcome"] == model.DENIED:
        return "complete", "denied: nothing payable under the plan's rules"
    return "complete", f"approved: {claim['payable_fen']} fen payable"


def _payment(claim: model.Claim) -> dict[str, Any]:
    paid = claim.get("payment")
    if paid is None:
        return {
            "type": {"coding": [{"system": PAYMENT_TYPE, "code": "complete"}]},
            "amount": _money(claim["payable_fen"]),
        }
    return {
        "type": {"coding": [{"system": PAYMENT_TYPE, "code": "complete"}]},
        "date": iso(paid["time_ms"])[:10],
        "amount": _money(paid["amount_fen"]),
        "identifier": {
            "system": f"urn:medchain:payment:{claim['insurer']}",
            "value": paid["reference"],
        },
    }


def _common(claim: model.Claim) -> dict[str, Any]:
    outcome, disposition = _outcome(claim)
    return {
        "id": claim["claim_id"],
        "identifier": [{"system": CLAIM_SYSTEM, "value": claim["claim_id"]}],
        "status": "active",
        "type": _claim_type(claim),
        "use": "claim",
        "patient": {"identifier": {"system": DID_SYSTEM, "value": claim["patient"]}},
        "created": iso(claim["time_ms"]),
        "insurer": {"identifier": {"system": ORG_SYSTEM, "value": claim["insurer"]}},
        "outcome": outcome,
        "disposition": disposition,
        "payment": _payment(claim),
    }


def _totals(claim: model.Claim) -> list[dict[str, Any]]:
    return [
        {
            "category": {"coding": [{"system": ADJUDICATION, "code": "submitted"}]},
            "amount": _money(claim["claimed_fen"]),
        },
        {
            "category": {"coding": [{"system": ADJUDICATION, "code": "benefit"}]},
            "amount": _money(claim["payable_fen"]),
        },
    ]


def claim_response(claim: model.Claim) -> dict[str, Any]:
    """The chain's adjudication of a claim as a FHIR R4 ClaimResponse."""
    resource = _common(claim) | {
        "resourceType": "ClaimResponse",
        "request": {"identifier": {"system": CLAIM_SYSTEM, "value": claim["claim_id"]}},
        "requestor": {"identifier": {"system": ORG_SYSTEM, "value": claim["provider"]}},
        "item": [
            {"itemSequence": n, "adjudication": _adjudication(item)}
            for n, item in enumerate(claim["items"], 1)
        ],
        "total": _totals(claim),
    }
    return _validated(ClaimResponse, resource)


def explanation_of_benefit(claim: model.Claim) -> dict[str, Any]:
    """A claim, its adjudication and its payment as a FHIR R4 ExplanationOfBenefit
    (what the patient is told was billed, allowed, theirs to pay, and paid)."""
    resource = _common(claim) | {
        "resourceType": "ExplanationOfBenefit",
        "provider": {"identifier": {"system": ORG_SYSTEM, "value": claim["provider"]}},
        "claim": {"identifier": {"system": CLAIM_SYSTEM, "value": claim["claim_id"]}},
        "insurance": [
            {
                "focal": True,
                "coverage": {
                    "identifier": {
                        "system": f"urn:medchain:plan:{claim['insurer']}",
                        "value": claim["plan_id"],
                    }
                },
            }
        ],
        "supportingInfo": [
            {
                "sequence": n,
                "category": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/claiminformationcategory",
                            "code": "info",
                        }
                    ]
                },
                "valueReference": {"identifier": {"system": RECORD_SYSTEM, "value": record_id}},
            }
            for n, record_id in enumerate(claim["record_ids"], 1)
        ]
        or None,
        "item": [
            {
                "sequence": n,
                "productOrService": {
                    "coding": [
                        {
                            "system": item["code"].partition("|")[0],
                            "code": item["code"].partition("|")[2],
                        }
                    ]
                },
                "quantity": {"value": item["quantity"]},
                "unitPrice": _money(item["unit_price_fen"]),
                "net": _money(item["claimed_fen"]),
                "adjudication": _adjudication(item),
            }
            for n, item in enumerate(claim["items"], 1)
        ],
        "total": _totals(claim),
    }
    return _validated(ExplanationOfBenefit, {k: v for k, v in resource.items() if v is not None})
