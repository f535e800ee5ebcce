"""records.register_batch: many records of one patient in one tx under a Merkle root.

Each batch-registered record must get the state `records.register` gives (so
consent, exchange, erasure, supersede and queries treat it alike) plus its
batch's root and leaf index; the batch's leaves stay on chain, so any record's
registration is provable by its SM3 path to the root.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from support.ledger import Ledger, did_of

from medchain import crypto
from medchain.contracts.records.model import (
    MAX_BATCH_RECORDS,
    batch_entry_of,
    batch_key,
    batch_leaf,
    batch_root,
    patient_index_prefix,
    record_key,
)
from medchain.core.merkle import merkle_path, root_from_path
from medchain.edge.cid import cid_of
from medchain.exceptions import Code


@pytest.fixture
def keys(ledger: Ledger) -> dict[str, crypto.KeyPair]:
    k = {
        n: crypto.generate_keypair()
        for n in ("a_admin", "doctor_a", "researcher_a", "patient", "other_patient")
    }
    ledger.add_org("hosp-a", k["a_admin"])
    ledger.add_staff(k["a_admin"], "hosp-a", k["doctor_a"], ["doctor"])
    ledger.add_staff(k["a_admin"], "hosp-a", k["researcher_a"], ["researcher"])
    ledger.add_patient(k["patient"])
    ledger.add_patient(k["other_patient"])
    return k


def entry(record_id: str, resource_type: str = "Observation", **extra: Any) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "resource_type": resource_type,
        "cid": cid_of(os.urandom(64)),
        "content_hash": crypto.sm3(os.urandom(32)),
        **extra,
    }


def batch(patient: str, entries: list[dict[str, Any]], root: bytes | None = None) -> dict[str, Any]:
    return {
        "patient": patient,
        "root": batch_root(patient, entries) if root is None else root,
        "records": entries,
    }


def run_batch(
    ledger: Ledger, signer: crypto.KeyPair, payload: dict[str, Any]
) -> tuple[Code, str, list[dict[str, Any]]]:
    result = ledger.run(signer, "register_batch", payload, contract="records")
    return Code(result.code), result.log, [e.to_dict() for e in result.events]


def test_each_record_of_a_batch_gets_the_state_register_gives(
    ledger: Ledger, keys: dict[str, crypto.KeyPair]
) -> None:
    patient = did_of(keys["patient"])
    exam = {"exam_code": "http://loinc.org|24725-4", "performed_ms": 1_600_000_000_000}
    derived = {"mapping_id": "hl7v2/oru-r01", "mapping_hash": bytes(32), "input_hash": bytes(32)}
    entries = [
        entry("b-1"),
        entry("b-2", "DiagnosticReport", **exam),
        entry("b-3", "MedicationRequest", derived_from=derived, carried_types=["Condition"]),
    ]
    single = entry("single-1")
    code, log, events = run_batch(ledger, keys["doctor_a"], batch(patient, entries))
    assert code == Code.OK, log
    reg = ledger.run(keys["doctor_a"], "register", {"patient": patient, **single}, "records")
    assert reg.code == Code.OK

    by_register = ledger.state(record_key("single-1"))
    for i, e in enumerate(entries):
        record = ledger.state(record_key(e["record_id"]))
        assert record.pop("batch_root") == batch_root(patient, entries)
        assert record.pop("batch_index") == i
        for name in e:  # every field the entry carried is stored as register stores it
            assert record[name] == e[name]
        same = {
            k for k in by_register if k not in e and k not in ("created_height", "created_time_ms")
        }
        assert {k: record[k] for k in same} == {k: by_register[k] for k in same}
        assert set(record) - set(e) == set(by_register) - set(single)
    index = ledger.app.db.scan(patient_index_prefix(patient), 10)
    assert sorted(k.rsplit("/", 1)[1] for k, _ in index) == ["b-1", "b-2", "b-3", "single-1"]
    registered = [e["attributes"] for e in events if e["type"] == "records.registered"]
    assert [a["record_id"] for a in registered] == ["b-1", "b-2", "b-3"]
    assert {a["custodian"] for a in registered} == {"hosp-a"}
    (anchor_event,) = [e["attributes"] for e in events if e["type"] == "records.batch_registered"]
    assert anchor_event["count"] == "3" and anchor_event["patient"] == patient


def test_every_record_is_provable_by_its_path_to_the_root_on_chain(
    ledger: Ledger, keys: dict[str, crypto.KeyPair]
) -> None:
    patient = did_of(keys["patient"])
    entries = [entry(f"p-{i}") for i in range(7)]  # an odd count: a node carried up
    code, log, _ = run_batch(ledger, keys["doctor_a"], batch(patient, entries))
    assert code == Code.OK, log
    anchor = ledger.state(batch_key(batch_root(patient, entries)))
    assert anchor["custodian"] == "hosp-a" and anchor["patient"] == patient
    assert anchor["registered_by"] == did_of(keys["doctor_a"])
    for e in entries:
        record = ledger.state(record_key(e["record_id"]))
        leaf = batch_leaf(record["patient"], batch_entry_of(record))
        assert leaf == anchor["leaves"][record["batch_index"]]
        path = merkle_path(anchor["leaves"], record["batch_index"])
        assert root_from_path(leaf, path) == anchor["root"] == record["batch_root"]
    # A changed field, or the same record claimed for another patient, proves nothing.
    record = ledger.state(record_key("p-3"))
    path = merkle_path(anchor["leaves"], 3)
    forged = {**batch_entry_of(record), "resource_type": "Condition"}
    assert root_from_path(batch_leaf(patient, forged), path) != anchor["root"]
    other = did_of(keys["other_patient"])
    assert root_from_path(batch_leaf(other, batch_entry_of(record)), path) != anchor["root"]


def test_refusals_of_a_batch_write_nothing(ledger: Ledger, keys: dict[str, crypto.KeyPair]) -> None:
    patient = did_of(keys["patient"])
    good = [entry("r-1"), entry("r-2")]
    over = [entry(f"o-{i}") for i in range(MAX_BATCH_RECORDS + 1)]
    twice = [entry("t-1"), entry("t-2"), entry("t-1")]
    future = [entry("f-1"), entry("f-2", exam_code="http://loinc.org|1-8", performed_ms=2**50)]
    other = did_of(keys["other_patient"])
    cases = [
        (keys["patient"], batch(patient, good), Code.UNAUTHORIZED, "clinical staff"),
        (keys["researcher_a"], batch(patient, good), Code.UNAUTHORIZED, "clinical staff"),
        (keys["doctor_a"], batch(patient, over), Code.INVALID_PAYLOAD, "1 to 128"),
        (keys["doctor_a"], batch(patient, []), Code.INVALID_PAYLOAD, "1 to 128"),
        (keys["doctor_a"], batch(patient, twice), Code.INVALID_PAYLOAD, "twice in the batch: t-1"),
        (keys["doctor_a"], batch(patient, good, bytes(32)), Code.INVALID_PAYLOAD, "Merkle root"),
        # the root of the same records for another patient: not this patient's batch
        (
            keys["doctor_a"],
            batch(patient, good, batch_root(other, good)),
            Code.INVALID_PAYLOAD,
            "root",
        ),
        # not a patient at all
        (keys["doctor_a"], batch(did_of(keys["doctor_a"]), good), Code.NOT_FOUND, "patient"),
        (keys["doctor_a"], batch(patient, future), Code.INVALID_PAYLOAD, "performed_ms"),
        (keys["doctor_a"], {**batch(patient, good), "extra": 1}, Code.INVALID_PAYLOAD, "extra"),
    ]
    for signer, payload, expected, says in cases:
        code, log, events = run_batch(ledger, signer, payload)
        assert (code, says in log) == (expected, True), log
        assert events == []
    for e in [*good, *over, *twice, *future]:
        assert ledger.state(record_key(e["record_id"])) is None
    assert list(ledger.app.db.scan(patient_index_prefix(patient), 10)) == []


def test_an_id_that_exists_refuses_the_whole_batch(
    ledger: Ledger, keys: dict[str, crypto.KeyPair]
) -> None:
    patient = did_of(keys["patient"])
    first = entry("dup-1")
    reg = ledger.run(keys["doctor_a"], "register", {"patient": patient, **first}, "records")
    assert reg.code == Code.OK
    entries = [entry("new-1"), entry("dup-1"), entry("new-2")]
    code, log, _ = run_batch(ledger, keys["doctor_a"], batch(patient, entries))
    assert code == Code.ALREADY_EXISTS and "dup-1" in log
    assert ledger.state(record_key("new-1")) is None
    assert ledger.state(record_key("dup-1"))["cid"] == first["cid"]
    code, log, _ = run_batch(ledger, keys["doctor_a"], batch(patient, [entry("new-1")]))
    assert code == Code.OK, log
    again = [entry("new-2"), entry("new-1")]
    code, log, _ = run_batch(ledger, keys["doctor_a"], batch(patient, again))
    assert code == Code.ALREADY_EXISTS and "new-1" in log


def test_batch_records_are_erased_and_superseded_like_single_ones(
    ledger: Ledger, keys: dict[str, crypto.KeyPair]
) -> None:
    patient = did_of(keys["patient"])
    entries = [entry("e-1"), entry("e-2"), entry("e-3")]
    assert run_batch(ledger, keys["doctor_a"], batch(patient, entries))[0] == Code.OK
    erase = ledger.run(keys["patient"], "erase", {"record_id": "e-2"}, "records")
    assert erase.code == Code.OK
    tomb = ledger.state(record_key("e-2"))
    assert (tomb["status"], tomb["cid"]) == ("erased", None)
    with pytest.raises(ValueError, match="erased"):
        batch_entry_of(tomb)
    # Its leaf is still provable from the entry its registration carried.
    anchor = ledger.state(batch_key(batch_root(patient, entries)))
    leaf = batch_leaf(patient, entries[1])
    assert root_from_path(leaf, merkle_path(anchor["leaves"], 1)) == anchor["root"]
    assert ledger.state(record_key("e-1"))["status"] == "active"
    new = entry("e-3-v2")
    supersede = {k: v for k, v in new.items() if k != "record_id"}
    payload = {"record_id": "e-3", "new_record_id": "e-3-v2", **supersede}
    assert ledger.run(keys["doctor_a"], "supersede", payload, "records").code == Code.OK
    assert ledger.state(record_key("e-3"))["status"] == "superseded"
