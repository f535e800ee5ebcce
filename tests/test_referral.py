"""The referral contract on a real ledger (SQLite, SM2-signed txs, one block per
step): who may refer, approve, accept, report and cancel, and the grants the
approval and the report issue through the consent package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from support.ledger import Ledger, did_of

from medchain import crypto, encoding
from medchain.contracts.consent import decide
from medchain.contracts.consent import model as consent
from medchain.contracts.referral import model as m
from medchain.exceptions import Code

DAY_MS = 86_400_000
REASON = "http://snomed.info/sct|49436004"  # atrial fibrillation
NAMES = (
    "admin_a",
    "admin_b",
    "admin_p",
    "doctor_a",
    "nurse_a",
    "doctor_b",
    "doctor_b2",
    "pharmacist",
    "patient",
    "guardian",
    "stranger",
)


@dataclass
class World:
    ledger: Ledger
    k: dict[str, crypto.KeyPair]

    def did(self, name: str) -> str:
        return did_of(self.k[name])

    def send(
        self, who: str, action: str, payload: dict[str, Any], contract: str = "referral"
    ) -> Any:
        return self.ledger.run(self.k[who], action, payload, contract)

    def ok(self, who: str, action: str, payload: dict[str, Any], contract: str = "referral") -> Any:
        result = self.send(who, action, payload, contract)
        assert result.code == Code.OK, result.log
        return result

    def refused(self, who: str, action: str, payload: dict[str, Any]) -> tuple[Code, str]:
        result = self.send(who, action, payload)
        assert result.code != Code.OK
        return Code(result.code), result.log

    def now(self) -> int:
        return self.ledger.app.db.block_time_ms()

    def register(
        self, admin: str, record_id: str, resource_type: str, patient: str = "patient"
    ) -> None:
        self.ok(
            admin,
            "register",
            {
                "record_id": record_id,
                "patient": self.did(patient),
                "resource_type": resource_type,
                "cid": "b" + "a" * 58,
                "content_hash": bytes(32),
            },
            "records",
        )

    def grant_doctor_a(self, types: list[str]) -> None:
        self.ok(
            "patient",
            "grant",
            {
                "patient": self.did("patient"),
                "grantee_kind": "did",
                "grantee": self.did("doctor_a"),
                "purposes": ["TREAT"],
                "scope_types": types,
                "expires_ms": self.now() + 30 * DAY_MS,
            },
            "consent",
        )

    def state(self, key: str) -> Any:
        return self.ledger.state(key)

    def referral(self, referral_id: str = "ref-1") -> m.Referral:
        found: m.Referral = self.state(m.referral_key(referral_id))
        return found

    def may_read(self, who: str, record_id: str) -> bool:
        db = self.ledger.app.db
        member = self.state(f"identity/did/{self.did(who)}")
        record = self.state(f"records/record/{record_id}")

        def get(key: str) -> Any:
            return self.state(key)

        def scan(prefix: str) -> Any:
            for key, raw in db.scan(prefix, 1000):
                yield key, encoding.decode(raw)

        return decide(get, scan, member, record, "TREAT", self.now()).allowed


@pytest.fixture
def world(ledger: Ledger) -> World:
    k = {n: crypto.generate_keypair() for n in NAMES}
    ledger.add_org("hosp-a", k["admin_a"])
    ledger.add_org("hosp-b", k["admin_b"])
    ledger.add_org("pharm", k["admin_p"], "pharmacy")
    ledger.add_staff(k["admin_a"], "hosp-a", k["doctor_a"], ["doctor"])
    ledger.add_staff(k["admin_a"], "hosp-a", k["nurse_a"], ["nurse"])
    ledger.add_staff(k["admin_b"], "hosp-b", k["doctor_b"], ["doctor"])
    ledger.add_staff(k["admin_b"], "hosp-b", k["doctor_b2"], ["doctor", "attending"])
    ledger.add_staff(k["admin_p"], "pharm", k["pharmacist"], ["pharmacist"])
    for p in ("patient", "guardian", "stranger"):
        ledger.add_patient(k[p])
    w = World(ledger, k)
    w.register("admin_a", "obs-1", "Observation")
    w.register("admin_a", "report-1", "DiagnosticReport")
    w.register("admin_a", "img-1", "ImagingStudy")
    w.register("admin_a", "sr-1", "ServiceRequest")
    w.register("admin_a", "obs-2", "Observation")
    w.grant_doctor_a(["Observation"])
    return w


def refer_payload(w: World, **over: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "referral_id": "ref-1",
        "patient": w.did("patient"),
        "to_org": "hosp-b",
        "to_doctor": w.did("doctor_b"),
        "reason_code": REASON,
        "urgency": "urgent",
        "record_ids": ["obs-2", "obs-1"],
        "service_request_id": "sr-1",
        "expires_ms": w.now() + 7 * DAY_MS,
    }
    return payload | over


def test_referral_end_to_end_grants_exactly_the_package_and_returns_the_report(
    world: World,
) -> None:
    w = world
    w.ok("doctor_a", "refer", refer_payload(w))
    assert w.referral()["status"] == m.REQUESTED
    assert not w.may_read("doctor_b", "obs-2")  # nothing moves before the patient says so
    w.ok("patient", "approve", {"referral_id": "ref-1"})
    referral = w.referral()
    grant = w.state(consent.grant_key(referral["grant_id"]))
    assert grant["grantee_kind"] == "did" and grant["grantee"] == w.did("doctor_b")
    assert grant["scope_records"] == ["obs-1", "obs-2", "sr-1"] and grant["scope_types"] == []
    assert grant["purposes"] == ["TREAT"] and grant["expires_ms"] == referral["expires_ms"]
    assert grant["granted_by"] == w.did("patient")
    assert w.may_read("doctor_b", "obs-2") and w.may_read("doctor_b", "sr-1")
    assert not w.may_read("doctor_b", "report-1")  # outside the package
    assert not w.may_read("doctor_b2", "obs-2")  # the grant names doctor_b alone
    w.ok("doctor_b", "accept", {"referral_id": "ref-1"})
    w.register("admin_b", "consult-1", "DiagnosticReport")
    assert not w.may_read("doctor_a", "consult-1")
    w.ok("doctor_b", "report", {"referral_id": "ref-1", "record_id": "consult-1"})
    referral = w.referral()
    assert referral["status"] == m.COMPLETED and referral["report_record_id"] == "consult-1"
    assert w.may_read("doctor_a", "consult-1")
    assert [s["step"] for s in referral["steps"]] == [
        "requested",
        "approved",
        "accepted",
        "reported",
    ]
    times = [s["time_ms"] for s in referral["steps"]]
    assert times == sorted(times) and len(set(times)) == 4  # one block each, block time
    entries = (
        w.state(m.by_org_key("hosp-b", "ref-1")),
        w.state(m.by_patient_key(w.did("patient"), "ref-1")),
    )
    assert all(e == {"referral_id": "ref-1"} for e in entries)


def test_a_nurse_or_a_pharmacist_may_not_refer(world: World) -> None:
    for who in ("nurse_a", "pharmacist", "admin_a", "stranger"):
        code, log = world.refused(who, "refer", refer_payload(world))
        assert code == Code.UNAUTHORIZED, (who, log)
    assert world.referral() is None


def test_a_doctor_may_not_refer_records_they_cannot_read(world: World) -> None:
    code, log = world.refused(
        "doctor_a", "refer", refer_payload(world, record_ids=["obs-1", "report-1"])
    )
    assert code == Code.UNAUTHORIZED and "report-1" in log and "consent" in log
    world.register("admin_a", "obs-x", "Observation", patient="stranger")
    code, _ = world.refused("doctor_a", "refer", refer_payload(world, record_ids=["obs-x"]))
    assert code == Code.NOT_FOUND  # another patient's record is no part of this package
    code, log = world.refused("doctor_a", "refer", refer_payload(world, service_request_id="img-1"))
    assert code == Code.NOT_FOUND and "ServiceRequest" in log


def test_refer_checks_the_receiving_side_and_the_expiry(world: World) -> None:
    w = world
    assert w.refused("doctor_a", "refer", refer_payload(w, to_org="pharm"))[0] == Code.NOT_FOUND
    assert w.refused("doctor_a", "refer", refer_payload(w, to_org="hosp-a"))[0] == (
        Code.INVALID_PAYLOAD
    )
    wrong_doctor = refer_payload(w, to_doctor=w.did("doctor_a"))  # not of hosp-b
    assert w.refused("doctor_a", "refer", wrong_doctor)[0] == Code.NOT_FOUND
    too_long = refer_payload(w, expires_ms=w.now() + 200 * DAY_MS)
    assert w.refused("doctor_a", "refer", too_long)[0] == Code.INVALID_PAYLOAD
    bad_code = refer_payload(w, reason_code="afib")
    assert w.refused("doctor_a", "refer", bad_code)[0] == Code.INVALID_PAYLOAD
    w.ok("doctor_a", "refer", refer_payload(w))
    assert w.refused("doctor_a", "refer", refer_payload(w))[0] == Code.ALREADY_EXISTS


def test_a_stranger_may_not_approve_and_learns_nothing_of_what_exists(world: World) -> None:
    w = world
    w.ok("doctor_a", "refer", refer_payload(w))
    for who in ("stranger", "doctor_b", "doctor_a"):
        code, log = w.refused(who, "approve", {"referral_id": "ref-1"})
        assert code == Code.UNAUTHORIZED
    _, missing = w.refused("stranger", "approve", {"referral_id": "ref-none"})
    assert missing == log  # the same answer whether or not the referral exists
    assert w.referral()["status"] == m.REQUESTED


def test_a_guardian_approves_and_the_grant_says_so(world: World) -> None:
    w = world
    w.ok("patient", "delegate_guardian", {"guardian": w.did("guardian")}, "consent")
    w.ok("doctor_a", "refer", refer_payload(w))
    w.ok("guardian", "approve", {"referral_id": "ref-1"})
    grant = w.state(consent.grant_key(w.referral()["grant_id"]))
    assert grant["granted_by"] == w.did("guardian") and grant["patient"] == w.did("patient")


def test_an_unnamed_receiving_doctor_means_an_org_grant_any_physician_accepts(
    world: World,
) -> None:
    w = world
    payload = refer_payload(w)
    del payload["to_doctor"]
    w.ok("doctor_a", "refer", payload)
    w.ok("patient", "approve", {"referral_id": "ref-1"})
    grant = w.state(consent.grant_key(w.referral()["grant_id"]))
    assert (grant["grantee_kind"], grant["grantee"]) == ("org", "hosp-b")
    assert w.may_read("doctor_b2", "obs-2")
    w.ok("doctor_b2", "accept", {"referral_id": "ref-1"})
    assert w.referral()["accepted_by"] == w.did("doctor_b2")


def test_only_the_accepting_doctor_reports(world: World) -> None:
    w = world
    w.ok("doctor_a", "refer", refer_payload(w))
    assert w.refused("doctor_b", "accept", {"referral_id": "ref-1"})[0] == Code.INVALID_STATE
    w.ok("patient", "approve", {"referral_id": "ref-1"})
    assert w.refused("doctor_b2", "accept", {"referral_id": "ref-1"})[0] == Code.UNAUTHORIZED
    w.ok("doctor_b", "accept", {"referral_id": "ref-1"})
    w.register("admin_b", "consult-1", "DiagnosticReport")
    w.register("admin_a", "consult-a", "DiagnosticReport")
    w.register("admin_b", "obs-b", "Observation")
    report = {"referral_id": "ref-1", "record_id": "consult-1"}
    for who in ("doctor_b2", "doctor_a", "admin_b", "patient", "stranger"):
        assert w.refused(who, "report", report)[0] == Code.UNAUTHORIZED, who
    for record_id in ("consult-a", "obs-b"):  # not hosp-b's report
        bad = {"referral_id": "ref-1", "record_id": record_id}
        assert w.refused("doctor_b", "report", bad)[0] == Code.NOT_FOUND
    w.ok("doctor_b", "report", report)
    assert w.refused("doctor_b", "report", report)[0] == Code.INVALID_STATE


def test_revoking_the_referral_grant_ends_the_receiving_sides_access(world: World) -> None:
    w = world
    w.ok("doctor_a", "refer", refer_payload(w))
    w.ok("patient", "approve", {"referral_id": "ref-1"})
    grant_id = w.referral()["grant_id"]
    w.ok("patient", "revoke", {"grant_id": grant_id}, "consent")
    assert not w.may_read("doctor_b", "obs-2")
    code, log = w.refused("doctor_b", "accept", {"referral_id": "ref-1"})
    assert code == Code.INVALID_STATE and "revoked" in log
    grant = w.state(consent.grant_key(grant_id))
    assert m.effective_status(w.referral(), grant, w.now()) == "revoked"


def test_cancel_revokes_the_grant_in_the_same_block(world: World) -> None:
    w = world
    w.ok("doctor_a", "refer", refer_payload(w))
    w.ok("patient", "approve", {"referral_id": "ref-1"})
    w.ok("doctor_b", "accept", {"referral_id": "ref-1"})
    assert w.refused("doctor_b", "cancel", {"referral_id": "ref-1"})[0] == Code.UNAUTHORIZED
    assert w.refused("stranger", "cancel", {"referral_id": "ref-1"})[0] == Code.UNAUTHORIZED
    result = w.ok("patient", "cancel", {"referral_id": "ref-1", "reason": "treated nearer home"})
    kinds = [e.type for e in result.events]
    assert kinds == ["consent.revoked", "referral.cancelled"]
    referral = w.referral()
    grant = w.state(consent.grant_key(referral["grant_id"]))
    assert referral["status"] == m.CANCELLED and grant["status"] == consent.REVOKED
    assert not w.may_read("doctor_b", "obs-2")
    steps = m.timeline(referral, grant, [], lambda h: h * 10)
    assert [s["step"] for s in steps][-2:] == ["revoked", "cancelled"]
    assert w.refused("patient", "cancel", {"referral_id": "ref-1"})[0] == Code.INVALID_STATE


def test_the_referring_doctor_may_withdraw_a_referral_before_approval(world: World) -> None:
    w = world
    w.ok("doctor_a", "refer", refer_payload(w))
    w.ok("doctor_a", "cancel", {"referral_id": "ref-1"})
    assert w.refused("patient", "approve", {"referral_id": "ref-1"})[0] == Code.INVALID_STATE


def test_the_patient_may_decline(world: World) -> None:
    w = world
    w.ok("doctor_a", "refer", refer_payload(w))
    w.ok("patient", "decline", {"referral_id": "ref-1", "reason": "  second opinion elsewhere "})
    referral = w.referral()
    assert referral["status"] == m.DECLINED and referral["reason"] == "second opinion elsewhere"
    assert "grant_id" not in referral
    assert w.refused("patient", "approve", {"referral_id": "ref-1"})[0] == Code.INVALID_STATE


def test_an_expired_referral_cannot_be_approved(world: World) -> None:
    w = world
    w.ok("doctor_a", "refer", refer_payload(w, expires_ms=w.now() + 1500))
    w.ok(
        "patient",
        "grant",
        {
            "patient": w.did("patient"),
            "grantee_kind": "org",
            "grantee": "hosp-a",
            "purposes": ["TREAT"],
            "scope_types": ["Observation"],
            "expires_ms": w.now() + DAY_MS,
        },
        "consent",
    )  # one more block: the referral's time is up
    code, log = w.refused("patient", "approve", {"referral_id": "ref-1"})
    assert code == Code.INVALID_STATE and "expired" in log
