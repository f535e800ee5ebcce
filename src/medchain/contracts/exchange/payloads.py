"""Typed payloads of the exchange contract, validated before any state read.

Record and session ids are plain text: they are only looked up, and an id no
record or session could have is simply not found, the answer it always had.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from medchain.contracts.consent.model import PURPOSES
from medchain.contracts.exchange.model import MAX_ACCESS_RECORDS
from medchain.contracts.exchange.proof import purpose_of_use
from medchain.contracts.exchange.smart import FORMS, MAX_STATEMENT_BYTES
from medchain.contracts.payload import Payload

Purpose = Annotated[
    str,
    msgspec.Meta(
        description="FHIR PurposeOfUse",
        extra_json_schema={"enum": sorted(PURPOSES)},
    ),
]


class RequestPayload(Payload, frozen=True, kw_only=True):
    """exchange.request: ask for a record, for a purpose of use."""

    record_id: str
    purpose: Purpose

    def __post_init__(self) -> None:
        """A purpose the consent policy knows."""
        if self.purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {sorted(PURPOSES)}")


class ReleasePayload(Payload, frozen=True, kw_only=True):
    """exchange.release: the custodian re-wrapped the record's key for the requester."""

    session_id: str


class AckPayload(Payload, frozen=True, kw_only=True):
    """exchange.ack: the salted SM3 of what the requester decrypted. Any byte string
    is accepted: one that does not match (whatever its length) marks the session
    disputed, which is the requester's way to say what it got was wrong."""

    session_id: str
    content_hash: bytes


class SignedRequestProof(Payload, frozen=True, kw_only=True):
    """A reader's signed request, as the edge received it (see proof.py): the chain
    re-verifies the signature, so the audited purpose is the one the reader gave."""

    suite: str
    public_key: bytes
    method: str
    path: str
    time_ms: int
    body_sm3: bytes
    purpose: str  # the signed X-MedChain-Purpose header, "" if none (read as TREAT)
    signature: bytes


class AccessPayload(Payload, frozen=True, kw_only=True):
    """exchange.access: a custodian records a direct read it is about to serve."""

    request: SignedRequestProof
    record_ids: Annotated[list[str], msgspec.Meta(min_length=1, max_length=MAX_ACCESS_RECORDS)]

    def __post_init__(self) -> None:
        """The purpose the reader signed must be one the consent policy knows."""
        if purpose_of_use(self.request.purpose) not in PURPOSES:
            raise ValueError(f"the signed purpose must be one of {sorted(PURPOSES)}")


class MemberStatementProof(Payload, frozen=True, kw_only=True):
    """A member's signed statement behind a SMART token (see smart.py): a JWT
    assertion's signed header.payload or a signed challenge, with the member's key;
    the chain re-verifies it, so the audited reader and purpose are the member's own."""

    form: str  # "jws" or "cbor"
    suite: str
    public_key: bytes
    signed: Annotated[bytes, msgspec.Meta(max_length=MAX_STATEMENT_BYTES)]
    signature: Annotated[bytes, msgspec.Meta(max_length=512)]

    def __post_init__(self) -> None:
        """A form the contract knows."""
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {list(FORMS)}")


class TokenAccessPayload(Payload, frozen=True, kw_only=True):
    """exchange.token_access: a custodian records a read it is about to serve to a
    SMART bearer token, with the member's statement the token was issued on."""

    statement: MemberStatementProof
    record_ids: Annotated[list[str], msgspec.Meta(min_length=1, max_length=MAX_ACCESS_RECORDS)]
