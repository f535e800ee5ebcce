"""Federated research views: studies, their rounds, cohort commitments and
contributions; cohort proofs; the model registry; AI-result provenance.
Changes go through signed transactions (research.*, models.*, consent.grant of
kind study); these routes only read committed state.

Who may see what (docs/research.md, "From the CLI and the API"):

- Study metadata, rounds, each hospital's cohort count and root, contributions
  and the model registry are consortium business: any signed, active member
  (a patient deciding whether to join included). Unsigned requests get 401, as
  every other read of organisations' business does; the public surface stays
  status, DID documents and the organisation directory.
- A cohort's leaves are never served. A cohort proof says whether one person is
  in a cohort, so only that patient (or their guardian), an org admin or
  researcher of a participating hospital or of the sponsor, a regulator or a
  node operator may ask; anyone else gets the same 403 whether or not the study,
  the cohort or the patient exists.
- The members of a hospital's next cohort (DIDs) go to the org admins and
  researchers of that hospital, who must know whose data to train on and commit
  the cohort, and to regulators and operators; the same 403 to anyone else.
- A record's provenance goes to whoever may see the record (its patient side,
  its custodian's staff, a member `consent.decide` lets read it now, a
  regulator): anyone else gets the 404 a missing record gets.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from medchain.consensus.engine import Engine as ChainEngine
from medchain.contracts.models import model as models
from medchain.contracts.records.model import record_key
from medchain.contracts.research import model as research
from medchain.exceptions import Code, InvalidTransaction
from medchain.gateway import policy
from medchain.gateway.auth import SIGNED, Caller, SignedCaller
from medchain.gateway.deps import Engine, getter, scanner
from medchain.gateway.errors import Forbidden, NotFound
from medchain.gateway.routes.health import record_visible_to, visible
from medchain.gateway.schemas import to_json

router = APIRouter(prefix="/v1", tags=["research and models"])

PROOF_REFUSED = (
    "a cohort proof is for the patient (or their guardian), org admins and researchers "
    "of the study's hospitals and sponsor, and regulators"
)
PROOF_HINT = "sign with the patient's key and pass patient=<your DID>, or ask a participant"
MEMBERS_REFUSED = (
    "a cohort's members are for the org admins and researchers of that participating "
    "hospital, regulators and node operators"
)
MAX_LIST = 1000
HEX_DIGEST = r"^[0-9a-fA-F]{64}$"


def _study_or_404(engine: ChainEngine, study_id: str) -> research.Study:
    found = research.study(getter(engine), study_id)
    if found is None:
        raise NotFound(f"no study {study_id!r}")
    return found


def open_round(study: research.Study) -> int | None:
    """The round open for cohorts now, or None once the study is completed (or every
    planned round is recorded)."""
    next_round = study["rounds_recorded"] + 1
    if study["status"] != research.OPEN or next_round > study["rounds_planned"]:
        return None
    return next_round


def acts_for(caller: Caller, org_id: str) -> bool:
    """The caller is an org admin or researcher of `org_id` (who act for it in a study)."""
    return policy.is_staff_of(caller, org_id) and bool(caller.roles & research.STUDY_ROLES)


def study_view(engine: ChainEngine, study: research.Study) -> dict[str, Any]:
    """A study with the round open for cohorts and the hospitals that have not yet
    committed theirs (empty when no round is open)."""
    current = open_round(study)
    missing = [] if current is None else research.missing_cohorts(getter(engine), study, current)
    return dict(to_json(study)) | {"open_round": current, "missing_cohorts": missing}


@router.get(
    "/studies",
    summary="Every federated study, oldest id first (any signed member)",
    openapi_extra=SIGNED,
)
def studies(
    engine: Engine,
    caller: SignedCaller,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> list[dict[str, Any]]:
    """Study metadata is consortium business, and a patient reads it to decide whether
    to join: any signed member may list them."""
    scan = scanner(engine, limit=limit)
    return [study_view(engine, s) for _, s in scan(research.study_key(""))]


@router.get(
    "/studies/{study_id}",
    summary="One study, with its open round and the hospitals whose cohort is missing "
    "(any signed member)",
    openapi_extra=SIGNED,
)
def study(study_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """A study's protocol (sponsor, ethics record, data types, features, hospitals,
    rounds, aggregation, epsilon) and where it stands, for any signed member."""
    return study_view(engine, _study_or_404(engine, study_id))


@router.get(
    "/studies/{study_id}/rounds",
    summary="A study's recorded rounds: global model hash, metrics per hospital, cohort "
    "counts and roots (any signed member)",
    openapi_extra=SIGNED,
)
def study_rounds(study_id: str, engine: Engine, caller: SignedCaller) -> list[Any]:
    """What each recorded round produced, in order, for any signed member."""
    _study_or_404(engine, study_id)
    return [to_json(r) for r in research.rounds(scanner(engine), study_id)]


@router.get(
    "/studies/{study_id}/cohorts/{round_no}",
    summary="Each hospital's committed cohort of one round: count and Merkle root, never "
    "the leaves (any signed member)",
    openapi_extra=SIGNED,
)
def study_cohorts(
    study_id: str,
    round_no: Annotated[int, Path(ge=1, le=research.MAX_ROUNDS)],
    engine: Engine,
    caller: SignedCaller,
) -> dict[str, Any]:
    """Count and root per hospital for one round (what a proof is checked against),
    and which hospitals have not committed it; the sample ids stay on chain."""
    found = _study_or_404(engine, study_id)
    scan = scanner(engine)
    committed = [
        {k: to_json(c[k]) for k in ("org_id", "count", "root", "committed_by", "height", "time_ms")}
        for _, c in scan(research.cohort_round_prefix(study_id, round_no))
    ]
    return {
        "study_id": study_id,
        "round": round_no,
        "cohorts": committed,
        "missing": research.missing_cohorts(getter(engine), found, round_no),
    }


@router.get(
    "/studies/{study_id}/contributions",
    summary="Each hospital's contribution to a completed study: samples × rounds and "
    "leave-one-out value (any signed member)",
    openapi_extra=SIGNED,
)
def study_contributions(study_id: str, engine: Engine, caller: SignedCaller) -> list[Any]:
    """The inputs for incentive tokens and governance weights, for any signed member;
    empty until the sponsor records them."""
    _study_or_404(engine, study_id)
    return [to_json(c) for c in research.contributions(scanner(engine), study_id)]


@router.get(
    "/studies/{study_id}/cohort-members",
    summary="The patients who would be a hospital's cohort at the last block (DIDs, count, "
    "root): for that hospital's org admins and researchers, regulators, operators",
    openapi_extra=SIGNED,
)
def cohort_members(
    study_id: str,
    engine: Engine,
    caller: SignedCaller,
    org: Annotated[str, Query(max_length=64, description="the participating hospital")],
) -> dict[str, Any]:
    """Whose data a hospital may train on, and the count and root to commit: the
    contract's own cohort rule (research.model.cohort_members) at the last block's
    time. The chain recomputes it at the commit's block, so a grant revoked or
    expired in between makes the commit fail: read again and recommit."""
    get = getter(engine)
    found = research.study(get, study_id)
    participating = found is not None and org in found["hospitals"]
    if not (caller.supervises or (participating and acts_for(caller, org))):
        raise Forbidden(MEMBERS_REFUSED)
    if found is None:
        raise NotFound(f"no study {study_id!r}")
    if not participating:
        raise NotFound(f"{org!r} is not a hospital of study {study_id!r}")
    now = engine.app.db.block_time_ms()
    scan = research.bounded(scanner(engine, limit=research.COHORT_READ_LIMIT + 1))
    members = research.cohort_members(get, scan, study_id, org, now)
    leaves = research.cohort_leaves(study_id, members)
    return {
        "study_id": study_id,
        "org_id": org,
        "open_round": open_round(found),
        "as_of_height": engine.app.db.height,
        "as_of_time_ms": now,
        "members": members,
        "count": len(leaves),
        "root": research.cohort_root(leaves).hex(),
    }


def may_ask_proof(
    caller: Caller, get: policy.Get, study: research.Study | None, patient: str | None
) -> bool:
    """Whether the caller may learn if `patient` is in a cohort of `study` (see the
    module docstring); the answer never depends on whether the patient exists."""
    if caller.supervises or policy.speaks_for(caller, get, patient):
        return True
    if study is None:
        return False
    return any(acts_for(caller, org) for org in (*study["hospitals"], study["sponsor_org"]))


@router.get(
    "/studies/{study_id}/cohort-proof",
    summary="Proof that a patient is (or is not) in a hospital's cohort of a round: the "
    "patient or guardian, the study's hospitals and sponsor, regulators",
    openapi_extra=SIGNED,
)
def cohort_proof(
    study_id: str,
    engine: Engine,
    caller: SignedCaller,
    round_no: Annotated[int, Query(alias="round", ge=1, le=research.MAX_ROUNDS)],
    org: Annotated[str, Query(max_length=64, description="the hospital whose cohort")],
    patient: Annotated[
        str | None, Query(max_length=200, description="the patient's DID (default: you)")
    ] = None,
    sample: Annotated[
        str | None,
        Query(pattern=HEX_DIGEST, description="a sample id (hex), instead of a patient DID"),
    ] = None,
) -> dict[str, Any]:
    """An inclusion proof ({leaf, index, path}) or an exclusion proof ({below, above})
    for the patient's sample id, with the cohort's count and root. Check it yourself
    (research.model.verify_cohort_proof) against the root of GET
    /studies/{id}/cohorts/{round}, computing the sample id from the DID you know."""
    if patient is not None and sample is not None:
        raise InvalidTransaction(Code.MALFORMED, "pass patient or sample, not both")
    get = getter(engine)
    found = research.study(get, study_id)
    whose = patient if patient is not None else (None if sample is not None else caller.did)
    own_sample = (
        sample is not None
        and caller.did
        and (bytes.fromhex(sample) == research.sample_id(study_id, caller.did))
    )
    if not (own_sample or may_ask_proof(caller, get, found, whose)):
        raise Forbidden(PROOF_REFUSED, PROOF_HINT)
    if found is None:
        raise NotFound(f"no study {study_id!r}")
    committed = research.cohort(get, study_id, round_no, org)
    if committed is None:
        raise NotFound(f"no cohort of round {round_no} from {org!r} in study {study_id!r}")
    target = bytes.fromhex(sample) if sample is not None else None
    if target is None:
        if not whose:
            raise InvalidTransaction(Code.MALFORMED, "name the patient: patient=<DID>")
        target = research.sample_id(study_id, whose)
    proof = research.prove(committed["leaves"], target)
    verified, included = research.verify_cohort_proof(proof, target, committed)
    return {
        "study_id": study_id,
        "round": round_no,
        "org_id": org,
        "sample_id": target.hex(),
        "count": committed["count"],
        "root": committed["root"].hex(),
        "height": committed["height"],
        "included": included,
        "verified_by_node": verified,
        "proof": proof,
    }


@router.get(
    "/models",
    summary="Every registered model id with its owner and latest version (any signed member)",
    openapi_extra=SIGNED,
)
def model_list(
    engine: Engine,
    caller: SignedCaller,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> list[Any]:
    """The model registry is consortium business: any signed member may list it."""
    return [to_json(m) for _, m in scanner(engine, limit=limit)(models.model_prefix())]


@router.get(
    "/models/{model_id}",
    summary="A model with every version, each with its lineage (any signed member)",
    openapi_extra=SIGNED,
)
def model(model_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """A model's owner, latest version and every registered version (file and card
    hashes, licence, and the study, rounds and cohort roots it was trained on)."""
    head = getter(engine)(models.model_key(model_id))
    if head is None:
        raise NotFound(f"no model {model_id!r}")
    return dict(to_json(head)) | {
        "versions": [to_json(v) for v in models.versions(scanner(engine), model_id)]
    }


@router.get(
    "/models/{model_id}/versions/{version}",
    summary="One version of a model with its lineage (any signed member)",
    openapi_extra=SIGNED,
)
def model_version(
    model_id: str,
    version: Annotated[int, Path(ge=1, le=models.MAX_VERSION)],
    engine: Engine,
    caller: SignedCaller,
) -> dict[str, Any]:
    """One published model file's hashes, licence, owner and training lineage: check
    a model file you hold against model_hash (SM3)."""
    found = models.model_version(getter(engine), model_id, version)
    if found is None:
        raise NotFound(f"no version {version} of model {model_id!r}")
    return dict(to_json(found))


@router.get(
    "/records/{record_id}/provenance",
    summary="Which model version produced this AI result, trained on which study, rounds "
    "and cohort roots (whoever may see the record)",
    openapi_extra=SIGNED,
)
def provenance(record_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """For a clinician, the patient or a regulator: the result, the model version, its
    lineage and contributions, whether it was trained under consent and whether the
    input record is unchanged. The same 404 as for a missing record to anyone who
    may not see the record; 404 too for a record that is not an AI result."""
    visible(
        engine, caller, record_key(record_id), f"record {record_id!r}", record_visible_to(engine)
    )
    answer = models.provenance(getter(engine), scanner(engine), record_id)
    if answer is None:
        raise NotFound(f"record {record_id!r} is not an AI result: no model produced it")
    return dict(to_json(answer))
