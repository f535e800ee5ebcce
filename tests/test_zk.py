"""Zero-knowledge eligibility on chain (issue 18, point 1): accredited labs commit,
verifiers challenge, patients prove with range proofs; the chain verifies without
learning the value. Completeness (every kind of true statement verifies) and
soundness (a false statement, another patient, another commitment, an
unaccredited lab, a replay, a tampered byte: each refused, nothing stored)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from support.ledger import Ledger, did_of

from medchain import crypto, encoding
from medchain.contracts.payload import decode_payload
from medchain.contracts.zk import model as m
from medchain.contracts.zk.payloads import AttestPayload, SetCriterionPayload
from medchain.core.block import TxResult
from medchain.crypto import rangeproof
from medchain.exceptions import Code, InvalidTransaction

DAY_MS = m.DAY_MS
BORN_1950 = (date(1950, 3, 1) - date(1900, 1, 1)).days  # 73 at the ledger's genesis (2023-11-14)


@dataclass
class Opening:
    """What the lab hands the patient off chain: the value and its blinding."""

    value: int
    blinding: int


@pytest.fixture
def world(ledger: Ledger) -> dict[str, crypto.KeyPair]:
    return build_world(ledger)


def build_world(ledger: Ledger) -> dict[str, crypto.KeyPair]:
    """A regulator, two labs (one accredited), a hospital, an insurer, a pharmacy and
    two patients; HbA1c and birth date accredited for lab-a; the default criteria."""
    names = (
        "reg_admin", "inspector", "lab_admin", "tech", "lab_b_admin", "tech_b",
        "hosp_admin", "doctor", "ins_admin", "pharm_admin", "patient", "other",
    )  # fmt: skip
    k = {n: crypto.generate_keypair() for n in names}
    ledger.add_org("nhc", k["reg_admin"], "regulator")
    ledger.add_staff(k["reg_admin"], "nhc", k["inspector"], ["regulator"])
    for org, admin, kind in (
        ("lab-a", "lab_admin", "lab"),
        ("lab-b", "lab_b_admin", "lab"),
        ("hosp-a", "hosp_admin", "hospital"),
        ("ins-a", "ins_admin", "insurer"),
        ("pharm-a", "pharm_admin", "pharmacy"),
    ):
        ledger.add_org(org, k[admin], kind)
    ledger.add_staff(k["lab_admin"], "lab-a", k["tech"], ["lab_technician"])
    ledger.add_staff(k["lab_b_admin"], "lab-b", k["tech_b"], ["lab_technician"])
    ledger.add_staff(k["hosp_admin"], "hosp-a", k["doctor"], ["doctor"])
    ledger.add_patient(k["patient"])
    ledger.add_patient(k["other"])
    ok(zk(ledger, k["inspector"], "set_defaults", {}))
    ok(accredit(ledger, k["inspector"], "lab-a", [m.HBA1C, m.EGFR, m.BIRTH_DATE]))
    return k


def zk(ledger: Ledger, key: crypto.KeyPair, action: str, payload: dict[str, Any]) -> TxResult:
    return ledger.run(key, action, payload, "zk")


def ok(result: TxResult) -> TxResult:
    assert result.code == Code.OK, result.log
    return result


def accredit(
    ledger: Ledger, key: crypto.KeyPair, org: str, quantities: list[str], days: int = 365
) -> TxResult:
    expires = ledger.app.db.block_time_ms() + days * DAY_MS
    return zk(
        ledger, key, "accredit", {"org_id": org, "quantities": quantities, "expires_ms": expires}
    )


def register_record(
    ledger: Ledger, staff: crypto.KeyPair, record_id: str, patient: crypto.KeyPair
) -> None:
    payload = {
        "record_id": record_id,
        "patient": did_of(patient),
        "resource_type": "Observation",
        "cid": "b" + "a" * 58,
        "content_hash": crypto.sm3(record_id.encode()),
    }
    ok(ledger.run(staff, "register", payload, "records"))


def attest(
    ledger: Ledger,
    staff: crypto.KeyPair,
    attestation_id: str,
    patient: crypto.KeyPair,
    value: int,
    quantity: str = m.HBA1C,
    unit: str = "%",
    scale: int = 1,
    record_id: str | None = None,
) -> tuple[TxResult, Opening]:
    """The lab's side: a record, a fresh blinding, the commitment on chain."""
    if record_id is None:
        record_id = f"obs-{attestation_id}"
        register_record(ledger, staff, record_id, patient)
    opening = Opening(value, rangeproof.random_blinding())
    payload = {
        "attestation_id": attestation_id,
        "patient": did_of(patient),
        "record_id": record_id,
        "quantity": quantity,
        "unit": unit,
        "scale": scale,
        "commitment": rangeproof.commit(value, opening.blinding),
    }
    return zk(ledger, staff, "attest", payload), opening


