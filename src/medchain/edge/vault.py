"""The custodian's record vault: records encrypted at rest, addressed by CID.

Each record (a FHIR resource or bundle, or a binary such as DICOM) gets a
fresh SM4-GCM data key; the ciphertext is stored under the CID of its SM3
hash, so a changed byte is caught before anything is served. The data key is
kept only wrapped: SM2 for the patient and each grantee the custodian
releases it to, and for the custodian itself sealed under the vault's SM4
key-encryption key, which is on disk only SM2-wrapped for the custodian.
Records stored together for one patient (an import) may share one patient
key: a fresh SM4 key SM2-wrapped once for the patient, each record's data key
sealed under it (see store_many); erasing a record still destroys its data
key's every copy, as the shared key alone opens nothing.
Erasing a record destroys every wrapped copy, the salt, the search index rows
and the blob, and yields a purge receipt signed by the custodian only once no
byte of them remains in any file under the vault's root: SQLite overwrites
deleted rows (secure_delete), the WAL is checkpointed and truncated, the blob
is overwritten before it is unlinked. Backups are outside the vault; see
docs/health-records.md for what they must do.

    <root>/kek.sm2          the key-encryption key, SM2-wrapped for the custodian
    <root>/vault.db         record and wrapped-key tables (SQLite)
    <root>/blobs/<cid>      ciphertext: nonce || ciphertext || tag
    <root>/blobs/pack-<id>  the ciphertexts of records stored together (an import),
                            one after another; packed_blobs says where each is
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medchain import crypto, encoding
from medchain.core.tx import key_id
from medchain.edge.cid import cid_of, parse_cid
from medchain.exceptions import MedChainError
from medchain.fhir.search import IndexEntry
from medchain.files import make_durable
from medchain.sqlite_schema import migrate

SALT_BYTES = 16
KEK_ID = b"custodian-kek"  # wrapped_keys.recipient of the custodian's own copy
RECEIPT_PURPOSE = "medchain/purge-receipt/v1"
# A patient's copy of a data key sealed under a shared patient key (store_many):
# stored as SHARED_KEY || kek_id || sealed, handed out as SHARED_KEY || len || SM2
# wrap of the shared key || sealed (open_record takes both forms).
SHARED_KEY, KEK_ID_BYTES = b"MCPK", 16
PACK_NAME = re.compile(r"pack-[0-9a-f]{32}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    record_id TEXT PRIMARY KEY, cid TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
    content_hash BLOB NOT NULL, salt BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS wrapped_keys (
    cid TEXT NOT NULL, recipient BLOB NOT NULL, wrapped BLOB NOT NULL,
    PRIMARY KEY (cid, recipient)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS patient_keys (kek_id BLOB PRIMARY KEY, wrapped BLOB NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS patient_key_records (
    cid TEXT PRIMARY KEY, kek_id BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS patient_key_records_by_key ON patient_key_records (kek_id);
CREATE TABLE IF NOT EXISTS packed_blobs (
    cid TEXT PRIMARY KEY, pack TEXT NOT NULL, start INTEGER NOT NULL, size INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS packed_blobs_by_pack ON packed_blobs (pack);
CREATE TABLE IF NOT EXISTS receipts (record_id TEXT PRIMARY KEY, receipt BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS erasures (
    record_id TEXT PRIMARY KEY, cid TEXT NOT NULL, erased_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS search (
    record_id TEXT PRIMARY KEY, patient TEXT NOT NULL, resource_type TEXT NOT NULL, date TEXT
);
CREATE INDEX IF NOT EXISTS search_by_patient ON search (patient, resource_type, date);
CREATE INDEX IF NOT EXISTS search_by_type ON search (resource_type, date);
-- The first index's code table; search_values replaced it (dropped pages are zeroed).
DROP TABLE IF EXISTS search_codes;
CREATE TABLE IF NOT EXISTS search_values (
    record_id TEXT NOT NULL, param TEXT NOT NULL, system TEXT NOT NULL, value TEXT NOT NULL,
    low INTEGER NOT NULL, high INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS search_values_by_value ON search_values (param, value, system);
CREATE INDEX IF NOT EXISTS search_values_by_record ON search_values (record_id, param);
CREATE TABLE IF NOT EXISTS search_versions (
    record_id TEXT PRIMARY KEY, resource_type TEXT NOT NULL, patient TEXT NOT NULL,
    supersedes TEXT, version INTEGER, updated_ms INTEGER
);
CREATE TABLE IF NOT EXISTS patients (
    system TEXT NOT NULL, identifier TEXT NOT NULL, did TEXT NOT NULL,
    PRIMARY KEY (system, identifier)
) WITHOUT ROWID;
"""
# Schema versions (medchain/sqlite_schema.py). 1: the schema above; a vault from before
# versions gains its tables and loses search_codes. A change to SCHEMA needs a new one.
MIGRATIONS = (SCHEMA,)
SCRUBBED = "secure_delete_since"  # meta: set once the file holds no pre-secure_delete residue
SCRUB_ATTEMPTS, SCRUB_RETRY_S = 100, 0.01  # another checkpoint in the way: retry for ~1 s


