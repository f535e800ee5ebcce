"""Identity contract: every action, allowed and forbidden, on a real ledger."""

from __future__ import annotations

from typing import Any

import pytest
from support.ledger import Ledger, did_of
from support.stateless import apply_without_state

from medchain import crypto
from medchain.consensus.mempool import Mempool
from medchain.contracts.identity.handler import IdentityHandler
from medchain.contracts.identity.model import did_document, rotation_message
from medchain.core.tx import key_id
from medchain.exceptions import Code, InvalidTransaction


@pytest.fixture
def consortium(ledger: Ledger) -> dict[str, crypto.KeyPair]:
    """Two hospitals and a regulator, each with an admin; a doctor at each hospital."""
    k = {
        n: crypto.generate_keypair()
        for n in ("a_admin", "b_admin", "reg_admin", "doctor_a", "doctor_b", "patient")
    }
    for org, admin, kind in (
        ("hosp-a", "a_admin", "hospital"),
        ("hosp-b", "b_admin", "hospital"),
        ("regulator", "reg_admin", "regulator"),
    ):
        r = ledger.run(
            ledger.admin,
            "register_org",
            {"org_id": org, "name": org, "org_type": kind, "admin_public_key": k[admin].public},
        )
        assert r.code == Code.OK, r.log
    for doctor, org, admin in (
        ("doctor_a", "hosp-a", "a_admin"),
        ("doctor_b", "hosp-b", "b_admin"),
    ):
        r = ledger.run(
            k[admin],
            "add_member",
            {"org_id": org, "public_key": k[doctor].public, "roles": ["doctor"]},
        )
        assert r.code == Code.OK, r.log
    assert ledger.run(k["patient"], "register_patient", {}).code == Code.OK
    return k


def add(ledger: Ledger, signer: crypto.KeyPair, org: str, roles: list[str]) -> Code:
    new = crypto.generate_keypair()
    return ledger.run(
        signer, "add_member", {"org_id": org, "public_key": new.public, "roles": roles}
    ).code


def test_consortium_admin_registers_org_with_its_admin(ledger: Ledger, consortium: dict) -> None:
    org = ledger.state("identity/org/hosp-a")
    assert org["org_type"] == "hospital" and org["status"] == "active"
    admin = ledger.state(f"identity/did/{did_of(consortium['a_admin'])}")
    assert admin["org_id"] == "hosp-a" and admin["roles"] == ["org_admin"]


@pytest.mark.parametrize("signer", ["a_admin", "doctor_a", "patient"])
def test_only_consortium_admin_registers_orgs(
    ledger: Ledger, consortium: dict, signer: str
) -> None:
    r = ledger.run(
        consortium[signer],
        "register_org",
        {
            "org_id": "rogue",
            "name": "Rogue",
            "org_type": "hospital",
            "admin_public_key": crypto.generate_keypair().public,
        },
    )
    assert r.code == Code.UNAUTHORIZED
    assert ledger.state("identity/org/rogue") is None


def test_duplicate_org_is_rejected(ledger: Ledger, consortium: dict) -> None:
    r = ledger.run(
        ledger.admin,
        "register_org",
        {
            "org_id": "hosp-a",
            "name": "again",
            "org_type": "hospital",
            "admin_public_key": crypto.generate_keypair().public,
        },
    )
    assert r.code == Code.ALREADY_EXISTS


@pytest.mark.parametrize(
    ("signer", "org", "expected"),
    [
        ("a_admin", "hosp-a", Code.OK),
        ("root", "hosp-a", Code.OK),
        ("b_admin", "hosp-a", Code.UNAUTHORIZED),
        ("doctor_a", "hosp-a", Code.UNAUTHORIZED),
        ("patient", "hosp-a", Code.UNAUTHORIZED),
        ("a_admin", "no-such-org", Code.UNAUTHORIZED),
        ("root", "no-such-org", Code.NOT_FOUND),
    ],
)
def test_who_may_add_members(
    ledger: Ledger, consortium: dict, signer: str, org: str, expected: Code
) -> None:
    key = ledger.admin if signer == "root" else consortium[signer]
    assert add(ledger, key, org, ["nurse"]) == expected


@pytest.mark.parametrize(
    ("roles", "org", "expected"),
    [
        (["doctor", "researcher"], "hosp-a", Code.OK),
        (["patient"], "hosp-a", Code.INVALID_PAYLOAD),
        (["consortium_admin"], "hosp-a", Code.INVALID_PAYLOAD),
        (["regulator"], "hosp-a", Code.UNAUTHORIZED),
        (["regulator"], "regulator", Code.OK),
        (["surgeon-in-chief"], "hosp-a", Code.INVALID_PAYLOAD),
        ([], "hosp-a", Code.INVALID_PAYLOAD),
    ],
)
def test_roles_an_org_admin_may_assign(
    ledger: Ledger, consortium: dict, roles: list[str], org: str, expected: Code
) -> None:
    admin = consortium["reg_admin"] if org == "regulator" else consortium["a_admin"]
    assert add(ledger, admin, org, roles) == expected


