"""Story 1, the consortium: organisations join, staff are added by their admins,
patients register themselves, a doctor rotates a key, a nurse is suspended then
revoked, and the chain refuses a replay, a stale key and unauthorised actions."""

from __future__ import annotations

from medchain import crypto
from medchain.contracts.identity.model import did_for_key, rotation_message
from medchain.core.tx import build_tx
from medchain.demo.run import (
    DEMO_CHAIN_ID,
    DEMO_KDF_ITERATIONS,
    DEMO_PASSPHRASE,
    ORGS,
    PATIENTS,
    STAFF,
    DemoRun,
)


def run_demo_transactions(run: DemoRun) -> None:
    """The demo story, as real signed transactions through the gateway."""
    for org_id, name, org_type in ORGS:
        run.step(
            f"consortium admits {name}",
            "consortium-admin",
            "identity",
            "register_org",
            {
                "org_id": org_id,
                "name": name,
                "org_type": org_type,
                "admin_public_key": run.key(f"{org_id}-admin").public,
                "admin_name": f"{org_id} administrator",
            },
        )
    for person, org_id, roles in STAFF:
        run.step(
            f"{org_id} admin adds {person} as {'/'.join(roles)}",
            f"{org_id}-admin",
            "identity",
            "add_member",
            {
                "org_id": org_id,
                "public_key": run.key(person).public,
                "roles": roles,
                "name": person,
            },
        )
    for patient in PATIENTS:
        run.step(f"{patient} registers themself", patient, "identity", "register_patient", {})

    run.step(
        "pharmacist tries to add a doctor (not an org admin)",
        "pharmacist-zhao",
        "identity",
        "add_member",
        {"org_id": "yifeng-pharmacy", "public_key": run.key("mallory").public, "roles": ["doctor"]},
        expect_ok=False,
    )
    run.step(
        "pumch admin tries to make a regulator",
        "pumch-admin",
        "identity",
        "add_member",
        {"org_id": "pumch", "public_key": run.key("mallory").public, "roles": ["regulator"]},
        expect_ok=False,
    )
    run.step(
        "coldlink (logistics) admin tries to make a doctor",
        "coldlink-admin",
        "identity",
        "add_member",
        {"org_id": "coldlink", "public_key": run.key("mallory").public, "roles": ["doctor"]},
        expect_ok=False,
    )
    run.step(
        "ruijin admin tries to add staff to pumch",
        "ruijin-admin",
        "identity",
        "add_member",
        {"org_id": "pumch", "public_key": run.key("mallory").public, "roles": ["doctor"]},
        expect_ok=False,
    )

    # Replay: resubmit the exact bytes of an already committed transaction.
    replay = build_tx(
        run.key("patient-zhang"),
        chain_id=DEMO_CHAIN_ID,
        contract="identity",
        action="register_patient",
        payload={},
        nonce=0,
    )
    run.expect_refusal(
        "replay of patient-zhang's registration", lambda: run.client.submit_raw(replay)
    )

    # Key rotation: dr-chen moves to a new key; the old key stops working.
    old = run.key("dr-chen")
    new = crypto.generate_keypair()
    did = did_for_key(old.suite, old.public)
    nonce = run.client.account(old)["next_nonce"]
    proof = crypto.sign(new, rotation_message(DEMO_CHAIN_ID, did, new.public, nonce))
    run.step(
        "dr-chen rotates to a new key",
        "dr-chen",
        "identity",
        "rotate_key",
        {"new_public_key": new.public, "proof": proof},
    )
    run.home.keystore.save("dr-chen-2", new, DEMO_PASSPHRASE, DEMO_KDF_ITERATIONS)
    run.keys["dr-chen-2"] = new
    run.step(
        "dr-chen signs with the rotated-out key",
        "dr-chen",
        "identity",
        "revoke_member",
        {"did": did},
        expect_ok=False,
    )

    nurse_did = did_for_key("sm", run.key("nurse-wang").public)
    run.step(
        "pumch admin suspends nurse-wang",
        "pumch-admin",
        "identity",
        "suspend_member",
        {"did": nurse_did, "reason": "badge lost"},
    )
    run.step(
        "suspended nurse-wang tries to act",
        "nurse-wang",
        "identity",
        "revoke_member",
        {"did": nurse_did},
        expect_ok=False,
    )
    run.step(
        "pumch admin revokes nurse-wang",
        "pumch-admin",
        "identity",
        "revoke_member",
        {"did": nurse_did, "reason": "left the hospital"},
    )
    run.step(
        "pumch admin tries to reinstate a revoked member",
        "pumch-admin",
        "identity",
        "reinstate_member",
        {"did": nurse_did},
        expect_ok=False,
    )
