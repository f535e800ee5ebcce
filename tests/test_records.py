"""Records contract with a real vault: the chain holds ids, hashes and locations only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.ledger import DATA, Ledger, did_of
from support.stateless import apply_without_state

from medchain import crypto
from medchain.contracts.records import RecordsHandler
from medchain.contracts.records.model import MAX_ANCHORED_ENTRIES, record_key
from medchain.edge.vault import Vault, content_hash
from medchain.exceptions import Code, InvalidTransaction

OBSERVATION = (DATA / "fhir" / "spec-examples" / "Observation-f001.json").read_bytes()


@pytest.fixture
def world(ledger: Ledger, tmp_path: Path) -> dict[str, Any]:
    k = {
        n: crypto.generate_keypair()
        for n in ("a_admin", "b_admin", "doctor_a", "doctor_b", "patient", "other_patient")
    }
    ledger.add_org("hosp-a", k["a_admin"])
    ledger.add_org("hosp-b", k["b_admin"])
    ledger.add_staff(k["a_admin"], "hosp-a", k["doctor_a"], ["doctor"])
    ledger.add_staff(k["b_admin"], "hosp-b", k["doctor_b"], ["doctor"])
    ledger.add_patient(k["patient"])
    ledger.add_patient(k["other_patient"])
    return {"keys": k, "vault": Vault(tmp_path / "vault-a", crypto.generate_keypair())}


def register(
    ledger: Ledger,
    world: dict[str, Any],
    signer: str = "doctor_a",
    record_id: str = "obs-1",
    patient: str = "patient",
    **overrides: Any,
) -> Code:
    k = world["keys"]
    stored = world["vault"].store(record_id, OBSERVATION, k[patient].public)
    payload = {
        "record_id": record_id,
        "patient": did_of(k[patient]),
        "resource_type": "Observation",
        "cid": stored.cid,
        "content_hash": stored.content_hash,
        **overrides,
    }
    return ledger.run(k[signer], "register", payload, contract="records").code


def test_custodian_registers_a_vaulted_record(ledger: Ledger, world: dict[str, Any]) -> None:
    assert register(ledger, world) == Code.OK
    record = ledger.state("records/record/obs-1")
    vault = world["vault"]
    assert record["cid"] == vault.cid("obs-1") and record["custodian"] == "hosp-a"
    assert record["patient"] == did_of(world["keys"]["patient"])
    salt = vault.salt("obs-1")
    assert record["content_hash"] == content_hash(salt, OBSERVATION)
    assert OBSERVATION[:40] not in repr(record).encode()
    index = ledger.app.db.scan(f"records/by-patient/{record['patient']}/", 10)
    assert [k.rsplit("/", 1)[1] for k, _ in index] == ["obs-1"]


@pytest.mark.parametrize(
    ("signer", "patient", "overrides", "expected"),
    [
        ("patient", "patient", {}, Code.UNAUTHORIZED),
        ("doctor_b", "patient", {}, Code.OK),  # any hospital may be a custodian
        ("doctor_a", "doctor_b", {}, Code.NOT_FOUND),  # not a patient
        ("doctor_a", "patient", {"resource_type": "Spaceship"}, Code.INVALID_PAYLOAD),
        ("doctor_a", "patient", {"cid": "QmNotACid"}, Code.INVALID_PAYLOAD),
        ("doctor_a", "patient", {"content_hash": b"short"}, Code.INVALID_PAYLOAD),
        ("doctor_a", "patient", {"extra": 1}, Code.INVALID_PAYLOAD),
    ],
)
def test_who_may_register_what(
    ledger: Ledger,
    world: dict[str, Any],
    signer: str,
    patient: str,
    overrides: dict[str, Any],
    expected: Code,
) -> None:
    assert register(ledger, world, signer, patient=patient, **overrides) == expected


def test_duplicate_record_id_is_rejected(ledger: Ledger, world: dict[str, Any]) -> None:
    assert register(ledger, world, record_id="obs-1") == Code.OK
    k = world["keys"]
    r = ledger.run(
        k["doctor_a"],
        "register",
        {
            "record_id": "obs-1",
            "patient": did_of(k["patient"]),
            "resource_type": "Observation",
            "cid": world["vault"].cid("obs-1"),
            "content_hash": bytes(32),
        },
        contract="records",
    )
    assert r.code == Code.ALREADY_EXISTS


def test_supersede_links_versions_and_only_the_custodian_may(
    ledger: Ledger, world: dict[str, Any]
) -> None:
    assert register(ledger, world) == Code.OK
    k, vault = world["keys"], world["vault"]
    v2 = vault.store("obs-1-v2", OBSERVATION + b" ", k["patient"].public)
    payload = {
        "record_id": "obs-1",
        "new_record_id": "obs-1-v2",
        "resource_type": "Observation",
        "cid": v2.cid,
        "content_hash": v2.content_hash,
    }
    assert ledger.run(k["doctor_b"], "supersede", payload, "records").code == Code.UNAUTHORIZED
    assert ledger.run(k["doctor_a"], "supersede", payload, "records").code == Code.OK
    old, new = ledger.state("records/record/obs-1"), ledger.state("records/record/obs-1-v2")
    assert (old["status"], old["superseded_by"], new["supersedes"]) == (
        "superseded",
        "obs-1-v2",
        "obs-1",
    )
    again = {**payload, "new_record_id": "obs-1-v3"}
    assert ledger.run(k["doctor_a"], "supersede", again, "records").code == Code.INVALID_STATE


@pytest.mark.parametrize(
    ("signer", "expected"),
    [
        ("patient", Code.OK),
        ("a_admin", Code.OK),
        ("doctor_a", Code.UNAUTHORIZED),
        ("b_admin", Code.UNAUTHORIZED),
        ("other_patient", Code.UNAUTHORIZED),
    ],
)
def test_who_may_erase(ledger: Ledger, world: dict[str, Any], signer: str, expected: Code) -> None:
    assert register(ledger, world) == Code.OK
    r = ledger.run(world["keys"][signer], "erase", {"record_id": "obs-1"}, "records")
    assert r.code == expected
    if expected == Code.OK:
        tomb = ledger.state("records/record/obs-1")
        assert tomb["status"] == "erased" and tomb["cid"] is None
        assert (
            r.events[0].type,
            dict(r.events[0].attributes)["record_id"],
        ) == ("records.erased", "obs-1")


def test_erasure_end_to_end_leaves_nothing_decryptable(
    ledger: Ledger, world: dict[str, Any]
) -> None:
    from medchain.edge.vault import RecordNotFound, verify_purge_receipt

    assert register(ledger, world) == Code.OK
    k, vault = world["keys"], world["vault"]
    r = ledger.run(k["patient"], "erase", {"record_id": "obs-1", "reason": "my right"}, "records")
    assert r.code == Code.OK
    receipt = vault.erase("obs-1")  # the custodian's edge acts on the erased event
    assert verify_purge_receipt(receipt, vault.custodian.public)
    with pytest.raises(RecordNotFound):
        vault.wrapped_key("obs-1", k["patient"].public)
    assert (
        ledger.run(k["patient"], "erase", {"record_id": "obs-1"}, "records").code
        == Code.INVALID_STATE
    )


def test_erasure_keeps_its_reason_on_the_tombstone(ledger: Ledger, world: dict[str, Any]) -> None:
    assert register(ledger, world) == Code.OK
    assert register(ledger, world, record_id="obs-2") == Code.OK
    k = world["keys"]
    payload = {"record_id": "obs-1", "reason": "no longer my doctor"}
    assert ledger.run(k["patient"], "erase", payload, "records").code == Code.OK
    assert ledger.state(record_key("obs-1"))["erase_reason"] == "no longer my doctor"
    assert ledger.run(k["patient"], "erase", {"record_id": "obs-2"}, "records").code == Code.OK
    assert "erase_reason" not in ledger.state(record_key("obs-2"))


def test_an_erasure_reason_too_long_to_store_is_refused(
    ledger: Ledger, world: dict[str, Any]
) -> None:
    assert register(ledger, world) == Code.OK
    payload = {"record_id": "obs-1", "reason": "x" * 501}
    refused = ledger.run(world["keys"]["patient"], "erase", payload, "records")
    assert refused.code == Code.INVALID_PAYLOAD
    assert ledger.state(record_key("obs-1"))["status"] == "active"


SM3_ZERO = bytes(32)
CID = "b" + "a" * 40
VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "register": {
        "record_id": "obs-1",
        "patient": "did:medchain:p",
        "resource_type": "Observation",
        "cid": CID,
        "content_hash": SM3_ZERO,
    },
    "supersede": {
        "record_id": "obs-1",
        "new_record_id": "obs-2",
        "resource_type": "Observation",
        "cid": CID,
        "content_hash": SM3_ZERO,
    },
    "erase": {"record_id": "obs-1", "reason": "my right"},
    "anchor_log": {"first_seq": 1, "last_seq": 2, "root": SM3_ZERO},
}
WRONG_TYPES = {"register": "content_hash", "supersede": "cid", "erase": "reason"}


def malformed(action: str) -> list[dict[str, Any]]:
    """A payload missing a field, one with an extra field, one with a wrong type."""
    valid = VALID_PAYLOADS[action]
    first = next(iter(valid))
    wrong = WRONG_TYPES.get(action, "first_seq")
    return [
        {k: v for k, v in valid.items() if k != first},
        {**valid, "extra": 1},
        {**valid, wrong: True},
    ]


@pytest.mark.parametrize("action", sorted(VALID_PAYLOADS))
def test_malformed_payloads_are_refused_before_any_state_read(action: str) -> None:
    for payload in malformed(action):
        with pytest.raises(InvalidTransaction) as refused:
            apply_without_state(RecordsHandler(), action, payload)
        assert refused.value.code == Code.INVALID_PAYLOAD, payload
    with pytest.raises(AssertionError, match="state read"):  # well formed: on to state
        apply_without_state(RecordsHandler(), action, VALID_PAYLOADS[action])


@pytest.mark.parametrize(
    "change",
    [
        {"record_id": "obs-1\n"},  # a trailing newline is not part of an id
        {"record_id": "-obs"},
        {"cid": CID.upper()},
        {"content_hash": bytes(33)},
        {"resource_type": "Spaceship"},
        {"exam_code": None},  # absent is fine, null is not
        {"exam_code": "http://loinc.org|4548-4"},  # without performed_ms
        {"performed_ms": 1},  # without exam_code
        {"carried_types": ["Observation", "Condition"]},  # unsorted
        {"carried_types": ["Condition", "Condition"]},
        {"carried_types": []},
        {"carried_types": ["Specimen"]},  # no role policy governs it
        {"derived_from": {"mapping_id": "hl7v2", "mapping_hash": SM3_ZERO}},
        {"derived_from": {"mapping_id": "HL7", "mapping_hash": SM3_ZERO, "input_hash": SM3_ZERO}},
    ],
)
def test_register_payload_rules_hold_before_any_state_read(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidTransaction) as refused:
        apply_without_state(RecordsHandler(), "register", {**VALID_PAYLOADS["register"], **change})
    assert refused.value.code == Code.INVALID_PAYLOAD


@pytest.mark.parametrize(("first_seq", "last_seq"), [(0, 1), (3, 2), (1, MAX_ANCHORED_ENTRIES + 1)])
def test_anchor_runs_are_checked_before_any_state_read(first_seq: int, last_seq: int) -> None:
    payload = {"first_seq": first_seq, "last_seq": last_seq, "root": SM3_ZERO}
    with pytest.raises(InvalidTransaction) as refused:
        apply_without_state(RecordsHandler(), "anchor_log", payload)
    assert refused.value.code == Code.INVALID_PAYLOAD
