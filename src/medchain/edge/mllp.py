"""HL7 v2 as hospitals send it: an MLLP listener at the custodian's edge.

Each MLLP frame (0x0B message 0x1C 0x0D) holds one message; each gets an
original-mode ACK in a frame of its own, in the sender's delimiters, with the
sending and receiving application/facility swapped and MSH-10 echoed in MSA-2:

  AA  imported (or imported before: the ACK then is the one sent the first time)
  AE  understood but refused: a field the mapping cannot map, a patient the
      edge cannot link to a DID, a record the edge or chain turned away
  AR  not a message this edge takes: bad framing or MSH, unsupported type, too
      large, or the edge cannot reach its node (send it again later)

Refusals say why in MSA-3 and in an ERR segment (HL7 table 0357 code, location).
Messages go through the same conversion as `medchain import hl7`
(medchain.fhir.hl7v2), so what MLLP imports attests the same mapping.

Idempotent per sending facility (MSH-4, else MSH-3) and MSH-10: the ACK of every
imported message is kept in `mllp.db` beside the vault, and a resent message is
answered from there without importing it again. Refused messages are not kept,
so a hospital can fix the cause (e.g. link the patient) and send them again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hl7.mllp import InvalidBlockError, start_hl7_server  # type: ignore[import-untyped, unused-ignore]

from medchain.edge.custodian import CustodianEdge, EdgeError
from medchain.edge.importer import import_conversions
from medchain.fhir.conversion import MappingError
from medchain.fhir.hl7v2 import convert_message, split_messages
from medchain.fhir.hl7v2.message import decode
from medchain.fhir.hl7v2.tables import CHARSETS
from medchain.sdk.client import ClientError
from medchain.sqlite_schema import migrate

log = logging.getLogger(__name__)

DEFAULT_MLLP_PORT = 2575  # the port IANA registered for HL7 over MLLP
START, END = b"\x0b", b"\x1c\x0d"
_STANDARD_DELIMITERS = "|^~\\&"
_WHERE = re.compile(r"([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?-(\d+)(?:\.(\d+))?")
# HL7 table 0357, message error condition codes.
REQUIRED_FIELD_MISSING, DATA_TYPE_ERROR = "101", "102"
UNSUPPORTED_MESSAGE_TYPE, UNKNOWN_KEY, INTERNAL_ERROR = "200", "204", "207"
_CODE_TEXT = {
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNKNOWN_KEY: "Unknown key identifier",
    INTERNAL_ERROR: "Application internal error",
}


@dataclass(frozen=True)
class MllpLimits:
    """What one listener takes: bytes per message, open connections, idle seconds."""

    max_bytes: int = 1_000_000
    max_connections: int = 16
    idle_seconds: float = 60.0


@dataclass(frozen=True)
class Refusal:
    """Why a message was not imported: ACK code (AE/AR), table 0357 code, where, text."""

    ack_code: str
    error_code: str
    text: str
    where: str = ""


@dataclass(frozen=True)
class Header:
    """The MSH fields an ACK copies, raw (still escaped), in the sender's delimiters."""

    delimiters: str
    fields: tuple[str, ...]  # fields[n] is MSH-n for n >= 2; fields[1] is unused
    codec: str

    def field(self, n: int) -> str:
        """MSH-n as written, "" when absent."""
        return self.fields[n] if n < len(self.fields) else ""

    def component(self, n: int, c: int = 1) -> str:
        """Component `c` of MSH-n as written."""
        parts = self.field(n).split(self.delimiters[1])
        return parts[c - 1] if c <= len(parts) else ""

    @property
    def control_id(self) -> str:
        """MSH-10, the message control id the ACK echoes in MSA-2."""
        return self.field(10).strip()

    @property
    def facility(self) -> str:
        """Who sent it: MSH-4.1, else MSH-3.1 (the key idempotency is kept under)."""
        return (self.component(4) or self.component(3)).strip()


def read_header(raw: bytes) -> Header | None:
    """The MSH of a frame's message, leniently (an ACK must go back even for a message
    the mapping refuses); None when there is no MSH to answer in."""
    body = raw.lstrip(b"\x0b").removeprefix(b"\xef\xbb\xbf")
    line = re.split(rb"[\r\n]", body, maxsplit=1)[0]
    if not line.startswith(b"MSH") or len(line) < 8:
        return None
    try:
        text, codec = decode(raw), CHARSETS[_charset(line)]
    except MappingError:
        text, codec = line.decode("latin-1"), "latin-1"
    first = re.split(r"[\r\n]", text.lstrip("\x0b\ufeff"), maxsplit=1)[0]
    delimiters = first[3:8]
    if len(delimiters) < 4 or len(set(delimiters)) != len(delimiters) or delimiters[0].isalnum():
        return None
    if len(delimiters) == 4 or delimiters[4] == delimiters[0]:
        delimiters = delimiters[:4] + "&"
    fields = first.split(delimiters[0])
    return Header(delimiters, (fields[0], delimiters[0], *fields[1:]), codec)


