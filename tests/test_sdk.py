"""The Python SDK (issue 16.7): docs/sdk.md's examples run against a real solo node
and edge; retries with backoff for idempotent calls only, against a real local HTTP
server that fails on cue; Retry-After honoured; the context manager closes its
connections; typed payloads checked before anything is signed or sent."""

from __future__ import annotations

import email.utils
import io
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.consortium import REPORT, Consortium, running_consortium
from support.servers import free_port

import medchain
import medchain.client
from medchain import encoding
from medchain.client import (
    NO_RETRY,
    Client,
    ClientError,
    Keystore,
    PayloadError,
    RetryPolicy,
    checked_payload,
)
from medchain.contracts.consent.payloads import Grant, Revoke
from medchain.contracts.payload import decode_payload
from medchain.contracts.recognition.payloads import SetRulePayload as RecognitionRule
from medchain.contracts.supervision.payloads import SetRulePayload as SupervisionRule
from medchain.sdk.client import retry_after

REPO = Path(__file__).resolve().parents[1]
SDK_DOC = REPO / "docs" / "sdk.md"
PASSPHRASE = "sdk docs example passphrase"
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, budget=10.0)


# -- the documentation's examples ------------------------------------------------------


def python_blocks(markdown: str) -> list[str]:
    """The fenced ```python blocks of a Markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.S | re.M)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def test_the_sdk_docs_examples_run_against_a_real_node_and_edge(
    world: Consortium, tmp_path: Path
) -> None:
    blocks = python_blocks(SDK_DOC.read_text())
    assert len(blocks) >= 8, "docs/sdk.md lost its examples"
    keystore = Keystore(tmp_path / "keys")
    for name, who in (("patient", "patient"), ("doctor", "doctor_b"), ("hosp-a-admin", "admin_a")):
        keystore.save(name, world.keys[who], PASSPHRASE, iterations=1_000)
    namespace: dict[str, Any] = {
        "__name__": "sdk_docs",
        "NODE_URL": world.node.url,
        "EDGE_URL": world.edge_url,
        "KEYSTORE_DIR": keystore.directory,
        "PASSPHRASE": PASSPHRASE,
    }
    printed = io.StringIO()
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"docs/sdk.md python block {number}", "exec")
        with redirect_stdout(printed):
            exec(code, namespace)
    # What the examples did is on chain: the grant they made is in force for the doctor,
    # the pharmacist grant they made and revoked is not, and the doctor's reads are audited.
    grants = {g["grant_id"]: g for g in world.node.grants(world.did("patient"))}
    assert grants[namespace["grant_id"]]["in_force"]
    assert grants[namespace["grant_id"]]["grantee"] == world.did("doctor_b")
    assert not grants[namespace["pharmacist_grant"]]["in_force"]
    assert namespace["report"]["id"] == "report-1"
    fetched = json.loads(namespace["fetched"].plaintext)
    original = json.loads(REPORT)
    assert (fetched["resourceType"], fetched["id"], fetched["code"]) == (
        original["resourceType"],
        "report-1",  # the record id it was uploaded under
        original["code"],
    )
    audited = world.node.audit(actor=world.did("doctor_b"))["events"]
    kinds = [(e["kind"], e["record_id"], e["attributes"].get("via")) for e in audited]
    assert ("exchange.accessed", "report-1", "smart-token") in kinds
    assert ("exchange.acknowledged", "report-1", None) in kinds
    assert "WRONG_PAYLOAD_TYPE" in printed.getvalue()
    assert "refused: the value does not match the proof" in printed.getvalue()


# -- a real HTTP server that fails on cue ----------------------------------------------


@dataclass
class Script:
    """What the flaky server answers: `failures` answers of `status` (with Retry-After
    `retry_after` if set) before it answers 200; every request's arrival is recorded."""

    failures: int = 0
    status: int = 503
    retry_after: str | None = None
    seen: list[tuple[float, str, str]] = field(default_factory=list)
    connections_closed: int = 0
    closed: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


STATUS = {"chain_id": "sdk-test", "height": 7, "app_hash": "00", "last_block_time_ms": 0}


def flaky_handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so a closed client shows as an EOF

        def answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            with script.lock:
                script.seen.append((time.monotonic(), self.command, self.path))
                failing = len(script.seen) <= script.failures
            if failing:
                body = json.dumps({"error": {"code": "BUSY", "message": "try later"}}).encode()
                self.send_response(script.status)
                if script.retry_after is not None:
                    self.send_header("Retry-After", script.retry_after)
            else:
                body = json.dumps(STATUS if self.command == "GET" else {"done": True}).encode()
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self.answer()

        def do_POST(self) -> None:
            self.answer()

        def finish(self) -> None:
            super().finish()
            with script.lock:
                script.connections_closed += 1
            script.closed.set()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def flaky() -> Iterator[tuple[str, Script]]:
    script = Script()
    server = ThreadingHTTPServer(("127.0.0.1", 0), flaky_handler(script))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()
    server.server_close()