class VaultError(MedChainError):
    """Base of vault errors; the message says what to do next."""


class RecordNotFound(VaultError):
    """No live record with that id or CID (never stored, or erased)."""


class TamperedBlob(VaultError):
    """The stored ciphertext no longer hashes to its CID: it is never served."""


class ScrubIncomplete(VaultError):
    """An erased record's old pages could not yet be purged from the WAL (a reader
    held it); no receipt is signed until a later attempt succeeds."""


@dataclass(frozen=True)
class NewRecord:
    """A record to store: plaintext, who it belongs to, and (optionally) its search entry."""

    record_id: str
    plaintext: bytes
    patient_public: bytes
    patient: str | None = None
    index: IndexEntry | None = None


@dataclass(frozen=True)
class StoredRecord:
    """What the custodian registers on chain about a stored record."""

    record_id: str
    cid: str
    size: int
    content_hash: bytes  # SM3(salt || plaintext): proves content without revealing it
    salt: bytes


def content_hash(salt: bytes, plaintext: bytes) -> bytes:
    """Salted SM3 of the plaintext, so equal records do not get equal hashes."""
    return crypto.sm3(salt + plaintext)


def open_record(
    record_id: str, ciphertext: bytes, wrapped_key: bytes, key: crypto.KeyPair
) -> bytes:
    """Decrypt a record with a data key wrapped for `key` (SM2, or sealed under a
    shared patient key SM2-wrapped for `key`); DecryptionFailed otherwise."""
    return crypto.open_sealed(
        unwrap_data_key(record_id, wrapped_key, key), ciphertext, record_id.encode()
    )


def unwrap_data_key(record_id: str, wrapped_key: bytes, key: crypto.KeyPair) -> bytes:
    """A record's data key from its copy for `key`, in either form; DecryptionFailed
    for a copy that is not for `key`, not for this record, or altered."""
    if not wrapped_key.startswith(SHARED_KEY):
        return crypto.unwrap_key(key, wrapped_key)
    size = int.from_bytes(wrapped_key[4:6], "big")
    shared = crypto.unwrap_key(key, wrapped_key[6 : 6 + size])
    return crypto.open_sealed(shared, wrapped_key[6 + size :], _shared_aad(record_id))


def _shared_aad(record_id: str) -> bytes:
    return b"medchain/patient-key|" + record_id.encode()


