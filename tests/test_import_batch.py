"""Imports register a patient's records in records.register_batch txs and wrap their
data keys under one shared patient key: every record is still read, released,
proven and erased on its own (issue 15 point 7)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from multiformats import CID, multihash
from support.consortium import Consortium, fetch, running_consortium
from support.ledger import CHAIN_ID, DATA

from medchain import crypto
from medchain.contracts.records.model import (
    RESOURCE_TYPES,
    batch_entry_of,
    batch_key,
    batch_leaf,
    record_key,
)
from medchain.core import proofs
from medchain.core.merkle import merkle_path, root_from_path
from medchain.edge.cid import SM3_MULTIHASH, cid_of, parse_cid
from medchain.edge.custodian import BadRecord
from medchain.edge.importer import import_fhir, record_id_for
from medchain.edge.requester import import_file
from medchain.edge.validation_pool import Job, Refusal, ValidationPool, check_jobs
from medchain.edge.vault import (
    NewRecord,
    RecordNotFound,
    TamperedBlob,
    Vault,
    open_record,
    unwrap_data_key,
)
from medchain.sdk.client import Client, ClientError

SYNTHEA = sorted((DATA / "fhir" / "synthea").glob("*.json"))


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return Vault(tmp_path / "vault", crypto.generate_keypair())


def store_batch(vault: Vault, patient: crypto.KeyPair, n: int, prefix: str = "r") -> list[str]:
    new = [NewRecord(f"{prefix}-{i}", f"record {i}".encode(), patient.public) for i in range(n)]
    vault.store_many(new, share_patient_key=True)
    return [r.record_id for r in new]


def sm2_wraps(vault: Vault) -> int:
    return int(vault._db.execute("SELECT count(*) FROM patient_keys").fetchone()[0])


def test_a_shared_patient_key_costs_one_sm2_wrap_and_opens_each_record(vault: Vault) -> None:
    patient, other = crypto.generate_keypair(), crypto.generate_keypair()
    ids = store_batch(vault, patient, 5)
    assert sm2_wraps(vault) == 1
    for i, record_id in enumerate(ids):
        wrapped = vault.wrapped_key(record_id, patient.public)
        ciphertext = vault.ciphertext(vault.cid(record_id))
        assert open_record(record_id, ciphertext, wrapped, patient) == f"record {i}".encode()
        with pytest.raises(crypto.DecryptionFailed):
            open_record(record_id, ciphertext, wrapped, other)
    # A sealed copy is bound to its record: moved onto another record it opens nothing.
    with pytest.raises(crypto.DecryptionFailed):
        unwrap_data_key(ids[1], vault.wrapped_key(ids[0], patient.public), patient)
    # Another patient's batch never shares that key.
    store_batch(vault, other, 2, prefix="o")
    assert sm2_wraps(vault) == 2


def test_a_grantee_is_released_one_data_key_not_the_shared_key(vault: Vault) -> None:
    patient, doctor = crypto.generate_keypair(), crypto.generate_keypair()
    ids = store_batch(vault, patient, 3)
    released = vault.release_key(ids[1], doctor.public)
    assert open_record(ids[1], vault.ciphertext(vault.cid(ids[1])), released, doctor)
    data_key = crypto.unwrap_key(doctor, released)
    for record_id in (ids[0], ids[2]):  # that key opens no other record of the batch
        with pytest.raises(crypto.DecryptionFailed):
            crypto.open_sealed(data_key, vault.ciphertext(vault.cid(record_id)), record_id.encode())


def test_erasing_one_record_of_a_batch_destroys_its_key_material_only(vault: Vault) -> None:
    patient = crypto.generate_keypair()
    ids = store_batch(vault, patient, 3)
    wrapped = vault.wrapped_key(ids[0], patient.public)
    data_key = unwrap_data_key(ids[0], wrapped, patient)
    vault.erase(ids[0], now_ms=1)
    with pytest.raises(RecordNotFound):
        vault.wrapped_key(ids[0], patient.public)
    db_bytes = b"".join(p.read_bytes() for p in vault.root.rglob("*") if p.is_file())
    sealed_copy = wrapped[-(len(data_key) + 28) :]  # nonce || sealed data key || tag
    assert data_key not in db_bytes and sealed_copy not in db_bytes
    assert sm2_wraps(vault) == 1  # the others still need the shared key
    assert (
        open_record(
            ids[2],
            vault.ciphertext(vault.cid(ids[2])),
            vault.wrapped_key(ids[2], patient.public),
            patient,
        )
        == b"record 2"
    )
    for record_id in ids[1:]:
        vault.erase(record_id, now_ms=2)
    assert sm2_wraps(vault) == 0  # the last erasure drops the shared key too


def test_our_cids_are_the_multiformats_library_s_cids() -> None:
    for size in (0, 1, 31, 32, 33, 1000, 70_000):
        data = os.urandom(size)
        expected = str(CID("base32", 1, "raw", multihash.digest(data, SM3_MULTIHASH)))
        assert cid_of(data) == expected
        assert parse_cid(expected) == bytes(CID.decode(expected).raw_digest) == crypto.sm3(data)
    upper = cid_of(b"x").upper()  # another multibase: still read, by the library
    assert parse_cid("B" + upper[1:]) == crypto.sm3(b"x")


# -- through a running edge and chain ------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def test_an_import_is_one_batch_tx_and_each_record_reads_and_proves_alone(
    world: Consortium,
) -> None:
    patient_key, did = world.new_patient()
    raw = SYNTHEA[1].read_bytes()
    r = import_file(world.keys["admin_a"], CHAIN_ID, world.edge_url, "fhir", raw, did)
    assert r.status_code == 200, r.text
    report = r.json()
    imported = report["patients"][did]["imported"]
    assert report["imported"] == len(imported) > 50 and report["rejected"] == 0
    assert len({i["height"] for i in imported}) == 1
    (block,) = {i["height"] for i in imported}
    results = world.node.block(block)["results"]
    kinds = [e["type"] for res in results for e in res["events"]]
    assert kinds.count("records.batch_registered") == 1
    assert kinds.count("records.registered") == len(imported)
    record = world.node.value(record_key(imported[0]["record_id"]))
    anchor = world.node.value(batch_key(bytes.fromhex(record["batch_root"])))
    leaves = [bytes.fromhex(x) for x in anchor["leaves"]]
    assert len(leaves) == len(imported)
    for item in imported:  # every record is provable by its own path to the root on chain
        state = world.node.value(record_key(item["record_id"]))
        entry = batch_entry_of({**state, "content_hash": bytes.fromhex(state["content_hash"])})
        leaf = batch_leaf(did, entry)
        path = merkle_path(leaves, state["batch_index"])
        assert root_from_path(leaf, path).hex() == anchor["root"] == state["batch_root"]
    # The patient reads a record of the batch through the exchange, as any other.
    observation = next(i for i in imported if i["resource_type"] == "Observation")
    world.keys["batch_patient"] = patient_key
    plain = fetch(world, "batch_patient", observation["record_id"])
    assert json.loads(plain)["resourceType"] == "Observation"


def test_a_refused_batch_falls_back_to_records_one_by_one(world: Consortium) -> None:
    _, did = world.new_patient()
    raw = SYNTHEA[0].read_bytes()
    source = next(
        e["resource"]
        for e in json.loads(raw)["entry"]
        if e["resource"]["resourceType"] == "Observation"
    )
    # Another registration already holds the id this import gives one Observation
    # (record ids are deterministic), so the chain refuses the batch as a whole ...
    taken = record_id_for("hosp-a", did, f"Observation/{source['id']}")
    payload = {
        "record_id": taken,
        "patient": did,
        "resource_type": "Observation",
        "cid": cid_of(b"elsewhere"),
        "content_hash": bytes(32),
    }
    world.ok("doctor_a", "records", "register", payload)
    r = import_file(world.keys["admin_a"], CHAIN_ID, world.edge_url, "fhir", raw, did)
    assert r.status_code == 200, r.text
    body = r.json()
    # ... and then registers the others one by one: only that record is refused.
    (refused,) = body["patients"][did]["rejected"]
    assert refused["record_id"] == taken and "chain refused" in refused["reason"]
    assert "exists" in refused["reason"]
    imported = body["patients"][did]["imported"]
    assert body["imported"] == len(imported) > 40
    assert not world.edge.vault.has(taken)  # what the chain refused is not kept
    for item in imported:
        state = world.node.value(record_key(item["record_id"]))
        assert state["cid"] == item["cid"] and "batch_root" not in state


def test_an_erased_batch_record_is_purged_and_the_others_stay_readable(
    world: Consortium,
) -> None:
    patient_key, did = world.new_patient()
    raw = SYNTHEA[2].read_bytes()
    r = import_file(world.keys["admin_a"], CHAIN_ID, world.edge_url, "fhir", raw, did)
    assert r.status_code == 200, r.text
    imported = r.json()["patients"][did]["imported"]
    observations = [i["record_id"] for i in imported if i["resource_type"] == "Observation"]
    gone, kept = observations[0], observations[1]
    vault = world.edge.vault
    cid = vault.cid(gone)
    ciphertext = vault.ciphertext(cid)
    wrapped = vault.wrapped_key(gone, patient_key.public)
    data_key = unwrap_data_key(gone, wrapped, patient_key)
    assert world.node.send(patient_key, "records", "erase", {"record_id": gone})["code"] == 0
    deadline = time.monotonic() + 20
    while httpx.get(f"{world.edge_url}/edge/v1/receipts/{gone}").status_code != 200:
        assert time.monotonic() < deadline, "the edge issued no purge receipt"
        time.sleep(0.1)
    files = [p for p in vault.root.rglob("*") if p.is_file()]
    assert [p for p in files if data_key in p.read_bytes()] == []
    assert [p for p in files if ciphertext[:64] in p.read_bytes()] == []  # zeroed in its pack
    conn = sqlite3.connect(f"file:{vault.root / 'vault.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT count(*) FROM wrapped_keys WHERE cid = ?", (cid,)).fetchone()
    finally:
        conn.close()
    assert rows == (0,)
    world.keys["batch_patient"] = patient_key
    assert json.loads(fetch(world, "batch_patient", kept))["resourceType"] == "Observation"


def test_validation_workers_give_what_validating_in_process_gives(world: Consortium) -> None:
    resources = [e["resource"] for e in json.loads(SYNTHEA[3].read_bytes())["entry"]]
    jobs: list[Job] = [
        (r, f"rec-{i}" if r["resourceType"] in RESOURCE_TYPES and i % 3 else None)
        for i, r in enumerate(resources)
    ]
    bad = json.loads(json.dumps(next(r for r in resources if r["resourceType"] == "Observation")))
    bad["status"] = "FINAL"  # outside the required value set
    jobs += [(bad, "rec-bad"), ({"resourceType": "Spaceship"}, None)]
    pool = ValidationPool(2)
    try:
        assert pool.check(jobs) == check_jobs(jobs)
        refusals = [o for o in pool.check(jobs) if isinstance(o, Refusal)]
        assert len(refusals) == 2 and "FINAL" in refusals[0].message
        # Through an import: the same records, and the same first refusal.
        _, did = world.new_patient()
        world.edge.validation = pool
        raw = SYNTHEA[3].read_bytes()
        with_pool = import_fhir(world.edge, raw, did).to_json()
        broken = json.loads(raw)
        broken["entry"][7]["resource"]["status"] = "FINAL"
        with pytest.raises(BadRecord) as in_pool:
            import_fhir(world.edge, json.dumps(broken).encode(), did)
    finally:
        world.edge.validation = None
        pool.close()
    _, other = world.new_patient()
    without = import_fhir(world.edge, raw, other).to_json()
    assert with_pool["imported"] == without["imported"] > 40
    with pytest.raises(BadRecord) as in_thread:
        import_fhir(world.edge, json.dumps(broken).encode(), other)
    assert in_pool.value.message == in_thread.value.message
    assert "FINAL" in in_pool.value.message


def test_the_node_gives_a_batch_record_s_path_to_whoever_may_see_the_record(
    world: Consortium,
) -> None:
    patient_key, did = world.new_patient()
    raw = SYNTHEA[0].read_bytes()
    r = import_file(world.keys["admin_a"], CHAIN_ID, world.edge_url, "fhir", raw, did)
    assert r.status_code == 200, r.text
    imported = r.json()["patients"][did]["imported"]
    as_patient = Client(world.node.urls[0], key=patient_key)
    for item in imported[:3] + imported[-2:]:
        record = as_patient.record(item["record_id"])
        proof = as_patient.record_batch_path(item["record_id"])
        entry = batch_entry_of({**record, "content_hash": bytes.fromhex(record["content_hash"])})
        leaf = batch_leaf(did, entry)
        path = [(step["left"], bytes.fromhex(step["hash"])) for step in proof["path"]]
        assert proof["leaf"] == leaf.hex() and proof["index"] == record["batch_index"]
        assert root_from_path(leaf, path).hex() == proof["root"] == record["batch_root"]
    # A stranger gets the answer an absent record gets; a record registered alone has none.
    stranger = Client(world.node.urls[0], key=world.keys["doctor_b"])
    for record_id in (imported[0]["record_id"], "no-such-record"):
        with pytest.raises(ClientError) as refused:
            stranger.record_batch_path(record_id)
        assert refused.value.status == 404
    with pytest.raises(ClientError) as alone:
        world.node.record_batch_path("report-1")  # uploaded alone by the fixture
    assert alone.value.status == 404 and "alone" in alone.value.message
    # The patient proves the batch's anchor against the app hash; a stranger cannot.
    anchor = batch_key(bytes.fromhex(proof["root"]))
    proved = as_patient.prove_state(anchor)
    trusted = bytes.fromhex(world.node.block(proved["height"])["app_hash"])
    assert anchor in proofs.verify(proved, trusted)
    with pytest.raises(ClientError) as hidden:
        stranger.prove_state(anchor)
    assert hidden.value.status == 404


def test_a_dead_validation_worker_costs_one_import_its_speed_not_its_answer() -> None:
    resources = [e["resource"] for e in json.loads(SYNTHEA[1].read_bytes())["entry"]]
    jobs: list[Job] = [(r, None) for r in resources]
    expected = check_jobs(jobs)
    pool = ValidationPool(1)
    try:
        (pid,) = list(pool._pool._processes)  # type: ignore[attr-defined]
        os.kill(pid, signal.SIGKILL)
        assert pool.check(jobs) == expected  # validated in-process this once
        (restarted,) = list(pool._pool._processes)  # type: ignore[attr-defined]
        assert restarted != pid
        assert pool.check(jobs) == expected
    finally:
        pool.close()


def test_a_pack_holds_a_batch_s_ciphertexts_each_checked_and_erased_alone(vault: Vault) -> None:
    patient = crypto.generate_keypair()
    new = [
        NewRecord(f"p-{i}", f"packed record {i}".encode() * 20, patient.public) for i in range(4)
    ]
    stored = vault.store_many(new, share_patient_key=True, pack=True)
    blobs = sorted(p.name for p in (vault.root / "blobs").iterdir())
    assert len(blobs) == 1 and blobs[0].startswith("pack-")  # no file per record
    cids = [s.cid for s in stored if not isinstance(s, Exception)]
    ciphertexts = [vault.ciphertext(cid) for cid in cids]
    for i, ciphertext in enumerate(ciphertexts):
        wrapped = vault.wrapped_key(f"p-{i}", patient.public)
        assert open_record(f"p-{i}", ciphertext, wrapped, patient) == new[i].plaintext
        assert vault.plaintext(f"p-{i}") == new[i].plaintext
    pack = vault.root / "blobs" / blobs[0]
    data = bytearray(pack.read_bytes())
    data[len(ciphertexts[0]) + 5] ^= 1  # one byte of the second record
    pack.write_bytes(bytes(data))
    with pytest.raises(TamperedBlob):
        vault.ciphertext(cids[1])
    assert vault.ciphertext(cids[2]) == ciphertexts[2]
    vault.erase("p-2", now_ms=1)
    assert ciphertexts[2] not in pack.read_bytes() and ciphertexts[3] in pack.read_bytes()
    with pytest.raises(RecordNotFound):
        vault.ciphertext(cids[2])
    assert vault.plaintext("p-3") == new[3].plaintext
    for record_id in ("p-0", "p-1", "p-3"):
        vault.erase(record_id, now_ms=2)
    assert list((vault.root / "blobs").iterdir()) == []  # the pack went with its last record