def test_patient_self_registers_once(ledger: Ledger, consortium: dict) -> None:
    member = ledger.state(f"identity/did/{did_of(consortium['patient'])}")
    assert member["roles"] == ["patient"] and member["org_id"] is None
    assert ledger.run(consortium["patient"], "register_patient", {}).code == Code.ALREADY_EXISTS


def test_unregistered_key_may_only_self_register(ledger: Ledger, consortium: dict) -> None:
    stranger = crypto.generate_keypair()
    payload = {
        "org_id": "hosp-a",
        "public_key": crypto.generate_keypair().public,
        "roles": ["doctor"],
    }
    with pytest.raises(InvalidTransaction) as e:
        Mempool(ledger.app).add(ledger.tx(stranger, "identity", "add_member", payload))
    assert e.value.code == Code.UNKNOWN_SIGNER
    assert ledger.run(stranger, "add_member", payload).code == Code.UNKNOWN_SIGNER


def test_key_rotation_keeps_did_and_retires_old_key(ledger: Ledger, consortium: dict) -> None:
    old = consortium["doctor_a"]
    new = crypto.generate_keypair()
    did = did_of(old)
    nonce = ledger.nonce(old)
    proof = crypto.sign(new, rotation_message("medchain-test", did, new.public, nonce))
    r = ledger.run(old, "rotate_key", {"new_public_key": new.public, "proof": proof})
    assert r.code == Code.OK, r.log
    assert ledger.run(old, "revoke_member", {"did": did}).code == Code.SIGNER_INACTIVE
    member = ledger.state(f"identity/did/{did}")
    assert [k["status"] for k in member["keys"]] == ["rotated", "active"]
    assert member["did"] == did
    # The new key acts for the same DID.
    assert ledger.run(new, "revoke_member", {"did": did, "reason": "retiring"}).code == Code.OK


def test_rotation_needs_proof_from_the_new_key(ledger: Ledger, consortium: dict) -> None:
    old, new, other = consortium["doctor_a"], crypto.generate_keypair(), crypto.generate_keypair()
    proof = crypto.sign(
        other, rotation_message("medchain-test", did_of(old), new.public, ledger.nonce(old))
    )
    r = ledger.run(old, "rotate_key", {"new_public_key": new.public, "proof": proof})
    assert r.code == Code.BAD_SIGNATURE
    assert ledger.run(old, "register_patient", {}).code == Code.ALREADY_EXISTS  # old key works


def test_rotation_to_a_registered_key_is_rejected(ledger: Ledger, consortium: dict) -> None:
    old, taken = consortium["doctor_a"], consortium["doctor_b"]
    proof = crypto.sign(
        taken, rotation_message("medchain-test", did_of(old), taken.public, ledger.nonce(old))
    )
    r = ledger.run(old, "rotate_key", {"new_public_key": taken.public, "proof": proof})
    assert r.code == Code.ALREADY_EXISTS


def test_suspension_blocks_then_reinstatement_restores(ledger: Ledger, consortium: dict) -> None:
    doctor, admin = consortium["doctor_a"], consortium["a_admin"]
    did = did_of(doctor)
    assert ledger.run(admin, "suspend_member", {"did": did, "reason": "audit"}).code == Code.OK
    assert ledger.run(doctor, "revoke_member", {"did": did}).code == Code.SIGNER_INACTIVE
    assert ledger.run(admin, "reinstate_member", {"did": did}).code == Code.OK
    assert ledger.run(doctor, "revoke_member", {"did": did}).code == Code.OK


def test_revocation_is_final_and_in_force_from_the_next_block(
    ledger: Ledger, consortium: dict
) -> None:
    doctor, admin = consortium["doctor_a"], consortium["a_admin"]
    did = did_of(doctor)
    pending = ledger.tx(doctor, "identity", "register_patient", {})
    assert ledger.run(admin, "revoke_member", {"did": did}).code == Code.OK
    # A tx signed before the revocation, included after it, is refused.
    assert ledger.commit([pending]).tx_results[0].code == Code.SIGNER_INACTIVE
    with pytest.raises(InvalidTransaction) as e:
        Mempool(ledger.app).add(ledger.tx(doctor, "identity", "register_patient", {}))
    assert e.value.code == Code.SIGNER_INACTIVE
    assert ledger.run(admin, "reinstate_member", {"did": did}).code == Code.INVALID_STATE