class Vault:
    """One custodian's store. Writes are durable before a method returns.

    Each thread (the edge serves requests on a pool) has its own SQLite
    connection; SQLite's locking (WAL, BEGIN IMMEDIATE) keeps their
    transactions apart.
    """

    def __init__(self, root: Path, custodian: crypto.KeyPair) -> None:
        self.root = root
        self.custodian = custodian
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        # Erasures, receipts and WAL scrubs run one at a time: two checkpoints at
        # once make one of them give up, and two erasures of one record race.
        self._erasure_lock = threading.RLock()
        migrate(self._db, root / "vault.db", MIGRATIONS)
        self._kek = self._load_kek()
        if self.get_meta(SCRUBBED) == 0:
            self._vacuum()

    def _load_kek(self) -> bytes:
        """The vault's SM4 key-encryption key, kept on disk only SM2-wrapped for the
        custodian: each record's custodian copy of its data key is sealed under it, so
        storing and releasing cost no SM2 operation for the custodian's own copy."""
        path = self.root / "kek.sm2"
        if path.exists():
            return crypto.unwrap_key(self.custodian, path.read_bytes())
        kek = crypto.new_data_key()
        make_durable(self.root, [_write(path, crypto.wrap_key(self.custodian.public, kek))])
        return kek

    @property
    def _db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.root / "vault.db", check_same_thread=False, isolation_level=None
            )
            conn.execute("PRAGMA journal_mode=WAL")
            # Deleted rows and freed pages are overwritten with zeros, so an erased
            # record's keys, salt and index rows leave no bytes in the database file.
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _blob_path(self, cid: str) -> Path:
        parse_cid(cid)  # also keeps path components out of file names
        return self.root / "blobs" / cid

    def _pack_path(self, pack: str) -> Path:
        if not PACK_NAME.fullmatch(pack):
            raise VaultError(f"not a pack name: {pack!r}")
        return self.root / "blobs" / pack

    def _packed(self, cid: str) -> tuple[str, int, int] | None:
        """(pack, offset, size) of a ciphertext stored in a pack, else None."""
        row = self._db.execute(
            "SELECT pack, start, size FROM packed_blobs WHERE cid = ?", (cid,)
        ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]), int(row[2]))

    def store(
        self,
        record_id: str,
        plaintext: bytes,
        patient_public: bytes,
        patient: str | None = None,
        index: IndexEntry | None = None,
    ) -> StoredRecord:
        """Encrypt and keep a record; the data key is wrapped for custodian and patient.
        With `patient` (its DID) and `index`, the record is also searchable."""
        outcome = self.store_many([NewRecord(record_id, plaintext, patient_public, patient, index)])
        if isinstance(outcome[0], VaultError):
            raise outcome[0]
        return outcome[0]

    def store_many(
        self, records: list[NewRecord], share_patient_key: bool = False, pack: bool = False
    ) -> list[StoredRecord | VaultError]:
        """Store many records with one durability barrier and one transaction: every
        blob is on disk before any row that points at it is committed.

        With `pack`, their ciphertexts go one after another into one new pack file
        instead of a file each (creating a file costs ~0.15-0.4 ms here, more than
        sealing the record); each is still read, checked against its CID, and on
        erasure overwritten with zeros and flushed, alone; the pack goes with its
        last record.

        With `share_patient_key`, the records of one patient key share one fresh
        SM4 patient key, SM2-wrapped for the patient once, and each data key is
        sealed under it (bound to its record id) instead of SM2-wrapped alone: one
        SM2 operation per call instead of one per record. Safe because each record
        keeps its own data key: erasing one deletes its sealed copy (the shared key
        then opens nothing of it), a grantee is released only that data key, never
        the shared key, and whoever holds the patient's private key could already
        unwrap every per-record copy. A shared key never spans two patient keys."""
        outcome: list[StoredRecord | VaultError] = []
        rows, keys, written = [], [], []
        shared: dict[bytes, tuple[bytes, bytes]] = {}  # patient key -> (kek_id, key)
        shared_rows, shared_uses = [], []
        pack_name = f"pack-{crypto.primitives.random_bytes(16).hex()}" if pack else None
        packed: list[bytes] = []
        packed_rows: list[tuple[str, str, int, int]] = []
        offset = 0
        held = self.held([new.record_id for new in records])
        for new in records:
            if new.record_id in held:
                outcome.append(
                    VaultError(
                        f"record {new.record_id!r} exists; store a new version under a new id"
                    )
                )
                continue
            data_key = crypto.new_data_key()
            sealed = crypto.seal(data_key, new.plaintext, new.record_id.encode())
            cid = cid_of(sealed)
            if pack_name is None:
                written.append(_write(self._blob_path(cid), sealed))
            else:
                packed.append(sealed)
                packed_rows.append((cid, pack_name, offset, len(sealed)))
                offset += len(sealed)
            salt = crypto.primitives.random_bytes(SALT_BYTES)
            stored = StoredRecord(
                new.record_id, cid, len(new.plaintext), content_hash(salt, new.plaintext), salt
            )
            if share_patient_key:
                if new.patient_public not in shared:
                    kek_id = crypto.primitives.random_bytes(KEK_ID_BYTES)
                    shared[new.patient_public] = (kek_id, crypto.new_data_key())
                    wrapped_kek = crypto.wrap_key(new.patient_public, shared[new.patient_public][1])
                    shared_rows.append((kek_id, wrapped_kek))
                kek_id, kek = shared[new.patient_public]
                sealed_key = crypto.seal(kek, data_key, _shared_aad(new.record_id))
                patient_copy = SHARED_KEY + kek_id + sealed_key
                shared_uses.append((cid, kek_id))
            else:
                patient_copy = crypto.wrap_key(new.patient_public, data_key)
            keys += [
                (cid, KEK_ID, crypto.seal(self._kek, data_key, cid.encode())),
                (cid, key_id("sm", new.patient_public), patient_copy),
            ]
            rows.append((new, stored))
            outcome.append(stored)
        if pack_name is not None and packed:
            written.append(_write(self._pack_path(pack_name), b"".join(packed)))
        if written:
            make_durable(self.root / "blobs", written)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?)",
                [(s.record_id, s.cid, s.size, s.content_hash, s.salt) for _, s in rows],
            )
            self._db.executemany("INSERT INTO wrapped_keys VALUES (?, ?, ?)", keys)
            self._db.executemany("INSERT INTO patient_keys VALUES (?, ?)", shared_rows)
            self._db.executemany("INSERT INTO patient_key_records VALUES (?, ?)", shared_uses)
            self._db.executemany("INSERT INTO packed_blobs VALUES (?, ?, ?, ?)", packed_rows)
            self._index(
                [
                    (stored.record_id, new.patient, new.index)
                    for new, stored in rows
                    if new.patient is not None and new.index is not None
                ]
            )
        return outcome

    def _index(self, entries: list[tuple[str, str, IndexEntry]]) -> None:
        """Index records (record id, owner, entry) in the open transaction: one
        statement per table for all of them, as an import stores dozens at once."""
        self._db.executemany(
            "INSERT INTO search VALUES (?, ?, ?, ?)",
            [(rid, patient, e.resource_type, e.date) for rid, patient, e in entries],
        )
        self._db.executemany(
            "INSERT INTO search_values VALUES (?, ?, ?, ?, ?, ?)",
            [
                (rid, v.param, v.system, v.value, v.low, v.high)
                for rid, _, e in entries
                for v in e.values
            ],
        )
        self._db.executemany(
            "INSERT OR IGNORE INTO search_versions (record_id, resource_type, patient) "
            "VALUES (?, ?, ?)",
            [(rid, e.resource_type, patient) for rid, patient, e in entries],
        )

    def unindex(self, record_id: str) -> None:
        """Take a record out of search (it was superseded); it stays stored, and in
        search_versions for its resource's _history."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM search WHERE record_id = ?", (record_id,))
            self._db.execute("DELETE FROM search_values WHERE record_id = ?", (record_id,))

    @property
    def index_db(self) -> sqlite3.Connection:
        """This thread's connection, for the search index (edge/search_index.py), whose
        tables live here so that erasure destroys their rows with the record's."""
        return self._db

    def indexed(self, record_id: str) -> tuple[str, str] | None:
        """(resource type, patient DID) of a searchable record held here, or None."""
        row = self._db.execute(
            "SELECT resource_type, patient FROM search WHERE record_id = ?", (record_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def patient_records(self, patient: str, types: Iterable[str]) -> list[str]:
        """Ids of the searchable (current) records of one patient held here, of these
        resource types, in id order: what a study may read of a consenting patient."""
        wanted = set(types)
        rows = self._db.execute(
            "SELECT record_id, resource_type FROM search WHERE patient = ? ORDER BY record_id",
            (patient,),
        ).fetchall()
        return [str(r[0]) for r in rows if r[1] in wanted]

    def plaintext(self, record_id: str) -> bytes:
        """The custodian's own view of a record (for serving an authorised read)."""
        cid = self.cid(record_id)
        ciphertext = self.ciphertext(cid)
        return crypto.open_sealed(self._data_key(record_id, cid), ciphertext, record_id.encode())

    def _data_key(self, record_id: str, cid: str) -> bytes:
        """A record's data key, from the custodian's copy under the vault's KEK."""
        row = self._db.execute(
            "SELECT wrapped FROM wrapped_keys WHERE cid = ? AND recipient = ?", (cid, KEK_ID)
        ).fetchone()
        if row is None:
            raise RecordNotFound(f"record {record_id!r} has no custodian key (erased?)")
        return crypto.open_sealed(self._kek, bytes(row[0]), cid.encode())

    def _row(self, record_id: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._db.execute(
            "SELECT cid, size, content_hash, salt FROM records WHERE record_id = ?", (record_id,)
        ).fetchone()
        return row

    def salt(self, record_id: str) -> bytes:
        """The record's hash salt, handed to an authorised requester with the ciphertext
        so it can acknowledge the salted hash of what it decrypted."""
        row = self._row(record_id)
        if row is None:
            raise RecordNotFound(f"no record {record_id!r} in this vault")
        return bytes(row[3])

    def cid(self, record_id: str) -> str:
        """The content id a record's ciphertext is stored under; RecordNotFound if absent."""
        row = self._row(record_id)
        if row is None:
            raise RecordNotFound(f"no record {record_id!r} in this vault")
        return str(row[0])

    def ciphertext(self, cid: str) -> bytes:
        """The stored ciphertext, only if it still hashes to its CID."""
        packed = self._packed(cid)
        try:
            if packed is None:
                data = self._blob_path(cid).read_bytes()
            else:
                with self._pack_path(packed[0]).open("rb") as f:
                    f.seek(packed[1])
                    data = f.read(packed[2])
        except FileNotFoundError:
            raise RecordNotFound(f"no blob {cid} (never stored, or erased)") from None
        if cid_of(data) != cid:
            raise TamperedBlob(f"blob {cid} does not match its CID: restore it from backup")
        return data

    def wrapped_key(self, record_id: str, recipient_public: bytes) -> bytes:
        """The data key already wrapped for this recipient (patient or released grantee),
        self-contained: a copy under a shared patient key comes with that key's SM2
        wrap (open it with open_record or unwrap_data_key)."""
        row = self._db.execute(
            "SELECT wrapped FROM wrapped_keys WHERE cid = ? AND recipient = ?",
            (self.cid(record_id), key_id("sm", recipient_public)),
        ).fetchone()
        if row is None:
            raise RecordNotFound(f"no key for that recipient on record {record_id!r}")
        wrapped = bytes(row[0])
        if not wrapped.startswith(SHARED_KEY):
            return wrapped
        kek_id, sealed = wrapped[4 : 4 + KEK_ID_BYTES], wrapped[4 + KEK_ID_BYTES :]
        kek_row = self._db.execute(
            "SELECT wrapped FROM patient_keys WHERE kek_id = ?", (kek_id,)
        ).fetchone()
        if kek_row is None:
            raise RecordNotFound(f"the shared patient key of record {record_id!r} is gone")
        wrapped_kek = bytes(kek_row[0])
        return SHARED_KEY + len(wrapped_kek).to_bytes(2, "big") + wrapped_kek + sealed

    def release_key(
        self,
        record_id: str,
        recipient_public: bytes,
        suite: str = crypto.DEFAULT_SUITE,
        sm9_to: tuple[bytes, str] | None = None,
    ) -> bytes:
        """Re-wrap a record's data key for an authorised recipient: to its key for
        suites that wrap (sm; sm2+mldsa by its SM2 half), and for an sm9 recipient
        to its DID under its org's published encryption master key, `sm9_to` =
        (that key, the DID): nothing else about the recipient is needed.

        The caller (the exchange service) decides authorisation from the
        chain; the vault only guarantees the key never leaves unwrapped.
        """
        cid = self.cid(record_id)
        data_key = self._data_key(record_id, cid)
        if suite == "sm9":
            if sm9_to is None:
                raise ValueError("an sm9 recipient needs its org's encryption master key and DID")
            wrapped = crypto.sm9_wrap_key(sm9_to[0], sm9_to[1], data_key)
        else:
            wrapped = crypto.wrap_key(recipient_public, data_key, suite)
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO wrapped_keys VALUES (?, ?, ?)",
                (cid, key_id(suite, recipient_public), wrapped),
            )
        return wrapped

    def _drop(self, record_id: str, cid: str, erased_at_ms: int | None) -> None:
        """Destroy a record: overwrite and unlink its blob, delete its keys, row and
        index rows (and, for an erasure, note it as awaiting its receipt) in one
        transaction, then purge the old pages from the WAL."""
        packed = self._packed(cid)
        if packed is None:
            _shred(self._blob_path(cid))
        else:
            _zero(self._pack_path(packed[0]), packed[1], packed[2])
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM wrapped_keys WHERE cid = ?", (cid,))
            self._db.execute("DELETE FROM packed_blobs WHERE cid = ?", (cid,))
            self._drop_shared_key_use(cid)
            self._db.execute("DELETE FROM records WHERE record_id = ?", (record_id,))
            self._db.execute("DELETE FROM search WHERE record_id = ?", (record_id,))
            self._db.execute("DELETE FROM search_values WHERE record_id = ?", (record_id,))
            self._db.execute("DELETE FROM search_versions WHERE record_id = ?", (record_id,))
            if erased_at_ms is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO erasures VALUES (?, ?, ?)",
                    (record_id, cid, erased_at_ms),
                )
        if (
            packed is not None
            and not self._db.execute(
                "SELECT 1 FROM packed_blobs WHERE pack = ? LIMIT 1", (packed[0],)
            ).fetchone()
        ):
            _shred(self._pack_path(packed[0]))  # its last record is gone
        self._scrub_wal()

    def _drop_shared_key_use(self, cid: str) -> None:
        """Forget that a record used a shared patient key, and the key itself once no
        live record uses it (inside _drop's transaction)."""
        row = self._db.execute(
            "SELECT kek_id FROM patient_key_records WHERE cid = ?", (cid,)
        ).fetchone()
        if row is None:
            return
        self._db.execute("DELETE FROM patient_key_records WHERE cid = ?", (cid,))
        self._db.execute(
            "DELETE FROM patient_keys WHERE kek_id = ? AND NOT EXISTS "
            "(SELECT 1 FROM patient_key_records WHERE kek_id = ?)",
            (row[0], row[0]),
        )

    def _vacuum(self) -> None:
        """Rebuild the database once, so that residue of erasures made before
        secure_delete was on (free pages, slack in pages) is gone as well."""
        self._db.execute("VACUUM")
        self.set_meta(SCRUBBED, 1)
        self._scrub_wal()

    def finish_erasures(self) -> int:
        """Sign the receipts of erasures an earlier crash or busy WAL interrupted."""
        with self._erasure_lock:
            pending = [
                str(row[0]) for row in self._db.execute("SELECT record_id FROM erasures").fetchall()
            ]
            for record_id in pending:
                self._issue_receipt(record_id)
            return len(pending)

    def _scrub_wal(self) -> None:
        """Copy the WAL into the database and truncate it to zero bytes.

        The WAL still holds every page image written since the last checkpoint,
        so until this succeeds a deleted key is readable from `vault.db-wal`.
        Readers and writers are waited for (busy_timeout); another connection's
        automatic checkpoint makes SQLite give up at once, so that is retried for
        up to a second. ScrubIncomplete if the WAL stayed in use.
        """
        with self._erasure_lock:
            for _ in range(SCRUB_ATTEMPTS):
                busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return
                time.sleep(SCRUB_RETRY_S)
        raise ScrubIncomplete("the vault's WAL is in use; erasure will finish on retry")

    def discard(self, record_id: str) -> None:
        """Drop a record that never made it onto the chain (no receipt: nothing to prove)."""
        with self._erasure_lock:
            self._drop(record_id, self.cid(record_id), None)

    def held(self, record_ids: list[str]) -> set[str]:
        """Which of these records the vault holds, in one query per 500 ids (an import
        asks for all of its records at once)."""
        found: set[str] = set()
        for start in range(0, len(record_ids), 500):
            chunk = record_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT record_id FROM records WHERE record_id IN ({marks})"
            found.update(str(row[0]) for row in self._db.execute(sql, chunk))
        return found

    def has(self, record_id: str) -> bool:
        """Whether this vault holds the record, without reading its ciphertext."""
        return self._row(record_id) is not None

    def count(self) -> int:
        """How many records the vault holds, for the edge's status."""
        return int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])

    def erase(self, record_id: str, now_ms: int | None = None) -> dict[str, Any]:
        """Destroy every wrapped key, the salt, the index rows and the blob; then, and
        only then, sign, keep and return a purge receipt."""
        erased_at_ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self._erasure_lock:
            if not self.has(record_id):  # erased meanwhile (or never here: RecordNotFound)
                return self.receipt(record_id)
            self._drop(record_id, self.cid(record_id), erased_at_ms)
            return self._issue_receipt(record_id)

    def _issue_receipt(self, record_id: str) -> dict[str, Any]:
        """Sign the receipt of an erasure whose data is gone (scrubbing again first:
        a crash or a busy WAL may have interrupted it)."""
        row = self._db.execute(
            "SELECT cid, erased_at_ms FROM erasures WHERE record_id = ?", (record_id,)
        ).fetchone()
        if row is None:
            raise RecordNotFound(f"no purge receipt for {record_id!r}: it has not been erased here")
        self._scrub_wal()
        body = {
            "purpose": RECEIPT_PURPOSE,
            "record_id": record_id,
            "cid": str(row[0]),
            "custodian": self.custodian.public,
            "erased_at_ms": int(row[1]),
        }
        receipt = {"body": body, "signature": crypto.sign(self.custodian, encoding.encode(body))}
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR REPLACE INTO receipts VALUES (?, ?)",
                (record_id, encoding.encode(receipt)),
            )
            self._db.execute("DELETE FROM erasures WHERE record_id = ?", (record_id,))
        return receipt

    def receipt(self, record_id: str) -> dict[str, Any]:
        """The purge receipt of an erased record (finishing an interrupted erasure)."""
        with self._erasure_lock:
            row = self._db.execute(
                "SELECT receipt FROM receipts WHERE record_id = ?", (record_id,)
            ).fetchone()
            if row is None:
                return self._issue_receipt(record_id)
        receipt: dict[str, Any] = encoding.decode(bytes(row[0]))
        return receipt

    def link_patient(self, system: str, identifier: str, did: str) -> None:
        """Record that the HIS's patient (system, identifier) is the ledger's `did`."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO patients VALUES (?, ?, ?)", (system, identifier, did)
            )

    def patient_did(self, system: str, identifier: str) -> str | None:
        """The ledger DID linked to a HIS patient identifier, if any."""
        row = self._db.execute(
            "SELECT did FROM patients WHERE system = ? AND identifier = ?", (system, identifier)
        ).fetchone()
        return None if row is None else str(row[0])

    def get_meta(self, name: str, default: int = 0) -> int:
        """An integer the edge keeps beside its records (e.g. the height synced to)."""
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return default if row is None else int(row[0])

    def set_meta(self, name: str, value: int) -> None:
        """Store an integer the edge keeps beside its records (see get_meta)."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def close(self) -> None:
        """Close every connection the vault opened, one per thread."""
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()


