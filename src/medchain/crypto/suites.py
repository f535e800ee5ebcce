"""Crypto suites: which algorithms a key and its signatures use.

A suite id travels inside every signed envelope, so adding a suite needs a new
entry here and no format change. Suites: "sm" (SM2/SM3/SM4, default), "intl"
(Ed25519/SHA-256/AES-GCM), "sm9" (identity-based: the public key is the
organisation's SM9 master public key followed by the member's DID), "pq"
(ML-DSA-65, FIPS 204) and "sm2+mldsa" (hybrid: both signatures must verify,
so a forger must break SM2 and ML-DSA). See docs/crypto.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medchain.crypto import primitives as p
from medchain.crypto import sm9 as _sm9
from medchain.exceptions import MedChainError


class UnknownSuite(MedChainError, ValueError):
    """The suite id is not one this node supports."""


@dataclass(frozen=True)
class Suite:
    """The algorithms behind one suite id."""

    name: str
    public_key_size: int
    data_key_size: int
    hash: Callable[[bytes], bytes]
    generate_keypair: Callable[[], tuple[bytes, bytes]]
    public_from_private: Callable[[bytes], bytes]
    sign: Callable[[bytes, bytes], bytes]
    verify: Callable[[bytes, bytes, bytes], bool]
    seal: Callable[[bytes, bytes, bytes], bytes]
    open: Callable[[bytes, bytes, bytes], bytes]
    wrap_key: Callable[[bytes, bytes], bytes] | None
    unwrap_key: Callable[[bytes, bytes], bytes] | None
    # >0 for sm9: the public key is public_key_size bytes, then up to this many of identity.
    max_identity_bytes: int = 0

    def accepts_public(self, public: bytes) -> bool:
        """Whether `public` has a shape this suite's keys can have."""
        if not self.max_identity_bytes:
            return len(public) == self.public_key_size
        return self.public_key_size < len(public) <= self.public_key_size + self.max_identity_bytes


SM = Suite(
    name="sm",
    public_key_size=64,
    data_key_size=16,
    hash=p.sm3,
    generate_keypair=p.sm2_generate_keypair,
    public_from_private=p.sm2_public_from_private,
    sign=p.sm2_sign,
    verify=p.sm2_verify,
    seal=p.sm4_gcm_seal,
    open=p.sm4_gcm_open,
    wrap_key=p.sm2_encrypt,
    unwrap_key=p.sm2_decrypt,
)

INTL = Suite(
    name="intl",
    public_key_size=32,
    data_key_size=32,
    hash=p.sha256,
    generate_keypair=p.ed25519_generate_keypair,
    public_from_private=p.ed25519_public_from_private,
    sign=p.ed25519_sign,
    verify=p.ed25519_verify,
    seal=p.aes_gcm_seal,
    open=p.aes_gcm_open,
    wrap_key=None,  # Ed25519 keys cannot encrypt; an X25519 wrap is future work.
    unwrap_key=None,
)

SM9_MAX_IDENTITY_BYTES = 128


def sm9_public_key(master_public: bytes, identity: str) -> bytes:
    """An sm9 "public key": the org's signing master public key, then the member's DID."""
    ident = identity.encode()
    if len(master_public) != _sm9.MASTER_PUBLIC_BYTES or not 0 < len(ident) <= 128:
        raise _sm9.SM9Error("sm9 public key: 128-byte master key and a 1..128 byte identity")
    return master_public + ident


def sm9_private_key(sign_key: bytes, master_public: bytes, identity: str, enc_key: bytes) -> bytes:
    """An sm9 private blob, as the KGC issues it to one member: the 64-byte signing
    key, the 128-byte decryption key (so one key file both signs and opens data keys
    wrapped to the DID), then the public key."""
    if len(sign_key) != _sm9.SIGN_KEY_BYTES:
        raise _sm9.SM9Error("an SM9 signing key is 64 bytes")
    if len(enc_key) != _sm9.ENC_KEY_BYTES:
        raise _sm9.SM9Error(f"an SM9 decryption key is {_sm9.ENC_KEY_BYTES} bytes")
    return sign_key + enc_key + sm9_public_key(master_public, identity)


_SM9_PUBLIC_AT = _sm9.SIGN_KEY_BYTES + _sm9.ENC_KEY_BYTES


def sm9_identity(public: bytes) -> str:
    """The identity (a DID) an sm9 public key names; SM9Error if it is not UTF-8 text."""
    try:
        return public[_sm9.MASTER_PUBLIC_BYTES :].decode()
    except UnicodeDecodeError:
        raise _sm9.SM9Error("an sm9 key's identity must be UTF-8 text") from None


def sm9_master(public: bytes) -> bytes:
    """The org signing master public key an sm9 public key embeds."""
    return public[: _sm9.MASTER_PUBLIC_BYTES]


def _sm9_generate() -> tuple[bytes, bytes]:
    raise _sm9.SM9Error(
        "sm9 keys are issued by an organisation's KGC: `medchain sm9 issue`, not generated"
    )


def _sm9_public(private: bytes) -> bytes:
    return private[_SM9_PUBLIC_AT:]