def test_a_read_is_retried_after_503_until_it_is_answered(flaky: tuple[str, Script]) -> None:
    url, script = flaky
    script.failures = 2
    with Client(url, retry=FAST) as client:
        assert client.status()["height"] == 7
    assert [(m, p) for _, m, p in script.seen] == [("GET", "/v1/status")] * 3


@pytest.mark.parametrize("status", [502, 504, 429])
def test_a_read_is_retried_on_each_transient_status(flaky: tuple[str, Script], status: int) -> None:
    url, script = flaky
    script.failures, script.status = 1, status
    with Client(url, retry=FAST) as client:
        assert client.status()["height"] == 7
    assert len(script.seen) == 2


def test_retries_are_bounded_and_the_last_answer_is_raised(flaky: tuple[str, Script]) -> None:
    url, script = flaky
    script.failures = 100
    with Client(url, retry=FAST) as client, pytest.raises(ClientError) as raised:
        client.status()
    assert raised.value.status == 503 and raised.value.code == "BUSY"
    assert len(script.seen) == FAST.attempts


def test_no_retry_switches_retries_off(flaky: tuple[str, Script]) -> None:
    url, script = flaky
    script.failures = 1
    with Client(url, retry=NO_RETRY) as client, pytest.raises(ClientError) as raised:
        client.status()
    assert raised.value.status == 503 and len(script.seen) == 1


def test_an_error_that_is_not_transient_is_not_retried(flaky: tuple[str, Script]) -> None:
    url, script = flaky
    script.failures, script.status = 1, 500
    with Client(url, retry=FAST) as client, pytest.raises(ClientError) as raised:
        client.status()
    assert raised.value.status == 500 and len(script.seen) == 1


def test_a_non_idempotent_post_is_sent_once(flaky: tuple[str, Script]) -> None:
    url, script = flaky
    script.failures = 1
    with Client(url, retry=FAST) as client:
        with pytest.raises(ClientError) as raised:
            client.post("/v1/anything", {"n": 1})
        assert raised.value.status == 503
        assert [(m, p) for _, m, p in script.seen] == [("POST", "/v1/anything")]
        # The same call declared idempotent by its caller is retried like a read.
        script.failures = len(script.seen) + 2
        assert client.post("/v1/anything", {"n": 2}, idempotent=True) == {"done": True}
    assert [m for _, m, _ in script.seen] == ["POST"] * 4


