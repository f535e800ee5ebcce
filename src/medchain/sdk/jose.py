"""Ledger keys in joserfc: JWS with the SM2 suite ("SM2SM3") and the intl suite (Ed25519).

joserfc knows no SM2 key type, so an SM2 ledger key reaches it as an "oct" key
that only carries the raw key bytes, for our SM2SM3 algorithm alone; the
signature is computed by medchain.crypto (crypto/jws.py). Whoever verifies
must name the one algorithm the key's suite signs under (`algorithms_for`):
with the algorithms left open, an "HS256" token could otherwise be checked
with the public key's bytes as its HMAC secret, which anyone could forge.
An intl (Ed25519) key is a standard OKP key under Ed25519 (RFC 9864; the older
name EdDSA is accepted when verifying).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key, OctKey, OKPKey
from joserfc.jws import JWSRegistry

from medchain import crypto
from medchain.crypto.jws import (
    JWS_ALG_OF_SUITE,
    SM2_JWS_ALG,
    SUITE_OF_JWS_ALG,
    sign_jws,
    verify_jws,
)


class SM2SM3(JWSAlgModel):
    """JWS with SM2 over SM3 by a ledger key (raw r || s); the key is an oct carrier:
    the 32-byte private key to sign, the 64-byte public key to verify."""

    name = SM2_JWS_ALG
    description = "SM2 signature with SM3 (GB/T 32918, GB/T 32905), raw r || s"
    key_type = "oct"

    def sign(self, msg: bytes, key: OctKey) -> bytes:
        """Sign with the SM2 private key the carrier holds."""
        private = key.raw_value
        return sign_jws(crypto.keypair_from_private("sm", private), msg)

    def verify(self, msg: bytes, sig: bytes, key: OctKey) -> bool:
        """Verify with the SM2 public key the carrier holds."""
        return verify_jws("sm", key.raw_value, msg, sig)


JWSRegistry.register(SM2SM3())


def algorithm_of(suite: str) -> str:
    """The JWS alg a key of this suite signs under (SM2SM3 or Ed25519)."""
    try:
        return JWS_ALG_OF_SUITE[suite]
    except KeyError:
        raise crypto.UnknownSuite(f"suite {suite!r} has no JWS algorithm") from None


def algorithms_for(suite: str) -> list[str]:
    """The only JWS algs a signature by a key of this suite may be verified under."""
    return [alg for alg, s in SUITE_OF_JWS_ALG.items() if s == suite]


def signing_key(key: crypto.KeyPair) -> Key:
    """The joserfc key that signs as this ledger key."""
    if key.suite == "sm":
        return OctKey.import_key(key.private)
    if key.suite == "intl":
        return OKPKey.import_key(Ed25519PrivateKey.from_private_bytes(key.private))
    raise crypto.UnknownSuite(f"suite {key.suite!r} has no JWS algorithm")


def verifying_key(suite: str, public: bytes) -> Key:
    """The joserfc key that verifies this ledger public key's signatures."""
    if suite == "sm":
        return OctKey.import_key(public)
    if suite == "intl":
        return OKPKey.import_key(Ed25519PublicKey.from_public_bytes(public))
    raise crypto.UnknownSuite(f"suite {suite!r} has no JWS algorithm")
