"""Content identifiers: CIDv1 (raw codec) over the registered sm3-256 multihash.

The multiformats library knows the sm3-256 code (0x534d) but ships no SM3
implementation, so we register ours once.
"""

from __future__ import annotations

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


def cid_of(data: bytes) -> str:
    """CIDv1, raw codec, sm3-256 multihash, base32 text form ('b...')."""
    return str(CID("base32", 1, "raw", multihash.digest(data, SM3_MULTIHASH)))


def parse_cid(text: str) -> bytes:
    """The SM3 digest inside a MedChain CID; InvalidCID for anything else."""
    try:
        cid = CID.decode(text)
    except (ValueError, KeyError) as e:
        raise InvalidCID(f"not a CID: {e}") from None
    if cid.version != 1 or cid.hashfun.name != SM3_MULTIHASH or len(cid.raw_digest) != 32:
        raise InvalidCID("MedChain CIDs are v1 with an sm3-256 multihash")
    return bytes(cid.raw_digest)
