"""Issue 12, finding 5 (first half): every server speaks TLS.

Real servers on real ports, real certificates made by medchain.sdk.tls (pyca/cryptography),
real handshakes by Python's ssl. Before this change the gateway and the edge spoke
plain HTTP, `medchain init` made no certificates and an edge published `http://`.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from support.ledger import CHAIN_ID, DATA, Ledger, did_of
from support.servers import free_port, medchain, wait_until_serving

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.edge.custodian import CustodianEdge
from medchain.edge.requester import fetch_record, upload_record
from medchain.edge.vault import Vault
from medchain.node import EdgeServer, GatewayServer, NodeHome
from medchain.sdk.client import Client, ClientError
from medchain.sdk.tls import (
    ClientTls,
    ServerTls,
    TlsDir,
    create_dev_pki,
    issue_certificate,
    sm_tls_available,
)

PASS = "correct horse"
REPORT = (DATA / "fhir" / "spec-examples" / "DiagnosticReport-f201.json").read_bytes()


def dev_pki(root: Path, name: str = "test") -> TlsDir:
    """A CA and a node certificate for this machine's loopback names."""
    tls = TlsDir(root)
    create_dev_pki(tls, name, ["localhost", "127.0.0.1"], PASS)
    return tls


@dataclass
class Served:
    ledger: Ledger
    engine: SoloEngine
    gateway: GatewayServer
    tls: TlsDir
    keys: dict[str, crypto.KeyPair]


def serve(tmp_path: Path, client_ca: Path | None = None) -> Iterator[Served]:
    """A solo node (hospital A and B, a doctor at B, a patient) whose gateway serves
    HTTPS with a dev CA's certificate, requiring client certificates if `client_ca`."""
    keys = {n: crypto.generate_keypair() for n in ("root", "admin_a", "admin_b", "doctor_b")}
    keys["patient"] = crypto.generate_keypair()
    ledger = Ledger(tmp_path / "chain.db", keys["root"])
    ledger.add_org("hosp-a", keys["admin_a"])
    ledger.add_org("hosp-b", keys["admin_b"])
    ledger.add_staff(keys["admin_b"], "hosp-b", keys["doctor_b"], ["doctor"])
    ledger.add_patient(keys["patient"])
    tls = dev_pki(tmp_path / "tls")
    engine = SoloEngine(ledger.app, block_interval=0.05)
    engine.start()
    server_tls = ServerTls(tls.cert("node"), tls.key("node"), client_ca)
    edge_operator = frozenset({(keys["admin_a"].suite, keys["admin_a"].public)})
    gateway = GatewayServer(engine, port=free_port(), tls=server_tls, operators=edge_operator)
    gateway.start()
    yield Served(ledger, engine, gateway, tls, keys)
    gateway.stop()
    engine.stop()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Served]:
    yield from serve(tmp_path)


@pytest.fixture
def mtls_node(tmp_path: Path) -> Iterator[Served]:
    yield from serve(tmp_path, client_ca=tmp_path / "tls" / "ca.pem")


def test_gateway_serves_https_that_a_client_with_the_dev_ca_trusts(node: Served) -> None:
    assert node.gateway.url.startswith("https://127.0.0.1:")
    status = Client(node.gateway.url, ca=node.tls.ca_cert).status()
    assert status["chain_id"] == CHAIN_ID
    with pytest.raises(httpx.HTTPError):  # no plain HTTP on the same port
        httpx.get(node.gateway.url.replace("https://", "http://") + "/v1/status", timeout=5)


def test_client_without_the_dev_ca_fails_certificate_verification(
    node: Served, tmp_path: Path
) -> None:
    foreign = dev_pki(tmp_path / "foreign", "foreign")
    for client in (
        Client(node.gateway.url, tls=ClientTls()),  # the system trust store
        Client(node.gateway.url, ca=foreign.ca_cert),  # another consortium's CA
    ):
        with pytest.raises(ClientError) as e:
            client.status()
        assert e.value.code == "TLS_UNTRUSTED" and "--ca" in e.value.hint


def test_certificate_for_another_host_is_refused(node: Served, tmp_path: Path) -> None:
    """The client checks the host name too, not only the signature."""
    other = TlsDir(tmp_path / "other-host")
    create_dev_pki(other, "other", ["node-7.hosp-b.example"], PASS)
    gateway = GatewayServer(
        node.engine, port=free_port(), tls=ServerTls(other.cert("node"), other.key("node"))
    )
    gateway.start()
    try:
        with pytest.raises(ClientError) as e:
            Client(gateway.url, ca=other.ca_cert).status()
        assert e.value.code == "TLS_UNTRUSTED" and "127.0.0.1" in e.value.message
    finally:
        gateway.stop()


