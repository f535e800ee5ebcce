"""Models contract: the model registry and the provenance of AI results.

Authority:
  register         an org admin or researcher of the owning organisation (the
                   signer's own; a model id stays with the organisation that
                   first registered it); with a study as lineage, only its
                   sponsor, once the study is completed, and only the file
                   the study's last round recorded (its global model hash)
  register_result  a doctor, attending or department head of a hospital or
                   clinic who may read the input record now for treatment
                   (consent and role, as for any exchange), for a result record
                   their organisation holds, of the same patient
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from msgspec import UNSET

from medchain.contracts.base import ActionHandler, signer_member, unauthorized
from medchain.contracts.consent import decide
from medchain.contracts.identity import model as identity
from medchain.contracts.models import model
from medchain.contracts.models.payloads import RegisterModel, RegisterResult
from medchain.contracts.payload import Payload
from medchain.contracts.records.model import ACTIVE as RECORD_ACTIVE
from medchain.contracts.records.model import record_key
from medchain.contracts.research import model as research
from medchain.core.context import Context
from medchain.exceptions import Code, InvalidTransaction


def _staff_with(
    ctx: Context, roles: frozenset[str], who: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The signer and its organisation, if active staff of an active organisation
    holding one of `roles`; else UNAUTHORIZED saying who may."""
    member = signer_member(ctx)
    org = ctx.get(identity.org_key(member["org_id"])) if member["org_id"] else None
    if (
        org is None
        or org["status"] != identity.ACTIVE
        or member["status"] != identity.ACTIVE
        or not roles & set(member["roles"])
    ):
        raise unauthorized(f"only {who} may do this")
    return member, org


class ModelsHandler(ActionHandler):
    """The `models` system contract, version 1."""

    namespace = model.NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "register": RegisterModel,
        "register_result": RegisterResult,
    }

    def register(self, p: RegisterModel, ctx: Context) -> None:
        """An organisation publishes a model version; versions only go up."""
        caller, _ = _staff_with(ctx, model.REGISTRAR_ROLES, "an org admin or researcher")
        owner = caller["org_id"]
        head = cast(model.ModelHead | None, ctx.get(model.model_key(p.model_id)))
        if head is not None and head["owner_org"] != owner:
            raise unauthorized(f"model {p.model_id} belongs to {head['owner_org']}")
        if head is not None and p.version <= head["latest_version"]:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"version must be above {head['latest_version']}, the latest of {p.model_id}",
            )
        entry: model.ModelVersion = {
            "model_id": p.model_id,
            "version": p.version,
            "model_hash": p.model_hash,
            "card_hash": p.card_hash,
            "licence": p.licence,
            "owner_org": owner,
            "registered_by": caller["did"],
            "height": ctx.height,
            "time_ms": ctx.time_ms,
        }
        if p.study_id is not UNSET:
            study = cast(
                research.Study, ctx.require(research.study_key(p.study_id), f"study {p.study_id!r}")
            )
            if study["sponsor_org"] != owner:
                raise unauthorized(f"only the sponsor of {p.study_id} may name it as lineage")
            if study["status"] != research.COMPLETED:
                raise InvalidTransaction(
                    Code.INVALID_STATE,
                    f"study {p.study_id} is {study['status']}: record its contributions first",
                )
            lineage = model.lineage_of(ctx.get, ctx.scan, study)
            final = lineage["rounds"][-1]["global_model_hash"] if lineage["rounds"] else None
            if p.model_hash != final:
                raise InvalidTransaction(
                    Code.INVALID_STATE,
                    f"model_hash must be the SM3 of round {study['rounds_planned']}'s global "
                    f"model of {p.study_id} ({'none' if final is None else final.hex()}): "
                    "a model names as lineage only the study that produced it",
                )
            entry["lineage"] = lineage
        ctx.put(model.version_key(p.model_id, p.version), entry)
        ctx.put(
            model.model_key(p.model_id),
            model.ModelHead(model_id=p.model_id, owner_org=owner, latest_version=p.version),
        )
        ctx.emit(
            "models.registered",
            model_id=p.model_id,
            version=str(p.version),
            model_hash=p.model_hash.hex(),
            owner=owner,
            study_id="" if p.study_id is UNSET else p.study_id,
            actor=caller["did"],
        )

    def register_result(self, p: RegisterResult, ctx: Context) -> None:
        """A treating clinician ties a result record to the model version and input."""
        who = "a doctor, attending or department head of a hospital or clinic"
        clinician, org = _staff_with(ctx, model.CLINICIAN_ROLES, who)
        if org["org_type"] not in identity.CLINICAL_ORG_TYPES:
            raise unauthorized(f"only {who} may do this")
        source = ctx.require(record_key(p.input_record_id), f"record {p.input_record_id!r}")
        decision = decide(ctx.get, ctx.scan, clinician, source, "TREAT", ctx.time_ms)
        if not decision.allowed:
            raise unauthorized(f"no access to the input record: {decision.reason}")
        version = ctx.require(
            model.version_key(p.model_id, p.version), f"model {p.model_id} v{p.version}"
        )
        if ctx.get(model.result_key(p.result_id)) is not None:
            raise InvalidTransaction(Code.ALREADY_EXISTS, f"result {p.result_id!r} exists")
        output = ctx.require(record_key(p.output_record_id), f"record {p.output_record_id!r}")
        if output["status"] != RECORD_ACTIVE or output["custodian"] != clinician["org_id"]:
            raise InvalidTransaction(
                Code.INVALID_STATE, "the result must be an active record your organisation holds"
            )
        if output["patient"] != source["patient"] or p.output_record_id == p.input_record_id:
            raise InvalidTransaction(
                Code.INVALID_STATE, "the result must be another record of the input's patient"
            )
        if output["resource_type"] not in model.RESULT_TYPES:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"a result is registered as one of {sorted(model.RESULT_TYPES)}, "
                f"not {output['resource_type']}",
            )
        if ctx.get(model.result_of_key(p.output_record_id)) is not None:
            raise InvalidTransaction(
                Code.ALREADY_EXISTS, f"record {p.output_record_id} is already a result"
            )
        result: model.AiResult = {
            "result_id": p.result_id,
            "model_id": p.model_id,
            "version": p.version,
            "model_hash": version["model_hash"],
            "input_record_id": p.input_record_id,
            "input_content_hash": source["content_hash"],
            "output_record_id": p.output_record_id,
            "patient": source["patient"],
            "org_id": clinician["org_id"],
            "clinician": clinician["did"],
            "height": ctx.height,
            "time_ms": ctx.time_ms,
        }
        ctx.put(model.result_key(p.result_id), result)
        ctx.put(model.result_of_key(p.output_record_id), model.ResultRef(result_id=p.result_id))
        ctx.emit(
            "models.result_registered",
            result_id=p.result_id,
            model_id=p.model_id,
            version=str(p.version),
            record_id=p.output_record_id,
            patient=source["patient"],
            actor=clinician["did"],
        )
