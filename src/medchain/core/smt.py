"""A sparse Merkle tree over state, with SM3: the app hash commits to every
key's current value, and one key's value (or its absence) has a short proof.

Keys are placed by the 256 bits of SM3(key). The tree is compact: a subtree
holding one key is just that key's leaf, at the shallowest depth where it is
alone, so its shape depends only on the set of keys, never on the order of
writes. Hashes are domain-separated:

    leaf      SM3(0x00 || key_hash || SM3(value))
    internal  SM3(0x01 || left || right)          (EMPTY = 32 zero bytes)

Nodes are content-addressed (node hash -> encoding) and never rewritten, so
every committed root stays provable. Core computes; storage keeps the nodes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from medchain.crypto import sm3
from medchain.exceptions import InternalError, MedChainError

EMPTY = bytes(32)
KEY_DOMAIN = b"medchain/smt/key/v1"
LEAF, INTERNAL = b"\x00", b"\x01"
DEPTH = 256

NodeGet = Callable[[bytes], bytes | None]


class BadProof(MedChainError, ValueError):
    """A proof is malformed or does not hash up to the app hash.

    Proofs come from whoever served them, so this is the caller's input being
    wrong (answer it), never this node being broken (InternalError).
    """


def key_hash(key: str) -> bytes:
    """Where a key sits in the tree: SM3 of the key, domain-separated from node hashes."""
    return sm3(KEY_DOMAIN + key.encode())


def leaf_node(kh: bytes, value_hash: bytes) -> tuple[bytes, bytes]:
    """(hash, encoding) of a leaf."""
    body = LEAF + kh + value_hash
    return sm3(body), body


def internal_node(left: bytes, right: bytes) -> tuple[bytes, bytes]:
    """(hash, encoding) of an internal node over its two children."""
    body = INTERNAL + left + right
    return sm3(body), body


def bit(kh: bytes, depth: int) -> int:
    """The branch (0 left, 1 right) a key hash takes at `depth`, most significant bit first."""
    return (kh[depth >> 3] >> (7 - (depth & 7))) & 1


class SparseMerkleTree:
    """Batch updates and proofs over nodes read through `get` (a node store).

    New nodes are collected in `created` for the caller to persist with the
    block; nothing here does I/O.
    """

    def __init__(self, get: NodeGet) -> None:
        self._get = get
        self.created: dict[bytes, bytes] = {}
        self._leaves: set[bytes] = set()  # hashes known to be leaves (saves lookups)

    def _node(self, h: bytes) -> bytes:
        body = self.created.get(h) or self._get(h)
        if body is None:
            raise InternalError(f"missing state tree node {h.hex()}: the node store is incomplete")
        return body

    def _put(self, pair: tuple[bytes, bytes]) -> bytes:
        self.created[pair[0]] = pair[1]
        return pair[0]

    def update(self, root: bytes, writes: Mapping[str, bytes | None]) -> bytes:
        """The root after setting (value) or deleting (None) each key."""
        items = sorted((key_hash(k), None if v is None else sm3(v)) for k, v in writes.items())
        return self._update(root, 0, items, _positions(items), 0, len(items))

    def _update(
        self,
        node: bytes,
        depth: int,
        items: list[tuple[bytes, bytes | None]],
        positions: list[int],
        lo: int,
        hi: int,
    ) -> bytes:
        """The new subtree at `node` after items[lo:hi], which all fall under it."""
        if lo == hi:
            return node
        if node == EMPTY:
            live = [(k, v) for k, v in items[lo:hi] if v is not None]
            return self._build(depth, live, _positions(live), 0, len(live))
        body = self._node(node)
        if body[:1] == LEAF:
            merged = {body[1:33]: body[33:65]}
            for k, v in items[lo:hi]:
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = v
            live = sorted(merged.items())
            return self._build(depth, live, _positions(live), 0, len(live))
        split = _split(positions, lo, hi, depth)
        return self._join(
            self._update(body[1:33], depth + 1, items, positions, lo, split),
            self._update(body[33:65], depth + 1, items, positions, split, hi),
        )

    def _build(
        self, depth: int, live: list[tuple[bytes, bytes]], positions: list[int], lo: int, hi: int
    ) -> bytes:
        """A new subtree over live[lo:hi] (no deletions), all of them under `depth`."""
        if lo == hi:
            return EMPTY
        if hi - lo == 1:
            body = LEAF + live[lo][0] + live[lo][1]
            leaf = sm3(body)
            self.created[leaf] = body
            self._leaves.add(leaf)
            return leaf
        if depth >= DEPTH:
            raise InternalError("two different keys with the same SM3: refusing to continue")
        split = _split(positions, lo, hi, depth)
        return self._join(
            self._build(depth + 1, live, positions, lo, split),
            self._build(depth + 1, live, positions, split, hi),
        )

    def _join(self, left: bytes, right: bytes) -> bytes:
        """An internal node, or the lone leaf moved up (the tree stays compact)."""
        if left == EMPTY:
            if right == EMPTY:
                return EMPTY
            if right in self._leaves or self._node(right)[:1] == LEAF:
                return right
        elif right == EMPTY and (left in self._leaves or self._node(left)[:1] == LEAF):
            return left
        body = INTERNAL + left + right
        h = sm3(body)
        self.created[h] = body
        return h

    def prove(self, root: bytes, key: str) -> Proof:
        """Siblings from the root down to where `key` is, or would be."""
        kh = key_hash(key)
        siblings: list[bytes] = []
        node, depth = root, 0
        while node != EMPTY:
            body = self._node(node)
            if body[:1] == LEAF:
                return Proof(kh, siblings, body[1:33], body[33:65])
            left, right = body[1:33], body[33:65]
            if bit(kh, depth):
                siblings.append(left)
                node = right
            else:
                siblings.append(right)
                node = left
            depth += 1
        return Proof(kh, siblings, None, None)


def _positions(items: list[tuple[bytes, bytes | None]] | list[tuple[bytes, bytes]]) -> list[int]:
    """Each item's key hash as a 256-bit integer (same order as the bytes)."""
    return [int.from_bytes(k, "big") for k, _ in items]


