"""Binary Merkle root with SM3, leaf and node hashes domain-separated
(as in RFC 6962), so a leaf can never be passed off as an inner node."""

from __future__ import annotations

from collections.abc import Sequence

from medchain.crypto import sm3

EMPTY_ROOT = sm3(b"")


def leaf_hash(data: bytes) -> bytes:
    """Hash of one leaf."""
    return sm3(b"\x00" + data)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Root over already-hashed leaves; an odd node is carried up unchanged."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        nxt = [sm3(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]
