"""Whether the consortium admin may still change consortium-wide settings directly.

A genesis chooses: "admin" (development, the demo: the admin acts alone) or
"vote" (a deployment: only an accepted governance proposal changes them). This
module imports no other contract, so identity, consent and token can ask it
without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medchain.core.genesis import VOTE_GOVERNANCE
from medchain.exceptions import Code, InvalidTransaction

# Where core writes the genesis params (core.execution.PARAMS_KEY, which a contract
# does not import: it sees state through its Context; a test keeps the two equal).
CHAIN_PARAMS_KEY = "chain/params"


def governed_by_vote(get: Callable[[str], Any]) -> bool:
    """Whether the chain's genesis params say `"governance": "vote"`."""
    chain = get(CHAIN_PARAMS_KEY) or {}
    return bool(chain.get("governance") == VOTE_GOVERNANCE)


def require_admin_governance(get: Callable[[str], Any], what: str) -> None:
    """Refuse a consortium admin's direct consortium-wide change on a chain governed
    by vote, saying how to make it instead. Every action the consortium admin alone
    could otherwise take calls this after its own authority check."""
    if governed_by_vote(get):
        raise InvalidTransaction(
            Code.UNAUTHORIZED,
            f"this chain is governed by vote: the consortium admin may not {what} directly; "
            "propose it (governance.propose, `medchain gov propose ...`) for the member "
            "organisations to vote on",
        )
