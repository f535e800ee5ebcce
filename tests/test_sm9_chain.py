"""SM9 keys on the chain: an org admin publishes its KGC's master public keys, and an
sm9 key acts only for its own org's published master key and its holder's own DID."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.ledger import Ledger, did_of
from test_governance import ORGS, VotingLedger

from medchain import crypto
from medchain.contracts.identity.model import rotation_message, sm9_did
from medchain.core.tx import build_tx
from medchain.exceptions import Code

ORG = "hosp-s"


def publish(ledger: Ledger, admin: crypto.KeyPair, kgc: crypto.Sm9Master) -> Any:
    """The org admin's identity.set_sm9_master for this KGC."""
    return ledger.run(
        admin,
        "set_sm9_master",
        {"sign_master_public": kgc.sign_master_public, "enc_master_public": kgc.enc_master_public},
    )


def add_sm9(ledger: Ledger, admin: crypto.KeyPair, key: crypto.KeyPair) -> Any:
    """The org admin adds `key` as an sm9 doctor of ORG."""
    payload = {"org_id": ORG, "public_key": key.public, "suite": "sm9", "roles": ["doctor"]}
    return ledger.run(admin, "add_member", payload)


@pytest.fixture(name="org")
def org_fixture(ledger: Ledger) -> tuple[crypto.KeyPair, crypto.Sm9Master]:
    admin = crypto.generate_keypair()
    ledger.add_org(ORG, admin)
    kgc = crypto.generate_sm9_master()
    r = publish(ledger, admin, kgc)
    assert r.code == Code.OK, r.log
    return admin, kgc


def test_org_admin_publishes_master_keys_in_the_org_record(
    ledger: Ledger, org: tuple[crypto.KeyPair, crypto.Sm9Master]
) -> None:
    _, kgc = org
    record = ledger.state(f"identity/org/{ORG}")
    assert record["sm9_sign_master"] == kgc.sign_master_public
    assert record["sm9_enc_master"] == kgc.enc_master_public


def test_only_an_org_admin_of_its_own_org_publishes(
    ledger: Ledger, org: tuple[crypto.KeyPair, crypto.Sm9Master]
) -> None:
    other_admin = crypto.generate_keypair()
    ledger.add_org("hosp-t", other_admin)
    kgc = crypto.generate_sm9_master()
    # The consortium admin has no org; another org's admin publishes only for its own.
    assert publish(ledger, ledger.admin, kgc).code == Code.UNAUTHORIZED
    assert publish(ledger, other_admin, kgc).code == Code.OK
    assert ledger.state(f"identity/org/{ORG}")["sm9_sign_master"] != kgc.sign_master_public
    nurse = crypto.generate_keypair()
    ledger.add_staff(org[0], ORG, nurse, ["nurse"])
    assert publish(ledger, nurse, kgc).code == Code.UNAUTHORIZED


def test_master_keys_must_be_curve_points(
    ledger: Ledger, org: tuple[crypto.KeyPair, crypto.Sm9Master]
) -> None:
    admin, kgc = org
    bad = {"sign_master_public": b"\x01" * 128, "enc_master_public": kgc.enc_master_public}
    r = ledger.run(admin, "set_sm9_master", bad)
    assert r.code == Code.INVALID_PAYLOAD and "sign_master_public" in r.log
    bad = {"sign_master_public": kgc.sign_master_public, "enc_master_public": b"\x01" * 64}
    r = ledger.run(admin, "set_sm9_master", bad)
    assert r.code == Code.INVALID_PAYLOAD and "enc_master_public" in r.log


def test_sm9_member_signs_with_the_did_its_key_names(
    ledger: Ledger, org: tuple[crypto.KeyPair, crypto.Sm9Master]
) -> None:
    admin, kgc = org
    did = sm9_did(ORG, "oncall-cardiology")
    doctor = kgc.issue(did)
    r = add_sm9(ledger, admin, doctor)
    assert r.code == Code.OK, r.log
    member = ledger.state(f"identity/did/{did}")
    assert member["did"] == did and member["keys"][0]["suite"] == "sm9"
    # The doctor signs a tx as that DID; the chain authenticates it.
    r = ledger.run(doctor, "revoke_member", {"did": did, "reason": "leaving"})
    assert r.code == Code.OK, r.log
    assert ledger.state(f"identity/did/{did}")["status"] == "revoked"


def test_add_member_refuses_an_sm9_key_of_another_master_or_name(
    ledger: Ledger, org: tuple[crypto.KeyPair, crypto.Sm9Master]
) -> None:
    admin, kgc = org
    rogue = crypto.generate_sm9_master()
    r = add_sm9(ledger, admin, rogue.issue(sm9_did(ORG, "dr-rogue")))
    assert r.code == Code.UNAUTHORIZED and "master key" in r.log
    # Names outside the org's namespace: another org's, and a key-derived DID's form.
    for did in (sm9_did("hosp-t", "dr-x"), did_of(crypto.generate_keypair()), "Bob"):
        r = add_sm9(ledger, admin, kgc.issue(did))
        assert r.code == Code.INVALID_PAYLOAD and "named" in r.log, did


def test_an_org_without_a_master_key_cannot_add_sm9_members(ledger: Ledger) -> None:
    admin = crypto.generate_keypair()
    ledger.add_org(ORG, admin)
    r = add_sm9(ledger, admin, crypto.generate_sm9_master().issue(sm9_did(ORG, "dr-a")))
    assert r.code == Code.UNAUTHORIZED and "published no SM9 master key" in r.log


