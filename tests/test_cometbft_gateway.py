"""The gateway on a CometBFT node: `medchain node --engine cometbft --port P` serves
the same API as the solo node, reading its own node's committed state and submitting
through CometBFT's RPC, with the same answers and error codes.

One single-validator node, started through the real command line (CometBFT process,
ABCI app and gateway in the node process, real SQLite), is shared by the tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from support.ledger import did_of
from support.servers import free_port, wait_until_serving

from medchain import crypto
from medchain.core.tx import build_tx
from medchain.network.cometbft import CometBFTNotFound, binary
from medchain.node import NodeHome
from medchain.sdk.client import Client, ClientError
from medchain.sdk.tls import ClientTls

try:
    binary()
except CometBFTNotFound:
    pytest.skip("cometbft binary not installed (make setup)", allow_module_level=True)

CHAIN_ID = "cmt-gateway"
COMETBFT_IP = "127.0.5.1"  # apart from tests/test_cometbft.py's 127.0.3.x and 127.0.0.1
PASSPHRASE = "test-passphrase"


@dataclass
class CometNode:
    """A running `medchain node --engine cometbft` and a client of its gateway."""

    url: str
    tls: ClientTls
    admin: crypto.KeyPair

    def client(self, key: crypto.KeyPair | None = None) -> Client:
        """A client of the node's gateway over HTTPS, trusting the home's dev CA."""
        return Client(self.url, tls=self.tls, key=key)

    def http(self) -> httpx.Client:
        """A raw HTTPS client, to see status codes and error bodies as they are."""
        return httpx.Client(base_url=self.url, verify=self.tls.context(), timeout=30)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CometNode]:
    home = tmp_path_factory.mktemp("cometbft-gateway") / "home"
    env = {**os.environ, "MEDCHAIN_PASSPHRASE": PASSPHRASE}
    cli = [sys.executable, "-m", "medchain.cli"]
    subprocess.run(
        [*cli, "init", "--home", str(home), "--chain-id", CHAIN_ID],
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            *cli,
            "node",
            "--engine",
            "cometbft",
            "--home",
            str(home),
            "--port",
            str(port),
            "--cometbft-ip",
            COMETBFT_IP,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    tls = ClientTls(NodeHome(home).tls.ca_cert)
    url = f"https://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, f"{url}/v1/status", verify=tls.context())
        admin = NodeHome(home).keystore.load("admin", PASSPHRASE)
        yield CometNode(url, tls, admin)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    leftover = subprocess.run(["pgrep", "-f", str(home / "cometbft")], capture_output=True)
    assert leftover.stdout == b"", "CometBFT outlived the node command"


def registration(patient: crypto.KeyPair, nonce: int = 0) -> bytes:
    """A patient registering its own key (a public, self-signed tx)."""
    return build_tx(
        patient,
        chain_id=CHAIN_ID,
        contract="identity",
        action="register_patient",
        payload={},
        nonce=nonce,
    )


def test_status_names_the_cometbft_engine_and_its_chain(node: CometNode) -> None:
    status = node.client().status()
    assert status["engine"] == "cometbft"
    assert status["chain_id"] == CHAIN_ID
    assert status["height"] >= 0
    assert "identity/v1" in status["contracts"]


def test_signed_tx_is_committed_with_the_solo_answer_shape(node: CometNode) -> None:
    patient = crypto.generate_keypair()
    with node.http() as http:
        r = http.post("/v1/txs", params={"wait": True}, json={"tx": registration(patient).hex()})
    assert r.status_code == 202, r.text  # as on solo: accepted, here already committed
    out = r.json()
    assert set(out) == {
        "tx_id", "status", "height", "index", "code", "code_name", "log", "events"
    }  # fmt: skip
    assert (out["status"], out["code"], out["code_name"]) == ("committed", 0, "OK")
    assert out["height"] >= 1
    assert any(e["type"].startswith("identity") for e in out["events"])
    committed = node.client().tx(out["tx_id"])
    assert committed == out
    assert node.client().account(patient)["next_nonce"] == 1


def test_reused_nonce_is_refused_with_bad_nonce_as_on_solo(node: CometNode) -> None:
    patient = crypto.generate_keypair()
    first = registration(patient)
    assert node.client().submit_raw(first)["code"] == 0
    with node.http() as http:
        again = http.post("/v1/txs", json={"tx": registration(patient, nonce=0).hex()})
        replay = http.post("/v1/txs", json={"tx": first.hex()})
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "BAD_NONCE"
    assert replay.status_code == 409, replay.text
    assert replay.json()["error"]["code"] == "BAD_NONCE"


def test_bad_signature_is_refused_before_cometbft(node: CometNode) -> None:
    raw = bytearray(registration(crypto.generate_keypair()))
    raw[-5] ^= 1
    with node.http() as http:
        r = http.post("/v1/txs", json={"tx": bytes(raw).hex()})
    assert r.status_code in (400, 401), r.text
    assert r.json()["error"]["code"] in ("BAD_SIGNATURE", "MALFORMED")


def test_tx_submitted_without_wait_is_followed_to_commit(node: CometNode) -> None:
    client = node.client()
    answer = client.submit_raw(registration(crypto.generate_keypair()), wait=False)
    assert answer["status"] in ("pending", "committed")
    (result,) = client.wait_committed([answer["tx_id"]], timeout=30)
    assert (result["status"], result["code"]) == ("committed", 0)
    with pytest.raises(ClientError) as unknown:
        client.tx("00" * 32)
    assert unknown.value.status == 404


def test_patient_reads_own_records_as_a_signed_read(node: CometNode) -> None:
    patient = crypto.generate_keypair()
    assert node.client().submit_raw(registration(patient))["code"] == 0
    assert node.client(patient).patient_records(did_of(patient)) == []
    with pytest.raises(ClientError) as unsigned:
        node.client().patient_records(did_of(patient))
    assert unsigned.value.status == 401
