"""Governance over REST on a real solo node and gateway (a vote-mode chain founded by
four hospitals): any signed member reads the mode and parameters, the proposals with
their tally and phase (voting, executed, rejected) and the recorded activations; an
unsigned request is refused; an unknown proposal is a 404."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.cli_node import serving
from support.ledger import signed_get
from test_governance import ORGS, VotingLedger, add_validator, gov, proposal, propose, until, vote

from medchain import crypto


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    admins = {org: crypto.generate_keypair() for org in ORGS}
    chain = VotingLedger(
        tmp_path_factory.mktemp("gov-api") / "chain.db", crypto.generate_keypair(), admins
    )
    executed = propose(
        chain, admins["hosp-a"], {"kind": "activate_contract", "contract": "records", "version": 2}
    )
    rejected = propose(chain, admins["hosp-b"], add_validator())
    for org in ORGS:
        vote(chain, admins[org], executed, "yes")
    until(chain, proposal(chain, executed)["executable_height"])
    assert gov(chain, admins["hosp-c"], "execute", {"proposal_id": executed}).code == 0
    assert gov(chain, admins["hosp-c"], "execute", {"proposal_id": rejected}).code == 0
    propose(chain, admins["hosp-c"], add_validator(2))
    vote(chain, admins["hosp-d"], 3, "no")
    with serving(chain) as url:
        yield url, admins


def get(url: str, key: crypto.KeyPair | None, path: str, **params: Any) -> httpx.Response:
    with httpx.Client(base_url=url) as client:
        if key is None:
            return client.get(path, params=params)
        return signed_get(client, key, path, params)


def test_members_read_proposals_with_their_tally_and_phase(node: tuple[str, Any]) -> None:
    url, admins = node
    r = get(url, admins["hosp-d"], "/v1/governance/proposals")
    assert r.status_code == 200, r.text
    rows = {p["proposal_id"]: p for p in r.json()}
    assert [p["proposal_id"] for p in r.json()] == [3, 2, 1]
    assert rows[1]["phase"] == "executed" and rows[1]["outcome"] == "accepted"
    assert rows[2]["phase"] == "rejected" and rows[2]["outcome"] == "below quorum"
    assert rows[3]["phase"] == "voting" and rows[3]["tally"] == {"yes": 0, "no": 100, "abstain": 0}
    assert rows[3]["outcome_now"] == "below quorum"
    open_only = get(url, admins["hosp-a"], "/v1/governance/proposals", status="open").json()
    assert [p["proposal_id"] for p in open_only] == [3]
    one = get(url, admins["hosp-a"], "/v1/governance/proposals/3").json()
    assert one["votes"] == {"hosp-d": "no"} and one["electorate"] == dict.fromkeys(ORGS, 100)
    assert one["action"]["kind"] == "set_validator" and one["action"]["power"] == 2


def test_params_and_activations(node: tuple[str, Any]) -> None:
    url, admins = node
    params = get(url, admins["hosp-b"], "/v1/governance/params").json()
    assert params["mode"] == "vote" and params["voting_period"] == 20
    activations = get(url, admins["hosp-b"], "/v1/governance/activations").json()
    assert [(a["contract"], a["version"], a["proposal_id"]) for a in activations] == [
        ("records", 2, 1)
    ]


def test_unsigned_and_unknown(node: tuple[str, Any]) -> None:
    url, admins = node
    assert get(url, None, "/v1/governance/proposals").status_code == 401
    missing = get(url, admins["hosp-a"], "/v1/governance/proposals/99")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "no proposal 99"
