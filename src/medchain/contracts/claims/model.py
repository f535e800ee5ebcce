"""Insurance claim settlement: vocabulary, state keys and the pure adjudication.

An insurer publishes plans as data (covered codes with a unit price cap, the
zero-knowledge criteria a code needs, a co-payment, an annual limit per
patient) and enrols patients in them. A hospital, clinic or pharmacy submits a
claim; the chain adjudicates it at once from those rules, so every member
computes the same payable amount and nobody can pay a claim twice: the
encounter and every dispensed pack claimed are indexed, and a second claim for
either is refused. Money is integer fen (0.01 CNY); years are calendar years
of the block time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from medchain.contracts.supply.model import block_date, split_unit
from medchain.contracts.zk import model as zk
from medchain.crypto import sm3

NAMESPACE = "claims"
BASIS_POINTS = 10_000
MAX_FEN = 10**12  # ten billion yuan: any single amount above is a typo
MAX_ITEMS = 100
MAX_COVERED = 500
MAX_CRITERIA = 10
MAX_PACKS = 100
MAX_RECORDS = 50
MAX_PROOFS = 10
GTIN_SYSTEM = "https://www.gs1.org/gtin"  # a drug item's code: "<GTIN_SYSTEM>|<gtin>"
ENCOUNTER_DOMAIN = b"medchain/claims/encounter/v1"
PAYMENT_PURPOSE = "HPAYMT"  # the consent purpose an insurer reads records under

# Adjudication of an item, and outcome of a claim.
APPROVED, REDUCED, DENIED = "approved", "reduced", "denied"
COMPLETE, PARTIAL = "complete", "partial"
# Status of a claim: adjudicated (something payable), denied (nothing), paid.
ADJUDICATED, PAID = "adjudicated", "paid"

Get = Callable[[str], Any]
Scan = Callable[[str], Iterator[tuple[str, Any]]]


class Benefit(TypedDict):
    """One covered code of a plan: the most paid per unit, the criteria it needs."""

    code: str  # "<system>|<code>"
    unit_cap_fen: int
    required_criteria: list[str]


class Plan(TypedDict):
    """`claims/plan/<plan id>`: what an insurer covers, as data."""

    plan_id: str
    insurer: str
    covered: list[Benefit]
    copay_bp: int  # the patient's share, in basis points of the allowed amount
    annual_limit_fen: int  # the most the plan pays per patient per calendar year
    set_by: str
    version: int
    height: int


class Enrolment(TypedDict):
    """`claims/enrolment/<plan id>/<patient>`: the patient is covered by the plan."""

    plan_id: str
    patient: str
    insurer: str
    by: str
    time_ms: int


class Item(TypedDict):
    """One claimed line and how it was adjudicated (fen throughout)."""

    code: str
    quantity: int
    unit_price_fen: int
    packs: list[str]
    claimed_fen: int
    allowed_fen: int  # after the unit price cap
    copay_fen: int
    payable_fen: int  # after co-payment and the annual limit
    adjudication: str  # APPROVED, REDUCED or DENIED
    reasons: list[str]


class Payment(TypedDict):
    """How the insurer paid a claim."""

    reference: str
    amount_fen: int
    by: str
    time_ms: int
    height: int


class Claim(TypedDict):
    """`claims/claim/<claim id>`: the claim, its adjudication and its payment."""

    claim_id: str
    patient: str
    plan_id: str
    insurer: str
    provider: str  # the submitting organisation
    submitter: str
    encounter_hash: bytes
    claim_hash: bytes  # SM3 of the FHIR Claim the provider keeps
    record_ids: list[str]
    zk_challenges: list[str]
    items: list[Item]
    outcome: str  # COMPLETE, PARTIAL or DENIED
    claimed_fen: int
    payable_fen: int
    year: int
    status: str  # ADJUDICATED, DENIED or PAID
    time_ms: int
    height: int
    payment: NotRequired[Payment]


# -- keys ----------------------------------------------------------------------------


def plan_key(plan_id: str) -> str:
    """A plan, by its id (unique across insurers)."""
    return f"{NAMESPACE}/plan/{plan_id}"


def enrolment_key(plan_id: str, patient: str) -> str:
    """Whether a patient is enrolled in a plan."""
    return f"{NAMESPACE}/enrolment/{plan_id}/{patient}"


def claim_key(claim_id: str) -> str:
    """A claim and its adjudication."""
    return f"{NAMESPACE}/claim/{claim_id}"


def by_patient_prefix(patient: str) -> str:
    """Every claim about a patient (`<prefix><claim id>`), for their audit."""
    return f"{NAMESPACE}/by-patient/{patient}/"


def by_provider_prefix(org_id: str) -> str:
    """Every claim an organisation submitted."""
    return f"{NAMESPACE}/by-provider/{org_id}/"


def by_insurer_prefix(org_id: str) -> str:
    """Every claim made to an insurer."""
    return f"{NAMESPACE}/by-insurer/{org_id}/"


def encounter_key(provider: str, encounter_hash: bytes) -> str:
    """The claim already made for one encounter of `provider`, to whichever insurer:
    a visit billed to a second insurer is a duplicate like a pack claimed twice."""
    return f"{NAMESPACE}/encounter/{provider}/{encounter_hash.hex()}"


def pack_key(unit: str) -> str:
    """The claim a dispensed pack (SGTIN unit id "<gtin>/<serial>") was claimed in."""
    return f"{NAMESPACE}/pack/{unit}"


def spent_key(insurer: str, plan_id: str, patient: str, year: int) -> str:
    """What a plan has committed to pay for a patient in one calendar year."""
    return f"{NAMESPACE}/spent/{insurer}/{plan_id}/{patient}/{year}"


# -- helpers the clients share -----------------------------------------------------------


def encounter_hash(provider: str, encounter_reference: str) -> bytes:
    """SM3 of the provider and its encounter reference: the chain never sees the raw
    id (which may name the patient), and two hospitals' "Encounter/1" differ."""
    return sm3(b"\x00".join((ENCOUNTER_DOMAIN, provider.encode(), encounter_reference.encode())))


