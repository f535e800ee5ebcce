"""Issue 12, the custodian edge: what erasure leaves on disk, what a record carries
past a role, what search tells a stranger, replayed requests and rotated-out keys.

Each test here failed on the code before its fix. Real node, real edge, real
SQLite files; nothing mocked.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.consortium import Consortium, fetch, running_consortium
from support.ledger import CHAIN_ID, Ledger, did_of

from medchain import crypto
from medchain.contracts.identity.model import rotation_message
from medchain.edge.cid import cid_of
from medchain.edge.custodian import BadRecord, carried_types
from medchain.edge.replay import ReplayCache, ReplayedRequest
from medchain.edge.requester import ExchangeFailed, fetch_delivery, open_session
from medchain.exceptions import Code
from medchain.sdk.signing import (
    PURPOSE_HEADER,
    RequestSigner,
    send_signed,
    sign_request,
    with_query,
)

ERASE_ME = "ERASE-ME-7f3a9c41"  # a code only the erased record carries
OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "urn:oid:1.2.3.4", "code": ERASE_ME}]},
    "effectiveDateTime": "2024-03-01",
    "valueString": f"distinctive result {ERASE_ME}",
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def files_holding(root: Path, secret: bytes) -> list[str]:
    """Every file under `root` (database, WAL, shared memory, blobs, anything) that
    contains `secret` anywhere in its bytes."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and secret in path.read_bytes()
    )


def vault_secrets(vault_db: Path, record_id: str) -> dict[str, bytes]:
    """A record's secrets as the vault's own tables hold them (read before erasure)."""
    conn = sqlite3.connect(f"file:{vault_db}?mode=ro", uri=True)
    try:
        cid, salt = conn.execute(
            "SELECT cid, salt FROM records WHERE record_id = ?", (record_id,)
        ).fetchone()
        wrapped = conn.execute("SELECT recipient, wrapped FROM wrapped_keys WHERE cid = ?", (cid,))
        found = {f"wrapped key for {bytes(r).hex()[:12]}": bytes(w) for r, w in wrapped}
        codes = conn.execute(
            "SELECT value FROM search_values WHERE record_id = ? AND param = 'code'", (record_id,)
        ).fetchall()
    finally:
        conn.close()
    assert [c for (c,) in codes] == [ERASE_ME]
    return {"salt": bytes(salt), **found}


def test_erasure_leaves_no_key_salt_or_index_bytes_anywhere_on_disk(world: Consortium) -> None:
    patient = world.did("patient")
    r = world.upload("admin_a", json.dumps(OBSERVATION).encode(), patient, record_id="obs-erase")
    assert r.status_code == 201, r.text
    world.grant("doctor_b", ["Observation"])
    assert fetch(world, "doctor_b", "obs-erase")  # a grantee's wrapped key is now stored too
    root = world.edge.vault.root
    secrets = vault_secrets(root / "vault.db", "obs-erase")
    assert len(secrets) == 4  # salt, custodian (KEK) copy, patient's and grantee's keys
    wrapped_for_patient = world.edge.vault.wrapped_key("obs-erase", world.keys["patient"].public)
    secrets["data key"] = crypto.unwrap_key(world.keys["patient"], wrapped_for_patient)
    secrets["plaintext"] = ERASE_ME.encode()
    assert files_holding(root, secrets["salt"])  # the scan does see what is there

    world.ok("patient", "records", "erase", {"record_id": "obs-erase"})
    deadline = time.monotonic() + 20
    while httpx.get(f"{world.edge_url}/edge/v1/receipts/obs-erase").status_code != 200:
        assert time.monotonic() < deadline, "the edge issued no purge receipt"
        time.sleep(0.1)

    left = {name: files_holding(root, secret) for name, secret in secrets.items()}
    assert left == {name: [] for name in secrets}


def test_fhir_search_and_read_tell_a_stranger_nothing_about_what_exists(
    world: Consortium,
) -> None:
    patient = world.did("patient")
    r = world.upload("admin_a", json.dumps(OBSERVATION).encode(), patient, record_id="obs-hiv")
    assert r.status_code == 201, r.text
    stranger, _ = world.new_patient()  # any self-registered key

    def ask(key: crypto.KeyPair, path: str, **params: str) -> tuple[int, str, bytes]:
        r = send_signed(key, CHAIN_ID, "GET", world.edge_url, path, params)
        return r.status_code, r.headers["content-type"], r.content

    for scope in ({}, {"patient": patient}):
        present = ask(stranger, "/fhir/Observation", code=ERASE_ME, **scope)
        absent = ask(stranger, "/fhir/Observation", code="NO-SUCH-CODE", **scope)
        # the same answer but for the links echoing the stranger's own query
        echoed = (present[0], present[1], present[2].replace(ERASE_ME.encode(), b"NO-SUCH-CODE"))
        assert echoed == absent
        assert present[0] == 200 and json.loads(present[2])["total"] == 0
    held, kind, body = ask(stranger, "/fhir/Observation/obs-hiv")
    never, never_kind, never_body = ask(stranger, "/fhir/Observation/obs-none")
    assert (held, kind) == (never, never_kind) == (404, "application/fhir+json")
    assert body.replace(b"obs-hiv", b"ID") == never_body.replace(b"obs-none", b"ID")
    # Someone the patient has dealings with still learns that matches were withheld.
    world.grant("doctor_b", ["DiagnosticReport"])
    _, _, related = ask(world.keys["doctor_b"], "/fhir/Observation", code=ERASE_ME)
    assert b"1 matching resource(s) withheld" in related


