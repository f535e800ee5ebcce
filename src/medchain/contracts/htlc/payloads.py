"""Typed payloads of the htlc contract, validated before any state read.

Headers, commits and proofs come from whoever relays them and are bounded here
(validator sets, Merkle paths, sizes), so an oversized one is refused while
decoding, before any signature check or hashing. Whether they are true is the
light client's question (contracts/lightclient.py), asked by the handler.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from medchain.contracts.consent.model import Purpose
from medchain.contracts.htlc.model import (
    HASHLOCK_BYTES,
    MAX_GRANT_MS,
    MAX_PREIMAGE_BYTES,
    MIN_PREIMAGE_BYTES,
)
from medchain.contracts.payload import Payload, whole
from medchain.contracts.records.payloads import RECORD_ID
from medchain.contracts.supervision.model import MAX_VALIDATORS
from medchain.core.smt import DEPTH
from medchain.crypto.cometbft import Commit, Header, Validator

CHAIN_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
LOCK_ID = r"[A-Za-z0-9][A-Za-z0-9._:-]{2,63}"
DID = r"did:[a-z0-9]+:[A-Za-z0-9._:-]{1,120}"

ChainId = Annotated[str, msgspec.Meta(pattern=whole(CHAIN_ID))]
LockId = Annotated[str, msgspec.Meta(pattern=whole(LOCK_ID))]
Did = Annotated[str, msgspec.Meta(pattern=whole(DID))]
Bytes32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
Height = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
RecordId = Annotated[str, msgspec.Meta(pattern=whole(RECORD_ID))]


class TokenAsset(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="token", tag_field="kind"
):
    """Tokens of the locker's account, held in escrow until claim or refund."""

    amount: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class GrantAsset(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="grant", tag_field="kind"
):
    """A record-package access grant the patient offers: on claim the chain issues the
    consent grant to the recipient for `duration_ms` from the claim's block."""

    records: Annotated[list[RecordId], msgspec.Meta(min_length=1, max_length=32)]
    purposes: Annotated[list[Purpose], msgspec.Meta(min_length=1, max_length=8)]
    duration_ms: Annotated[int, msgspec.Meta(ge=60_000, le=MAX_GRANT_MS)]

    def __post_init__(self) -> None:
        """Sets read as sets: no repeated record or purpose."""
        if len(set(self.records)) != len(self.records):
            raise ValueError("records must be distinct")
        if len(set(self.purposes)) != len(self.purposes):
            raise ValueError("purposes must be distinct")


Asset = TokenAsset | GrantAsset


class StateProof(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A medchain-proof/v1 state proof (core/proofs.py) with bytes as bytes: `key`
    holds `value` (canonical CBOR; None: absent) after block `height` of `chain_id`."""

    chain_id: ChainId
    height: Height
    key: Annotated[str, msgspec.Meta(max_length=256)]
    value: Annotated[bytes, msgspec.Meta(max_length=4096)] | None
    key_hash: Bytes32
    siblings: Annotated[list[Bytes32], msgspec.Meta(max_length=DEPTH)]
    leaf_key: Bytes32 | None
    leaf_value_hash: Bytes32 | None
    results_root: Bytes32
    app_hash: Bytes32


class CounterpartIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The first lock on the other chain that a second lock answers: `asset` is what
    the second locker expects to receive there."""

    chain: ChainId
    lock_id: LockId
    asset: Asset
    proof: StateProof


class SoloHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a solo node signs after a block (lightclient.solo_header_bytes)."""

    chain_id: ChainId
    height: Height
    block_hash: Bytes32
    app_hash: Bytes32
    time_ms: Height


class SoloUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A solo counterparty's signed header."""

    header: SoloHeader
    signature: Annotated[bytes, msgspec.Meta(min_length=1, max_length=256)]


class CometUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A CometBFT counterparty's header, its commit, and the next validator set when
    the header announces a change."""

    header: Header
    commit: Commit
    next_validators: Annotated[list[Validator], msgspec.Meta(max_length=MAX_VALIDATORS)] = (
        msgspec.field(default_factory=list)
    )


class RegisterCounterpartyPayload(Payload, frozen=True, kw_only=True):
    """htlc.register_counterparty: follow chain `chain_id` from a trusted root taken out
    of band. solo: the node's signing key (suite, public_key). cometbft: the validator
    set that signs header `height` and that header's hash (a re-registration replaces
    the client and forgets its roots)."""

    chain_id: ChainId
    engine: Literal["solo", "cometbft"]
    suite: Annotated[str, msgspec.Meta(max_length=16)] = ""
    public_key: Annotated[bytes, msgspec.Meta(max_length=128)] = b""
    validators: Annotated[list[Validator], msgspec.Meta(max_length=MAX_VALIDATORS)] = msgspec.field(
        default_factory=list
    )
    height: Height = 0
    header_hash: Annotated[bytes, msgspec.Meta(max_length=32)] = b""

    def __post_init__(self) -> None:
        """Exactly the root the engine needs."""
        if self.engine == "solo":
            if not self.suite or not self.public_key or self.validators or self.header_hash:
                raise ValueError("a solo counterparty is registered by suite and public_key only")
        elif not self.validators or len(self.header_hash) != 32 or self.public_key:
            raise ValueError(
                "a cometbft counterparty is registered by validators, height and header_hash"
            )


class UpdateClientPayload(Payload, frozen=True, kw_only=True):
    """htlc.update_client: one verified header of `chain_id` (exactly one of solo or
    cometbft, as the counterparty was registered)."""

    chain_id: ChainId
    solo: SoloUpdate | None = None
    cometbft: CometUpdate | None = None

    def __post_init__(self) -> None:
        """One header, of one kind."""
        if (self.solo is None) == (self.cometbft is None):
            raise ValueError("give exactly one of solo or cometbft")


class LockPayload(Payload, frozen=True, kw_only=True):
    """htlc.lock: `asset` of the signer goes to `recipient` against the preimage of
    `hashlock` (SM3) up to block `timeout_height` of this chain, back after it."""

    lock_id: LockId
    hashlock: Annotated[bytes, msgspec.Meta(min_length=HASHLOCK_BYTES, max_length=HASHLOCK_BYTES)]
    recipient: Did
    asset: Asset
    timeout_height: Height
    counterpart: CounterpartIn | None = None


class ClaimPayload(Payload, frozen=True, kw_only=True):
    """htlc.claim: the preimage, by anyone, before the timeout."""

    lock_id: LockId
    preimage: Annotated[
        bytes, msgspec.Meta(min_length=MIN_PREIMAGE_BYTES, max_length=MAX_PREIMAGE_BYTES)
    ]


class RefundPayload(Payload, frozen=True, kw_only=True):
    """htlc.refund: by anyone, once the timeout height has passed."""

    lock_id: LockId