def _sm9_sign(private: bytes, message: bytes) -> bytes:
    mpk = private[_SM9_PUBLIC_AT : _SM9_PUBLIC_AT + _sm9.MASTER_PUBLIC_BYTES]
    return _sm9.sign(private[: _sm9.SIGN_KEY_BYTES], mpk, message)


def _sm9_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    n = _sm9.MASTER_PUBLIC_BYTES
    return _sm9.verify(public[:n], public[n:], message, signature)


def _sm9_unwrap(private: bytes, wrapped: bytes) -> bytes:
    # Wrapping needs the org's *encryption* master key, which the public key does not
    # carry: the edge wraps with crypto.sm9_wrap_key; the holder opens it here.
    identity = private[_SM9_PUBLIC_AT + _sm9.MASTER_PUBLIC_BYTES :]
    return _sm9.decrypt(private[_sm9.SIGN_KEY_BYTES : _SM9_PUBLIC_AT], identity, wrapped)


SM9 = Suite(
    name="sm9",
    public_key_size=_sm9.MASTER_PUBLIC_BYTES,
    data_key_size=16,
    hash=p.sm3,
    generate_keypair=_sm9_generate,
    public_from_private=_sm9_public,
    sign=_sm9_sign,
    verify=_sm9_verify,
    seal=p.sm4_gcm_seal,
    open=p.sm4_gcm_open,
    wrap_key=None,
    unwrap_key=_sm9_unwrap,
    max_identity_bytes=SM9_MAX_IDENTITY_BYTES,
)

PQ = Suite(
    name="pq",
    public_key_size=p.MLDSA_PUBLIC_BYTES,
    data_key_size=16,
    hash=p.sm3,
    generate_keypair=p.mldsa_generate_keypair,
    public_from_private=p.mldsa_public_from_private,
    sign=p.mldsa_sign,
    verify=p.mldsa_verify,
    seal=p.sm4_gcm_seal,
    open=p.sm4_gcm_open,
    wrap_key=None,  # a lattice KEM (ML-KEM) wrap is future work
    unwrap_key=None,
)

_SM2_PRIVATE = 32
_SM2_PUBLIC = 64


def _hybrid_generate() -> tuple[bytes, bytes]:
    sm2_private, sm2_public = p.sm2_generate_keypair()
    pq_private, pq_public = p.mldsa_generate_keypair()
    return sm2_private + pq_private, sm2_public + pq_public


def _hybrid_public(private: bytes) -> bytes:
    sm2_public = p.sm2_public_from_private(private[:_SM2_PRIVATE])
    return sm2_public + p.mldsa_public_from_private(private[_SM2_PRIVATE:])


def _hybrid_sign(private: bytes, message: bytes) -> bytes:
    """len(SM2 sig) (1 byte) || SM2 sig (DER) || ML-DSA-65 sig; both over the same message."""
    sm2_sig = p.sm2_sign(private[:_SM2_PRIVATE], message)
    return bytes([len(sm2_sig)]) + sm2_sig + p.mldsa_sign(private[_SM2_PRIVATE:], message)


def _hybrid_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    if not signature:
        return False
    n = signature[0]
    sm2_sig, pq_sig = signature[1 : 1 + n], signature[1 + n :]
    if len(sm2_sig) != n or len(pq_sig) != p.MLDSA_SIGNATURE_BYTES:
        return False
    # Both must hold: the hybrid is as strong as the stronger of the two.
    return p.sm2_verify(public[:_SM2_PUBLIC], message, sm2_sig) and p.mldsa_verify(
        public[_SM2_PUBLIC:], message, pq_sig
    )


def _hybrid_wrap(public: bytes, data_key: bytes) -> bytes:
    return p.sm2_encrypt(public[:_SM2_PUBLIC], data_key)


def _hybrid_unwrap(private: bytes, wrapped: bytes) -> bytes:
    return p.sm2_decrypt(private[:_SM2_PRIVATE], wrapped)


HYBRID = Suite(
    name="sm2+mldsa",
    public_key_size=_SM2_PUBLIC + p.MLDSA_PUBLIC_BYTES,
    data_key_size=16,
    hash=p.sm3,
    generate_keypair=_hybrid_generate,
    public_from_private=_hybrid_public,
    sign=_hybrid_sign,
    verify=_hybrid_verify,
    seal=p.sm4_gcm_seal,
    open=p.sm4_gcm_open,
    wrap_key=_hybrid_wrap,  # the SM2 half wraps, as suite "sm" does
    unwrap_key=_hybrid_unwrap,
)

SUITES: dict[str, Suite] = {s.name: s for s in (SM, INTL, SM9, PQ, HYBRID)}
# Suites whose verification costs far more than a state lookup (an sm9 verify is two
# pairings): mempool admission and signed reads look such a signer up first.
COSTLY_SUITES = frozenset({SM9.name})
DEFAULT_SUITE = SM.name


def get_suite(name: str) -> Suite:
    """Look a suite up by id; UnknownSuite if this node does not support it."""
    try:
        return SUITES[name]
    except KeyError:
        raise UnknownSuite(f"unknown crypto suite {name!r}; supported: {sorted(SUITES)}") from None
