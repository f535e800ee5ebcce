"""Insurance claims: plans, claims and their adjudication, as JSON and as FHIR
ClaimResponse / ExplanationOfBenefit. Changes go through signed transactions
(claims.set_plan, enrol, submit, settle); these routes only read committed state.

Who may see what (docs/claims.md):

- A plan (covered codes, caps, co-payment, limit) is consortium business: any
  signed, active member, so providers know what a claim will be paid.
- A claim, its adjudication and its FHIR views go to the patient (or their
  guardian), the staff of the provider that submitted it, the staff of the
  insurer it was made to, regulators and node operators. Anyone else gets the
  same 403 whether or not the claim exists; only a caller who could see any
  claim (a regulator, an operator) learns that an id does not exist.
- A list of claims by patient goes to that patient's side; by provider or by
  insurer, to that organisation's staff; regulators and operators see every
  list. The same 403 to anyone else, whether or not there are claims.
- The patient's own trail of claims (submitted, refused as a duplicate,
  settled) is in GET /v1/audit?patient=<DID>: every claims event names the
  patient.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from medchain.consensus.engine import Engine as ChainEngine
from medchain.contracts.claims import model
from medchain.exceptions import Code, InvalidTransaction
from medchain.fhir.claims import claim_response, explanation_of_benefit
from medchain.gateway import policy
from medchain.gateway.auth import SIGNED, Caller, SignedCaller
from medchain.gateway.deps import Engine, getter, scanner
from medchain.gateway.errors import Forbidden, NotFound
from medchain.gateway.schemas import to_json

router = APIRouter(prefix="/v1", tags=["insurance claims"])

CLAIM_REFUSED = (
    "a claim is for its patient (or guardian), the submitting provider's staff, the "
    "insurer's staff and regulators"
)
CLAIM_HINT = "sign with the key of the patient, the provider's or the insurer's staff"
LIST_REFUSED = (
    "claims by patient are for that patient's side; by provider or insurer, for that "
    "organisation's staff; all of them for regulators"
)
MAX_LIST = 1000


def may_see_claim(caller: Caller, get: policy.Get, claim: model.Claim) -> bool:
    """The patient's side, the provider's and the insurer's staff, supervisors."""
    return (
        caller.supervises
        or policy.speaks_for(caller, get, claim["patient"])
        or policy.is_staff_of(caller, claim["provider"])
        or policy.is_staff_of(caller, claim["insurer"])
    )


def visible_claim(engine: ChainEngine, caller: Caller, claim_id: str) -> model.Claim:
    """The claim if the caller may see it; one 403 for everyone else, so a stranger
    cannot tell a missing claim from another's."""
    get = getter(engine)
    claim: model.Claim | None = get(model.claim_key(claim_id))
    if claim is None:
        if caller.supervises:
            raise NotFound(f"no claim {claim_id!r}")
        raise Forbidden(CLAIM_REFUSED, CLAIM_HINT)
    if not may_see_claim(caller, get, claim):
        raise Forbidden(CLAIM_REFUSED, CLAIM_HINT)
    return claim


@router.get(
    "/claims/plans/{plan_id}",
    summary="An insurer's plan: covered codes, unit price caps, required zk criteria, "
    "co-payment and annual limit (any signed member)",
    openapi_extra=SIGNED,
)
def plan(plan_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """A plan's rules, which adjudicate every claim under it."""
    found = getter(engine)(model.plan_key(plan_id))
    if found is None:
        raise NotFound(f"no plan {plan_id!r}")
    return dict(to_json(found))


@router.get(
    "/claims",
    summary="Claims of one patient, one provider or one insurer, by claim id (the patient's "
    "side, that organisation's staff, regulators)",
    openapi_extra=SIGNED,
)
def claims(
    engine: Engine,
    caller: SignedCaller,
    patient: Annotated[str | None, Query(max_length=200)] = None,
    provider: Annotated[str | None, Query(max_length=80)] = None,
    insurer: Annotated[str | None, Query(max_length=80)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> list[dict[str, Any]]:
    """Claims with their adjudication, for exactly one of patient, provider, insurer."""
    named = [
        (k, v) for k, v in (("patient", patient), ("provider", provider), ("insurer", insurer)) if v
    ]
    if len(named) != 1:
        raise InvalidTransaction(Code.MALFORMED, "pass exactly one of patient, provider, insurer")
    kind, value = named[0]
    get = getter(engine)
    if kind == "patient":
        allowed, prefix = policy.may_see_patient(caller, get, value), model.by_patient_prefix(value)
    else:
        allowed = caller.supervises or policy.is_staff_of(caller, value)
        prefix = (model.by_provider_prefix if kind == "provider" else model.by_insurer_prefix)(
            value
        )
    if not allowed:
        raise Forbidden(LIST_REFUSED, CLAIM_HINT)
    return [to_json(c) for c in model.claims_of(scanner(engine), get, prefix, limit)]


@router.get(
    "/claims/{claim_id}",
    summary="A claim and how the chain adjudicated it (patient side, provider, insurer, "
    "regulators)",
    openapi_extra=SIGNED,
)
def claim(claim_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """Items with their adjudication and reasons, outcome, payable, payment."""
    return dict(to_json(visible_claim(engine, caller, claim_id)))


@router.get(
    "/claims/{claim_id}/ClaimResponse",
    summary="A claim's adjudication as a FHIR R4 ClaimResponse (same readers as the claim)",
    openapi_extra=SIGNED,
)
def claim_response_of(claim_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """The ClaimResponse built from chain state and validated (fhir.resources)."""
    return claim_response(visible_claim(engine, caller, claim_id))


@router.get(
    "/claims/{claim_id}/ExplanationOfBenefit",
    summary="A claim, its adjudication and payment as a FHIR R4 ExplanationOfBenefit "
    "(same readers as the claim)",
    openapi_extra=SIGNED,
)
def explanation_of_benefit_of(
    claim_id: str, engine: Engine, caller: SignedCaller
) -> dict[str, Any]:
    """The ExplanationOfBenefit built from chain state and validated (fhir.resources)."""
    return explanation_of_benefit(visible_claim(engine, caller, claim_id))
