"""Incentive token (issue 19 point 2): minting only by governed rules for facts the
chain holds (a registered record, an accepted exam recognition, a completed FL
study), once per fact and under the cap; transfers and burns by the holder only;
and a supply that always equals the mint events minus the burn events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.ledger import Ledger, did_of
from test_models_registry import complete_study
from test_research import STUDY, build_world

from medchain import crypto, encoding
from medchain.contracts.token import model as tm
from medchain.exceptions import Code

DAY_MS = 86_400_000
CT_HEAD = "http://loinc.org|24725-4"


def token(ledger: Ledger, key: crypto.KeyPair, action: str, payload: dict[str, Any]) -> Any:
    return ledger.run(key, action, payload, "token")


def claim(ledger: Ledger, key: crypto.KeyPair, basis: str, fact: str, org: str) -> Any:
    return token(ledger, key, "claim_reward", {"basis": basis, "fact_id": fact, "org_id": org})


def set_rules(ledger: Ledger, cap: int, record: int = 10, exam: int = 50, fl: int = 900) -> Any:
    payload = {"cap": cap, "amounts": {"record": record, "exam": exam, "fl": fl}}
    return token(ledger, ledger.admin, "set_rules", payload)


def state_of(ledger: Ledger) -> Any:
    return lambda key: ledger.state(key)


def balances(ledger: Ledger) -> dict[str, int]:
    return {
        encoding.decode(v)["account"]: encoding.decode(v)["amount"]
        for _, v in ledger.app.db.scan("token/balance/", 100_000)
    }


def event_sums(ledger: Ledger) -> tuple[int, int]:
    """Sum of token.minted and token.burned amounts over every committed block."""
    minted = burned = 0
    for height in range(1, ledger.app.db.height + 1):
        for result in ledger.app.db.block_results(height):
            for found in result.events:
                attributes = dict(found.attributes)
                if found.type == "token.minted":
                    minted += int(attributes["amount"])
                elif found.type == "token.burned":
                    burned += int(attributes["amount"])
    return minted, burned


def recognised_exam(ledger: Ledger, k: dict[str, Any]) -> str:
    """hosp-a performs a CT that a doctor of hosp-b accepts; the decision's id."""
    inspector, admin_reg, doctor_b = (crypto.generate_keypair() for _ in range(3))
    ledger.add_org("nhc", admin_reg, "regulator")
    ledger.add_staff(admin_reg, "nhc", inspector, ["regulator"])
    ledger.add_staff(k["admin_b"], "hosp-b", doctor_b, ["doctor"])
    k["inspector"], k["doctor_b"] = inspector, doctor_b
    now = ledger.app.db.block_time_ms()
    rule = {"exam_code": CT_HEAD, "max_age_days": 30, "min_level": "3B"}
    assert ledger.run(inspector, "set_rule", rule, "recognition").code == Code.OK
    accreditation = {"org_id": "hosp-a", "level": "3A", "expires_ms": now + 365 * DAY_MS}
    assert ledger.run(inspector, "accredit", accreditation, "recognition").code == Code.OK
    exam = {
        "record_id": "ct-p1",
        "patient": did_of(k["p1"]),
        "resource_type": "ImagingStudy",
        "cid": "b" + "e" * 58,
        "content_hash": bytes(32),
        "exam_code": CT_HEAD,
        "performed_ms": now - DAY_MS,
    }
    assert ledger.run(k["admin_a"], "register", exam, "records").code == Code.OK
    grant = {
        "patient": did_of(k["p1"]),
        "grantee_kind": "did",
        "grantee": did_of(doctor_b),
        "purposes": ["TREAT"],
        "scope_types": ["ImagingStudy"],
        "expires_ms": now + DAY_MS,
    }
    assert ledger.run(k["p1"], "grant", grant, "consent").code == Code.OK
    accepted = ledger.run(doctor_b, "accept", {"record_id": "ct-p1"}, "recognition")
    assert accepted.code == Code.OK, accepted.log
    return dict(accepted.events[0].attributes)["decision_id"]


@pytest.fixture
def world(ledger: Ledger) -> dict[str, Any]:
    return build_world(ledger)


def test_nothing_mints_before_governance_sets_rules(ledger: Ledger, world: Any) -> None:
    r = claim(ledger, world["admin_a"], "record", "obs-p1-hosp-a", "hosp-a")
    assert r.code == Code.INVALID_STATE and "token.set_rules" in r.log
    assert tm.supply(state_of(ledger)) == 0