def test_mutual_tls_refuses_clients_without_or_with_a_foreign_certificate(
    mtls_node: Served, tmp_path: Path
) -> None:
    tls = mtls_node.tls
    url = mtls_node.gateway.url
    foreign = dev_pki(tmp_path / "foreign", "foreign")
    issue_certificate(tls, "edge", ["localhost"], PASS)
    with pytest.raises(ClientError):
        Client(url, ca=tls.ca_cert).status()  # trusts the server, presents nothing
    with pytest.raises(ClientError):  # a certificate the node's CA did not sign
        Client(url, tls=ClientTls(tls.ca_cert, foreign.cert("node"), foreign.key("node"))).status()
    member = ClientTls(tls.ca_cert, tls.cert("edge"), tls.key("edge"))
    assert Client(url, tls=member).status()["chain_id"] == CHAIN_ID


def test_edge_serves_https_and_an_exchange_runs_over_it(node: Served, tmp_path: Path) -> None:
    """Upload, consent, fetch: every hop (staff->edge, edge->node, requester->node,
    requester->edge) over TLS verified against the dev CA; the edge requires client
    certificates, and its own client presents one to the node."""
    tls, keys = node.tls, node.keys
    issue_certificate(tls, "edge", ["127.0.0.1"], PASS)
    issue_certificate(tls, "doctor", ["doctor-b.example"], PASS)
    edge_client = Client(
        node.gateway.url,
        tls=ClientTls(tls.ca_cert, tls.cert("edge"), tls.key("edge")),
        key=keys["admin_a"],
    )
    edge = CustodianEdge(Vault(tmp_path / "vault-a", keys["admin_a"]), keys["admin_a"], edge_client)
    edge_tls = ServerTls(tls.cert("edge"), tls.key("edge"), client_ca=tls.ca_cert)
    server = EdgeServer(edge, "127.0.0.1", free_port(), sync_interval=0.1, tls=edge_tls)
    server.start()
    try:
        assert server.url.startswith("https://")
        staff = ClientTls(tls.ca_cert, tls.cert("doctor"), tls.key("doctor"))
        doctor_node = Client(node.gateway.url, tls=staff, key=keys["doctor_b"])
        out = doctor_node.send(
            keys["admin_a"],
            "identity",
            "set_endpoint",
            {"org_id": "hosp-a", "edge_url": server.url},
        )
        assert out["code_name"] == "OK", out
        patient = did_of(keys["patient"])
        with pytest.raises(httpx.HTTPError):  # no client certificate: the edge refuses
            upload_record(
                keys["admin_a"], CHAIN_ID, server.url, REPORT, patient, "r1",
                verify=ClientTls(tls.ca_cert).context(),
            )  # fmt: skip
        r = upload_record(
            keys["admin_a"], CHAIN_ID, server.url, REPORT, patient, "r1", verify=staff.context()
        )
        assert r.status_code == 201, r.text
        grant = {
            "patient": patient,
            "grantee_kind": "did",
            "grantee": did_of(keys["doctor_b"]),
            "purposes": ["TREAT"],
            "scope_types": ["DiagnosticReport"],
            "expires_ms": int(time.time() * 1000) + 86_400_000,
        }
        assert doctor_node.send(keys["patient"], "consent", "grant", grant)["code_name"] == "OK"
        got = fetch_record(doctor_node, keys["doctor_b"], "r1")
        assert json.loads(got.plaintext)["resourceType"] == "DiagnosticReport"
    finally:
        server.stop()


# -- the command line, run as an operator would ------------------------------


