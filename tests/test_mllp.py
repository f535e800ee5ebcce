"""HL7 v2 over MLLP into a real edge on a solo node: every message gets an ACK that
says what happened to it, a resent message is not imported twice, and oversized,
unframed or endless input is refused without stopping the listener."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from support.consortium import Consortium, running_consortium
from support.ledger import DATA
from support.servers import free_port

from medchain.edge.mllp import END, START, MllpLimits, MllpServer
from medchain.fhir.hl7v2 import convert_message

HL7 = DATA / "hl7v2"
ADT = (HL7 / "ADT01-23.hl7").read_bytes()
ORU = (HL7 / "ORU-R01-RMGEAD.hl7").read_bytes()
ORM = (HL7 / "ORM-O01-medchain.hl7").read_bytes()
ADT_A04 = ADT.replace(b"ADT^A01|599102", b"ADT^A04|599104").replace(b"EVN|A01", b"EVN|A04")
LIMITS = MllpLimits(max_bytes=64_000, max_connections=3, idle_seconds=3.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path_factory.mktemp("mllp"))


@pytest.fixture(scope="module")
def mllp(world: Consortium) -> Iterator[MllpServer]:
    for raw in (ADT, ORU, ORM):  # the hospital linked these patients when they enrolled
        source = convert_message(raw).patient
        world.edge.link_patient(source.system, source.identifier, world.did("patient"))
    server = MllpServer(world.edge, "127.0.0.1", free_port(), LIMITS)
    server.start()
    yield server
    server.stop()


def connect(server: MllpServer) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=60)


def receive(conn: socket.socket) -> bytes:
    """One framed answer; b"" when the listener closed the connection."""
    data = b""
    while not data.endswith(END):
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    assert data.startswith(START)
    return data[1:-2]


def exchange(server: MllpServer, raw: bytes) -> bytes:
    with connect(server) as conn:
        conn.sendall(START + raw + END)
        return receive(conn)


def fields(ack: bytes, segment: str) -> list[str]:
    for line in ack.decode().split("\r"):
        if line.startswith(segment + "|"):
            return line.split("|")
    raise AssertionError(f"no {segment} in {ack!r}")


def test_hospital_messages_get_aa_ae_or_ar(world: Consortium, mllp: MllpServer) -> None:
    before = world.edge.vault.count()
    adt = exchange(mllp, ADT)
    msh, msa = fields(adt, "MSH"), fields(adt, "MSA")
    assert msa[1:3] == ["AA", "599102"]
    assert msh[2:6] == ["", "", "AccMgr", "1"] and msh[8] == "ACK^A01^ACK"

    oru = exchange(mllp, ORU)
    msh, msa = fields(oru, "MSH"), fields(oru, "MSA")
    assert msa[1:3] == ["AA", "CNTRL-3456"]
    assert msh[2:6] == ["GHH OE", "BLDG4", "GHH LAB", "ELAB-3"]
    imported = len(convert_message(ADT).resources) + len(convert_message(ORU).resources)
    assert world.edge.vault.count() == before + imported

    # ADT^A04 (register a patient) shares A01's structure: imported, AA (issue 15.5).
    a04 = fields(exchange(mllp, ADT_A04), "MSA")
    assert a04[1:3] == ["AA", "599104"]
    imported += len(convert_message(ADT_A04).resources)

    bad_date = ORU.replace(b"19620320", b"19621320").replace(b"CNTRL-3456", b"CNTRL-BAD")
    ack = exchange(mllp, bad_date)
    msa, err = fields(ack, "MSA"), fields(ack, "ERR")
    assert msa[1:3] == ["AE", "CNTRL-BAD"] and "PID-7" in msa[3]
    assert err[2] == "PID^1^7" and err[4] == "E"

    stranger = ORU.replace(b"555-44-4444", b"999-99-9999").replace(b"CNTRL-3456", b"CNTRL-NEW")
    ack = exchange(mllp, stranger)
    msa, err = fields(ack, "MSA"), fields(ack, "ERR")
    assert msa[1:3] == ["AE", "CNTRL-NEW"] and "link-patient" in msa[3]
    assert err[3].startswith("204^")

    unsupported = b"MSH|^~\\&|X|Y|Z|W|20240101||ADT^A03|77|P|2.5\rPID|1\r"
    ack = exchange(mllp, unsupported)
    msa, err = fields(ack, "MSA"), fields(ack, "ERR")
    assert msa[1:3] == ["AR", "77"] and err[3].startswith("200^")
    assert fields(exchange(mllp, b"hello, is this the lab?"), "MSA")[1] == "AR"
    assert world.edge.vault.count() == before + imported  # refusals stored nothing


def test_resent_message_is_not_imported_twice(world: Consortium, mllp: MllpServer) -> None:
    first = exchange(mllp, ORU)
    assert fields(first, "MSA")[1] == "AA"
    records = world.edge.vault.count()
    on_chain = len(world.node.patient_records(world.did("patient")))
    with connect(mllp) as conn:  # an interface engine resending on one connection
        for _ in range(3):
            conn.sendall(START + ORU + END)
            assert receive(conn) == first
    assert world.edge.vault.count() == records
    assert len(world.node.patient_records(world.did("patient"))) == on_chain
    assert (world.edge.vault.root / "mllp.db").exists() and mllp.acks.count() >= 1


def test_general_order_gets_aa_and_a_resend_imports_nothing_twice(
    world: Consortium, mllp: MllpServer
) -> None:
    """ORM^O01 (issue 15.5): its ServiceRequests are imported, AA; sent again, the same
    ACK and nothing new in the vault or on chain."""
    before = world.edge.vault.count()
    on_chain = len(world.node.patient_records(world.did("patient")))
    first = exchange(mllp, ORM)
    msh, msa = fields(first, "MSH"), fields(first, "MSA")
    assert msa[1:3] == ["AA", "ORM000123"] and msh[8] == "ACK^O01^ACK"
    converted = convert_message(ORM)
    assert {r["resourceType"] for r in converted.resources} >= {"ServiceRequest"}
    imported = world.edge.vault.count() - before
    assert imported == len(converted.resources)
    assert len(world.node.patient_records(world.did("patient"))) == on_chain + imported
    for _ in range(2):
        assert exchange(mllp, ORM) == first
    assert world.edge.vault.count() == before + imported
    assert len(world.node.patient_records(world.did("patient"))) == on_chain + imported


def test_oversized_unframed_and_idle_input_leave_the_listener_up(mllp: MllpServer) -> None:
    with connect(mllp) as conn:
        conn.sendall(START + b"MSH|^~\\&|X|Y" + b"A" * (LIMITS.max_bytes + 10) + END)
        msa = fields(receive(conn), "MSA")
        assert msa[1] == "AR" and "larger than" in msa[3]
        assert receive(conn) == b""  # and the rest of that frame is not read as messages
    with connect(mllp) as conn:
        conn.sendall(b"no start block" + END)
        assert "MLLP frame" in fields(receive(conn), "MSA")[3]
        conn.sendall(START + b"\x00\xff" * 100 + END)
        assert fields(receive(conn), "MSA")[1] == "AR"
    while mllp.open_connections:
        time.sleep(0.05)  # the closes above reach the listener
    held = [connect(mllp) for _ in range(LIMITS.max_connections)]
    try:
        for conn in held:  # each one answers, so each is counted by the listener
            conn.sendall(START + ORU + END)
            assert fields(receive(conn), "MSA")[1] == "AA"
        with connect(mllp) as extra:
            assert receive(extra) == b""  # one too many: closed at once
        assert receive(held[0]) == b""  # silent past idle_seconds: closed
    finally:
        for conn in held:
            conn.close()
    assert fields(exchange(mllp, ORU), "MSA")[1] == "AA"
