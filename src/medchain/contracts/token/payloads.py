"""Typed payloads of the token contract, validated before any state read.

Amounts are integers in the smallest unit (never floats: msgspec refuses a float
where an int is declared); accounts carry their form (org:, did:, escrow:) here,
and whether one exists is the handler's to look up. A fact a reward is claimed
for is named by its id; whether it is in state is the handler's to check.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from medchain.contracts.identity.payloads import OrgId
from medchain.contracts.payload import Payload, whole
from medchain.contracts.token.model import MAX_ACCOUNT_CHARS, MAX_AMOUNT

# org:<org id> or a DID; an escrow account is moved only by the contract holding it.
HOLDER = r"org:[a-z0-9][a-z0-9-]{1,63}|did:[!-~]{3,190}"
FACT_ID = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"

Amount = Annotated[int, msgspec.Meta(ge=1, le=MAX_AMOUNT)]
Holder = Annotated[str, msgspec.Meta(pattern=whole(HOLDER), max_length=MAX_ACCOUNT_CHARS)]
FactId = Annotated[str, msgspec.Meta(pattern=whole(FACT_ID))]
Reason = Annotated[str, msgspec.Meta(max_length=200)]
Basis = Literal["record", "exam", "fl"]


class RuleAmounts(Payload, frozen=True, kw_only=True):
    """The reward per fact of each basis; 0 means that basis is not rewarded. For
    "fl" it is the pool of one completed study, shared by the hospitals' samples."""

    record: Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT)] = 0
    exam: Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT)] = 0
    fl: Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT)] = 0


class SetRulesPayload(Payload, frozen=True, kw_only=True):
    """token.set_rules: the cap on the supply and the reward per basis (replaces the
    rules in force; the cap may not fall below the supply already minted)."""

    cap: Amount
    amounts: RuleAmounts


class ClaimRewardPayload(Payload, frozen=True, kw_only=True):
    """token.claim_reward: mint the governed reward for one fact to `org_id`.

    record: a record id its custodian registered; exam: the id of a recognition
    decision that accepted the exam (the performing organisation is rewarded, once
    per exam record); fl: a completed study's id (each hospital, by its share)."""

    basis: Basis
    fact_id: FactId
    org_id: OrgId


class TransferPayload(Payload, frozen=True, kw_only=True):
    """token.transfer: move `amount` from the holder's account `sender` to `recipient`."""

    sender: Holder
    recipient: Holder
    amount: Amount
    memo: Reason = ""

    def __post_init__(self) -> None:
        """A transfer to oneself would change nothing but the event log."""
        if self.sender == self.recipient:
            raise ValueError("sender and recipient must differ")


class BurnPayload(Payload, frozen=True, kw_only=True):
    """token.burn: destroy `amount` of the holder's account: the supply falls by it."""

    account: Holder
    amount: Amount
    memo: Reason = ""