def test_only_a_governor_sets_the_rules(ledger: Ledger, world: Any) -> None:
    payload = {"cap": 1000, "amounts": {"record": 10}}
    assert token(ledger, world["admin_a"], "set_rules", payload).code == Code.UNAUTHORIZED
    assert token(ledger, world["p1"], "set_rules", payload).code == Code.UNAUTHORIZED
    assert token(ledger, ledger.admin, "set_rules", payload).code == Code.OK
    rules = tm.rules(state_of(ledger))
    assert rules is not None
    assert rules["cap"] == 1000 and rules["amounts"] == {"record": 10, "exam": 0, "fl": 0}


@pytest.mark.parametrize(
    "payload",
    [
        {"cap": 0, "amounts": {}},
        {"cap": 100, "amounts": {"record": -1}},
        {"cap": 100, "amounts": {"gift": 5}},
        {"cap": 2**63, "amounts": {}},
    ],
)
def test_rules_are_integers_in_range(ledger: Ledger, payload: dict[str, Any]) -> None:
    """(A float never reaches a contract: canonical encoding refuses to sign one.)"""
    assert token(ledger, ledger.admin, "set_rules", payload).code == Code.INVALID_PAYLOAD


def test_a_registered_record_is_rewarded_to_its_custodian_once(ledger: Ledger, world: Any) -> None:
    k = world
    assert set_rules(ledger, cap=1000).code == Code.OK
    r = claim(ledger, k["doctor_a"], "record", "obs-p1-hosp-a", "hosp-a")
    assert r.code == Code.OK, r.log
    minted = [dict(e.attributes) for e in r.events if e.type == "token.minted"]
    assert minted == [
        {
            "account": "org:hosp-a",
            "actor": did_of(k["doctor_a"]),
            "amount": "10",
            "basis": "record",
            "fact_id": "obs-p1-hosp-a",
            "org_id": "hosp-a",
        }
    ]
    get = state_of(ledger)
    assert tm.balance(get, "org:hosp-a") == 10
    assert tm.contribution(get, "hosp-a") == 10 == tm.total_contribution(get) == tm.supply(get)
    again = claim(ledger, k["admin_a"], "record", "obs-p1-hosp-a", "hosp-a")
    assert again.code == Code.ALREADY_EXISTS
    assert tm.supply(state_of(ledger)) == 10


def test_minting_outside_the_rules_is_refused(ledger: Ledger, world: Any) -> None:
    k = world
    assert set_rules(ledger, cap=1000, exam=0).code == Code.OK
    # A fact that is not in state, and one of another organisation, answer alike.
    missing = claim(ledger, k["admin_a"], "record", "no-such-record", "hosp-a")
    others = claim(ledger, k["admin_a"], "record", "obs-p3-hosp-b", "hosp-a")
    assert missing.code == others.code == Code.NOT_FOUND
    # The right fact for another organisation: the claimant is not its staff.
    wrong = claim(ledger, k["admin_a"], "record", "obs-p3-hosp-b", "hosp-b")
    assert wrong.code == Code.UNAUTHORIZED
    assert claim(ledger, k["p1"], "record", "obs-p1-hosp-a", "hosp-a").code == Code.UNAUTHORIZED
    # A basis the rules do not reward.
    r = claim(ledger, k["admin_a"], "exam", "whatever", "hosp-a")
    assert r.code == Code.INVALID_STATE and "no reward rule" in r.log
    # A study that is not completed yet.
    r = claim(ledger, k["admin_a"], "fl", "no-such-study", "hosp-a")
    assert r.code == Code.NOT_FOUND
    # There is no free mint.
    free = ledger.run(k["admin_a"], "mint", {"org_id": "hosp-a", "amount": 5}, "token")
    assert free.code == Code.UNKNOWN_ACTION
    assert tm.supply(state_of(ledger)) == 0


def test_a_correction_or_an_erased_record_earns_nothing(ledger: Ledger, world: Any) -> None:
    k = world
    assert set_rules(ledger, cap=1000).code == Code.OK
    correction = {
        "record_id": "obs-p1-hosp-a",
        "new_record_id": "obs-p1-hosp-a-v2",
        "resource_type": "Observation",
        "cid": "b" + "f" * 58,
        "content_hash": bytes(32),
    }
    r = ledger.run(k["admin_a"], "supersede", correction, "records")
    assert r.code == Code.OK, r.log
    r = claim(ledger, k["admin_a"], "record", "obs-p1-hosp-a-v2", "hosp-a")
    assert r.code == Code.INVALID_STATE and "first version" in r.log
    erase = {"record_id": "obs-p2-hosp-a", "reason": "patient asked"}
    assert ledger.run(k["admin_a"], "erase", erase, "records").code == Code.OK
    r = claim(ledger, k["admin_a"], "record", "obs-p2-hosp-a", "hosp-a")
    assert r.code == Code.INVALID_STATE and "erased" in r.log
    assert tm.supply(state_of(ledger)) == 0


