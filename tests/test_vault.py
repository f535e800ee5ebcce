"""The custodian vault: encrypted at rest, content addressed, keys only wrapped."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.ledger import DATA

from medchain import crypto
from medchain.edge.cid import InvalidCID, cid_of, parse_cid
from medchain.edge.vault import (
    RecordNotFound,
    TamperedBlob,
    Vault,
    VaultError,
    content_hash,
    open_record,
    verify_purge_receipt,
)
from medchain.fhir.search import IndexEntry

PATIENT_FHIR = (DATA / "fhir" / "spec-examples" / "Patient-example.json").read_bytes()


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return Vault(tmp_path / "vault", crypto.generate_keypair())


def test_cid_is_v1_sm3_multihash_of_the_bytes() -> None:
    cid = cid_of(b"abc")
    assert cid.startswith("b")  # base32 text form
    assert parse_cid(cid) == crypto.sm3(b"abc")
    with pytest.raises(InvalidCID):
        parse_cid("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")  # sha2-256
    with pytest.raises(InvalidCID):
        parse_cid("../../etc/passwd")


def test_patient_decrypts_what_the_custodian_stored(vault: Vault) -> None:
    patient = crypto.generate_keypair()
    record = vault.store("rec-1", PATIENT_FHIR, patient.public)
    ciphertext = vault.ciphertext(record.cid)
    assert PATIENT_FHIR not in ciphertext
    assert b"Chalmers" not in (vault.root / "blobs" / record.cid).read_bytes()
    plain = open_record("rec-1", ciphertext, vault.wrapped_key("rec-1", patient.public), patient)
    assert json.loads(plain)["name"][0]["family"] == "Chalmers"
    assert record.content_hash == content_hash(record.salt, PATIENT_FHIR)


def test_equal_records_get_different_keys_cids_and_hashes(vault: Vault) -> None:
    patient = crypto.generate_keypair()
    a = vault.store("rec-a", b"same", patient.public)
    b = vault.store("rec-b", b"same", patient.public)
    assert a.cid != b.cid and a.content_hash != b.content_hash


def test_released_key_opens_only_for_its_recipient(vault: Vault) -> None:
    patient, doctor, stranger = (crypto.generate_keypair() for _ in range(3))
    record = vault.store("ct-1", b"\x00DICM binary image bytes" * 100, patient.public)
    wrapped = vault.release_key("ct-1", doctor.public)
    ciphertext = vault.ciphertext(record.cid)
    assert open_record("ct-1", ciphertext, wrapped, doctor).startswith(b"\x00DICM")
    with pytest.raises(crypto.DecryptionFailed):
        open_record("ct-1", ciphertext, wrapped, stranger)
    with pytest.raises(crypto.DecryptionFailed):  # bound to its record id
        open_record("ct-2", ciphertext, wrapped, doctor)


def test_tampered_blob_is_detected_and_never_served(vault: Vault) -> None:
    record = vault.store("rec-1", PATIENT_FHIR, crypto.generate_keypair().public)
    path = vault.root / "blobs" / record.cid
    data = bytearray(path.read_bytes())
    data[20] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(TamperedBlob, match="restore it from backup"):
        vault.ciphertext(record.cid)


def test_erasure_destroys_keys_and_blob_with_a_verifiable_receipt(vault: Vault) -> None:
    patient = crypto.generate_keypair()
    record = vault.store("rec-1", PATIENT_FHIR, patient.public)
    receipt = vault.erase("rec-1", now_ms=1_764_000_000_000)
    assert verify_purge_receipt(receipt, vault.custodian.public)
    with pytest.raises(RecordNotFound):
        vault.ciphertext(record.cid)
    for fetch in (vault.release_key, vault.wrapped_key):
        with pytest.raises(RecordNotFound):
            fetch("rec-1", patient.public)
    assert vault._db.execute("SELECT COUNT(*) FROM wrapped_keys").fetchone() == (0,)
    assert not (vault.root / "blobs" / record.cid).exists()


def test_forged_or_altered_purge_receipts_fail(vault: Vault) -> None:
    vault.store("rec-1", b"x", crypto.generate_keypair().public)
    receipt = vault.erase("rec-1", now_ms=1)
    other = crypto.generate_keypair()
    assert not verify_purge_receipt(receipt, other.public)
    altered = {"body": {**receipt["body"], "record_id": "rec-2"}, "signature": receipt["signature"]}
    assert not verify_purge_receipt(altered, vault.custodian.public)
    assert not verify_purge_receipt({"body": "junk"}, vault.custodian.public)


def test_record_ids_are_not_reused(vault: Vault) -> None:
    vault.store("rec-1", b"x", crypto.generate_keypair().public)
    with pytest.raises(VaultError, match="new id"):
        vault.store("rec-1", b"y", crypto.generate_keypair().public)


def test_the_key_encryption_key_survives_restart_and_only_opens_for_the_custodian(
    tmp_path: Path,
) -> None:
    custodian, patient, doctor = (crypto.generate_keypair() for _ in range(3))
    vault = Vault(tmp_path / "v", custodian)
    vault.store("rec-1", b"lab result", patient.public)
    vault.close()
    wrapped_kek = (tmp_path / "v" / "kek.sm2").read_bytes()
    assert len(wrapped_kek) > 16  # SM2 ciphertext, not the key itself
    reopened = Vault(tmp_path / "v", custodian)
    assert reopened.plaintext("rec-1") == b"lab result"
    cid = reopened.cid("rec-1")
    released = reopened.release_key("rec-1", doctor.public)
    assert open_record("rec-1", reopened.ciphertext(cid), released, doctor) == b"lab result"
    with pytest.raises(crypto.DecryptionFailed):
        Vault(tmp_path / "v", crypto.generate_keypair())  # someone else's key opens nothing


def test_erasures_from_several_threads_at_once_all_finish(vault: Vault) -> None:
    """The edge's background sync and an erase request may erase at the same moment:
    each must get its receipt, none may find the other's WAL scrub in its way."""
    patient = crypto.generate_keypair()
    ids = [f"rec-{i}" for i in range(24)]
    for record_id in ids:
        vault.store(record_id, PATIENT_FHIR, patient.public)
    barrier = threading.Barrier(4)

    def erase_all(order: list[str]) -> list[dict[str, object]]:
        barrier.wait()
        out = []
        for record_id in order:
            out.append(vault.erase(record_id, now_ms=1_764_000_000_000))
            vault.finish_erasures()
        return out

    orders = [ids, ids[::-1], ids[::2] + ids[1::2], ids[1::2] + ids[::2]]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(erase_all, orders))
    for receipts in results:
        assert len(receipts) == len(ids)
        assert all(verify_purge_receipt(r, vault.custodian.public) for r in receipts)
    assert vault.count() == 0
    assert vault.finish_erasures() == 0  # no erasure left waiting for its receipt


def test_a_patients_records_are_listed_by_type_and_only_theirs(vault: Vault) -> None:
    """What a study may read of a consenting patient (medchain fl prepare-round):
    that patient's current records of the consented types, nobody else's."""
    patient, other = crypto.generate_keypair(), crypto.generate_keypair()
    for record_id, owner, did, rtype in [
        ("obs-2", patient, "did:p", "Observation"),
        ("obs-1", patient, "did:p", "Observation"),
        ("pat-1", patient, "did:p", "Patient"),
        ("obs-9", other, "did:o", "Observation"),
    ]:
        vault.store(record_id, b"{}", owner.public, did, IndexEntry(rtype, (), None))
    assert vault.patient_records("did:p", ["Observation"]) == ["obs-1", "obs-2"]
    assert vault.patient_records("did:p", ["Observation", "Patient"]) == [
        "obs-1",
        "obs-2",
        "pat-1",
    ]
    assert vault.patient_records("did:p", []) == []
    vault.unindex("obs-1")  # superseded: no longer current
    assert vault.patient_records("did:p", ["Observation"]) == ["obs-2"]
