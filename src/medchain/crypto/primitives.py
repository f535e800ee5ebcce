"""The one module that touches cryptographic libraries.

Everything above it (suites, recipes, transactions) calls these functions and
never a library directly, so a library can be swapped in one place.

- SM3, SM4-GCM, SHA-256, AES-GCM, Ed25519: pyca/cryptography.
- SM2 sign/verify/encrypt: OpenSSL 3 libcrypto (see openssl_sm2.py for why).
- SM9: GmSSL 3 as bundled by gmssl_pyx (see sm9.py).
- ML-DSA-65 (FIPS 204): pqcrypto (PQClean's C, compiled into its wheel); the
  system OpenSSL 3.0 has no ML-DSA.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from pqcrypto import InvalidSignatureError
from pqcrypto.sign import ml_dsa_65

from medchain.crypto import openssl_sm2
from medchain.exceptions import MedChainError

GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16


class DecryptionFailed(MedChainError, ValueError):
    """Ciphertext, tag, key or associated data do not match. Opaque on purpose."""


def sm3(data: bytes) -> bytes:
    """SM3 digest (GB/T 32905), 32 bytes."""
    if _SM3 is not None:  # OpenSSL's SM3 through hashlib: fastest for short inputs
        h = _SM3.copy()
        h.update(data)
        return h.digest()
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


_SM3 = hashlib.new("sm3") if "sm3" in hashlib.algorithms_available else None


def sm3_chunks(chunks: Iterable[bytes]) -> bytes:
    """SM3 digest of the concatenated chunks (a file read piece by piece), 32 bytes."""
    if _SM3 is not None:
        h = _SM3.copy()
        for chunk in chunks:
            h.update(chunk)
        return h.digest()
    digest = hashes.Hash(hashes.SM3())
    for chunk in chunks:
        digest.update(chunk)
    return digest.finalize()


def sha256(data: bytes) -> bytes:
    """SHA-256 digest, 32 bytes."""
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


def sm4_block_encrypt(key: bytes, block: bytes) -> bytes:
    """Raw SM4 on one 16-byte block (GB/T 32907); only for published vectors."""
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def sm4_gcm_seal(key: bytes, plaintext: bytes, aad: bytes, nonce: bytes | None = None) -> bytes:
    """SM4-GCM (RFC 8998): returns nonce || ciphertext || tag."""
    nonce = nonce if nonce is not None else os.urandom(GCM_NONCE_BYTES)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    body = enc.update(plaintext) + enc.finalize()
    return nonce + body + enc.tag


def sm4_gcm_open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Inverse of sm4_gcm_seal; DecryptionFailed on any mismatch."""
    if len(sealed) < GCM_NONCE_BYTES + GCM_TAG_BYTES:
        raise DecryptionFailed("sealed data too short")
    nonce, body, tag = (
        sealed[:GCM_NONCE_BYTES],
        sealed[GCM_NONCE_BYTES:-GCM_TAG_BYTES],
        sealed[-GCM_TAG_BYTES:],
    )
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    dec.authenticate_additional_data(aad)
    try:
        return dec.update(body) + dec.finalize()
    except InvalidTag:
        raise DecryptionFailed("authentication failed") from None


def aes_gcm_seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-GCM: returns nonce || ciphertext || tag."""
    nonce = os.urandom(GCM_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def aes_gcm_open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Inverse of aes_gcm_seal; DecryptionFailed on any mismatch."""
    if len(sealed) < GCM_NONCE_BYTES + GCM_TAG_BYTES:
        raise DecryptionFailed("sealed data too short")
    try:
        return AESGCM(key).decrypt(sealed[:GCM_NONCE_BYTES], sealed[GCM_NONCE_BYTES:], aad)
    except InvalidTag:
        raise DecryptionFailed("authentication failed") from None


def pbkdf2_sm3(passphrase: bytes, salt: bytes, iterations: int, length: int) -> bytes:
    """PBKDF2 with HMAC-SM3, used to derive key-file encryption keys."""
    kdf = PBKDF2HMAC(algorithm=hashes.SM3(), length=length, salt=salt, iterations=iterations)
    return kdf.derive(passphrase)


def random_bytes(n: int) -> bytes:
    """n bytes from the OS CSPRNG."""
    return os.urandom(n)


sm2_generate_keypair = openssl_sm2.generate_keypair
sm2_public_from_private = openssl_sm2.public_from_private
sm2_sign = openssl_sm2.sign
sm2_verify = openssl_sm2.verify
sm2_encrypt = openssl_sm2.encrypt
sm2_decrypt = openssl_sm2.decrypt
SM2Error = openssl_sm2.SM2Error


def ed25519_generate_keypair() -> tuple[bytes, bytes]:
    """Return (private 32 bytes, public 32 bytes)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return private, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_public_from_private(private_key: bytes) -> bytes:
    """Derive the Ed25519 public key."""
    key = Ed25519PrivateKey.from_private_bytes(private_key)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_sign(private_key: bytes, message: bytes) -> bytes:
    """Ed25519 signature, 64 bytes."""
    return Ed25519PrivateKey.from_private_bytes(private_key).sign(message)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True only for a valid Ed25519 signature."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


MLDSA_PUBLIC_BYTES = 1952
MLDSA_SECRET_BYTES = 4032
MLDSA_SIGNATURE_BYTES = 3309


def mldsa_generate_keypair() -> tuple[bytes, bytes]:
    """ML-DSA-65 key pair: (secret key || public key, public key).

    The public key rides along in the private half because PQClean cannot
    recompute it from the secret key, and the keystore holds one blob.
    """
    public, secret = ml_dsa_65.keygen()
    return bytes(secret) + bytes(public), bytes(public)


def mldsa_public_from_private(private_key: bytes) -> bytes:
    """The public key carried in an ML-DSA private blob."""
    if len(private_key) != MLDSA_SECRET_BYTES + MLDSA_PUBLIC_BYTES:
        raise ValueError("ML-DSA-65 private blob has the wrong size")
    return private_key[MLDSA_SECRET_BYTES:]


def mldsa_sign(private_key: bytes, message: bytes) -> bytes:
    """ML-DSA-65 signature (FIPS 204, empty context, hedged), 3309 bytes."""
    return bytes(ml_dsa_65.sign(private_key[:MLDSA_SECRET_BYTES], message))


def mldsa_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True only for a valid ML-DSA-65 signature with an empty context."""
    if len(public_key) != MLDSA_PUBLIC_BYTES or len(signature) != MLDSA_SIGNATURE_BYTES:
        return False
    try:
        ml_dsa_65.verify(public_key, message, signature)
    except (InvalidSignatureError, ValueError):
        return False
    return True
