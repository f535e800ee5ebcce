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


def merkle_path(leaves: Sequence[bytes], index: int) -> list[tuple[bool, bytes]]:
    """Siblings from leaf `index` up to the root: (sibling is on the left, hash).
    A node carried up unchanged (odd count) has no sibling at that level."""
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    path = []
    level, i = list(leaves), index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            path.append((sibling < i, level[sibling]))
        nxt = [sm3(b"\x01" + level[j] + level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level, i = nxt, i // 2
    return path


def root_from_path(leaf: bytes, path: Sequence[tuple[bool, bytes]]) -> bytes:
    """The root a leaf and its path hash up to."""
    node = leaf
    for on_left, sibling in path:
        node = sm3(b"\x01" + sibling + node) if on_left else sm3(b"\x01" + node + sibling)
    return node
