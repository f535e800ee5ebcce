"""JWS signatures with ledger keys: the bytes a JOSE signature carries, per suite.

SMART on FHIR clients sign their token requests as JWS (RFC 7515). A ledger key
signs them with its own suite, under a JWS algorithm name:

  sm    "SM2SM3": SM2 over SM3 (with the SM2 ID, as every MedChain signature).
        No JWS name is registered for SM2; we use ours. The signature is the
        raw r || s, 32 bytes each, big-endian, as ES256 carries ECDSA's
        (RFC 7518 3.4), not the DER the rest of MedChain stores.
  intl  "Ed25519" (RFC 9864; "EdDSA" of RFC 8037 is accepted too): the raw
        64-byte Ed25519 signature, the same bytes under either name.

The chain verifies these signatures too (contracts/exchange/smart.py), so the
conversion lives here, below every layer that needs it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from medchain.crypto import KeyPair, sign, verify

SM2_JWS_ALG = "SM2SM3"
# The JWS alg each suite signs under, and every alg name a suite's signature verifies as.
JWS_ALG_OF_SUITE = {"sm": SM2_JWS_ALG, "intl": "Ed25519"}
SUITE_OF_JWS_ALG = {SM2_JWS_ALG: "sm", "EdDSA": "intl", "Ed25519": "intl"}
_SCALAR = 32


def sign_jws(key: KeyPair, signing_input: bytes) -> bytes:
    """The JWS signature of `signing_input` (ASCII header.payload) by `key`."""
    signature = sign(key, signing_input)
    if key.suite != "sm":
        return signature
    r, s = decode_dss_signature(signature)
    return r.to_bytes(_SCALAR, "big") + s.to_bytes(_SCALAR, "big")


def verify_jws(suite: str, public: bytes, signing_input: bytes, signature: bytes) -> bool:
    """True only if `signature` is `public`'s JWS signature of `signing_input`."""
    if suite == "sm":
        if len(signature) != 2 * _SCALAR:
            return False
        r = int.from_bytes(signature[:_SCALAR], "big")
        s = int.from_bytes(signature[_SCALAR:], "big")
        if r == 0 or s == 0:
            return False
        signature = encode_dss_signature(r, s)
    return verify(suite, public, signing_input, signature)
