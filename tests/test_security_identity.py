"""Issue 12, finding 1: only a care provider's clinical staff act as clinicians.

An organisation's kind is fixed by the consortium at admission; which roles
each kind may hold is governed state; break-glass is asked for and approved by
two different clinicians of one hospital or clinic, the approver in a role the
break-glass policy names.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.ledger import CHAIN_ID, Ledger, did_of

from medchain import crypto, encoding
from medchain.consensus.application import Application
from medchain.contracts.consent import decide
from medchain.contracts.identity.model import rotation_message
from medchain.core.genesis import parse_genesis
from medchain.exceptions import Code
from medchain.storage.chain_db import ChainDB

REASON = "unconscious in the emergency room, allergy status unknown"


@pytest.fixture
def world(ledger: Ledger) -> dict[str, Any]:
    """A hospital with a doctor and a nurse; a pharmacy; a carrier; a patient; a record."""
    k = {
        n: crypto.generate_keypair()
        for n in (
            "hosp_admin",
            "doctor",
            "nurse",
            "pharmacy_admin",
            "pharmacist",
            "carrier_admin",
            "patient",
        )
    }
    ledger.add_org("hosp-a", k["hosp_admin"])
    ledger.add_org("pharmacy", k["pharmacy_admin"], "pharmacy")
    ledger.add_org("carrier", k["carrier_admin"], "logistics")
    ledger.add_staff(k["hosp_admin"], "hosp-a", k["doctor"], ["doctor"])
    ledger.add_staff(k["hosp_admin"], "hosp-a", k["nurse"], ["nurse"])
    ledger.add_staff(k["pharmacy_admin"], "pharmacy", k["pharmacist"], ["pharmacist"])
    ledger.add_patient(k["patient"])
    r = ledger.run(
        k["hosp_admin"],
        "register",
        {
            "record_id": "obs-1",
            "patient": did_of(k["patient"]),
            "resource_type": "Observation",
            "cid": "b" + "a" * 58,
            "content_hash": bytes(32),
        },
        "records",
    )
    assert r.code == Code.OK, r.log
    return k


def with_attending(ledger: Ledger, world: dict[str, Any]) -> crypto.KeyPair:
    """A senior doctor of hosp-a, in the default approving role."""
    attending = crypto.generate_keypair()
    ledger.add_staff(world["hosp_admin"], "hosp-a", attending, ["doctor", "attending"])
    return attending


def add_member(ledger: Ledger, admin: crypto.KeyPair, org: str, roles: list[str]) -> Any:
    new = crypto.generate_keypair()
    payload = {"org_id": org, "public_key": new.public, "roles": roles}
    return new, ledger.run(admin, "add_member", payload)


def break_glass(ledger: Ledger, key: crypto.KeyPair, patient: crypto.KeyPair) -> Any:
    payload = {"patient": did_of(patient), "reason": REASON}
    return ledger.run(key, "break_glass", payload, "consent")


def approve(ledger: Ledger, key: crypto.KeyPair, request_id: str) -> Any:
    return ledger.run(key, "approve_break_glass", {"request_id": request_id}, "consent")


def request_id_of(result: Any) -> str:
    assert result.code == Code.OK, result.log
    return str(dict(result.events[0].attributes)["request_id"])


def may_read_in_emergency(ledger: Ledger, key: crypto.KeyPair) -> bool:
    """The access decision every node and edge makes, for emergency treatment, now."""
    db = ledger.app.db

    def scan(prefix: str) -> Iterator[tuple[str, Any]]:
        return ((k, encoding.decode(v)) for k, v in db.scan(prefix, 1000))

    member = ledger.state(f"identity/did/{did_of(key)}")
    record = ledger.state("records/record/obs-1")
    return decide(ledger.state, scan, member, record, "ETREAT", db.block_time_ms()).allowed


def test_logistics_admin_cannot_add_a_doctor(ledger: Ledger, world: dict[str, Any]) -> None:
    _, r = add_member(ledger, world["carrier_admin"], "carrier", ["doctor"])
    assert r.code == Code.UNAUTHORIZED
    assert "logistics" in r.log and "doctor" in r.log
    _, r = add_member(ledger, world["carrier_admin"], "carrier", ["device"])
    assert r.code == Code.OK, r.log


def test_pharmacy_cannot_hold_a_doctor(ledger: Ledger, world: dict[str, Any]) -> None:
    k = world
    _, r = add_member(ledger, k["pharmacy_admin"], "pharmacy", ["pharmacist", "doctor"])
    assert r.code == Code.UNAUTHORIZED
    promote = {"did": did_of(k["pharmacist"]), "roles": ["doctor"]}
    assert ledger.run(k["pharmacy_admin"], "set_roles", promote).code == Code.UNAUTHORIZED
    assert ledger.run(ledger.admin, "set_roles", promote).code == Code.UNAUTHORIZED  # kind rules
    assert ledger.state(f"identity/did/{did_of(k['pharmacist'])}")["roles"] == ["pharmacist"]


def test_org_admin_cannot_change_its_org_kind(ledger: Ledger, world: dict[str, Any]) -> None:
    k = world
    sneaky = {"org_id": "carrier", "edge_url": "https://carrier.example", "org_type": "hospital"}
    assert ledger.run(k["carrier_admin"], "set_endpoint", sneaky).code == Code.INVALID_PAYLOAD
    readmit = {
        "org_id": "carrier",
        "name": "carrier",
        "org_type": "hospital",
        "admin_public_key": crypto.generate_keypair().public,
    }
    assert ledger.run(k["carrier_admin"], "register_org", readmit).code == Code.UNAUTHORIZED
    assert ledger.run(ledger.admin, "register_org", readmit).code == Code.ALREADY_EXISTS
    assert ledger.state("identity/org/carrier")["org_type"] == "logistics"


def test_hospital_org_admin_not_in_an_approving_role_cannot_approve(
    ledger: Ledger, world: dict[str, Any]
) -> None:
    k = world
    request_id = request_id_of(break_glass(ledger, k["doctor"], k["patient"]))
    for signer in (k["hosp_admin"], k["nurse"]):
        r = approve(ledger, signer, request_id)
        assert r.code == Code.UNAUTHORIZED and "attending" in r.log
    assert not may_read_in_emergency(ledger, k["doctor"])
    assert approve(ledger, with_attending(ledger, k), request_id).code == Code.OK
    assert may_read_in_emergency(ledger, k["doctor"])


def test_requester_cannot_approve_own_request_even_after_rotating_keys(
    ledger: Ledger, world: dict[str, Any]
) -> None:
    attending = with_attending(ledger, world)
    request_id = request_id_of(break_glass(ledger, attending, world["patient"]))
    new = crypto.generate_keypair()
    did = did_of(attending)
    proof = crypto.sign(
        new, rotation_message(ledger.chain_id, did, new.public, ledger.nonce(attending))
    )
    rotate = {"new_public_key": new.public, "proof": proof}
    assert ledger.run(attending, "rotate_key", rotate).code == Code.OK
    r = approve(ledger, new, request_id)
    assert r.code == Code.UNAUTHORIZED and "requester" in r.log
    assert ledger.state(f"consent/break-glass/{request_id}")["status"] == "pending"


def test_doctor_of_a_pharmacy_or_logistics_org_cannot_request_break_glass(
    ledger: Ledger, world: dict[str, Any]
) -> None:
    """Even after governance lets such orgs hold doctors, emergency access stays with care."""
    k = world
    for org, admin, kind in (
        ("pharmacy", "pharmacy_admin", "pharmacy"),
        ("carrier", "carrier_admin", "logistics"),
    ):
        widen = {"org_type": kind, "roles": ["org_admin", "device", "doctor", "attending"]}
        assert ledger.run(ledger.admin, "set_org_roles", widen).code == Code.OK
        doctor, r = add_member(ledger, k[admin], org, ["doctor", "attending"])
        assert r.code == Code.OK, r.log
        r = break_glass(ledger, doctor, k["patient"])
        assert r.code == Code.UNAUTHORIZED and "hospital or clinic" in r.log
        # nor may it approve a hospital doctor's request
        request_id = request_id_of(break_glass(ledger, k["doctor"], k["patient"]))
        assert approve(ledger, doctor, request_id).code == Code.UNAUTHORIZED


def test_clinic_staff_may_use_break_glass(ledger: Ledger, world: dict[str, Any]) -> None:
    admin = crypto.generate_keypair()
    ledger.add_org("clinic-a", admin, "clinic")
    doctor, _ = add_member(ledger, admin, "clinic-a", ["doctor"])
    head, _ = add_member(ledger, admin, "clinic-a", ["department_head"])
    request_id = request_id_of(break_glass(ledger, doctor, world["patient"]))
    other_org = with_attending(ledger, world)
    assert approve(ledger, other_org, request_id).code == Code.UNAUTHORIZED
    assert approve(ledger, head, request_id).code == Code.OK


def test_approval_refused_once_the_requester_is_suspended(
    ledger: Ledger, world: dict[str, Any]
) -> None:
    k = world
    request_id = request_id_of(break_glass(ledger, k["doctor"], k["patient"]))
    suspend = {"did": did_of(k["doctor"]), "reason": "under investigation"}
    assert ledger.run(k["hosp_admin"], "suspend_member", suspend).code == Code.OK
    assert approve(ledger, with_attending(ledger, k), request_id).code == Code.UNAUTHORIZED


def test_consortium_admin_changes_role_per_kind_policy_from_the_next_tx(
    ledger: Ledger, world: dict[str, Any]
) -> None:
    k = world
    widen = {"org_type": "pharmacy", "roles": ["org_admin", "pharmacist", "lab_technician"]}
    assert ledger.run(k["pharmacy_admin"], "set_org_roles", widen).code == Code.UNAUTHORIZED

    def hire() -> bytes:
        new = crypto.generate_keypair()
        payload = {"org_id": "pharmacy", "public_key": new.public, "roles": ["lab_technician"]}
        return ledger.tx(k["pharmacy_admin"], "identity", "add_member", payload)

    before = hire()
    change = ledger.tx(ledger.admin, "identity", "set_org_roles", widen)
    after = ledger.tx(
        k["pharmacy_admin"],
        "identity",
        "add_member",
        {
            "org_id": "pharmacy",
            "public_key": crypto.generate_keypair().public,
            "roles": ["lab_technician"],
        },
        nonce=ledger.nonce(k["pharmacy_admin"]) + 1,
    )
    codes = [r.code for r in ledger.commit([before, change, after]).tx_results]
    assert codes == [Code.UNAUTHORIZED, Code.OK, Code.OK]
    # the device role, no longer listed, is refused from now on
    assert add_member(ledger, k["pharmacy_admin"], "pharmacy", ["device"])[1].code == (
        Code.UNAUTHORIZED
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"org_type": "logistics", "roles": ["device"]},  # every kind keeps an org admin
        {"org_type": "hospital", "roles": ["org_admin", "regulator"]},  # regulators only
        {"org_type": "spaceport", "roles": ["org_admin"]},
        {"org_type": "hospital", "roles": ["org_admin", "patient"]},
        {"org_type": "hospital", "roles": []},
    ],
)
def test_org_roles_policy_keeps_its_invariants(ledger: Ledger, payload: dict[str, Any]) -> None:
    assert ledger.run(ledger.admin, "set_org_roles", payload).code == Code.INVALID_PAYLOAD


def test_break_glass_approver_roles_are_governed(ledger: Ledger, world: dict[str, Any]) -> None:
    k = world
    policy = {"requester_roles": ["doctor"], "approver_roles": ["doctor", "attending"]}
    assert ledger.run(k["hosp_admin"], "set_break_glass_policy", policy, "consent").code == (
        Code.UNAUTHORIZED
    )
    non_clinical = {"requester_roles": ["doctor"], "approver_roles": ["org_admin"]}
    assert ledger.run(ledger.admin, "set_break_glass_policy", non_clinical, "consent").code == (
        Code.INVALID_PAYLOAD
    )
    request_id = request_id_of(break_glass(ledger, with_attending(ledger, k), k["patient"]))
    assert approve(ledger, k["doctor"], request_id).code == Code.UNAUTHORIZED
    assert ledger.run(ledger.admin, "set_break_glass_policy", policy, "consent").code == Code.OK
    assert approve(ledger, k["doctor"], request_id).code == Code.OK


def test_attack_chain_from_the_issue_is_refused_at_the_first_step(
    ledger: Ledger, world: dict[str, Any]
) -> None:
    """Logistics admin -> doctor -> break-glass -> self-approve -> exchange."""
    k = world
    fake_doctor, r = add_member(ledger, k["carrier_admin"], "carrier", ["doctor"])
    assert r.code == Code.UNAUTHORIZED
    assert ledger.state(f"identity/did/{did_of(fake_doctor)}") is None
    assert break_glass(ledger, fake_doctor, k["patient"]).code == Code.UNKNOWN_SIGNER
    r = break_glass(ledger, k["carrier_admin"], k["patient"])  # the admin itself
    assert r.code == Code.UNAUTHORIZED
    request = {"record_id": "obs-1", "purpose": "ETREAT"}
    for key in (fake_doctor, k["carrier_admin"]):
        assert ledger.run(key, "request", request, "exchange").code != Code.OK
    assert not may_read_in_emergency(ledger, k["carrier_admin"])
    assert list(ledger.app.db.scan("consent/break-glass/", 10)) == []


def test_genesis_may_set_the_roles_of_a_kind(tmp_path: Path) -> None:
    admin = crypto.generate_keypair()
    doc = {
        "chain_id": CHAIN_ID,
        "genesis_time_ms": 1_700_000_000_000,
        "consortium_admins": [{"name": "root", "public_key": admin.public.hex()}],
        "org_roles": {"insurer": ["org_admin", "device"]},
    }
    app = Application(ChainDB(tmp_path / "a.db"))
    app.init_chain(parse_genesis(doc))
    ledger_roles = app.db.get("identity/org-roles/insurer")
    assert ledger_roles is not None
    bad = {**doc, "org_roles": {"hospital": ["org_admin", "regulator"]}}
    with pytest.raises(ValueError, match="regulator"):
        Application(ChainDB(tmp_path / "b.db")).init_chain(parse_genesis(bad))