def challenge(
    ledger: Ledger,
    verifier: crypto.KeyPair,
    challenge_id: str,
    criterion_id: str,
    patient: crypto.KeyPair,
    days: int = 7,
) -> TxResult:
    expires = ledger.app.db.block_time_ms() + days * DAY_MS
    payload = {
        "challenge_id": challenge_id,
        "criterion_id": criterion_id,
        "patient": did_of(patient),
        "expires_ms": expires,
    }
    return zk(ledger, verifier, "challenge", payload)


def make_proofs(
    ledger: Ledger, challenge_id: str, attestation_id: str, opening: Opening
) -> list[bytes]:
    """The patient's side: the statements the criterion means at the next block, each
    proven for this challenge's context (ProofError if the value does not meet them)."""
    ch = ledger.state(m.challenge_key(challenge_id))
    att = ledger.state(m.attestation_key(attestation_id))
    context = m.proof_context(ledger.chain_id, ch, att)
    at = ledger.app.db.block_time_ms() + 1000  # Ledger's next block
    return [
        rangeproof.prove_threshold(opening.value, opening.blinding, op, threshold, context)
        for op, threshold in m.statements(ch["criterion"], at)
    ]


def prove(
    ledger: Ledger,
    patient: crypto.KeyPair,
    challenge_id: str,
    attestation_id: str,
    proofs: list[bytes],
) -> TxResult:
    payload = {"challenge_id": challenge_id, "attestation_id": attestation_id, "proofs": proofs}
    return zk(ledger, patient, "prove", payload)


def no_value_anywhere(ledger: Ledger, result: TxResult, value: int) -> None:
    """Neither the events nor the proof record carry the value (as text or integer)."""
    for event in result.events:
        assert str(value) not in dict(event.attributes).values()
    for _, raw in ledger.app.db.scan(m.proof_key(""), 100):
        assert value not in encoding.decode(raw).values()


# -- completeness ------------------------------------------------------------


@pytest.mark.parametrize(
    ("criterion", "quantity", "unit", "scale", "value"),
    [
        ("diabetes-hba1c", m.HBA1C, "%", 1, 71),  # 7.1 % >= 6.5 %
        ("diabetes-hba1c", m.HBA1C, "%", 1, 65),  # exactly at the threshold
        ("ckd-egfr", m.EGFR, "mL/min/{1.73_m2}", 0, 45),  # 45 < 60
        ("ckd-egfr", m.EGFR, "mL/min/{1.73_m2}", 0, 59),
        ("prediabetes", m.HBA1C, "%", 1, 60),  # between 5.7 % and 6.4 %
        ("age-65", m.BIRTH_DATE, "d", 0, BORN_1950),
    ],
)
def test_true_statements_verify_on_chain(
    ledger: Ledger,
    world: dict[str, crypto.KeyPair],
    criterion: str,
    quantity: str,
    unit: str,
    scale: int,
    value: int,
) -> None:
    k = world
    between = {"criterion_id": "prediabetes", "quantity": m.HBA1C, "unit": "%", "scale": 1}
    ok(
        zk(
            ledger,
            k["inspector"],
            "set_criterion",
            between | {"op": "between", "threshold": 57, "upper": 64},
        )
    )
    attested, opening = attest(
        ledger, k["tech"], "att-1", k["patient"], value, quantity, unit, scale
    )
    ok(attested)
    ok(challenge(ledger, k["ins_admin"], "ch-1", criterion, k["patient"]))
    proofs = make_proofs(ledger, "ch-1", "att-1", opening)
    assert len(proofs) == (2 if criterion == "prediabetes" else 1)
    assert all(len(p) <= m.MAX_PROOF_BYTES for p in proofs)
    result = ok(prove(ledger, k["patient"], "ch-1", "att-1", proofs))
    record = m.proven(ledger.state, "ch-1")
    assert record is not None
    assert record["criterion_id"] == criterion
    assert record["patient"] == did_of(k["patient"])
    assert (record["verifier"], record["verifier_org"]) == (did_of(k["ins_admin"]), "ins-a")
    assert record["attestation_id"] == "att-1" and record["lab_org"] == "lab-a"
    assert record["attested_ms"] == ledger.state(m.attestation_key("att-1"))["time_ms"]
    assert record["proof_hashes"] == [crypto.sm3(p) for p in proofs]
    [event] = [e for e in result.events if e.type == "zk.proven"]
    assert dict(event.attributes)["actor"] == did_of(k["patient"])
    no_value_anywhere(ledger, result, value)
    att = ledger.state(m.attestation_key("att-1"))
    assert att["content_hash"] == crypto.sm3(b"obs-att-1")  # bound to the record's content


