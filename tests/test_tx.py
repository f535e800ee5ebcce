"""Signed transactions: wire format, strict decoding and stateless checks."""

from __future__ import annotations

import random
from typing import Any

import pytest

from medchain import crypto, encoding
from medchain.core.tx import (
    DEFAULT_MAX_TX_BYTES,
    MAX_NONCE,
    build_tx,
    check_stateless,
    decode_tx,
    key_id,
)
from medchain.exceptions import Code, InvalidTransaction

CHAIN_ID = "medchain-test"
SIGNER = crypto.generate_keypair("sm")
PAYLOAD = {"name": "Dr. Li", "roles": ["physician"], "licence": b"\x01\x02"}


def valid_tx(key: crypto.KeyPair = SIGNER, nonce: int = 7) -> bytes:
    return build_tx(
        key,
        chain_id=CHAIN_ID,
        contract="identity",
        action="register",
        payload=PAYLOAD,
        nonce=nonce,
    )


def envelope_fields(**changes: Any) -> dict[str, Any]:
    """The envelope map of a valid tx, with some fields changed (or removed by None)."""
    fields: dict[str, Any] = {
        "chain_id": CHAIN_ID,
        "contract": "identity",
        "version": 1,
        "action": "register",
        "payload": PAYLOAD,
        "signer": SIGNER.public,
        "nonce": 7,
        "suite": SIGNER.suite,
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def signed_wire(fields: dict[str, Any], key: crypto.KeyPair = SIGNER) -> bytes:
    """Wire bytes for an arbitrary envelope map, correctly signed by `key`."""
    body = encoding.encode(fields)
    return encoding.encode({"body": body, "sig": crypto.sign(key, body)})


def rejection(raw: bytes, *, chain_id: str = CHAIN_ID, max_bytes: int = 64 * 1024) -> Code:
    with pytest.raises(InvalidTransaction) as caught:
        check_stateless(raw, chain_id=chain_id, max_bytes=max_bytes)
    return caught.value.code


# --- accepted -------------------------------------------------------------------------


def test_built_tx_decodes_to_what_was_signed() -> None:
    raw = valid_tx()
    tx = decode_tx(raw)
    assert tx.raw == raw
    assert tx.envelope.chain_id == CHAIN_ID
    assert tx.envelope.contract == "identity"
    assert tx.envelope.action == "register"
    assert tx.envelope.version == 1
    assert tx.envelope.payload == PAYLOAD
    assert tx.envelope.signer == SIGNER.public
    assert tx.envelope.nonce == 7
    assert tx.envelope.suite == "sm"
    assert tx.body == tx.envelope.to_cbor()
    assert crypto.verify("sm", SIGNER.public, tx.body, tx.signature)


def test_tx_id_is_sm3_of_the_wire_bytes() -> None:
    raw = valid_tx()
    assert decode_tx(raw).tx_id == crypto.sm3(raw)


def test_signer_key_id_is_sm3_of_suite_and_public_key() -> None:
    tx = decode_tx(valid_tx())
    assert tx.signer_key_id == crypto.sm3(b"sm\x00" + SIGNER.public)
    assert tx.signer_key_id == key_id("sm", SIGNER.public)


def test_wire_bytes_are_canonical_cbor_of_body_and_sig() -> None:
    raw = valid_tx()
    assert set(encoding.decode(raw)) == {"body", "sig"}


def test_valid_sm_tx_passes_stateless_checks() -> None:
    tx = check_stateless(valid_tx(), chain_id=CHAIN_ID, max_bytes=DEFAULT_MAX_TX_BYTES)
    assert tx.envelope.signer == SIGNER.public


def test_valid_intl_tx_passes_stateless_checks() -> None:
    key = crypto.generate_keypair("intl")
    tx = check_stateless(valid_tx(key), chain_id=CHAIN_ID, max_bytes=DEFAULT_MAX_TX_BYTES)
    assert tx.envelope.suite == "intl"
    assert len(tx.signature) == 64


def test_largest_nonce_is_accepted() -> None:
    tx = check_stateless(valid_tx(nonce=MAX_NONCE), chain_id=CHAIN_ID, max_bytes=1 << 16)
    assert tx.envelope.nonce == 2**63 - 1


def test_tx_exactly_at_the_size_limit_is_accepted() -> None:
    raw = valid_tx()
    assert check_stateless(raw, chain_id=CHAIN_ID, max_bytes=len(raw)).raw == raw


def test_same_envelope_signed_twice_gets_two_tx_ids() -> None:
    # SM2 signatures are randomised; replay protection is the nonce, not the id.
    first, second = decode_tx(valid_tx()), decode_tx(valid_tx())
    assert first.body == second.body
    assert first.tx_id != second.tx_id


# --- rejected: malformed bytes ---------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_malformed(seed: int) -> None:
    assert rejection(random.Random(seed).randbytes(50 + seed * 40)) == Code.MALFORMED


def test_every_mutation_of_a_valid_tx_is_rejected_as_invalid() -> None:
    # No edit yields a second valid encoding of the same tx: the tx id cannot be changed.
    raw, rng = valid_tx(), random.Random(2024)
    for _ in range(3000):
        mutated = bytearray(raw)
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(mutated))
            edit = rng.randrange(3)
            if edit == 0:
                mutated[at] ^= rng.randrange(1, 256)
            elif edit == 1:
                del mutated[at]
            else:
                mutated.insert(at, rng.randrange(256))
        if bytes(mutated) == raw:
            continue
        with pytest.raises(InvalidTransaction):
            check_stateless(bytes(mutated), chain_id=CHAIN_ID, max_bytes=DEFAULT_MAX_TX_BYTES)


