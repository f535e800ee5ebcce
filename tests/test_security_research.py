"""An attacker's review of issue 17's chain side: each test is a hole that was open
(the behaviour it names failed before its fix) and stays shut."""

from __future__ import annotations

from typing import Any

import pytest
from support.ledger import Ledger, did_of
from test_models_registry import complete_study, entry, models, trained
from test_research import (
    STUDY,
    build_world,
    commit,
    expected,
    join,
    open_study,
    round_payload,
    scan_of,
)

from medchain import crypto
from medchain.contracts.consent import model as consent
from medchain.contracts.research import model as rm
from medchain.exceptions import Code


@pytest.fixture
def world(ledger: Ledger) -> dict[str, Any]:
    return build_world(ledger)


def test_a_model_cannot_claim_the_lineage_of_a_study_that_did_not_produce_it(
    ledger: Ledger, world: Any
) -> None:
    """The sponsor of a completed study could register any file with the study as its
    lineage, so provenance said "trained under consent" of a model trained on anything.
    Only the global model the study's last round recorded may name it."""
    complete_study(ledger, world)
    other_file = models(ledger, world["researcher"], "register", entry(1, study_id=STUDY))
    assert other_file.code == Code.INVALID_STATE, other_file.log
    assert round_payload(3)["global_model_hash"].hex() in other_file.log
    earlier_round = entry(1, study_id=STUDY, model_hash=round_payload(2)["global_model_hash"])
    assert models(ledger, world["researcher"], "register", earlier_round).code == (
        Code.INVALID_STATE
    )
    assert models(ledger, world["researcher"], "register", trained(1)).code == Code.OK
    # Without lineage the sponsor may still publish another file, and it says so.
    r = models(ledger, world["researcher"], "register", entry(2))
    assert r.code == Code.OK, r.log


def leave(ledger: Ledger, patient: crypto.KeyPair, joined: Any) -> None:
    grant_id = dict(joined.events[0].attributes)["grant_id"]
    r = ledger.run(patient, "revoke", {"grant_id": grant_id}, "consent")
    assert r.code == Code.OK, r.log


def test_one_patient_cannot_grow_a_studys_index_by_joining_and_leaving(
    ledger: Ledger, world: Any
) -> None:
    """Every study grant, revoked or expired, stays in the study's grantee index that
    each cohort commit rereads whole and refuses past its read limit: one patient
    joining and leaving in a loop could stop the study for every hospital. A patient
    now joins one study at most MAX_JOINS_PER_PATIENT times."""
    open_study(ledger, world)
    p4 = world["p4"]
    for _ in range(rm.MAX_JOINS_PER_PATIENT):
        joined = join(ledger, p4)
        assert joined.code == Code.OK, joined.log
        leave(ledger, p4, joined)
    again = join(ledger, p4)
    assert again.code == Code.INVALID_STATE and "joined" in again.log, again.log
    index = list(scan_of(ledger)(consent.by_grantee_prefix("study", STUDY, did_of(p4))))
    assert len(index) == rm.MAX_JOINS_PER_PATIENT
    # The study goes on: hospital C (p3 consenting, p4 left) commits its cohort.
    r = commit(ledger, world["admin_c"], 1, *expected(world, ["p3"]))
    assert r.code == Code.OK, r.log


def test_a_full_study_refuses_new_joins_rather_than_stop_its_cohorts(
    ledger: Ledger, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many patients (self-registration is open) could push a study's grant index
    past what a cohort commit reads, and every later commit failed. Joins now stop
    at MAX_STUDY_GRANTS, counted on chain; lowered here to the four joins open_study
    makes plus one, so the test needs six patients rather than twenty thousand."""
    monkeypatch.setattr(rm, "MAX_STUDY_GRANTS", 5)
    open_study(ledger, world)  # p1, p2, p3, p5
    assert join(ledger, world["p4"]).code == Code.OK
    newcomer = crypto.generate_keypair()
    ledger.add_patient(newcomer)
    full = join(ledger, newcomer)
    assert full.code == Code.INVALID_STATE and "full" in full.log, full.log
    joins = ledger.state(consent.study_joins_key(STUDY))
    assert joins == {"count": 5}
    r = commit(ledger, world["admin_c"], 1, *expected(world, ["p3", "p4"]))
    assert r.code == Code.OK, r.log
