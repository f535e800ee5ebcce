"""token contract: governed minting rules, reward claims, transfers and burns.

Authority:
  set_rules      a consortium admin or a regulator: the cap and the reward per basis;
                 on a chain governed by vote only an accepted proposal (governance
                 calls apply_rules)
  claim_reward   staff of the beneficiary organisation, for a fact in state that
                 was never rewarded (a registered record, an accepted exam
                 recognition, a completed FL study), within the cap
  transfer       the holder: an organisation's admin for "org:<id>", a member or
                 patient for its own DID
  burn           the same holder

`move` is also called by other contracts (htlc) with their own ctx, to escrow and
release tokens; authority over the sender's account is then the caller's to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

from medchain.contracts.base import ActionHandler, governor_member, signer_member, unauthorized
from medchain.contracts.governance.mode import require_admin_governance
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import Payload
from medchain.contracts.recognition import model as recognition
from medchain.contracts.records import model as records
from medchain.contracts.research import model as research
from medchain.contracts.token import model
from medchain.contracts.token.payloads import (
    BurnPayload,
    ClaimRewardPayload,
    SetRulesPayload,
    TransferPayload,
)
from medchain.core.context import Context
from medchain.exceptions import Code, InvalidTransaction


def _actor(ctx: Context) -> str:
    """Who signed the tx, for events: the DID, or the key id of an unregistered key."""
    return ctx.signer.did or ctx.signer.key_id.hex()


def _check_amount(amount: int) -> None:
    """An amount is a positive integer that fits 64 bits (never a bool or float)."""
    if type(amount) is not int or not 0 < amount <= model.MAX_AMOUNT:
        raise InvalidTransaction(
            Code.INVALID_PAYLOAD, f"amount must be an integer from 1 to {model.MAX_AMOUNT}"
        )


def _check_account(account: str) -> None:
    problem = model.account_problem(account)
    if problem is not None:
        raise InvalidTransaction(Code.INVALID_PAYLOAD, f"{problem}: {account[:80]!r}")


def _set_balance(writer: Context, account: str, amount: int) -> None:
    """Store a balance; an emptied account's key is deleted, so state holds only
    accounts with something in them."""
    if amount == 0:
        writer.delete(model.balance_key(account))
    else:
        writer.put(model.balance_key(account), model.Balance(account=account, amount=amount))


def move(ctx: Context, sender: str, recipient: str, amount: int, reason: str) -> None:
    """Move `amount` from `sender` to `recipient` and emit `token.transferred`.

    The one way tokens change hands: transfer calls it, and so does htlc to lock
    tokens in an escrow account and release them. Supply is unchanged. INVALID_STATE
    if the sender holds less than `amount`. Authority over `sender` is the caller's
    to check."""
    _check_amount(amount)
    _check_account(sender)
    _check_account(recipient)
    if sender == recipient:
        raise InvalidTransaction(Code.INVALID_PAYLOAD, "sender and recipient are the same account")
    writer = replace(ctx, namespace=model.NAMESPACE)
    held = model.balance(writer.get, sender)
    if held < amount:
        raise InvalidTransaction(
            Code.INVALID_STATE,
            f"{sender} holds {held}, less than the {amount} to move; move at most {held}",
        )
    received = model.balance(writer.get, recipient) + amount
    if received > model.MAX_AMOUNT:
        raise InvalidTransaction(Code.INVALID_STATE, f"{recipient} cannot hold more")
    _set_balance(writer, sender, held - amount)
    _set_balance(writer, recipient, received)
    writer.emit(
        "token.transferred",
        sender=sender,
        recipient=recipient,
        amount=str(amount),
        reason=reason[:200],
        actor=_actor(ctx),
    )


def apply_rules(ctx: Context, cap: int, amounts: Mapping[str, int], set_by: str) -> None:
    """Replace the minting rules and emit `token.rules_set`. token.set_rules calls it
    after checking the signer governs; governance may call it when a proposal passes.
    The cap may not fall below the supply, or the chain would hold more than it allows."""
    _check_amount(cap)
    unknown = set(amounts) - set(model.BASES)
    if unknown:
        raise InvalidTransaction(Code.INVALID_PAYLOAD, f"unknown bases {sorted(unknown)}")
    if any(type(v) is not int or not 0 <= v <= model.MAX_AMOUNT for v in amounts.values()):
        raise InvalidTransaction(Code.INVALID_PAYLOAD, "a reward is an integer from 0 up")
    writer = replace(ctx, namespace=model.NAMESPACE)
    current = model.supply(writer.get)
    if cap < current:
        raise InvalidTransaction(
            Code.INVALID_STATE,
            f"the cap {cap} is below the supply {current}; set a cap of at least {current}",
        )
    kept = {basis: amounts.get(basis, 0) for basis in model.BASES}
    writer.put(
        model.RULES_KEY,
        model.Rules(cap=cap, amounts=kept, set_by=set_by, height=ctx.height),
    )
    writer.emit(
        "token.rules_set",
        cap=str(cap),
        **{f"amount_{basis}": str(kept[basis]) for basis in model.BASES},
        actor=set_by,
    )


def mint(ctx: Context, org_id: str, amount: int, basis: str, fact_id: str) -> None:
    """Credit `amount` to an organisation's account, raise its contribution and the
    supply, and emit `token.minted`. Only claim_reward calls it, after the fact and
    the cap were checked; INVALID_STATE if the cap would be passed anyway."""
    _check_amount(amount)
    writer = replace(ctx, namespace=model.NAMESPACE)
    found = model.rules(writer.get)
    cap = 0 if found is None else found["cap"]
    totals = model.supply_record(writer.get)
    room = cap - (totals["minted"] - totals["burned"])
    if amount > room:
        raise InvalidTransaction(
            Code.INVALID_STATE,
            f"minting {amount} would pass the cap of {cap} ({max(room, 0)} left); "
            "governance may raise the cap with token.set_rules",
        )
    account = model.org_account(org_id)
    _set_balance(writer, account, model.balance(writer.get, account) + amount)
    writer.put(
        model.contribution_key(org_id),
        model.Contribution(org_id=org_id, amount=model.contribution(writer.get, org_id) + amount),
    )
    writer.put(
        model.TOTAL_CONTRIBUTION_KEY, {"amount": model.total_contribution(writer.get) + amount}
    )
    writer.put(
        model.SUPPLY_KEY,
        model.Supply(minted=totals["minted"] + amount, burned=totals["burned"]),
    )
    writer.emit(
        "token.minted",
        account=account,
        org_id=org_id,
        amount=str(amount),
        basis=basis,
        fact_id=fact_id,
        actor=_actor(ctx),
    )


def holder_member(ctx: Context, account: str) -> dict[str, Any]:
    """The signer, if it holds `account`: an active org admin of that organisation
    for "org:<id>", the member itself for its DID; else UNAUTHORIZED (escrow accounts
    are moved only by the contract that holds them, never by a signer)."""
    member = signer_member(ctx)
    if account.startswith(model.ORG_PREFIX):
        org_id = account.removeprefix(model.ORG_PREFIX)
        if (
            member["org_id"] == org_id
            and member["status"] == identity.ACTIVE
            and "org_admin" in member["roles"]
        ):
            return member
    elif account == member["did"]:
        return member
    raise unauthorized(f"only the holder of {account} may move its tokens")


class TokenHandler(ActionHandler):
    """The `token` system contract, version 1."""

    namespace = model.NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "set_rules": SetRulesPayload,
        "claim_reward": ClaimRewardPayload,
        "transfer": TransferPayload,
        "burn": BurnPayload,
    }

    def set_rules(self, p: SetRulesPayload, ctx: Context) -> None:
        """The consortium's governors decide what a fact is worth and how many tokens
        may ever circulate: minting follows these rules and nothing else."""
        caller = governor_member(ctx)
        require_admin_governance(ctx.get, "set the token's minting rules")
        amounts = {"record": p.amounts.record, "exam": p.amounts.exam, "fl": p.amounts.fl}
        apply_rules(ctx, p.cap, amounts, caller["did"])

    def claim_reward(self, p: ClaimRewardPayload, ctx: Context) -> None:
        """Mint the governed reward for one fact the chain holds, once per fact.

        The claimant is staff of the rewarded organisation. A fact that is absent and
        one that belongs to another organisation get the same NOT_FOUND, so a claim
        is no oracle on other organisations' records, exams or studies."""
        caller = signer_member(ctx)
        if (
            caller["org_id"] != p.org_id
            or caller["status"] != identity.ACTIVE
            or "patient" in caller["roles"]
        ):
            raise unauthorized(f"only staff of {p.org_id} may claim its rewards")
        org = ctx.get(identity.org_key(p.org_id))
        if org is None or org["status"] != identity.ACTIVE:
            raise InvalidTransaction(
                Code.INVALID_STATE, f"{p.org_id} is not active: it earns no rewards"
            )
        found = model.rules(ctx.get)
        per_fact = 0 if found is None else found["amounts"].get(p.basis, 0)
        if per_fact <= 0:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"no reward rule for {p.basis!r}: governance sets one with token.set_rules",
            )
        if p.basis == model.RECORD:
            reward_key, amount = self._record_fact(p, ctx), per_fact
        elif p.basis == model.EXAM:
            reward_key, amount = self._exam_fact(p, ctx), per_fact
        else:
            reward_key, amount = self._fl_fact(p, ctx, per_fact)
        if ctx.get(reward_key) is not None:
            raise InvalidTransaction(
                Code.ALREADY_EXISTS, f"{p.basis} {p.fact_id} was already rewarded"
            )
        if amount <= 0:
            raise InvalidTransaction(
                Code.INVALID_STATE, f"{p.org_id}'s share of study {p.fact_id} is 0"
            )
        mint(ctx, p.org_id, amount, p.basis, p.fact_id)
        ctx.put(
            reward_key,
            model.Reward(
                basis=p.basis,
                fact_id=p.fact_id,
                org_id=p.org_id,
                amount=amount,
                claimed_by=caller["did"],
                height=ctx.height,
            ),
        )

    def _record_fact(self, p: ClaimRewardPayload, ctx: Context) -> str:
        """A record its custodian registered, still held (not erased) and not a
        correction of an earlier one (a new version is not new data)."""
        record = ctx.get(records.record_key(p.fact_id))
        if record is None or record["custodian"] != p.org_id:
            raise InvalidTransaction(
                Code.NOT_FOUND, f"no record {p.fact_id} registered by {p.org_id}"
            )
        if record["status"] == records.ERASED:
            raise InvalidTransaction(Code.INVALID_STATE, f"record {p.fact_id} was erased")
        if record.get("supersedes") is not None:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"record {p.fact_id} corrects {record['supersedes']}: only the first "
                "version of a record is rewarded",
            )
        return model.reward_key(model.RECORD, p.fact_id)

    def _exam_fact(self, p: ClaimRewardPayload, ctx: Context) -> str:
        """A recognition decision that accepted an exam the organisation performed.
        The exam record is the fact: however many hospitals accept it, it is
        rewarded once, so two colluding hospitals cannot farm one exam."""
        decision = ctx.get(recognition.decision_key(p.fact_id))
        if (
            decision is None
            or decision["outcome"] != recognition.ACCEPTED
            or decision["performing_org"] != p.org_id
        ):
            raise InvalidTransaction(
                Code.NOT_FOUND, f"no accepted recognition {p.fact_id} of an exam by {p.org_id}"
            )
        return model.reward_key(model.EXAM, str(decision["record_id"]))

    def _fl_fact(self, p: ClaimRewardPayload, ctx: Context, pool: int) -> tuple[str, int]:
        """A completed study the organisation took part in as a hospital: its share of
        the pool in proportion to the samples x rounds the chain counted for it."""
        study = ctx.get(research.study_key(p.fact_id))
        if study is None or p.org_id not in study["hospitals"]:
            raise InvalidTransaction(
                Code.NOT_FOUND, f"no study {p.fact_id} with {p.org_id} as a hospital"
            )
        if study["status"] != research.COMPLETED:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"study {p.fact_id} is {study['status']}: rewards follow its contributions",
            )
        weights: dict[str, int] = {}
        for org in study["hospitals"]:
            share = cast(
                research.Contribution | None, ctx.get(research.contribution_key(p.fact_id, org))
            )
            weights[org] = 0 if share is None else int(share["samples_x_rounds"])
        amount = model.fl_shares(pool, weights)[p.org_id]
        return model.reward_key(model.FL, p.fact_id, p.org_id), amount

    def transfer(self, p: TransferPayload, ctx: Context) -> None:
        """The holder moves tokens to another account: an organisation, a member, a
        patient. An organisation must exist (a typo would strand the tokens); a DID
        need not yet (it is derived from a key, and may hold before it signs)."""
        holder_member(ctx, p.sender)
        if p.recipient.startswith(model.ORG_PREFIX):
            org_id = p.recipient.removeprefix(model.ORG_PREFIX)
            if ctx.get(identity.org_key(org_id)) is None:
                raise InvalidTransaction(
                    Code.NOT_FOUND, f"no organisation {org_id!r}: check the recipient"
                )
        move(ctx, p.sender, p.recipient, p.amount, p.memo)

    def burn(self, p: BurnPayload, ctx: Context) -> None:
        """The holder destroys tokens: the supply falls, room under the cap returns;
        the organisation's contribution (its vote weight) does not fall."""
        caller = holder_member(ctx, p.account)
        held = model.balance(ctx.get, p.account)
        if held < p.amount:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"{p.account} holds {held}, less than the {p.amount} to burn; burn at most {held}",
            )
        _set_balance(ctx, p.account, held - p.amount)
        totals = model.supply_record(ctx.get)
        ctx.put(
            model.SUPPLY_KEY,
            model.Supply(minted=totals["minted"], burned=totals["burned"] + p.amount),
        )
        ctx.emit(
            "token.burned",
            account=p.account,
            amount=str(p.amount),
            reason=p.memo,
            actor=caller["did"],
        )