def _charset(line: bytes) -> str:
    fields = line.split(line[3:4])
    value = fields[17] if len(fields) > 17 else b""
    return value.split(line[5:6])[0].decode("ascii", "replace").strip().upper()


def _escape(text: str, delimiters: str) -> str:
    field_sep, component, repetition, escape, sub = tuple(delimiters)
    out = text.replace(escape, f"{escape}E{escape}")
    for char, code in ((field_sep, "F"), (component, "S"), (repetition, "R"), (sub, "T")):
        out = out.replace(char, f"{escape}{code}{escape}")
    return " ".join(out.split("\r"))


def _location(where: str, component: str) -> str:
    """MappingError's "OBX[3]-5" / "PID-11.3" as an ERL: segment^sequence^field^^component."""
    match = _WHERE.fullmatch(where)
    if match is None:
        return ""
    segment, sequence, field_no, comp = match.groups()
    parts = [segment, sequence or "1", field_no, "", comp or ""]
    return component.join(parts).rstrip(component)


def build_ack(header: Header | None, refusal: Refusal | None = None) -> bytes:
    """An original-mode ACK to the message `header` heads (a bare one if it had no MSH):
    AA, or the refusal's code with its reason in MSA-3 and ERR."""
    h = header or Header(_STANDARD_DELIMITERS, ("MSH", "|", _STANDARD_DELIMITERS[1:]), "ascii")
    sep, comp = h.delimiters[0], h.delimiters[1]
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    msh = [
        "MSH",
        h.delimiters[1:],
        h.field(5),
        h.field(6),
        h.field(3),
        h.field(4),
        now,
        "",
        comp.join(["ACK", h.component(9, 2), "ACK"]),
        uuid.uuid4().hex[:20],
        h.field(11) or "P",
        h.field(12) or "2.5",
    ]
    if h.field(18):
        msh += [""] * 5 + [h.field(18)]
    code = "AA" if refusal is None else refusal.ack_code
    msa = ["MSA", code, _escape(h.control_id, h.delimiters)]
    segments = [msh, msa]
    if refusal is not None:
        text = _escape(refusal.text, h.delimiters)
        msa.append(text)
        error = comp.join([refusal.error_code, _CODE_TEXT[refusal.error_code], "HL70357"])
        segments.append(["ERR", "", _location(refusal.where, comp), error, "E", "", "", "", text])
    text = "\r".join(sep.join(s) for s in segments) + "\r"
    return text.encode(h.codec, "replace")


# Schema versions of mllp.db (medchain/sqlite_schema.py); 1: the acks table.
ACK_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS acks (facility TEXT NOT NULL, control_id TEXT NOT NULL,"
    " ack BLOB NOT NULL, PRIMARY KEY (facility, control_id));",
)


