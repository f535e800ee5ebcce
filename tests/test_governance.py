"""Governance by weighted vote (issue 19, point 1) on a real ledger whose genesis says
`"governance": "vote"`: the consortium admin alone cannot change consortium-wide
settings; an accepted proposal executes only after its timelock, through the same
functions as the direct actions; a proposal below quorum or threshold is rejected
and never applied; an organisation's weight grows with its token contribution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.ledger import CHAIN_ID, Ledger, did_of

from medchain import crypto
from medchain.consensus.application import Application
from medchain.contracts.governance import mode
from medchain.contracts.governance import model as gm
from medchain.contracts.htlc import model as hm
from medchain.contracts.identity import model as im
from medchain.contracts.token import model as tm
from medchain.core.block import TxResult
from medchain.core.execution import PARAMS_KEY
from medchain.core.genesis import parse_genesis
from medchain.exceptions import Code
from medchain.storage.chain_db import ChainDB

ORGS = ("hosp-a", "hosp-b", "hosp-c", "hosp-d")
VALIDATOR = bytes(range(32))


class VotingLedger(Ledger):
    """A Ledger whose genesis founds four hospitals and is governed by vote."""

    def __init__(self, path: Path, admin: crypto.KeyPair, org_admins: dict[str, Any]) -> None:
        self.admin = admin
        self.chain_id = CHAIN_ID
        key = {"name": "root", "suite": admin.suite, "public_key": admin.public.hex()}
        orgs = [
            {
                "org_id": org,
                "name": org,
                "org_type": "hospital",
                "admin": {"name": org, "suite": k.suite, "public_key": k.public.hex()},
            }
            for org, k in org_admins.items()
        ]
        self.genesis = parse_genesis(
            {
                "chain_id": CHAIN_ID,
                "genesis_time_ms": 1_700_000_000_000,
                "consortium_admins": [key],
                "orgs": orgs,
                "params": {"governance": "vote"},
            }
        )
        self.app = Application(ChainDB(path))
        self.app.init_chain(self.genesis)


@pytest.fixture
def admins() -> dict[str, crypto.KeyPair]:
    return {org: crypto.generate_keypair() for org in ORGS}


@pytest.fixture
def chain(tmp_path: Path, admins: dict[str, crypto.KeyPair]) -> VotingLedger:
    return VotingLedger(tmp_path / "chain.db", crypto.generate_keypair(), admins)


def gov(chain: Ledger, key: crypto.KeyPair, action: str, payload: dict[str, Any]) -> TxResult:
    return chain.run(key, action, payload, "governance")


def propose(chain: Ledger, key: crypto.KeyPair, action: dict[str, Any]) -> int:
    r = gov(chain, key, "propose", {"action": action, "description": "test"})
    assert r.code == Code.OK, r.log
    return int(dict(r.events[0].attributes)["proposal_id"])


def vote(chain: Ledger, key: crypto.KeyPair, pid: int, choice: str) -> TxResult:
    return gov(chain, key, "vote", {"proposal_id": pid, "choice": choice})


def proposal(chain: Ledger, pid: int) -> gm.Proposal:
    found = chain.state(gm.proposal_key(pid))
    assert found is not None
    return found  # type: ignore[no-any-return]


def until(chain: Ledger, height: int) -> None:
    """Commit empty blocks until the next block is `height`."""
    while chain.app.db.height + 1 < height:
        chain.commit([])


def add_validator(power: int = 1) -> dict[str, Any]:
    return {"kind": "set_validator", "pub_key": VALIDATOR, "power": power, "name": "node4"}


def test_the_mode_is_read_where_genesis_writes_it(chain: VotingLedger) -> None:
    assert mode.CHAIN_PARAMS_KEY == PARAMS_KEY
    assert chain.state(PARAMS_KEY)["governance"] == "vote"
    assert mode.governed_by_vote(chain.state)


def test_the_admin_alone_cannot_change_consortium_settings(
    chain: VotingLedger, admins: dict[str, crypto.KeyPair]
) -> None:
    newcomer = crypto.generate_keypair()
    attempts = [
        ("identity", "set_validator", {"pub_key": VALIDATOR, "power": 1}),
        (
            "identity",
            "register_org",
            {"org_id": "hosp-e", "name": "E", "org_type": "hospital", "admin_public_key": b""},
        ),
        ("identity", "set_org_roles", {"org_type": "lab", "roles": ["org_admin"]}),
        ("consent", "set_role_policy", {"role": "nurse", "resource_types": ["Observation"]}),
    ]
    attempts[1][2]["admin_public_key"] = newcomer.public
    for contract, action, payload in attempts:
        r = chain.run(chain.admin, action, payload, contract)
        assert r.code == Code.UNAUTHORIZED, (action, r.log)
        assert "governed by vote" in r.log and "propose" in r.log
    staff = crypto.generate_keypair()
    add = {"org_id": "hosp-a", "public_key": staff.public, "roles": ["doctor"]}
    assert chain.run(chain.admin, "add_member", add).code == Code.UNAUTHORIZED
    assert chain.run(admins["hosp-a"], "add_member", add).code == Code.OK  # its own staff: yes
    assert chain.state(im.validator_key(VALIDATOR)) is None
    assert chain.state(im.org_key("hosp-e")) is None


def test_a_validator_added_by_vote_executes_only_after_the_timelock(
    chain: VotingLedger, admins: dict[str, crypto.KeyPair]
) -> None:
    pid = propose(chain, chain.admin, add_validator())
    p = proposal(chain, pid)
    assert p["electorate"] == dict.fromkeys(ORGS, 100) and p["total_weight"] == 400
    assert p["end_height"] == p["created_height"] + 20 == p["executable_height"] - 10
    for org in ("hosp-a", "hosp-b", "hosp-c"):
        assert vote(chain, admins[org], pid, "yes").code == Code.OK
    early = gov(chain, admins["hosp-d"], "execute", {"proposal_id": pid})
    assert early.code == Code.INVALID_STATE and "still under vote" in early.log
    until(chain, p["end_height"])
    late_vote = vote(chain, admins["hosp-d"], pid, "no")
    assert late_vote.code == Code.INVALID_STATE and "ended" in late_vote.log
    locked = gov(chain, admins["hosp-d"], "execute", {"proposal_id": pid})
    assert locked.code == Code.INVALID_STATE
    assert f"timelock runs until height {p['executable_height']}" in locked.log
    assert chain.state(im.validator_key(VALIDATOR)) is None
    until(chain, p["executable_height"] - 1)
    assert gov(chain, admins["hosp-d"], "execute", {"proposal_id": pid}).code == Code.INVALID_STATE
    done = gov(chain, admins["hosp-d"], "execute", {"proposal_id": pid})
    assert done.code == Code.OK, done.log
    types = [e.type for e in done.events]
    assert types == [im.VALIDATOR_EVENT, "governance.executed"]
    assert dict(done.events[0].attributes) == {"pub_key": VALIDATOR.hex(), "power": "1"}
    executed = dict(done.events[1].attributes)
    assert executed["yes"] == "300" and executed["actor"] == did_of(admins["hosp-d"])
    assert chain.state(im.validator_key(VALIDATOR))["power"] == 1
    assert proposal(chain, pid)["status"] == gm.EXECUTED
    again = gov(chain, admins["hosp-a"], "execute", {"proposal_id": pid})
    assert again.code == Code.INVALID_STATE and "already executed" in again.log


def test_a_proposal_below_quorum_is_rejected_and_never_applied(
    chain: VotingLedger, admins: dict[str, crypto.KeyPair]
) -> None:
    pid = propose(chain, admins["hosp-a"], add_validator())
    assert vote(chain, admins["hosp-a"], pid, "yes").code == Code.OK  # 100 of 400: no quorum
    until(chain, proposal(chain, pid)["executable_height"])
    closed = gov(chain, admins["hosp-b"], "execute", {"proposal_id": pid})
    assert closed.code == Code.OK, closed.log
    assert [e.type for e in closed.events] == ["governance.rejected"]
    assert dict(closed.events[0].attributes)["outcome"] == "below quorum"
    assert proposal(chain, pid)["status"] == gm.REJECTED
    assert chain.state(im.validator_key(VALIDATOR)) is None


def test_a_quorum_without_enough_yes_is_rejected(
    chain: VotingLedger, admins: dict[str, crypto.KeyPair]
) -> None:
    pid = propose(chain, admins["hosp-a"], add_validator())
    for org, choice in (("hosp-a", "yes"), ("hosp-b", "yes"), ("hosp-c", "no")):
        assert vote(chain, admins[org], pid, choice).code == Code.OK
    assert vote(chain, admins["hosp-b"], pid, "abstain").code == Code.OK  # changed its mind
    assert proposal(chain, pid)["tally"] == {"yes": 100, "no": 100, "abstain": 100}
    until(chain, proposal(chain, pid)["end_height"])
    closed = gov(chain, admins["hosp-b"], "execute", {"proposal_id": pid})
    assert dict(closed.events[0].attributes)["outcome"] == "below threshold"
    assert chain.state(im.validator_key(VALIDATOR)) is None


def test_who_may_propose_and_vote(
    chain: VotingLedger, admins: dict[str, crypto.KeyPair], tmp_path: Path
) -> None:
    doctor, patient = crypto.generate_keypair(), crypto.generate_keypair()
    add = {"org_id": "hosp-a", "public_key": doctor.public, "roles": ["doctor"]}
    assert chain.run(admins["hosp-a"], "add_member", add).code == Code.OK
    chain.add_patient(patient)
    for stranger in (doctor, patient):
        r = gov(chain, stranger, "propose", {"action": add_validator()})
        assert r.code == Code.UNAUTHORIZED
    pid = propose(chain, admins["hosp-b"], add_validator())
    for stranger in (doctor, patient, chain.admin):
        assert vote(chain, stranger, pid, "yes").code == Code.UNAUTHORIZED
    assert vote(chain, admins["hosp-a"], pid + 1, "yes").code == Code.NOT_FOUND


def test_one_proposer_cannot_flood_the_chain(
    chain: VotingLedger, admins: dict[str, crypto.KeyPair]
) -> None:
    for power in range(1, gm.MAX_OPEN_PER_PROPOSER + 1):
        propose(chain, admins["hosp-a"], add_validator(power))
    r = gov(chain, admins["hosp-a"], "propose", {"action": add_validator(9)})
    assert r.code == Code.INVALID_STATE and "under vote" in r.log
    propose(chain, admins["hosp-b"], add_validator(9))  # others are not blocked
    until(chain, proposal(chain, 1)["end_height"] + 1)
    propose(chain, admins["hosp-a"], add_validator(9))  # nor the proposer, once they end


def test_an_organisation_cannot_flood_by_adding_admins(
    chain: VotingLedger, admins: dict[str, crypto.KeyPair]
) -> None:
    """The open-proposal limit is per organisation: an org admin who adds more org
    admins does not multiply its organisation's proposals under vote."""
    for power in range(1, gm.MAX_OPEN_PER_PROPOSER + 1):
        propose(chain, admins["hosp-a"], add_validator(power))
    second = crypto.generate_keypair()
    add = {"org_id": "hosp-a", "public_key": second.public, "roles": ["org_admin"]}
    assert chain.run(admins["hosp-a"], "add_member", add).code == Code.OK
    r = gov(chain, second, "propose", {"action": add_validator(9)})
    assert r.code == Code.INVALID_STATE and "under vote" in r.log