def refusing_port() -> tuple[socket.socket, int]:
    """A bound port that does not listen yet: connecting to it is refused."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", free_port()))
    return sock, sock.getsockname()[1]


def test_a_read_is_retried_while_the_connection_is_refused() -> None:
    sock, port = refusing_port()
    url = f"http://127.0.0.1:{port}"
    with Client(url, retry=NO_RETRY) as client, pytest.raises(ClientError) as raised:
        client.status()  # nothing listens: refused, and not retried
    assert raised.value.code == "UNREACHABLE"
    script = Script()
    sock.close()
    server = ThreadingHTTPServer(("127.0.0.1", port), flaky_handler(script), False)
    server.allow_reuse_address = True
    server.daemon_threads = True
    server.server_bind()

    def listen_later() -> None:
        time.sleep(0.5)  # the client's first tries are refused meanwhile
        server.server_activate()
        server.serve_forever()

    threading.Thread(target=listen_later, daemon=True).start()
    patient = RetryPolicy(attempts=100, base_delay=0.05, max_delay=0.2, budget=60.0)
    try:
        with Client(url, retry=patient) as client:
            assert client.status()["height"] == 7
        assert len(script.seen) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_a_non_idempotent_post_is_not_retried_when_refused() -> None:
    sock, port = refusing_port()
    try:
        with Client(f"http://127.0.0.1:{port}", retry=FAST) as client:
            with pytest.raises(ClientError) as raised:
                client.post("/v1/anything", {"n": 1})
            assert raised.value.code == "UNREACHABLE"
    finally:
        sock.close()


def test_retry_after_is_waited_for(flaky: tuple[str, Script]) -> None:
    url, script = flaky
    script.failures, script.status, script.retry_after = 1, 429, "1"
    tiny = RetryPolicy(attempts=3, base_delay=0.001, max_delay=5.0, jitter=False)
    with Client(url, retry=tiny) as client:
        assert client.status()["height"] == 7
    (first, _, _), (second, _, _) = script.seen
    assert second - first >= 1.0  # the second try came after the asked second, not 2 ms


def test_a_retry_after_longer_than_the_policy_allows_is_raised_not_waited(
    flaky: tuple[str, Script],
) -> None:
    url, script = flaky
    script.failures, script.status, script.retry_after = 1, 503, "3600"
    with Client(url, retry=FAST) as client, pytest.raises(ClientError) as raised:
        client.status()
    assert raised.value.status == 503 and len(script.seen) == 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    def answer(value: str) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": value})

    assert retry_after(answer("7")) == 7.0
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 60.0 < (retry_after(answer(later)) or 0.0) <= 120.0
    assert retry_after(answer(email.utils.formatdate(time.time() - 60, usegmt=True))) == 0.0
    assert retry_after(answer("soon")) is None
    assert retry_after(httpx.Response(503)) is None


def test_a_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="seconds"):
        RetryPolicy(base_delay=-1.0)


def test_backoff_grows_exponentially_up_to_its_cap_with_jitter_inside() -> None:
    import random

    plain = RetryPolicy(base_delay=0.1, max_delay=1.0, jitter=False)
    assert [plain.backoff(n, random.Random(1)) for n in range(6)] == [
        0.1,
        0.2,
        0.4,
        0.8,
        1.0,
        1.0,
    ]
    jittered = RetryPolicy(base_delay=0.1, max_delay=1.0)
    rng = random.Random(7)
    waits = [jittered.backoff(3, rng) for _ in range(50)]
    assert all(0.4 <= w <= 0.8 for w in waits) and len(set(waits)) > 1


# -- tx submission: idempotent by its tx id ---------------------------------------------


@dataclass
class LossyProxy:
    """A real HTTP proxy in front of a node that, for the first `lose` tx submissions,
    passes the tx on and then loses the node's answer (502 to the client): the case
    where resending blindly would be wrong for anything but a signed tx."""

    upstream: str
    lose: int
    submissions: list[int] = field(default_factory=list)  # the node's status per POST /v1/txs

    def handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                answer = httpx.request(
                    self.command, proxy.upstream + self.path, content=body, headers=headers
                )
                lost = False
                if self.command == "POST" and self.path.startswith("/v1/txs?"):
                    proxy.submissions.append(answer.status_code)
                    lost = len(proxy.submissions) <= proxy.lose
                content = b"" if lost else answer.content
                self.send_response(502 if lost else answer.status_code)
                kind = answer.headers.get("content-type", "application/json")
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def do_GET(self) -> None:
                self.relay()

            def do_POST(self) -> None:
                self.relay()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def test_a_signed_tx_whose_answer_was_lost_is_resent_and_committed_once(
    world: Consortium,
) -> None:
    proxy = LossyProxy(world.node.url, lose=1)
    server = ThreadingHTTPServer(("127.0.0.1", 0), proxy.handler())
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    key = world.keys["patient"]
    nonce = world.node.account(key)["next_nonce"]
    try:
        with Client(f"http://127.0.0.1:{server.server_address[1]}", retry=FAST) as client:
            revoke = Revoke(grant_id="no-such-grant")
            raw = client.sign_action(key, "consent", "revoke", revoke)
            result = client.submit_raw(raw)
    finally:
        server.shutdown()
        server.server_close()
    # The node took the tx the first time; the resend was recognised as the same tx.
    assert proxy.submissions[0] == 202 and len(proxy.submissions) == 2
    assert proxy.submissions[1] == 409, proxy.submissions  # DUPLICATE_TX or BAD_NONCE
    assert result["status"] == "committed" and result["code_name"] == "NOT_FOUND", result
    assert world.node.tx(result["tx_id"])["height"] == result["height"]
    assert world.node.account(key)["next_nonce"] == nonce + 1  # committed once


# -- the context manager ---------------------------------------------------------------


def test_leaving_the_with_block_closes_the_connection(flaky: tuple[str, Script]) -> None:
    url, script = flaky
    with Client(url) as client:
        client.status()
        client.status()
        assert script.connections_closed == 0  # one kept-alive connection, still open
        assert not client.closed
    assert script.closed.wait(10), "the server never saw the connection close"
    assert script.connections_closed == 1 and len(script.seen) == 2
    assert client.closed
    with pytest.raises(ClientError) as raised:
        client.status()
    assert raised.value.code == "CLIENT_CLOSED" and len(script.seen) == 2


# -- typed action payloads -------------------------------------------------------------

GRANT = Grant(
    patient="did:medchain:patient",
    grantee_kind="did",
    grantee="did:medchain:doctor",
    purposes=("TREAT",),
    scope_types=("DiagnosticReport",),
    expires_ms=1,
)


def test_a_wrong_payload_type_is_refused_before_signing(flaky: tuple[str, Script]) -> None:
    url, script = flaky
    key = medchain.crypto.generate_keypair()
    with Client(url) as client:
        with pytest.raises(PayloadError) as raised:
            client.submit_action(key, "consent", "grant", Revoke(grant_id="g"))
        assert raised.value.code == "WRONG_PAYLOAD_TYPE"
        assert "consent.payloads.Grant" in str(raised.value)
        # Same class name, another contract: the type itself must match.
        assert RecognitionRule.__name__ == SupervisionRule.__name__
        rule = SupervisionRule(rule="break_glass", enabled=True)
        with pytest.raises(PayloadError) as raised:
            client.sign_action(key, "recognition", "set_rule", rule)
        assert raised.value.code == "WRONG_PAYLOAD_TYPE"
    # Signing needs the chain id and the key's nonce from the node: nothing was asked.
    assert script.seen == []


def test_a_payload_the_contract_would_refuse_is_refused_before_signing() -> None:
    wrong_purpose = Grant(
        patient="p",
        grantee_kind="did",
        grantee="d",
        purposes=("SHOPPING",),  # type: ignore[arg-type]
        scope_types=("DiagnosticReport",),
        expires_ms=1,
    )
    with pytest.raises(PayloadError) as raised:
        checked_payload("consent", "grant", wrong_purpose)
    assert raised.value.code == "INVALID_PAYLOAD" and "purposes" in raised.value.message
    with pytest.raises(PayloadError) as raised:
        checked_payload("consent", "grant", {"patient": "p"})
    assert raised.value.code == "INVALID_PAYLOAD" and "grantee" in raised.value.message
    with pytest.raises(PayloadError) as raised:
        checked_payload("consent", "grant", {**checked_payload("consent", "grant", GRANT), "x": 1})
    assert raised.value.code == "INVALID_PAYLOAD"
    with pytest.raises(PayloadError) as raised:
        checked_payload("consent", "grant", ["not", "a", "map"])  # type: ignore[arg-type]
    assert raised.value.code == "WRONG_PAYLOAD_TYPE"
    for contract, action in (("consent", "grnt"), ("nosuch", "grant")):
        with pytest.raises(PayloadError) as raised:
            checked_payload(contract, action, GRANT)
        assert raised.value.code == "UNKNOWN_ACTION"
    with pytest.raises(PayloadError):
        checked_payload("consent", "grant", GRANT, version=2)


def test_a_typed_payload_becomes_the_map_the_chain_decodes() -> None:
    body = checked_payload("consent", "grant", GRANT)
    as_json = {
        "patient": "did:medchain:patient",
        "grantee_kind": "did",
        "grantee": "did:medchain:doctor",
        "purposes": ["TREAT"],
        "expires_ms": 1,
        "scope_records": [],
        "scope_types": ["DiagnosticReport"],
    }
    assert encoding.encode(body) == encoding.encode(as_json)  # the same CBOR on chain
    assert decode_payload(encoding.decode(encoding.encode(body)), Grant) == GRANT
    assert checked_payload("consent", "grant", as_json) == as_json  # a map, checked alike


# -- the package face -------------------------------------------------------------------


def test_medchain_client_exports_the_sdk_and_ships_its_type_hints() -> None:
    for name in medchain.client.__all__:
        assert getattr(medchain.client, name) is not None, name
    assert medchain.client.Client is Client
    package = Path(medchain.__file__).parent
    assert (package / "py.typed").is_file()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^"medchain" = \[[^\]]*"py\.typed"', pyproject, flags=re.M)


def test_a_batch_of_typed_payloads_is_checked_before_any_is_signed(
    flaky: tuple[str, Script],
) -> None:
    url, script = flaky
    key = medchain.crypto.generate_keypair()
    calls = [("consent", "grant", GRANT), ("consent", "revoke", GRANT)]
    with Client(url) as client, pytest.raises(PayloadError) as raised:
        client.sign_batch(key, calls)
    assert raised.value.code == "WRONG_PAYLOAD_TYPE" and "consent.revoke" in str(raised.value)
    assert script.seen == []  # not even the nonce was asked for
