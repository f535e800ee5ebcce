"""The incentive token from the shell and the REST API, on a real solo node and its
gateway: governance sets the rules with `medchain token set-rules`, a hospital
claims a record's reward, pays a patient, the patient burns some; the supply, the
organisations' balances and `medchain token audit` (mint events minus burn events
against the supply in state) are public; a DID's balance is for that DID and
regulators only, the same refusal to anyone else; and an audit against a node whose
event index lost a mint says so."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.cli_node import CliNode, ok, run, save_keys, serving
from support.ledger import Ledger, did_of, signed_get
from support.network import Network, caught_up, running_network
from test_research import build_world

from medchain import crypto
from medchain.cli.token import audit_supply
from medchain.sdk.client import Client


class Node(CliNode):
    """The node, its CLI home and keys, and signed (or unsigned) gateway reads."""

    def get(self, who: str | None, path: str, **params: Any) -> httpx.Response:
        with httpx.Client(base_url=self.url) as client:
            if who is None:
                return client.get(path, params=params)
            return signed_get(client, self.keys[who], path, params)


@pytest.fixture(scope="module")
def chain_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("token-api") / "chain.db"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, chain_path: Path) -> Iterator[Node]:
    """test_research's world (hospitals A-D with records, patients, a sponsor), a
    regulator and a stranger, on a solo node; the consortium admin's key as "root"."""
    root = crypto.generate_keypair()
    ledger = Ledger(chain_path, root)
    keys = build_world(ledger)
    keys["root"], keys["admin_reg"], keys["inspector"] = (
        root,
        *(crypto.generate_keypair() for _ in range(2)),
    )
    ledger.add_org("nhc", keys["admin_reg"], "regulator")
    ledger.add_staff(keys["admin_reg"], "nhc", keys["inspector"], ["regulator"])
    keys["stranger"] = crypto.generate_keypair()
    ledger.add_patient(keys["stranger"])
    home = tmp_path_factory.mktemp("token-home")
    save_keys(home, keys)
    with serving(ledger) as url:
        yield Node(url, home, keys)


@pytest.fixture(scope="module")
def paid(node: Node) -> Node:
    """Rules, two record rewards to hosp-a, 7 paid to patient p1, who burns 2."""
    ok(run(node, "token", "set-rules", "--cap", "100", "--record", "10", "--key", "root"))
    for record in ("obs-p1-hosp-a", "obs-p2-hosp-a"):
        ok(run(node, "token", "claim", "record", record, "--org", "hosp-a", "--key", "doctor-a"))
    p1 = node.did("p1")
    ok(run(node, "token", "transfer", "org:hosp-a", p1, "7", "--key", "admin-a"))
    ok(run(node, "token", "burn", p1, "2", "--key", "p1"))
    return node


def test_the_cli_claims_pays_burns_and_reads_the_supply(paid: Node) -> None:
    node = paid
    supply = ok(run(node, "token", "supply"))
    assert (supply["supply"], supply["minted"], supply["burned"], supply["cap"]) == (
        "18",
        "20",
        "2",
        "100",
    )
    assert ok(run(node, "token", "balance", "org:hosp-a"))["balance"] == "13"
    mine = ok(run(node, "token", "balance", node.did("p1"), "--key", "p1"))
    assert mine == {"account": node.did("p1"), "balance": "5"}
    orgs = ok(run(node, "token", "orgs"))
    assert orgs["orgs"] == [{"org_id": "hosp-a", "balance": "13", "contribution": "20"}]


def test_a_refused_claim_exits_non_zero_with_the_chains_reason(paid: Node) -> None:
    again = run(
        paid, "token", "claim", "record", "obs-p1-hosp-a", "--org", "hosp-a", "--key", "admin-a"
    )
    assert again.returncode == 1 and "ALREADY_EXISTS" in again.stdout + again.stderr
    spend = run(paid, "token", "transfer", paid.did("p1"), "org:hosp-b", "6", "--key", "p1")
    assert spend.returncode == 1 and "holds 5" in spend.stdout + spend.stderr
    theft = run(
        paid, "token", "transfer", "org:hosp-a", paid.did("stranger"), "1", "--key", "stranger"
    )
    assert theft.returncode == 1 and "UNAUTHORIZED" in theft.stdout + theft.stderr


def test_the_audit_sums_the_events_to_the_supply(paid: Node) -> None:
    report = ok(run(paid, "token", "audit"))
    assert report["matches"] is True
    assert (report["event_minted"], report["event_burned"], report["supply"]) == ("20", "2", "18")
    assert report["events"] == 3
    ledger = Client(paid.url).token_ledger()
    assert [(e["type"], e["amount"]) for e in ledger["events"]] == [
        ("token.minted", "10"),
        ("token.minted", "10"),
        ("token.burned", "2"),
    ]
    assert "account" not in ledger["events"][2]  # a patient's burn does not name the patient