def test_an_organisation_admitted_and_suspended_by_vote(
    chain: VotingLedger, admins: dict[str, crypto.KeyPair]
) -> None:
    newcomer = crypto.generate_keypair()
    admit = {
        "kind": "admit_org",
        "org_id": "lab-e",
        "name": "Lab E",
        "org_type": "lab",
        "admin_public_key": newcomer.public,
    }
    pass_proposal(chain, admins, admit)
    assert chain.state(im.org_key("lab-e"))["status"] == im.ACTIVE
    pid = propose(chain, newcomer, add_validator())  # a member now: it may propose
    assert "lab-e" not in proposal(chain, pid - 1)["electorate"]
    assert proposal(chain, pid)["electorate"]["lab-e"] == 100
    pass_proposal(
        chain, admins, {"kind": "set_org_status", "org_id": "lab-e", "status": "suspended"}
    )
    r = vote(chain, newcomer, pid, "yes")
    assert r.code == Code.SIGNER_INACTIVE and "lab-e is suspended" in r.log


def pass_proposal(
    chain: Ledger, admins: dict[str, crypto.KeyPair], action: dict[str, Any]
) -> TxResult:
    """Propose, have every founding hospital vote yes, wait out vote and timelock, execute."""
    pid = propose(chain, admins["hosp-a"], action)
    for org in ORGS:
        assert vote(chain, admins[org], pid, "yes").code == Code.OK
    until(chain, proposal(chain, pid)["executable_height"])
    done = gov(chain, admins["hosp-a"], "execute", {"proposal_id": pid})
    assert done.code == Code.OK, done.log
    return done


