"""Research contract: federated studies, their cohorts, rounds and contributions.

Authority:
  create_study          an org admin or researcher of the sponsor organisation
                        (the signer's own), naming an active ethics record and
                        2..16 active hospitals or clinics
  commit_cohort         an org admin or researcher of one of the study's hospitals,
                        for that hospital, round by round (round r once round r-1
                        is recorded); the chain recomputes the cohort and refuses
                        a count or root that differs from its own
  record_round          an org admin or researcher of the sponsor, once every
                        hospital committed the round's cohort
  record_contributions  the same, after the last planned round: completes the study

Patients join and leave through consent.grant / consent.revoke (grantee kind
"study"); nothing here reads a record's content or releases one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from msgspec import UNSET

from medchain.contracts.base import ActionHandler, signer_member, unauthorized
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import Payload, invalid
from medchain.contracts.records.model import ACTIVE as RECORD_ACTIVE
from medchain.contracts.records.model import record_key
from medchain.contracts.research import model
from medchain.contracts.research.payloads import (
    CommitCohort,
    CreateStudy,
    RecordContributions,
    RecordRound,
)
from medchain.core.context import Context
from medchain.exceptions import Code, InvalidTransaction


def acting_for_org(ctx: Context, org_id: str, what: str) -> dict[str, Any]:
    """The signer, if an active org admin or researcher of `org_id`; else UNAUTHORIZED
    (the same answer whatever the study holds, so a stranger learns nothing)."""
    member = signer_member(ctx)
    if (
        member["org_id"] != org_id
        or member["status"] != identity.ACTIVE
        or not model.STUDY_ROLES & set(member["roles"])
    ):
        raise unauthorized(f"only an org admin or researcher of {what} may do this")
    return member


def open_study(ctx: Context, study_id: str) -> model.Study:
    """The study, if it exists and is still open and unexpired."""
    study = cast(model.Study, ctx.require(model.study_key(study_id), f"study {study_id!r}"))
    if study["status"] != model.OPEN:
        raise InvalidTransaction(Code.INVALID_STATE, f"study {study_id} is {study['status']}")
    if ctx.time_ms >= study["expires_ms"]:
        raise InvalidTransaction(Code.INVALID_STATE, f"study {study_id} has expired")
    return study


class ResearchHandler(ActionHandler):
    """The `research` system contract, version 1."""

    namespace = model.NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "create_study": CreateStudy,
        "commit_cohort": CommitCohort,
        "record_round": RecordRound,
        "record_contributions": RecordContributions,
    }

    def create_study(self, p: CreateStudy, ctx: Context) -> None:
        """A sponsor opens a study that patients may then join by consent."""
        if p.expires_ms <= ctx.time_ms:
            raise invalid("expires_ms must be after the current block time")
        caller = signer_member(ctx)
        sponsor = caller["org_id"]
        if sponsor is None:
            raise unauthorized("only an org admin or researcher of the sponsor may do this")
        acting_for_org(ctx, sponsor, "the sponsor")
        if ctx.get(model.study_key(p.study_id)) is not None:
            raise InvalidTransaction(Code.ALREADY_EXISTS, f"study {p.study_id!r} exists")
        ethics = ctx.get(record_key(p.ethics_record_id))
        if ethics is None or ethics["status"] != RECORD_ACTIVE:
            raise InvalidTransaction(
                Code.NOT_FOUND,
                f"no active record {p.ethics_record_id!r}: register the ethics approval first",
            )
        for org_id in p.hospitals:
            org = ctx.get(identity.org_key(org_id))
            if (
                org is None
                or org["status"] != identity.ACTIVE
                or org["org_type"] not in model.HOSPITAL_TYPES
            ):
                raise InvalidTransaction(
                    Code.NOT_FOUND, f"{org_id!r} is not an active hospital or clinic"
                )
        study: model.Study = {
            "study_id": p.study_id,
            "title": p.title.strip(),
            "sponsor_org": sponsor,
            "created_by": caller["did"],
            "protocol_hash": p.protocol_hash,
            "ethics_record_id": p.ethics_record_id,
            "data_types": sorted(p.data_types),
            "features": list(p.features),  # in order: the model's input order
            "hospitals": sorted(p.hospitals),
            "rounds_planned": p.rounds_planned,
            "rounds_recorded": 0,
            "aggregation": p.aggregation,
            "expires_ms": p.expires_ms,
            "status": model.OPEN,
            "created_height": ctx.height,
            "created_time_ms": ctx.time_ms,
        }
        if p.dp_epsilon_milli is not UNSET:
            study["dp_epsilon_milli"] = p.dp_epsilon_milli
        ctx.put(model.study_key(p.study_id), study)
        ctx.emit(
            "research.study_created",
            study_id=p.study_id,
            sponsor=sponsor,
            hospitals=",".join(study["hospitals"]),
            rounds_planned=str(p.rounds_planned),
            actor=caller["did"],
        )

    def commit_cohort(self, p: CommitCohort, ctx: Context) -> None:
        """A hospital commits its cohort of a round; the chain recomputes it at this
        block and keeps its own leaves, so inclusion and exclusion are provable."""
        study = cast(model.Study, ctx.require(model.study_key(p.study_id), f"study {p.study_id!r}"))
        caller = signer_member(ctx)
        org_id = caller["org_id"]
        if org_id not in study["hospitals"]:
            raise unauthorized("only an org admin or researcher of a participating hospital")
        acting_for_org(ctx, org_id, "a participating hospital")
        study = open_study(ctx, p.study_id)
        if p.round > study["rounds_planned"]:
            raise InvalidTransaction(
                Code.INVALID_STATE, f"the study plans {study['rounds_planned']} rounds"
            )
        if p.round != study["rounds_recorded"] + 1:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"round {study['rounds_recorded'] + 1} is the one open for cohorts "
                f"({study['rounds_recorded']} recorded)",
            )
        key = model.cohort_key(p.study_id, p.round, org_id)
        if ctx.get(key) is not None:
            raise InvalidTransaction(
                Code.ALREADY_EXISTS, f"{org_id} already committed round {p.round}"
            )
        patients = model.cohort_members(
            ctx.get,
            model.bounded(lambda prefix: ctx.scan(prefix, model.COHORT_READ_LIMIT + 1)),
            p.study_id,
            org_id,
            ctx.time_ms,
        )
        leaves = model.cohort_leaves(p.study_id, patients)
        root = model.cohort_root(leaves)
        if p.count != len(leaves) or p.root != root:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"cohort mismatch: at this block the chain counts {len(leaves)} patients with "
                f"an active study grant and an active record at {org_id} (root {root.hex()}); "
                "recompute from consent and records at the block you commit in",
            )
        committed: model.Cohort = {
            "study_id": p.study_id,
            "round": p.round,
            "org_id": org_id,
            "count": len(leaves),
            "root": root,
            "leaves": leaves,
            "committed_by": caller["did"],
            "height": ctx.height,
            "time_ms": ctx.time_ms,
        }
        ctx.put(key, committed)
        ctx.emit(
            "research.cohort_committed",
            study_id=p.study_id,
            round=str(p.round),
            org_id=org_id,
            count=str(len(leaves)),
            root=root.hex(),
            actor=caller["did"],
        )

    def record_round(self, p: RecordRound, ctx: Context) -> None:
        """The sponsor records what a round produced, once every hospital's cohort is in."""
        study = cast(model.Study, ctx.require(model.study_key(p.study_id), f"study {p.study_id!r}"))
        caller = acting_for_org(ctx, study["sponsor_org"], "the study's sponsor")
        study = open_study(ctx, p.study_id)
        if p.round != study["rounds_recorded"] + 1 or p.round > study["rounds_planned"]:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"{study['rounds_recorded']} of {study['rounds_planned']} rounds are recorded; "
                f"round {p.round} is not next",
            )
        missing = model.missing_cohorts(ctx.get, study, p.round)
        if missing:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"round {p.round} has no cohort yet from {', '.join(missing)}",
            )
        hospitals = set(study["hospitals"])
        if {m.org_id for m in p.metrics} != hospitals:
            raise invalid(f"metrics must name each hospital once: {', '.join(study['hospitals'])}")
        strangers = sorted({u.org_id for u in p.update_hashes} - hospitals)
        if strangers:
            raise invalid(f"update_hashes name non-participants: {', '.join(strangers)}")
        cohorts: list[model.CohortDigest] = []
        for org in study["hospitals"]:
            c = ctx.get(model.cohort_key(p.study_id, p.round, org))
            cohorts.append({"org_id": org, "count": c["count"], "root": c["root"]})
        recorded: model.Round = {
            "study_id": p.study_id,
            "round": p.round,
            "global_model_hash": p.global_model_hash,
            "metrics": [
                {
                    "org_id": m.org_id,
                    "accuracy_bp": m.accuracy_bp,
                    "auc_bp": m.auc_bp,
                    "n_eval": m.n_eval,
                }
                for m in sorted(p.metrics, key=lambda m: m.org_id)
            ],
            "update_hashes": [
                {"org_id": u.org_id, "hash": u.hash}
                for u in sorted(p.update_hashes, key=lambda u: u.org_id)
            ],
            "cohorts": cohorts,
            "aggregation": study["aggregation"],
            "recorded_by": caller["did"],
            "height": ctx.height,
            "time_ms": ctx.time_ms,
        }
        if "dp_epsilon_milli" in study:
            recorded["dp_epsilon_milli"] = study["dp_epsilon_milli"]
        ctx.put(model.round_key(p.study_id, p.round), recorded)
        study["rounds_recorded"] = p.round
        ctx.put(model.study_key(p.study_id), study)
        ctx.emit(
            "research.round_recorded",
            study_id=p.study_id,
            round=str(p.round),
            global_model_hash=p.global_model_hash.hex(),
            actor=caller["did"],
        )

    def record_contributions(self, p: RecordContributions, ctx: Context) -> None:
        """The sponsor closes the study with each hospital's contribution: samples ×
        rounds counted by the chain from the cohorts, value measured by the sponsor."""
        study = cast(model.Study, ctx.require(model.study_key(p.study_id), f"study {p.study_id!r}"))
        caller = acting_for_org(ctx, study["sponsor_org"], "the study's sponsor")
        if study["status"] != model.OPEN:
            raise InvalidTransaction(Code.INVALID_STATE, f"study {p.study_id} is {study['status']}")
        if study["rounds_recorded"] != study["rounds_planned"]:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"{study['rounds_recorded']} of {study['rounds_planned']} rounds are recorded",
            )
        if {v.org_id for v in p.values} != set(study["hospitals"]):
            raise invalid(f"values must name each hospital once: {', '.join(study['hospitals'])}")
        value_of = {v.org_id: v.value_bp for v in p.values}
        for org in study["hospitals"]:
            samples_x_rounds = sum(
                ctx.get(model.cohort_key(p.study_id, r, org))["count"]
                for r in range(1, study["rounds_planned"] + 1)
            )
            contribution: model.Contribution = {
                "study_id": p.study_id,
                "org_id": org,
                "rounds": study["rounds_planned"],
                "samples_x_rounds": samples_x_rounds,
                "value_bp": value_of[org],
                "method": p.method,
                "recorded_by": caller["did"],
                "height": ctx.height,
            }
            ctx.put(model.contribution_key(p.study_id, org), contribution)
        study["status"] = model.COMPLETED
        study["completed_height"] = ctx.height
        ctx.put(model.study_key(p.study_id), study)
        ctx.emit(
            "research.study_completed",
            study_id=p.study_id,
            method=p.method,
            actor=caller["did"],
        )