def test_a_hospital_and_a_researcher_may_challenge_too(ledger: Ledger, world: Any) -> None:
    k = world
    ok(challenge(ledger, k["doctor"], "ch-h", "diabetes-hba1c", k["patient"]))
    assert ledger.state(m.challenge_key("ch-h"))["verifier_org"] == "hosp-a"
    for who in ("tech", "pharm_admin", "patient", "inspector"):
        refused = challenge(ledger, k[who], f"ch-{who}", "diabetes-hba1c", k["patient"])
        assert refused.code == Code.UNAUTHORIZED, who


# -- soundness ---------------------------------------------------------------


def test_a_value_below_the_threshold_cannot_be_proven(ledger: Ledger, world: Any) -> None:
    """The prover learns at once it cannot prove a false statement; a true proof of a
    weaker threshold is refused for the criterion's, and the challenge stays open."""
    k = world
    attested, opening = attest(ledger, k["tech"], "att-low", k["patient"], 62)  # 6.2 % < 6.5 %
    ok(attested)
    ok(challenge(ledger, k["ins_admin"], "ch-1", "diabetes-hba1c", k["patient"]))
    with pytest.raises(rangeproof.ProofError):
        make_proofs(ledger, "ch-1", "att-low", opening)
    ctx = m.proof_context(
        ledger.chain_id,
        ledger.state(m.challenge_key("ch-1")),
        ledger.state(m.attestation_key("att-low")),
    )
    weaker = rangeproof.prove_threshold(62, opening.blinding, "ge", 60, ctx)  # true, but not 65
    refused = prove(ledger, k["patient"], "ch-1", "att-low", [weaker])
    assert refused.code == Code.INVALID_PROOF, refused.log
    assert "62" not in refused.log
    assert m.proven(ledger.state, "ch-1") is None
    attested, good = attest(ledger, k["tech"], "att-high", k["patient"], 71)
    ok(attested)
    proofs = make_proofs(ledger, "ch-1", "att-high", good)
    ok(prove(ledger, k["patient"], "ch-1", "att-high", proofs))


def test_a_proof_for_another_patient_or_commitment_is_refused(ledger: Ledger, world: Any) -> None:
    k = world
    ok((r := attest(ledger, k["tech"], "att-p", k["patient"], 71))[0])
    opening = r[1]
    ok((o := attest(ledger, k["tech"], "att-o", k["other"], 80))[0])
    ok(challenge(ledger, k["ins_admin"], "ch-p", "diabetes-hba1c", k["patient"]))
    ok(challenge(ledger, k["ins_admin"], "ch-o", "diabetes-hba1c", k["other"]))
    proofs = make_proofs(ledger, "ch-p", "att-p", opening)
    # Someone else answers the patient's challenge with the patient's own proof.
    assert prove(ledger, k["other"], "ch-p", "att-p", proofs).code == Code.UNAUTHORIZED
    # The other patient answers their challenge with the patient's attestation.
    stolen = prove(ledger, k["other"], "ch-o", "att-p", proofs)
    assert stolen.code == Code.NOT_FOUND, stolen.log
    # The patient's proof, claimed to be about the other patient's commitment.
    mixed = prove(ledger, k["other"], "ch-o", "att-o", proofs)
    assert mixed.code == Code.INVALID_PROOF, mixed.log
    # A second attestation of the same patient: a proof about one is not about the other.
    ok((second := attest(ledger, k["tech"], "att-p2", k["patient"], 90))[0])
    other_commitment = make_proofs(ledger, "ch-p", "att-p2", second[1])
    swapped = prove(ledger, k["patient"], "ch-p", "att-p", other_commitment)
    assert swapped.code == Code.INVALID_PROOF, swapped.log
    ok(prove(ledger, k["patient"], "ch-p", "att-p", proofs))
    ok(prove(ledger, k["other"], "ch-o", "att-o", make_proofs(ledger, "ch-o", "att-o", o[1])))


