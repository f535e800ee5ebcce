"""Zero-knowledge eligibility views: criteria, accreditations, attestations,
challenges and their proofs. Changes go through signed transactions (zk.*);
these routes only read committed state. No view ever holds a lab value: the
chain has only commitments.

Who may see what (docs/zk.md):

- Criteria and accreditations are policy, like the organisation directory:
  public, no signature.
- An attestation says a lab measured something for a patient: the patient (or
  their guardian), staff of the attesting lab, regulators and node operators.
- A challenge and its proof say a verifier asked a patient about a condition:
  the verifier and staff of its organisation, the patient (or their guardian),
  regulators and node operators.
- Anyone else gets the same 403 whether or not the id exists, so asking reveals
  nothing; only those who see everything learn that an id does not exist (404).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query

from medchain.consensus.engine import Engine as ChainEngine
from medchain.contracts.zk import model as zk
from medchain.gateway import policy
from medchain.gateway.auth import SIGNED, Caller, SignedCaller
from medchain.gateway.deps import Engine, getter, scanner
from medchain.gateway.errors import Forbidden, NotFound
from medchain.gateway.schemas import to_json

router = APIRouter(prefix="/v1/zk", tags=["zero-knowledge eligibility"])
public_router = APIRouter(prefix="/v1/zk", tags=["zero-knowledge eligibility"])

ATTESTATION_REFUSED = "an attestation is for its patient, the attesting lab and regulators"
CHALLENGE_REFUSED = (
    "a challenge and its proof are for the verifier's organisation, the patient and regulators"
)
MAX_LIST = 1000


def _guarded(
    engine: ChainEngine,
    caller: Caller,
    key: str,
    what: str,
    allowed: Callable[[Any], bool],
    refusal: str,
) -> Any:
    """The value at `key` if the caller may see it. Callers who see everything get a
    404 for a missing id; everyone else one 403, whether or not it exists."""
    found = getter(engine)(key)
    if found is not None and (caller.supervises or allowed(found)):
        return found
    if found is None and caller.supervises:
        raise NotFound(f"no {what}")
    raise Forbidden(refusal)


def may_see_challenge(caller: Caller, engine: ChainEngine, challenge: zk.Challenge) -> bool:
    """The verifier, staff of its organisation, and the patient's side."""
    return (
        caller.did == challenge["verifier"]
        or policy.is_staff_of(caller, challenge["verifier_org"])
        or policy.speaks_for(caller, getter(engine), challenge["patient"])
    )


@public_router.get("/criteria", summary="Every eligibility criterion (public: it is policy)")
def criteria(
    engine: Engine, limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100
) -> list[dict[str, Any]]:
    """The governed criteria a verifier may challenge with, id order."""
    return [to_json(c) for _, c in scanner(engine, limit=limit)(zk.criterion_prefix())]


@public_router.get("/criteria/{criterion_id}", summary="One eligibility criterion (public)")
def criterion(criterion_id: str, engine: Engine) -> dict[str, Any]:
    """A criterion: quantity, unit, scale, op and thresholds (ages in years)."""
    found = getter(engine)(zk.criterion_key(criterion_id))
    if found is None:
        raise NotFound(f"no criterion {criterion_id!r}")
    return dict(to_json(found))


@public_router.get(
    "/accreditations/{org_id}", summary="What an organisation may attest, until when (public)"
)
def accreditation(org_id: str, engine: Engine) -> dict[str, Any]:
    """An organisation's zk accreditation (withdrawn ones stay, marked), so anyone can
    check a lab before trusting its attestations."""
    found = getter(engine)(zk.accreditation_key(org_id))
    if found is None:
        raise NotFound(f"{org_id!r} has no zk accreditation")
    return dict(to_json(found))


@router.get(
    "/attestations/{attestation_id}",
    summary="One attestation: commitment, patient, record and lab (the patient, the lab, "
    "regulators)",
    openapi_extra=SIGNED,
)
def attestation(attestation_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """What the patient's prover needs besides the opening (the commitment the proof is
    about); the value is not on chain."""
    found = _guarded(
        engine,
        caller,
        zk.attestation_key(attestation_id),
        f"attestation {attestation_id!r}",
        lambda a: (
            policy.speaks_for(caller, getter(engine), a["patient"])
            or policy.is_staff_of(caller, a["lab_org"])
        ),
        ATTESTATION_REFUSED,
    )
    return dict(to_json(found))


@router.get(
    "/challenges/{challenge_id}",
    summary="One challenge and its proof if answered (the verifier, the patient, regulators)",
    openapi_extra=SIGNED,
)
def challenge(challenge_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """A challenge with its nonce (what the patient's proofs are bound to), whether it
    is still open, and the accepted proof record once answered."""
    found = _guarded(
        engine,
        caller,
        zk.challenge_key(challenge_id),
        f"challenge {challenge_id!r}",
        lambda c: may_see_challenge(caller, engine, c),
        CHALLENGE_REFUSED,
    )
    proof = zk.proven(getter(engine), challenge_id)
    now = engine.app.db.block_time_ms()
    status = "proven" if proof else ("open" if found["expires_ms"] > now else "expired")
    return dict(to_json(found)) | {"status": status, "proof": to_json(proof)}


@router.get(
    "/proofs/{challenge_id}",
    summary="The accepted proof of a challenge (the verifier, the patient, regulators)",
    openapi_extra=SIGNED,
)
def proof(challenge_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """The chain's record that it verified the patient's range proof(s) for this
    challenge; 404 to those who may see the challenge while it is unanswered."""
    _guarded(
        engine,
        caller,
        zk.challenge_key(challenge_id),
        f"challenge {challenge_id!r}",
        lambda c: may_see_challenge(caller, engine, c),
        CHALLENGE_REFUSED,
    )
    found = zk.proven(getter(engine), challenge_id)
    if found is None:
        raise NotFound(f"challenge {challenge_id!r} is not answered")
    return dict(to_json(found))
