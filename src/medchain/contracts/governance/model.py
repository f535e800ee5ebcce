"""Governance vocabulary, state records, keys, weights and the tally rule.

A proposal names one consortium-wide change (admit or suspend an organisation,
a validator's power, a kind's roles, a role's policy, governance parameters, a
contract version's activation). Member organisations vote through their admin,
each with a weight fixed when the proposal is made: the governed base weight
plus what the organisation contributed (tokens ever minted to it). Fixing the
electorate and its weights at proposal time means nobody can buy weight during
the vote, and the tally is a pure function of the proposal record.

Everything here is an integer: weights, basis points, heights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypedDict, cast, get_args

from medchain.contracts.identity import model as identity
from medchain.contracts.token import model as token
from medchain.exceptions import Code, InvalidTransaction

NAMESPACE = "governance"

Get = Callable[[str], Any]

Choice = Literal["yes", "no", "abstain"]
CHOICES: tuple[str, ...] = get_args(Choice)

# A proposal is OPEN while it is voted on and until someone executes or closes it;
# then EXECUTED (accepted, its change applied) or REJECTED (below quorum or
# threshold: never applied).
OPEN, EXECUTED, REJECTED = "open", "executed", "rejected"

BPS = 10_000  # basis points in a whole
MAX_ORGS = 1_000  # the bounded scan of organisations that makes an electorate
MAX_OPEN_PER_PROPOSER = 5  # proposals a proposer may have in their voting period at once
MAX_PERIOD = 1_000_000  # blocks; a voting period or timelock longer is a typo
MAX_BASE_WEIGHT = 10**12

PARAMS_RECORD_KEY = f"{NAMESPACE}/params"
COUNTER_KEY = f"{NAMESPACE}/counter"
PROPOSAL_PREFIX = f"{NAMESPACE}/proposal/"
ACTIVATION_PREFIX = f"{NAMESPACE}/activation/"


class Params(TypedDict):
    """`governance/params`: the governed parameters (absent: DEFAULT_PARAMS).

    base_weight      every member organisation's weight before its contribution
    quorum_bps       the weight that must vote (yes, no or abstain), in basis
                     points of the electorate's total weight
    threshold_bps    the yes weight must be MORE than this share of the total
    voting_period    blocks a proposal is open for votes
    timelock         blocks between the end of the vote and the earliest execution
    """

    base_weight: int
    quorum_bps: int
    threshold_bps: int
    voting_period: int
    timelock: int
    updated_height: int


# Genesis defaults (changeable by proposal only): half the weight must vote and more
# than half of all weight must say yes; about a minute of voting at a block a second
# on the localnet; a deployment lengthens both by its first proposal.
DEFAULT_PARAMS = Params(
    base_weight=100,
    quorum_bps=5_000,
    threshold_bps=5_000,
    voting_period=20,
    timelock=10,
    updated_height=0,
)


class Tally(TypedDict):
    """The weight behind each choice so far."""

    yes: int
    no: int
    abstain: int


class Proposal(TypedDict):
    """`governance/proposal/<id>`: one proposed change, its electorate and tally.

    `action` is the proposed change as its payload map (kind and fields);
    `electorate` maps each member organisation active at proposal time to its
    weight; `votes` maps each organisation that voted to its current choice.
    """

    proposal_id: int
    kind: str
    action: dict[str, Any]
    description: str
    proposer: str
    proposer_org: str | None
    created_height: int
    end_height: int
    executable_height: int
    params: Params
    electorate: dict[str, int]
    total_weight: int
    votes: dict[str, str]
    tally: Tally
    status: str
    closed_height: int | None
    closed_by: str | None
    outcome: str


class Proposer(TypedDict):
    """`governance/proposer/<org id or DID>`: an organisation's (a consortium admin's)
    proposals still in their voting period (id -> end height), so one organisation
    cannot flood the chain with proposals, however many admins it adds."""

    open: dict[str, int]


class Activation(TypedDict):
    """`governance/activation/<contract>`: the contract version the consortium decided
    to run, from which height, by which proposal."""

    contract: str
    version: int
    from_height: int
    proposal_id: int


def proposal_key(proposal_id: int) -> str:
    """Where a proposal lives; ids count up from 1, zero-padded so keys sort by id."""
    return f"{PROPOSAL_PREFIX}{proposal_id:012d}"


def proposer_key(proposer: str) -> str:
    """Where a proposer's proposals under vote are listed: an organisation's id, or a
    consortium admin's DID (it has no organisation)."""
    return f"{NAMESPACE}/proposer/{proposer}"


def activation_key(contract: str) -> str:
    """Where the decided version of a contract is recorded."""
    return ACTIVATION_PREFIX + contract


def params(get: Get) -> Params:
    """The governance parameters in force (genesis defaults until a proposal changes them)."""
    found = get(PARAMS_RECORD_KEY)
    return DEFAULT_PARAMS if found is None else cast(Params, dict(found))


def weight(get: Get, org_id: str, base_weight: int) -> int:
    """An organisation's voting weight: the governed base plus its contribution
    (tokens ever minted to it, which transfers and burns never lower)."""
    return base_weight + token.contribution(get, org_id)


def electorate(scan: Callable[[str, int], Any], get: Get, base_weight: int) -> dict[str, int]:
    """Every active organisation and its weight, from one bounded scan; refused when
    there are more organisations than one proposal can weigh."""
    rows = list(scan(identity.ORG_PREFIX, MAX_ORGS + 1))
    if len(rows) > MAX_ORGS:
        raise InvalidTransaction(
            Code.INVALID_STATE,
            f"more than {MAX_ORGS} organisations: governance cannot weigh them in one proposal",
        )
    return {
        org["org_id"]: weight(get, org["org_id"], base_weight)
        for _, org in rows
        if org["status"] == identity.ACTIVE
    }


def quorum_met(proposal: Proposal) -> bool:
    """Enough of the electorate's weight voted (yes, no or abstain)."""
    t = proposal["tally"]
    turnout = t["yes"] + t["no"] + t["abstain"]
    return turnout * BPS >= proposal["params"]["quorum_bps"] * proposal["total_weight"]


def threshold_met(proposal: Proposal) -> bool:
    """The yes weight is more than the threshold's share of the electorate's weight."""
    yes = proposal["tally"]["yes"]
    return yes * BPS > proposal["params"]["threshold_bps"] * proposal["total_weight"]


def outcome(proposal: Proposal) -> str:
    """ "accepted", or why not ("below quorum", "below threshold"), on the tally so far."""
    if proposal["total_weight"] == 0 or not quorum_met(proposal):
        return "below quorum"
    if not threshold_met(proposal):
        return "below threshold"
    return "accepted"


def phase(proposal: Proposal, height: int) -> str:
    """Where a proposal stands at `height`, for readers: voting, timelock (accepted,
    waiting), executable, closable (rejected, not yet closed), executed or rejected."""
    if proposal["status"] != OPEN:
        return proposal["status"]
    if height < proposal["end_height"]:
        return "voting"
    if outcome(proposal) != "accepted":
        return "closable"
    return "timelock" if height < proposal["executable_height"] else "executable"