def test_a_stranger_cannot_tell_a_missing_challenge_from_anothers(
    ledger: Ledger, world: Any
) -> None:
    """Answering someone else's challenge and answering none get the same refusal, so
    `prove` is no oracle for which challenge ids exist (ids may name a patient)."""
    k = world
    ok(challenge(ledger, k["ins_admin"], "ch-p", "diabetes-hba1c", k["patient"]))
    payload = {"attestation_id": "att-x", "proofs": [bytes(rangeproof.proof_size())]}
    theirs = zk(ledger, k["other"], "prove", payload | {"challenge_id": "ch-p"})
    missing = zk(ledger, k["other"], "prove", payload | {"challenge_id": "ch-none"})
    assert theirs.code == missing.code == Code.UNAUTHORIZED, (theirs.log, missing.log)
    assert theirs.log.replace("ch-p", "ch-none") == missing.log


def test_only_an_accredited_lab_may_attest(ledger: Ledger, world: Any) -> None:
    k = world
    refused, _ = attest(ledger, k["tech_b"], "att-b", k["patient"], 71)
    assert refused.code == Code.UNAUTHORIZED and "accreditation" in refused.log
    ok(accredit(ledger, k["inspector"], "lab-b", [m.EGFR]))
    wrong_quantity, _ = attest(ledger, k["tech_b"], "att-b2", k["patient"], 71)
    assert wrong_quantity.code == Code.UNAUTHORIZED and m.HBA1C in wrong_quantity.log
    assert accredit(ledger, k["lab_admin"], "lab-b", [m.HBA1C]).code == Code.UNAUTHORIZED
    assert accredit(ledger, k["inspector"], "pharm-a", [m.HBA1C]).code == Code.INVALID_STATE
    assert accredit(ledger, k["inspector"], "ins-a", [m.HBA1C]).code == Code.INVALID_STATE
    # Not staff that measures: the lab's admin, and the hospital's doctor of an unaccredited org.
    assert attest(ledger, k["lab_admin"], "att-x", k["patient"], 71)[0].code == Code.UNAUTHORIZED


def test_an_attestation_needs_the_patients_active_record_at_that_lab(
    ledger: Ledger, world: Any
) -> None:
    k = world
    ok(accredit(ledger, k["inspector"], "hosp-a", [m.HBA1C]))
    register_record(ledger, k["doctor"], "obs-hosp", k["patient"])
    elsewhere, _ = attest(ledger, k["tech"], "att-1", k["patient"], 71, record_id="obs-hosp")
    assert elsewhere.code == Code.UNAUTHORIZED  # lab-a does not hold that record
    register_record(ledger, k["tech"], "obs-other", k["other"])
    wrong_patient, _ = attest(ledger, k["tech"], "att-2", k["patient"], 71, record_id="obs-other")
    assert wrong_patient.code == Code.UNAUTHORIZED
    missing, _ = attest(ledger, k["tech"], "att-3", k["patient"], 71, record_id="nope")
    assert missing.code == Code.NOT_FOUND
    ok(attest(ledger, k["doctor"], "att-4", k["patient"], 71, record_id="obs-hosp")[0])
    again, _ = attest(ledger, k["doctor"], "att-4", k["patient"], 72, record_id="obs-hosp")
    assert again.code == Code.ALREADY_EXISTS


