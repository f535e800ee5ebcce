"""The EPCIS documents an organisation recorded, kept at its edge, sealed.

The chain holds each event's standard hash (`supply/event/<hash>`); the document
itself, exactly the bytes a partner or the organisation's own system sent, stays
here. Each document is sealed with a fresh SM4-GCM data key under the document id
and stored under the CID of its ciphertext, so a changed byte is caught before
anything is served; the data key is kept only sealed under the store's SM4
key-encryption key, which is on disk only SM2-wrapped for the custodian (as in
edge/vault.py). Beside each document: its events (number counted from 1, hash,
business step, time, whether the chain recorded it), the EPCs they name (to find
documents by pack), the GS1 locations and parties they name, and the organisations
the chain says took part, which decide who else may read it (edge/epcis_capture.py).

    <root>/kek.sm2         the key-encryption key, SM2-wrapped for the custodian
    <root>/documents.db    documents, events, EPCs and parties (SQLite)
    <root>/blobs/<cid>     ciphertext: nonce || ciphertext || tag
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medchain import crypto
from medchain.edge.cid import cid_of, parse_cid
from medchain.exceptions import MedChainError
from medchain.files import make_durable
from medchain.sqlite_schema import migrate, write_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    document_id TEXT PRIMARY KEY, cid TEXT NOT NULL, media_type TEXT NOT NULL,
    size INTEGER NOT NULL, content_sm3 BLOB NOT NULL, data_key BLOB NOT NULL,
    recorded_by TEXT NOT NULL, received_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    document_id TEXT NOT NULL, number INTEGER NOT NULL, event_hash TEXT NOT NULL,
    biz_step TEXT NOT NULL, event_time TEXT NOT NULL, height INTEGER,
    PRIMARY KEY (document_id, number)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_hash ON events (event_hash);
CREATE TABLE IF NOT EXISTS epcs (
    epc TEXT NOT NULL, unit TEXT NOT NULL, document_id TEXT NOT NULL, number INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS epcs_by_epc ON epcs (epc);
CREATE INDEX IF NOT EXISTS epcs_by_unit ON epcs (unit);
CREATE TABLE IF NOT EXISTS named (
    document_id TEXT NOT NULL, identifier TEXT NOT NULL, PRIMARY KEY (document_id, identifier)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parties (
    document_id TEXT NOT NULL, org_id TEXT NOT NULL, basis TEXT NOT NULL,
    PRIMARY KEY (document_id, org_id, basis)
) WITHOUT ROWID;
"""
MIGRATIONS = (SCHEMA,)  # schema versions (medchain/sqlite_schema.py); 1: the schema above


class DocumentStoreError(MedChainError):
    """Base of the document store's errors."""


class DocumentNotFound(DocumentStoreError):
    """No document with that id here."""


class TamperedDocument(DocumentStoreError):
    """A stored ciphertext no longer hashes to its CID, or no longer opens: never served."""


@dataclass(frozen=True)
class StoredEvent:
    """One event of a stored document; `height` is the block that recorded its hash
    (None: the ledger does not track it, or refused it)."""

    number: int
    event_hash: str
    biz_step: str
    event_time: str
    height: int | None
    epcs: tuple[tuple[str, str], ...] = ()  # (EPC as written, its ledger unit id)


@dataclass(frozen=True)
class NewDocument:
    """A document to keep: its bytes as received and what was learnt recording it."""

    document_id: str
    content: bytes
    media_type: str
    recorded_by: str  # the DID of the member who sent it
    received_ms: int
    events: tuple[StoredEvent, ...]
    parties: tuple[tuple[str, str], ...]  # (org id, basis), from chain state
    named: tuple[str, ...] = ()  # GS1 locations and parties its events name


@dataclass(frozen=True)
class DocumentInfo:
    """A stored document's description (not its content)."""

    document_id: str
    cid: str
    media_type: str
    size: int
    content_sm3: bytes
    recorded_by: str
    received_ms: int


@dataclass(frozen=True)
class EpcHit:
    """An event of a stored document that names an EPC."""

    document_id: str
    number: int
    event_hash: str
    biz_step: str
    event_time: str
    height: int | None


