"""Regenerate tests/vectors/*.json: `python tests/vectors/generate.py`.

A vector is a genesis, a list of blocks of signed tx bytes, and the app hash
and result codes every engine must reach at each height. Keys come from
fixed private scalars so a reader can re-sign; signatures are stored as
bytes because SM2 signing is randomised. Regenerate only when a change to the
state machine is intended, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from medchain import crypto
from medchain.contracts.identity.model import did_for_key, rotation_message
from medchain.core.tx import build_tx

HERE = Path(__file__).parent
CHAIN = "medchain-vectors"


def key(n: int) -> crypto.KeyPair:
    return crypto.keypair_from_private("sm", (n * 0x1F3D5B79).to_bytes(32, "big"))


def identity_blocks() -> tuple[dict[str, Any], list[list[bytes]]]:
    root, a_admin, doctor, nurse, patient, new_doc, carrier, fake_doc = (
        key(i) for i in range(1, 9)
    )
    nonces: dict[bytes, int] = {}

    def tx(k: crypto.KeyPair, action: str, payload: dict[str, Any]) -> bytes:
        n = nonces.get(k.public, 0)
        nonces[k.public] = n + 1
        return build_tx(
            k, chain_id=CHAIN, contract="identity", action=action, payload=payload, nonce=n
        )

    genesis = {
        "chain_id": CHAIN,
        "genesis_time_ms": 1_764_000_000_000,
        "consortium_admins": [{"name": "root", "suite": "sm", "public_key": root.public.hex()}],
    }
    doc_did = did_for_key("sm", doctor.public)
    blocks = [
        [
            tx(
                root,
                "register_org",
                {
                    "org_id": "hosp-a",
                    "name": "Hospital A",
                    "org_type": "hospital",
                    "admin_public_key": a_admin.public,
                },
            ),
            tx(
                root,
                "register_org",
                {
                    "org_id": "move-co",
                    "name": "Move Co",
                    "org_type": "logistics",
                    "admin_public_key": carrier.public,
                },
            ),
        ],
        [
            tx(
                a_admin,
                "add_member",
                {"org_id": "hosp-a", "public_key": doctor.public, "roles": ["doctor"]},
            ),
            tx(
                a_admin,
                "add_member",
                {"org_id": "hosp-a", "public_key": nurse.public, "roles": ["regulator"]},
            ),  # rejected: wrong org type
            tx(
                carrier,
                "add_member",
                {"org_id": "move-co", "public_key": fake_doc.public, "roles": ["doctor"]},
            ),  # rejected: a logistics org may not hold doctors
            tx(patient, "register_patient", {}),
        ],
        [
            tx(
                doctor,
                "rotate_key",
                {
                    "new_public_key": new_doc.public,
                    "proof": crypto.sign(
                        new_doc, rotation_message(CHAIN, doc_did, new_doc.public, 0)
                    ),
                },
            ),
            tx(a_admin, "suspend_member", {"did": did_for_key("sm", patient.public)}),  # refused
            build_tx(
                patient,
                chain_id=CHAIN,
                contract="identity",
                action="register_patient",
                payload={},
                nonce=0,
            ),  # replay: bad nonce
            b"\x00not-a-transaction",
        ],
        [
            tx(doctor, "register_patient", {}),  # old key: rotated out
            tx(a_admin, "revoke_member", {"did": doc_did, "reason": "left"}),
            tx(root, "set_org_roles", {"org_type": "logistics", "roles": ["device"]}),  # refused
            tx(root, "set_org_roles", {"org_type": "insurer", "roles": ["org_admin", "device"]}),
        ],
    ]
    return genesis, blocks


def main() -> None:

    import tempfile

    from medchain.consensus.application import Application
    from medchain.core.block import Block
    from medchain.core.genesis import parse_genesis
    from medchain.storage.chain_db import ChainDB

    genesis, blocks = identity_blocks()
    with tempfile.TemporaryDirectory() as d:
        app = Application(ChainDB(Path(d) / "c.db"))
        expected = [{"height": 0, "app_hash": app.init_chain(parse_genesis(genesis)).hex()}]
        for i, txs in enumerate(blocks, start=1):
            db = app.db
            block = Block(
                CHAIN, i, genesis["genesis_time_ms"] + 1000 * i, tuple(txs), db.last_block_hash
            )
            result = app.finalize_block(block)
            app.commit(result)
            expected.append(
                {
                    "height": i,
                    "app_hash": result.app_hash.hex(),
                    "codes": [r.code.name for r in result.tx_results],
                }
            )
    doc = {
        "description": "identity actions, rejections, replay and rotation",
        "genesis": genesis,
        "blocks": [
            {"time_ms": genesis["genesis_time_ms"] + 1000 * i, "txs": [t.hex() for t in txs]}
            for i, txs in enumerate(blocks, 1)
        ],
        "expected": expected,
    }
    (HERE / "identity_basic.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