def start_tls_node(home: Path, port: int) -> subprocess.Popen[bytes]:
    """`medchain node` with no TLS options: it must serve HTTPS with the home's certs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "medchain.cli", "node", "--home", str(home), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ca = ClientTls(NodeHome(home).tls.ca_cert)
    return wait_until_serving(proc, f"https://127.0.0.1:{port}/v1/status", ca.context())


def test_init_creates_a_dev_ca_and_a_node_certificate_for_the_node_host(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = medchain(
        "init", "--home", str(home), "--host", "node1.hosp-a.example", "--host", "10.8.0.3"
    )
    assert out.returncode == 0, out.stderr
    tls = NodeHome(home).tls
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    cert = x509.load_pem_x509_certificate(tls.cert("node").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node1.hosp-a.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.8.0.3"]
    for key in (tls.ca_key, tls.key("node")):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    with pytest.raises(TypeError):  # the CA key is encrypted with the home's passphrase
        serialization.load_pem_private_key(tls.ca_key.read_bytes(), None)
    shown = json.loads(medchain("tls", "show", "node", "--home", str(home)).stdout)
    assert shown["hosts"] == ["node1.hosp-a.example", "10.8.0.3"]


def test_cli_talks_to_a_tls_node_trusting_the_home_ca(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert medchain("init", "--home", home, "--chain-id", "tls-chain").returncode == 0
    assert medchain("keys", "new", "patient", "--home", home).returncode == 0
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    proc = start_tls_node(Path(home), port)
    foreign = dev_pki(tmp_path / "foreign", "foreign")
    try:
        out = medchain(
            "tx", "identity", "register_patient", "--key", "patient", "--home", home, "--node", url
        )
        assert out.returncode == 0, out.stderr  # trusted <home>/tls/ca.pem by itself
        ca = str(NodeHome(Path(home)).tls.ca_cert)
        status = medchain("--ca", ca, "status", "--node", url)
        assert json.loads(status.stdout)["chain_id"] == "tls-chain"
        untrusted = medchain("--ca", str(foreign.ca_cert), "status", "--node", url)
        assert untrusted.returncode == 2 and "TLS_UNTRUSTED" in untrusted.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_edge_serve_publishes_an_https_endpoint_on_chain(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert medchain("init", "--home", home, "--chain-id", "tls-edge").returncode == 0
    assert medchain("keys", "new", "admin-a", "--home", home).returncode == 0
    tls = NodeHome(Path(home)).tls
    issued = medchain("tls", "issue", "edge", "--host", "127.0.0.1", "--home", home)
    assert issued.returncode == 0, issued.stderr
    shown = json.loads(medchain("keys", "show", "admin-a", "--home", home).stdout)
    operator = medchain("operators", "add", "edge-a", shown["public_key"], "--home", home)
    assert operator.returncode == 0, operator.stderr  # the edge reads raw state
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    node_proc = start_tls_node(Path(home), port)
    edge_proc = None
    try:
        org = {"org_id": "hosp-a", "name": "A", "org_type": "hospital"}
        payload = json.dumps(org | {"admin_public_key": {"$key": "admin-a"}})
        at = ("--home", home, "--node", url)
        out = medchain(
            "tx", "identity", "register_org", "--key", "admin", "--payload", payload, *at
        )
        assert out.returncode == 0, out.stdout + out.stderr
        edge_port = free_port()
        edge_proc = subprocess.Popen(
            [sys.executable, "-m", "medchain.cli", "edge", "serve", "--key", "admin-a", *at,
             "--port", str(edge_port)],
            env={**os.environ, "MEDCHAIN_PASSPHRASE": PASS},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        ca = ClientTls(tls.ca_cert).context()
        wait_until_serving(edge_proc, f"https://127.0.0.1:{edge_port}/edge/v1/status", ca)
        client = Client(url, ca=tls.ca_cert)
        published = None
        for _ in range(200):  # the edge publishes right after it starts serving
            published = client.org("hosp-a").get("edge_url")
            if published or edge_proc.poll() is not None:
                break
            time.sleep(0.1)
        assert published == f"https://127.0.0.1:{edge_port}"
    finally:
        for p in (edge_proc, node_proc):
            if p is not None:
                p.terminate()
                p.wait(timeout=20)


def test_edge_serve_refuses_to_publish_plain_http(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert medchain("init", "--home", home).returncode == 0
    args = ("edge", "serve", "--key", "admin", "--home", home, "--node", "https://127.0.0.1:1")
    plain = medchain(*args, "--public-url", "http://edge.hosp-a.example")
    assert plain.returncode == 2 and "refusing to publish http://" in plain.stderr
    bare = str(tmp_path / "bare")  # a home without certificates
    (tmp_path / "bare").mkdir()
    no_cert = medchain("edge", "serve", "--key", "admin", "--home", bare)
    assert no_cert.returncode == 2 and "--insecure-http" in no_cert.stderr


def test_sm_tls_check_agrees_with_the_openssl_command_line() -> None:
    """docs/tls.md says the system OpenSSL offers no SM TLS suite; the run-time check
    must say what `openssl` itself says (both use the system libssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    listed = subprocess.run(["openssl", "ciphers", "-v", "ALL"], capture_output=True, text=True)
    rfc8998 = subprocess.run(
        ["openssl", "ciphers", "-ciphersuites", "TLS_SM4_GCM_SM3:TLS_SM4_CCM_SM3"],
        capture_output=True,
        text=True,
    )
    offered = "SM4" in listed.stdout or rfc8998.returncode == 0
    assert sm_tls_available() is offered
