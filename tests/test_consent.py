"""Consent: grants, revocation from the next block, guardians, role policy, decisions."""

from __future__ import annotations

from typing import Any

import pytest
from support.ledger import Ledger, did_of
from support.stateless import apply_without_state

from medchain import crypto, encoding
from medchain.contracts.consent import ConsentHandler, decide
from medchain.contracts.consent.model import grant_key
from medchain.exceptions import Code, InvalidTransaction

HOUR_MS = 3_600_000
ROLES = ["doctor", "nurse", "pharmacist", "lab_technician", "researcher", "regulator"]


@pytest.fixture
def world(ledger: Ledger) -> dict[str, Any]:
    k = {
        n: crypto.generate_keypair()
        for n in [
            "admin_a",
            "admin_b",
            "admin_reg",
            "patient",
            "guardian",
            "stranger_patient",
            *ROLES,
        ]
    }
    ledger.add_org("hosp-a", k["admin_a"])
    ledger.add_org("hosp-b", k["admin_b"])
    ledger.add_org("nhc", k["admin_reg"], "regulator")
    for role in ROLES:
        org, admin = ("nhc", "admin_reg") if role == "regulator" else ("hosp-b", "admin_b")
        ledger.add_staff(k[admin], org, k[role], [role])
    for p in ("patient", "guardian", "stranger_patient"):
        ledger.add_patient(k[p])
    records = {}
    for rid, rtype in (
        ("rx-1", "MedicationRequest"),
        ("obs-1", "Observation"),
        ("note-1", "DocumentReference"),
    ):
        assert (
            ledger.run(
                k["admin_a"],
                "register",
                {
                    "record_id": rid,
                    "patient": did_of(k["patient"]),
                    "resource_type": rtype,
                    "cid": "b" + "a" * 58,
                    "content_hash": bytes(32),
                },
                "records",
            ).code
            == Code.OK
        )
        records[rid] = ledger.state(f"records/record/{rid}")
    return {"keys": k, "records": records}


def grant(ledger: Ledger, signer: crypto.KeyPair, patient: crypto.KeyPair, **over: Any) -> Any:
    payload = {
        "patient": did_of(patient),
        "grantee_kind": "role",
        "grantee": "doctor",
        "purposes": ["TREAT"],
        "scope_types": ["MedicationRequest", "Observation", "DocumentReference"],
        "expires_ms": ledger.app.db.block_time_ms() + HOUR_MS,
        **over,
    }
    return ledger.run(signer, "grant", payload, "consent")


def may(
    ledger: Ledger,
    who: crypto.KeyPair,
    record: dict[str, Any],
    purpose: str = "TREAT",
    now_ms: int | None = None,
) -> bool:
    db = ledger.app.db

    def get(key: str) -> Any:
        raw = db.get(key)
        return None if raw is None else encoding.decode(raw)

    def scan(prefix: str) -> Any:
        return ((k, encoding.decode(v)) for k, v in db.scan(prefix, 1000))

    member = get(f"identity/did/{did_of(who)}")
    now = db.block_time_ms() if now_ms is None else now_ms
    return decide(
        get, scan, member, get(f"records/record/{record['record_id']}"), purpose, now
    ).allowed


