"""Exchange end to end: consent-gated sessions, key release by the custodian's vault,
acknowledgement, and a revocation that stops the very next request and release."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.ledger import CHAIN_ID, DATA, Ledger, did_of
from support.stateless import apply_without_state

from medchain import crypto
from medchain.contracts.exchange import ExchangeHandler
from medchain.contracts.exchange.model import MAX_ACCESS_RECORDS
from medchain.edge.vault import Vault, content_hash, open_record
from medchain.exceptions import Code, InvalidTransaction

REPORT = (DATA / "fhir" / "spec-examples" / "DiagnosticReport-f201.json").read_bytes()
HOUR_MS = 3_600_000


@pytest.fixture
def world(ledger: Ledger, tmp_path: Path) -> dict[str, Any]:
    k = {
        n: crypto.generate_keypair()
        for n in ("admin_a", "admin_b", "nurse_a", "doctor_b", "patient")
    }
    ledger.add_org("hosp-a", k["admin_a"])
    ledger.add_org("hosp-b", k["admin_b"])
    ledger.add_staff(k["admin_a"], "hosp-a", k["nurse_a"], ["nurse"])
    ledger.add_staff(k["admin_b"], "hosp-b", k["doctor_b"], ["doctor"])
    ledger.add_patient(k["patient"])
    vault = Vault(tmp_path / "vault-a", k["admin_a"])
    stored = vault.store("dr-1", REPORT, k["patient"].public)
    assert (
        ledger.run(
            k["admin_a"],
            "register",
            {
                "record_id": "dr-1",
                "patient": did_of(k["patient"]),
                "resource_type": "DiagnosticReport",
                "cid": stored.cid,
                "content_hash": stored.content_hash,
            },
            "records",
        ).code
        == Code.OK
    )
    return {"keys": k, "vault": vault}


def run(ledger: Ledger, key: crypto.KeyPair, action: str, payload: dict[str, Any]) -> Any:
    return ledger.run(key, action, payload, "exchange")


def grant_doctor(ledger: Ledger, k: dict[str, crypto.KeyPair]) -> str:
    r = ledger.run(
        k["patient"],
        "grant",
        {
            "patient": did_of(k["patient"]),
            "grantee_kind": "did",
            "grantee": did_of(k["doctor_b"]),
            "purposes": ["TREAT"],
            "scope_records": ["dr-1"],
            "expires_ms": ledger.app.db.block_time_ms() + HOUR_MS,
        },
        "consent",
    )
    assert r.code == Code.OK
    return str(dict(r.events[0].attributes)["grant_id"])


def test_consented_doctor_gets_decrypts_and_acknowledges(
    ledger: Ledger, world: dict[str, Any]
) -> None:
    k, vault = world["keys"], world["vault"]
    grant_doctor(ledger, k)
    r = run(ledger, k["doctor_b"], "request", {"record_id": "dr-1", "purpose": "TREAT"})
    assert r.code == Code.OK, r.log
    session_id = dict(r.events[0].attributes)["session_id"]
    session = ledger.state(f"exchange/session/{session_id}")
    # The custodian's edge sees the event, releases on chain, then re-wraps the key.
    assert run(ledger, k["nurse_a"], "release", {"session_id": session_id}).code == Code.OK
    wrapped = vault.release_key("dr-1", session["requester_key"])
    plain = open_record("dr-1", vault.ciphertext(vault.cid("dr-1")), wrapped, k["doctor_b"])
    assert plain == REPORT
    ack = {"session_id": session_id, "content_hash": content_hash(vault.salt("dr-1"), plain)}
    assert run(ledger, k["doctor_b"], "ack", ack).code == Code.OK
    assert ledger.state(f"exchange/session/{session_id}")["status"] == "closed"


def test_revocation_stops_the_next_request_and_any_pending_release(
    ledger: Ledger, world: dict[str, Any]
) -> None:
    k = world["keys"]
    grant_id = grant_doctor(ledger, k)
    r = run(ledger, k["doctor_b"], "request", {"record_id": "dr-1", "purpose": "TREAT"})
    session_id = dict(r.events[0].attributes)["session_id"]
    assert ledger.run(k["patient"], "revoke", {"grant_id": grant_id}, "consent").code == Code.OK
    refused = run(ledger, k["nurse_a"], "release", {"session_id": session_id})
    assert refused.code == Code.UNAUTHORIZED and "release refused" in refused.log
    again = run(ledger, k["doctor_b"], "request", {"record_id": "dr-1", "purpose": "TREAT"})
    assert again.code == Code.UNAUTHORIZED and "no active consent" in again.log


def test_without_consent_nothing_opens(ledger: Ledger, world: dict[str, Any]) -> None:
    k = world["keys"]
    r = run(ledger, k["doctor_b"], "request", {"record_id": "dr-1", "purpose": "TREAT"})
    assert r.code == Code.UNAUTHORIZED


def test_only_custodian_releases_and_only_requester_acks(
    ledger: Ledger, world: dict[str, Any]
) -> None:
    k = world["keys"]
    grant_doctor(ledger, k)
    r = run(ledger, k["doctor_b"], "request", {"record_id": "dr-1", "purpose": "TREAT"})
    session_id = dict(r.events[0].attributes)["session_id"]
    assert run(ledger, k["doctor_b"], "release", {"session_id": session_id}).code == (
        Code.UNAUTHORIZED
    )
    assert run(
        ledger, k["doctor_b"], "ack", {"session_id": session_id, "content_hash": bytes(32)}
    ).code == (Code.INVALID_STATE)  # not released yet
    assert run(ledger, k["nurse_a"], "release", {"session_id": session_id}).code == Code.OK
    assert (
        run(ledger, k["nurse_a"], "ack", {"session_id": session_id, "content_hash": bytes(32)}).code
        == Code.UNAUTHORIZED
    )
    assert (
        run(
            ledger, k["doctor_b"], "ack", {"session_id": session_id, "content_hash": bytes(32)}
        ).code
        == Code.OK
    )
    assert ledger.state(f"exchange/session/{session_id}")["status"] == "disputed"


def test_expired_session_cannot_be_released(ledger: Ledger, world: dict[str, Any]) -> None:
    k = world["keys"]
    grant_doctor(ledger, k)
    r = run(ledger, k["doctor_b"], "request", {"record_id": "dr-1", "purpose": "TREAT"})
    session_id = dict(r.events[0].attributes)["session_id"]
    for _ in range(601):  # Ledger blocks are 1 s apart; sessions last 10 minutes
        ledger.commit([])
    refused = run(ledger, k["nurse_a"], "release", {"session_id": session_id})
    assert refused.code == Code.INVALID_STATE and "expired" in refused.log


def test_audit_logs_show_who_accessed_what_and_why(ledger: Ledger, world: dict[str, Any]) -> None:
    k = world["keys"]
    patient, doctor, nurse = did_of(k["patient"]), did_of(k["doctor_b"]), did_of(k["nurse_a"])
    admin = did_of(k["admin_a"])
    grant_id = grant_doctor(ledger, k)
    r = run(ledger, k["doctor_b"], "request", {"record_id": "dr-1", "purpose": "TREAT"})
    session_id = dict(r.events[0].attributes)["session_id"]
    assert run(ledger, k["nurse_a"], "release", {"session_id": session_id}).code == Code.OK
    refused = run(ledger, k["doctor_b"], "request", {"record_id": "dr-1", "purpose": "HRESEARCH"})
    assert refused.code == Code.UNAUTHORIZED
    db = ledger.app.db

    log = db.audit(patient=patient)
    assert [(e["kind"], e["actor"], e["code"]) for e in log] == [
        ("records.registered", admin, 0),
        ("consent.granted", patient, 0),
        ("exchange.opened", doctor, 0),
        ("exchange.released", nurse, 0),
        ("exchange.refused", doctor, int(Code.UNAUTHORIZED)),
    ]
    opened, refusal = log[2]["attributes"], log[4]["attributes"]
    assert opened["basis"] == f"grant {grant_id}" and opened["session_id"] == session_id
    assert refusal["purpose"] == "HRESEARCH" and "no active consent" in refusal["reason"]
    assert all(e["time_ms"] > 0 and e["record_id"] in (None, "dr-1") for e in log)
    assert [e["kind"] for e in db.audit(actor=doctor)] == ["exchange.opened", "exchange.refused"]
    assert db.audit(record_id="dr-1")[0]["kind"] == "records.registered"
    assert db.audit(patient=patient, after=log[2]["seq"], limit=1) == [log[3]]
    assert db.audit(actor="did:medchain:nobody") == []


def test_direct_reads_carry_the_readers_signature(ledger: Ledger, world: dict[str, Any]) -> None:
    from medchain.sdk.signing import sign_request, verify_request

    k = world["keys"]
    grant_doctor(ledger, k)
    now = ledger.app.db.block_time_ms()
    path = "/fhir/DiagnosticReport/dr-1"

    def proof(key: crypto.KeyPair, time_ms: int = now) -> dict[str, Any]:
        headers = sign_request(key, CHAIN_ID, "GET", path, now_ms=time_ms)
        signer = verify_request(headers, CHAIN_ID, "GET", path, b"", now_ms=time_ms)
        return signer.proof("GET", path)

    def access(staff: str, request: dict[str, Any], ids: list[str] | None = None) -> Any:
        payload = {"request": request, "record_ids": ids or ["dr-1"]}
        return run(ledger, k[staff], "access", payload)

    ok = access("nurse_a", proof(k["doctor_b"]))
    assert ok.code == Code.OK, ok.log
    event = dict(ok.events[0].attributes)
    assert ok.events[0].type == "exchange.accessed"
    assert event["actor"] == did_of(k["doctor_b"]) and event["served_by"] == did_of(k["nurse_a"])
    # Someone without consent: the tx succeeds and records the refusal.
    denied = access("nurse_a", proof(k["nurse_a"]))
    assert denied.code == Code.OK and denied.events[0].type == "exchange.refused"
    request = proof(k["doctor_b"])
    assert access("nurse_a", request).code == Code.OK
    assert access("nurse_a", request).code == Code.DUPLICATE_TX  # each signed request once
    forged = proof(k["doctor_b"]) | {"path": "/fhir/DiagnosticReport/other"}
    assert access("nurse_a", forged).code == Code.BAD_SIGNATURE
    stale = proof(k["doctor_b"], time_ms=now - 600_000)
    assert access("nurse_a", stale).code == Code.INVALID_STATE
    assert access("doctor_b", proof(k["doctor_b"])).code == Code.UNAUTHORIZED  # not the custodian
    audit = ledger.app.db.audit(actor=did_of(k["doctor_b"]))
    assert [e["kind"] for e in audit].count("exchange.accessed") == 2


PROOF: dict[str, Any] = {
    "suite": "sm",
    "public_key": b"\x02" * 33,
    "method": "GET",
    "path": "/fhir/DiagnosticReport/dr-1",
    "time_ms": 1,
    "body_sm3": bytes(32),
    "purpose": "TREAT",
    "signature": b"\x00" * 64,
}
VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "request": {"record_id": "dr-1", "purpose": "TREAT"},
    "release": {"session_id": "a" * 32},
    "ack": {"session_id": "a" * 32, "content_hash": bytes(32)},
    "access": {"request": PROOF, "record_ids": ["dr-1"]},
}
WRONG_TYPES = {"request": "purpose", "release": "session_id", "ack": "content_hash"}


@pytest.mark.parametrize("action", sorted(VALID_PAYLOADS))
def test_malformed_payloads_are_refused_before_any_state_read(action: str) -> None:
    valid = VALID_PAYLOADS[action]
    first = next(iter(valid))
    wrong = WRONG_TYPES.get(action, "record_ids")
    for payload in ({k: v for k, v in valid.items() if k != first}, {**valid, "x": 1}):
        with pytest.raises(InvalidTransaction) as refused:
            apply_without_state(ExchangeHandler(), action, payload)
        assert refused.value.code == Code.INVALID_PAYLOAD, payload
    with pytest.raises(InvalidTransaction) as refused:
        apply_without_state(ExchangeHandler(), action, {**valid, wrong: 7})
    assert refused.value.code == Code.INVALID_PAYLOAD
    with pytest.raises(AssertionError, match="state read"):  # well formed: on to state
        apply_without_state(ExchangeHandler(), action, valid)


@pytest.mark.parametrize(
    ("action", "change"),
    [
        ("request", {"purpose": "SHOPPING"}),
        ("access", {"record_ids": []}),
        ("access", {"record_ids": [f"r-{i}" for i in range(MAX_ACCESS_RECORDS + 1)]}),
        ("access", {"record_ids": ["dr-1", 2]}),
        ("access", {"request": PROOF | {"purpose": "SHOPPING"}}),  # the signed purpose
        ("access", {"request": PROOF | {"extra": b""}}),
        ("access", {"request": {k: v for k, v in PROOF.items() if k != "signature"}}),
        ("access", {"request": PROOF | {"time_ms": True}}),  # bool is not int
    ],
)
def test_exchange_payload_rules_hold_before_any_state_read(
    action: str, change: dict[str, Any]
) -> None:
    with pytest.raises(InvalidTransaction) as refused:
        apply_without_state(ExchangeHandler(), action, {**VALID_PAYLOADS[action], **change})
    assert refused.value.code == Code.INVALID_PAYLOAD
