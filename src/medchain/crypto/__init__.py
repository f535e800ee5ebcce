"""Crypto recipes: the few safe, named operations the rest of MedChain uses.

Default suite "sm": SM3 hash, SM4-GCM sealing, SM2 signatures (ID
1234567812345678) and SM2 key wrap. Suite "intl": SHA-256, AES-GCM, Ed25519.
Chain-level hashes (tx ids, block hashes, app hash) are always SM3.

Layer: crypto. Imports encoding and exceptions only; no I/O (it may lock a
cache and read the OS's randomness for keys).
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from medchain.crypto import primitives, sm9
from medchain.crypto.primitives import DecryptionFailed
from medchain.crypto.suites import (
    COSTLY_SUITES,
    DEFAULT_SUITE,
    SUITES,
    Suite,
    UnknownSuite,
    get_suite,
    sm9_private_key,
)


def sm3(data: bytes) -> bytes:
    """SM3 digest: the chain's hash for ids, blocks and the app hash."""
    return primitives.sm3(data)


def sm3_chunks(chunks: Iterable[bytes]) -> bytes:
    """SM3 of bytes read piece by piece (a large file), equal to sm3 of their join."""
    return primitives.sm3_chunks(chunks)


@dataclass(frozen=True)
class KeyPair:
    """A signing key with its suite. `private` never leaves the holder."""

    suite: str
    private: bytes
    public: bytes

    def __repr__(self) -> str:  # keep private bytes out of logs
        return f"KeyPair(suite={self.suite!r}, public={self.public.hex()[:16]}…)"


def generate_keypair(suite: str = DEFAULT_SUITE) -> KeyPair:
    """A fresh key pair from the OS CSPRNG."""
    s = get_suite(suite)
    private, public = s.generate_keypair()
    return KeyPair(suite, private, public)


def keypair_from_private(suite: str, private: bytes) -> KeyPair:
    """Rebuild a key pair from its private half."""
    return KeyPair(suite, private, get_suite(suite).public_from_private(private))


def sign(key: KeyPair, message: bytes) -> bytes:
    """Sign `message` with the key's suite (SM2 signs SM3(Z || message))."""
    return get_suite(key.suite).sign(key.private, message)


def verify(suite: str, public: bytes, message: bytes, signature: bytes) -> bool:
    """True only for a valid signature; False for any malformed input."""
    try:
        s = get_suite(suite)
    except UnknownSuite:
        return False
    if not s.accepts_public(public):
        return False
    return s.verify(public, message, signature)


def new_data_key(suite: str = DEFAULT_SUITE) -> bytes:
    """A fresh symmetric data key for `seal`."""
    return primitives.random_bytes(get_suite(suite).data_key_size)


def seal(key: bytes, plaintext: bytes, aad: bytes = b"", suite: str = DEFAULT_SUITE) -> bytes:
    """Authenticated encryption (SM4-GCM by default): nonce || ciphertext || tag."""
    return get_suite(suite).seal(key, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes = b"", suite: str = DEFAULT_SUITE) -> bytes:
    """Decrypt what `seal` made; DecryptionFailed if anything was altered."""
    return get_suite(suite).open(key, sealed, aad)


def wrap_key(recipient_public: bytes, data_key: bytes, suite: str = DEFAULT_SUITE) -> bytes:
    """Encrypt a data key to a recipient's public key (SM2 encryption)."""
    wrap = get_suite(suite).wrap_key
    if wrap is None:
        raise UnknownSuite(f"suite {suite!r} has no key wrap")
    return wrap(recipient_public, data_key)


def unwrap_key(key: KeyPair, wrapped: bytes) -> bytes:
    """Recover a data key wrapped for `key`; DecryptionFailed if tampered."""
    unwrap = get_suite(key.suite).unwrap_key
    if unwrap is None:
        raise UnknownSuite(f"suite {key.suite!r} has no key wrap")
    try:
        return unwrap(key.private, wrapped)
    except (primitives.SM2Error, sm9.SM9Error):
        raise DecryptionFailed("key unwrap failed") from None


@dataclass(frozen=True)
class Sm9Master:
    """An organisation's SM9 key generation centre: its two master secrets (signing
    ks, encryption ke). Only the KGC holds it; the chain holds the public halves."""

    sign_secret: bytes
    enc_secret: bytes

    def __repr__(self) -> str:  # keep the secrets out of logs
        return f"Sm9Master(sign_master_public={self.sign_master_public.hex()[:16]}…)"

    @property
    def sign_master_public(self) -> bytes:
        """What verifiers need (128 bytes), published with identity.set_sm9_master."""
        return sm9.master_public(self.sign_secret)

    @property
    def enc_master_public(self) -> bytes:
        """What anyone wrapping a data key to a member needs (64 bytes), published too."""
        return sm9.enc_master_public(self.enc_secret)

    def issue(self, identity: str) -> KeyPair:
        """A member's sm9 key pair for `identity` (its DID): signs as it, opens keys
        wrapped to it."""
        ident = identity.encode()
        private = sm9_private_key(
            sm9.extract_sign_key(self.sign_secret, ident),
            self.sign_master_public,
            identity,
            sm9.extract_enc_key(self.enc_secret, ident),
        )
        return keypair_from_private("sm9", private)


def generate_sm9_master() -> Sm9Master:
    """A fresh KGC (both master secrets from the OS CSPRNG)."""
    return Sm9Master(sm9.generate_master_secret(), sm9.generate_master_secret())


def sm9_wrap_key(enc_master_public: bytes, identity: str, data_key: bytes) -> bytes:
    """Wrap a data key to an SM9 identity (a DID) under its org's encryption master key.

    The custodian needs nothing from the recipient: no key lookup, no
    certificate, only the organisation's master public key from the chain.
    """
    return sm9.encrypt(enc_master_public, identity.encode(), data_key)


def sm9_unwrap_key(enc_key: bytes, identity: str, wrapped: bytes) -> bytes:
    """Recover a data key wrapped to `identity`; DecryptionFailed if anything is off."""
    try:
        return sm9.decrypt(enc_key, identity.encode(), wrapped)
    except sm9.SM9Error:
        raise DecryptionFailed("key unwrap failed") from None


__all__ = [
    "COSTLY_SUITES",
    "DEFAULT_SUITE",
    "SUITES",
    "DecryptionFailed",
    "KeyPair",
    "Sm9Master",
    "Suite",
    "UnknownSuite",
    "generate_keypair",
    "generate_sm9_master",
    "get_suite",
    "keypair_from_private",
    "new_data_key",
    "open_sealed",
    "seal",
    "sign",
    "sm3",
    "sm9_unwrap_key",
    "sm9_wrap_key",
    "unwrap_key",
    "verify",
    "wrap_key",
]
