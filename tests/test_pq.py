"""Post-quantum and hybrid suites: ML-DSA-65 (FIPS 204) and sm2+mldsa.

The node signs and verifies with pqcrypto (PQClean). FIPS 204 known answers
(NIST ACVP keyGen and sigVer, tests/data/fips204) are checked with dilithium-py,
a pure-Python FIPS 204 implementation, and the two libraries are tied
together byte for byte: pqcrypto verifies signatures made with the ACVP key and
dilithium-py verifies pqcrypto's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dilithium_py.ml_dsa import ML_DSA_65

from medchain import crypto
from medchain.crypto import primitives as p
from medchain.crypto.suites import get_suite

KAT = json.loads((Path(__file__).parent / "data" / "fips204" / "mldsa65_acvp.json").read_text())


@pytest.mark.parametrize("case", KAT["keyGen"], ids=lambda c: f"tc{c['tcId']}")
def test_mldsa65_keygen_matches_acvp(case: dict[str, object]) -> None:
    pk, sk = ML_DSA_65.key_derive(bytes.fromhex(str(case["seed"])))
    assert pk.hex().upper() == case["pk"]
    assert sk.hex().upper() == case["sk"]


@pytest.mark.parametrize("case", KAT["sigVer"]["tests"], ids=lambda c: f"tc{c['tcId']}")
def test_mldsa65_sigver_matches_acvp(case: dict[str, object]) -> None:
    pk = bytes.fromhex(KAT["sigVer"]["pk"])
    ok = ML_DSA_65._verify_internal(
        pk, bytes.fromhex(str(case["message"])), bytes.fromhex(str(case["signature"]))
    )
    assert ok is case["testPassed"], case["reason"]


def test_pqcrypto_and_reference_agree_on_the_acvp_key() -> None:
    case = KAT["keyGen"][0]
    pk, sk = bytes.fromhex(case["pk"]), bytes.fromhex(case["sk"])
    blob = sk + pk
    sig = p.mldsa_sign(blob, b"medchain block 1")
    assert ML_DSA_65.verify(pk, b"medchain block 1", sig)
    ref_sig = ML_DSA_65.sign(sk, b"medchain block 2")
    assert p.mldsa_verify(pk, b"medchain block 2", ref_sig)
    assert not p.mldsa_verify(pk, b"medchain block 3", ref_sig)


def test_pq_suite_signs_and_refuses_tampering() -> None:
    key = crypto.generate_keypair("pq")
    assert len(key.public) == 1952
    sig = crypto.sign(key, b"envelope")
    assert len(sig) == 3309
    assert crypto.verify("pq", key.public, b"envelope", sig)
    assert not crypto.verify("pq", key.public, b"envelopE", sig)
    assert not crypto.verify("pq", key.public[:-1], b"envelope", sig)
    assert crypto.keypair_from_private("pq", key.private).public == key.public


def test_hybrid_needs_both_signatures() -> None:
    key = crypto.generate_keypair("sm2+mldsa")
    sig = crypto.sign(key, b"envelope")
    assert crypto.verify("sm2+mldsa", key.public, b"envelope", sig)
    n = sig[0]
    sm2_part, pq_part = sig[1 : 1 + n], sig[1 + n :]
    other = crypto.generate_keypair("sm2+mldsa")
    other_sig = crypto.sign(other, b"envelope")
    m = other_sig[0]
    # A valid SM2 half with a foreign ML-DSA half, and the other way round: both refused.
    forged_pq = bytes([n]) + sm2_part + other_sig[1 + m :]
    forged_sm2 = bytes([m]) + other_sig[1 : 1 + m] + pq_part
    assert not crypto.verify("sm2+mldsa", key.public, b"envelope", forged_pq)
    assert not crypto.verify("sm2+mldsa", key.public, b"envelope", forged_sm2)
    assert not crypto.verify("sm2+mldsa", key.public, b"envelope", b"")
    assert crypto.keypair_from_private("sm2+mldsa", key.private).public == key.public


def test_hybrid_key_wraps_data_keys_with_its_sm2_half() -> None:
    key = crypto.generate_keypair("sm2+mldsa")
    data_key = crypto.new_data_key()
    wrapped = crypto.wrap_key(key.public, data_key, suite="sm2+mldsa")
    assert crypto.unwrap_key(key, wrapped) == data_key


def test_suites_accept_only_their_key_shapes() -> None:
    assert get_suite("pq").accepts_public(bytes(1952))
    assert not get_suite("pq").accepts_public(bytes(1953))
    assert get_suite("sm2+mldsa").accepts_public(bytes(64 + 1952))
    assert get_suite("sm9").accepts_public(bytes(128) + b"did:medchain:x")
    assert not get_suite("sm9").accepts_public(bytes(128))
