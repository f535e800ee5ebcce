"""token contract: governed minting rules, reward claims, transfers and burns.

Authority:
  set_rules      a consortium admin or a regulator: the cap and the reward per basis
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

from dataclasses import replace

from medchain.contracts.token import model
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