def test_a_purpose_changed_after_signing_is_refused_by_the_edge(world: Consortium) -> None:
    """The purpose of use is inside the request signature: a FHIR read signed for
    research cannot be relabelled as treatment (or stripped to the TREAT default) on its
    way to a real edge; it is refused as unauthenticated and nothing is served."""
    patient = world.did("patient")
    r = world.upload("admin_a", json.dumps(OBSERVATION).encode(), patient, record_id="obs-why")
    assert r.status_code == 201, r.text
    world.grant("doctor_b", ["Observation"], purposes=["TREAT"])
    path, doctor = "/fhir/Observation/obs-why", world.keys["doctor_b"]

    def read(headers: dict[str, str]) -> httpx.Response:
        return httpx.get(world.edge_url + path, headers=headers)

    research = sign_request(doctor, CHAIN_ID, "GET", path, purpose="HRESEARCH")
    relabelled = read(research | {PURPOSE_HEADER: "TREAT"})
    assert relabelled.status_code == 401, relabelled.text
    assert ERASE_ME not in relabelled.text
    stripped = read({k: v for k, v in research.items() if k != PURPOSE_HEADER})
    assert stripped.status_code == 401, stripped.text
    as_signed = read(research)  # the same request, untouched: no grant covers research
    assert as_signed.status_code == 403 and ERASE_ME not in as_signed.text
    treat = read(sign_request(doctor, CHAIN_ID, "GET", path, purpose="TREAT"))
    assert treat.status_code == 200 and ERASE_ME in treat.text


def test_a_replayed_signed_upload_is_refused_and_registers_nothing(world: Consortium) -> None:
    path = with_query("/edge/v1/records", {"patient": world.did("patient")})
    body = json.dumps(OBSERVATION).encode()
    headers = sign_request(world.keys["admin_a"], CHAIN_ID, "POST", path, body)
    before = world.edge.vault.count()
    first = httpx.post(world.edge_url + path, content=body, headers=headers)
    assert first.status_code == 201, first.text
    replay = httpx.post(world.edge_url + path, content=body, headers=headers)
    assert replay.status_code == 409 and replay.json()["error"]["code"] == "REPLAYED_REQUEST"
    assert world.edge.vault.count() == before + 1
    fresh = world.upload("admin_a", body, world.did("patient"))  # signed anew: accepted
    assert fresh.status_code == 201, fresh.text


def test_replay_memory_is_bounded_and_refuses_what_it_forgot() -> None:
    key, now = crypto.generate_keypair(), 1_800_000_000_000
    cache = ReplayCache(capacity=2, window_ms=300_000)

    def request(at_ms: int) -> RequestSigner:
        return RequestSigner("sm", key.public, at_ms, b"sig", crypto.sm3(b""))

    for at in (now - 3, now - 2, now - 1):  # the third pushes out the oldest
        cache.accept_once(request(at), "POST", "/edge/v1/records", now)
    assert len(cache) == 2
    with pytest.raises(ReplayedRequest):  # forgotten, so refused rather than re-accepted
        cache.accept_once(request(now - 3), "POST", "/edge/v1/records", now)
    with pytest.raises(ReplayedRequest):
        cache.accept_once(request(now - 1), "POST", "/edge/v1/records", now)
    cache.accept_once(request(now), "POST", "/edge/v1/records", now)
    cache.accept_once(request(now - 1), "POST", "/edge/v1/patients", now)  # another request
    later = now + 400_000  # everything above has left the validity window
    cache.accept_once(request(later), "POST", "/edge/v1/records", later)
    assert len(cache) == 1


