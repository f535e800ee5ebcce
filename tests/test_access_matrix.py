"""The authorisation matrix, through real transactions: every staff role x every
health-record action x consent granted / not granted / revoked / expired.

The expected outcome of each cell comes from two small tables (what a role may
ever see; who may do what), so a change to either shows up here cell by cell.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.ledger import Ledger, did_of

from medchain import crypto
from medchain.exceptions import Code

ROLES = ["doctor", "nurse", "pharmacist", "lab_technician", "researcher", "regulator"]
STATES = ["granted", "not_granted", "revoked", "expired"]
RECORDS = {
    "rx-1": "MedicationRequest",
    "obs-1": "Observation",
    "note-1": "DocumentReference",
    "img-1": "ImagingStudy",
}
# What a grant covering every type can open, per role (role policy at genesis).
SEES = {
    "doctor": {"rx-1", "obs-1", "note-1", "img-1"},
    "nurse": {"rx-1", "obs-1"},
    "pharmacist": {"rx-1"},
    "lab_technician": {"obs-1"},
    "researcher": {"obs-1", "img-1"},
    "regulator": set(),
}
# Roles that may register records at their own organisation.
REGISTERS = {"doctor", "nurse", "pharmacist", "lab_technician"}
HOUR_MS = 3_600_000
SHORT_MS = 3_000  # Ledger blocks are 1 s apart


@pytest.fixture
def world(ledger: Ledger) -> dict[str, Any]:
    names = ["admin_a", "admin_b", "admin_reg", "nurse_a", "patient", *ROLES]
    k = {n: crypto.generate_keypair() for n in names}
    ledger.add_org("hosp-a", k["admin_a"])
    ledger.add_org("hosp-b", k["admin_b"])
    ledger.add_org("nhc", k["admin_reg"], "regulator")
    ledger.add_staff(k["admin_a"], "hosp-a", k["nurse_a"], ["nurse"])
    for role in ROLES:
        org, admin = ("nhc", "admin_reg") if role == "regulator" else ("hosp-b", "admin_b")
        ledger.add_staff(k[admin], org, k[role], [role])
    ledger.add_patient(k["patient"])
    for rid, rtype in RECORDS.items():
        register = record_payload(k["patient"], rid, rtype)
        assert ledger.run(k["admin_a"], "register", register, "records").code == Code.OK
    return k


def record_payload(patient: crypto.KeyPair, rid: str, rtype: str) -> dict[str, Any]:
    return {
        "record_id": rid,
        "patient": did_of(patient),
        "resource_type": rtype,
        "cid": "b" + "a" * 58,
        "content_hash": bytes(32),
    }


def set_consent(ledger: Ledger, k: dict[str, crypto.KeyPair], role: str, state: str) -> None:
    if state == "not_granted":
        return
    r = ledger.run(
        k["patient"],
        "grant",
        {
            "patient": did_of(k["patient"]),
            "grantee_kind": "did",
            "grantee": did_of(k[role]),
            "purposes": ["TREAT"],
            "scope_types": sorted(set(RECORDS.values())),
            "expires_ms": ledger.app.db.block_time_ms()
            + (SHORT_MS if state == "expired" else HOUR_MS),
        },
        "consent",
    )
    assert r.code == Code.OK, r.log
    if state == "revoked":
        grant_id = dict(r.events[0].attributes)["grant_id"]
        assert ledger.run(k["patient"], "revoke", {"grant_id": grant_id}, "consent").code == 0
    if state == "expired":
        for _ in range(SHORT_MS // 1000 + 1):
            ledger.commit([])


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("state", STATES)
def test_every_role_every_action(
    ledger: Ledger, world: dict[str, Any], role: str, state: str
) -> None:
    k = world
    me = k[role]
    set_consent(ledger, k, role, state)
    outcomes: dict[str, Code] = {}
    sessions = {}
    for rid in RECORDS:
        r = ledger.run(me, "request", {"record_id": rid, "purpose": "TREAT"}, "exchange")
        outcomes[f"read {rid}"] = r.code
        if r.code == Code.OK:
            sessions[rid] = dict(r.events[0].attributes)["session_id"]
    for rid, session_id in sessions.items():
        # Nobody but the custodian's staff releases; then only the requester acknowledges.
        outcomes[f"release {rid}"] = ledger.run(
            me, "release", {"session_id": session_id}, "exchange"
        ).code
        release = ledger.run(k["nurse_a"], "release", {"session_id": session_id}, "exchange")
        assert release.code == Code.OK, release.log
        ack = {"session_id": session_id, "content_hash": bytes(32)}
        outcomes[f"ack {rid}"] = ledger.run(me, "ack", ack, "exchange").code
    own = record_payload(k["patient"], f"{role}-new", "Observation")
    outcomes["register"] = ledger.run(me, "register", own, "records").code
    outcomes["grant"] = ledger.run(
        me,
        "grant",
        {
            "patient": did_of(k["patient"]),
            "grantee_kind": "did",
            "grantee": did_of(me),
            "purposes": ["TREAT"],
            "scope_types": ["Observation"],
            "expires_ms": ledger.app.db.block_time_ms() + HOUR_MS,
        },
        "consent",
    ).code
    outcomes["erase"] = ledger.run(me, "erase", {"record_id": "obs-1"}, "records").code

    opens = SEES[role] if state == "granted" else set()
    expected: dict[str, Code] = {}
    for rid in RECORDS:
        expected[f"read {rid}"] = Code.OK if rid in opens else Code.UNAUTHORIZED
        if rid in opens:
            expected[f"release {rid}"] = Code.UNAUTHORIZED
            expected[f"ack {rid}"] = Code.OK
    expected["register"] = Code.OK if role in REGISTERS else Code.UNAUTHORIZED
    expected["grant"] = Code.UNAUTHORIZED
    expected["erase"] = Code.UNAUTHORIZED
    assert outcomes == expected