class EpcisStore:
    """One edge's sealed EPCIS documents. Writes are durable before a method returns."""

    def __init__(self, root: Path, custodian: crypto.KeyPair) -> None:
        self.root = root
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        self._custodian = custodian
        self._db = sqlite3.connect(
            root / "documents.db", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        migrate(self._db, root / "documents.db", MIGRATIONS)
        self._lock = threading.Lock()
        self._kek = self._load_kek()

    def _load_kek(self) -> bytes:
        path = self.root / "kek.sm2"
        if path.exists():
            return crypto.unwrap_key(self._custodian, path.read_bytes())
        kek = crypto.new_data_key()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(crypto.wrap_key(self._custodian.public, kek))
        os.replace(tmp, path)
        make_durable(self.root, [path])
        return kek

    def _rows(self, sql: str, args: tuple[object, ...]) -> list[Any]:
        """Every row of one read, fetched under the lock: the request threads share
        one connection, and no cursor stays open across another thread's write."""
        with self._lock:
            rows: list[Any] = self._db.execute(sql, args).fetchall()
        return rows

    def _blob_path(self, cid: str) -> Path:
        parse_cid(cid)  # also keeps path components out of file names
        return self.root / "blobs" / cid

    def add(self, new: NewDocument) -> DocumentInfo:
        """Seal and keep a document with its events, EPCs and parties; the blob is on
        disk before the rows that point at it are committed."""
        data_key = crypto.new_data_key()
        sealed = crypto.seal(data_key, new.content, new.document_id.encode())
        cid = cid_of(sealed)
        path = self._blob_path(cid)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(sealed)
        os.replace(tmp, path)
        make_durable(self.root / "blobs", [path])
        info = DocumentInfo(
            new.document_id,
            cid,
            new.media_type,
            len(new.content),
            crypto.sm3(new.content),
            new.recorded_by,
            new.received_ms,
        )
        with write_transaction(self._db, self._lock) as db:
            db.execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    info.document_id,
                    cid,
                    info.media_type,
                    info.size,
                    info.content_sm3,
                    crypto.seal(self._kek, data_key, cid.encode()),
                    info.recorded_by,
                    info.received_ms,
                ),
            )
            db.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (new.document_id, e.number, e.event_hash, e.biz_step, e.event_time, e.height)
                    for e in new.events
                ],
            )
            db.executemany(
                "INSERT INTO epcs VALUES (?, ?, ?, ?)",
                [
                    (epc, unit, new.document_id, e.number)
                    for e in new.events
                    for epc, unit in dict.fromkeys(e.epcs)
                ],
            )
            db.executemany(
                "INSERT OR IGNORE INTO named VALUES (?, ?)",
                [(new.document_id, identifier) for identifier in new.named],
            )
            db.executemany(
                "INSERT OR IGNORE INTO parties VALUES (?, ?, ?)",
                [(new.document_id, org, basis) for org, basis in new.parties],
            )
        return info

    def info(self, document_id: str) -> DocumentInfo:
        """A document's description; DocumentNotFound if there is none."""
        rows = self._rows(
            "SELECT document_id, cid, media_type, size, content_sm3, recorded_by, received_ms "
            "FROM documents WHERE document_id = ?",
            (document_id,),
        )
        if not rows:
            raise DocumentNotFound(f"no EPCIS document {document_id!r} here")
        r = rows[0]
        return DocumentInfo(str(r[0]), str(r[1]), str(r[2]), r[3], bytes(r[4]), str(r[5]), r[6])

    def content(self, document_id: str) -> bytes:
        """The document's bytes as received, only if its ciphertext is intact."""
        info = self.info(document_id)
        [(sealed_key,)] = self._rows(
            "SELECT data_key FROM documents WHERE document_id = ?", (document_id,)
        )
        try:
            sealed = self._blob_path(info.cid).read_bytes()
        except FileNotFoundError:
            raise TamperedDocument(f"the blob of document {document_id} is missing") from None
        if cid_of(sealed) != info.cid:
            raise TamperedDocument(f"the blob of document {document_id} does not match its CID")
        try:
            data_key = crypto.open_sealed(self._kek, bytes(sealed_key), info.cid.encode())
            content = crypto.open_sealed(data_key, sealed, document_id.encode())
        except crypto.DecryptionFailed:
            raise TamperedDocument(f"document {document_id} does not open") from None
        if crypto.sm3(content) != info.content_sm3:
            raise TamperedDocument(f"document {document_id} does not match its hash")
        return content

    def events(self, document_id: str) -> list[StoredEvent]:
        """The document's events in document order (without their EPCs)."""
        rows = self._rows(
            "SELECT number, event_hash, biz_step, event_time, height FROM events "
            "WHERE document_id = ? ORDER BY number",
            (document_id,),
        )
        return [StoredEvent(r[0], str(r[1]), str(r[2]), str(r[3]), r[4]) for r in rows]

    def parties(self, document_id: str) -> dict[str, list[str]]:
        """The organisations that took part in the document's events, each with the
        bases the chain gave for it (e.g. "recorded event 2", "shipment SH-1 to")."""
        found: dict[str, list[str]] = {}
        for org, basis in self._rows(
            "SELECT org_id, basis FROM parties WHERE document_id = ? ORDER BY org_id, basis",
            (document_id,),
        ):
            found.setdefault(str(org), []).append(str(basis))
        return found

    def names_any(self, document_id: str, identifiers: Collection[str]) -> bool:
        """Whether the document's events name any of these GS1 locations or parties."""
        wanted = list(identifiers)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT 1 FROM named WHERE document_id = ? AND identifier IN ({marks}) LIMIT 1"
            if self._rows(sql, (document_id, *chunk)):
                return True
        return False

    def naming(self, epc: str, unit: str, limit: int) -> list[EpcHit]:
        """Events that name an EPC (as written, or as its ledger unit id), newest
        document first; the caller filters by who may see each document."""
        rows = self._rows(
            "SELECT DISTINCT e.document_id, e.number, e.event_hash, e.biz_step, e.event_time, "
            "e.height, d.received_ms FROM epcs x "
            "JOIN events e ON e.document_id = x.document_id AND e.number = x.number "
            "JOIN documents d ON d.document_id = e.document_id "
            "WHERE x.epc = ? OR x.unit = ? "
            "ORDER BY d.received_ms DESC, e.document_id, e.number LIMIT ?",
            (epc, unit, limit),
        )
        return [EpcHit(str(r[0]), r[1], str(r[2]), str(r[3]), str(r[4]), r[5]) for r in rows]

    def count(self) -> int:
        """How many documents the store holds."""
        [(count,)] = self._rows("SELECT count(*) FROM documents", ())
        return int(count)

    def close(self) -> None:
        """Close the database (on edge shutdown and in tests)."""
        self._db.close()
