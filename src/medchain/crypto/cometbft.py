"""CometBFT v0.38 finality, checked in pure Python: header hash, validator-set
hash and commit signatures.

A CometBFT block is final once more than 2/3 of the voting power of its
validator set signed a precommit for its block id. This module recomputes
what those signatures cover and checks them, so a party that follows the
validator set (e.g. the regulator chain's supervision contract) needs no
trusted node or relayer to know a header is final:

- `header_hash`: CometBFT's Header.Hash, the RFC-6962 simple Merkle tree
  (SHA-256, leaf prefix 0x00, inner 0x01, split at the largest power of two
  below n) over the 14 proto-encoded header fields; it is the block id hash
  the commit signs.
- `validators_hash`: the same tree over each validator's SimpleValidator
  (ed25519 public key, voting power), in the set's order (power descending,
  then address).
- `vote_sign_bytes`: the length-delimited protobuf CanonicalVote (type 2
  precommit, height and round as sfixed64, canonical block id, timestamp,
  chain id) that each validator signs with ed25519.
- `verify_commit`: the header's chain id, height and validators hash match
  the followed set, the commit is for this header's hash, and the valid
  signatures of COMMIT flag add up to more than 2/3 of the set's power. A
  signature that fails is not counted rather than refusing the commit:
  CometBFT checks ed25519 under ZIP-215 (cofactored, non-canonical encodings
  accepted), stricter OpenSSL may refuse a precommit CometBFT counted, and the
  commit of a block never changes, so refusing it would let one Byzantine
  validator stall the relay for good.

Everything is a pure function of its arguments (no clock, no I/O), so it may
run inside a contract; the trusting period of the light-client rules needs a
clock and is left to the caller (supervision checks every height in sequence,
so it never skips; the htlc light client may skip heights under an unchanged
set and expires a client after a trusting period of its own block time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec

from medchain.crypto import primitives
from medchain.exceptions import MedChainError

PRECOMMIT = 2
FLAG_COMMIT = 2  # a signature for the block id (FLAG_NIL / FLAG_ABSENT do not count)
ADDRESS_BYTES = 20


# Protobuf's ranges, so that no value a payload may carry fails to encode. msgspec's
# bounds stop at int64: the unsigned fields take 0..2**63-1 (NonNegInt64), half of
# uint64's range, which no CometBFT version number comes near.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
NonNegInt64 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Uint32 = Annotated[int, msgspec.Meta(ge=0, lt=2**32)]
Nanos = Annotated[int, msgspec.Meta(ge=0, lt=1_000_000_000)]
Power = Annotated[int, msgspec.Meta(ge=1, lt=2**62)]
Hash = Annotated[bytes, msgspec.Meta(max_length=64)]


class BadCommit(MedChainError, ValueError):
    """The header or commit does not prove finality; the message says why."""


class Timestamp(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A protobuf Timestamp: seconds since the Unix epoch and nanoseconds."""

    seconds: Int64
    nanos: Nanos = 0

    def ms(self) -> int:
        """Milliseconds, as MedChain blocks carry time."""
        return self.seconds * 1000 + self.nanos // 1_000_000


