"""Signed transactions: envelope, wire format, strict decoding, signatures.

Wire format (canonical CBOR): {"body": <envelope bytes>, "sig": <signature>}.
The envelope is itself canonical CBOR of
{chain_id, contract, version, action, payload, signer, nonce, suite}.
The signature covers the envelope bytes (SM2 over SM3(Z || body) for suite
"sm"). The tx id is SM3 of the whole wire bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from medchain import crypto, encoding
from medchain.exceptions import Code, InvalidTransaction

ENVELOPE_FIELDS = frozenset(
    {"chain_id", "contract", "version", "action", "payload", "signer", "nonce", "suite"}
)
WIRE_FIELDS = frozenset({"body", "sig"})
DEFAULT_MAX_TX_BYTES = 64 * 1024
MAX_NONCE = 2**63 - 1
# Suites whose signer mempool admission looks up before verifying (see check_stateless).
COSTLY_SUITES = crypto.COSTLY_SUITES
MAX_SIGNATURE_BYTES = 4096  # the hybrid sm2+mldsa signature is about 3.4 KB

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_CHAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Envelope:
    """What a signer asks the chain to do."""

    chain_id: str
    contract: str
    version: int
    action: str
    payload: dict[str, Any]
    signer: bytes
    nonce: int
    suite: str

    def to_cbor(self) -> bytes:
        """Canonical bytes: the exact bytes that get signed."""
        return encoding.encode(
            {
                "chain_id": self.chain_id,
                "contract": self.contract,
                "version": self.version,
                "action": self.action,
                "payload": self.payload,
                "signer": self.signer,
                "nonce": self.nonce,
                "suite": self.suite,
            }
        )


@dataclass(frozen=True)
class SignedTx:
    """A decoded transaction; `verify_signature` has not necessarily run."""

    envelope: Envelope
    body: bytes
    signature: bytes
    raw: bytes
    tx_id: bytes

    @cached_property
    def signer_key_id(self) -> bytes:
        """Stable id of the signing key (see key_id)."""
        return key_id(self.envelope.suite, self.envelope.signer)


def key_id(suite: str, public_key: bytes) -> bytes:
    """SM3 of suite and public key: how state refers to one key."""
    return crypto.sm3(suite.encode() + b"\x00" + public_key)


def tx_id_of(raw: bytes) -> bytes:
    """The tx id: SM3 of the signed wire bytes."""
    return crypto.sm3(raw)


def build_tx(
    key: crypto.KeyPair,
    *,
    chain_id: str,
    contract: str,
    action: str,
    payload: dict[str, Any],
    nonce: int,
    version: int = 1,
) -> bytes:
    """Build, sign and encode a transaction; returns the wire bytes."""
    envelope = Envelope(
        chain_id=chain_id,
        contract=contract,
        version=version,
        action=action,
        payload=payload,
        signer=key.public,
        nonce=nonce,
        suite=key.suite,
    )
    body = envelope.to_cbor()
    return encoding.encode({"body": body, "sig": crypto.sign(key, body)})


def _reject(code: Code, message: str) -> InvalidTransaction:
    return InvalidTransaction(code, message)


def _decode_map(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = encoding.decode(data)
    except encoding.DecodeError as e:
        raise _reject(Code.MALFORMED, f"{what}: {e}") from None
    if not isinstance(value, dict):
        raise _reject(Code.MALFORMED, f"{what}: expected a CBOR map")
    return value


def _exact_fields(value: dict[str, Any], fields: frozenset[str], what: str) -> None:
    if value.keys() == fields:
        return
    unknown = sorted(set(value) - fields)
    missing = sorted(fields - set(value))
    if unknown:
        raise _reject(Code.MALFORMED, f"{what}: unknown field(s) {unknown}")
    if missing:
        raise _reject(Code.MALFORMED, f"{what}: missing field(s) {missing}")


def decode_tx(raw: bytes, *, max_bytes: int = DEFAULT_MAX_TX_BYTES) -> SignedTx:
    """Strictly decode wire bytes into a SignedTx (no signature check yet)."""
    if not isinstance(raw, (bytes, bytearray)):
        raise _reject(Code.MALFORMED, "transaction must be bytes")
    raw = bytes(raw)
    if len(raw) > max_bytes:
        raise _reject(Code.TOO_LARGE, f"transaction is {len(raw)} bytes; limit is {max_bytes}")
    wire = _decode_map(raw, "transaction")
    _exact_fields(wire, WIRE_FIELDS, "transaction")
    body, sig = wire["body"], wire["sig"]
    if not isinstance(body, bytes) or not isinstance(sig, bytes):
        raise _reject(Code.MALFORMED, "transaction: body and sig must be byte strings")
    if not 0 < len(sig) <= MAX_SIGNATURE_BYTES:
        raise _reject(Code.MALFORMED, "transaction: bad signature length")
    fields = _decode_map(body, "envelope")
    _exact_fields(fields, ENVELOPE_FIELDS, "envelope")
    envelope = Envelope(**fields)
    _check_envelope_types(envelope)
    return SignedTx(envelope, body, sig, raw, tx_id_of(raw))


def _check_envelope_types(e: Envelope) -> None:
    if not isinstance(e.chain_id, str) or not _CHAIN_ID.fullmatch(e.chain_id):
        raise _reject(Code.MALFORMED, "envelope: chain_id must be a short identifier")
    if not isinstance(e.contract, str) or not _NAME.fullmatch(e.contract):
        raise _reject(Code.MALFORMED, "envelope: contract must match [a-z][a-z0-9_]*")
    if not isinstance(e.action, str) or not _NAME.fullmatch(e.action):
        raise _reject(Code.MALFORMED, "envelope: action must match [a-z][a-z0-9_]*")
    if type(e.version) is not int or not 1 <= e.version <= 0xFFFF:
        raise _reject(Code.MALFORMED, "envelope: version must be an integer 1..65535")
    if type(e.nonce) is not int or not 0 <= e.nonce <= MAX_NONCE:
        raise _reject(Code.MALFORMED, "envelope: nonce must be an integer 0..2^63-1")
    if not isinstance(e.payload, dict):
        raise _reject(Code.MALFORMED, "envelope: payload must be a map")
    if not isinstance(e.suite, str):
        raise _reject(Code.MALFORMED, "envelope: suite must be text")
    if not isinstance(e.signer, bytes):
        raise _reject(Code.MALFORMED, "envelope: signer must be a public key (bytes)")


def verify_signature(tx: SignedTx) -> None:
    """Raise InvalidTransaction unless the signature is valid for the signer."""
    try:
        suite = crypto.get_suite(tx.envelope.suite)
    except crypto.UnknownSuite as e:
        raise _reject(Code.UNKNOWN_SUITE, str(e)) from None
    if not suite.accepts_public(tx.envelope.signer):
        raise _reject(Code.MALFORMED, f"signer key has the wrong size for suite {suite.name!r}")
    if not crypto.verify(tx.envelope.suite, tx.envelope.signer, tx.body, tx.signature):
        raise _reject(Code.BAD_SIGNATURE, "signature does not match the signer's key")


def check_stateless(
    raw: bytes,
    *,
    chain_id: str,
    max_bytes: int,
    screen: Callable[[SignedTx], None] | None = None,
) -> SignedTx:
    """Everything about a tx that needs no state: decode, chain id, signature.

    `screen`, if given, may refuse the decoded tx before its signature is verified
    (mempool admission looks a costly suite's signer up first; blocks pass none)."""
    tx = decode_tx(raw, max_bytes=max_bytes)
    if tx.envelope.chain_id != chain_id:
        raise _reject(
            Code.WRONG_CHAIN,
            f"transaction is for chain {tx.envelope.chain_id!r}; this is {chain_id!r}",
        )
    if screen is not None:
        screen(tx)
    verify_signature(tx)
    return tx
