"""Health records end to end on a running node: a solo node serving its HTTP
gateway, and a custodian edge serving its own HTTP API, both real servers on
real ports, talking through the same client code the CLI uses."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.consortium import DAY_MS, PRESCRIPTION, REPORT, Consortium, fetch, running_consortium
from support.ledger import CHAIN_ID

from medchain import crypto
from medchain.edge.requester import (
    ExchangeFailed,
    fetch_delivery,
    fetch_record,
    open_session,
)
from medchain.edge.vault import open_record, receipt_from_json, verify_purge_receipt
from medchain.fhir.validate import canonical_json
from medchain.sdk.signing import sign_request


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def as_stored(content: bytes, record_id: str) -> bytes:
    """A FHIR resource as the edge stores it: canonical JSON, id = the record id."""
    return canonical_json(json.loads(content) | {"id": record_id})


def refused(world: Consortium, who: str, record_id: str, purpose: str = "TREAT") -> str:
    with pytest.raises(ExchangeFailed) as e:
        fetch(world, who, record_id, purpose)
    return e.value.code


def test_grant_fetch_decrypt_revoke_refused(world: Consortium) -> None:
    assert refused(world, "doctor_b", "report-1") == "UNAUTHORIZED"  # no consent yet
    grant_id = world.grant("doctor_b", ["DiagnosticReport"])
    got = fetch_record(world.node, world.keys["doctor_b"], "report-1")
    assert got.plaintext == as_stored(REPORT, "report-1")
    assert world.node.session(got.session_id)["status"] == "closed"
    # A session opened before the revocation cannot be released after it.
    pending = open_session(world.node, world.keys["doctor_b"], "report-1", "TREAT")
    world.ok("patient", "consent", "revoke", {"grant_id": grant_id})
    with pytest.raises(ExchangeFailed) as e:
        fetch_delivery(world.node, world.keys["doctor_b"], pending, world.edge_url)
    assert e.value.code == "UNAUTHORIZED" and "release refused" in e.value.message
    assert refused(world, "doctor_b", "report-1") == "UNAUTHORIZED"
    kinds = [
        (e["kind"], e["code"])
        for e in world.node.audit(patient=world.did("patient"), limit=100)["events"]
    ]
    assert ("exchange.acknowledged", 0) in kinds and ("consent.revoked", 0) in kinds
    assert [k for k in kinds if k[0] == "exchange.refused"] == [("exchange.refused", 11)] * 3


def test_role_narrows_what_a_grant_gives(world: Consortium) -> None:
    world.grant("pharmacist_b", ["DiagnosticReport", "MedicationRequest"])
    assert fetch(world, "pharmacist_b", "rx-1") == as_stored(PRESCRIPTION, "rx-1")
    assert refused(world, "pharmacist_b", "report-1") == "UNAUTHORIZED"
    world.grant("hosp-b", ["DiagnosticReport"], kind="org")
    assert refused(world, "nurse_b", "report-1") == "UNAUTHORIZED"  # nurses: no reports
    assert fetch(world, "doctor_b", "report-1")  # org-wide grant, doctor role allows


def test_only_the_requester_gets_the_ciphertext(world: Consortium, tmp_path: Path) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    session_id = open_session(world.node, world.keys["doctor_b"], "report-1", "TREAT")
    for intruder in ("nurse_b", "doctor_a"):
        with pytest.raises(ExchangeFailed) as e:
            fetch_delivery(world.node, world.keys[intruder], session_id, world.edge_url)
        assert e.value.code == "UNAUTHORIZED"
    path = f"/edge/v1/sessions/{session_id}/fetch"
    unsigned = httpx.post(world.edge_url + path)
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "BAD_SIGNATURE"
    stale = sign_request(
        world.keys["doctor_b"], CHAIN_ID, "POST", path, now_ms=int(time.time() * 1000) - 600_000
    )
    assert httpx.post(world.edge_url + path, headers=stale).status_code == 401
    delivery = fetch_delivery(world.node, world.keys["doctor_b"], session_id, world.edge_url)
    # Ciphertext in the wrong hands: no key was released to them, nothing opens.
    ciphertext, wrapped = (
        bytes.fromhex(delivery["ciphertext"]),
        bytes.fromhex(delivery["wrapped_key"]),
    )
    with pytest.raises(crypto.DecryptionFailed):
        open_record("report-1", ciphertext, wrapped, world.keys["nurse_b"])
    assert open_record("report-1", ciphertext, wrapped, world.keys["doctor_b"])
    # The session is spent: a second fetch is refused.
    with pytest.raises(ExchangeFailed) as e:
        fetch_delivery(world.node, world.keys["doctor_b"], session_id, world.edge_url)
    assert e.value.code == "INVALID_STATE"


def test_tampered_blob_is_reported_never_served(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    cid = world.node.record("report-1")["cid"]
    blob = world.edge.vault.root / "blobs" / cid
    data = bytearray(blob.read_bytes())
    data[20] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(ExchangeFailed) as e:
        fetch(world, "doctor_b", "report-1")
    assert e.value.code == "TAMPERED_BLOB" and "backup" in e.value.hint


def test_break_glass_needs_a_second_approver(world: Consortium) -> None:
    r = world.ok(
        "doctor_a",
        "consent",
        "break_glass",
        {"patient": world.did("patient"), "reason": "unconscious after road accident"},
    )
    request_id = r["events"][0]["attributes"]["request_id"]
    assert refused(world, "doctor_a", "report-1", "ETREAT") == "UNAUTHORIZED"
    bad = world.send("doctor_b", "consent", "approve_break_glass", {"request_id": request_id})
    assert bad["code_name"] == "UNAUTHORIZED"  # another hospital's doctor may not approve
    bad = world.send("admin_a", "consent", "approve_break_glass", {"request_id": request_id})
    assert bad["code_name"] == "UNAUTHORIZED"  # an org admin is not an approving clinician
    world.ok("attending_a", "consent", "approve_break_glass", {"request_id": request_id})
    assert fetch(world, "doctor_a", "report-1", "ETREAT")
    assert refused(world, "doctor_a", "report-1", "TREAT") == "UNAUTHORIZED"
    log = world.node.audit(patient=world.did("patient"))["events"]
    opened = [e for e in log if e["kind"] == "exchange.opened"]
    assert opened[-1]["attributes"]["basis"] == f"break-glass {request_id}"
    notice = [e for e in log if e["kind"] == "consent.break_glass_opened"]
    assert notice[0]["attributes"]["notify"] == world.did("patient")


def test_expired_grant_refuses(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport"], expires_in_ms=1500)
    assert fetch(world, "doctor_b", "report-1")
    expires_ms = world.node.grants(world.did("patient"))[0]["expires_ms"]
    time.sleep(max(0.0, expires_ms / 1000 - time.time()) + 0.2)  # solo blocks carry wall time
    assert refused(world, "doctor_b", "report-1") == "UNAUTHORIZED"
    assert world.node.grants(world.did("patient"))[0]["state"] == "expired"


def test_guardian_grants_for_the_patient(world: Consortium) -> None:
    assert (
        world.send(
            "parent",
            "consent",
            "grant",
            {
                "patient": world.did("patient"),
                "grantee_kind": "did",
                "grantee": world.did("doctor_b"),
                "purposes": ["TREAT"],
                "scope_types": ["DiagnosticReport"],
                "expires_ms": world.block_time_ms() + DAY_MS,
            },
        )["code_name"]
        == "UNAUTHORIZED"
    )
    world.ok("patient", "consent", "delegate_guardian", {"guardian": world.did("parent")})
    grant_id = world.grant("doctor_b", ["DiagnosticReport"], as_who="parent")
    assert fetch(world, "doctor_b", "report-1")
    world.ok("patient", "consent", "revoke_guardian", {"guardian": world.did("parent")})
    r = world.send("parent", "consent", "revoke", {"grant_id": grant_id})
    assert r["code_name"] == "UNAUTHORIZED"


def test_erasure_destroys_keys_and_receipts_verify(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    assert fetch(world, "doctor_b", "report-1")
    cid = world.node.record("report-1")["cid"]
    world.ok("patient", "records", "erase", {"record_id": "report-1", "reason": "my right"})
    deadline = time.monotonic() + 10
    while world.edge.vault.has("report-1"):  # the edge follows the chain and purges
        assert time.monotonic() < deadline, "edge did not purge the erased record"
        time.sleep(0.1)
    receipt = httpx.get(f"{world.edge_url}/edge/v1/receipts/report-1").json()
    assert verify_purge_receipt(receipt_from_json(receipt), world.keys["admin_a"].public)
    assert receipt["body"]["cid"] == cid
    assert not verify_purge_receipt(receipt_from_json(receipt), world.keys["admin_b"].public)
    assert not (world.edge.vault.root / "blobs" / cid).exists()
    assert refused(world, "doctor_b", "report-1") == "UNAUTHORIZED"  # record is erased
    assert refused(world, "patient", "report-1") == "UNAUTHORIZED"


def test_bad_uploads_are_refused_and_nothing_is_stored(world: Consortium) -> None:
    before = world.edge.vault.count()
    invalid = json.dumps({"resourceType": "Observation", "status": "final"}).encode()
    r = world.upload("admin_a", invalid, patient=world.did("patient"))
    assert r.status_code == 422 and "not valid FHIR R4" in r.json()["error"]["message"]
    r = world.upload("admin_a", b"\x00\xff not json", patient=world.did("patient"))
    assert r.status_code == 422
    r = world.upload("doctor_b", REPORT, patient=world.did("patient"))  # other hospital
    assert r.status_code == 403
    r = world.upload("admin_a", REPORT, patient=world.did("doctor_b"))  # not a patient
    assert r.status_code == 404
    r = world.upload("admin_a", REPORT, patient=world.did("patient"), record_id="report-1")
    assert r.status_code == 409
    assert world.edge.vault.count() == before


def test_fhir_exports_of_consent_audit_and_provenance(world: Consortium) -> None:
    from fhir.resources.R4B.bundle import Bundle

    patient = world.did("patient")
    grant_id = world.grant("doctor_b", ["DiagnosticReport"], purposes=["TREAT", "HRESEARCH"])
    fetch(world, "doctor_b", "report-1")
    world.ok("patient", "consent", "revoke", {"grant_id": grant_id})
    refused(world, "doctor_b", "report-1")

    consent = world.node.fhir(f"Consent/{grant_id}")
    assert consent["resourceType"] == "Consent" and consent["status"] == "inactive"
    assert consent["patient"]["identifier"]["value"] == patient
    provision = consent["provision"]
    assert [p["code"] for p in provision["purpose"]] == ["HRESEARCH", "TREAT"]
    assert provision["actor"][0]["reference"]["identifier"]["value"] == world.did("doctor_b")
    assert provision["class"][0]["code"] == "DiagnosticReport"

    bundle = world.node.fhir("AuditEvent", patient=patient)
    Bundle.model_validate(bundle)
    events = [e["resource"] for e in bundle["entry"]]
    kinds = [e["subtype"][0]["code"] for e in events]
    assert kinds[:2] == ["records.registered", "records.registered"]
    assert {
        "consent.granted",
        "exchange.opened",
        "exchange.released",
        "exchange.acknowledged",
        "consent.revoked",
        "exchange.refused",
    } <= set(kinds)
    refusal = events[kinds.index("exchange.refused")]
    assert refusal["outcome"] == "4" and "no active consent" in refusal["outcomeDesc"]
    assert refusal["agent"][0]["who"]["identifier"]["value"] == world.did("doctor_b")
    assert refusal["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    release = events[kinds.index("exchange.released")]
    assert release["action"] == "R" and release["outcome"] == "0"
    by_doctor = world.node.fhir("AuditEvent", agent=world.did("doctor_b"))
    assert by_doctor["total"] == 3  # opened, acknowledged, refused

    provenance = world.node.fhir("Provenance", target="report-1")["entry"][0]["resource"]
    assert provenance["agent"][0]["onBehalfOf"]["identifier"]["value"] == "hosp-a"
    assert provenance["activity"]["coding"][0]["code"] == "CREATE"


def test_a_new_version_supersedes_the_old_one(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    amended = json.loads(REPORT)
    amended["conclusion"] = "Amended: no further action needed."
    r = world.upload(
        "admin_a",
        json.dumps(amended).encode(),
        patient=world.did("patient"),
        record_id="report-2",
        supersedes="report-1",
    )
    assert r.status_code == 201, r.text
    assert world.node.record("report-1")["status"] == "superseded"
    assert json.loads(fetch(world, "doctor_b", "report-2"))["conclusion"].startswith("Amended")
    assert refused(world, "doctor_b", "report-1") == "UNAUTHORIZED"  # only the live version
    provenance = world.node.fhir("Provenance", target="report-2")["entry"][0]["resource"]
    assert provenance["activity"]["coding"][0]["code"] == "UPDATE"
    assert provenance["entity"][0]["what"]["identifier"]["value"] == "report-1"
