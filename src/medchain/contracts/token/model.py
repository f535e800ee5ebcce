"""Incentive token: accounts, governed minting rules, supply and contribution.

A capped token rewards organisations for facts the chain already holds: a record
a custodian registered, an exam another hospital recognised, a hospital's share
of a completed federated-learning study. Nobody mints at will: `claim_reward`
names a fact, the chain finds it in state, checks it was never rewarded, applies
the governed amount per basis and the cap, and mints to the organisation.

Accounts are strings: "org:<org id>" for an organisation, a DID ("did:...") for a
member or patient, "escrow:<contract>/<id>" for tokens another contract (htlc)
holds. Amounts are integers in the smallest unit; nothing here is a float.

`contribution` is what an organisation was ever minted: it never falls with
transfers or burns, so governance can weigh votes by it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

NAMESPACE = "token"

RECORD, EXAM, FL = "record", "exam", "fl"
BASES = (RECORD, EXAM, FL)  # what a reward may be claimed for

ORG_PREFIX = "org:"
DID_PREFIX = "did:"
ESCROW_PREFIX = "escrow:"
MAX_ACCOUNT_CHARS = 200  # keeps every balance key well under the state's key limit
MAX_AMOUNT = 2**63 - 1  # any amount, cap or sum fits a signed 64-bit integer

SUPPLY_KEY = f"{NAMESPACE}/supply"
RULES_KEY = f"{NAMESPACE}/rules"
TOTAL_CONTRIBUTION_KEY = f"{NAMESPACE}/total_contribution"

Get = Callable[[str], Any]


class Supply(TypedDict):
    """`token/supply`: every unit ever minted and burned; supply = minted - burned."""

    minted: int
    burned: int


class Rules(TypedDict):
    """`token/rules`: the governed minting rules.

    `cap` bounds the supply (minted - burned) ever in circulation; `amounts` maps a
    basis (record, exam, fl) to the reward per fact, 0 or absent meaning that basis
    is not rewarded. For "fl" the amount is the study's pool, shared by weight.
    """

    cap: int
    amounts: dict[str, int]
    set_by: str
    height: int


class Balance(TypedDict):
    """`token/balance/<account>`: what an account holds."""

    account: str
    amount: int


class Contribution(TypedDict):
    """`token/contribution/<org id>`: all ever minted to an organisation."""

    org_id: str
    amount: int


class Reward(TypedDict):
    """`token/reward/<basis>/<fact id>[/<org id>]`: a fact already rewarded; its
    existence is what refuses a second claim of the same fact."""

    basis: str
    fact_id: str
    org_id: str
    amount: int
    claimed_by: str
    height: int


def org_account(org_id: str) -> str:
    """An organisation's account: "org:<org id>"."""
    return f"{ORG_PREFIX}{org_id}"


def escrow_account(contract: str, item_id: str) -> str:
    """The account a contract (htlc) holds tokens in for one item: "escrow:<c>/<id>"."""
    return f"{ESCROW_PREFIX}{contract}/{item_id}"


def balance_key(account: str) -> str:
    """Where an account's balance lives."""
    return f"{NAMESPACE}/balance/{account}"


def contribution_key(org_id: str) -> str:
    """Where an organisation's lifetime minted total lives."""
    return f"{NAMESPACE}/contribution/{org_id}"


def contribution_prefix() -> str:
    """Every organisation's contribution: scan it to list them."""
    return f"{NAMESPACE}/contribution/"


def reward_key(basis: str, fact_id: str, org_id: str = "") -> str:
    """The key that marks a fact rewarded. A record or exam rewards one organisation,
    so the fact alone is the key; an FL study rewards each hospital once, so its
    key also names the organisation."""
    suffix = f"/{org_id}" if org_id else ""
    return f"{NAMESPACE}/reward/{basis}/{fact_id}{suffix}"


def balance(get: Get, account: str) -> int:
    """What `account` holds; 0 if it never held anything."""
    found = get(balance_key(account))
    return 0 if found is None else int(found["amount"])


def contribution(get: Get, org_id: str) -> int:
    """All tokens ever minted to `org_id`: never falls with transfers or burns (the
    governance weight)."""
    found = get(contribution_key(org_id))
    return 0 if found is None else int(found["amount"])


def total_contribution(get: Get) -> int:
    """The sum of every organisation's contribution (equals all ever minted, as
    only organisations are minted to); kept as one counter so no read scans."""
    found = get(TOTAL_CONTRIBUTION_KEY)
    return 0 if found is None else int(found["amount"])


def supply_record(get: Get) -> Supply:
    """Minted and burned totals (zero before the first mint)."""
    found = get(SUPPLY_KEY)
    if found is None:
        return Supply(minted=0, burned=0)
    return Supply(minted=int(found["minted"]), burned=int(found["burned"]))


def supply(get: Get) -> int:
    """Tokens in circulation: minted - burned."""
    record = supply_record(get)
    return record["minted"] - record["burned"]


def rules(get: Get) -> Rules | None:
    """The governed minting rules, or None before any were set (then nothing mints)."""
    found = get(RULES_KEY)
    if found is None:
        return None
    return Rules(
        cap=int(found["cap"]),
        amounts={str(k): int(v) for k, v in found["amounts"].items()},
        set_by=str(found["set_by"]),
        height=int(found["height"]),
    )


def account_problem(account: str) -> str | None:
    """None if `account` is a well-formed account name; else what is wrong with it."""
    if not account or len(account) > MAX_ACCOUNT_CHARS:
        return f"an account name is 1 to {MAX_ACCOUNT_CHARS} characters"
    if not account.startswith((ORG_PREFIX, DID_PREFIX, ESCROW_PREFIX)):
        return "an account is org:<org id>, a DID (did:...) or escrow:<contract>/<id>"
    if account in (ORG_PREFIX, DID_PREFIX, ESCROW_PREFIX):
        return "an account name needs an identifier after its prefix"
    if any(c.isspace() or ord(c) < 0x20 for c in account):
        return "an account name has no spaces or control characters"
    return None


def fl_shares(pool: int, weights: dict[str, int]) -> dict[str, int]:
    """Split `pool` among organisations in proportion to their integer weights,
    in integers: each gets floor(pool * w / total), and the units left over go one
    each to the largest remainders (ties by org id), so the shares sum to `pool`
    exactly whenever the total weight is positive."""
    total = sum(w for w in weights.values() if w > 0)
    if total <= 0 or pool <= 0:
        return {org: 0 for org in weights}
    shares = {org: pool * max(w, 0) // total for org, w in weights.items()}
    left = pool - sum(shares.values())
    by_remainder = sorted(weights, key=lambda org: (-(pool * max(weights[org], 0) % total), org))
    for org in by_remainder[:left]:
        shares[org] += 1
    return shares
