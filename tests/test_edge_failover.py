"""A hospital's edge follows its own node and fails over to the others (issue 14
point 2): on a real 4-validator localnet, the edge's client lists node 0 first
and nodes 1-2 as fallbacks; node 0's app and gateway are killed (SIGKILL), and a
record upload and an exchange through the edge still work, with every tx
committed before the crash still on the chain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.consortium import NAMES, PRESCRIPTION, REPORT, STAFF, Call, run_in_rounds
from support.ledger import did_of
from support.servers import free_port

from medchain import crypto
from medchain.edge.custodian import CustodianEdge
from medchain.edge.requester import fetch_record, upload_record
from medchain.edge.vault import Vault
from medchain.fhir.validate import canonical_json
from medchain.network.cometbft import CometBFTNotFound, binary
from medchain.network.localnet import Localnet
from medchain.node import EdgeServer
from medchain.sdk.client import Client

FIRST_IP = "127.0.17.1"  # apart from the other localnet tests (3, 5, 14, 15, 16)
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Localnet, crypto.KeyPair]]:
    """A running 4-validator localnet, each node with its gateway; the edge's operator
    key is an operator of every node."""
    try:
        binary()
    except CometBFTNotFound as e:
        pytest.skip(str(e))
    operator = crypto.generate_keypair()
    net = Localnet(tmp_path_factory.mktemp("failover") / "localnet")
    net.create(4, FIRST_IP, operators=[("edge", operator.suite, operator.public)])
    try:
        net.up()
        net.wait_serving(60)
        yield net, operator
    finally:
        net.down()


def _set_up(net: Localnet, operator: crypto.KeyPair, client: Client) -> dict[str, crypto.KeyPair]:
    """Two hospitals, their staff and a patient, by txs through `client`."""
    keys = {n: crypto.generate_keypair() for n in NAMES} | {
        "root": net.admin_key(),
        "admin_a": operator,
    }
    orgs: list[Call] = [
        (
            "root",
            "identity",
            "register_org",
            {
                "org_id": org,
                "name": org,
                "org_type": "hospital",
                "admin_public_key": keys[a].public,
            },
        )
        for org, a in (("hosp-a", "admin_a"), ("hosp-b", "admin_b"))
    ]
    run_in_rounds(client, keys, [*orgs, ("patient", "identity", "register_patient", {})])
    staff: list[Call] = [
        (admin, "identity", "add_member", {"org_id": org, "public_key": keys[m].public, "roles": r})
        for admin, org, m, r in STAFF
    ]
    run_in_rounds(client, keys, staff)
    return keys


def test_edge_fails_over_when_its_node_dies_and_loses_no_tx(
    localnet: tuple[Localnet, crypto.KeyPair], tmp_path: Path
) -> None:
    net, operator = localnet
    urls, tls = net.gateways, net.client_tls
    node = Client(urls[:3], tls=tls, key=operator)  # its own node 0, then 1 and 2
    keys = _set_up(net, operator, node)
    edge = CustodianEdge(Vault(tmp_path / "vault-a", operator), operator, node)
    server = EdgeServer(edge, "127.0.0.1", free_port(), sync_interval=0.1)
    server.start()
    try:
        endpoint = {"org_id": "hosp-a", "edge_url": server.url}
        assert node.send(operator, "identity", "set_endpoint", endpoint)["code_name"] == "OK"
        patient = did_of(keys["patient"])
        before = upload_record(
            operator, net.chain_id, server.url, REPORT, patient, record_id="report-1"
        )
        assert before.status_code == 201, before.text
        committed_before = node.status()["height"]
        assert node.url == urls[0]

        net.kill(0, "abci")  # node 0's app and gateway crash

        after = upload_record(
            operator, net.chain_id, server.url, PRESCRIPTION, patient, record_id="rx-1"
        )
        assert after.status_code == 201, after.text
        assert node.url in urls[1:3]
        reader = Client(urls[3], tls=tls, key=keys["patient"])
        grant = {
            "patient": patient,
            "grantee_kind": "did",
            "grantee": did_of(keys["doctor_b"]),
            "purposes": ["TREAT"],
            "scope_types": ["DiagnosticReport"],
            "expires_ms": reader.block_time_ms() + DAY_MS,
        }
        assert reader.send(keys["patient"], "consent", "grant", grant)["code_name"] == "OK"
        doctor = Client(urls[3], tls=tls, key=keys["doctor_b"])
        got = fetch_record(doctor, keys["doctor_b"], "report-1")
        assert got.plaintext == canonical_json(json.loads(REPORT) | {"id": "report-1"})
        assert doctor.session(got.session_id)["status"] == "closed"

        # Nothing committed before the crash is gone, and what came after is there too.
        assert reader.status()["height"] > committed_before
        operator_reads = Client(urls[3], tls=tls, key=operator)
        for record_id in ("report-1", "rx-1"):
            assert operator_reads.record(record_id)["custodian"] == "hosp-a"
    finally:
        server.stop()
