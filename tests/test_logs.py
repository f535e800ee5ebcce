"""Structured logs (issue 16 point 2): JSON lines with a request id on every line of a
request, the X-Request-Id round trip (a malformed or oversized one replaced), block
commits and refusals without payloads, a redaction filter as the last line of
defence, and the issue's test: a full demo run logged at debug holds none of the
demo's private keys (hex or PEM), passphrases, tokens or record content."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.consortium import PRESCRIPTION, REPORT, Consortium, fetch, running_consortium
from support.ledger import CHAIN_ID, Ledger
from support.servers import free_port

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.demo.run import DEMO_PASSPHRASE
from medchain.gateway.logs import accept_request_id, configure_logging, redact
from medchain.node import GatewayServer
from medchain.sdk.keystore import Keystore
from medchain.sdk.smart import backend_form, client_assertion, request_token

GENERATED_ID = re.compile(r"[0-9a-f]{16}")


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as a JSON object (a line that is not one fails the test)."""
    lines = [json.loads(line) for line in text.splitlines() if line]
    assert all(isinstance(line, dict) for line in lines)
    return lines


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """JSON logs at debug into a buffer; the logging setup before the test comes back."""
    root, medchain = logging.getLogger(), logging.getLogger("medchain")
    saved = (list(root.handlers), root.level, medchain.level)
    stream = io.StringIO()
    configure_logging("json", "debug", stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    medchain.setLevel(saved[2])


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, Ledger]]:
    """A solo node's gateway over real HTTP (uvicorn), and the ledger it serves."""
    ledger = Ledger(tmp_path / "chain.db", crypto.generate_keypair())
    engine = SoloEngine(ledger.app, block_interval=0.05)
    engine.start()
    server = GatewayServer(engine, port=free_port())
    server.start()
    yield server.url, ledger
    server.stop()
    engine.stop()


def access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in json_lines(stream.getvalue()) if line["logger"] == "medchain.access"]


def test_access_lines_are_json_with_request_id_route_template_status_and_duration(
    gateway: tuple[str, Ledger], log_stream: io.StringIO
) -> None:
    url, _ = gateway
    did = "did:medchain:sm:" + "ab" * 20
    r = httpx.get(f"{url}/v1/identity/dids/{did}", headers={"X-Request-Id": "trace-42.a:b"})
    assert r.status_code == 404
    assert r.headers["x-request-id"] == "trace-42.a:b"
    (line,) = [a for a in access_lines(log_stream) if a.get("request_id") == "trace-42.a:b"]
    assert line["route"] == "/v1/identity/dids/{did}" and line["status"] == 404
    assert line["method"] == "GET" and isinstance(line["duration_ms"], float)
    assert line["level"] == "info" and line["time"].endswith("+00:00")
    assert did not in log_stream.getvalue()  # the template, never the raw path


def test_request_id_is_generated_when_absent_and_differs_per_request(
    gateway: tuple[str, Ledger], log_stream: io.StringIO
) -> None:
    url, _ = gateway
    ids = [httpx.get(f"{url}/v1/status").headers["x-request-id"] for _ in range(2)]
    assert all(GENERATED_ID.fullmatch(i) for i in ids) and ids[0] != ids[1]
    logged = {a["request_id"] for a in access_lines(log_stream) if a["route"] == "/v1/status"}
    assert set(ids) <= logged


@pytest.mark.parametrize(
    "given",
    [
        "x" * 65,  # oversized
        "two words",
        "-leading-dash",
        'a"quote',
        "id}{json",
        "caf\u00e9",
        "",
    ],
)
def test_a_malformed_or_oversized_request_id_is_replaced(
    gateway: tuple[str, Ledger], log_stream: io.StringIO, given: str
) -> None:
    url, _ = gateway
    r = httpx.get(f"{url}/v1/status", headers={"X-Request-Id": given.encode("utf-8")})
    assert r.status_code == 200
    echoed = r.headers["x-request-id"]
    assert echoed != given and GENERATED_ID.fullmatch(echoed)
    # Other servers of the same test process may log too: look for this request's line.
    logged = [a["request_id"] for a in access_lines(log_stream)]
    assert echoed in logged and given not in logged