def test_a_patient_cannot_register_an_sm9_key(
    ledger: Ledger, org: tuple[crypto.KeyPair, crypto.Sm9Master]
) -> None:
    _, kgc = org
    key = kgc.issue(sm9_did(ORG, "patient-1"))
    r = ledger.run(key, "register_patient", {})
    assert r.code == Code.UNAUTHORIZED and "patient cannot register an sm9 key" in r.log


def test_a_new_org_cannot_start_with_an_sm9_admin(
    ledger: Ledger, org: tuple[crypto.KeyPair, crypto.Sm9Master]
) -> None:
    _, kgc = org
    payload = {
        "org_id": "hosp-u",
        "name": "U",
        "org_type": "hospital",
        "admin_public_key": kgc.issue(sm9_did("hosp-u", "admin")).public,
        "admin_suite": "sm9",
    }
    r = ledger.run(ledger.admin, "register_org", payload)
    assert r.code == Code.INVALID_PAYLOAD and "no SM9 master key yet" in r.log


def test_rotation_to_sm9_must_name_the_members_own_did(
    ledger: Ledger, org: tuple[crypto.KeyPair, crypto.Sm9Master]
) -> None:
    admin, kgc = org
    nurse = crypto.generate_keypair()
    ledger.add_staff(admin, ORG, nurse, ["nurse"])
    did = did_of(nurse)

    def rotate(new: crypto.KeyPair) -> Any:
        message = rotation_message(ledger.chain_id, did, new.public, ledger.nonce(nurse))
        payload = {"new_public_key": new.public, "new_suite": "sm9"}
        return ledger.run(nurse, "rotate_key", {**payload, "proof": crypto.sign(new, message)})

    r = rotate(kgc.issue(sm9_did(ORG, "someone-else")))
    assert r.code == Code.UNAUTHORIZED and "not the member's DID" in r.log
    r = rotate(crypto.generate_sm9_master().issue(did))
    assert r.code == Code.UNAUTHORIZED and "master key" in r.log
    new = kgc.issue(did)
    r = rotate(new)
    assert r.code == Code.OK, r.log
    r = ledger.run(new, "set_endpoint", {"org_id": ORG, "edge_url": "https://s.example"})
    assert r.code == Code.UNAUTHORIZED  # authenticated as the nurse (not an admin): DID kept
    assert ledger.state(f"identity/did/{did}")["keys"][-1]["suite"] == "sm9"


def test_a_new_master_key_stops_keys_issued_under_the_old_one(
    ledger: Ledger, org: tuple[crypto.KeyPair, crypto.Sm9Master]
) -> None:
    admin, kgc = org
    did = sm9_did(ORG, "dr-b")
    doctor = kgc.issue(did)
    assert add_sm9(ledger, admin, doctor).code == Code.OK
    # The KGC was compromised: the admin publishes a new master key.
    assert publish(ledger, admin, crypto.generate_sm9_master()).code == Code.OK
    r = ledger.run(doctor, "revoke_member", {"did": did})
    assert r.code == Code.SIGNER_INACTIVE and "master key" in r.log


def test_an_sm9_admin_cannot_replace_the_master_its_own_key_hangs_on(
    ledger: Ledger, org: tuple[crypto.KeyPair, crypto.Sm9Master]
) -> None:
    admin, kgc = org
    sm9_admin = kgc.issue(sm9_did(ORG, "admin-2"))
    payload = {"org_id": ORG, "public_key": sm9_admin.public, "suite": "sm9"}
    assert ledger.run(admin, "add_member", {**payload, "roles": ["org_admin"]}).code == Code.OK
    r = publish(ledger, sm9_admin, crypto.generate_sm9_master())
    assert r.code == Code.INVALID_STATE and "sm or sm2+mldsa admin key" in r.log
    assert publish(ledger, sm9_admin, kgc).code == Code.OK  # the same keys again: harmless


def test_a_forged_sm9_signature_is_refused(
    ledger: Ledger, org: tuple[crypto.KeyPair, crypto.Sm9Master]
) -> None:
    admin, kgc = org
    did = sm9_did(ORG, "dr-c")
    doctor = kgc.issue(did)
    assert add_sm9(ledger, admin, doctor).code == Code.OK
    # Someone with another KGC's key for the same DID signs with the doctor's public key.
    forger = crypto.generate_sm9_master().issue(did)
    tx = build_tx(
        crypto.KeyPair("sm9", forger.private, doctor.public),
        chain_id=ledger.chain_id,
        contract="identity",
        action="revoke_member",
        payload={"did": did},
        nonce=ledger.nonce(doctor),
    )
    assert ledger.commit([tx]).tx_results[0].code == Code.BAD_SIGNATURE


def test_vote_mode_leaves_an_orgs_own_sm9_keys_to_its_admin(tmp_path: Path) -> None:
    admins = {org: crypto.generate_keypair() for org in ORGS}
    chain = VotingLedger(tmp_path / "chain.db", crypto.generate_keypair(), admins)
    org_id = ORGS[0]
    kgc = crypto.generate_sm9_master()
    assert publish(chain, admins[org_id], kgc).code == Code.OK
    assert publish(chain, chain.admin, kgc).code == Code.UNAUTHORIZED  # no org, no vote
    doctor = kgc.issue(sm9_did(org_id, "dr-v"))
    payload = {"org_id": org_id, "public_key": doctor.public, "suite": "sm9"}
    r = chain.run(admins[org_id], "add_member", {**payload, "roles": ["doctor"]})
    assert r.code == Code.OK, r.log


def test_genesis_refuses_an_sm9_identity(tmp_path: Path) -> None:
    kgc = crypto.generate_sm9_master()
    # core/genesis refuses it by shape already; identity.init_genesis would too.
    with pytest.raises(ValueError, match=r"consortium_admins\[0\]: public_key"):
        Ledger(tmp_path / "chain.db", kgc.issue(sm9_did("root-org", "root")))
