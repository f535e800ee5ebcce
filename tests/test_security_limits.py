"""Issue 12, findings 4, 6, 10 and parts of 11: what a stranger can make a node's
gateway or an edge do. Real servers on free ports, real sockets, real clients."""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from support.ledger import CHAIN_ID, DATA, Ledger, did_of, patient_registration
from support.servers import free_port

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.edge.custodian import MAX_RECORD_BYTES, CustodianEdge
from medchain.edge.vault import Vault
from medchain.gateway.limits import MAX_JSON_DEPTH, NODE_RULES, Limits, check_json_depth
from medchain.node import EdgeServer, GatewayServer
from medchain.sdk.client import Client
from medchain.sdk.keystore import Keystore, KeystoreError
from medchain.sdk.signing import sign_request, with_query

REPORT = (DATA / "fhir" / "spec-examples" / "DiagnosticReport-f201.json").read_bytes()
GENEROUS = Limits(concurrency=500, max_waits=500, max_wait_seconds=30.0)


@dataclass
class Node:
    ledger: Ledger
    engine: SoloEngine
    gateway: GatewayServer

    @property
    def url(self) -> str:
        return self.gateway.url


def serve(
    tmp_path: Path,
    limits: Limits,
    produce: bool = True,
    operators: frozenset[tuple[str, bytes]] = frozenset(),
) -> Node:
    """A solo chain behind a real gateway with `limits`; `produce=False` leaves block
    making to the test (engine.produce_block), so txs stay pending as long as it likes."""
    ledger = Ledger(tmp_path / "chain.db", crypto.generate_keypair())
    engine = SoloEngine(ledger.app, block_interval=0.02)
    if produce:
        engine.start()
    gateway = GatewayServer(engine, port=free_port(), operators=operators, limits=limits)
    gateway.start()
    return Node(ledger, engine, gateway)


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for n in started:
        n.gateway.stop()
        n.engine.stop()


