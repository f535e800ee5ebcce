"""SM2, SM9 and hybrid members side by side on a 4-validator CometBFT localnet: each
submits txs through a different node, every tx commits on all four nodes, and the
nodes agree on every app hash."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.network import Network, caught_up, running_network

from medchain import crypto
from medchain.contracts.identity.model import did_for_key, sm9_did
from medchain.sdk.client import Client

LOCALNET_FIRST_IP = "127.0.95.1"  # apart from every other localnet in tests and bench


@pytest.fixture(scope="module")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """A 4-validator CometBFT localnet (real processes), each node with its gateway."""
    yield from running_network(
        "cometbft", tmp_path_factory.mktemp("sm9-localnet"), first_ip=LOCALNET_FIRST_IP
    )


def test_sm2_sm9_and_hybrid_members_commit_with_one_app_hash(localnet: Network) -> None:
    net = localnet
    admin_a = crypto.generate_keypair("sm")  # SM2
    admin_b = crypto.generate_keypair("sm2+mldsa")  # hybrid
    patient = crypto.generate_keypair("sm")
    kgc = crypto.generate_sm9_master()
    doctor = kgc.issue(sm9_did("hosp-a", "dr-li"))  # SM9
    heights: list[int] = []

    def send(node: int, signer: crypto.KeyPair, contract: str, action: str, body: Any) -> Any:
        result = net.client(node).send(signer, contract, action, body)
        heights.append(result["height"])
        return result

    def ok(node: int, signer: crypto.KeyPair, contract: str, action: str, body: Any) -> Any:
        result = send(node, signer, contract, action, body)
        assert result["code_name"] == "OK", result
        return result

    root = net.keys["root"]
    for org, admin in (("hosp-a", admin_a), ("hosp-b", admin_b)):
        body = {"org_id": org, "name": org, "org_type": "hospital"}
        body |= {"admin_public_key": admin.public, "admin_suite": admin.suite}
        ok(0, root, "identity", "register_org", body)
    ok(0, patient, "identity", "register_patient", {})
    masters = {
        "sign_master_public": kgc.sign_master_public,
        "enc_master_public": kgc.enc_master_public,
    }
    ok(1, admin_a, "identity", "set_sm9_master", masters)
    member = {"org_id": "hosp-a", "suite": "sm9", "roles": ["doctor"]}
    ok(1, admin_a, "identity", "add_member", member | {"public_key": doctor.public})
    rogue = crypto.generate_sm9_master().issue(sm9_did("hosp-a", "dr-rogue"))
    refused = send(1, admin_a, "identity", "add_member", member | {"public_key": rogue.public})
    assert refused["code_name"] == "UNAUTHORIZED", refused
    # The sm9 doctor signs through node 2, the hybrid admin through node 3.
    record = {
        "record_id": "scan-1", "patient": did_for_key("sm", patient.public),
        "resource_type": "DiagnosticReport", "cid": "b" + "a" * 58,
        "content_hash": crypto.sm3(b"a scan"),
    }  # fmt: skip
    ok(2, doctor, "records", "register", record)
    ok(3, admin_b, "identity", "set_endpoint", {"org_id": "hosp-b", "edge_url": "https://b.example"})

    last = max(heights)
    readers = [net.client(i, key=net.keys["operator"]) for i in range(4)]
    for reader in readers:
        caught_up(reader, last)
    for height in sorted(set(heights)):
        blocks = [reader.block(height) for reader in readers]
        assert len({b["app_hash"] for b in blocks}) == 1, height
        assert len({tuple(r["code_name"] for r in b["results"]) for b in blocks}) == 1, height
    suites = {
        reader.url: [k["suite"] for k in _member(reader, did_for_key("sm9", doctor.public))]
        for reader in readers
    }
    assert set(map(tuple, suites.values())) == {("sm9",)}
    assert {r.record("scan-1")["custodian"] for r in readers} == {"hosp-a"}


def _member(client: Client, did: str) -> list[dict[str, Any]]:
    return list(client.member(did)["keys"])