def test_a_rotated_out_key_cannot_collect_a_session_it_opened(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    old = world.keys["doctor_b"]
    session_id = open_session(world.node, old, "report-1", "TREAT")
    new = crypto.generate_keypair()
    nonce = world.node.account(old)["next_nonce"]
    proof = crypto.sign(new, rotation_message(CHAIN_ID, world.did("doctor_b"), new.public, nonce))
    world.ok("doctor_b", "identity", "rotate_key", {"new_public_key": new.public, "proof": proof})
    with pytest.raises(ExchangeFailed) as e:
        fetch_delivery(world.node, old, session_id, world.edge_url)
    assert e.value.code == "UNAUTHORIZED"
    assert world.node.session(session_id)["status"] == "open"  # nothing was released


HIV_PRESCRIPTION = {
    "resourceType": "MedicationRequest",
    "status": "active",
    "intent": "order",
    "contained": [
        {
            "resourceType": "Condition",
            "id": "dx",
            "subject": {"display": "the patient"},
            "code": {"text": "HIV infection"},
        },
        {
            "resourceType": "Observation",
            "id": "vl",
            "status": "final",
            "code": {"text": "HIV-1 viral load"},
            "valueString": "<50 copies/mL",
        },
        {"resourceType": "Medication", "id": "med", "code": {"text": "dolutegravir 50 mg"}},
    ],
    "medicationReference": {"reference": "#med"},
    "subject": {"display": "the patient"},
    "reasonReference": [{"reference": "#dx"}],
    "supportingInformation": [{"reference": "#vl"}],
    "note": [{"text": "adherence counselling for HIV therapy"}],
}


def test_a_role_must_cover_every_type_a_record_carries(world: Consortium) -> None:
    patient = world.did("patient")
    body = json.dumps(HIV_PRESCRIPTION).encode()
    r = world.upload("admin_a", body, patient, record_id="rx-hiv")
    assert r.status_code == 201, r.text
    assert world.node.record("rx-hiv")["carried_types"] == ["Condition", "Observation"]
    world.grant("pharmacist_b", ["MedicationRequest", "Condition", "Observation"])
    with pytest.raises(ExchangeFailed) as e:
        fetch(world, "pharmacist_b", "rx-hiv")
    assert (
        e.value.code == "UNAUTHORIZED" and "may not see Condition, Observation" in e.value.message
    )
    assert fetch(world, "pharmacist_b", "rx-1")  # a prescription carrying only its drug
    world.grant("doctor_b", ["MedicationRequest"])  # a grant by type must cover them too
    with pytest.raises(ExchangeFailed):
        fetch(world, "doctor_b", "rx-hiv")
    world.grant("doctor_b", ["MedicationRequest", "Condition", "Observation"])
    assert b"HIV infection" in fetch(world, "doctor_b", "rx-hiv")


def test_a_record_carrying_a_type_no_role_policy_governs_is_refused() -> None:
    specimen = {"resourceType": "Specimen", "id": "s", "type": {"text": "HIV swab"}}
    resource = {**HIV_PRESCRIPTION, "contained": [specimen]}
    with pytest.raises(BadRecord, match="carries Specimen inside"):
        carried_types(resource, "rx-x")
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource}]}
    with pytest.raises(BadRecord):
        carried_types(bundle, "b-x")
    entries = [{"resource": HIV_PRESCRIPTION}]
    assert carried_types({**bundle, "entry": entries}, "b-y") == (
        "Condition",
        "MedicationRequest",
        "Observation",
    )


def test_records_contract_keeps_carried_types_and_the_decision_requires_them(
    ledger: Ledger, tmp_path: Path
) -> None:
    k = {n: crypto.generate_keypair() for n in ("admin", "pharmacist", "patient")}
    ledger.add_org("hosp-a", k["admin"])
    ledger.add_staff(k["admin"], "hosp-a", k["pharmacist"], ["pharmacist"])
    ledger.add_patient(k["patient"])
    payload = {
        "record_id": "rx-hiv",
        "patient": did_of(k["patient"]),
        "resource_type": "MedicationRequest",
        "cid": cid_of(b"ciphertext"),
        "content_hash": bytes(32),
    }
    unsorted = {**payload, "carried_types": ["Observation", "Condition"]}
    assert ledger.run(k["admin"], "register", unsorted, "records").code == Code.INVALID_PAYLOAD
    carried = {**payload, "carried_types": ["Condition", "Observation"]}
    assert ledger.run(k["admin"], "register", carried, "records").code == Code.OK
    grant = {
        "patient": did_of(k["patient"]),
        "grantee_kind": "did",
        "grantee": did_of(k["pharmacist"]),
        "purposes": ["TREAT"],
        "scope_records": ["rx-hiv"],
        "expires_ms": ledger.app.db.block_time_ms() + 3_600_000,
    }
    assert ledger.run(k["patient"], "grant", grant, "consent").code == Code.OK
    request = {"record_id": "rx-hiv", "purpose": "TREAT"}
    refused = ledger.run(k["pharmacist"], "request", request, "exchange")
    assert refused.code == Code.UNAUTHORIZED and "Condition, Observation" in refused.log