def test_two_request_ids_in_one_request_are_replaced(
    gateway: tuple[str, Ledger], log_stream: io.StringIO
) -> None:
    url, _ = gateway
    r = httpx.get(f"{url}/v1/status", headers=[("X-Request-Id", "one"), ("X-Request-Id", "two")])
    echoed = r.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(echoed)
    logged = [a["request_id"] for a in access_lines(log_stream)]
    assert echoed in logged and "one" not in logged and "two" not in logged
    assert accept_request_id(b"one") == "one"  # one well-formed id is kept


def test_refusals_are_logged_with_code_contract_and_action_but_no_payload(
    gateway: tuple[str, Ledger], log_stream: io.StringIO
) -> None:
    _, ledger = gateway
    stranger = crypto.generate_keypair()
    payload = {"org_id": "secret-hospital-name", "name": "x", "org_type": "hospital"}
    result = ledger.commit([ledger.tx(stranger, "identity", "register_org", payload)])
    assert result.tx_results[0].code != 0
    lines = [a for a in json_lines(log_stream.getvalue()) if a["logger"] == "medchain.chain"]
    (block,) = [a for a in lines if "txs" in a]
    assert (block["height"], block["txs"], block["refused"]) == (result.block.height, 1, 1)
    assert block["app_hash"] == result.app_hash.hex()[:16]
    (refusal,) = [a for a in lines if "code" in a]
    assert refusal["code"] == result.tx_results[0].code.name
    assert (refusal["contract"], refusal["action"]) == ("identity", "register_org")
    assert "secret-hospital-name" not in log_stream.getvalue()


def test_the_filter_redacts_what_looks_like_a_secret(log_stream: io.StringIO) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    private_hex = crypto.generate_keypair().private.hex()
    log = logging.getLogger("medchain.test")
    log.info("header Authorization: Bearer eyJhbGciOi.payload.sig-nature")
    log.info("opened with passphrase=%s", "hunter2-horse")
    log.warning("bad key %s", private_hex, extra={"detail": f"key {private_hex.upper()}"})
    try:
        raise ValueError(pem)
    except ValueError:
        log.exception("loading failed")
    text = log_stream.getvalue()
    for secret in ("eyJhbGciOi", "hunter2-horse", private_hex, private_hex.upper()):
        assert secret not in text
    assert pem.splitlines()[1] not in text
    assert text.count("[redacted]") >= 5
    assert redact("tx 0a1b2c and app hash prefix 0123456789abcdef") == (
        "tx 0a1b2c and app hash prefix 0123456789abcdef"
    )


def test_text_format_carries_the_request_id_and_fields() -> None:
    stream = io.StringIO()
    root, medchain = logging.getLogger(), logging.getLogger("medchain")
    saved = (list(root.handlers), root.level, medchain.level)
    try:
        configure_logging("text", "info", stream)
        logging.getLogger("medchain.test").info("hello", extra={"height": 7})
        logging.getLogger("medchain.test").debug("not shown")
        logging.info("a library's chatter on the root logger")  # dropped
        logging.warning("a library's warning")  # kept
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        medchain.setLevel(saved[2])
    line, warning = stream.getvalue().splitlines()
    assert line.endswith("INFO medchain.test hello height=7")
    assert warning.endswith("WARNING root a library's warning")
    with pytest.raises(ValueError, match="log format"):
        configure_logging("xml", "info", stream)
    with pytest.raises(ValueError, match="log level"):
        configure_logging("json", "loud", stream)


# -- the test: nothing secret or personal in the logs of real runs -----------


def encodings(secret: bytes) -> set[str]:
    """The ways a secret's bytes could be written into a log line."""
    return {
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
    }


def pem_lines(pem: bytes) -> set[str]:
    """The base64 body lines of a PEM (each would betray part of the key)."""
    return {line for line in pem.decode().splitlines() if line and not line.startswith("-----")}