def test_the_cap_bounds_the_supply_and_burning_makes_room(ledger: Ledger, world: Any) -> None:
    k = world
    assert set_rules(ledger, cap=25).code == Code.OK
    assert claim(ledger, k["admin_a"], "record", "obs-p1-hosp-a", "hosp-a").code == Code.OK
    assert claim(ledger, k["admin_a"], "record", "obs-p2-hosp-a", "hosp-a").code == Code.OK
    over = claim(ledger, k["admin_a"], "record", "obs-p5-hosp-a", "hosp-a")
    assert over.code == Code.INVALID_STATE and "5 left" in over.log
    assert set_rules(ledger, cap=19).code == Code.INVALID_STATE  # below the supply of 20
    burn = {"account": "org:hosp-a", "amount": 5}
    assert token(ledger, k["admin_a"], "burn", burn).code == Code.OK
    assert claim(ledger, k["admin_a"], "record", "obs-p5-hosp-a", "hosp-a").code == Code.OK
    get = state_of(ledger)
    assert tm.supply(get) == 25 and tm.balance(get, "org:hosp-a") == 25
    assert tm.contribution(get, "hosp-a") == 30  # burns do not lower the vote weight


def test_an_accepted_exam_rewards_the_performing_hospital_once(ledger: Ledger, world: Any) -> None:
    k = world
    decision = recognised_exam(ledger, k)
    assert set_rules(ledger, cap=1000).code == Code.OK
    # The requesting hospital cannot claim the reward of the exam it accepted.
    assert claim(ledger, k["admin_b"], "exam", decision, "hosp-b").code == Code.NOT_FOUND
    r = claim(ledger, k["admin_a"], "exam", decision, "hosp-a")
    assert r.code == Code.OK, r.log
    assert tm.balance(state_of(ledger), "org:hosp-a") == 50
    assert claim(ledger, k["admin_a"], "exam", decision, "hosp-a").code == Code.ALREADY_EXISTS


def test_a_completed_study_rewards_each_hospital_by_its_samples(ledger: Ledger, world: Any) -> None:
    k = world
    assert set_rules(ledger, cap=10_000, fl=900).code == Code.OK
    complete_study(ledger, k)
    # Cohorts of 3, 2 and 1 samples in each of 3 rounds: 450, 300, 150 of 900.
    expected = {"hosp-a": 450, "hosp-b": 300, "hosp-c": 150}
    for org, amount in expected.items():
        r = claim(ledger, k["admin_" + org[-1]], "fl", STUDY, org)
        assert r.code == Code.OK, r.log
        assert tm.balance(state_of(ledger), tm.org_account(org)) == amount
    assert claim(ledger, k["admin_a"], "fl", STUDY, "hosp-a").code == Code.ALREADY_EXISTS
    assert claim(ledger, k["admin_d"], "fl", STUDY, "hosp-d").code == Code.NOT_FOUND
    assert tm.supply(state_of(ledger)) == 900


