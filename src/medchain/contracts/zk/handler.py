"""zk contract: accreditation, criteria, attestations, challenges and proofs.

Authority:
  accredit       a consortium admin or a regulator: a lab, hospital or clinic may
                 attest these quantities until an expiry
  withdraw       the same: the accreditation ends now, and with it every proof
                 from that organisation's attestations (for good: accrediting
                 it again later revives none of them)
  set_criterion  the same: an eligibility rule (quantity, unit, scale, op,
                 thresholds) as governed data
  set_defaults   the same: the default criteria (HbA1c, eGFR, age)
  attest         a lab technician or doctor of an accredited organisation, for
                 an active record of the patient that organisation holds
  challenge      a member of an insurer, research organisation or hospital
  prove          the challenged patient, once per challenge, before it expires,
                 with an attestation of their own from a still accredited lab
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from medchain import crypto
from medchain.contracts.base import (
    ActionHandler,
    governor_member,
    patient_member,
    signer_member,
    unauthorized,
)
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import Payload, invalid
from medchain.contracts.records.model import ACTIVE as RECORD_ACTIVE
from medchain.contracts.records.model import record_key
from medchain.contracts.zk import model
from medchain.contracts.zk.payloads import (
    AccreditPayload,
    AttestPayload,
    ChallengePayload,
    ProvePayload,
    SetCriterionPayload,
    SetDefaultsPayload,
    WithdrawPayload,
)
from medchain.core.context import Context
from medchain.crypto import rangeproof
from medchain.exceptions import Code, InvalidTransaction


class ZkHandler(ActionHandler):
    """The `zk` system contract, version 1."""

    namespace = model.NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "accredit": AccreditPayload,
        "withdraw": WithdrawPayload,
        "set_criterion": SetCriterionPayload,
        "set_defaults": SetDefaultsPayload,
        "attest": AttestPayload,
        "challenge": ChallengePayload,
        "prove": ProvePayload,
    }

    # -- governance ----------------------------------------------------------

    def accredit(self, payload: AccreditPayload, ctx: Context) -> None:
        """Only an organisation that measures values (lab, hospital, clinic) may be
        trusted to commit to them, and only for what it is accredited for."""
        caller = governor_member(ctx)
        org = ctx.require(identity.org_key(payload.org_id), f"organisation {payload.org_id!r}")
        if org["org_type"] not in model.ATTESTING_ORG_TYPES:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"{payload.org_id} is a {org['org_type']}; only a "
                f"{' or '.join(sorted(model.ATTESTING_ORG_TYPES))} may be accredited to attest",
            )
        if org["status"] != identity.ACTIVE:
            raise InvalidTransaction(Code.INVALID_STATE, f"{payload.org_id} is {org['status']}")
        if payload.expires_ms <= ctx.time_ms:
            raise invalid("expires_ms must be after the current block time")
        key = model.accreditation_key(payload.org_id)
        accreditation: model.Accreditation = {
            "org_id": payload.org_id,
            "quantities": sorted(payload.quantities),
            "expires_ms": payload.expires_ms,
            "status": model.ACTIVE,
            "by": caller["did"],
            "height": ctx.height,
        }
        attestations_from = model.attestations_from(ctx.get(key), ctx.height)
        if attestations_from is not None:
            accreditation["attestations_from_height"] = attestations_from
        ctx.put(key, accreditation)
        ctx.emit(
            "zk.accredited",
            org_id=payload.org_id,
            quantities=",".join(accreditation["quantities"]),
            expires_ms=str(payload.expires_ms),
            actor=caller["did"],
        )

    def withdraw(self, payload: WithdrawPayload, ctx: Context) -> None:
        """End an accreditation now; kept, marked withdrawn, for audit."""
        caller = governor_member(ctx)
        key = model.accreditation_key(payload.org_id)
        found = ctx.get(key)
        if found is None or found["status"] != model.ACTIVE:
            raise InvalidTransaction(
                Code.NOT_FOUND, f"{payload.org_id} holds no active zk accreditation"
            )
        withdrawn = cast(model.Accreditation, dict(found))
        withdrawn["status"] = model.WITHDRAWN
        withdrawn["withdrawn_by"] = caller["did"]
        withdrawn["withdrawn_height"] = ctx.height
        ctx.put(key, withdrawn)
        ctx.emit("zk.withdrawn", org_id=payload.org_id, actor=caller["did"])

    def set_criterion(self, payload: SetCriterionPayload, ctx: Context) -> None:
        """An eligibility rule is policy, so governors write it; open challenges keep
        the copy they were posted with."""
        caller = governor_member(ctx)
        self._put_criterion(ctx, payload, caller["did"])

    def set_defaults(self, payload: SetDefaultsPayload, ctx: Context) -> None:
        """Install the default criteria not yet set (never overwrites a governed one)."""
        caller = governor_member(ctx)
        for fields in model.default_criteria():
            if ctx.get(model.criterion_key(fields["criterion_id"])) is None:
                self._put_criterion(ctx, SetCriterionPayload(**fields), caller["did"])

    def _put_criterion(self, ctx: Context, payload: SetCriterionPayload, actor: str) -> None:
        criterion: model.Criterion = {
            "criterion_id": payload.criterion_id,
            "quantity": payload.quantity,
            "unit": payload.unit,
            "scale": payload.scale,
            "op": payload.op,
            "threshold": payload.threshold,
            "set_by": actor,
            "height": ctx.height,
        }
        if isinstance(payload.upper, int):
            criterion["upper"] = payload.upper
        ctx.put(model.criterion_key(payload.criterion_id), criterion)
        ctx.emit(
            "zk.criterion_set",
            criterion_id=payload.criterion_id,
            quantity=payload.quantity,
            op=payload.op,
            actor=actor,
        )

    # -- attest, challenge, prove -------------------------------------------

    def attest(self, payload: AttestPayload, ctx: Context) -> None:
        """A lab commits to one value of a record it holds for the patient; the record's
        content hash is copied in, binding commitment, patient and record."""
        attester = signer_member(ctx)
        org_id = attester["org_id"]
        if org_id is None or not model.ATTESTER_ROLES & set(attester["roles"]):
            raise unauthorized(
                "only a lab technician or doctor of an accredited organisation may attest"
            )
        org = ctx.get(identity.org_key(org_id))
        if org is None or org["status"] != identity.ACTIVE:
            raise unauthorized(f"{org_id} is not an active organisation")
        why_not = model.accredited_for(ctx.get, org_id, payload.quantity, ctx.time_ms)
        if why_not is not None:
            raise unauthorized(f"{why_not}; ask a regulator for zk accreditation")
        key = model.attestation_key(payload.attestation_id)
        if ctx.get(key) is not None:
            raise InvalidTransaction(
                Code.ALREADY_EXISTS, f"attestation {payload.attestation_id!r} exists; pick a new id"
            )
        record = ctx.require(record_key(payload.record_id), f"record {payload.record_id!r}")
        if record["patient"] != payload.patient or record["custodian"] != org_id:
            raise unauthorized(
                f"record {payload.record_id!r} is not a record of {payload.patient} held by "
                f"{org_id}"
            )
        if record["status"] != RECORD_ACTIVE:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"record {payload.record_id!r} is {record['status']}; attest its current version",
            )
        attestation: model.Attestation = {
            "attestation_id": payload.attestation_id,
            "patient": payload.patient,
            "record_id": payload.record_id,
            "content_hash": record["content_hash"],
            "quantity": payload.quantity,
            "unit": payload.unit,
            "scale": payload.scale,
            "commitment": payload.commitment,
            "lab_org": org_id,
            "attested_by": attester["did"],
            "height": ctx.height,
            "time_ms": ctx.time_ms,
        }
        ctx.put(key, attestation)
        ctx.emit(
            "zk.attested",
            attestation_id=payload.attestation_id,
            patient=payload.patient,
            record_id=payload.record_id,
            quantity=payload.quantity,
            lab_org=org_id,
            custodian=org_id,
            actor=attester["did"],
        )

    def challenge(self, payload: ChallengePayload, ctx: Context) -> None:
        """A verifier asks a patient to prove a criterion; the nonce comes from this tx's
        id, so no proof can exist before the challenge's block."""
        verifier = signer_member(ctx)
        org = ctx.get(identity.org_key(verifier["org_id"])) if verifier["org_id"] else None
        if (
            org is None
            or org["org_type"] not in model.VERIFIER_ORG_TYPES
            or org["status"] != identity.ACTIVE
            or "patient" in verifier["roles"]
        ):
            raise unauthorized(
                "only a member of an active insurer, research organisation or hospital may "
                "challenge"
            )
        if not ctx.time_ms < payload.expires_ms <= ctx.time_ms + model.MAX_CHALLENGE_MS:
            raise invalid(
                f"expires_ms must be after the block time and at most "
                f"{model.MAX_CHALLENGE_MS // model.DAY_MS} days ahead"
            )
        criterion = ctx.require(
            model.criterion_key(payload.criterion_id), f"criterion {payload.criterion_id!r}"
        )
        patient_member(ctx, payload.patient)
        key = model.challenge_key(payload.challenge_id)
        if ctx.get(key) is not None:
            raise InvalidTransaction(
                Code.ALREADY_EXISTS, f"challenge {payload.challenge_id!r} exists; pick a new id"
            )
        challenge: model.Challenge = {
            "challenge_id": payload.challenge_id,
            "criterion": criterion,
            "patient": payload.patient,
            "verifier": verifier["did"],
            "verifier_org": verifier["org_id"],
            "nonce": ctx.tx_id[: model.NONCE_BYTES],
            "expires_ms": payload.expires_ms,
            "height": ctx.height,
            "time_ms": ctx.time_ms,
        }
        ctx.put(key, challenge)
        ctx.emit(
            "zk.challenged",
            challenge_id=payload.challenge_id,
            criterion_id=payload.criterion_id,
            patient=payload.patient,
            verifier_org=verifier["org_id"],
            actor=verifier["did"],
        )

    def prove(self, payload: ProvePayload, ctx: Context) -> None:
        """The patient answers a challenge once. Every check that needs no curve
        arithmetic comes first; a proof that fails leaves nothing behind, so the
        challenge can still be answered. The value never reaches the chain."""
        challenge = self._open_challenge(ctx, payload.challenge_id)
        attestation = self._own_attestation(ctx, payload.attestation_id, challenge["patient"])
        criterion = challenge["criterion"]
        mismatch = model.value_matches(criterion, attestation)
        if mismatch is not None:
            raise InvalidTransaction(Code.INVALID_STATE, mismatch)
        why_not = model.accredited_for(
            ctx.get,
            attestation["lab_org"],
            attestation["quantity"],
            ctx.time_ms,
            attestation["height"],
        )
        if why_not is not None:
            raise InvalidTransaction(
                Code.INVALID_STATE, f"{why_not}: its attestations prove nothing now"
            )
        record = ctx.get(record_key(attestation["record_id"]))
        if record is None or record["status"] != RECORD_ACTIVE:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"the attested record {attestation['record_id']!r} is no longer active; "
                "ask the lab for an attestation of its current version",
            )
        wanted = model.statements(criterion, ctx.time_ms)
        if len(payload.proofs) != len(wanted):
            raise invalid(
                f"criterion {criterion['criterion_id']} needs {len(wanted)} proof(s), "
                f"got {len(payload.proofs)}"
            )
        context = model.proof_context(ctx.chain_id, challenge, attestation)
        for (op, threshold), proof in zip(wanted, payload.proofs, strict=True):
            if not rangeproof.verify_threshold(
                attestation["commitment"], op, threshold, proof, context
            ):
                raise InvalidTransaction(
                    Code.INVALID_PROOF,
                    f"the proof does not show criterion {criterion['criterion_id']} for "
                    f"attestation {attestation['attestation_id']!r} and this challenge; "
                    "make it with `medchain zk prove` for this challenge",
                )
        proof_record: model.Proof = {
            "challenge_id": challenge["challenge_id"],
            "criterion_id": criterion["criterion_id"],
            "patient": challenge["patient"],
            "verifier": challenge["verifier"],
            "verifier_org": challenge["verifier_org"],
            "attestation_id": attestation["attestation_id"],
            "height": ctx.height,
            "time_ms": ctx.time_ms,
            "lab_org": attestation["lab_org"],
            "attested_ms": attestation["time_ms"],
            "proof_hashes": [crypto.sm3(p) for p in payload.proofs],
        }
        ctx.put(model.proof_key(challenge["challenge_id"]), proof_record)
        ctx.emit(
            "zk.proven",
            challenge_id=challenge["challenge_id"],
            criterion_id=criterion["criterion_id"],
            attestation_id=attestation["attestation_id"],
            patient=challenge["patient"],
            verifier=challenge["verifier"],
            verifier_org=challenge["verifier_org"],
            actor=challenge["patient"],
        )

    def _open_challenge(self, ctx: Context, challenge_id: str) -> model.Challenge:
        """The challenge, if the signer is its patient and it is open: unanswered
        (single use, so no replay) and not expired. A missing challenge gets the
        answer another patient's gets, so `prove` tells nobody which ids exist."""
        found = ctx.get(model.challenge_key(challenge_id))
        if found is None or ctx.signer.did != found["patient"]:
            raise unauthorized(
                "only the challenged patient may answer a challenge; check the challenge id"
            )
        challenge = cast(model.Challenge, found)
        if ctx.get(model.proof_key(challenge_id)) is not None:
            raise InvalidTransaction(
                Code.ALREADY_EXISTS,
                f"challenge {challenge_id!r} is already answered; ask the verifier for a new one",
            )
        if challenge["expires_ms"] <= ctx.time_ms:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"challenge {challenge_id!r} expired; ask the verifier for a new one",
            )
        return challenge

    def _own_attestation(self, ctx: Context, attestation_id: str, patient: str) -> Any:
        """The attestation, if it is of `patient`; another patient's attestation gets
        the answer a missing one gets."""
        found = ctx.get(model.attestation_key(attestation_id))
        if found is None or found["patient"] != patient:
            raise InvalidTransaction(
                Code.NOT_FOUND, f"no attestation {attestation_id!r} of {patient}"
            )
        return cast(model.Attestation, found)