class BlockId(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A block id: header hash and part-set header."""

    hash: Hash
    parts_total: Uint32
    parts_hash: Hash


class Header(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A CometBFT block header (v0.38), every field its hash covers."""

    version_block: NonNegInt64
    version_app: NonNegInt64
    chain_id: Annotated[str, msgspec.Meta(max_length=50)]
    height: Int64
    time: Timestamp
    last_block_id: BlockId
    last_commit_hash: Hash
    data_hash: Hash
    validators_hash: Hash
    next_validators_hash: Hash
    consensus_hash: Hash
    app_hash: Hash
    last_results_hash: Hash
    evidence_hash: Hash
    proposer_address: Hash


class CommitSig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One validator's entry in a commit, at the validator's index in the set."""

    flag: Annotated[int, msgspec.Meta(ge=0, le=3)]
    validator_address: Hash
    time: Timestamp
    signature: Annotated[bytes, msgspec.Meta(max_length=64)]


class Commit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The precommits that finalised one block."""

    height: Int64
    round: Annotated[int, msgspec.Meta(ge=0, lt=2**31)]
    block_id: BlockId
    signatures: Annotated[list[CommitSig], msgspec.Meta(max_length=10_000)]


class Validator(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An ed25519 validator and its voting power."""

    pub_key: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    power: Power

    @property
    def address(self) -> bytes:
        """CometBFT's validator address: the first 20 bytes of SHA-256(public key)."""
        return primitives.sha256(self.pub_key)[:ADDRESS_BYTES]


# -- protobuf, only what these messages use ------------------------------------


def _uvarint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 negatives as proto does: ten bytes of two's complement
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varint_field(num: int, value: int) -> bytes:
    return _uvarint(num << 3) + _uvarint(value) if value else b""


def _bytes_field(num: int, value: bytes) -> bytes:
    return _uvarint(num << 3 | 2) + _uvarint(len(value)) + value if value else b""


def _message_field(num: int, value: bytes) -> bytes:
    """A non-nullable embedded message: written even when empty."""
    return _uvarint(num << 3 | 2) + _uvarint(len(value)) + value


def _sfixed64_field(num: int, value: int) -> bytes:
    return _uvarint(num << 3 | 1) + value.to_bytes(8, "little", signed=True) if value else b""


def _timestamp(t: Timestamp) -> bytes:
    return _varint_field(1, t.seconds) + _varint_field(2, t.nanos)


def _block_id(b: BlockId) -> bytes:
    parts = _varint_field(1, b.parts_total) + _bytes_field(2, b.parts_hash)
    return _bytes_field(1, b.hash) + _message_field(2, parts)


# -- hashes ----------------------------------------------------------------------


def merkle_root(items: Sequence[bytes]) -> bytes:
    """CometBFT's simple Merkle root (RFC 6962 with SHA-256) over raw items."""
    n = len(items)
    if n == 0:
        return primitives.sha256(b"")
    if n == 1:
        return primitives.sha256(b"\x00" + items[0])
    split = 1 << ((n - 1).bit_length() - 1)  # largest power of two below n
    left, right = merkle_root(items[:split]), merkle_root(items[split:])
    return primitives.sha256(b"\x01" + left + right)


def header_hash(h: Header) -> bytes:
    """Header.Hash of CometBFT v0.38: the block id hash a commit signs."""
    version = _varint_field(1, h.version_block) + _varint_field(2, h.version_app)
    return merkle_root(
        [
            version,
            _bytes_field(1, h.chain_id.encode()),
            _varint_field(1, h.height),
            _timestamp(h.time),
            _block_id(h.last_block_id),
            _bytes_field(1, h.last_commit_hash),
            _bytes_field(1, h.data_hash),
            _bytes_field(1, h.validators_hash),
            _bytes_field(1, h.next_validators_hash),
            _bytes_field(1, h.consensus_hash),
            _bytes_field(1, h.app_hash),
            _bytes_field(1, h.last_results_hash),
            _bytes_field(1, h.evidence_hash),
            _bytes_field(1, h.proposer_address),
        ]
    )


def ordered(validators: Sequence[Validator]) -> list[Validator]:
    """A validator set in CometBFT's order: voting power descending, then address."""
    return sorted(validators, key=lambda v: (-v.power, v.address))


def validators_hash(validators: Sequence[Validator]) -> bytes:
    """ValidatorSet.Hash: the Merkle root over each SimpleValidator, in set order."""
    return merkle_root(
        [
            _message_field(1, _bytes_field(1, v.pub_key)) + _varint_field(2, v.power)
            for v in ordered(validators)
        ]
    )


def vote_sign_bytes(chain_id: str, commit: Commit, sig: CommitSig) -> bytes:
    """What a validator signed for its precommit in `commit` (CanonicalVote,
    length-delimited)."""
    b = commit.block_id
    canonical_id = _bytes_field(1, b.hash) + _message_field(
        2, _varint_field(1, b.parts_total) + _bytes_field(2, b.parts_hash)
    )
    vote = (
        _varint_field(1, PRECOMMIT)
        + _sfixed64_field(2, commit.height)
        + _sfixed64_field(3, commit.round)
        + _message_field(4, canonical_id)
        + _message_field(5, _timestamp(sig.time))
        + _bytes_field(6, chain_id.encode())
    )
    return _uvarint(len(vote)) + vote


def verify_commit(
    chain_id: str, header: Header, commit: Commit, validators: Sequence[Validator]
) -> int:
    """Check that `commit` finalises `header` under `validators` (the set the
    caller follows for this height); the voting power of its valid signatures.
    Raises BadCommit. A signature that fails to verify is not counted (see the
    module docstring); the others must still carry more than 2/3 of the power."""
    if header.chain_id != chain_id:
        raise BadCommit(f"header is of chain {header.chain_id!r}, not {chain_id!r}")
    if header.validators_hash != validators_hash(validators):
        raise BadCommit(
            f"header {header.height} is signed by another validator set than the one "
            "followed (validators_hash differs)"
        )
    if commit.height != header.height:
        raise BadCommit(f"commit is for height {commit.height}, header is {header.height}")
    if commit.block_id.hash != header_hash(header):
        raise BadCommit(f"commit of height {commit.height} is for another header hash")
    members = ordered(validators)
    if len(commit.signatures) != len(members):
        raise BadCommit(
            f"commit has {len(commit.signatures)} signature slots for {len(members)} validators"
        )
    total = sum(v.power for v in members)
    signed = 0
    for sig, validator in zip(commit.signatures, members, strict=True):
        if sig.flag != FLAG_COMMIT:
            continue
        if sig.validator_address == validator.address and primitives.ed25519_verify(
            validator.pub_key, vote_sign_bytes(chain_id, commit, sig), sig.signature
        ):
            signed += validator.power
    if signed * 3 <= total * 2:
        raise BadCommit(
            f"height {commit.height} is signed by {signed} of {total} voting power, "
            "not more than 2/3"
        )
    return signed
