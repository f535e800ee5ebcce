"""Proofs a patient, auditor or court can check offline against an app hash.

A proof document is JSON (bytes as hex). Two kinds:

  state   the value of one key (or its absence) after block `height`: a sparse
          Merkle path to the state root
  tx      one transaction's result (its code and audit events) in block
          `height`: a Merkle path to the block's results root

Either way the verifier recomputes app_hash = SM3(domain, height, state_root,
results_root) and compares it with an app hash it trusts: one signed by the
validators in the next block header (CometBFT), or relayed to the regulator
chain. `verify` never trusts the node that served the proof.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medchain import encoding
from medchain.core.block import TxResult, compute_app_hash, result_leaf
from medchain.core.merkle import merkle_path, root_from_path
from medchain.core.smt import BadProof as BadProof
from medchain.core.smt import Proof, SparseMerkleTree, key_hash
from medchain.crypto import sm3

FORMAT = "medchain-proof/v1"


def state_proof(
    chain_id: str,
    roots: dict[str, Any],
    nodes: Callable[[bytes], bytes | None],
    key: str,
    value: bytes | None,
) -> dict[str, Any]:
    """A proof that `key` holds `value` (None: is absent) at `roots['height']`."""
    proof = SparseMerkleTree(nodes).prove(roots["state_root"], key)
    return {
        "format": FORMAT,
        "kind": "state",
        "chain_id": chain_id,
        "height": roots["height"],
        "key": key,
        "value": None if value is None else value.hex(),
        "state_proof": {k: _hex(v) for k, v in proof.to_dict().items()},
        "results_root": roots["results_root"].hex(),
        "app_hash": roots["app_hash"].hex(),
    }


def tx_proof(
    chain_id: str, roots: dict[str, Any], results: list[TxResult], index: int
) -> dict[str, Any]:
    """A proof that the tx at `index` of block `roots['height']` had this result."""
    path = merkle_path([result_leaf(r) for r in results], index)
    return {
        "format": FORMAT,
        "kind": "tx",
        "chain_id": chain_id,
        "height": roots["height"],
        "index": index,
        "result": encoding.encode(results[index].to_dict()).hex(),
        "results_path": [[left, h.hex()] for left, h in path],
        "state_root": roots["state_root"].hex(),
        "app_hash": roots["app_hash"].hex(),
    }


def verify(doc: dict[str, Any], trusted_app_hash: bytes | None = None) -> str:
    """Check a proof; returns what it proves, or raises BadProof saying why not."""
    try:
        if doc.get("format") != FORMAT:
            raise BadProof(f"not a {FORMAT} document")
        height = int(doc["height"])
        if height < 0:
            raise BadProof("negative height")
        claimed = bytes.fromhex(doc["app_hash"])
        if doc["kind"] == "state":
            computed, what = _verify_state(doc, height)
        elif doc["kind"] == "tx":
            computed, what = _verify_tx(doc, height)
        else:
            raise BadProof(f"unknown proof kind {doc['kind']!r}")
    except (KeyError, TypeError, ValueError, encoding.DecodeError) as e:
        if isinstance(e, BadProof):
            raise
        raise BadProof(f"malformed proof: {e}") from None
    if computed != claimed:
        raise BadProof("the proof does not hash up to its app hash")
    if trusted_app_hash is not None and computed != trusted_app_hash:
        raise BadProof("the proof's app hash is not the trusted one for this height")
    return f"{what} at height {height} of {doc['chain_id']} (app hash {computed.hex()})"


def _verify_state(doc: dict[str, Any], height: int) -> tuple[bytes, str]:
    raw = doc["state_proof"]
    proof = Proof.from_dict(
        {
            "key_hash": bytes.fromhex(raw["key_hash"]),
            "siblings": [bytes.fromhex(s) for s in raw["siblings"]],
            "leaf_key": None if raw["leaf_key"] is None else bytes.fromhex(raw["leaf_key"]),
            "leaf_value_hash": None
            if raw["leaf_value_hash"] is None
            else bytes.fromhex(raw["leaf_value_hash"]),
        }
    )
    if proof.key_hash != key_hash(doc["key"]):
        raise BadProof("the proof is for another key")
    value = None if doc["value"] is None else bytes.fromhex(doc["value"])
    if proof.value_hash() != (None if value is None else sm3(value)):
        raise BadProof("the value does not match the proof")
    state_root = proof.root()
    app = compute_app_hash(height, state_root, bytes.fromhex(doc["results_root"]))
    shown = "absent" if value is None else f"= {encoding.decode(value)!r}"[:200]
    return app, f"state {doc['key']!r} {shown}"


def _verify_tx(doc: dict[str, Any], height: int) -> tuple[bytes, str]:
    result = TxResult.from_dict(encoding.decode(bytes.fromhex(doc["result"])))
    path = [(bool(left), bytes.fromhex(h)) for left, h in doc["results_path"]]
    root = root_from_path(result_leaf(result), path)
    app = compute_app_hash(height, bytes.fromhex(doc["state_root"]), root)
    kinds = ", ".join(e.type for e in result.events) or "no events"
    return app, f"tx {result.tx_id.hex()} code {result.code.name} ({kinds})"


def _hex(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_hex(v) for v in value]
    return value