# role x record type: what a grant to every role for every type can actually open.
EXPECTED = {
    "doctor": {"rx-1", "obs-1", "note-1"},
    "nurse": {"rx-1", "obs-1"},
    "pharmacist": {"rx-1"},
    "lab_technician": {"obs-1"},
    "researcher": {"obs-1"},
    "regulator": set(),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("state", ["granted", "not_granted", "revoked", "expired"])
def test_authorisation_matrix(ledger: Ledger, world: dict[str, Any], role: str, state: str) -> None:
    k, records = world["keys"], world["records"]
    if state != "not_granted":
        r = grant(
            ledger,
            k["patient"],
            k["patient"],
            grantee_kind="did",
            grantee=did_of(k[role]),
            purposes=["TREAT"],
        )
        assert r.code == Code.OK, r.log
        grant_id = dict(r.events[0].attributes)["grant_id"]
        if state == "revoked":
            assert (
                ledger.run(k["patient"], "revoke", {"grant_id": grant_id}, "consent").code
                == Code.OK
            )
    now = ledger.app.db.block_time_ms() + (2 * HOUR_MS if state == "expired" else 0)
    opened = {rid for rid, rec in records.items() if may(ledger, k[role], rec, now_ms=now)}
    assert opened == (EXPECTED[role] if state == "granted" else set())


def test_patient_always_sees_own_records(ledger: Ledger, world: dict[str, Any]) -> None:
    k = world["keys"]
    assert all(may(ledger, k["patient"], rec) for rec in world["records"].values())
    assert not may(ledger, k["stranger_patient"], world["records"]["rx-1"])


def test_purpose_must_match(ledger: Ledger, world: dict[str, Any]) -> None:
    k = world["keys"]
    assert grant(ledger, k["patient"], k["patient"]).code == Code.OK
    assert may(ledger, k["doctor"], world["records"]["obs-1"], "TREAT")
    assert not may(ledger, k["doctor"], world["records"]["obs-1"], "HRESEARCH")


def test_grant_to_an_org_covers_its_members(ledger: Ledger, world: dict[str, Any]) -> None:
    k = world["keys"]
    assert (
        grant(ledger, k["patient"], k["patient"], grantee_kind="org", grantee="hosp-b").code
        == Code.OK
    )
    assert may(ledger, k["nurse"], world["records"]["obs-1"])
    assert not may(ledger, k["regulator"], world["records"]["obs-1"])  # other org


def test_revocation_is_in_force_from_the_next_block(ledger: Ledger, world: dict[str, Any]) -> None:
    k = world["keys"]
    r = grant(ledger, k["patient"], k["patient"])
    grant_id = dict(r.events[0].attributes)["grant_id"]
    assert may(ledger, k["doctor"], world["records"]["rx-1"])
    assert ledger.run(k["patient"], "revoke", {"grant_id": grant_id}, "consent").code == Code.OK
    assert not may(ledger, k["doctor"], world["records"]["rx-1"])
    assert (
        ledger.run(k["patient"], "revoke", {"grant_id": grant_id}, "consent").code
        == Code.INVALID_STATE
    )


def test_a_revocation_keeps_its_reason_on_the_grant(ledger: Ledger, world: dict[str, Any]) -> None:
    k = world["keys"]
    ids = [dict(grant(ledger, k["patient"], k["patient"]).events[0].attributes)["grant_id"]]
    ids.append(dict(grant(ledger, k["patient"], k["patient"]).events[0].attributes)["grant_id"])
    reason = "changed hospitals; 不再需要"
    revoke = {"grant_id": ids[0], "reason": reason}
    assert ledger.run(k["patient"], "revoke", revoke, "consent").code == Code.OK
    assert ledger.run(k["patient"], "revoke", {"grant_id": ids[1]}, "consent").code == Code.OK
    first, second = (ledger.state(grant_key(i)) for i in ids)
    assert (first["status"], first["revoked_reason"]) == ("revoked", reason)
    assert second["status"] == "revoked" and "revoked_reason" not in second
    assert first["revoked_by"] == did_of(k["patient"])


def test_only_patient_or_guardian_may_grant_and_revoke(
    ledger: Ledger, world: dict[str, Any]
) -> None:
    k = world["keys"]
    assert grant(ledger, k["doctor"], k["patient"]).code == Code.UNAUTHORIZED
    assert grant(ledger, k["guardian"], k["patient"]).code == Code.UNAUTHORIZED
    r = ledger.run(
        k["patient"], "delegate_guardian", {"guardian": did_of(k["guardian"])}, "consent"
    )
    assert r.code == Code.OK
    r = grant(ledger, k["guardian"], k["patient"])
    assert r.code == Code.OK
    grant_id = dict(r.events[0].attributes)["grant_id"]
    assert ledger.state(f"consent/grant/{grant_id}")["granted_by"] == did_of(k["guardian"])
    assert (
        ledger.run(
            k["patient"], "revoke_guardian", {"guardian": did_of(k["guardian"])}, "consent"
        ).code
        == Code.OK
    )
    assert (
        ledger.run(k["guardian"], "revoke", {"grant_id": grant_id}, "consent").code
        == Code.UNAUTHORIZED
    )


@pytest.mark.parametrize(
    "over",
    [
        {"purposes": ["SPYING"]},
        {"purposes": []},
        {"scope_types": ["Spaceship"]},
        {"scope_types": [], "scope_records": []},
        {"expires_ms": 0},
        {"grantee_kind": "planet"},
        {"grantee_kind": "role", "grantee": "patient"},
    ],
)
def test_malformed_grants_are_rejected(
    ledger: Ledger, world: dict[str, Any], over: dict[str, Any]
) -> None:
    k = world["keys"]
    assert grant(ledger, k["patient"], k["patient"], **over).code == Code.INVALID_PAYLOAD


def test_role_policy_is_governed_by_consortium_admin(ledger: Ledger, world: dict[str, Any]) -> None:
    k = world["keys"]
    assert (
        grant(ledger, k["patient"], k["patient"], grantee_kind="role", grantee="pharmacist").code
        == Code.OK
    )
    assert not may(ledger, k["pharmacist"], world["records"]["note-1"])
    payload = {"role": "pharmacist", "resource_types": ["MedicationRequest", "DocumentReference"]}
    assert ledger.run(k["admin_a"], "set_role_policy", payload, "consent").code == (
        Code.UNAUTHORIZED
    )
    assert ledger.run(ledger.admin, "set_role_policy", payload, "consent").code == Code.OK
    assert may(ledger, k["pharmacist"], world["records"]["note-1"])


def test_break_glass_needs_a_second_approver_from_the_same_hospital(
    ledger: Ledger, world: dict[str, Any]
) -> None:
    k, record = world["keys"], world["records"]["obs-1"]
    reason = {"patient": did_of(k["patient"]), "reason": "unconscious in ER, suspected overdose"}
    assert ledger.run(k["nurse"], "break_glass", reason, "consent").code == Code.UNAUTHORIZED
    short = {**reason, "reason": "urgent"}
    assert ledger.run(k["doctor"], "break_glass", short, "consent").code == Code.INVALID_PAYLOAD
    r = ledger.run(k["doctor"], "break_glass", reason, "consent")
    assert r.code == Code.OK
    request_id = dict(r.events[0].attributes)["request_id"]
    assert not may(ledger, k["doctor"], record, "ETREAT")  # not without a second approver

    other_hospital_doctor = crypto.generate_keypair()
    assert (
        ledger.run(
            k["admin_a"],
            "add_member",
            {"org_id": "hosp-a", "public_key": other_hospital_doctor.public, "roles": ["doctor"]},
        ).code
        == Code.OK
    )
    attending = crypto.generate_keypair()
    ledger.add_staff(k["admin_b"], "hosp-b", attending, ["doctor", "attending"])
    approve = {"request_id": request_id}
    for signer in (k["doctor"], other_hospital_doctor, k["nurse"], k["admin_b"]):
        assert ledger.run(signer, "approve_break_glass", approve, "consent").code == (
            Code.UNAUTHORIZED
        )
    r = ledger.run(attending, "approve_break_glass", approve, "consent")
    assert r.code == Code.OK
    opened = dict(r.events[0].attributes)
    assert opened["notify"] == did_of(k["patient"]) and opened["actor"] == did_of(attending)

    assert may(ledger, k["doctor"], record, "ETREAT")
    assert not may(ledger, k["doctor"], record, "TREAT")  # only for emergency treatment
    assert not may(ledger, k["nurse"], record, "ETREAT")  # only for the requesting doctor
    expiry = ledger.state(f"consent/break-glass/{request_id}")["expires_ms"]
    assert not may(ledger, k["doctor"], record, "ETREAT", now_ms=expiry)
    stored = ledger.state(f"consent/break-glass/{request_id}")
    assert stored["reason"] == reason["reason"]
    assert ledger.run(attending, "approve_break_glass", approve, "consent").code == (
        Code.INVALID_STATE
    )


SCOPE = ["Observation"]
VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "grant": {
        "patient": "did:medchain:p",
        "grantee_kind": "role",
        "grantee": "doctor",
        "purposes": ["TREAT"],
        "expires_ms": 2_000_000_000_000,
        "scope_types": SCOPE,
    },
    "revoke": {"grant_id": "g-1", "reason": "no longer treated there"},
    "delegate_guardian": {"guardian": "did:medchain:g"},
    "revoke_guardian": {"guardian": "did:medchain:g"},
    "set_role_policy": {"role": "nurse", "resource_types": SCOPE},
    "set_break_glass_policy": {"requester_roles": ["doctor"], "approver_roles": ["attending"]},
    "break_glass": {"patient": "did:medchain:p", "reason": "unconscious, allergy history needed"},
    "approve_break_glass": {"request_id": "r-1"},
}