def verify_purge_receipt(receipt: dict[str, Any], custodian_public: bytes) -> bool:
    """True only for a receipt signed by that custodian over exactly this body."""
    try:
        body = receipt["body"]
        if body.get("purpose") != RECEIPT_PURPOSE or body.get("custodian") != custodian_public:
            return False
        return crypto.verify("sm", custodian_public, encoding.encode(body), receipt["signature"])
    except (KeyError, TypeError, AttributeError, encoding.DecodeError):
        return False


def receipt_from_json(receipt: dict[str, Any]) -> dict[str, Any]:
    """A receipt as the edge API returns it (bytes as hex) back in its signed form."""
    body = dict(receipt["body"])
    body["custodian"] = bytes.fromhex(body["custodian"])
    return {"body": body, "signature": bytes.fromhex(receipt["signature"])}


def _write(path: Path, data: bytes) -> Path:
    """Write a blob under its final name (atomically); durable only after make_durable."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _zero(path: Path, offset: int, size: int) -> None:
    """Overwrite one ciphertext inside a pack with zeros and flush it (the pack's
    other records stay); nothing to do if the pack is gone."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        os.pwrite(fd, bytes(size), offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def _shred(path: Path) -> None:
    """Overwrite a blob with zeros, flush it, then unlink it and flush the directory,
    so its bytes are gone from the file system's view, not just unnamed. (On
    copy-on-write or flash storage the device may keep old blocks: encrypt the
    volume, see docs/health-records.md.)"""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        size, zeros = os.fstat(fd).st_size, bytes(1 << 20)
        for offset in range(0, size, len(zeros)):
            os.pwrite(fd, zeros[: size - offset], offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
