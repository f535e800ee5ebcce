"""Issue 12, finding 2: who may read from the node's gateway; finding 5 (second half):
the purpose of use is inside the request signature.

A real chain (SQLite) behind the real FastAPI gateway; a real edge server for
the purpose test. Each test names the behaviour and fails on the old code,
which answered every read below to anyone and signed no purpose.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.ledger import CHAIN_ID, Ledger, did_of, signed_get
from support.servers import free_port

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.contracts.exchange.proof import request_message
from medchain.exceptions import Code
from medchain.gateway.app import create_app, create_public_app
from medchain.gateway.auth import add_operator, load_operators
from medchain.sdk.client import Client
from medchain.sdk.signing import BadRequestSignature, sign_request, verify_request

NAMES = ("admin_a", "doctor_a", "admin_b", "doctor_b", "patient", "stranger", "reg_admin",
         "regulator", "operator", "guardian")  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two hospitals, a regulator, a patient with one record granted to doctor_b (who
    opened a session), a pending break-glass request, a guardian, a stranger (a
    self-registered patient) and an operator key the node lists."""
    ledger = Ledger(tmp_path / "chain.db", crypto.generate_keypair())
    k = {n: crypto.generate_keypair() for n in NAMES}
    ledger.add_org("hosp-a", k["admin_a"])
    ledger.add_staff(k["admin_a"], "hosp-a", k["doctor_a"], ["doctor", "attending"])
    ledger.add_org("hosp-b", k["admin_b"])
    ledger.add_staff(k["admin_b"], "hosp-b", k["doctor_b"], ["doctor"])
    ledger.add_org("nhc", k["reg_admin"], org_type="regulator")
    ledger.add_staff(k["reg_admin"], "nhc", k["regulator"], ["regulator"])
    for p in ("patient", "stranger", "guardian"):
        ledger.add_patient(k[p])
    patient = did_of(k["patient"])
    register = {
        "record_id": "obs-1",
        "patient": patient,
        "resource_type": "Observation",
        "cid": "b" + "a" * 58,
        "content_hash": bytes(32),
    }
    assert ledger.run(k["admin_a"], "register", register, "records").code == 0
    grant = {
        "patient": patient,
        "grantee_kind": "did",
        "grantee": did_of(k["doctor_b"]),
        "purposes": ["TREAT"],
        "expires_ms": ledger.app.db.block_time_ms() + 10**9,
        "scope_types": ["Observation"],
    }
    granted = ledger.run(k["patient"], "grant", grant, "consent")
    assert granted.code == 0, granted.log
    guardian = {"guardian": did_of(k["guardian"])}
    assert ledger.run(k["patient"], "delegate_guardian", guardian, "consent").code == 0
    opened = ledger.run(k["doctor_b"], "request", {"record_id": "obs-1", "purpose": "TREAT"},
                        "exchange")  # fmt: skip
    assert opened.code == 0, opened.log
    emergency = {"patient": patient, "reason": "unconscious, allergy status unknown"}
    glass = ledger.run(k["doctor_a"], "break_glass", emergency, "consent")
    assert glass.code == 0, glass.log
    ids = {
        "grant": granted.tx_id.hex()[:32],
        "session": dict(opened.events[0].attributes)["session_id"],
        "break_glass": glass.tx_id.hex()[:32],
        "tx": opened.tx_id.hex(),
    }
    engine = SoloEngine(ledger.app, block_interval=0.01)
    engine.start()
    operators = frozenset({(k["operator"].suite, k["operator"].public)})
    with TestClient(create_app(engine, operators)) as client:
        yield {"client": client, "ledger": ledger, "keys": k, "ids": ids, "engine": engine,
               "patient": patient}  # fmt: skip
    engine.stop()


