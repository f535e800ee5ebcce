"""A member moves from SM2 to the hybrid sm2+mldsa suite through the existing key rotation."""

from __future__ import annotations

from support.ledger import Ledger, did_of

from medchain import crypto
from medchain.contracts.identity.model import rotation_message
from medchain.exceptions import Code


def test_org_admin_rotates_sm2_to_hybrid_and_keeps_its_did(ledger: Ledger) -> None:
    old = crypto.generate_keypair("sm")
    r = ledger.run(
        ledger.admin,
        "register_org",
        {"org_id": "hosp-q", "name": "Q", "org_type": "hospital", "admin_public_key": old.public},
    )
    assert r.code == Code.OK, r.log
    did = did_of(old)
    new = crypto.generate_keypair("sm2+mldsa")
    message = rotation_message("medchain-test", did, new.public, ledger.nonce(old))
    payload = {"new_public_key": new.public, "new_suite": "sm2+mldsa"}
    # A proof by the SM2 half alone is not a hybrid signature: refused.
    sm2_only = crypto.sign(crypto.keypair_from_private("sm", new.private[:32]), message)
    r = ledger.run(old, "rotate_key", {**payload, "proof": sm2_only})
    assert r.code != Code.OK
    message = rotation_message("medchain-test", did, new.public, ledger.nonce(old))
    r = ledger.run(old, "rotate_key", {**payload, "proof": crypto.sign(new, message)})
    assert r.code == Code.OK, r.log
    member = ledger.state(f"identity/did/{did}")
    assert member["did"] == did
    assert [(k["suite"], k["status"]) for k in member["keys"]] == [
        ("sm", "rotated"),
        ("sm2+mldsa", "active"),
    ]
    # The hybrid key now acts for the same DID; the old SM2 key no longer does.
    endpoint = {"org_id": "hosp-q", "edge_url": "https://q.example"}
    assert ledger.run(old, "set_endpoint", endpoint).code == Code.SIGNER_INACTIVE
    r = ledger.run(new, "set_endpoint", endpoint)
    assert r.code == Code.OK, r.log