@pytest.mark.parametrize(
    ("signer", "target", "action", "expected"),
    [
        ("b_admin", "doctor_a", "suspend_member", Code.UNAUTHORIZED),
        ("doctor_b", "doctor_a", "revoke_member", Code.UNAUTHORIZED),
        ("a_admin", "patient", "suspend_member", Code.UNAUTHORIZED),
        ("root", "patient", "suspend_member", Code.OK),
        ("patient", "patient", "revoke_member", Code.OK),
        ("doctor_a", "doctor_a", "revoke_member", Code.OK),
        ("doctor_a", "doctor_a", "suspend_member", Code.UNAUTHORIZED),
        ("a_admin", "root", "revoke_member", Code.UNAUTHORIZED),
    ],
)
def test_who_may_change_member_status(
    ledger: Ledger, consortium: dict, signer: str, target: str, action: str, expected: Code
) -> None:
    keys = {**consortium, "root": ledger.admin}
    r = ledger.run(keys[signer], action, {"did": did_of(keys[target])})
    assert r.code == expected, r.log


def test_set_roles_by_own_org_admin_only(ledger: Ledger, consortium: dict) -> None:
    did = did_of(consortium["doctor_a"])
    assert (
        ledger.run(consortium["b_admin"], "set_roles", {"did": did, "roles": ["nurse"]}).code
        == Code.UNAUTHORIZED
    )
    assert (
        ledger.run(
            consortium["a_admin"], "set_roles", {"did": did, "roles": ["doctor", "researcher"]}
        ).code
        == Code.OK
    )
    assert ledger.state(f"identity/did/{did}")["roles"] == ["doctor", "researcher"]
    assert (
        ledger.run(
            consortium["a_admin"],
            "set_roles",
            {"did": did_of(consortium["patient"]), "roles": ["doctor"]},
        ).code
        == Code.UNAUTHORIZED
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"org_id": "hosp-a", "public_key": b"short", "roles": ["doctor"]},
        {"org_id": "hosp-a", "public_key": "not-bytes", "roles": ["doctor"]},
        {"org_id": "hosp-a", "roles": ["doctor"]},
        {"org_id": "hosp-a", "public_key": bytes(64), "roles": ["doctor"], "extra": 1},
        {"org_id": "Hosp A!", "public_key": bytes(64), "roles": ["doctor"]},
        {"org_id": "hosp-a", "public_key": bytes(64), "roles": "doctor"},
    ],
)
def test_malformed_payload_is_rejected_without_writes(
    ledger: Ledger, consortium: dict, payload: dict
) -> None:
    admin = consortium["a_admin"]
    before = ledger.nonce(admin)
    result = ledger.commit([ledger.tx(admin, "identity", "add_member", payload)])
    assert result.tx_results[0].code == Code.INVALID_PAYLOAD
    # Only the nonce moved: the failed tx cannot be replayed, and wrote nothing else.
    assert list(result.writes) == ["nonce/" + key_id(admin.suite, admin.public).hex()]
    assert ledger.nonce(admin) == before + 1


def test_unknown_action_and_contract(ledger: Ledger, consortium: dict) -> None:
    assert ledger.run(consortium["a_admin"], "promote_everyone", {}).code == Code.UNKNOWN_ACTION
    r = ledger.run(consortium["a_admin"], "anything", {}, contract="no_such")
    assert r.code == Code.UNKNOWN_CONTRACT


def test_did_document_lists_keys_and_status(ledger: Ledger, consortium: dict) -> None:
    doc = did_document(ledger.state(f"identity/did/{did_of(consortium['doctor_a'])}"))
    assert doc["id"].startswith("did:medchain:")
    assert doc["verificationMethod"][0]["publicKeyHex"] == consortium["doctor_a"].public.hex()
    assert doc["authentication"] == [doc["verificationMethod"][0]["id"]]
    assert doc["medchain"]["roles"] == ["doctor"]


def validator_tx(ledger: Ledger, pub: bytes, power: int) -> Code:
    return ledger.run(ledger.admin, "set_validator", {"pub_key": pub, "power": power}).code


def test_only_consortium_admin_changes_validators(ledger: Ledger, consortium: dict) -> None:
    pub = bytes(31) + b"\x01"
    r = ledger.run(consortium["a_admin"], "set_validator", {"pub_key": pub, "power": 1})
    assert r.code == Code.UNAUTHORIZED
    assert validator_tx(ledger, pub, 1) == Code.OK
    assert ledger.state(f"identity/validator/{pub.hex()}")["power"] == 1


@pytest.mark.parametrize(("pub", "power"), [(bytes(31), 1), (bytes(32), -1), (bytes(32), 10**7)])
def test_malformed_validator_changes_are_rejected(ledger: Ledger, pub: bytes, power: int) -> None:
    assert validator_tx(ledger, pub, power) == Code.INVALID_PAYLOAD