@pytest.mark.parametrize("how", ["withdrawn", "expired"])
def test_proofs_from_a_lab_no_longer_accredited_are_refused(
    ledger: Ledger, world: Any, how: str
) -> None:
    k = world
    ok(accredit(ledger, k["inspector"], "lab-b", [m.HBA1C], days=1))
    attested, opening = attest(ledger, k["tech_b"], "att-b", k["patient"], 71)
    ok(attested)
    ok(challenge(ledger, k["ins_admin"], "ch-1", "diabetes-hba1c", k["patient"], days=30))
    proofs = make_proofs(ledger, "ch-1", "att-b", opening)
    if how == "withdrawn":
        assert zk(ledger, k["tech"], "withdraw", {"org_id": "lab-b"}).code == Code.UNAUTHORIZED
        ok(zk(ledger, k["inspector"], "withdraw", {"org_id": "lab-b"}))
        assert ledger.state(m.accreditation_key("lab-b"))["status"] == m.WITHDRAWN
    else:
        block_time = ledger.app.db.block_time_ms()
        while ledger.app.db.block_time_ms() < block_time + DAY_MS:
            _skip_day(ledger)
        proofs = make_proofs(ledger, "ch-1", "att-b", opening)
    refused = prove(ledger, k["patient"], "ch-1", "att-b", proofs)
    assert refused.code == Code.INVALID_STATE and "lab-b" in refused.log, refused.log
    assert m.proven(ledger.state, "ch-1") is None
    assert attest(ledger, k["tech_b"], "att-b2", k["patient"], 71)[0].code == Code.UNAUTHORIZED


def test_a_withdrawal_outlives_a_later_reaccreditation(ledger: Ledger, world: Any) -> None:
    """A lab withdrawn (say, for false results) and accredited again later must not
    bring its earlier attestations back to life; what it attests afterwards counts,
    and a plain renewal of an active accreditation keeps its attestations."""
    k = world
    ok(accredit(ledger, k["inspector"], "lab-b", [m.HBA1C]))
    attested, before = attest(ledger, k["tech_b"], "att-old", k["patient"], 71)
    ok(attested)
    ok(zk(ledger, k["inspector"], "withdraw", {"org_id": "lab-b"}))
    ok(accredit(ledger, k["inspector"], "lab-b", [m.HBA1C]))
    ok(challenge(ledger, k["ins_admin"], "ch-1", "diabetes-hba1c", k["patient"]))
    revived = prove(
        ledger, k["patient"], "ch-1", "att-old", make_proofs(ledger, "ch-1", "att-old", before)
    )
    assert revived.code == Code.INVALID_STATE and "withdraw" in revived.log, revived.log
    assert m.proven(ledger.state, "ch-1") is None
    attested, after = attest(ledger, k["tech_b"], "att-new", k["patient"], 71)
    ok(attested)
    ok(accredit(ledger, k["inspector"], "lab-b", [m.HBA1C], days=700))  # a renewal
    ok(
        prove(
            ledger, k["patient"], "ch-1", "att-new", make_proofs(ledger, "ch-1", "att-new", after)
        )
    )


def _skip_day(ledger: Ledger) -> None:
    """Commit an empty block a day after the last one (block time is the block's)."""
    from medchain.core.block import Block

    db = ledger.app.db
    block = Block(
        ledger.chain_id, db.height + 1, db.block_time_ms() + DAY_MS, (), db.last_block_hash
    )
    ledger.app.commit(ledger.app.finalize_block(block))


def test_a_challenge_is_answered_once_and_an_old_proof_fits_no_new_one(
    ledger: Ledger, world: Any
) -> None:
    k = world
    attested, opening = attest(ledger, k["tech"], "att-1", k["patient"], 71)
    ok(attested)
    ok(challenge(ledger, k["ins_admin"], "ch-1", "diabetes-hba1c", k["patient"]))
    proofs = make_proofs(ledger, "ch-1", "att-1", opening)
    ok(prove(ledger, k["patient"], "ch-1", "att-1", proofs))
    first = m.proven(ledger.state, "ch-1")
    replay = prove(ledger, k["patient"], "ch-1", "att-1", proofs)
    assert replay.code == Code.ALREADY_EXISTS, replay.log
    assert m.proven(ledger.state, "ch-1") == first
    ok(challenge(ledger, k["ins_admin"], "ch-2", "diabetes-hba1c", k["patient"]))
    old = prove(ledger, k["patient"], "ch-2", "att-1", proofs)
    assert old.code == Code.INVALID_PROOF, old.log
    assert (
        ledger.state(m.challenge_key("ch-1"))["nonce"]
        != ledger.state(m.challenge_key("ch-2"))["nonce"]
    )
    ok(prove(ledger, k["patient"], "ch-2", "att-1", make_proofs(ledger, "ch-2", "att-1", opening)))


