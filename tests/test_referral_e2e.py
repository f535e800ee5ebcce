"""A referral end to end across two hospitals' edges, on both engines: a solo node,
and a 4-validator CometBFT localnet where the receiving side works through another
node. Each hospital runs its own edge (its own vault and key); records move only
through the exchange protocol under the grant the patient's approval issued, the
consultation report comes back as a record at the receiving edge, and revoking
the referral's grant stops the receiving side (its request refused, nothing
released)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from support.consortium import REPORT, Consortium, consortium_on
from support.network import ENGINES, Network, caught_up, running_network
from support.servers import free_port

from medchain.edge.custodian import CustodianEdge
from medchain.edge.requester import (
    ExchangeFailed,
    fetch_delivery,
    fetch_record,
    open_session_at,
    upload_record,
)
from medchain.edge.vault import Vault
from medchain.fhir.validate import canonical_json
from medchain.node import EdgeServer
from medchain.sdk.client import Client, ClientError

DAY_MS = 86_400_000
FIRST_IP = "127.0.33.1"  # apart from the other localnet tests (3, 5, 14-18, 22, 23, 26, 27, 31)
REASON = "http://snomed.info/sct|49436004"


def service_request(patient: str) -> bytes:
    """The FHIR ServiceRequest the referring doctor stores at their own edge."""
    return json.dumps(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "priority": "urgent",
            "subject": {"reference": f"Patient/{patient}"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "11429006"}]},
            "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "49436004"}]}],
            "authoredOn": "2026-12-01",
        }
    ).encode()


@pytest.fixture(scope="module", params=ENGINES)
def network(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Network]:
    """A solo node, or a localnet of its own (an address range no other test uses)."""
    tmp = tmp_path_factory.mktemp(f"referral-{request.param}")
    yield from running_network(request.param, tmp, first_ip=FIRST_IP)


@dataclass
class Hospitals:
    """hosp-a's edge (its node is node 0) and hosp-b's (node 1 on the localnet)."""

    world: Consortium
    network: Network
    edge_b_url: str

    def client(self, who: str, node: int = 0) -> Client:
        return self.network.client(node, key=self.world.keys[who])

    def did(self, who: str) -> str:
        return self.world.did(who)


@pytest.fixture(scope="module")
def hospitals(network: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hospitals]:
    vaults = tmp_path_factory.mktemp("referral-vaults")
    world_it = consortium_on(
        network.urls, network.keys["root"], network.keys["operator"], vaults, network.tls
    )
    world = next(world_it)
    # hosp-b's edge signs with its own org key and keeps its own vault; it reads the
    # chain (raw blocks, to follow sessions) through node 1 as an operator.
    reader = network.client(1, key=network.keys["operator"])
    edge_b = CustodianEdge(
        Vault(vaults / "vault-b", world.keys["admin_b"]), world.keys["admin_b"], reader
    )
    server_b = EdgeServer(edge_b, "127.0.0.1", free_port(), sync_interval=0.1)
    server_b.start()
    try:
        world.ok(
            "admin_b", "identity", "set_endpoint", {"org_id": "hosp-b", "edge_url": server_b.url}
        )
        # The package's second record and the ServiceRequest, at hosp-a's edge.
        for record_id, content in (
            ("report-2", REPORT),
            ("sr-1", service_request(world.did("patient"))),
            ("sr-2", service_request(world.did("patient"))),
        ):
            r = world.upload("doctor_a", content, patient=world.did("patient"), record_id=record_id)
            assert r.status_code == 201, r.text
        world.grant("doctor_a", ["DiagnosticReport"])  # what doctor_a may pass on
        yield Hospitals(world, network, server_b.url)
    finally:
        server_b.stop()
        for _ in world_it:  # stops hosp-a's edge
            pass


def send(h: Hospitals, who: str, action: str, payload: dict[str, Any], node: int = 0) -> Any:
    result = h.client(who, node).send(h.world.keys[who], "referral", action, payload)
    assert result["code_name"] == "OK", result
    return result


def refer(h: Hospitals, referral_id: str, record_id: str, sr: str, **extra: Any) -> Any:
    payload = {
        "referral_id": referral_id,
        "patient": h.did("patient"),
        "to_org": "hosp-b",
        "reason_code": REASON,
        "urgency": "urgent",
        "record_ids": [record_id],
        "service_request_id": sr,
        "expires_ms": h.world.block_time_ms() + 7 * DAY_MS,
    } | extra
    return send(h, "doctor_a", "refer", payload)


def as_stored(content: bytes, record_id: str) -> bytes:
    return canonical_json(json.loads(content) | {"id": record_id})


def test_referral_across_two_edges_brings_the_report_back(hospitals: Hospitals) -> None:
    h, w = hospitals, hospitals.world
    refer(h, "ref-1", "report-1", "sr-1", to_doctor=h.did("doctor_b"))
    # The receiving doctor works through another node (node 1 on the localnet).
    doctor_b = h.client("doctor_b", node=1)
    with pytest.raises(ExchangeFailed) as refused:
        fetch_record(doctor_b, w.keys["doctor_b"], "report-1")
    assert refused.value.code == "UNAUTHORIZED"  # nothing moves before the patient approves
    send(h, "patient", "approve", {"referral_id": "ref-1"})
    got = fetch_record(doctor_b, w.keys["doctor_b"], "report-1")
    assert got.plaintext == as_stored(REPORT, "report-1")
    assert fetch_record(doctor_b, w.keys["doctor_b"], "sr-1").plaintext  # why, in FHIR
    with pytest.raises(ExchangeFailed):  # outside the package
        fetch_record(doctor_b, w.keys["doctor_b"], "report-2")
    send(h, "doctor_b", "accept", {"referral_id": "ref-1"}, node=1)
    # The consultation report: stored at hosp-b's own edge, registered by it.
    stored = upload_record(
        w.keys["doctor_b"],
        w.chain_id,
        h.edge_b_url,
        REPORT,
        h.did("patient"),
        "consult-1",
        verify=doctor_b.ssl_context,
    )
    assert stored.status_code == 201, stored.text
    reported = send(
        h, "doctor_b", "report", {"referral_id": "ref-1", "record_id": "consult-1"}, node=1
    )
    # The referring doctor reads it, from hosp-b's edge, through the exchange.
    doctor_a = h.client("doctor_a")
    caught_up(doctor_a, reported["height"])
    back = fetch_record(doctor_a, w.keys["doctor_a"], "consult-1")
    assert back.plaintext == as_stored(REPORT, "consult-1")
    assert doctor_a.record("consult-1")["custodian"] == "hosp-b"
    timeline = doctor_a.get("/v1/referrals/ref-1/timeline")
    steps = [s["step"] for s in timeline["steps"]]
    assert steps == ["requested", "approved", "fetched", "fetched", "accepted", "reported"]
    fetched = [s for s in timeline["steps"] if s["step"] == "fetched"]
    assert {s["record_id"] for s in fetched} == {"report-1", "sr-1"}
    assert all(s["session_status"] == "closed" and s["acked_time_ms"] for s in fetched)
    times = [s["time_ms"] for s in timeline["steps"]]
    assert times == sorted(times) and timeline["elapsed_ms"] == times[-1] - times[0]
    assert timeline["effective_status"] == "completed"
    # Who may read it: the patient, both hospitals' doctors, hosp-b's admin; not a stranger.
    for who in ("patient", "doctor_b", "admin_b", "admin_a"):
        assert h.client(who).get("/v1/referrals/ref-1")["status"] == "completed"
    for who in ("parent", "nurse_b", "pharmacist_b"):
        answers = []
        for referral_id in ("ref-1", "ref-none"):
            with pytest.raises(ClientError) as e:
                h.client(who).get(f"/v1/referrals/{referral_id}/timeline")
            answers.append((e.value.status, e.value.code, e.value.message))
        assert answers[0] == answers[1] and answers[0][0] == 403, (who, answers)


def test_revoking_the_referral_grant_stops_the_receiving_side(hospitals: Hospitals) -> None:
    h, w = hospitals, hospitals.world
    refer(h, "ref-2", "report-2", "sr-2")  # to hosp-b, no doctor named: an org grant
    approved = send(h, "patient", "approve", {"referral_id": "ref-2"})
    grant_id = approved["events"][-1]["attributes"]["grant_id"]
    doctor_b = h.client("doctor_b", node=1)
    caught_up(doctor_b, approved["height"])
    # A session opened while the grant held, and a revocation before its release.
    session_id, opened_at = open_session_at(doctor_b, w.keys["doctor_b"], "report-2", "TREAT")
    revoked = w.ok("patient", "consent", "revoke", {"grant_id": grant_id})
    caught_up(doctor_b, revoked["height"])
    with pytest.raises(ExchangeFailed) as e:
        fetch_delivery(doctor_b, w.keys["doctor_b"], session_id, w.edge_url, opened_at)
    assert e.value.code == "UNAUTHORIZED" and "release refused" in e.value.message
    with pytest.raises(ExchangeFailed) as e:
        fetch_record(doctor_b, w.keys["doctor_b"], "report-2")
    assert e.value.code == "UNAUTHORIZED"
    assert w.node.session(session_id)["status"] == "open"  # nothing was released
    accept = h.client("doctor_b").send(
        w.keys["doctor_b"], "referral", "accept", {"referral_id": "ref-2"}
    )
    assert accept["code_name"] == "INVALID_STATE"
    timeline = h.client("patient").get("/v1/referrals/ref-2/timeline")
    steps = [s["step"] for s in timeline["steps"]]
    assert steps == ["requested", "approved", "fetched", "revoked"]
    assert timeline["effective_status"] == "revoked" and timeline["steps"][-1]["time_ms"]
    assert "released_height" not in timeline["steps"][2]
