"""An exchange to an sm9 member: the custodian's edge wraps the record's data key to the
requester's DID under its org's published SM9 encryption master key, and only that
member's key file opens it; a hybrid requester gets the key by its SM2 half."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.consortium import REPORT, Consortium, running_consortium
from support.ledger import CHAIN_ID

from medchain import crypto
from medchain.contracts.identity.model import did_for_key, sm9_did
from medchain.edge.requester import ExchangeFailed, fetch_delivery, fetch_record, open_session
from medchain.edge.vault import open_record
from medchain.sdk.signing import sign_request


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def publish(world: Consortium, admin: str, kgc: crypto.Sm9Master) -> None:
    masters = {
        "sign_master_public": kgc.sign_master_public,
        "enc_master_public": kgc.enc_master_public,
    }
    world.ok(admin, "identity", "set_sm9_master", masters)


def add_doctor(world: Consortium, name: str, key: crypto.KeyPair) -> str:
    """hosp-b's admin adds `key` as a doctor; the patient grants it reports."""
    world.keys[name] = key
    payload = {"org_id": "hosp-b", "public_key": key.public, "suite": key.suite}
    world.ok("admin_b", "identity", "add_member", {**payload, "roles": ["doctor"]})
    world.grant(name, ["DiagnosticReport"])
    return did_for_key(key.suite, key.public)


def test_record_released_to_an_sm9_doctor_opens_with_its_key_only(world: Consortium) -> None:
    kgc = crypto.generate_sm9_master()
    publish(world, "admin_b", kgc)
    did = add_doctor(world, "dr9", kgc.issue(sm9_did("hosp-b", "oncall-cardiology")))
    assert did == "did:medchain:hosp-b:oncall-cardiology"
    got = fetch_record(world.node, world.keys["dr9"], "report-1")
    assert world.node.session(got.session_id)["status"] == "closed"  # acked by the sm9 key
    assert b"DiagnosticReport" in got.plaintext

    session_id = open_session(world.node, world.keys["dr9"], "report-1", "TREAT")
    delivery = fetch_delivery(world.node, world.keys["dr9"], session_id, world.edge_url)
    ciphertext = bytes.fromhex(delivery["ciphertext"])
    wrapped = bytes.fromhex(delivery["wrapped_key"])
    assert open_record("report-1", ciphertext, wrapped, world.keys["dr9"]) == got.plaintext
    # The same KGC's key for another DID, or the same DID from another KGC: nothing opens.
    for other in (
        kgc.issue(sm9_did("hosp-b", "oncall-neurology")),
        crypto.generate_sm9_master().issue(did),
    ):
        with pytest.raises(crypto.DecryptionFailed):
            open_record("report-1", ciphertext, wrapped, other)


def test_an_sm9_key_of_a_replaced_master_is_refused_by_gateway_and_edge(
    world: Consortium,
) -> None:
    kgc = crypto.generate_sm9_master()
    publish(world, "admin_b", kgc)
    add_doctor(world, "dr9", kgc.issue(sm9_did("hosp-b", "dr-old")))
    session_id = open_session(world.node, world.keys["dr9"], "report-1", "TREAT")
    publish(world, "admin_b", crypto.generate_sm9_master())  # the KGC was compromised
    with pytest.raises(ExchangeFailed) as e:
        fetch_delivery(world.node, world.keys["dr9"], session_id, world.edge_url)
    assert e.value.code == "UNAUTHORIZED" and "master key" in e.value.message
    # The gateway applies the chain's rule to signed reads too.
    headers = sign_request(world.keys["dr9"], CHAIN_ID, "GET", "/v1/records/report-1")
    r = httpx.get(world.node.url + "/v1/records/report-1", headers=headers)
    assert r.status_code == 403 and "master key" in r.json()["error"]["message"]
    assert world.node.org("hosp-b")["sm9_sign_master"] != kgc.sign_master_public.hex()


def test_record_released_to_a_hybrid_doctor(world: Consortium) -> None:
    add_doctor(world, "dr_h", crypto.generate_keypair("sm2+mldsa"))
    got = fetch_record(world.node, world.keys["dr_h"], "report-1")
    assert b"DiagnosticReport" in got.plaintext


def test_a_hybrid_patients_copy_of_the_data_key_opens_with_its_key(world: Consortium) -> None:
    key = crypto.generate_keypair("sm2+mldsa")
    assert world.node.send(key, "identity", "register_patient", {})["code_name"] == "OK"
    patient = did_for_key(key.suite, key.public)
    r = world.upload("admin_a", REPORT, patient=patient, record_id="report-h")
    assert r.status_code == 201, r.text
    vault = world.edge.vault
    cid = vault.cid("report-h")
    wrapped = vault.wrapped_key("report-h", key.public[:64])  # filed under its SM2 half
    assert b"DiagnosticReport" in open_record("report-h", vault.ciphertext(cid), wrapped, key)
