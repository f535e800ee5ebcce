"""Checking a node's proofs offline, for integrators who do not trust the node.

`Client.prove_state(key)` and `Client.prove_tx(tx_id)` answer medchain-proof/v1
documents; `verify_proof` recomputes the app hash they hash up to and compares it
with one the caller trusts (from a CometBFT header signed by the validators, e.g.
through medchain.network.light.verify_proof, or relayed to the regulator chain).
Without a trusted app hash it checks only that the document is consistent.
"""

from __future__ import annotations

from typing import Any

from medchain.core import proofs
from medchain.core.smt import BadProof

__all__ = ["BadProof", "verify_proof"]


def verify_proof(doc: dict[str, Any], trusted_app_hash: bytes | str | None = None) -> str:
    """What the proof shows (e.g. "state 'consent/grant/..' = {...} at height 7 of
    <chain>"), checked against `trusted_app_hash` (bytes or hex); BadProof says why not."""
    if isinstance(trusted_app_hash, str):
        try:
            trusted_app_hash = bytes.fromhex(trusted_app_hash)
        except ValueError:
            raise BadProof("the trusted app hash is not hex") from None
    return proofs.verify(doc, trusted_app_hash)