def test_a_threshold_no_vote_can_meet_is_refused(
    chain: VotingLedger, admins: dict[str, crypto.KeyPair]
) -> None:
    """threshold_bps 10000 would need yes > all the weight: nothing, not even a proposal
    to lower it, could pass again, and on a vote chain nobody else may act."""
    change = {"kind": "set_params", "threshold_bps": gm.BPS}
    r = gov(chain, admins["hosp-a"], "propose", {"action": change})
    assert r.code == Code.INVALID_PAYLOAD and "threshold_bps" in r.log
    propose(chain, admins["hosp-a"], {"kind": "set_params", "threshold_bps": gm.BPS - 1})


def test_a_counterparty_chain_is_registered_only_by_vote(
    chain: VotingLedger, admins: dict[str, crypto.KeyPair]
) -> None:
    """Which chain's states this chain trusts (the htlc light client's root) is a
    consortium-wide decision: the admin alone may not register or replace one."""
    node = crypto.generate_keypair()
    follow = {
        "chain_id": "alliance-b",
        "engine": "solo",
        "suite": node.suite,
        "public_key": node.public,
    }
    r = chain.run(chain.admin, "register_counterparty", follow, "htlc")
    assert r.code == Code.UNAUTHORIZED and "governed by vote" in r.log
    assert chain.state(hm.client_key("alliance-b")) is None
    pass_proposal(chain, admins, {"kind": "register_counterparty", **follow})
    client = chain.state(hm.client_key("alliance-b"))
    assert client["public_key"] == node.public
    assert client["registered_by"] == f"governance/proposal/{chain.state(gm.COUNTER_KEY)}"


