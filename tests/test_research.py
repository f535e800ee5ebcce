"""Federated studies on chain (issue 17): patients join by consent, each round's
cohort is recomputed by the chain and provable (inclusion and exclusion), a
revocation leaves every later cohort, rounds need every hospital's cohort, and
contributions are counted by the chain."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.ledger import Ledger, did_of
from support.stateless import apply_without_state

from medchain import crypto, encoding
from medchain.contracts.consent import decide
from medchain.contracts.research import model as m
from medchain.contracts.research.handler import ResearchHandler
from medchain.core.merkle import EMPTY_ROOT, merkle_root
from medchain.exceptions import Code, InvalidTransaction

DAY_MS = 86_400_000
STUDY = "dm2-risk-2026"
HOSPITALS = ("hosp-a", "hosp-b", "hosp-c")
PATIENTS = ("p1", "p2", "p3", "p4", "p5")
# Where each patient has an active record (p4 never consents; p5 revokes after round 2).
HELD_AT = {
    "p1": ("hosp-a", "hosp-b"),
    "p2": ("hosp-a",),
    "p3": ("hosp-b", "hosp-c"),
    "p4": ("hosp-c",),
    "p5": ("hosp-a",),
}


def research(ledger: Ledger, key: crypto.KeyPair, action: str, payload: dict[str, Any]) -> Any:
    return ledger.run(key, action, payload, "research")


def scan_of(ledger: Ledger) -> Any:
    def scan(prefix: str) -> Iterator[tuple[str, Any]]:
        return ((k, encoding.decode(v)) for k, v in ledger.app.db.scan(prefix, 100_000))

    return scan


def sample(patient: crypto.KeyPair, study: str = STUDY) -> bytes:
    """A sample id computed as a patient would, from the documented recipe."""
    return crypto.sm3(
        b"medchain/research/sample\x00" + study.encode() + b"\x00" + did_of(patient).encode()
    )


def expected(k: dict[str, Any], names: list[str]) -> tuple[int, bytes]:
    leaves = sorted(sample(k[n]) for n in names)
    return len(leaves), merkle_root(leaves)


@pytest.fixture
def world(ledger: Ledger) -> dict[str, Any]:
    return build_world(ledger)


def build_world(ledger: Ledger) -> dict[str, Any]:
    """A research sponsor, hospitals A, B, C in the study and D outside it, five
    patients with records where HELD_AT says, and the ethics approval record."""
    k = {
        n: crypto.generate_keypair()
        for n in (
            "admin_s",
            "researcher",
            "admin_a",
            "admin_b",
            "admin_c",
            "admin_d",
            "doctor_a",
            "researcher_a",
            *PATIENTS,
        )
    }
    ledger.add_org("uni-research", k["admin_s"], "research")
    ledger.add_staff(k["admin_s"], "uni-research", k["researcher"], ["researcher"])
    for org in (*HOSPITALS, "hosp-d"):
        admin = "admin_" + org[-1]
        ledger.add_org(org, k[admin])
    ledger.add_staff(k["admin_a"], "hosp-a", k["doctor_a"], ["doctor"])
    ledger.add_staff(k["admin_a"], "hosp-a", k["researcher_a"], ["researcher"])
    for p in PATIENTS:
        ledger.add_patient(k[p])
    for p, orgs in HELD_AT.items():
        for org in orgs:
            admin = k["admin_" + org[-1]]
            r = ledger.run(
                admin,
                "register",
                {
                    "record_id": f"obs-{p}-{org}",
                    "patient": did_of(k[p]),
                    "resource_type": "Observation",
                    "cid": "b" + "a" * 58,
                    "content_hash": bytes(32),
                },
                "records",
            )
            assert r.code == Code.OK, r.log
    r = ledger.run(
        k["admin_a"],
        "register",
        {
            "record_id": "ethics-2026-17",
            "patient": did_of(k["p1"]),
            "resource_type": "DocumentReference",
            "cid": "b" + "c" * 58,
            "content_hash": bytes(range(32)),
        },
        "records",
    )
    assert r.code == Code.OK, r.log
    return k


def study_payload(ledger: Ledger, **change: Any) -> dict[str, Any]:
    return {
        "study_id": STUDY,
        "title": "Type 2 diabetes risk from HbA1c, glucose, BMI and age",
        "protocol_hash": crypto.sm3(b"protocol v1"),
        "ethics_record_id": "ethics-2026-17",
        "data_types": ["Observation", "Condition"],
        "features": ["4548-4", "1558-6", "39156-5", "age"],
        "hospitals": list(HOSPITALS),
        "rounds_planned": 3,
        "aggregation": "ckks-fedavg",
        "dp_epsilon_milli": 8000,
        "expires_ms": ledger.app.db.block_time_ms() + 365 * DAY_MS,
        **change,
    }


def join(ledger: Ledger, patient: crypto.KeyPair, **change: Any) -> Any:
    return ledger.run(
        patient,
        "grant",
        {
            "patient": did_of(patient),
            "grantee_kind": "study",
            "grantee": STUDY,
            "purposes": ["HRESEARCH"],
            "scope_types": ["Condition", "Observation"],
            "expires_ms": ledger.app.db.block_time_ms() + 100 * DAY_MS,
            **change,
        },
        "consent",
    )


def open_study(ledger: Ledger, k: dict[str, Any]) -> dict[str, str]:
    """The study created, and p1, p2, p3, p5 joined; their grant ids."""
    r = research(ledger, k["researcher"], "create_study", study_payload(ledger))
    assert r.code == Code.OK, r.log
    grants = {}
    for p in ("p1", "p2", "p3", "p5"):
        r = join(ledger, k[p])
        assert r.code == Code.OK, r.log
        grants[p] = dict(r.events[0].attributes)["grant_id"]
    return grants


def commit(ledger: Ledger, key: crypto.KeyPair, rnd: int, count: int, root: bytes) -> Any:
    return research(
        ledger,
        key,
        "commit_cohort",
        {"study_id": STUDY, "round": rnd, "count": count, "root": root},
    )


def round_payload(rnd: int) -> dict[str, Any]:
    return {
        "study_id": STUDY,
        "round": rnd,
        "global_model_hash": crypto.sm3(f"global model {rnd}".encode()),
        "metrics": [
            {"org_id": org, "accuracy_bp": 9000 + rnd * 50, "auc_bp": 9400, "n_eval": 40}
            for org in HOSPITALS
        ],
        "update_hashes": [{"org_id": "hosp-a", "hash": crypto.sm3(b"ciphertext a")}],
    }


def test_a_study_is_opened_by_its_sponsor_with_an_ethics_record_and_hospitals(
    ledger: Ledger, world: Any
) -> None:
    k = world
    for stranger in ("doctor_a", "p1"):
        r = research(ledger, k[stranger], "create_study", study_payload(ledger))
        assert r.code == Code.UNAUTHORIZED, r.log
    no_ethics = study_payload(ledger, ethics_record_id="ethics-none")
    r = research(ledger, k["researcher"], "create_study", no_ethics)
    assert r.code == Code.NOT_FOUND and "ethics" in r.log
    not_a_hospital = study_payload(ledger, hospitals=["hosp-a", "uni-research"])
    r = research(ledger, k["researcher"], "create_study", not_a_hospital)
    assert r.code == Code.NOT_FOUND and "uni-research" in r.log
    r = research(ledger, k["researcher"], "create_study", study_payload(ledger))
    assert r.code == Code.OK, r.log
    again = research(ledger, k["admin_s"], "create_study", study_payload(ledger))
    assert again.code == Code.ALREADY_EXISTS
    study = m.study(ledger.state, STUDY)
    assert study is not None
    assert study["sponsor_org"] == "uni-research" and study["status"] == m.OPEN
    assert study["hospitals"] == list(HOSPITALS) and study["dp_epsilon_milli"] == 8000
    assert study["features"] == ["4548-4", "1558-6", "39156-5", "age"]  # input order kept


@pytest.mark.parametrize(
    "bad",
    [
        {"hospitals": ["hosp-a"]},  # one hospital is no federation
        {"hospitals": ["hosp-a", "hosp-a"]},
        {"data_types": []},
        {"data_types": ["Observation", "Spaceship"]},
        {"rounds_planned": 0},
        {"rounds_planned": 1001},
        {"aggregation": "median"},
        {"dp_epsilon_milli": 0},
        {"dp_epsilon_milli": 1.5},  # no floats
        {"protocol_hash": "ab" * 32},  # a digest is bytes (hex only in JSON)
        {"study_id": "A/B"},
        {"features": []},
    ],
)
def test_malformed_study_payloads_are_refused_before_any_state_read(bad: dict[str, Any]) -> None:
    payload = {
        "study_id": STUDY,
        "title": "t",
        "protocol_hash": bytes(32),
        "ethics_record_id": "e",
        "data_types": ["Observation"],
        "features": ["age"],
        "hospitals": ["hosp-a", "hosp-b"],
        "rounds_planned": 2,
        "aggregation": "fedavg",
        "expires_ms": 1,
    }
    with pytest.raises(InvalidTransaction) as e:
        apply_without_state(ResearchHandler(), "create_study", payload | bad)
    assert e.value.code == Code.INVALID_PAYLOAD


def test_patients_join_by_a_research_only_grant_to_an_open_study(
    ledger: Ledger, world: Any
) -> None:
    k = world
    assert join(ledger, k["p1"]).code == Code.NOT_FOUND  # no such study yet
    assert research(ledger, k["researcher"], "create_study", study_payload(ledger)).code == Code.OK
    treat = join(ledger, k["p1"], purposes=["HRESEARCH", "TREAT"])
    assert treat.code == Code.INVALID_PAYLOAD and "HRESEARCH" in treat.log
    by_record = join(ledger, k["p1"], scope_records=["obs-p1-hosp-a"])
    assert by_record.code == Code.INVALID_PAYLOAD
    narrow = join(ledger, k["p1"], scope_types=["Observation"])
    assert narrow.code == Code.INVALID_PAYLOAD and "Condition" in narrow.log
    assert join(ledger, k["p1"]).code == Code.OK
    twice = join(ledger, k["p1"])
    assert twice.code == Code.ALREADY_EXISTS
    someone_else = ledger.run(
        k["p2"],
        "grant",
        {
            "patient": did_of(k["p1"]),
            "grantee_kind": "study",
            "grantee": STUDY,
            "purposes": ["HRESEARCH"],
            "scope_types": ["Condition", "Observation"],
            "expires_ms": ledger.app.db.block_time_ms() + DAY_MS,
        },
        "consent",
    )
    assert someone_else.code == Code.UNAUTHORIZED


def test_a_study_grant_never_lets_anyone_read_a_record(ledger: Ledger, world: Any) -> None:
    k = world
    open_study(ledger, k)
    record = ledger.state("records/record/obs-p1-hosp-b")
    for who in ("researcher", "admin_s", "researcher_a", "doctor_a", "admin_a"):
        member = ledger.state(f"identity/did/{did_of(k[who])}")
        for purpose in ("HRESEARCH", "TREAT"):
            now = ledger.app.db.block_time_ms()
            decision = decide(ledger.state, scan_of(ledger), member, record, purpose, now)
            assert not decision.allowed, (who, purpose, decision)
        r = ledger.run(
            k[who], "request", {"record_id": "obs-p1-hosp-b", "purpose": "HRESEARCH"}, "exchange"
        )
        assert r.code == Code.UNAUTHORIZED, (who, r.log)


def test_cohorts_rounds_revocation_proofs_and_contributions(ledger: Ledger, world: Any) -> None:
    k = world
    grants = open_study(ledger, k)
    cohort_of = {
        "hosp-a": ["p1", "p2", "p5"],
        "hosp-b": ["p1", "p3"],
        "hosp-c": ["p3"],  # p4 holds a record there but never consented
    }
    admins = {org: k["admin_" + org[-1]] for org in HOSPITALS}

    # Round 1: only the chain's own cohort is accepted.
    count, root = expected(k, cohort_of["hosp-c"] + ["p4"])
    wrong = commit(ledger, admins["hosp-c"], 1, count, root)
    assert wrong.code == Code.INVALID_STATE and "counts 1 patients" in wrong.log
    count, root = expected(k, ["p1"])  # p3 left out
    left_out = commit(ledger, admins["hosp-b"], 1, count, root)
    assert left_out.code == Code.INVALID_STATE and "counts 2 patients" in left_out.log
    swapped = commit(ledger, admins["hosp-b"], 1, 2, expected(k, ["p1", "p2"])[1])
    assert swapped.code == Code.INVALID_STATE  # right count, wrong members
    for stranger in ("admin_d", "doctor_a", "p1", "researcher"):
        r = commit(ledger, k[stranger], 1, *expected(k, cohort_of["hosp-a"]))
        assert r.code == Code.UNAUTHORIZED, (stranger, r.log)
    assert commit(ledger, k["researcher_a"], 1, *expected(k, cohort_of["hosp-a"])).code == Code.OK
    early = research(ledger, k["researcher"], "record_round", round_payload(1))
    assert early.code == Code.INVALID_STATE and "hosp-b, hosp-c" in early.log
    for org in ("hosp-b", "hosp-c"):
        assert commit(ledger, admins[org], 1, *expected(k, cohort_of[org])).code == Code.OK
    again = commit(ledger, admins["hosp-c"], 1, *expected(k, cohort_of["hosp-c"]))
    assert again.code == Code.ALREADY_EXISTS
    ahead = commit(ledger, admins["hosp-c"], 2, *expected(k, cohort_of["hosp-c"]))
    assert ahead.code == Code.INVALID_STATE  # round 1 is not recorded yet
    for stranger in ("admin_a", "admin_d", "p1"):
        r = research(ledger, k[stranger], "record_round", round_payload(1))
        assert r.code == Code.UNAUTHORIZED, (stranger, r.log)
    too_early = research(
        ledger,
        k["researcher"],
        "record_contributions",
        {"study_id": STUDY, "method": "leave-one-out", "values": []},
    )
    assert too_early.code == Code.INVALID_STATE
    assert research(ledger, k["researcher"], "record_round", round_payload(1)).code == Code.OK

    # Round 2: the same cohorts.
    for org in HOSPITALS:
        assert commit(ledger, admins[org], 2, *expected(k, cohort_of[org])).code == Code.OK
    assert research(ledger, k["admin_s"], "record_round", round_payload(2)).code == Code.OK

    # p5 revokes after round 2: round 3 at hosp-a is without them.
    revoked = ledger.run(k["p5"], "revoke", {"grant_id": grants["p5"]}, "consent")
    assert revoked.code == Code.OK, revoked.log
    stale = commit(ledger, admins["hosp-a"], 3, *expected(k, cohort_of["hosp-a"]))
    assert stale.code == Code.INVALID_STATE and "counts 2 patients" in stale.log
    cohort_of["hosp-a"] = ["p1", "p2"]
    for org in HOSPITALS:
        assert commit(ledger, admins[org], 3, *expected(k, cohort_of[org])).code == Code.OK
    assert research(ledger, k["researcher"], "record_round", round_payload(3)).code == Code.OK

    get, scan = ledger.state, scan_of(ledger)
    p5 = sample(k["p5"])
    round2, round3 = m.cohort(get, STUDY, 2, "hosp-a"), m.cohort(get, STUDY, 3, "hosp-a")
    assert round2 is not None and round3 is not None
    assert (round2["count"], round3["count"]) == (3, 2)
    rows = {(r["round"], r["org_id"]): r for r in m.participation(scan, STUDY, did_of(k["p5"]))}
    assert [key for key, row in sorted(rows.items()) if row["included"]] == [
        (1, "hosp-a"),
        (2, "hosp-a"),
    ]
    assert m.verify_cohort_proof(rows[(2, "hosp-a")]["proof"], p5, round2) == (True, True)
    assert m.verify_cohort_proof(rows[(3, "hosp-a")]["proof"], p5, round3) == (True, False)
    # Each proof checks only against its own cohort's commitment.
    assert m.verify_cohort_proof(rows[(3, "hosp-a")]["proof"], p5, round2)[0] is False
    assert m.verify_cohort_proof(rows[(2, "hosp-a")]["proof"], p5, round3)[0] is False

    recorded = m.rounds(scan, STUDY)
    assert [r["round"] for r in recorded] == [1, 2, 3]
    assert recorded[2]["aggregation"] == "ckks-fedavg" and recorded[2]["dp_epsilon_milli"] == 8000
    assert recorded[2]["cohorts"][0] == {"org_id": "hosp-a", "count": 2, "root": round3["root"]}
    assert research(ledger, k["researcher"], "record_round", round_payload(4)).code == (
        Code.INVALID_STATE
    )

    values = [
        {"org_id": "hosp-a", "value_bp": 310},
        {"org_id": "hosp-b", "value_bp": 120},
        {"org_id": "hosp-c", "value_bp": -40},
    ]
    contributions = {"study_id": STUDY, "method": "leave-one-out", "values": values}
    short = contributions | {"values": values[:2]}
    assert research(ledger, k["researcher"], "record_contributions", short).code == (
        Code.INVALID_PAYLOAD
    )
    r = research(ledger, k["admin_a"], "record_contributions", contributions)
    assert r.code == Code.UNAUTHORIZED
    r = research(ledger, k["researcher"], "record_contributions", contributions)
    assert r.code == Code.OK, r.log
    assert [
        (c["org_id"], c["samples_x_rounds"], c["value_bp"]) for c in m.contributions(scan, STUDY)
    ] == [("hosp-a", 3 + 3 + 2, 310), ("hosp-b", 6, 120), ("hosp-c", 3, -40)]
    study = m.study(get, STUDY)
    assert study is not None and study["status"] == m.COMPLETED
    assert join(ledger, k["p4"]).code == Code.INVALID_STATE  # no joining a completed study
    r = research(ledger, k["researcher"], "record_contributions", contributions)
    assert r.code == Code.INVALID_STATE


def test_an_expired_study_grant_leaves_the_cohort(ledger: Ledger, world: Any) -> None:
    k = world
    assert research(ledger, k["researcher"], "create_study", study_payload(ledger)).code == Code.OK
    soon = ledger.app.db.block_time_ms() + 1500
    assert join(ledger, k["p2"], expires_ms=soon).code == Code.OK
    assert join(ledger, k["p1"]).code == Code.OK
    ledger.commit([])
    r = commit(ledger, k["admin_a"], 1, *expected(k, ["p1", "p2"]))
    assert r.code == Code.INVALID_STATE and "counts 1 patients" in r.log
    assert commit(ledger, k["admin_a"], 1, *expected(k, ["p1"])).code == Code.OK
    assert join(ledger, k["p2"]).code == Code.OK  # an expired grant does not block a new one


def leaves_of(n: int) -> list[bytes]:
    return sorted(crypto.sm3(f"leaf {i}".encode()) for i in range(n))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 9])
def test_every_member_proves_inclusion_and_every_outsider_exclusion(n: int) -> None:
    leaves = leaves_of(n)
    root = merkle_root(leaves)
    for leaf in leaves:
        proof = m.prove(leaves, leaf)
        assert m.verify_cohort_proof(proof, leaf, {"root": root, "count": n}) == (True, True)
    outsiders = [bytes(32), b"\xff" * 32] + [bytes([*leaf[:31], leaf[31] ^ 1]) for leaf in leaves]
    for outsider in outsiders:
        if outsider in leaves:
            continue
        proof = m.prove(leaves, outsider)
        assert "below" in proof
        assert m.verify_cohort_proof(proof, outsider, {"root": root, "count": n}) == (True, False)


def test_forged_proofs_are_refused() -> None:
    leaves = leaves_of(9)
    root, count = merkle_root(leaves), 9
    member = leaves[4]
    outsider = (int.from_bytes(member, "big") + 1).to_bytes(32, "big")
    assert leaves[4] < outsider < leaves[5]
    good = m.prove(leaves, outsider)
    assert m.verify_exclusion(good, outsider, root, count)  # type: ignore[arg-type]

    # A member cannot pass as absent: its neighbours are not adjacent.
    around = {"below": m.inclusion_proof(leaves, 3), "above": m.inclusion_proof(leaves, 5)}
    assert not m.verify_exclusion(around, member, root, count)  # type: ignore[arg-type]
    # Wrong neighbour: adjacent leaves that do not sort around the id.
    elsewhere = {"below": m.inclusion_proof(leaves, 6), "above": m.inclusion_proof(leaves, 7)}
    assert not m.verify_exclusion(elsewhere, outsider, root, count)  # type: ignore[arg-type]
    # A claimed index that is not the leaf's real place (the path says otherwise).
    lied = dict(m.inclusion_proof(leaves, 3))
    lied["index"] = 4
    fake = {"below": lied, "above": m.inclusion_proof(leaves, 5)}
    assert not m.verify_exclusion(fake, member, root, count)  # type: ignore[arg-type]
    # Tampered path.
    tampered = m.inclusion_proof(leaves, 4)
    side, sibling = tampered["path"][0]
    tampered["path"][0] = (side, "00" * 32 if sibling != "00" * 32 else "11" * 32)
    assert not m.verify_inclusion(tampered, member, root, count)
    assert not m.verify_exclusion(
        {"below": tampered, "above": good["above"]},  # type: ignore[typeddict-item]
        outsider,
        root,
        count,
    )
    # A proof of someone else's leaf is not a proof of mine.
    assert not m.verify_inclusion(m.inclusion_proof(leaves, 4), leaves[5], root, count)
    # An edge claim from a leaf that is not at the edge.
    edge = {"below": None, "above": m.inclusion_proof(leaves, 1)}
    assert not m.verify_exclusion(edge, leaves[0][:31] + b"\x00", root, count)  # type: ignore[arg-type]
    # "Empty cohort" against a cohort that is not empty; garbage refused, not raised.
    assert not m.verify_exclusion({"below": None, "above": None}, outsider, root, count)
    assert m.verify_exclusion({"below": None, "above": None}, outsider, EMPTY_ROOT, 0)
    broken = {"below": {"leaf": "zz", "index": 0, "path": []}, "above": None}
    assert not m.verify_exclusion(broken, outsider, root, count)  # type: ignore[arg-type]
    # Paths are bound to the count: a proof made for 9 leaves does not fit 8.
    assert not m.verify_exclusion(good, outsider, root, count - 1)  # type: ignore[arg-type]
    # Hiding the last leaf: an "after the last" claim from the one before it.
    last = {"below": m.inclusion_proof(leaves, 7), "above": None}
    beyond = b"\xff" * 32
    assert not m.verify_exclusion(last, beyond, root, count)  # type: ignore[arg-type]
    assert m.verify_exclusion(m.prove(leaves, beyond), beyond, root, count)  # type: ignore[arg-type]


def test_a_study_grant_exports_as_a_fhir_consent_naming_the_study(
    ledger: Ledger, world: Any
) -> None:
    from medchain.fhir.export import STUDY_SYSTEM, consent_resource

    k = world
    grant_id = open_study(ledger, k)["p1"]
    grant = ledger.state(f"consent/grant/{grant_id}")
    resource = consent_resource(grant, ledger.app.db.block_time_ms())
    actor = resource["provision"]["actor"][0]["reference"]["identifier"]
    assert actor == {"system": STUDY_SYSTEM, "value": STUDY}
    assert resource["status"] == "active"
    assert [p["code"] for p in resource["provision"]["purpose"]] == ["HRESEARCH"]
