"""What the fuzzers call: one function per parser, its documented rejections, real seeds.

Shared by bench/fuzz.py (atheris, >= 1,000,000 inputs per target) and
tests/test_fuzz.py (hypothesis, a few thousand). A target takes one byte
string; it returns normally when the parser accepted the input, raises one of
its `rejections` when the parser refused it, and anything else is a crash:
a bug to fix in the parser.

Structured inputs are bytes too, so that the seeds are real samples and a
mutated input is still a plausible one:

- abci: a stream of length-prefixed ABCI requests, as CometBFT writes them.
- signed-request: an HTTP request as text, "METHOD PATH\\n", header lines
  "name: value\\n", an empty line, then the body (headers in latin-1, as HTTP).
- csv: first byte selects the mapping (even: lab results, odd: prescriptions).
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from google.protobuf.message import DecodeError as ProtobufDecodeError
from tendermint.abci import types_pb2 as abci

from medchain import crypto
from medchain.consensus.abci.server import AbciApplication
from medchain.consensus.abci.wire import FramingError, frame, read_message
from medchain.consensus.application import Application
from medchain.core.genesis import parse_genesis
from medchain.core.tx import build_tx, decode_tx, verify_signature
from medchain.exceptions import InvalidTransaction
from medchain.fhir.conversion import MappingError
from medchain.fhir.csv_map import CsvMapping, convert_csv, load_mapping
from medchain.fhir.hl7v2 import convert_message, split_messages
from medchain.sdk.signing import BadRequestSignature, sign_request, verify_request
from medchain.storage.chain_db import ChainDB

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
CHAIN_ID = "fuzz"
# The signed-request seeds are signed at this time and checked "now" = this time.
REQUEST_TIME_MS = 1_760_000_000_000
CSV_MAPPINGS = ("lab-result", "prescription")
CSV_FILES = ("lis_lab_results.csv", "his_prescriptions.csv")
# ABCI requests that only read (or only touch the check state); init_chain,
# finalize_block and commit change the chain and are driven by the engine tests.
ABCI_READ_ONLY = frozenset(
    {
        "echo",
        "flush",
        "info",
        "query",
        "check_tx",
        "list_snapshots",
        "offer_snapshot",
        "load_snapshot_chunk",
        "apply_snapshot_chunk",
        "prepare_proposal",
        "process_proposal",
        "extend_vote",
        "verify_vote_extension",
    }
)


@dataclass(frozen=True)
class Target:
    """One parser under fuzzing."""

    name: str
    what: str
    call: Callable[[bytes], None]
    rejections: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]  # valid inputs: each one is accepted


def run_one(target: Target, data: bytes) -> BaseException | None:
    """Feed one input; the exception if it crashed the parser, else None."""
    try:
        target.call(data)
    except target.rejections:
        return None
    except Exception as e:  # anything else is what we are looking for
        return e
    return None


# ---- baseline ---------------------------------------------------------------------


def _utf8(data: bytes) -> None:
    data.decode("utf-8")


def _no_seeds() -> list[bytes]:
    return [b"", "MedChain 医链".encode()]


# ---- tx decoder (strict canonical CBOR underneath) ----------------------------------


def _tx(data: bytes) -> None:
    tx = decode_tx(data)
    verify_signature(tx)


@cache
def _keys() -> tuple[crypto.KeyPair, crypto.KeyPair]:
    return crypto.generate_keypair(), crypto.generate_keypair("intl")


def _tx_seeds() -> list[bytes]:
    sm, intl = _keys()
    return [
        build_tx(
            sm,
            chain_id=CHAIN_ID,
            contract="identity",
            action="register_patient",
            payload={},
            nonce=0,
        ),
        build_tx(
            intl,
            chain_id=CHAIN_ID,
            contract="consent",
            action="grant",
            nonce=7,
            payload={
                "grantee": "did:medchain:abc",
                "scope": {"types": ["Observation"]},
                "purpose": "TREAT",
                "expires_ms": 2**40,
                "note": None,
                "ok": True,
                "blob": b"\x00\xff" * 8,
                "n": -5,
            },
        ),
    ]


# ---- ABCI framing and request decoding ----------------------------------------------


@cache
def _abci_app() -> AbciApplication:
    """A real application on a fresh chain in a temporary directory (kept for the run)."""
    directory = Path(tempfile.mkdtemp(prefix="medchain-fuzz-abci-"))
    app = Application(ChainDB(directory / "chain.db"))
    admin = _keys()[0]
    app.init_chain(
        parse_genesis(
            {
                "chain_id": CHAIN_ID,
                "genesis_time_ms": 0,
                "consortium_admins": [{"name": "root", "public_key": admin.public.hex()}],
            }
        )
    )
    return AbciApplication(app)


def _abci(data: bytes) -> None:
    app = _abci_app()
    stream = io.BytesIO(data)
    while (message := read_message(stream)) is not None:
        req = abci.Request()
        req.ParseFromString(message)
        kind = req.WhichOneof("value")
        if kind is None or kind in ABCI_READ_ONLY:
            app.handle(req)


def _abci_seeds() -> list[bytes]:
    sm, _ = _keys()
    tx = build_tx(
        sm, chain_id=CHAIN_ID, contract="identity", action="register_patient", payload={}, nonce=0
    )
    requests = [
        abci.Request(echo=abci.RequestEcho(message="hello")),
        abci.Request(info=abci.RequestInfo(version="0.38.26")),
        abci.Request(check_tx=abci.RequestCheckTx(tx=tx)),
        abci.Request(check_tx=abci.RequestCheckTx(tx=tx, type=abci.RECHECK)),
        abci.Request(query=abci.RequestQuery(path="/state", data=b"identity/x", prove=True)),
        abci.Request(prepare_proposal=abci.RequestPrepareProposal(max_tx_bytes=1 << 20, txs=[tx])),
        abci.Request(process_proposal=abci.RequestProcessProposal(txs=[tx, b"\xa0"], height=1)),
        abci.Request(flush=abci.RequestFlush()),
    ]
    framed = [frame(r.SerializeToString()) for r in requests]
    return [*framed, b"".join(framed)]


# ---- HL7 v2 -------------------------------------------------------------------------


def _hl7(data: bytes) -> None:
    for message in split_messages(data):
        convert_message(message)


def _hl7_seeds() -> list[bytes]:
    return [p.read_bytes() for p in sorted((DATA / "hl7v2").glob("*.hl7"))]


# ---- CSV ----------------------------------------------------------------------------


@cache
def _csv_mappings() -> tuple[CsvMapping, ...]:
    return tuple(load_mapping(name) for name in CSV_MAPPINGS)


def _csv(data: bytes) -> None:
    if not data:
        return
    mappings = _csv_mappings()
    convert_csv(data[1:], mappings[data[0] % len(mappings)])


def _csv_seeds() -> list[bytes]:
    return [bytes([i]) + (DATA / name).read_bytes() for i, name in enumerate(CSV_FILES)]


# ---- the edge's request signatures ---------------------------------------------------


def render_request(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """The byte form of one HTTP request the signed-request target reads."""
    lines = [f"{method} {path}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\n".join(lines).encode("latin-1") + body


def _signed_request(data: bytes) -> None:
    head, _, body = data.partition(b"\n\n")
    request_line, *lines = head.decode("latin-1").split("\n")
    method, _, path = request_line.partition(" ")
    headers = dict(line.partition(": ")[::2] for line in lines)
    verify_request(headers, CHAIN_ID, method, path, body, now_ms=REQUEST_TIME_MS)


def _signed_request_seeds() -> list[bytes]:
    seeds = []
    for key, purpose in zip(_keys(), ("", "TREAT"), strict=True):
        for method, path, body in (
            ("GET", "/v1/sessions/ab12/record", b""),
            ("POST", "/v1/records?patient=did%3Amedchain%3Ax", b'{"resourceType":"Patient"}'),
        ):
            headers = sign_request(
                key, CHAIN_ID, method, path, body, now_ms=REQUEST_TIME_MS, purpose=purpose
            )
            seeds.append(render_request(method, path, headers, body))
    return seeds


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "baseline",
            "bytes.decode('utf-8'): the fuzzer's own cost",
            _utf8,
            (UnicodeDecodeError,),
            _no_seeds,
        ),
        Target(
            "tx",
            "core.tx decode_tx + verify_signature (strict CBOR)",
            _tx,
            (InvalidTransaction,),
            _tx_seeds,
        ),
        Target(
            "abci",
            "ABCI framing, Request parsing, AbciApplication.handle",
            _abci,
            (FramingError, ProtobufDecodeError),
            _abci_seeds,
        ),
        Target(
            "hl7v2",
            "fhir.hl7v2 split_messages + convert_message",
            _hl7,
            (MappingError,),
            _hl7_seeds,
        ),
        Target(
            "csv",
            "fhir.csv_map convert_csv (lab, prescription mappings)",
            _csv,
            (MappingError,),
            _csv_seeds,
        ),
        Target(
            "signed-request",
            "sdk.signing verify_request (headers incl. signed purpose, body)",
            _signed_request,
            (BadRequestSignature,),
            _signed_request_seeds,
        ),
    )
}