def personal_reads(w: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every read of the finding, with the parameters that name a real patient's things."""
    ids, patient, doctor_b = w["ids"], w["patient"], did_of(w["keys"]["doctor_b"])
    return [
        (f"/v1/patients/{patient}/records", {}),
        (f"/v1/patients/{patient}/grants", {}),
        ("/v1/records/obs-1", {}),
        ("/v1/audit", {"patient": patient}),
        ("/v1/audit", {"actor": doctor_b}),
        ("/v1/audit", {"record": "obs-1"}),
        ("/v1/audit/export", {"from_ms": 0, "to_ms": 2 * 10**12}),
        (f"/v1/consent/grants/{ids['grant']}", {}),
        (f"/v1/consent/break-glass/{ids['break_glass']}", {}),
        (f"/v1/exchange/sessions/{ids['session']}", {}),
        ("/v1/access", {"member": doctor_b, "record": "obs-1"}),
        ("/v1/recognition/candidates", {"patient": patient, "member": doctor_b}),
        ("/v1/state", {"prefix": "identity/"}),
        ("/v1/blocks/latest", {}),
        ("/v1/blocks/1", {}),
        ("/v1/supply/trace/LOT-1", {}),
        ("/v1/supply/shipments/SHIP-1", {}),
        ("/v1/proofs/state", {"key": "records/record/obs-1"}),
        (f"/v1/proofs/tx/{ids['tx']}", {}),
        ("/v1/supervision/alerts", {}),
        ("/fhir/Consent", {"patient": patient}),
        (f"/fhir/Consent/{ids['grant']}", {}),
        ("/fhir/AuditEvent", {"patient": patient}),
        ("/fhir/Provenance", {"target": "obs-1"}),
    ]


def test_unsigned_personal_reads_are_refused_with_a_hint(world: dict[str, Any]) -> None:
    client = world["client"]
    for path, params in personal_reads(world):
        r = client.get(path, params=params)
        assert r.status_code == 401, (path, r.text)
        error = r.json()["error"]
        assert error["code"] == "UNAUTHENTICATED" and "X-MedChain-Signature" in error["hint"]


def test_forged_stale_or_unknown_signatures_are_refused(world: dict[str, Any]) -> None:
    client, k = world["client"], world["keys"]
    path = f"/v1/patients/{world['patient']}/records"
    headers = sign_request(k["patient"], CHAIN_ID, "GET", path)
    other = f"/v1/patients/{did_of(k['stranger'])}/records"
    assert client.get(other, headers=headers).status_code == 401  # signed for another path
    stale = sign_request(k["patient"], CHAIN_ID, "GET", path, now_ms=1_000)
    assert client.get(path, headers=stale).status_code == 401
    wrong_chain = sign_request(k["patient"], "another-chain", "GET", path)
    assert client.get(path, headers=wrong_chain).status_code == 401
    unknown = signed_get(client, crypto.generate_keypair(), path)
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "UNAUTHENTICATED"


def test_a_stranger_learns_nothing_about_a_patient(world: dict[str, Any]) -> None:
    """A self-registered key gets, for a patient with records, grants, sessions and
    an emergency request, exactly what it gets for a patient with none."""
    client, k, ids = world["client"], world["keys"], world["ids"]
    stranger, real, empty = k["stranger"], world["patient"], did_of(k["guardian"])

    def ask(path: str, params: dict[str, Any] | None = None) -> tuple[int, Any]:
        r = signed_get(client, stranger, path, params)
        return r.status_code, r.json() if "json" in r.headers["content-type"] else r.text

    for template, params in (
        ("/v1/patients/{p}/records", {}),
        ("/v1/patients/{p}/grants", {}),
        ("/v1/audit", {"patient": "{p}"}),
        ("/fhir/Consent", {"patient": "{p}"}),
        ("/fhir/AuditEvent", {"patient": "{p}"}),
        ("/v1/recognition/candidates", {"patient": "{p}"}),
    ):
        answers = [
            ask(template.format(p=p), {n: v.format(p=p) for n, v in params.items()})
            for p in (real, empty)
        ]
        assert answers[0] == answers[1], template
        assert answers[0][0] == 200 and real not in str(answers[0][1])

    for real_path, missing_path in (
        (f"/v1/consent/grants/{ids['grant']}", "/v1/consent/grants/{}"),
        (f"/v1/consent/break-glass/{ids['break_glass']}", "/v1/consent/break-glass/{}"),
        (f"/v1/exchange/sessions/{ids['session']}", "/v1/exchange/sessions/{}"),
        ("/v1/records/obs-1", "/v1/records/{}"),
        (f"/fhir/Consent/{ids['grant']}", "/fhir/Consent/{}"),
    ):
        real_id = real_path.rsplit("/", 1)[1]
        found, missing = ask(real_path), ask(missing_path.format("x" * len(real_id)))
        assert found[0] == missing[0] == 404
        assert found[1]["error"]["message"].replace(real_id, "x" * len(real_id)) == (
            missing[1]["error"]["message"]
        )
        assert "unconscious" not in str(found[1])

    doctor_b = did_of(k["doctor_b"])
    real_access = ask("/v1/access", {"member": doctor_b, "record": "obs-1"})
    no_record = ask("/v1/access", {"member": doctor_b, "record": "obs-999"})
    no_member = ask("/v1/access", {"member": "did:medchain:none", "record": "obs-1"})
    assert real_access == no_record == no_member
    assert real_access[1]["allowed"] is False and real_access[1]["grant_id"] is None

    export = ask("/v1/audit/export", {"from_ms": 0, "to_ms": 2 * 10**12})
    assert export[0] == 200 and real not in export[1] and "hosp-a" not in export[1]
    for operator_only in ("/v1/state", "/v1/blocks/latest", "/v1/supervision/alerts"):
        params = {"prefix": "identity/"} if operator_only == "/v1/state" else {}
        assert ask(operator_only, params)[0] == 403
    assert ask("/v1/proofs/state", {"key": "records/record/obs-1"})[0] == 404
    assert ask(f"/v1/proofs/tx/{ids['tx']}")[0] == 404


def test_the_patient_and_guardian_see_their_own(world: dict[str, Any]) -> None:
    client, k, ids, patient = world["client"], world["keys"], world["ids"], world["patient"]
    for who in ("patient", "guardian"):
        records = signed_get(client, k[who], f"/v1/patients/{patient}/records").json()
        assert [r["record_id"] for r in records] == ["obs-1"]
        grants = signed_get(client, k[who], f"/v1/patients/{patient}/grants").json()
        assert [g["grant_id"] for g in grants] == [ids["grant"]]
        audit = signed_get(client, k[who], "/v1/audit", {"patient": patient}).json()
        kinds = {e["kind"] for e in audit["events"]}
        assert {"records.registered", "consent.granted", "exchange.opened"} <= kinds
        glass = signed_get(client, k[who], f"/v1/consent/break-glass/{ids['break_glass']}")
        assert glass.status_code == 200 and "unconscious" in glass.json()["reason"]
        fhir = signed_get(client, k[who], "/fhir/Consent", {"patient": patient}).json()
        assert len(fhir["entry"]) == 1
        proof = signed_get(client, k[who], "/v1/proofs/state", {"key": "records/record/obs-1"})
        assert proof.status_code == 200


def test_staff_see_what_their_org_holds_or_was_granted(world: dict[str, Any]) -> None:
    client, k, ids, patient = world["client"], world["keys"], world["ids"], world["patient"]
    doctor_b = did_of(k["doctor_b"])
    # The custodian (hosp-a) sees the record it holds and its audit events.
    assert signed_get(client, k["admin_a"], "/v1/records/obs-1").status_code == 200
    held = signed_get(client, k["admin_a"], f"/v1/patients/{patient}/records").json()
    assert [r["record_id"] for r in held] == ["obs-1"]
    # doctor_b sees the grant naming them, their session, and may read the record.
    grants = signed_get(client, k["doctor_b"], f"/v1/patients/{patient}/grants").json()
    assert [g["grant_id"] for g in grants] == [ids["grant"]]
    session = signed_get(client, k["doctor_b"], f"/v1/exchange/sessions/{ids['session']}")
    assert session.status_code == 200 and session.json()["requester"] == doctor_b
    mine = signed_get(client, k["doctor_b"], "/v1/access", {"member": doctor_b, "record": "obs-1"})
    assert mine.json()["allowed"] is True and mine.json()["grant_id"] == ids["grant"]
    own = signed_get(client, k["doctor_b"], "/v1/audit", {"actor": doctor_b}).json()
    assert [e["kind"] for e in own["events"]] == ["exchange.opened"]
    # hosp-b staff do not see the emergency request of hosp-a, nor hosp-a's audit of it.
    glass = signed_get(client, k["doctor_b"], f"/v1/consent/break-glass/{ids['break_glass']}")
    assert glass.status_code == 404
    colleague = signed_get(client, k["doctor_a"], f"/v1/consent/break-glass/{ids['break_glass']}")
    assert colleague.status_code == 200  # clinical staff of the same hospital may approve it
    # Staff cannot read raw state or blocks.
    assert signed_get(client, k["admin_a"], "/v1/state", {"prefix": "identity/"}).status_code == 403


def test_regulators_supervise_and_operators_read_raw_chain_data(world: dict[str, Any]) -> None:
    client, k, patient = world["client"], world["keys"], world["patient"]
    export = signed_get(client, k["regulator"], "/v1/audit/export",
                        {"from_ms": 0, "to_ms": 2 * 10**12}).text  # fmt: skip
    assert patient in export and "consent.break_glass_requested" in export
    assert signed_get(client, k["regulator"], "/v1/blocks/1").status_code == 200
    assert signed_get(client, k["regulator"], "/v1/state", {"prefix": "id"}).status_code == 403
    state = signed_get(client, k["operator"], "/v1/state", {"prefix": "identity/did/"})
    assert state.status_code == 200 and len(state.json()["items"]) >= 8
    assert signed_get(client, k["operator"], "/v1/blocks/latest").status_code == 200
    # The chain's consortium admin is an operator of every node without being listed.
    admin = world["ledger"].admin
    assert signed_get(client, admin, "/v1/state", {"key": "identity/org/nhc"}).status_code == 200


def test_public_routes_stay_public(world: dict[str, Any]) -> None:
    client, k = world["client"], world["keys"]
    assert client.get("/v1/status").status_code == 200
    assert client.get(f"/v1/identity/dids/{world['patient']}").status_code == 200
    assert client.get("/v1/identity/orgs").status_code == 200
    assert client.get("/v1/identity/orgs/hosp-a").status_code == 200
    assert client.get(f"/v1/accounts/sm/{k['patient'].public.hex()}").status_code == 200
    assert client.get(f"/v1/txs/{world['ids']['tx']}").json()["status"] == "committed"
    assert client.get("/01/06901234567892/21/SER-1").status_code == 404  # public, no such pack


def test_public_only_app_serves_only_the_public_routes(world: dict[str, Any]) -> None:
    with TestClient(create_public_app(world["engine"])) as public:
        assert public.get("/v1/status").status_code == 200
        assert public.get("/v1/identity/orgs").status_code == 200
        paths = public.get("/openapi.json").json()["paths"]
        assert "/v1/txs" in paths and "/01/{gtin}/21/{serial}" in paths
        for path, params in personal_reads(world):
            assert public.get(path, params=params).status_code == 404, path
            signed = signed_get(public, world["keys"]["operator"], path, params)
            assert signed.status_code == 404, path
        assert not [p for p in paths if p.startswith(("/fhir", "/v1/audit", "/v1/state"))]


def test_openapi_describes_the_signature_headers(world: dict[str, Any]) -> None:
    paths = world["client"].get("/openapi.json").json()["paths"]
    params = {p["name"] for p in paths["/v1/patients/{did}/records"]["get"]["parameters"]}
    assert {"X-MedChain-Key", "X-MedChain-Signature", "X-MedChain-Purpose"} <= params
    assert not [p for p in paths["/v1/status"]["get"].get("parameters", [])]


def test_client_signs_reads_with_its_key(world: dict[str, Any], tmp_path: Path) -> None:
    """medchain.sdk.client.Client(url, key=...) signs every read; without a key it reads
    only the public routes. Operators come from <home>/operators.json."""
    from medchain.node import GatewayServer

    k = world["keys"]
    assert add_operator(tmp_path, "edge", k["admin_a"].suite, k["admin_a"].public)
    assert not add_operator(tmp_path, "edge", k["admin_a"].suite, k["admin_a"].public)
    operators = load_operators(tmp_path)
    server = GatewayServer(world["engine"], port=free_port(), operators=operators)
    server.start()
    try:
        anonymous = Client(server.url)
        with pytest.raises(Exception, match="UNAUTHENTICATED"):
            anonymous.patient_records(world["patient"])
        patient = Client(server.url, key=k["patient"])
        assert [r["record_id"] for r in patient.patient_records(world["patient"])] == ["obs-1"]
        assert patient.audit(patient=world["patient"], limit=2)["events"]
        edge = Client(server.url, key=k["admin_a"])
        assert edge.member(did_of(k["doctor_a"]))["org_id"] == "hosp-a"
        assert edge.block_time_ms() == world["ledger"].app.db.block_time_ms()
    finally:
        server.stop()


# -- finding 5: the purpose is signed ---------------------------------------------------


def test_purpose_changed_after_signing_is_refused_by_the_verifier() -> None:
    key = crypto.generate_keypair()
    path = "/fhir/Observation/obs-1"
    headers = sign_request(key, CHAIN_ID, "GET", path, purpose="TREAT")
    assert headers["X-MedChain-Purpose"] == "TREAT"
    signer = verify_request(headers, CHAIN_ID, "GET", path, b"")
    assert signer.purpose == "TREAT" and signer.proof("GET", path)["purpose"] == "TREAT"
    for changed in ({**headers, "X-MedChain-Purpose": "HRESEARCH"},
                    {k: v for k, v in headers.items() if k != "X-MedChain-Purpose"}):  # fmt: skip
        with pytest.raises(BadRequestSignature):
            verify_request(changed, CHAIN_ID, "GET", path, b"")


def test_exchange_access_takes_the_purpose_only_from_the_signed_request(
    world: dict[str, Any],
) -> None:
    """The contract re-verifies the reader's request with the purpose inside it: a proof
    whose purpose was changed is BAD_SIGNATURE (401), and the audit records the signed one."""
    ledger, k = world["ledger"], world["keys"]
    path, now = "/fhir/Observation/obs-1", ledger.app.db.block_time_ms()

    def proof(purpose: str) -> dict[str, Any]:
        headers = sign_request(k["doctor_b"], CHAIN_ID, "GET", path, now_ms=now, purpose=purpose)
        return verify_request(headers, CHAIN_ID, "GET", path, b"", now_ms=now).proof("GET", path)

    changed = proof("HRESEARCH") | {"purpose": "TREAT"}
    refused = ledger.run(k["admin_a"], "access", {"request": changed, "record_ids": ["obs-1"]},
                         "exchange")  # fmt: skip
    assert refused.code == Code.BAD_SIGNATURE
    from medchain.gateway.errors import HTTP_STATUS

    assert HTTP_STATUS[refused.code] == 401
    old_style = {"request": proof("TREAT"), "record_ids": ["obs-1"], "purpose": "HRESEARCH"}
    assert ledger.run(k["admin_a"], "access", old_style, "exchange").code == Code.INVALID_PAYLOAD
    ok = ledger.run(k["admin_a"], "access", {"request": proof(""), "record_ids": ["obs-1"]},
                    "exchange")  # fmt: skip
    assert ok.code == 0 and dict(ok.events[0].attributes)["purpose"] == "TREAT"
    research = ledger.run(k["admin_a"], "access",
                          {"request": proof("HRESEARCH"), "record_ids": ["obs-1"]},
                          "exchange")  # fmt: skip
    event = dict(research.events[0].attributes)
    assert research.events[0].type == "exchange.refused" and event["purpose"] == "HRESEARCH"


def test_request_message_v2_covers_the_purpose() -> None:
    a = request_message(CHAIN_ID, "GET", "/x", 1, bytes(32), "TREAT")
    b = request_message(CHAIN_ID, "GET", "/x", 1, bytes(32), "HRESEARCH")
    assert a != b and b"medchain/edge-request/v2" in a


def test_client_refuses_an_id_that_would_change_the_request_path() -> None:
    """Found by the conformance run: ids went into URL paths unescaped, so `../x`
    could reach another route with the caller's signature on it."""
    from medchain.sdk.client import Client, ClientError

    client = Client("http://127.0.0.1:9")  # nothing is sent: the id is refused first
    for bad in ("../state", "a/b", "x?prefix=", "a#b", "%2e%2e", "a\nb", ""):
        with pytest.raises(ClientError) as e:
            client.record(bad)
        assert e.value.code == "BAD_ID"