@pytest.mark.parametrize("keep", [0, 1, 10, -1])
def test_truncated_tx_is_malformed(keep: int) -> None:
    raw = valid_tx()
    assert rejection(raw[:keep]) == Code.MALFORMED


def test_tx_with_trailing_byte_is_malformed() -> None:
    assert rejection(valid_tx() + b"\x00") == Code.MALFORMED


def test_tx_that_is_not_a_map_is_malformed() -> None:
    assert rejection(encoding.encode([b"body", b"sig"])) == Code.MALFORMED


def test_non_bytes_input_is_malformed() -> None:
    with pytest.raises(InvalidTransaction) as caught:
        decode_tx("not bytes")  # type: ignore[arg-type]
    assert caught.value.code == Code.MALFORMED


def test_unknown_field_in_wire_map_is_malformed() -> None:
    wire = encoding.decode(valid_tx())
    wire["memo"] = "hi"
    assert rejection(encoding.encode(wire)) == Code.MALFORMED


@pytest.mark.parametrize("field", ["body", "sig"])
def test_missing_field_in_wire_map_is_malformed(field: str) -> None:
    wire = encoding.decode(valid_tx())
    del wire[field]
    assert rejection(encoding.encode(wire)) == Code.MALFORMED


@pytest.mark.parametrize("wire", [{"body": "text", "sig": b"s"}, {"body": b"\xa0", "sig": 5}])
def test_wire_fields_that_are_not_byte_strings_are_malformed(wire: dict[str, Any]) -> None:
    assert rejection(encoding.encode(wire)) == Code.MALFORMED


@pytest.mark.parametrize("sig", [b"", b"\x30" * 4097])
def test_signature_of_impossible_length_is_malformed(sig: bytes) -> None:
    body = encoding.encode(envelope_fields())
    assert rejection(encoding.encode({"body": body, "sig": sig})) == Code.MALFORMED


def test_unknown_field_in_envelope_is_malformed() -> None:
    assert rejection(signed_wire(envelope_fields(memo="extra"))) == Code.MALFORMED


@pytest.mark.parametrize("field", sorted(envelope_fields()))
def test_missing_field_in_envelope_is_malformed(field: str) -> None:
    fields = envelope_fields()
    del fields[field]
    assert rejection(signed_wire(fields)) == Code.MALFORMED


def test_envelope_that_is_not_canonical_cbor_is_malformed() -> None:
    body = encoding.encode(envelope_fields()) + b"\x00"
    raw = encoding.encode({"body": body, "sig": crypto.sign(SIGNER, body)})
    assert rejection(raw) == Code.MALFORMED