def _split(positions: list[int], lo: int, hi: int, depth: int) -> int:
    """Index of the first of positions[lo:hi] whose bit at `depth` is 1.

    They are sorted and share their first `depth` bits, so the bit at `depth`
    is 0s then 1s along the list: the split is where the shared prefix followed
    by a 1 would be inserted (a C-speed binary search)."""
    below = DEPTH - depth
    first_one = ((positions[lo] >> below) << below) | (1 << (below - 1))
    return bisect_left(positions, first_one, lo, hi)


@dataclass(frozen=True)
class Proof:
    """Where a key is in the tree: its leaf, another key's leaf, or nothing.

    `leaf_key`/`leaf_value_hash` describe the leaf the path ends at (None: an
    empty subtree). Equal to the asked key: inclusion; different: exclusion.
    """

    key_hash: bytes
    siblings: list[bytes]
    leaf_key: bytes | None
    leaf_value_hash: bytes | None

    def root(self) -> bytes:
        """The root these siblings and this leaf hash up to."""
        if self.leaf_key is None or self.leaf_value_hash is None:
            node = EMPTY
        else:
            for depth in range(len(self.siblings)):
                if bit(self.leaf_key, depth) != bit(self.key_hash, depth):
                    raise BadProof("proof leaf is not on the key's path")
            node = leaf_node(self.leaf_key, self.leaf_value_hash)[0]
        for depth in range(len(self.siblings) - 1, -1, -1):
            sibling = self.siblings[depth]
            pair = (sibling, node) if bit(self.key_hash, depth) else (node, sibling)
            node = internal_node(*pair)[0]
        return node

    def value_hash(self) -> bytes | None:
        """SM3 of the key's value, or None if the proof shows the key is absent."""
        return self.leaf_value_hash if self.leaf_key == self.key_hash else None

    def to_dict(self) -> dict[str, object]:
        """The proof as a map, for canonical CBOR and the gateway's JSON answers."""
        return {
            "key_hash": self.key_hash,
            "siblings": list(self.siblings),
            "leaf_key": self.leaf_key,
            "leaf_value_hash": self.leaf_value_hash,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Proof:
        """A proof from a map someone served; BadProof on any malformed part, checked
        before any hashing."""
        siblings = d["siblings"]
        if not isinstance(siblings, list) or len(siblings) > DEPTH:
            raise BadProof("bad proof siblings")
        for s in siblings:
            if not isinstance(s, bytes) or len(s) != 32:
                raise BadProof("bad proof sibling")
        key, leaf, value = d["key_hash"], d["leaf_key"], d["leaf_value_hash"]
        if not isinstance(key, bytes) or len(key) != 32:
            raise BadProof("bad proof key hash")
        for part in (leaf, value):
            if part is not None and (not isinstance(part, bytes) or len(part) != 32):
                raise BadProof("bad proof leaf")
        if (leaf is None) != (value is None):
            raise BadProof("bad proof leaf")
        return cls(key, list(siblings), leaf, value)  # type: ignore[arg-type]
