"""Light clients of other chains, checked inside a contract: which app hashes of a
counterparty chain this chain may trust, without trusting whoever relays them.

Two kinds of counterparty:

- cometbft: a header is trusted when more than 2/3 of the voting power of the
  validator set the client follows signed its commit (crypto/cometbft.py
  verify_commit). A header that announces another next validator set carries it,
  checked against next_validators_hash, and the client follows it from then on
  (the supervision contract follows a business chain the same way). Header H
  carries the app hash after block H-1, so it vouches for the state at H-1.
- solo: the embedded engine signs, after each block, the canonical CBOR of
  {chain_id, height, block_hash, app_hash, time_ms} with its node key (SM2); the
  app hash is the state after that very block.

Either way the result is (state height, app hash, time): a state proof
(core/proofs.py) at that height is then checked against that app hash. Pure
functions of their arguments: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from medchain import crypto, encoding
from medchain.core import proofs
from medchain.crypto import cometbft
from medchain.exceptions import Code, InvalidTransaction

COMETBFT = "cometbft"
SOLO = "solo"
ENGINES = (COMETBFT, SOLO)


class TrustedRoot(NamedTuple):
    """An app hash of the counterparty that a verified header vouches for."""

    height: int  # the state height: the app hash is the state after this block
    app_hash: bytes
    time_ms: int


def not_trusted(why: str) -> InvalidTransaction:
    """A header or proof the light client refuses: a forgery looks like this."""
    return InvalidTransaction(Code.INVALID_PROOF, f"not trusted: {why}")


# -- solo -----------------------------------------------------------------------


def solo_header_bytes(
    chain_id: str, height: int, block_hash: bytes, app_hash: bytes, time_ms: int
) -> bytes:
    """What a solo node signs after block `height`: canonical CBOR, so signer and
    verifier agree byte for byte."""
    return encoding.encode(
        {
            "chain_id": chain_id,
            "height": height,
            "block_hash": block_hash,
            "app_hash": app_hash,
            "time_ms": time_ms,
        }
    )


def verify_solo_header(
    chain_id: str,
    suite: str,
    public_key: bytes,
    header: Mapping[str, Any],
    signature: bytes,
) -> TrustedRoot:
    """The root a solo node's signed header vouches for, if its registered key signed
    it for this chain; INVALID_PROOF otherwise."""
    if header["chain_id"] != chain_id:
        raise not_trusted(f"header is of chain {header['chain_id']!r}, not {chain_id!r}")
    message = solo_header_bytes(
        header["chain_id"],
        header["height"],
        header["block_hash"],
        header["app_hash"],
        header["time_ms"],
    )
    if not crypto.verify(suite, public_key, message, signature):
        raise not_trusted(
            f"header {header['height']} of {chain_id} is not signed by its registered node key"
        )
    return TrustedRoot(header["height"], header["app_hash"], header["time_ms"])


# -- cometbft -------------------------------------------------------------------


def stored_set(validators: Sequence[cometbft.Validator]) -> list[dict[str, Any]]:
    """A validator set as kept in state, in CometBFT's order."""
    return [{"pub_key": v.pub_key, "power": v.power} for v in cometbft.ordered(validators)]


def followed_set(stored: Sequence[Mapping[str, Any]]) -> list[cometbft.Validator]:
    """A stored validator set as verify_commit takes it."""
    return [cometbft.Validator(v["pub_key"], v["power"]) for v in stored]


def verify_followed_commit(
    chain_id: str,
    validators: Sequence[Mapping[str, Any]],
    header: cometbft.Header,
    commit: cometbft.Commit,
) -> None:
    """Header `header` is final under the followed set (`validators`, as stored);
    INVALID_PROOF saying why not."""
    try:
        cometbft.verify_commit(chain_id, header, commit, followed_set(validators))
    except cometbft.BadCommit as e:
        raise not_trusted(str(e)) from None


def announced_set(
    header: cometbft.Header, next_validators: Sequence[cometbft.Validator]
) -> list[dict[str, Any]] | None:
    """The next validator set a verified header announces (as stored), or None when it
    keeps the same one; INVALID_PROOF if the set carried does not hash to it."""
    if header.next_validators_hash == header.validators_hash:
        return None
    if cometbft.validators_hash(next_validators) != header.next_validators_hash:
        raise not_trusted(
            f"header {header.height} announces a new validator set: carry it "
            "(next_validators) so that it hashes to next_validators_hash"
        )
    return stored_set(next_validators)


def verify_cometbft_header(
    chain_id: str,
    validators: Sequence[Mapping[str, Any]],
    header: cometbft.Header,
    commit: cometbft.Commit,
) -> TrustedRoot:
    """The root a final CometBFT header vouches for: the state after block H-1."""
    if header.height < 2:
        raise not_trusted("header 1 carries no app hash of a block; start from header 2")
    verify_followed_commit(chain_id, validators, header, commit)
    return TrustedRoot(header.height - 1, header.app_hash, header.time.ms())


# -- state proofs ---------------------------------------------------------------


def verify_state_proof(
    chain_id: str, root: TrustedRoot, key: str, document: Mapping[str, Any]
) -> Any:
    """The decoded value at `key` that a state proof (core/proofs.py, bytes as hex)
    shows at `root`; None for a proven absence. INVALID_PROOF if it does not hash up
    to the trusted app hash or is about another chain, height or key."""
    if document.get("chain_id") != chain_id or document.get("height") != root.height:
        raise not_trusted(f"the proof is not of {chain_id} at height {root.height}")
    if document.get("key") != key:
        raise not_trusted(f"the proof is of key {document.get('key')!r}, not {key!r}")
    try:
        proofs.verify(dict(document), root.app_hash)
    except proofs.BadProof as e:
        raise not_trusted(str(e)) from None
    value = document.get("value")
    if value is None:
        return None
    try:
        return encoding.decode(bytes.fromhex(value))
    except (ValueError, encoding.DecodeError):
        raise not_trusted("the proven value is not canonical CBOR") from None