def from_address(address: str) -> httpx.Client:
    """A client whose connections come from `address` (another loopback address): to
    the server, another client."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=15)


def error_of(r: httpx.Response) -> dict[str, str]:
    body = r.json()
    assert isinstance(body, dict) and "error" in body, body
    return dict(body["error"])


# -- finding 4: waits ---------------------------------------------------------------


def test_sixty_open_waits_leave_status_and_submission_answered(
    tmp_path: Path, node_factory: list[Node]
) -> None:
    """60 waits on pending txs are open (no block is made meanwhile), from real HTTP
    connections; /v1/status and a submission are still answered, and every wait
    then ends with its committed result once the block comes."""
    node = serve(tmp_path, GENEROUS, produce=False)
    node_factory.append(node)
    raws = [patient_registration(CHAIN_ID) for _ in range(60)]
    ids = [node.engine.submit(raw).tx_id.hex() for raw in raws]

    async def scenario() -> list[dict[str, str]]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=node.url, timeout=60, limits=limits) as http:
            waits = [
                asyncio.create_task(
                    http.post("/v1/txs/wait", params={"timeout": 30}, json={"tx_ids": [i]})
                )
                for i in ids
            ]
            deadline = time.monotonic() + 20
            while node.gateway.limiter.waits.held() < 60:
                assert time.monotonic() < deadline, node.gateway.limiter.waits.held()
                await asyncio.sleep(0.02)
            status = await http.get("/v1/status", timeout=10)
            extra = patient_registration(CHAIN_ID)
            submitted = await http.post("/v1/txs", json={"tx": extra.hex()}, timeout=10)
            assert status.status_code == 200 and status.json()["mempool_size"] == 60
            assert submitted.status_code == 202 and submitted.json()["status"] == "pending"
            assert node.gateway.limiter.waits.held() == 60  # all still open meanwhile
            assert not any(w.done() for w in waits)
            txs = node.engine.mempool.take(1000, 10**9)
            await asyncio.to_thread(node.engine.produce_block, txs)
            answers = await asyncio.gather(*waits)
        return [a.json()[0] for a in answers]

    results = asyncio.run(scenario())
    assert [r["tx_id"] for r in results] == ids
    assert {r["status"] for r in results} == {"committed"}


def test_unknown_tx_ids_are_answered_at_once(tmp_path: Path, node_factory: list[Node]) -> None:
    """Ids neither pending nor committed are not waited for: the answer says
    `unknown` without holding the 60 s the client asked for."""
    node = serve(tmp_path, GENEROUS)
    node_factory.append(node)
    unknown = [os.urandom(32).hex() for _ in range(5)]
    r = httpx.post(
        node.url + "/v1/txs/wait", params={"timeout": 60}, json={"tx_ids": unknown}, timeout=8
    )
    assert r.status_code == 200
    assert [a["status"] for a in r.json()] == ["unknown"] * 5
    assert node.gateway.limiter.waits.held() == 0


def test_waits_per_client_are_bounded_and_refused_before_submitting(
    tmp_path: Path, node_factory: list[Node]
) -> None:
    node = serve(tmp_path, Limits(max_waits=2, max_wait_seconds=30.0), produce=False)
    node_factory.append(node)
    pending = [node.engine.submit(patient_registration(CHAIN_ID)).tx_id.hex() for _ in range(2)]

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response, int]:
        async with httpx.AsyncClient(base_url=node.url, timeout=60) as http:
            waits = [
                asyncio.create_task(
                    http.post("/v1/txs/wait", params={"timeout": 30}, json={"tx_ids": [i]})
                )
                for i in pending
            ]
            deadline = time.monotonic() + 20
            while node.gateway.limiter.waits.held() < 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            third = await http.post("/v1/txs/wait", json={"tx_ids": pending[:1]}, timeout=10)
            raw = patient_registration(CHAIN_ID)
            submit = await http.post(
                "/v1/txs", params={"wait": True}, json={"tx": raw.hex()}, timeout=10
            )
            with from_address("127.0.0.2") as other:  # another client is not affected
                elsewhere = other.post(
                    node.url + "/v1/txs/wait", params={"timeout": 0.1}, json={"tx_ids": pending}
                )
            queued = len(node.engine.mempool)
            await asyncio.to_thread(
                node.engine.produce_block, node.engine.mempool.take(1000, 10**9)
            )
            await asyncio.gather(*waits)
            return third, submit, elsewhere, queued

    third, submit, elsewhere, queued = asyncio.run(scenario())
    assert third.status_code == 429 and int(third.headers["Retry-After"]) >= 1
    assert error_of(third)["code"] == "RATE_LIMITED"
    assert submit.status_code == 429 and queued == 2  # refused before CheckTx: not queued
    assert elsewhere.status_code == 200


# -- finding 10: rates and self-registration -------------------------------------


def test_a_flood_gets_429_with_retry_after_while_another_client_is_served(
    tmp_path: Path, node_factory: list[Node]
) -> None:
    node = serve(tmp_path, Limits(rate=2, burst=10))
    node_factory.append(node)
    with from_address("127.0.0.1") as flooder:
        answers = [flooder.get(node.url + "/v1/status") for _ in range(40)]
    codes = [a.status_code for a in answers]
    assert codes[:10] == [200] * 10 and 429 in codes
    limited = next(a for a in answers if a.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert error_of(limited)["code"] == "RATE_LIMITED"
    assert "retry after" in error_of(limited)["hint"]
    with from_address("127.0.0.2") as neighbour:
        assert neighbour.get(node.url + "/v1/status").status_code == 200


def test_self_registration_past_the_policy_is_refused_but_hospital_txs_go_through(
    tmp_path: Path, node_factory: list[Node]
) -> None:
    limits = Limits(
        self_registration_rate=1,
        self_registration_burst=3,
        self_registration_gateway_rate=1,
        self_registration_gateway_burst=5,
    )
    node = serve(tmp_path, limits)
    node_factory.append(node)
    with from_address("127.0.0.1") as one:
        batch = [patient_registration(CHAIN_ID).hex() for _ in range(10)]
        answers = one.post(node.url + "/v1/txs/batch", json={"txs": batch}).json()
        assert [a["status"] for a in answers] == ["pending"] * 3 + ["refused"] * 7
        assert {a["code_name"] for a in answers[3:]} == {"RATE_LIMITED"}
        single = one.post(node.url + "/v1/txs", json={"tx": patient_registration(CHAIN_ID).hex()})
        assert single.status_code == 429 and int(single.headers["Retry-After"]) >= 1
    with from_address("127.0.0.2") as two:  # its own budget, but the gateway's runs out
        regs = [patient_registration(CHAIN_ID).hex() for _ in range(3)]
        answers = two.post(node.url + "/v1/txs/batch", json={"txs": regs}).json()
        assert [a["status"] for a in answers] == ["pending", "pending", "refused"]
    # The consortium admits a hospital and its admin adds staff: not self-registration.
    client = Client(node.url)
    hospital = crypto.generate_keypair()
    admitted = client.send(
        node.ledger.admin,
        "identity",
        "register_org",
        {
            "org_id": "hosp",
            "name": "H",
            "org_type": "hospital",
            "admin_public_key": hospital.public,
        },
    )
    assert admitted["code_name"] == "OK", admitted
    staff = crypto.generate_keypair()
    added = client.send(
        hospital,
        "identity",
        "add_member",
        {"org_id": "hosp", "public_key": staff.public, "roles": ["doctor"]},
    )
    assert added["code_name"] == "OK", added


# -- finding 6: bodies ----------------------------------------------------------------


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def readable(sock: socket.socket) -> bool:
    """Whether the socket has something to read now (poll, not select: select() cannot
    watch a descriptor numbered 1024 or more, which a long test run reaches)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def chunked_upload(
    url: str, path: str, headers: dict[str, str], total: int, chunk: int = 256 * 1024
) -> tuple[int, bytes]:
    """POST `total` bytes with Transfer-Encoding: chunked (no Content-Length) over a
    raw socket, reading whatever the server answers meanwhile. Returns how many body
    bytes were sent when the answer came, and the answer."""
    sock = socket.create_connection(host_port(url), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode())
    sent, answer = 0, b""
    piece = f"{chunk:x}\r\n".encode() + b"[" * chunk + b"\r\n"
    try:
        while sent < total:
            if readable(sock):  # the server answered meanwhile
                answer = sock.recv(65536)
                break
            sock.sendall(piece)
            sent += chunk
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(10)
    try:
        while not complete(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    return sent, answer


def complete(answer: bytes) -> bool:
    """Whether `answer` holds a whole HTTP response (Content-Length or chunked)."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return body.endswith(b"0\r\n\r\n")


def status_and_json(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    return status, dict(json.loads(body))


def test_chunked_tx_over_the_cap_is_refused_413_before_it_is_all_sent(
    tmp_path: Path, node_factory: list[Node]
) -> None:
    """No Content-Length, 64 MiB in chunks to a route that takes ~2 MiB: the 413
    answer arrives while the client is still sending, so the route never held more."""
    node = serve(tmp_path, GENEROUS)
    node_factory.append(node)
    cap = NODE_RULES[0].max_body
    total = 64 * 1024 * 1024
    sent, answer = chunked_upload(node.url, "/v1/txs", {"Content-Type": "application/json"}, total)
    status, body = status_and_json(answer)
    assert status == 413 and body["error"]["code"] == "TOO_LARGE"  # type: ignore[index]
    assert cap < sent < total // 2


@dataclass
class Edge:
    node: Node
    admin: crypto.KeyPair
    patient: str
    server: EdgeServer

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def edge(tmp_path: Path, node_factory: list[Node]) -> Iterator[Edge]:
    admin, patient = crypto.generate_keypair(), crypto.generate_keypair()
    node = serve(tmp_path, GENEROUS, operators=frozenset({(admin.suite, admin.public)}))
    node_factory.append(node)
    node.ledger.add_org("hosp-a", admin)
    node.ledger.add_patient(patient)
    client = Client(node.url, key=admin)
    custodian = CustodianEdge(Vault(tmp_path / "vault", admin), admin, client)
    server = EdgeServer(custodian, "127.0.0.1", free_port(), limits=Limits(rate=2, burst=10))
    server.start()
    yield Edge(node, admin, did_of(patient), server)
    server.stop()


def signed_post(edge: Edge, path: str, params: dict[str, str], body: bytes) -> httpx.Response:
    target = with_query(path, params)
    headers = sign_request(edge.admin, CHAIN_ID, "POST", target, body)
    return httpx.post(edge.url + target, content=body, headers=headers, timeout=60)


def test_chunked_record_upload_over_the_cap_is_refused_413_before_it_is_all_sent(
    edge: Edge,
) -> None:
    path = with_query("/edge/v1/records", {"patient": edge.patient})
    headers = sign_request(edge.admin, CHAIN_ID, "POST", path, b"")
    total = 4 * MAX_RECORD_BYTES
    sent, answer = chunked_upload(edge.url, path, headers, total, chunk=1024 * 1024)
    status, body = status_and_json(answer)
    assert status == 413 and body["error"]["code"] == "TOO_LARGE"  # type: ignore[index]
    assert MAX_RECORD_BYTES < sent < total // 2
    assert edge.server.edge.vault.count() == 0


def test_unsigned_upload_is_refused_before_its_body_is_read(edge: Edge) -> None:
    """Not one body byte is sent: the 401 comes from the headers alone."""
    path = with_query("/edge/v1/records", {"patient": edge.patient})
    sock = socket.create_connection(host_port(edge.url), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".encode())
    answer = b""
    while not complete(answer):
        data = sock.recv(65536)
        if not data:
            break
        answer += data
    sock.close()
    status, body = status_and_json(answer)
    assert status == 401 and body["error"]["code"] == "BAD_SIGNATURE"  # type: ignore[index]


def nested(depth: int) -> bytes:
    return b'{"resourceType": "Observation", "x": ' + b"[" * depth + b"]" * depth + b"}"


def test_deeply_nested_json_is_refused_400_on_node_and_edge(edge: Edge) -> None:
    deep = b'{"tx": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = httpx.post(
        edge.node.url + "/v1/txs", content=deep, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and error_of(r)["code"] == "MALFORMED"
    upload = signed_post(edge, "/edge/v1/records", {"patient": edge.patient}, nested(5000))
    assert upload.status_code == 400, upload.text
    assert "nested deeper" in error_of(upload)["message"]
    link = json.dumps({"system": "s", "identifier": "i", "did": edge.patient}).encode()
    deep_link = b'{"system": ' + b"[" * 5000 + b"]" * 5000 + link[1:]
    linked = signed_post(edge, "/edge/v1/patients", {}, deep_link)
    assert linked.status_code == 400 and error_of(linked)["code"] == "MALFORMED"
    ok = signed_post(edge, "/edge/v1/records", {"patient": edge.patient}, REPORT)
    assert ok.status_code == 201, ok.text  # ordinary FHIR nesting is fine


def test_json_depth_check_counts_brackets_outside_strings_only() -> None:
    check_json_depth(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"[[[[[["}')
    check_json_depth(nested(MAX_JSON_DEPTH - 1))
    with pytest.raises(ValueError, match="nested deeper"):
        check_json_depth(nested(MAX_JSON_DEPTH + 1))


def test_an_edge_flood_gets_429_while_another_client_is_served(edge: Edge) -> None:
    with from_address("127.0.0.1") as flooder:
        codes = [flooder.get(edge.url + "/edge/v1/status").status_code for _ in range(30)]
    assert codes[:10] == [200] * 10 and 429 in codes
    with from_address("127.0.0.2") as neighbour:
        assert neighbour.get(edge.url + "/edge/v1/status").status_code == 200


# -- finding 11 (parts) -------------------------------------------------------------


def test_huge_block_height_is_a_client_error_not_a_500(
    tmp_path: Path, node_factory: list[Node]
) -> None:
    node = serve(tmp_path, GENEROUS)
    node_factory.append(node)
    for height in ("99999999999999999999999", str(2**63)):
        path = f"/v1/blocks/{height}"
        headers = sign_request(node.ledger.admin, CHAIN_ID, "GET", path)  # an operator
        r = httpx.get(node.url + path, headers=headers)
        assert r.status_code in (400, 404) and "error" in r.json(), r.text


def test_out_of_range_audit_queries_are_client_errors_not_500s(
    tmp_path: Path, node_factory: list[Node]
) -> None:
    """Found by the conformance run: a huge `after` reached SQLite from the FHIR audit
    search, and a non-Latin org id went into the CSV export's file-name header."""
    node = serve(tmp_path, GENEROUS)
    node_factory.append(node)
    admin = node.ledger.admin  # an operator
    search = "/fhir/AuditEvent?after=" + str(2**70)
    r = httpx.get(node.url + search, headers=sign_request(admin, CHAIN_ID, "GET", search))
    assert r.status_code == 400 and "error" in r.json(), r.text
    export = "/v1/audit/export?from_ms=0&to_ms=1&org=%C4%80%E5%8C%BB"
    r = httpx.get(node.url + export, headers=sign_request(admin, CHAIN_ID, "GET", export))
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == 'attachment; filename="audit-org-0-1.csv"'


def test_expired_grant_reads_expired_before_the_next_block(
    tmp_path: Path, node_factory: list[Node]
) -> None:
    node = serve(tmp_path, GENEROUS)
    node_factory.append(node)
    patient, doctor = crypto.generate_keypair(), crypto.generate_keypair()
    node.ledger.add_patient(patient)
    node.ledger.add_patient(doctor)
    expires = int(time.time() * 1000) + 1500
    granted = Client(node.url).send(
        patient,
        "consent",
        "grant",
        {
            "patient": did_of(patient),
            "grantee_kind": "did",
            "grantee": did_of(doctor),
            "purposes": ["TREAT"],
            "scope_types": ["Observation"],
            "expires_ms": expires,
        },
    )
    assert granted["code_name"] == "OK", granted
    grant_id = granted["events"][0]["attributes"]["grant_id"]
    while int(time.time() * 1000) <= expires:
        time.sleep(0.1)
    height = node.ledger.app.db.height
    path = f"/v1/consent/grants/{grant_id}"
    r = httpx.get(node.url + path, headers=sign_request(patient, CHAIN_ID, "GET", path))
    assert node.ledger.app.db.height == height  # no block since: state still says active
    assert r.status_code == 200 and r.json()["state"] == "expired" and not r.json()["in_force"]


def test_a_new_key_needs_a_passphrase_of_twelve_characters(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="at least 12 characters"):
        Keystore(tmp_path / "keys").save("k", crypto.generate_keypair(), "x", iterations=1000)
    env = {**os.environ, "MEDCHAIN_PASSPHRASE": "x"}
    cli = [sys.executable, "-m", "medchain.cli", "keys", "new", "k", "--home", str(tmp_path)]
    short = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    assert not (tmp_path / "keys" / "k.json").exists()
    env["MEDCHAIN_PASSPHRASE"] = "a long enough passphrase"
    ok = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
