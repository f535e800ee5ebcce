"""Content identifiers: CIDv1 (raw codec) over the registered sm3-256 multihash.

The multiformats library knows the sm3-256 code (0x534d) but ships no SM3
implementation, so we register ours once. Our own CIDs (base32, raw codec)
are built and read directly from their bytes, which costs a few microseconds
where the library's checked path costs ~1 ms per CID on an import's hot path;
any other form of CID is left to the library.
"""

from __future__ import annotations

import base64
import binascii

from multiformats import CID, multihash

from medchain import crypto
from medchain.exceptions import MedChainError

SM3_MULTIHASH = "sm3-256"


def _sm3(data: bytes | bytearray | memoryview, size: int | None = None) -> bytes:
    digest = crypto.sm3(bytes(data))
    return digest if size is None else digest[:size]


if not multihash.raw.exists(SM3_MULTIHASH):
    multihash.raw.register(SM3_MULTIHASH, _sm3, 32)


class InvalidCID(MedChainError, ValueError):
    """Not a CIDv1 with an sm3-256 multihash."""


# CIDv1 (0x01), raw codec (0x55), sm3-256 (varint of 0x534d), 32-byte digest.
RAW_SM3_PREFIX = bytes([0x01, 0x55, 0xCD, 0xA6, 0x01, 0x20])


def _base32(raw: bytes) -> str:
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def cid_of(data: bytes) -> str:
    """CIDv1, raw codec, sm3-256 multihash, base32 text form ('b...')."""
    return _base32(RAW_SM3_PREFIX + crypto.sm3(data))


def parse_cid(text: str) -> bytes:
    """The SM3 digest inside a MedChain CID; InvalidCID for anything else."""
    if text.startswith("b") and len(text) == 62:
        try:
            raw = base64.b32decode(text[1:].upper() + "===")
        except binascii.Error:
            raw = b""
        if raw.startswith(RAW_SM3_PREFIX) and _base32(raw) == text:
            return raw[len(RAW_SM3_PREFIX) :]
    try:
        cid = CID.decode(text)
    except (ValueError, KeyError) as e:
        raise InvalidCID(f"not a CID: {e}") from None
    if cid.version != 1 or cid.hashfun.name != SM3_MULTIHASH or len(cid.raw_digest) != 32:
        raise InvalidCID("MedChain CIDs are v1 with an sm3-256 multihash")
    return bytes(cid.raw_digest)
