"""Finding 9: refusals at the edge are audited without letting strangers make
the edge sign chain transactions; the log is anchored on chain and checkable."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.consortium import Consortium, running_consortium
from support.ledger import CHAIN_ID

from medchain import crypto, encoding
from medchain.contracts.records.model import edge_log_anchor_key, edge_log_key
from medchain.edge.audit_log import Run, verify_entry
from medchain.sdk.signing import send_signed


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def add_regulator(world: Consortium) -> crypto.KeyPair:
    admin, inspector = crypto.generate_keypair(), crypto.generate_keypair()
    world.keys["nhc_admin"], world.keys["inspector"] = admin, inspector
    world.ok(
        "root",
        "identity",
        "register_org",
        {"org_id": "nhc", "name": "NHC", "org_type": "regulator", "admin_public_key": admin.public},
    )
    world.ok(
        "nhc_admin",
        "identity",
        "add_member",
        {"org_id": "nhc", "public_key": inspector.public, "roles": ["regulator"]},
    )
    return inspector


def log_of(world: Consortium, who: str) -> dict[str, Any]:
    r = send_signed(world.keys[who], CHAIN_ID, "GET", world.edge_url, "/edge/v1/audit-log")
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def stranger_requests(world: Consortium, patient: str, count: int) -> None:
    """Requests a stranger can send at will: unsigned, signed by an unregistered
    key, signed by a self-registered key with no standing with the patient."""
    registered, _ = world.new_patient()
    unknown = crypto.generate_keypair()
    for i in range(count):
        kind = i % 3
        if kind == 0:
            r = httpx.get(f"{world.edge_url}/fhir/Observation", params={"patient": patient})
            assert r.status_code == 401
        else:
            key = unknown if kind == 1 else registered
            r = send_signed(
                key, CHAIN_ID, "GET", world.edge_url, "/fhir/Observation", {"patient": patient}
            )
            assert r.status_code in (401, 403, 404) or r.json()["total"] == 0, r.text


def test_stranger_refusals_cost_no_transaction_and_are_anchored_in_one(
    world: Consortium,
) -> None:
    patient = world.did("patient")
    nonce_before = world.node.account(world.keys["admin_a"])["next_nonce"]
    height_before = world.node.status()["height"]
    stranger_requests(world, patient, 30)
    assert world.node.account(world.keys["admin_a"])["next_nonce"] == nonce_before
    entries = world.edge.audit_log.entries(0, 1000)
    assert len(entries) >= 20  # the two kinds of 401 at least; a 200 empty search is no refusal
    assert {e["status"] for _, e in entries} >= {401}
    assert all(e["method"] == "GET" and e["path"].startswith("/fhir/") for _, e in entries)

    anchored = world.edge.anchor_audit_log()
    assert anchored == len(entries)
    assert world.node.account(world.keys["admin_a"])["next_nonce"] == nonce_before + 1
    head = world.node.value(edge_log_key("hosp-a"))
    assert head["first_seq"] == 1 and head["last_seq"] == entries[-1][0]
    assert head["height"] > height_before
    assert world.edge.anchor_audit_log() == 0  # nothing new: no transaction

    # Stopped between the commit and the local mark: the next round checks the
    # run on chain against the local entries, marks it, and sends nothing twice.
    stranger_requests(world, patient, 3)
    new = len(world.edge.audit_log.entries(head["last_seq"]))
    world.edge.audit_log._db.execute("DELETE FROM anchors")
    assert world.edge.anchor_audit_log() == new > 0


def test_regulator_checks_every_entry_against_the_root_on_chain(world: Consortium) -> None:
    add_regulator(world)
    stranger_requests(world, world.did("patient"), 9)
    world.edge.anchor_audit_log()
    answer = log_of(world, "inspector")
    assert answer["entries"]
    for item in answer["entries"]:
        anchor = item["anchor"]
        on_chain = world.node.value(edge_log_anchor_key("hosp-a", anchor["last_seq"]))
        run = Run(on_chain["first_seq"], on_chain["last_seq"], bytes.fromhex(on_chain["root"]))
        path = [(left, bytes.fromhex(sibling)) for left, sibling in anchor["path"]]
        assert verify_entry(item["entry"], item["seq"], path, run)

    # An entry rewritten afterwards no longer verifies against the chain's root.
    first = answer["entries"][0]
    forged = first["entry"] | {"status": 200}
    db = sqlite3.connect(world.edge.vault.root / "audit-log.db")
    with db:
        db.execute(
            "UPDATE entries SET body = ? WHERE seq = ?", (encoding.encode(forged), first["seq"])
        )
    db.close()
    on_chain = world.node.value(edge_log_anchor_key("hosp-a", first["anchor"]["last_seq"]))
    run = Run(on_chain["first_seq"], on_chain["last_seq"], bytes.fromhex(on_chain["root"]))
    path = [(left, bytes.fromhex(s)) for left, s in first["anchor"]["path"]]
    assert not verify_entry(forged, first["seq"], path, run)


def test_a_patient_sees_only_refusals_that_name_them(world: Consortium) -> None:
    other_key, other = world.new_patient()
    world.keys["other"] = other_key
    stranger_requests(world, world.did("patient"), 6)
    stranger_requests(world, other, 6)
    mine = log_of(world, "patient")["entries"]
    assert mine and all(item["entry"]["patient"] == world.did("patient") for item in mine)
    theirs = log_of(world, "other")["entries"]
    assert theirs and all(item["entry"]["patient"] == other for item in theirs)
    unsigned = httpx.get(f"{world.edge_url}/edge/v1/audit-log")
    assert unsigned.status_code == 401


def test_anchors_must_follow_on_and_come_from_the_custodian(world: Consortium) -> None:
    root = bytes(32)
    gap = world.send(
        "admin_a", "records", "anchor_log", {"first_seq": 5, "last_seq": 6, "root": root}
    )
    assert gap["code_name"] == "INVALID_STATE"
    patient = world.send(
        "patient", "records", "anchor_log", {"first_seq": 1, "last_seq": 1, "root": root}
    )
    assert patient["code_name"] == "UNAUTHORIZED"
    bad = world.send(
        "admin_a", "records", "anchor_log", {"first_seq": 2, "last_seq": 1, "root": root}
    )
    assert bad["code_name"] == "INVALID_PAYLOAD"