def test_parameters_roles_policy_and_activation_change_by_vote(
    chain: VotingLedger, admins: dict[str, crypto.KeyPair]
) -> None:
    pass_proposal(chain, admins, {"kind": "set_params", "voting_period": 5, "timelock": 2})
    assert gm.params(chain.state)["voting_period"] == 5
    pid = propose(chain, admins["hosp-a"], {"kind": "set_org_roles", "org_type": "lab",
                                             "roles": ["org_admin", "device"]})  # fmt: skip
    assert proposal(chain, pid)["end_height"] == proposal(chain, pid)["created_height"] + 5
    for org in ORGS:
        vote(chain, admins[org], pid, "yes")
    until(chain, proposal(chain, pid)["executable_height"])
    assert gov(chain, admins["hosp-c"], "execute", {"proposal_id": pid}).code == Code.OK
    assert chain.state(im.org_roles_key("lab"))["roles"] == ["device", "org_admin"]
    policy = {"kind": "set_role_policy", "role": "nurse", "resource_types": ["Observation"]}
    done = pass_proposal(chain, admins, policy)
    assert dict(done.events[0].attributes)["actor"].startswith("governance/proposal/")
    pass_proposal(chain, admins, {"kind": "activate_contract", "contract": "records",
                                  "version": 2})  # fmt: skip
    activation = chain.state(gm.activation_key("records"))
    assert activation["version"] == 2 and activation["from_height"] == chain.app.db.height


def test_weight_grows_with_token_contribution(
    chain: VotingLedger, admins: dict[str, crypto.KeyPair]
) -> None:
    """hosp-a earns 250 tokens for a registered record (weight 350 of 650): its yes
    alone outweighs three hospitals' no; hosp-b's yes against the rest does not."""
    rules = {"kind": "set_token_rules", "cap": 10_000, "amounts": {"record": 250}}
    pass_proposal(chain, admins, rules)
    patient = crypto.generate_keypair()
    chain.add_patient(patient)
    record = {
        "record_id": "obs-1",
        "patient": did_of(patient),
        "resource_type": "Observation",
        "cid": "b" + "a" * 58,
        "content_hash": bytes(32),
    }
    assert chain.run(admins["hosp-a"], "register", record, "records").code == Code.OK
    reward = {"basis": "record", "fact_id": "obs-1", "org_id": "hosp-a"}
    claimed = chain.run(admins["hosp-a"], "claim_reward", reward, "token")
    assert claimed.code == Code.OK, claimed.log
    assert tm.contribution(chain.state, "hosp-a") == 250

    def decide(yes_org: str) -> str:
        pid = propose(chain, admins[yes_org], add_validator())
        for org in ORGS:
            assert vote(chain, admins[org], pid, "yes" if org == yes_org else "no").code == 0
        until(chain, proposal(chain, pid)["executable_height"])
        closed = gov(chain, admins["hosp-c"], "execute", {"proposal_id": pid})
        assert closed.code == Code.OK, closed.log
        assert proposal(chain, pid)["electorate"]["hosp-a"] == 350
        return proposal(chain, pid)["outcome"]

    assert decide("hosp-b") == "below threshold"
    assert decide("hosp-a") == "accepted"
    assert chain.state(im.validator_key(VALIDATOR))["power"] == 1