def test_only_the_holder_moves_or_burns_its_tokens(ledger: Ledger, world: Any) -> None:
    k = world
    assert set_rules(ledger, cap=1000).code == Code.OK
    assert claim(ledger, k["admin_a"], "record", "obs-p1-hosp-a", "hosp-a").code == Code.OK
    p1 = did_of(k["p1"])
    send = {"sender": "org:hosp-a", "recipient": p1, "amount": 4}
    # Staff who are not the org admin, another org's admin, a patient: refused.
    for outsider in (k["doctor_a"], k["admin_b"], k["p1"]):
        assert token(ledger, outsider, "transfer", send).code == Code.UNAUTHORIZED
        burn = {"account": "org:hosp-a", "amount": 1}
        assert token(ledger, outsider, "burn", burn).code == Code.UNAUTHORIZED
    assert token(ledger, k["admin_a"], "transfer", send).code == Code.OK
    # The patient now holds 4 and is the only one who may move them.
    back = {"sender": p1, "recipient": "org:hosp-b", "amount": 3}
    assert token(ledger, k["admin_a"], "transfer", back).code == Code.UNAUTHORIZED
    over = {"sender": p1, "recipient": "org:hosp-b", "amount": 5}
    r = token(ledger, k["p1"], "transfer", over)
    assert r.code == Code.INVALID_STATE and "holds 4" in r.log
    assert token(ledger, k["p1"], "transfer", back).code == Code.OK
    nowhere = {"sender": p1, "recipient": "org:no-such-org", "amount": 1}
    assert token(ledger, k["p1"], "transfer", nowhere).code == Code.NOT_FOUND
    escrow = {"sender": "escrow:htlc/x", "recipient": p1, "amount": 1}
    assert token(ledger, k["p1"], "transfer", escrow).code == Code.INVALID_PAYLOAD
    get = state_of(ledger)
    assert (tm.balance(get, "org:hosp-a"), tm.balance(get, p1), tm.balance(get, "org:hosp-b")) == (
        6,
        1,
        3,
    )
    assert tm.supply(get) == 10


@pytest.mark.parametrize(
    "payload",
    [
        {"sender": "org:hosp-a", "recipient": "org:hosp-b", "amount": 0},
        {"sender": "org:hosp-a", "recipient": "org:hosp-b", "amount": -3},
        {"sender": "org:hosp-a", "recipient": "org:hosp-b", "amount": 2**63},
        {"sender": "org:hosp-a", "recipient": "org:hosp-a", "amount": 1},
        {"sender": "org:hosp-a", "recipient": "bank:x", "amount": 1},
        {"sender": "org:hosp-a", "recipient": "did:x y", "amount": 1},
        {"sender": "org:hosp-a", "recipient": "org:hosp-b", "amount": "1"},
    ],
)
def test_malformed_transfers_are_refused(
    ledger: Ledger, world: Any, payload: dict[str, Any]
) -> None:
    assert token(ledger, world["admin_a"], "transfer", payload).code == Code.INVALID_PAYLOAD


# -- the supply invariant over random operations --------------------------------


class Chain:
    """One ledger for every hypothesis example: facts to claim and the keys that act."""

    def __init__(self, path: Path) -> None:
        self.ledger = Ledger(path, crypto.generate_keypair())
        self.k = build_world(self.ledger)
        self.decision = recognised_exam(self.ledger, self.k)
        complete_study(self.ledger, self.k)
        self.extra = [f"lab-{i:03d}" for i in range(40)]  # so claims keep succeeding
        first = self.ledger.nonce(self.k["admin_c"])
        txs = [
            self.ledger.tx(
                self.k["admin_c"],
                "records",
                "register",
                {
                    "record_id": rid,
                    "patient": did_of(self.k["p4"]),
                    "resource_type": "Observation",
                    "cid": "b" + "a" * 58,
                    "content_hash": bytes(32),
                },
                nonce=first + i,
            )
            for i, rid in enumerate(self.extra)
        ]
        assert all(r.code == Code.OK for r in self.ledger.commit(txs).tx_results)
        assert set_rules(self.ledger, cap=2_000, record=7, exam=30, fl=1_001).code == Code.OK
        self.p1 = did_of(self.k["p1"])
        # basis, fact, beneficiary, claimant, whether the fact is the beneficiary's
        self.facts: list[tuple[str, str, str, str, bool]] = [
            ("record", f"obs-{p}-{org}", org, "admin_" + org[-1], True)
            for p, orgs in (
                ("p1", ("hosp-a", "hosp-b")),
                ("p2", ("hosp-a",)),
                ("p3", ("hosp-b", "hosp-c")),
                ("p4", ("hosp-c",)),
                ("p5", ("hosp-a",)),
            )
            for org in orgs
        ]
        self.facts += [
            ("record", "obs-p1-hosp-a", "hosp-b", "admin_b", False),  # another's record
            ("record", "never-registered", "hosp-a", "admin_a", False),
            ("exam", self.decision, "hosp-a", "admin_a", True),
            ("exam", self.decision, "hosp-b", "admin_b", False),  # the requester, not performer
            *(("fl", STUDY, f"hosp-{o}", f"admin_{o}", o != "d") for o in "abcd"),
            *(("record", rid, "hosp-c", "admin_c", True) for rid in self.extra),
        ]
        self.holders = {
            "org:hosp-a": "admin_a",
            "org:hosp-b": "admin_b",
            "org:hosp-c": "admin_c",
            self.p1: "p1",
        }


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return Chain(tmp_path_factory.mktemp("token") / "chain.db")


