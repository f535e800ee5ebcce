"""Crypto suites: which algorithms a key and its signatures use.

A suite id travels inside every signed envelope, so adding a suite (for
example a post-quantum one) needs a new entry here and no format change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medchain.crypto import primitives as p
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

SUITES: dict[str, Suite] = {s.name: s for s in (SM, INTL)}
DEFAULT_SUITE = SM.name


def get_suite(name: str) -> Suite:
    """Look a suite up by id; UnknownSuite if this node does not support it."""
    try:
        return SUITES[name]
    except KeyError:
        raise UnknownSuite(f"unknown crypto suite {name!r}; supported: {sorted(SUITES)}") from None
