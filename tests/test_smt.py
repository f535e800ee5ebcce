"""The sparse Merkle state tree: one root per set of (key, value), whatever the
order or batching of writes; proofs of presence and absence verify, and any
change to a proof or value fails."""

from __future__ import annotations

import random

import pytest

from medchain.core.smt import EMPTY, Proof, SparseMerkleTree, key_hash
from medchain.crypto import sm3


class Store:
    """Nodes kept the way storage keeps them: by hash, never rewritten."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}

    def apply(self, root: bytes, writes: dict[str, bytes | None]) -> bytes:
        tree = SparseMerkleTree(self.nodes.get)
        new_root = tree.update(root, writes)
        self.nodes.update(tree.created)
        return new_root

    def prove(self, root: bytes, key: str) -> Proof:
        return SparseMerkleTree(self.nodes.get).prove(root, key)


def fresh_root(state: dict[str, bytes]) -> bytes:
    return Store().apply(EMPTY, dict(state))


def test_root_depends_only_on_the_state_not_the_history() -> None:
    rng = random.Random(7)
    keys = [f"records/record/r-{i}" for i in range(300)]
    store, root, state = Store(), EMPTY, {}
    for _ in range(40):  # batches of sets and deletes, in random order
        writes: dict[str, bytes | None] = {}
        for key in rng.sample(keys, 25):
            writes[key] = None if rng.random() < 0.3 else rng.randbytes(8)
        root = store.apply(root, writes)
        for k, v in writes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        assert root == fresh_root(state)
    one_by_one, s2 = Store(), EMPTY
    for k in rng.sample(sorted(state), len(state)):
        s2 = one_by_one.apply(s2, {k: state[k]})
    assert s2 == root
    deleted = store.apply(root, {k: None for k in state})
    assert deleted == EMPTY


def test_proofs_of_presence_and_absence() -> None:
    store = Store()
    state = {f"consent/grant/g{i}": f"grant {i}".encode() for i in range(200)}
    root = store.apply(EMPTY, dict(state))
    for key, value in list(state.items())[:50]:
        proof = store.prove(root, key)
        assert proof.root() == root and proof.value_hash() == sm3(value)
        assert Proof.from_dict(proof.to_dict()) == proof
    for key in ("consent/grant/nope", "identity/did/x", ""):
        proof = store.prove(root, key)
        assert proof.root() == root and proof.value_hash() is None
    assert store.prove(EMPTY, "anything").root() == EMPTY


def test_a_changed_proof_or_value_fails() -> None:
    store = Store()
    root = store.apply(EMPTY, {f"k{i}": bytes([i]) for i in range(64)})
    proof = store.prove(root, "k7")
    assert proof.root() == root
    for i in range(len(proof.siblings)):
        siblings = list(proof.siblings)
        siblings[i] = bytes(b ^ 1 for b in siblings[i][:1]) + siblings[i][1:]
        assert Proof(proof.key_hash, siblings, proof.leaf_key, proof.leaf_value_hash).root() != root
    wrong_value = Proof(proof.key_hash, proof.siblings, proof.leaf_key, sm3(b"other"))
    assert wrong_value.root() != root
    # Claiming absence of a present key: its own leaf must be replaced, which breaks the root.
    other = store.prove(root, "k8")
    lie = Proof(key_hash("k7"), proof.siblings, other.leaf_key, other.leaf_value_hash)
    with pytest.raises(ValueError):
        lie.root()
    # A proof for one key does not serve another.
    assert (
        Proof(key_hash("k9"), proof.siblings, proof.leaf_key, proof.leaf_value_hash).value_hash()
        is None
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"siblings": "x"},
        {"siblings": [b"short"]},
        {"key_hash": b"1"},
        {"leaf_key": b"\x00" * 32, "leaf_value_hash": None},
        {"siblings": [bytes(32)] * 257},
    ],
)
def test_malformed_proofs_are_refused(bad: dict[str, object]) -> None:
    good = {"key_hash": bytes(32), "siblings": [], "leaf_key": None, "leaf_value_hash": None}
    with pytest.raises(ValueError):
        Proof.from_dict(good | bad)
