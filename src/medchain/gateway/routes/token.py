"""Incentive token views: rules, supply, organisations' balances and contributions,
the mint and burn ledger anyone can sum, and one account's balance. Changes go
through signed transactions (token.*); these routes only read committed state and
the node's audit index.

Who may see what (docs/token.md):

- The rules, the supply, every organisation's balance and contribution (its vote
  weight) and the mint and burn events are public: incentives paid to
  organisations, and the supply's audit, are for everyone to check. A burn from a
  member's or patient's account is listed without the account.
- A member's or patient's balance (account = its DID): that DID, its guardian,
  regulators and node operators; an escrow account: regulators and operators.
  Anyone else gets the same 403 whether or not the account holds anything.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from medchain import encoding
from medchain.contracts.token import model as token
from medchain.gateway import policy
from medchain.gateway.auth import SIGNED, SignedCaller
from medchain.gateway.deps import Engine, getter
from medchain.gateway.errors import Forbidden, NotFound

router = APIRouter(prefix="/v1/token", tags=["incentive token"])
public_router = APIRouter(prefix="/v1/token", tags=["incentive token"])

MAX_LIST = 1000
LEDGER_WINDOW = 20_000  # audit rows one ledger page looks at: bounded work per request
SUPPLY_EVENTS = ("token.minted", "token.burned")
ACCOUNT_REFUSED = "a member's balance is for that member (or guardian) and regulators"


def supply_view(get: Any, height: int) -> dict[str, Any]:
    """The supply record, the cap and rules in force, as one consistent answer."""
    totals = token.supply_record(get)
    rules = token.rules(get)
    return {
        "height": height,
        "supply": str(totals["minted"] - totals["burned"]),
        "minted": str(totals["minted"]),
        "burned": str(totals["burned"]),
        "cap": None if rules is None else str(rules["cap"]),
        "total_contribution": str(token.total_contribution(get)),
    }


@public_router.get("/supply", summary="Tokens in circulation, minted and burned, and the cap")
def supply(engine: Engine) -> dict[str, Any]:
    """The state's supply record at the last block; `medchain token audit` compares it
    with the sums of the mint and burn events up to the same height. Amounts are
    decimal strings (integers in the smallest unit, never floats)."""
    db = engine.app.db
    with db.snapshot():
        return supply_view(getter(engine), db.height)


@public_router.get("/rules", summary="The governed minting rules (cap, reward per basis)")
def rules(engine: Engine) -> dict[str, Any]:
    """What a fact is worth and the cap; 404 before governance set any (nothing mints)."""
    found = token.rules(getter(engine))
    if found is None:
        raise NotFound("no token rules yet: nothing mints until token.set_rules")
    return {
        "cap": str(found["cap"]),
        "amounts": {basis: str(found["amounts"].get(basis, 0)) for basis in token.BASES},
        "set_by": found["set_by"],
        "height": found["height"],
    }


@public_router.get(
    "/orgs", summary="Every organisation's balance and contribution (its vote weight)"
)
def organisations(engine: Engine) -> dict[str, Any]:
    """Organisations ever rewarded, by org id: what each holds and was ever minted."""
    db = engine.app.db
    with db.snapshot():
        get = getter(engine)
        rows = []
        for _, raw in db.scan(token.contribution_prefix(), MAX_LIST):
            org_id = encoding.decode_trusted(raw)["org_id"]
            rows.append(
                {
                    "org_id": org_id,
                    "balance": str(token.balance(get, token.org_account(org_id))),
                    "contribution": str(token.contribution(get, org_id)),
                }
            )
        return {
            "height": db.height,
            "orgs": rows,
            "total_contribution": str(token.total_contribution(get)),
        }


@public_router.get("/orgs/{org_id}", summary="One organisation's balance and contribution")
def organisation(org_id: str, engine: Engine) -> dict[str, Any]:
    """Zeros for an organisation never rewarded (a balance is public either way)."""
    get = getter(engine)
    return {
        "org_id": org_id,
        "balance": str(token.balance(get, token.org_account(org_id))),
        "contribution": str(token.contribution(get, org_id)),
    }


@public_router.get(
    "/ledger",
    summary="Mint and burn events in commit order, a window at a time (for the supply audit)",
)
def ledger(
    engine: Engine,
    after: Annotated[int, Query(ge=0, description="audit sequence number to start after")] = 0,
    to_height: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    """The committed token.minted and token.burned events with audit sequence numbers in
    (after, after + window], at heights up to `to_height`. Page with `after=next` until
    `done`. Each page reads a bounded window of the audit index, so a page may be empty
    and still not the last."""
    db = engine.app.db
    with db.snapshot():
        height = db.height if to_height is None else min(to_height, db.height)
        last = db.query("SELECT COALESCE(MAX(seq), 0) FROM audit WHERE height <= ?", (height,))
        last_seq = int(last[0][0])
        upper = min(after + LEDGER_WINDOW, last_seq)
        rows = db.query(
            "SELECT seq, height, tx_id, kind, attributes FROM audit WHERE seq > ? AND seq <= ? "
            "AND code = 0 AND kind IN (?, ?) ORDER BY seq",
            (after, upper, *SUPPLY_EVENTS),
        )
    events = []
    for seq, at, tx_id, kind, raw in rows:
        attributes = encoding.decode_trusted(bytes(raw))
        account = str(attributes.get("account", ""))
        event = {
            "seq": seq,
            "height": at,
            "tx_id": bytes(tx_id).hex(),
            "type": kind,
            "amount": attributes["amount"],
        }
        if account.startswith(token.ORG_PREFIX):
            event["account"] = account
        for name in ("basis", "fact_id", "org_id"):
            if name in attributes:
                event[name] = attributes[name]
        events.append(event)
    return {
        "height": height,
        "after": after,
        "next": upper,
        "done": upper >= last_seq,
        "events": events,
    }


@router.get(
    "/accounts/{account}",
    summary="One account's balance (an organisation's: anyone; a member's: that member)",
    openapi_extra=SIGNED,
)
def account(account: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """A balance of "org:<id>", a DID, or "escrow:<contract>/<id>"; a DID's only to
    itself (or its guardian) and supervisors, the same 403 to anyone else."""
    get = getter(engine)
    if token.account_problem(account) is not None:
        raise NotFound(f"{account[:80]!r} is not an account name")
    if account.startswith(token.ORG_PREFIX):
        allowed = True
    elif account.startswith(token.DID_PREFIX):
        allowed = caller.supervises or policy.speaks_for(caller, get, account)
    else:
        allowed = caller.supervises
    if not allowed:
        raise Forbidden(ACCOUNT_REFUSED)
    return {"account": account, "balance": str(token.balance(get, account))}