def test_public_reads_need_no_signature(paid: Node) -> None:
    assert paid.get(None, "/v1/token/supply").status_code == 200
    rules = paid.get(None, "/v1/token/rules").json()
    assert rules["amounts"] == {"record": "10", "exam": "0", "fl": "0"} and rules["cap"] == "100"
    assert paid.get(None, "/v1/token/orgs/hosp-b").json()["balance"] == "0"


def test_a_dids_balance_is_for_itself_and_regulators(paid: Node) -> None:
    p1 = paid.did("p1")
    path = f"/v1/token/accounts/{p1}"
    assert paid.get("p1", path).json()["balance"] == "5"
    assert paid.get("inspector", path).json()["balance"] == "5"
    refused = paid.get("stranger", path)
    empty = paid.get("stranger", f"/v1/token/accounts/{did_of(crypto.generate_keypair())}")
    # Holding 5 or never holding anything: a stranger gets the same answer.
    assert refused.status_code == empty.status_code == 403
    assert refused.json() == empty.json()
    assert paid.get(None, path).status_code == 401
    assert paid.get("stranger", "/v1/token/accounts/org:hosp-a").json()["balance"] == "13"


def test_an_audit_finds_a_node_that_lost_a_mint_event(paid: Node, chain_path: Path) -> None:
    """A node whose audit index dropped an event (a crafted or damaged database): the
    events no longer sum to the supply in state, and the audit fails."""
    with sqlite3.connect(chain_path) as conn:
        deleted = conn.execute(
            "DELETE FROM audit WHERE seq = (SELECT MIN(seq) FROM audit WHERE kind = 'token.minted')"
        ).rowcount
    assert deleted == 1
    out = run(paid, "token", "audit")
    assert out.returncode == 1 and "SUPPLY_MISMATCH" in out.stdout + out.stderr


# -- end to end on a CometBFT localnet --------------------------------------------

LOCALNET_FIRST_IP = "127.0.67.1"  # apart from every other localnet in tests and bench


@pytest.fixture(scope="module")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """A 4-validator CometBFT localnet (real processes), each node with its gateway."""
    yield from running_network(
        "cometbft", tmp_path_factory.mktemp("token-localnet"), first_ip=LOCALNET_FIRST_IP
    )


def test_every_validator_of_a_cometbft_localnet_agrees_on_the_supply(localnet: Network) -> None:
    """Rules through node 0, a record registered through node 1 and its reward claimed
    through node 2 (then again, refused by consensus), a transfer and a burn through
    node 3; every node answers the same supply and passes the audit."""
    net = localnet
    k = {n: crypto.generate_keypair() for n in ("admin", "doctor", "patient")}

    def ok(node: int, who: str, contract: str, action: str, body: dict[str, Any]) -> Any:
        signer = net.keys["root"] if who == "root" else k[who]
        result = net.client(node).send(signer, contract, action, body)
        assert result["code_name"] == "OK", result
        return result

    body = {
        "org_id": "hosp-a",
        "name": "A",
        "org_type": "hospital",
        "admin_public_key": k["admin"].public,
    }
    ok(0, "root", "identity", "register_org", body)
    member = {"org_id": "hosp-a", "public_key": k["doctor"].public, "roles": ["doctor"]}
    ok(0, "admin", "identity", "add_member", member)
    ok(0, "patient", "identity", "register_patient", {})
    ok(0, "root", "token", "set_rules", {"cap": 1000, "amounts": {"record": 25}})
    record = {
        "record_id": "obs-1", "patient": did_of(k["patient"]), "resource_type": "Observation",
        "cid": "b" + "a" * 58, "content_hash": crypto.sm3(b"obs-1"),
    }  # fmt: skip
    ok(1, "doctor", "records", "register", record)
    claim = {"basis": "record", "fact_id": "obs-1", "org_id": "hosp-a"}
    ok(2, "doctor", "token", "claim_reward", claim)
    again = net.client(2).send(k["admin"], "token", "claim_reward", claim)
    assert again["code_name"] == "ALREADY_EXISTS", again
    patient = did_of(k["patient"])
    ok(3, "admin", "token", "transfer", {"sender": "org:hosp-a", "recipient": patient, "amount": 9})
    done = ok(3, "patient", "token", "burn", {"account": patient, "amount": 4})
    answers = []
    for node in range(4):
        client = net.client(node)
        caught_up(client, done["height"])
        report = audit_supply(client)
        assert report["matches"] is True, report
        answers.append((report["supply"], report["event_minted"], report["event_burned"]))
        assert client.token_org("hosp-a") == {
            "org_id": "hosp-a",
            "balance": "16",
            "contribution": "25",
        }
    assert answers == [("21", "25", "4")] * 4