class AckLog:
    """The ACKs of imported messages by (sending facility, MSH-10), in SQLite."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        migrate(self._db, path, ACK_MIGRATIONS)
        self._lock = threading.Lock()

    def get(self, facility: str, control_id: str) -> bytes | None:
        """The ACK sent when this message was imported, if it was."""
        with self._lock:
            row = self._db.execute(
                "SELECT ack FROM acks WHERE facility = ? AND control_id = ?",
                (facility, control_id),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, facility: str, control_id: str, ack: bytes) -> None:
        """Keep the ACK of a message just imported (durable before it is sent)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO acks VALUES (?, ?, ?)", (facility, control_id, ack)
            )

    def count(self) -> int:
        """How many imported messages are remembered."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM acks").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def _mapping_refusal(error: MappingError) -> Refusal:
    if error.where.startswith("MSH"):
        code = UNSUPPORTED_MESSAGE_TYPE if error.where == "MSH-9" else DATA_TYPE_ERROR
        return Refusal("AR", code, str(error), error.where)
    code = REQUIRED_FIELD_MISSING if "missing" in error.reason else DATA_TYPE_ERROR
    return Refusal("AE", code, f"{error}; nothing was imported", error.where)


class Acknowledger:
    """Imports one message at a time into `edge` and says how in an ACK."""

    def __init__(self, edge: CustodianEdge, acks: AckLog) -> None:
        self.edge = edge
        self.acks = acks
        self._lock = threading.Lock()

    def answer(self, raw: bytes) -> bytes:
        """The ACK for one message (the frame's content): imports it unless it was."""
        header = read_header(raw)
        if header is None:
            why = "the frame does not hold an HL7 v2 message starting with MSH"
            return build_ack(None, Refusal("AR", DATA_TYPE_ERROR, why, "MSH"))
        if not header.control_id:
            why = "MSH-10 (message control id) is empty"
            return build_ack(header, Refusal("AR", REQUIRED_FIELD_MISSING, why, "MSH-10"))
        with self._lock:  # a resend on another connection waits for the first to finish
            before = self.acks.get(header.facility, header.control_id)
            if before is not None:
                return before
            refusal = self._import(raw)
            if refusal is not None:
                return build_ack(header, refusal)
            ack = build_ack(header)
            self.acks.put(header.facility, header.control_id, ack)
            return ack

    def _import(self, raw: bytes) -> Refusal | None:
        try:
            if len(split_messages(raw)) != 1:
                why = "one message per MLLP frame; this frame holds several MSH segments"
                return Refusal("AR", DATA_TYPE_ERROR, why, "MSH")
            conversion = convert_message(raw)
        except MappingError as e:
            return _mapping_refusal(e)
        try:
            report = import_conversions(self.edge, [conversion], None)
        except EdgeError as e:
            return Refusal("AE", INTERNAL_ERROR, f"{e.code}: {e}")
        except ClientError as e:
            why = f"the edge cannot reach its node ({e}); send the message again later"
            return Refusal("AR", INTERNAL_ERROR, why)
        if report.unresolved:
            why = (
                f"unknown patient {report.unresolved[0]}; link the patient's identifier"
                " to their DID (medchain import link-patient), then send it again"
            )
            return Refusal("AE", UNKNOWN_KEY, why, "PID-3")
        refused = [f"{rid}: {why}" for i in report.patients.values() for rid, why in i.rejected]
        if refused:
            return Refusal("AE", INTERNAL_ERROR, "; ".join(refused))
        return None


class MllpServer:
    """The MLLP listener on a background thread with its own event loop."""

    def __init__(
        self,
        edge: CustodianEdge,
        host: str = "127.0.0.1",
        port: int = DEFAULT_MLLP_PORT,
        limits: MllpLimits = MllpLimits(),
        acks: AckLog | None = None,
    ) -> None:
        self.acks = acks or AckLog(edge.vault.root / "mllp.db")
        self.acknowledger = Acknowledger(edge, self.acks)
        self.host, self.port, self.limits = host, port, limits
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mllp", daemon=True)

    @property
    def address(self) -> str:
        """host:port, as a hospital's interface engine is configured with it."""
        return f"{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        """Connections being served now."""
        return len(self._writers)

    def start(self, timeout: float = 15.0) -> None:
        """Listen, and return once the socket is bound (OSError if the port is taken)."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_hl7_server(self._serve, self.host, self.port, limit=self.limits.max_bytes),
            self._loop,
        )
        self._server = future.result(timeout)

    def stop(self) -> None:
        """Close the listener and every connection, then the ACK log."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            await asyncio.sleep(0.1)  # let each connection's task see its close

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self.acks.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= self.limits.max_connections:
            writer.close()
            return
        self._writers.add(writer)
        try:
            await self._converse(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                read = reader.readblock()  # type: ignore[attr-defined]
                block = await asyncio.wait_for(read, self.limits.idle_seconds)
            except ValueError:  # past the limit: the rest of the frame cannot be told apart
                size = self.limits.max_bytes
                why = f"message larger than {size} bytes; split it or raise --max-bytes"
                await self._send(writer, build_ack(None, Refusal("AR", INTERNAL_ERROR, why)))
                return
            except InvalidBlockError:
                why = "not an MLLP frame: a message starts with 0x0B and ends with 0x1C 0x0D"
                await self._send(writer, build_ack(None, Refusal("AR", DATA_TYPE_ERROR, why)))
                continue
            try:
                ack = await asyncio.to_thread(self.acknowledger.answer, bytes(block))
            except Exception:  # one bad message must not take the listener down
                log.exception("MLLP message could not be answered")
                why = "the edge failed on this message; send it again later"
                ack = build_ack(read_header(bytes(block)), Refusal("AR", INTERNAL_ERROR, why))
            await self._send(writer, ack)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, ack: bytes) -> None:
        writer.write(START + ack + END)
        await writer.drain()