@pytest.mark.parametrize("action", sorted(VALID_PAYLOADS))
def test_well_formed_consent_payloads_go_on_to_read_state(action: str) -> None:
    with pytest.raises(AssertionError, match="state read"):
        apply_without_state(ConsentHandler(), action, VALID_PAYLOADS[action])


@pytest.mark.parametrize(
    ("action", "change"),
    [
        ("grant", {"purposes": ["SPYING"]}),
        ("grant", {"purposes": []}),
        ("grant", {"purposes": "TREAT"}),
        ("grant", {"scope_types": ["Spaceship"]}),
        ("grant", {"scope_types": []}),
        ("grant", {"scope_records": [""]}),
        ("grant", {"scope_records": [f"r-{i}" for i in range(201)]}),
        ("grant", {"grantee_kind": "planet"}),
        ("grant", {"grantee": "patient"}),  # a role grantee must be a staff role
        ("grant", {"grantee": "consortium_admin"}),
        ("grant", {"expires_ms": True}),  # bool is not int
        ("revoke", {"reason": "x" * 501}),
        ("revoke", {"reason": None}),
        ("set_role_policy", {"role": "patient"}),
        ("set_role_policy", {"resource_types": ["Spaceship"]}),
        ("set_break_glass_policy", {"requester_roles": []}),
        ("set_break_glass_policy", {"approver_roles": ["pharmacist"]}),
        ("break_glass", {"reason": "   urgent   "}),  # under 10 characters once trimmed
        ("break_glass", {"reason": "x" * 501}),
        ("approve_break_glass", {"request_id": b"r-1"}),  # text is not bytes
    ],
)
def test_consent_payload_rules_hold_before_any_state_read(
    action: str, change: dict[str, Any]
) -> None:
    with pytest.raises(InvalidTransaction) as refused:
        apply_without_state(ConsentHandler(), action, {**VALID_PAYLOADS[action], **change})
    assert refused.value.code == Code.INVALID_PAYLOAD