def test_an_expired_challenge_cannot_be_answered(ledger: Ledger, world: Any) -> None:
    k = world
    attested, opening = attest(ledger, k["tech"], "att-1", k["patient"], 71)
    ok(attested)
    ok(challenge(ledger, k["ins_admin"], "ch-1", "diabetes-hba1c", k["patient"], days=1))
    _skip_day(ledger)
    proofs = make_proofs(ledger, "ch-1", "att-1", opening)
    expired = prove(ledger, k["patient"], "ch-1", "att-1", proofs)
    assert expired.code == Code.INVALID_STATE and "expired" in expired.log


@pytest.mark.parametrize("where", [0, 1, 100, 400, -1])
def test_a_tampered_proof_byte_is_refused(ledger: Ledger, world: Any, where: int) -> None:
    k = world
    attested, opening = attest(ledger, k["tech"], "att-1", k["patient"], 71)
    ok(attested)
    ok(challenge(ledger, k["ins_admin"], "ch-1", "diabetes-hba1c", k["patient"]))
    [proof] = make_proofs(ledger, "ch-1", "att-1", opening)
    tampered = bytearray(proof)
    tampered[where] ^= 0x01
    refused = prove(ledger, k["patient"], "ch-1", "att-1", [bytes(tampered)])
    assert refused.code == Code.INVALID_PROOF, refused.log
    assert m.proven(ledger.state, "ch-1") is None
    ok(prove(ledger, k["patient"], "ch-1", "att-1", [proof]))


def test_oversized_or_miscounted_proofs_are_refused_before_any_curve_work(
    ledger: Ledger, world: Any
) -> None:
    k = world
    attested, opening = attest(ledger, k["tech"], "att-1", k["patient"], 71)
    ok(attested)
    ok(challenge(ledger, k["ins_admin"], "ch-1", "diabetes-hba1c", k["patient"]))
    [proof] = make_proofs(ledger, "ch-1", "att-1", opening)
    big = prove(ledger, k["patient"], "ch-1", "att-1", [proof + bytes(m.MAX_PROOF_BYTES)])
    assert big.code == Code.INVALID_PAYLOAD and "2048" in big.log
    two = prove(ledger, k["patient"], "ch-1", "att-1", [proof, proof])
    assert two.code == Code.INVALID_PAYLOAD and "needs 1 proof" in two.log


def test_an_attestation_of_another_quantity_proves_nothing(ledger: Ledger, world: Any) -> None:
    k = world
    attested, opening = attest(
        ledger, k["tech"], "att-egfr", k["patient"], 71, m.EGFR, "mL/min/{1.73_m2}", 0
    )
    ok(attested)
    ok(challenge(ledger, k["ins_admin"], "ch-1", "diabetes-hba1c", k["patient"]))
    ctx = m.proof_context(
        ledger.chain_id,
        ledger.state(m.challenge_key("ch-1")),
        ledger.state(m.attestation_key("att-egfr")),
    )
    proof = rangeproof.prove_threshold(71, opening.blinding, "ge", 65, ctx)
    refused = prove(ledger, k["patient"], "ch-1", "att-egfr", [proof])
    assert refused.code == Code.INVALID_STATE and m.HBA1C in refused.log


# -- governance --------------------------------------------------------------


