"""The htlc contract's light client of a CometBFT counterparty, on a real ledger with
a synthetic CometBFT chain (fixed ed25519 keys, support/synthetic_cometbft.py): a
header counts only with more than 2/3 of the followed set's power; a set change is
followed from the header that announces it (carrying the set), and a header of the
old set relayed late is refused, the new set kept; the trusted root's header must be the
registered one; only the last ROOTS_KEPT roots are kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from support.ledger import Ledger
from support.synthetic_cometbft import SyntheticChain, sign, signers

from medchain import crypto
from medchain.contracts.htlc import model as hm
from medchain.core.block import Block
from medchain.crypto import cometbft
from medchain.exceptions import Code

OTHER = "alliance-c"


def plain(value: Any) -> Any:
    return msgspec.to_builtins(value, builtin_types=(bytes,))


def app_hash(height: int) -> bytes:
    return crypto.sm3(height.to_bytes(8, "big"))


@pytest.fixture
def world(tmp_path: Path) -> tuple[Ledger, SyntheticChain, crypto.KeyPair]:
    ledger = Ledger(tmp_path / "chain.db", crypto.generate_keypair())
    relayer = crypto.generate_keypair()
    ledger.add_patient(relayer)
    chain = SyntheticChain(OTHER, signers(10, 10, 10, 10))
    root = chain.header(2, app_hash(1))
    registration = {
        "chain_id": OTHER,
        "engine": "cometbft",
        "validators": [plain(k.validator) for k in chain.keys],
        "height": 2,
        "header_hash": cometbft.header_hash(root),
    }
    assert ledger.run(ledger.admin, "register_counterparty", registration, "htlc").code == Code.OK
    return ledger, chain, relayer


def update(
    ledger: Ledger,
    relayer: crypto.KeyPair,
    header: cometbft.Header,
    commit: cometbft.Commit,
    next_validators: list[cometbft.Validator] | None = None,
) -> Any:
    body: dict[str, Any] = {"header": plain(header), "commit": plain(commit)}
    if next_validators is not None:
        body["next_validators"] = plain(next_validators)
    return ledger.run(relayer, "update_client", {"chain_id": OTHER, "cometbft": body}, "htlc")


def test_more_than_two_thirds_of_the_power_must_sign(world: Any) -> None:
    ledger, chain, relayer = world
    header = chain.header(3, app_hash(2))
    keys = chain.keys_at(3)
    assert update(ledger, relayer, header, sign(OTHER, header, keys, {0, 1})).code == (
        Code.INVALID_PROOF
    )
    assert update(ledger, relayer, header, sign(OTHER, header, keys, forged={3})).code == Code.OK
    root = ledger.state(hm.root_key(OTHER, 2))
    assert root["app_hash"] == app_hash(2)


def test_the_trusted_root_header_must_be_the_registered_one(world: Any) -> None:
    ledger, chain, relayer = world
    other = chain.header(2, app_hash(99))  # same height, another app hash
    refused = update(ledger, relayer, other, sign(OTHER, other, chain.keys_at(2)))
    assert refused.code == Code.INVALID_PROOF and "registered" in refused.log


def test_a_header_between_the_root_and_the_newest_is_not_taken_for_the_root(
    world: Any,
) -> None:
    """The registered header hash binds header `height` (2) only: header 3 relayed
    after header 4 (whose state height, 3, is its number) is an ordinary header."""
    ledger, chain, relayer = world
    h3, h4 = chain.header(3, app_hash(2)), chain.header(4, app_hash(3))
    assert update(ledger, relayer, h4, sign(OTHER, h4, chain.keys)).code == Code.OK
    late = update(ledger, relayer, h3, sign(OTHER, h3, chain.keys))
    assert late.code == Code.OK, late.log
    assert ledger.state(hm.root_key(OTHER, 2))["app_hash"] == app_hash(2)


def test_a_validator_set_change_is_followed_and_not_rolled_back(world: Any) -> None:
    ledger, chain, relayer = world
    new = signers(5, 5, 5, seed=50)
    chain.next_keys[4] = new  # header 4 announces the set that signs header 5
    h3 = chain.header(3, app_hash(2))
    h4 = chain.header(4, app_hash(3))
    h5 = chain.header(5, app_hash(4))
    announcing = sign(OTHER, h4, chain.keys_at(4))
    missing = update(ledger, relayer, h4, announcing)  # without the new set
    assert missing.code == Code.INVALID_PROOF
    new_set = [k.validator for k in new]
    assert update(ledger, relayer, h4, announcing, new_set).code == Code.OK
    assert update(ledger, relayer, h5, sign(OTHER, h5, new)).code == Code.OK
    # Header 3, signed by the old set, relayed late: refused, and the new set stays.
    late = update(ledger, relayer, h3, sign(OTHER, h3, chain.keys_at(3)))
    assert late.code == Code.INVALID_PROOF
    followed = ledger.state(hm.client_key(OTHER))["validators"]
    assert sorted(v["pub_key"] for v in followed) == sorted(v.pub_key for v in new_set)
    # A header 6 signed by the old set is another chain's word now.
    old_signed = chain.header(6, app_hash(5))
    forged = sign(OTHER, old_signed, signers(10, 10, 10, 10))
    assert update(ledger, relayer, old_signed, forged).code == Code.INVALID_PROOF


def test_only_the_last_roots_are_kept(world: Any) -> None:
    ledger, chain, relayer = world
    for height in range(3, 3 + hm.ROOTS_KEPT + 2):
        header = chain.header(height, app_hash(height - 1))
        assert update(ledger, relayer, header, sign(OTHER, header, chain.keys)).code == Code.OK
    client = ledger.state(hm.client_key(OTHER))
    assert len(client["heights"]) == hm.ROOTS_KEPT
    oldest = client["heights"][0]
    assert ledger.state(hm.root_key(OTHER, oldest - 1)) is None
    assert ledger.state(hm.root_key(OTHER, oldest)) is not None
    stale = chain.headers[3]
    late = update(ledger, relayer, stale, sign(OTHER, stale, chain.keys))
    assert late.code == Code.INVALID_STATE  # older than every root kept


def test_a_client_that_slept_past_its_trusting_period_takes_no_header(world: Any) -> None:
    """After TRUSTING_PERIOD_MS of this chain's time without a verified header, the
    followed set may have left: even a header it signs is refused until the
    counterparty is registered again."""
    ledger, chain, relayer = world
    h3, h4 = chain.header(3, app_hash(2)), chain.header(4, app_hash(3))
    assert update(ledger, relayer, h3, sign(OTHER, h3, chain.keys)).code == Code.OK
    db = ledger.app.db
    asleep = Block(  # one empty block a trusting period later
        ledger.chain_id,
        db.height + 1,
        db.block_time_ms() + hm.TRUSTING_PERIOD_MS + 1000,
        (),
        db.last_block_hash,
    )
    ledger.app.commit(ledger.app.finalize_block(asleep))
    late = update(ledger, relayer, h4, sign(OTHER, h4, chain.keys))
    assert late.code == Code.INVALID_PROOF
    assert "expired" in late.log
