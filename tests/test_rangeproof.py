"""Pedersen commitments and Bulletproofs range proofs (crypto/rangeproof.py):
completeness (every true statement verifies) and soundness (false statements,
other contexts, other commitments, tampered or malformed bytes do not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medchain.crypto import rangeproof as rp

VECTORS = Path(__file__).parent / "data" / "rangeproof_vectors.json"


@pytest.mark.parametrize(
    ("value", "op", "threshold"),
    [
        (71, "ge", 65),  # HbA1c 7.1 % >= 6.5 %
        (65, "ge", 65),  # on the threshold
        (42, "le", 59),  # eGFR 42 < 60
        (59, "le", 59),
        (0, "le", 0),
        (2**32 - 1, "ge", 0),  # the widest gap 32 bits hold
        (0, "ge", 0),
    ],
)
def test_a_true_statement_verifies(value: int, op: str, threshold: int) -> None:
    blinding = rp.random_blinding()
    commitment = rp.commit(value, blinding)
    proof = rp.prove_threshold(value, blinding, op, threshold, b"challenge 1")
    assert len(proof) == rp.proof_size() <= 2048
    assert rp.verify_threshold(commitment, op, threshold, proof, b"challenge 1")


def test_proofs_over_64_bits_verify_too() -> None:
    blinding = rp.random_blinding()
    commitment = rp.commit(10**15, blinding)
    proof = rp.prove_threshold(10**15, blinding, "ge", 10**12, b"", bits=64)
    assert rp.verify_threshold(commitment, "ge", 10**12, proof, b"", bits=64)
    assert not rp.verify_threshold(commitment, "ge", 10**12, proof, b"", bits=32)


@pytest.mark.parametrize(("value", "op", "threshold"), [(64, "ge", 65), (60, "le", 59)])
def test_a_false_statement_cannot_be_proven(value: int, op: str, threshold: int) -> None:
    with pytest.raises(rp.ProofError, match="does not meet"):
        rp.prove_threshold(value, rp.random_blinding(), op, threshold, b"")


def test_a_gap_wider_than_the_range_cannot_be_proven() -> None:
    with pytest.raises(rp.ProofError):
        rp.prove_threshold(2**32, rp.random_blinding(), "ge", 0, b"")


@pytest.mark.parametrize("value", [64, 0, 1])
def test_a_cheating_prover_running_the_protocol_on_a_negative_gap_fails(value: int) -> None:
    """The honest algorithm fed v - t mod n (a value below the threshold) proves
    only its low bits: the verifier's polynomial check catches it."""
    blinding = rp.random_blinding()
    commitment = rp.commit(value, blinding)
    shifted = rp._shift(rp._point(commitment), "ge", 65)
    forged = rp._prove_range((value - 65) % rp.ORDER, blinding, shifted, rp.BITS, b"c")
    assert not rp.verify_threshold(commitment, "ge", 65, forged.encode(), b"c")


def test_a_proof_does_not_verify_for_another_threshold_direction_or_context() -> None:
    blinding = rp.random_blinding()
    commitment = rp.commit(71, blinding)
    proof = rp.prove_threshold(71, blinding, "ge", 65, b"challenge 1")
    assert rp.verify_threshold(commitment, "ge", 65, proof, b"challenge 1")
    assert not rp.verify_threshold(commitment, "ge", 70, proof, b"challenge 1")
    assert not rp.verify_threshold(commitment, "ge", 60, proof, b"challenge 1")
    assert not rp.verify_threshold(commitment, "le", 65, proof, b"challenge 1")
    assert not rp.verify_threshold(commitment, "ge", 65, proof, b"challenge 2")


def test_a_proof_does_not_verify_for_another_commitment() -> None:
    blinding = rp.random_blinding()
    proof = rp.prove_threshold(71, blinding, "ge", 65, b"c")
    same_value_other_blinding = rp.commit(71, rp.random_blinding())
    assert not rp.verify_threshold(same_value_other_blinding, "ge", 65, proof, b"c")
    assert not rp.verify_threshold(rp.commit(71, blinding + 1), "ge", 65, proof, b"c")


def test_every_flipped_bit_of_a_proof_is_refused() -> None:
    blinding = rp.random_blinding()
    commitment = rp.commit(80, blinding)
    proof = rp.prove_threshold(80, blinding, "ge", 65, b"c")
    for i in range(len(proof)):
        tampered = bytearray(proof)
        tampered[i] ^= 1 << (i % 8)
        assert not rp.verify_threshold(commitment, "ge", 65, bytes(tampered), b"c"), i


@pytest.mark.parametrize(
    "mangle",
    [
        lambda p: p[:-1],
        lambda p: p + b"\0",
        lambda p: b"",
        lambda p: b"\x04" + p[1:],  # not a compressed point
        lambda p: p[:-32] + b"\xff" * 32,  # a scalar >= the group order
        lambda p: b"\x02" + b"\0" * 32 + p[33:],  # x = 0 is not on the curve
    ],
    ids=["short", "long", "empty", "uncompressed", "big-scalar", "off-curve"],
)
def test_malformed_proofs_are_refused_without_raising(mangle: object) -> None:
    blinding = rp.random_blinding()
    commitment = rp.commit(70, blinding)
    proof = rp.prove_threshold(70, blinding, "ge", 65, b"")
    assert callable(mangle)
    assert not rp.verify_threshold(commitment, "ge", 65, mangle(proof), b"")


@pytest.mark.parametrize(
    "commitment", [b"", b"\x02" + b"\0" * 32, b"\x04" + b"\1" * 64, b"\x05" + b"\1" * 32]
)
def test_malformed_commitments_are_refused(commitment: bytes) -> None:
    proof = rp.prove_threshold(70, rp.random_blinding(), "ge", 65, b"")
    assert not rp.verify_threshold(commitment, "ge", 65, proof, b"")


def test_unknown_ops_and_sizes_are_refused() -> None:
    blinding = rp.random_blinding()
    commitment = rp.commit(70, blinding)
    proof = rp.prove_threshold(70, blinding, "ge", 65, b"")
    assert not rp.verify_threshold(commitment, "gt", 65, proof, b"")
    assert not rp.verify_threshold(commitment, "ge", 65, proof, b"", bits=31)
    with pytest.raises(rp.ProofError):
        rp.prove_threshold(70, blinding, "eq", 65, b"")


def test_a_commitment_hides_the_value() -> None:
    """Two commitments to the same value look unrelated; the same value and
    blinding always give the same point (binding)."""
    assert rp.commit(71, rp.random_blinding()) != rp.commit(71, rp.random_blinding())
    assert rp.commit(71, 12345) == rp.commit(71, 12345)
    assert rp.commit(71, 12345) != rp.commit(72, 12345)


def test_published_vectors_still_verify() -> None:
    """Proofs made once and kept: verification is a pure function every node
    computes alike (a change to the transcript or generators breaks these)."""
    for case in json.loads(VECTORS.read_text()):
        assert (
            rp.verify_threshold(
                bytes.fromhex(case["commitment"]),
                case["op"],
                case["threshold"],
                bytes.fromhex(case["proof"]),
                bytes.fromhex(case["context"]),
            )
            is case["valid"]
        ), case["name"]