def keystore_secrets(home: Path, passphrase: str) -> set[str]:
    """Every private key of the home's keystores (hex and base64) and of its TLS
    directory (the PEM files as stored, and unencrypted), decrypted with `passphrase`."""
    found: set[str] = set()
    for keys in home.rglob("keys"):
        store = Keystore(keys)
        for path in keys.glob("*.json"):
            found |= encodings(store.load(path.stem, passphrase).private)
    for path in home.rglob("*.key"):
        stored = path.read_bytes()
        found |= pem_lines(stored)
        key = serialization.load_pem_private_key(
            stored, passphrase.encode() if b"ENCRYPTED" in stored else None
        )
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        found |= encodings(key.private_numbers().private_value.to_bytes(32, "big"))
        found |= pem_lines(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return found


def leaked(log_text: str, secrets: set[str]) -> list[str]:
    return sorted(s[:12] + "…" for s in secrets if s in log_text)


def test_a_full_demo_run_logged_at_debug_holds_no_secret_or_record_content(
    tmp_path: Path,
) -> None:
    home = tmp_path / "demo"
    log_path = tmp_path / "demo.log"
    command = [
        sys.executable,
        "-m",
        "medchain.cli",
        "demo",
        "--home",
        str(home),
        "--port",
        str(free_port()),
        "--edge-port",
        str(free_port()),
        "--no-keep-running",
        "--log-format",
        "json",
        "--log-level",
        "debug",
    ]
    with log_path.open("w") as log_file:
        out = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            timeout=600,
            env={**os.environ, "COLUMNS": "200"},
        )
    text = log_path.read_text()
    assert out.returncode == 0, out.stdout + text[-3000:]
    lines = json_lines(text)
    loggers = {line["logger"] for line in lines}
    # the run was logged: requests, commits and the edge's exchanges
    assert {"medchain.access", "medchain.chain", "medchain.edge.exchange"} <= loggers
    secrets = keystore_secrets(home, DEMO_PASSPHRASE)
    assert len(secrets) > 40  # the demo's keys were found, so the grep means something
    assert leaked(text, secrets) == []
    # The demo's passphrase is also its chain id ("medchain-demo"): no line carries it.
    assert DEMO_PASSPHRASE not in text
    # Plaintext record content: distinctive strings of the demo's FHIR resources and
    # of the HL7 v2 message it imports (see medchain/demo/records.py and interop.py).
    for content in (
        "Hemoglobin A1c",
        "metformin hydrochloride",
        "500 mg once daily with the evening meal",
        "ZHANG^WEI",
        "PUMCH-000123",
        "Fasting glucose",
    ):
        assert content not in text, content


def smart_token(world: Consortium, who: str) -> str:
    url = world.edge_url + "/auth/token"
    assertion = client_assertion(world.keys[who], world.did(who), url, CHAIN_ID, "hosp-a")
    return str(request_token(url, backend_form(assertion, "system/*.rs"))["access_token"])


def test_smart_tokens_exchanges_and_record_content_stay_out_of_debug_logs(
    tmp_path: Path,
) -> None:
    """The demo has no SMART client: a consortium on real HTTP does the token flow,
    bearer reads, a refused read and an exchange, logged at debug."""
    log_path = tmp_path / "edge.log"
    root, medchain = logging.getLogger(), logging.getLogger("medchain")
    saved = (list(root.handlers), root.level, medchain.level)
    try:
        with log_path.open("w") as log_file:
            configure_logging("json", "debug", log_file)
            consortium = running_consortium(tmp_path)
            world = next(consortium)
            world.grant("doctor_b", ["DiagnosticReport"])
            token = smart_token(world, "doctor_b")
            headers = {"Authorization": f"Bearer {token}"}
            read = httpx.get(world.edge_url + "/fhir/DiagnosticReport/report-1", headers=headers)
            assert read.status_code == 200
            refused = httpx.get(world.edge_url + "/fhir/MedicationRequest/rx-1", headers=headers)
            assert refused.status_code == 403
            assert b"resourceType" in fetch(world, "doctor_b", "report-1")
            next(consortium, None)  # stops the servers
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        medchain.setLevel(saved[2])
    text = log_path.read_text()
    lines = json_lines(text)
    released = [line for line in lines if line["logger"] == "medchain.edge.exchange"]
    assert released and released[0]["record_id"] == "report-1"
    assert released[0]["requester"] == world.did("doctor_b")
    routes = {line.get("route") for line in lines if line["logger"] == "medchain.access"}
    assert "/auth/token" in routes
    secrets = {token} | set().union(*(encodings(k.private) for k in world.keys.values()))
    assert leaked(text, secrets) == []
    for content in (
        "CT brains: large tumor sphenoid/clivus",  # REPORT's conclusion
        "Patient told to take with food",  # PRESCRIPTION's note
        "Generated Narrative",  # both resources' text
    ):
        assert content.encode() in REPORT + PRESCRIPTION  # a string the records hold
        assert content not in text, content