def test_no_validator_may_reach_a_third_of_the_power(ledger: Ledger) -> None:
    keys = [bytes(31) + bytes([i]) for i in range(4)]
    for k in keys:
        assert validator_tx(ledger, k, 10) == Code.OK
    assert validator_tx(ledger, keys[0], 16) == Code.INVALID_STATE  # 16 of 46 > 1/3
    assert validator_tx(ledger, keys[0], 14) == Code.OK  # 14 of 44 < 1/3


def test_removing_unknown_or_last_validator_is_refused(ledger: Ledger) -> None:
    only = bytes(31) + b"\x09"
    assert validator_tx(ledger, only, 0) == Code.NOT_FOUND
    assert validator_tx(ledger, only, 5) == Code.OK
    assert validator_tx(ledger, only, 0) == Code.INVALID_STATE


def test_removing_one_of_four_equal_validators_is_allowed(ledger: Ledger) -> None:
    keys = [bytes(31) + bytes([i]) for i in range(4)]
    for k in keys:
        assert validator_tx(ledger, k, 1) == Code.OK
    assert validator_tx(ledger, keys[3], 0) == Code.OK
    assert validator_tx(ledger, keys[3], 1) == Code.OK


KEY = crypto.generate_keypair().public
VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "register_org": {
        "org_id": "hosp-c",
        "name": "Hospital C",
        "org_type": "hospital",
        "admin_public_key": KEY,
    },
    "set_org_roles": {"org_type": "lab", "roles": ["org_admin", "lab_technician"]},
    "set_endpoint": {"org_id": "hosp-c", "edge_url": "https://edge.hosp-c.example/v1"},
    "add_member": {"org_id": "hosp-c", "public_key": KEY, "roles": ["doctor"], "name": "Dr Li"},
    "set_roles": {"did": "did:medchain:x", "roles": ["nurse", "nurse"]},
    "suspend_member": {"did": "did:medchain:x", "reason": "under investigation"},
    "reinstate_member": {"did": "did:medchain:x"},
    "revoke_member": {"did": "did:medchain:x", "reason": "left"},
    "rotate_key": {"new_public_key": KEY, "proof": b"\x00" * 64},
    "set_validator": {"pub_key": bytes(32), "power": 10, "name": "node-1"},
}


@pytest.mark.parametrize("action", sorted(VALID_PAYLOADS))
def test_well_formed_identity_payloads_go_on_to_read_state(action: str) -> None:
    with pytest.raises(AssertionError, match=r"state (read|scan)"):
        apply_without_state(IdentityHandler(), action, VALID_PAYLOADS[action])


@pytest.mark.parametrize(
    ("action", "change"),
    [
        ("register_org", {"org_id": "hosp-c\n"}),  # a trailing newline is not an id
        ("register_org", {"org_id": "Hosp C!"}),
        ("register_org", {"name": "Hospital\x00C"}),
        ("register_org", {"org_type": "casino"}),
        ("register_org", {"admin_public_key": KEY[:-1]}),  # wrong size for the suite
        ("register_org", {"admin_suite": "rot13"}),
        ("set_org_roles", {"roles": ["lab_technician"]}),  # every kind keeps an org admin
        ("set_org_roles", {"roles": ["org_admin", "regulator"]}),  # regulators only
        ("set_org_roles", {"roles": ["org_admin", "patient"]}),
        ("set_org_roles", {"roles": []}),
        ("set_endpoint", {"edge_url": "ftp://edge.example"}),
        ("set_endpoint", {"edge_url": "https://edge.example/\n"}),
        ("add_member", {"roles": ["consortium_admin"]}),
        ("add_member", {"roles": "doctor"}),
        ("add_member", {"name": ""}),
        ("set_roles", {"roles": ["patient"]}),
        ("suspend_member", {"reason": "x" * 501}),
        ("revoke_member", {"did": 7}),
        ("rotate_key", {"new_public_key": b"short"}),
        ("rotate_key", {"proof": "not-bytes"}),
        ("set_validator", {"pub_key": bytes(31)}),
        ("set_validator", {"power": -1}),
        ("set_validator", {"power": 1_000_001}),
        ("set_validator", {"power": True}),  # bool is not int
    ],
)
def test_identity_payload_rules_hold_before_any_state_read(
    action: str, change: dict[str, Any]
) -> None:
    with pytest.raises(InvalidTransaction) as refused:
        apply_without_state(IdentityHandler(), action, {**VALID_PAYLOADS[action], **change})
    assert refused.value.code == Code.INVALID_PAYLOAD


def test_register_patient_takes_no_fields() -> None:
    with pytest.raises(InvalidTransaction) as refused:
        apply_without_state(IdentityHandler(), "register_patient", {"name": "Zhang San"})
    assert refused.value.code == Code.INVALID_PAYLOAD