def operation(chain: Chain) -> st.SearchStrategy[tuple[str, ...]]:
    accounts = sorted(chain.holders)
    return st.one_of(
        st.tuples(st.just("claim"), st.integers(0, len(chain.facts) - 1)),
        st.tuples(
            st.just("transfer"),
            st.sampled_from(accounts),
            st.sampled_from([*accounts, "org:hosp-d"]),
            st.integers(1, 30),
            st.booleans(),  # signed by the holder, or by a stranger to the account
        ),
        st.tuples(st.just("burn"), st.sampled_from(accounts), st.integers(1, 30), st.booleans()),
        st.tuples(st.just("cap"), st.integers(-5, 40)),  # the new cap: supply + this
    )


def run_step(chain: Chain, step: tuple[Any, ...]) -> None:
    """One operation; its outcome is checked against what state held before it."""
    ledger, k = chain.ledger, chain.k
    get = state_of(ledger)
    kind = step[0]
    if kind == "claim":
        basis, fact, org, claimant, real = chain.facts[step[1]]
        rules = tm.rules(get)
        assert rules is not None
        keyed = {"record": fact, "exam": "ct-p1", "fl": fact}[basis]
        done = ledger.state(tm.reward_key(basis, keyed, org if basis == "fl" else "")) is not None
        before = tm.supply(get)
        r = claim(ledger, k[claimant], basis, fact, org)
        minted = sum(int(dict(e.attributes)["amount"]) for e in r.events)
        if not real:
            assert r.code == Code.NOT_FOUND, r.log
        elif done:
            assert r.code == Code.ALREADY_EXISTS, r.log
        elif r.code != Code.OK:
            assert r.code == Code.INVALID_STATE and "cap" in r.log, r.log
        else:
            assert before + minted <= rules["cap"]
    elif kind == "transfer":
        _, sender, recipient, amount, by_holder = step
        held = tm.balance(get, sender)
        signer = chain.holders[sender] if by_holder else "doctor_a"
        r = token(
            ledger,
            k[signer],
            "transfer",
            {"sender": sender, "recipient": recipient, "amount": amount},
        )
        if sender == recipient:
            assert r.code == Code.INVALID_PAYLOAD
        elif not by_holder:
            assert r.code == Code.UNAUTHORIZED
        else:
            assert r.code == (Code.OK if amount <= held else Code.INVALID_STATE), r.log
    elif kind == "burn":
        _, account, amount, by_holder = step
        held = tm.balance(get, account)
        signer = chain.holders[account] if by_holder else "admin_d"
        r = token(ledger, k[signer], "burn", {"account": account, "amount": amount})
        if not by_holder:
            assert r.code == Code.UNAUTHORIZED
        else:
            assert r.code == (Code.OK if amount <= held else Code.INVALID_STATE), r.log
    else:
        cap = max(1, tm.supply(get) + step[1])
        r = set_rules(ledger, cap=cap, record=7, exam=30, fl=1_001)
        assert r.code == (Code.OK if cap >= tm.supply(get) else Code.INVALID_STATE)
    event(f"{kind}: {Code(r.code).name}")  # --hypothesis-show-statistics: what was exercised


def assert_supply_is_verifiable(ledger: Ledger) -> None:
    get = state_of(ledger)
    minted, burned = event_sums(ledger)
    totals = tm.supply_record(get)
    assert (totals["minted"], totals["burned"]) == (minted, burned)
    assert tm.supply(get) == minted - burned == sum(balances(ledger).values())
    rules = tm.rules(get)
    assert rules is not None and tm.supply(get) <= rules["cap"]
    assert tm.total_contribution(get) == minted
    assert all(v > 0 for v in balances(ledger).values())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_supply_equals_mints_minus_burns_after_every_operation(
    chain: Chain, data: st.DataObject
) -> None:
    steps = data.draw(st.lists(operation(chain), min_size=1, max_size=12))
    for step in steps:
        run_step(chain, step)
        assert_supply_is_verifiable(chain.ledger)


def test_on_a_chain_governed_by_vote_only_a_proposal_sets_the_rules(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "vote.db", crypto.generate_keypair(), governance="vote")  # type: ignore[arg-type]
    r = set_rules(ledger, cap=1000)
    assert r.code == Code.UNAUTHORIZED and "governed by vote" in r.log
    assert tm.rules(state_of(ledger)) is None