@pytest.mark.parametrize(
    "changes",
    [
        {"nonce": True},
        {"nonce": False},
        {"nonce": -1},
        {"nonce": MAX_NONCE + 1},
        {"nonce": "7"},
        {"version": 0},
        {"version": True},
        {"version": 0x10000},
        {"chain_id": ""},
        {"chain_id": "has space"},
        {"chain_id": b"medchain-test"},
        {"contract": "Identity"},
        {"contract": "9identity"},
        {"contract": "x" * 49},
        {"action": "re-gister"},
        {"action": 1},
        {"payload": [1, 2]},
        {"payload": b"{}"},
        {"suite": 1},
        {"signer": SIGNER.public.hex()},
    ],
    # The signer key is made at import: its id names the case, not the random hex, so
    # every collection of the suite (each pytest-xdist worker's) lists the same tests.
    ids=lambda c: "signer-as-hex" if "signer" in c else repr(c),
)
def test_envelope_field_of_wrong_type_or_range_is_malformed(changes: dict[str, Any]) -> None:
    assert rejection(signed_wire(envelope_fields(**changes))) == Code.MALFORMED


@pytest.mark.parametrize("field", ["chain_id", "contract", "action"])
def test_names_with_a_trailing_newline_are_malformed(field: str) -> None:
    fields = envelope_fields()
    fields[field] += "\n"
    raw = signed_wire(fields)
    assert rejection(raw, chain_id=fields["chain_id"]) == Code.MALFORMED


@pytest.mark.parametrize("length", [0, 32, 63, 65])
def test_sm_signer_key_of_wrong_length_is_malformed(length: int) -> None:
    signer = (SIGNER.public * 2)[:length]
    assert rejection(signed_wire(envelope_fields(signer=signer))) == Code.MALFORMED


def test_intl_signer_key_of_sm_length_is_malformed() -> None:
    key = crypto.generate_keypair("intl")
    fields = envelope_fields(signer=SIGNER.public, suite="intl")
    assert rejection(signed_wire(fields, key)) == Code.MALFORMED


# --- rejected: size, chain, suite, signature -----------------------------------------------


def test_tx_over_the_size_limit_is_too_large() -> None:
    raw = valid_tx()
    assert rejection(raw, max_bytes=len(raw) - 1) == Code.TOO_LARGE


def test_oversized_garbage_is_too_large_before_it_is_decoded() -> None:
    assert rejection(b"\xff" * 2000, max_bytes=1000) == Code.TOO_LARGE


def test_tx_for_another_chain_is_rejected_as_wrong_chain() -> None:
    assert rejection(valid_tx(), chain_id="medchain-prod") == Code.WRONG_CHAIN


def test_tx_with_unknown_suite_is_rejected_as_unknown_suite() -> None:
    fields = envelope_fields(suite="pq-dilithium")
    assert rejection(signed_wire(fields)) == Code.UNKNOWN_SUITE


@pytest.mark.parametrize("index", [0, 3, 10, 40, -1])
def test_tx_with_a_flipped_signature_byte_has_a_bad_signature(index: int) -> None:
    wire = encoding.decode(valid_tx())
    sig = bytearray(wire["sig"])
    sig[index] ^= 0x01
    wire["sig"] = bytes(sig)
    assert rejection(encoding.encode(wire)) == Code.BAD_SIGNATURE


@pytest.mark.parametrize(
    "changes",
    [{"nonce": 8}, {"payload": {"name": "Dr. Wang"}}, {"action": "revoke"}, {"version": 2}],
    ids=repr,
)
def test_tx_with_a_changed_envelope_has_a_bad_signature(changes: dict[str, Any]) -> None:
    wire = encoding.decode(valid_tx())
    wire["body"] = encoding.encode(envelope_fields(**changes))
    assert rejection(encoding.encode(wire)) == Code.BAD_SIGNATURE


def test_tx_signed_by_a_key_other_than_the_signer_has_a_bad_signature() -> None:
    impostor = crypto.generate_keypair("sm")
    assert rejection(signed_wire(envelope_fields(), impostor)) == Code.BAD_SIGNATURE


def test_tx_with_signature_from_another_suite_has_a_bad_signature() -> None:
    fields = envelope_fields()
    body = encoding.encode(fields)
    ed25519_sig = crypto.sign(crypto.generate_keypair("intl"), body)
    assert rejection(encoding.encode({"body": body, "sig": ed25519_sig})) == Code.BAD_SIGNATURE


def test_chain_check_runs_before_signature_check() -> None:
    # A relayed tx for another chain is reported as such, not as a bad signature.
    wire = encoding.decode(signed_wire(envelope_fields(chain_id="other-chain")))
    wire["sig"] = b"\x30\x00"
    assert rejection(encoding.encode(wire)) == Code.WRONG_CHAIN