def block_year(time_ms: int) -> int:
    """The UTC calendar year of a block time (integer arithmetic only)."""
    return int(block_date(time_ms)[:4])


def gtin_of(code: str) -> str | None:
    """The GTIN of a drug item's code, or None for any other code system."""
    system, _, value = code.partition("|")
    return value if system == GTIN_SYSTEM else None


def pack_gtin(unit: str) -> str | None:
    """The GTIN of a pack's unit id, or None if it is not "<gtin>/<serial>"."""
    parts = split_unit(unit)
    return None if parts is None else parts[0]


def accepted_proof(get: Get, challenge_id: str) -> dict[str, Any] | None:
    """The zk contract's accepted proof for a challenge, or None: a proof exists only
    once the chain verified the patient's range proof for that challenge."""
    proof = zk.proven(get, challenge_id)
    return None if proof is None else dict(proof)


# -- adjudication -----------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedItem:
    """A line as submitted, before adjudication."""

    code: str
    quantity: int
    unit_price_fen: int
    packs: tuple[str, ...]


@dataclass(frozen=True)
class Adjudication:
    """The items as adjudicated, the claim's outcome and what the plan pays."""

    items: list[Item]
    outcome: str
    claimed_fen: int
    payable_fen: int


def adjudicate(
    plan: Plan, claimed: Sequence[ClaimedItem], proven: frozenset[str], spent_fen: int
) -> Adjudication:
    """Apply the plan's rules to each item, in order: covered code, criteria proven
    (`proven` holds the criterion ids with an accepted proof), unit price cap,
    co-payment, then what is left of the annual limit after `spent_fen`.

    Pure integer arithmetic, so every node pays the same fen. The co-payment is
    rounded down (the plan pays the odd fen, never the patient); the annual limit
    is consumed by items in their claimed order.
    """
    benefits = {b["code"]: b for b in plan["covered"]}
    left = max(0, plan["annual_limit_fen"] - spent_fen)
    items: list[Item] = []
    for line in claimed:
        claimed_fen = line.quantity * line.unit_price_fen
        item: Item = {
            "code": line.code,
            "quantity": line.quantity,
            "unit_price_fen": line.unit_price_fen,
            "packs": list(line.packs),
            "claimed_fen": claimed_fen,
            "allowed_fen": 0,
            "copay_fen": 0,
            "payable_fen": 0,
            "adjudication": DENIED,
            "reasons": [],
        }
        items.append(item)
        benefit = benefits.get(line.code)
        if benefit is None:
            item["reasons"].append(f"{line.code} is not covered by plan {plan['plan_id']}")
            continue
        missing = [c for c in benefit["required_criteria"] if c not in proven]
        if missing:
            item["reasons"].append(f"criteria not proven: {', '.join(missing)}")
            continue
        unit = min(line.unit_price_fen, benefit["unit_cap_fen"])
        if unit < line.unit_price_fen:
            item["reasons"].append(f"unit price capped at {benefit['unit_cap_fen']} fen")
        allowed = unit * line.quantity
        copay = allowed * plan["copay_bp"] // BASIS_POINTS
        share = allowed - copay
        payable = min(share, left)
        left -= payable
        if payable < share:
            item["reasons"].append(
                f"annual limit of {plan['annual_limit_fen']} fen reached: {payable} of {share} paid"
            )
        item["allowed_fen"], item["copay_fen"], item["payable_fen"] = allowed, copay, payable
        if payable == 0:
            item["adjudication"] = DENIED
        else:
            item["adjudication"] = APPROVED if payable == share else REDUCED
    payable_fen = sum(i["payable_fen"] for i in items)
    if payable_fen == 0:
        outcome = DENIED
    elif all(i["adjudication"] == APPROVED for i in items):
        outcome = COMPLETE
    else:
        outcome = PARTIAL
    return Adjudication(items, outcome, sum(i["claimed_fen"] for i in items), payable_fen)


def claims_of(scan: Scan, get: Get, prefix: str, limit: int) -> list[Claim]:
    """The claims an index prefix lists (by patient, provider or insurer), at most
    `limit`, in claim id order."""
    out: list[Claim] = []
    for key, _ in scan(prefix):
        if len(out) >= limit:
            break
        claim = get(claim_key(key.removeprefix(prefix)))
        if claim is not None:
            out.append(claim)
    return out


def claimed_packs(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every pack of items the plan pays something for (a denied item's packs stay
    claimable: nothing was paid for them)."""
    return [p for i in items if i["payable_fen"] > 0 for p in i["packs"]]
