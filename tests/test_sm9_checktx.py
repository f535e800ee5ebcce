"""CheckTx and the solo mempool look an sm9 signer up before paying for its signature.

An SM9 verification is two pairings (tens of milliseconds, against well under one
for SM2), and anyone can run a KGC of their own and sign perfectly valid sm9 txs
with it. If admission verified first and looked the signer up second, a stranger
could keep a node's cores busy with txs that can never be admitted. So for sm9 the
signer's registration (and its key's tie to its org's published master) is checked
first; what reaches a block, and so the app hash, is unchanged.
"""

from __future__ import annotations

import pytest
from support.ledger import Ledger
from tendermint.abci import types_pb2 as abci
from test_sm9_chain import ORG, add_sm9, publish

from medchain import crypto, encoding
from medchain.consensus.abci.server import AbciApplication
from medchain.consensus.mempool import Mempool
from medchain.contracts.identity.model import sm9_did
from medchain.exceptions import Code, InvalidTransaction


def with_other_signature(raw: bytes, signer: crypto.KeyPair) -> bytes:
    """The same tx bytes carrying a well-formed signature of another message: it costs a
    full verification and fails it."""
    wire = encoding.decode(raw)
    wire["sig"] = crypto.sign(signer, b"another message")
    return encoding.encode(wire)


@pytest.fixture(name="org")
def org_fixture(ledger: Ledger) -> tuple[crypto.KeyPair, crypto.Sm9Master]:
    admin = crypto.generate_keypair()
    ledger.add_org(ORG, admin)
    kgc = crypto.generate_sm9_master()
    assert publish(ledger, admin, kgc).code == Code.OK
    return admin, kgc


def test_unregistered_sm9_signer_is_refused_before_its_signature_is_checked(
    ledger: Ledger, org: tuple[crypto.KeyPair, crypto.Sm9Master]
) -> None:
    # A stranger's own KGC issues a key under the org's namespace; it was never added.
    stranger = crypto.generate_sm9_master().issue(sm9_did(ORG, "dr-stranger"))
    raw = ledger.tx(stranger, "identity", "register_patient", {})
    forged = with_other_signature(raw, stranger)
    mempool = Mempool(ledger.app)
    for tx in (raw, forged):  # a bad signature would have said BAD_SIGNATURE if checked first
        with pytest.raises(InvalidTransaction) as e:
            mempool.add(tx)
        assert e.value.code == Code.UNKNOWN_SIGNER
    abci_app = AbciApplication(ledger.app)
    answer = abci_app.check_tx(abci.RequestCheckTx(tx=forged))
    assert answer.code == Code.UNKNOWN_SIGNER, answer.log
    # A block still judges the signature first, exactly as before.
    assert ledger.commit([forged]).tx_results[0].code == Code.BAD_SIGNATURE


def test_sm9_key_under_a_replaced_master_is_refused_before_its_signature_is_checked(
    ledger: Ledger, org: tuple[crypto.KeyPair, crypto.Sm9Master]
) -> None:
    admin, kgc = org
    doctor = kgc.issue(sm9_did(ORG, "dr-old"))
    assert add_sm9(ledger, admin, doctor).code == Code.OK
    assert publish(ledger, admin, crypto.generate_sm9_master()).code == Code.OK
    forged = with_other_signature(ledger.tx(doctor, "identity", "register_patient", {}), doctor)
    with pytest.raises(InvalidTransaction) as e:
        Mempool(ledger.app).add(forged)
    assert e.value.code == Code.SIGNER_INACTIVE and "master key" in e.value.message


def test_registered_sm9_member_is_still_verified_and_admitted(
    ledger: Ledger, org: tuple[crypto.KeyPair, crypto.Sm9Master]
) -> None:
    admin, kgc = org
    did = sm9_did(ORG, "dr-a")
    doctor = kgc.issue(did)
    assert add_sm9(ledger, admin, doctor).code == Code.OK
    raw = ledger.tx(doctor, "identity", "revoke_member", {"did": did, "reason": "leaving"})
    mempool = Mempool(ledger.app)
    with pytest.raises(InvalidTransaction) as e:
        mempool.add(with_other_signature(raw, doctor))
    assert e.value.code == Code.BAD_SIGNATURE
    assert mempool.add(raw).tx_id
    assert AbciApplication(ledger.app).check_tx(abci.RequestCheckTx(tx=raw)).code == Code.OK