def test_criteria_are_governed_data(ledger: Ledger, world: Any) -> None:
    k = world
    assert {
        c: ledger.state(m.criterion_key(c))["op"] for c in ("diabetes-hba1c", "ckd-egfr", "age-65")
    } == {
        "diabetes-hba1c": "ge",
        "ckd-egfr": "le",
        "age-65": "ge",
    }
    stricter = {
        "criterion_id": "diabetes-hba1c", "quantity": m.HBA1C, "unit": "%", "scale": 1,
        "op": "ge", "threshold": 70,
    }  # fmt: skip
    assert zk(ledger, k["doctor"], "set_criterion", stricter).code == Code.UNAUTHORIZED
    ok(zk(ledger, k["inspector"], "set_criterion", stricter))
    ok(zk(ledger, k["inspector"], "set_defaults", {}))  # never overwrites a governed one
    assert ledger.state(m.criterion_key("diabetes-hba1c"))["threshold"] == 70
    bad = stricter | {"op": "between"}
    assert zk(ledger, k["inspector"], "set_criterion", bad).code == Code.INVALID_PAYLOAD
    age_in_days = stricter | {"quantity": m.BIRTH_DATE, "unit": "d", "scale": 0}
    assert zk(ledger, k["inspector"], "set_criterion", age_in_days).code == Code.INVALID_PAYLOAD


def test_an_open_challenge_keeps_its_criterion(ledger: Ledger, world: Any) -> None:
    """Governance tightening a criterion does not move the goalposts of a posted challenge."""
    k = world
    attested, opening = attest(ledger, k["tech"], "att-1", k["patient"], 68)
    ok(attested)
    ok(challenge(ledger, k["ins_admin"], "ch-1", "diabetes-hba1c", k["patient"]))
    stricter = {
        "criterion_id": "diabetes-hba1c", "quantity": m.HBA1C, "unit": "%", "scale": 1,
        "op": "ge", "threshold": 70,
    }  # fmt: skip
    ok(zk(ledger, k["inspector"], "set_criterion", stricter))
    ok(prove(ledger, k["patient"], "ch-1", "att-1", make_proofs(ledger, "ch-1", "att-1", opening)))
    ok(challenge(ledger, k["ins_admin"], "ch-2", "diabetes-hba1c", k["patient"]))
    with pytest.raises(rangeproof.ProofError):
        make_proofs(ledger, "ch-2", "att-1", opening)


# -- the pure rules ----------------------------------------------------------


def test_age_thresholds_come_from_the_block_date() -> None:
    """65 on the block's date means born on or before that date 65 years back; the
    day after is not yet 65. 29 February falls back to 28 February."""
    block = m.DAY_MS * (date(2024, 6, 15) - date(1970, 1, 1)).days + 3_600_000
    criterion: m.Criterion = {
        "criterion_id": "age-65", "quantity": m.BIRTH_DATE, "unit": "a", "scale": 0,
        "op": "ge", "threshold": 65, "set_by": "", "height": 0,
    }  # fmt: skip
    [(op, limit)] = m.statements(criterion, block)
    assert (op, limit) == ("le", (date(1959, 6, 15) - date(1900, 1, 1)).days)
    under_70 = criterion | {"op": "le", "threshold": 69}
    [(op, limit)] = m.statements(under_70, block)  # type: ignore[arg-type]
    assert (op, limit) == ("ge", (date(1954, 6, 16) - date(1900, 1, 1)).days)  # 70 tomorrow is 69
    leap = m.DAY_MS * (date(2024, 2, 29) - date(1970, 1, 1)).days
    assert m.born_by(leap, 65) == (date(1959, 2, 28) - date(1900, 1, 1)).days


def test_payloads_are_checked_before_state() -> None:
    with pytest.raises(InvalidTransaction) as e:
        decode_payload(
            {
                "attestation_id": "a-1",
                "patient": "did:x",
                "record_id": "r",
                "quantity": m.HBA1C,
                "unit": "%",
                "scale": 1,
                "commitment": b"\x04" + bytes(32),
            },
            AttestPayload,
        )
    assert "compressed point" in e.value.message
    with pytest.raises(InvalidTransaction):
        decode_payload(
            {
                "criterion_id": "x-1",
                "quantity": "4548-4",
                "unit": "%",
                "scale": 1,
                "op": "gt",
                "threshold": 1,
            },
            SetCriterionPayload,
        )


def test_the_integer_calendar_agrees_with_datetime() -> None:
    """Contracts may not import datetime, so the calendar is integer arithmetic; it must
    name the same dates as the standard library, leap years and centuries included."""
    epoch = date(1970, 1, 1)
    for days in range(-30_000, 60_000, 7):
        day = date.fromordinal(epoch.toordinal() + days)
        assert m.civil_from_days(days) == (day.year, day.month, day.day)
        assert m.days_from_civil(day.year, day.month, day.day) == days
