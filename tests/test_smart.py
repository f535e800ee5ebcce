"""SMART on FHIR at the custodian edge (issue 15.1).

On chain: `exchange.token_access` carries the member statement a token was
issued on (a JWT assertion or a signed challenge) and the contract re-verifies it.
At the edge, over real HTTP: the token endpoint (Backend Services and the signed
challenge), discovery, bearer tokens on /fhir with scopes intersected with the
chain's consent, and every way a token request or a token can be wrong.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.consortium import Consortium, running_consortium
from support.ledger import CHAIN_ID, DATA, Ledger, did_of
from support.stateless import apply_without_state

from medchain import crypto
from medchain.contracts.exchange import ExchangeHandler
from medchain.contracts.exchange.proof import MAX_SKEW_MS
from medchain.contracts.exchange.smart import (
    STATEMENT_MS,
    TOKEN_MS,
    covers,
    parse_scopes,
)
from medchain.core.block import Block, TxResult
from medchain.crypto.jws import sign_jws, verify_jws
from medchain.edge.vault import Vault
from medchain.exceptions import Code, InvalidTransaction
from medchain.sdk.smart import (
    CHALLENGE,
    SmartAuth,
    TokenRefused,
    backend_form,
    challenge_form,
    client_assertion,
    request_token,
)

REPORT = (DATA / "fhir" / "spec-examples" / "DiagnosticReport-f201.json").read_bytes()
GLUCOSE = (DATA / "fhir" / "spec-examples" / "Observation-f001.json").read_bytes()
HOUR_MS = 3_600_000
TOKEN_URL = "https://edge.hosp-a.example/auth/token"


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- the JWS recipes and the scope grammar ---------------------------------------


@pytest.mark.parametrize("suite", ["sm", "intl"])
def test_jws_signatures_are_raw_and_bound_to_key_and_input(suite: str) -> None:
    key, other = crypto.generate_keypair(suite), crypto.generate_keypair(suite)
    signature = sign_jws(key, b"header.payload")
    assert len(signature) == 64  # raw r || s (SM2) or the Ed25519 signature, never DER
    assert verify_jws(suite, key.public, b"header.payload", signature)
    assert not verify_jws(suite, key.public, b"header.payloaD", signature)
    assert not verify_jws(suite, other.public, b"header.payload", signature)
    assert not verify_jws(suite, key.public, b"header.payload", signature[:-1])
    assert not verify_jws(suite, key.public, b"header.payload", bytes(64))


def test_scopes_read_v1_and_v2_and_grant_only_read_and_search() -> None:
    grants = parse_scopes(
        "user/Observation.read patient/*.rs system/DiagnosticReport.s "
        "user/Condition.write user/Procedure.cud launch/patient openid "
        "user/Encounter.rs?category=x user/Bad.sr"
    )
    assert [g.text() for g in grants] == [
        "user/Observation.rs",
        "patient/*.rs",
        "system/DiagnosticReport.s",
    ]
    assert covers(grants, "Observation", "r") and covers(grants, "Condition")  # patient/*
    only = parse_scopes("system/DiagnosticReport.s")
    assert covers(only, "DiagnosticReport", "s") and not covers(only, "DiagnosticReport", "r")
    assert not covers(only, "Observation")
    assert parse_scopes("user/*.*")[0].text() == "user/*.rs"  # write part never granted


# -- on chain: exchange.token_access ----------------------------------------------


@pytest.fixture
def chain(ledger: Ledger, tmp_path: Path) -> dict[str, Any]:
    k = {n: crypto.generate_keypair() for n in ("admin_a", "admin_b", "doctor_b", "patient")}
    k["intl_doctor"] = crypto.generate_keypair("intl")
    ledger.add_org("hosp-a", k["admin_a"])
    ledger.add_org("hosp-b", k["admin_b"])
    ledger.add_staff(k["admin_b"], "hosp-b", k["doctor_b"], ["doctor"])
    payload = {"org_id": "hosp-b", "public_key": k["intl_doctor"].public, "roles": ["doctor"]}
    assert ledger.run(k["admin_b"], "add_member", payload | {"suite": "intl"}).code == Code.OK
    ledger.add_patient(k["patient"])
    vault = Vault(tmp_path / "vault-a", k["admin_a"])
    for record_id, resource_type, content in (
        ("dr-1", "DiagnosticReport", REPORT),
        ("obs-1", "Observation", GLUCOSE),
    ):
        stored = vault.store(record_id, content, k["patient"].public)
        registered = ledger.run(
            k["admin_a"],
            "register",
            {
                "record_id": record_id,
                "patient": did_of(k["patient"]),
                "resource_type": resource_type,
                "cid": stored.cid,
                "content_hash": stored.content_hash,
            },
            "records",
        )
        assert registered.code == Code.OK, registered.log
    for grantee in ("doctor_b", "intl_doctor"):
        granted = ledger.run(
            k["patient"],
            "grant",
            {
                "patient": did_of(k["patient"]),
                "grantee_kind": "did",
                "grantee": did_of(k[grantee]),
                "purposes": ["TREAT"],
                "scope_types": ["DiagnosticReport", "Observation"],
                "expires_ms": ledger.app.db.block_time_ms() + HOUR_MS,
            },
            "consent",
        )
        assert granted.code == Code.OK, granted.log
    return k


def jws_statement(
    key: crypto.KeyPair,
    member: str,
    issued_ms: int,
    custodian: str = "hosp-a",
    chain_id: str = CHAIN_ID,
    scope: str = "",
    purpose: str = "",
) -> dict[str, Any]:
    """A Backend Services assertion as the edge puts it on chain."""
    assertion = client_assertion(
        key, member, TOKEN_URL, chain_id, custodian, scope, purpose, now=issued_ms // 1000
    )
    signing_input, _, signature = assertion.rpartition(".")
    return {
        "form": "jws",
        "suite": key.suite,
        "public_key": key.public,
        "signed": signing_input.encode(),
        "signature": unb64(signature),
    }


def challenge_statement(
    key: crypto.KeyPair,
    member: str,
    issued_ms: int,
    custodian: str = "hosp-a",
    scope: str = "",
    patient: str = "",
) -> dict[str, Any]:
    """A signed challenge as the edge puts it on chain."""
    form = challenge_form(key, member, CHAIN_ID, custodian, scope, "", patient, now_ms=issued_ms)
    return {
        "form": "cbor",
        "suite": key.suite,
        "public_key": key.public,
        "signed": unb64(form["challenge"]),
        "signature": unb64(form["signature"]),
    }


def token_access(
    ledger: Ledger,
    staff: crypto.KeyPair,
    statement: dict[str, Any],
    ids: list[str],
    at_ms: int | None = None,
) -> TxResult:
    tx = ledger.tx(staff, "exchange", "token_access", {"statement": statement, "record_ids": ids})
    if at_ms is None:
        return ledger.commit([tx]).tx_results[0]
    db = ledger.app.db
    block = Block(CHAIN_ID, db.height + 1, at_ms, (tx,), db.last_block_hash)
    result = ledger.app.finalize_block(block)
    ledger.app.commit(result)
    return result.tx_results[0]


def outcomes(result: TxResult) -> list[tuple[str, str, str]]:
    """(event type, record id, reason or basis) of a token_access result."""
    rows = []
    for event in result.events:
        a = dict(event.attributes)
        assert a["via"] == "smart-token"
        rows.append((event.type, a["record_id"], a.get("reason") or a.get("basis", "")))
    return rows


@pytest.mark.parametrize(
    ("who", "form"), [("doctor_b", "jws"), ("doctor_b", "cbor"), ("intl_doctor", "jws")]
)
def test_token_reads_are_decided_and_audited_for_the_member_who_signed(
    ledger: Ledger, chain: dict[str, Any], who: str, form: str
) -> None:
    k, now = chain, ledger.app.db.block_time_ms()
    make = jws_statement if form == "jws" else challenge_statement
    statement = make(k[who], did_of(k[who]), now)
    result = token_access(ledger, k["admin_a"], statement, ["dr-1", "obs-1"])
    assert result.code == Code.OK, result.log
    assert [(t, r) for t, r, _ in outcomes(result)] == [
        ("exchange.accessed", "dr-1"),
        ("exchange.accessed", "obs-1"),
    ]
    attributes = dict(result.events[0].attributes)
    assert attributes["actor"] == did_of(k[who]) and attributes["served_by"] == did_of(k["admin_a"])
    # The same statement serves the token's later reads (a token is used many times).
    again = token_access(ledger, k["admin_a"], statement, ["dr-1"])
    assert again.code == Code.OK and again.events[0].type == "exchange.accessed"
    audit = ledger.app.db.audit(actor=did_of(k[who]))
    assert [e["kind"] for e in audit].count("exchange.accessed") == 3


def test_a_statement_only_its_member_signed_for_this_chain_and_custodian_counts(
    ledger: Ledger, chain: dict[str, Any]
) -> None:
    k, now = chain, ledger.app.db.block_time_ms()
    doctor = did_of(k["doctor_b"])
    good = jws_statement(k["doctor_b"], doctor, now)
    forged = good | {"signature": bytes(64)}
    assert token_access(ledger, k["admin_a"], forged, ["dr-1"]).code == Code.BAD_SIGNATURE
    wrong_key = good | {"public_key": k["patient"].public}
    assert token_access(ledger, k["admin_a"], wrong_key, ["dr-1"]).code == Code.BAD_SIGNATURE
    # Signed by the patient's key but naming the doctor: not the doctor's statement.
    impostor = jws_statement(k["patient"], doctor, now)
    assert token_access(ledger, k["admin_a"], impostor, ["dr-1"]).code == Code.UNAUTHORIZED
    for_b = jws_statement(k["doctor_b"], doctor, now, custodian="hosp-b")
    assert token_access(ledger, k["admin_a"], for_b, ["dr-1"]).code == Code.UNAUTHORIZED
    other_chain = jws_statement(k["doctor_b"], doctor, now, chain_id="medchain-other")
    assert token_access(ledger, k["admin_a"], other_chain, ["dr-1"]).code == Code.WRONG_CHAIN
    bad_purpose = jws_statement(k["doctor_b"], doctor, now, purpose="SHOPPING")
    assert token_access(ledger, k["admin_a"], bad_purpose, ["dr-1"]).code == Code.INVALID_PAYLOAD
    # Only the custodian's staff put reads on chain, and only of its own records.
    assert token_access(ledger, k["doctor_b"], good, ["dr-1"]).code == Code.UNAUTHORIZED
    assert token_access(ledger, k["admin_a"], good, ["dr-1"]).code == Code.OK


def test_a_statement_serves_reads_only_within_the_token_lifetime_by_block_time(
    ledger: Ledger, chain: dict[str, Any]
) -> None:
    k, now = chain, ledger.app.db.block_time_ms()
    statement = challenge_statement(k["doctor_b"], did_of(k["doctor_b"]), now)
    late = token_access(ledger, k["admin_a"], statement, ["dr-1"], at_ms=now + TOKEN_MS + 1)
    assert late.code == Code.INVALID_STATE and "validity" in late.log
    block = ledger.app.db.block_time_ms() + 1000
    # Issued further ahead than the clock skew allowed: not valid yet.
    early = challenge_statement(k["doctor_b"], did_of(k["doctor_b"]), block + MAX_SKEW_MS + 1)
    ahead = token_access(ledger, k["admin_a"], early, ["dr-1"], at_ms=block)
    assert ahead.code == Code.INVALID_STATE
    on_time = challenge_statement(k["doctor_b"], did_of(k["doctor_b"]), block + 1000)
    assert token_access(ledger, k["admin_a"], on_time, ["dr-1"], at_ms=block + 1000).code == Code.OK
    # A statement may not claim a longer life than STATEMENT_MS.
    long_lived = client_assertion(
        k["doctor_b"],
        did_of(k["doctor_b"]),
        TOKEN_URL,
        CHAIN_ID,
        "hosp-a",
        now=now // 1000,
        lifetime=STATEMENT_MS // 1000 + 60,
    )
    signing_input, _, signature = long_lived.rpartition(".")
    proof = jws_statement(k["doctor_b"], did_of(k["doctor_b"]), now) | {
        "signed": signing_input.encode(),
        "signature": unb64(signature),
    }
    assert token_access(ledger, k["admin_a"], proof, ["dr-1"]).code == Code.INVALID_PAYLOAD


def test_records_outside_the_signed_scopes_or_patient_are_refused_on_chain(
    ledger: Ledger, chain: dict[str, Any]
) -> None:
    k, now = chain, ledger.app.db.block_time_ms()
    doctor = did_of(k["doctor_b"])
    narrow = challenge_statement(k["doctor_b"], doctor, now, scope="user/Observation.rs")
    result = token_access(ledger, k["admin_a"], narrow, ["dr-1", "obs-1"])
    assert result.code == Code.OK
    assert outcomes(result) == [
        ("exchange.refused", "dr-1", "DiagnosticReport is outside the token's scopes"),
        ("exchange.accessed", "obs-1", outcomes(result)[1][2]),
    ]
    elsewhere = challenge_statement(k["doctor_b"], doctor, now, patient="did:medchain:someoneelse")
    refused = token_access(ledger, k["admin_a"], elsewhere, ["obs-1"])
    assert outcomes(refused) == [("exchange.refused", "obs-1", "the token is for another patient")]


def test_a_suspended_member_statement_stops_serving(ledger: Ledger, chain: dict[str, Any]) -> None:
    k, now = chain, ledger.app.db.block_time_ms()
    statement = jws_statement(k["doctor_b"], did_of(k["doctor_b"]), now)
    assert token_access(ledger, k["admin_a"], statement, ["dr-1"]).code == Code.OK
    suspended = ledger.run(k["admin_b"], "suspend_member", {"did": did_of(k["doctor_b"])})
    assert suspended.code == Code.OK, suspended.log
    assert token_access(ledger, k["admin_a"], statement, ["dr-1"]).code == Code.UNAUTHORIZED


STATEMENT = {
    "form": "jws",
    "suite": "sm",
    "public_key": b"\x02" * 64,
    "signed": b"e30.e30",
    "signature": bytes(64),
}


@pytest.mark.parametrize(
    "payload",
    [
        {"record_ids": ["dr-1"]},
        {"statement": STATEMENT, "record_ids": []},
        {"statement": STATEMENT | {"form": "xml"}, "record_ids": ["dr-1"]},
        {"statement": STATEMENT | {"signed": b"x" * 5000}, "record_ids": ["dr-1"]},
        {"statement": STATEMENT | {"extra": 1}, "record_ids": ["dr-1"]},
        {"statement": STATEMENT, "record_ids": ["dr-1"], "x": 1},
    ],
)
def test_malformed_token_access_is_refused_before_any_state_read(payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidTransaction) as refused:
        apply_without_state(ExchangeHandler(), "token_access", payload)
    assert refused.value.code == Code.INVALID_PAYLOAD


# -- at the edge, over real HTTP ---------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def token_url(world: Consortium) -> str:
    return world.edge_url + "/auth/token"


def assertion_of(world: Consortium, who: str, **claims: Any) -> str:
    key = claims.pop("key", world.keys.get(who))
    member = claims.pop("member", world.did(who) if who in world.keys else who)
    return client_assertion(
        key,
        member,
        claims.pop("aud", token_url(world)),
        CHAIN_ID,
        claims.pop("custodian", "hosp-a"),
        **claims,
    )


def post_token(world: Consortium, form: dict[str, str]) -> httpx.Response:
    return httpx.post(token_url(world), data=form)


def backend_token(world: Consortium, who: str, scope: str = "system/*.rs") -> str:
    form = backend_form(assertion_of(world, who), scope)
    return str(request_token(token_url(world), form)["access_token"])


def challenge_of(world: Consortium, who: str, scope: str, **fields: Any) -> dict[str, str]:
    fields.setdefault("audience", token_url(world))
    return challenge_form(
        fields.pop("key", world.keys[who]), world.did(who), CHAIN_ID, "hosp-a", scope, **fields
    )


def person_token(
    world: Consortium, who: str, scope: str, purpose: str = "", patient: str = ""
) -> str:
    form = challenge_of(world, who, scope, purpose=purpose, patient=patient)
    return str(request_token(token_url(world), form)["access_token"])


def bearer_get(world: Consortium, token: str, path: str, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(world.edge_url + path, params=params, headers=headers)


def smart_reads(world: Consortium, who: str) -> list[tuple[str, str | None]]:
    rows = world.node.audit(actor=world.did(who), limit=1000)["events"]
    return [
        (r["kind"], r["record_id"]) for r in rows if r["attributes"].get("via") == "smart-token"
    ]


def test_discovery_names_the_token_endpoint_and_what_it_grants(world: Consortium) -> None:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    config = httpx.get(world.edge_url + "/.well-known/smart-configuration").json()
    assert config == httpx.get(world.edge_url + "/fhir/.well-known/smart-configuration").json()
    assert config["token_endpoint"] == token_url(world)
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert {"SM2SM3", "Ed25519"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    assert "client_credentials" in config["grant_types_supported"]
    assert "system/*.read" in config["scopes_supported"]
    assert "client-confidential-asymmetric" in config["capabilities"]
    assert config["medchain"] == {"chain_id": CHAIN_ID, "custodian": "hosp-a"}
    metadata = httpx.get(world.edge_url + "/fhir/metadata").json()
    CapabilityStatement.model_validate(metadata)
    security = metadata["rest"][0]["security"]
    assert security["service"][0]["coding"] == [
        {
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
        }
    ]
    uris = security["extension"][0]
    assert uris["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    assert uris["extension"] == [{"url": "token", "valueUri": token_url(world)}]
    # The token URL is the edge's own, not one the request's Host header names.
    relayed = httpx.get(world.edge_url + "/fhir/metadata", headers={"Host": "rogue.example"})
    named = relayed.json()["rest"][0]["security"]["extension"][0]["extension"]
    assert named == [{"url": "token", "valueUri": token_url(world)}]


def test_backend_services_token_reads_and_searches_with_every_hit_audited(
    world: Consortium,
) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    answer = post_token(world, backend_form(assertion_of(world, "doctor_b"), "system/*.read"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= TOKEN_MS // 1000
    assert body["scope"] == "system/*.rs" and "patient" not in body
    token = body["access_token"]
    read = bearer_get(world, token, "/fhir/DiagnosticReport/report-1")
    assert read.status_code == 200 and read.json()["id"] == "report-1"
    found = bearer_get(world, token, "/fhir/DiagnosticReport", patient=world.did("patient"))
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json()["entry"]] == ["report-1"]
    # Not consented: the chain refuses it, and says so on chain too.
    refused = bearer_get(world, token, "/fhir/MedicationRequest/rx-1")
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    assert smart_reads(world, "doctor_b") == [
        ("exchange.accessed", "report-1"),
        ("exchange.accessed", "report-1"),
        ("exchange.refused", "rx-1"),
    ]


def test_a_person_gets_a_short_token_for_a_signed_challenge(world: Consortium) -> None:
    form = challenge_of(world, "patient", "patient/*.read", patient=world.did("patient"))
    body = request_token(token_url(world), form)
    assert body["patient"] == world.did("patient") and body["scope"] == "patient/*.rs"
    assert body["expires_in"] <= TOKEN_MS // 1000
    mine = bearer_get(world, body["access_token"], "/fhir/DiagnosticReport/report-1")
    assert mine.status_code == 200 and mine.json()["id"] == "report-1"
    # patient/ scopes need a patient in context: a doctor signing none gets none.
    doctor = challenge_of(world, "doctor_b", "patient/*.read")
    refused = post_token(world, doctor)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"


def test_token_requests_that_must_fail(world: Consortium) -> None:
    stranger = crypto.generate_keypair()
    good = assertion_of(world, "doctor_b")
    head, payload, _ = good.split(".")
    other_signature = assertion_of(world, "doctor_a").split(".")[2]
    cases = {
        "bad signature": backend_form(f"{head}.{payload}.{other_signature}", "system/*.rs"),
        "expired assertion": backend_form(
            assertion_of(world, "doctor_b", now=int(time.time()) - 900), "system/*.rs"
        ),
        "wrong audience": backend_form(
            assertion_of(world, "doctor_b", aud="https://elsewhere.example/auth/token"),
            "system/*.rs",
        ),
        "unknown client": backend_form(
            assertion_of(world, "nobody", key=stranger, member=did_of(stranger)), "system/*.rs"
        ),
        "another custodian": backend_form(
            assertion_of(world, "doctor_b", custodian="hosp-b"), "system/*.rs"
        ),
        "client_id not the issuer": backend_form(good, "system/*.rs")
        | {"client_id": world.did("doctor_a")},
        "no assertion type": {
            k: v
            for k, v in backend_form(good, "system/*.rs").items()
            if k != "client_assertion_type"
        },
    }
    for why, form in cases.items():
        answer = post_token(world, form)
        assert answer.status_code == 401, (why, answer.text)
        assert answer.json()["error"] == "invalid_client", why
        assert answer.headers["cache-control"] == "no-store"
    bad_requests = {
        "invalid_scope": backend_form(assertion_of(world, "doctor_b"), "user/*.read"),
        "unsupported_grant_type": {"grant_type": "password", "username": "x"},
        "invalid_request": {"grant_type": ""},
    }
    for error, form in bad_requests.items():
        answer = post_token(world, form)
        assert (answer.status_code, answer.json()["error"]) == (400, error), answer.text
    not_a_form = httpx.post(token_url(world), json=backend_form(good, "system/*.rs"))
    assert not_a_form.status_code == 400 and not_a_form.json()["error"] == "invalid_request"
    twice = httpx.post(
        token_url(world),
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert twice.status_code == 400 and "more than once" in twice.json()["error_description"]
    # The good assertion gets a token once; its jti replayed gets nothing.
    assert post_token(world, backend_form(good, "system/*.rs")).status_code == 200
    replayed = post_token(world, backend_form(good, "system/*.rs"))
    assert replayed.status_code == 401 and "jti" in replayed.json()["error_description"]
    # The same for a signed challenge: bad signature, expired, replayed.
    mine = world.did("patient")
    challenge = challenge_of(world, "patient", "patient/*.rs", patient=mine)
    forged = challenge | {
        "signature": challenge_of(
            world, "patient", "patient/*.rs", patient=mine, key=world.keys["parent"]
        )["signature"]
    }
    stale = challenge_of(
        world, "patient", "patient/*.rs", patient=mine, now_ms=int(time.time() * 1000) - 900_000
    )
    for form in (forged, stale):
        answer = post_token(world, form)
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text
    assert post_token(world, challenge).status_code == 200
    assert post_token(world, challenge).json()["error"] == "invalid_grant"


def test_fhir_answers_401_with_a_bearer_challenge(world: Consortium) -> None:
    unsigned = httpx.get(world.edge_url + "/fhir/DiagnosticReport/report-1")
    assert unsigned.status_code == 401
    assert unsigned.headers["www-authenticate"] == 'Bearer realm="medchain-edge"'
    assert unsigned.json()["resourceType"] == "OperationOutcome"
    bad = bearer_get(world, "not-a-token", "/fhir/DiagnosticReport/report-1")
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]
    assert bad.json()["issue"][0]["code"] == "login"


def test_a_scope_narrower_than_the_consent_narrows_the_answer(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport", "MedicationRequest"])
    narrow = person_token(world, "doctor_b", "user/DiagnosticReport.rs")
    assert bearer_get(world, narrow, "/fhir/DiagnosticReport/report-1").status_code == 200
    for path, params in (
        ("/fhir/MedicationRequest/rx-1", {}),
        ("/fhir/MedicationRequest", {"patient": world.did("patient")}),
    ):
        refused = bearer_get(world, narrow, path, **params)
        assert refused.status_code == 403, refused.text
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        assert refused.json()["issue"][0]["code"] == "forbidden"
    with_patients = bearer_get(
        world,
        narrow,
        "/fhir/DiagnosticReport",
        patient=world.did("patient"),
        _include="DiagnosticReport:patient",
    )
    assert with_patients.status_code == 403 and "_include" in with_patients.text
    read_only = person_token(world, "doctor_b", "user/DiagnosticReport.r")
    assert bearer_get(world, read_only, "/fhir/DiagnosticReport/report-1").status_code == 200
    search = bearer_get(world, read_only, "/fhir/DiagnosticReport", patient=world.did("patient"))
    assert search.status_code == 403
    # The consent covers the prescription: a wider token (or a signed request) reads it.
    wide = person_token(world, "doctor_b", "user/*.rs")
    assert bearer_get(world, wide, "/fhir/MedicationRequest/rx-1").status_code == 200
    # The narrow token's reads of the prescription never reached the chain.
    assert ("exchange.accessed", "rx-1") in smart_reads(world, "doctor_b")
    assert smart_reads(world, "doctor_b").count(("exchange.accessed", "rx-1")) == 1


def test_a_revoked_consent_stops_a_token_at_once(world: Consortium) -> None:
    world.grant("doctor_b", ["Observation"])  # standing with the patient, not for reports
    grant_id = world.grant("doctor_b", ["DiagnosticReport"])
    token = backend_token(world, "doctor_b")
    assert bearer_get(world, token, "/fhir/DiagnosticReport/report-1").status_code == 200
    world.ok("patient", "consent", "revoke", {"grant_id": grant_id})
    after = bearer_get(world, token, "/fhir/DiagnosticReport/report-1")
    assert after.status_code == 403 and "no active consent" in after.text
    assert smart_reads(world, "doctor_b")[-1] == ("exchange.refused", "report-1")


def test_a_deactivated_members_token_is_refused(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    token = backend_token(world, "doctor_b")
    assert bearer_get(world, token, "/fhir/DiagnosticReport/report-1").status_code == 200
    world.ok("admin_b", "identity", "suspend_member", {"did": world.did("doctor_b")})
    after = bearer_get(world, token, "/fhir/DiagnosticReport/report-1")
    assert after.status_code == 403 and after.json()["resourceType"] == "OperationOutcome"
    again = post_token(world, backend_form(assertion_of(world, "doctor_b"), "system/*.rs"))
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"


def test_an_intl_member_signs_its_assertion_with_ed25519(world: Consortium) -> None:
    key = crypto.generate_keypair("intl")
    member = {
        "org_id": "hosp-b",
        "public_key": key.public,
        "roles": ["doctor"],
        "suite": "intl",
    }
    world.ok("admin_b", "identity", "add_member", member)
    world.keys["intl_doctor"] = key
    world.grant("intl_doctor", ["DiagnosticReport"])
    auth = SmartAuth(
        key,
        world.did("intl_doctor"),
        world.edge_url,
        "system/DiagnosticReport.rs",
        custodian="hosp-a",
        chain_id=CHAIN_ID,
    )
    read = httpx.get(world.edge_url + "/fhir/DiagnosticReport/report-1", auth=auth)
    assert read.status_code == 200 and read.json()["id"] == "report-1"
    assert smart_reads(world, "intl_doctor") == [("exchange.accessed", "report-1")]


def test_sdk_auth_gets_and_renews_tokens_in_both_flows(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    for flow, scope in (("backend", "system/*.rs"), (CHALLENGE, "user/*.rs")):
        auth = SmartAuth(
            world.keys["doctor_b"],
            world.did("doctor_b"),
            world.edge_url,
            scope,
            flow=flow,
            custodian="hosp-a",
            chain_id=CHAIN_ID,
        )
        with httpx.Client(base_url=world.edge_url, auth=auth) as client:
            assert client.get("/fhir/DiagnosticReport/report-1").status_code == 200
            first = auth.access_token()
            assert client.get("/fhir/DiagnosticReport/report-1").status_code == 200
            assert auth.access_token() == first  # reused while fresh
            # The edge forgot it (a restart): 401 invalid_token, a new token, the answer.
            auth.token_response()["access_token"] = "forgotten"
            assert client.get("/fhir/DiagnosticReport/report-1").status_code == 200
            assert auth.access_token() not in (first, "forgotten")
    with pytest.raises(TokenRefused) as refused:
        SmartAuth(
            world.keys["doctor_b"],
            world.did("doctor_b"),
            world.edge_url,
            "user/*.rs",
            custodian="hosp-a",
            chain_id=CHAIN_ID,
        ).access_token()
    assert refused.value.error == "invalid_scope"


def test_the_token_endpoint_is_rate_limited_per_member_key(world: Consortium) -> None:
    from fastapi.testclient import TestClient

    from medchain.edge.http.app import create_edge_app
    from medchain.gateway.limits import Limits

    app = create_edge_app(world.edge, Limits(signer_rate=0.001, signer_burst=2))
    with TestClient(app) as client:
        url = token_url(world)  # the edge's published URL, not the test client's Host

        def ask() -> httpx.Response:
            assertion = assertion_of(world, "doctor_b", aud=url)
            return client.post("/auth/token", data=backend_form(assertion, "system/*.rs"))

        assert [ask().status_code for _ in range(3)] == [200, 200, 429]
        # Another member's key has its own budget.
        other = client.post(
            "/auth/token",
            data=backend_form(assertion_of(world, "doctor_a", aud=url), "system/*.rs"),
        )
        assert other.status_code == 200


def test_a_patient_token_searches_ledger_resources_of_its_patient_only(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    token = person_token(world, "patient", "patient/*.rs", patient=world.did("patient"))
    mine = bearer_get(world, token, "/fhir/Consent", patient=world.did("patient"))
    assert mine.status_code == 200 and mine.json()["total"] == 1
    other = bearer_get(world, token, "/fhir/Consent", patient=world.did("parent"))
    assert other.status_code == 403 and "insufficient_scope" in other.headers["www-authenticate"]
    by_agent = bearer_get(world, token, "/fhir/AuditEvent", agent=world.did("doctor_b"))
    assert by_agent.status_code == 403


def test_a_member_keeps_a_bounded_number_of_live_tokens(world: Consortium) -> None:
    from medchain.edge.smart import MAX_TOKENS_PER_MEMBER

    world.grant("doctor_b", ["DiagnosticReport"])
    tokens = [backend_token(world, "doctor_b") for _ in range(MAX_TOKENS_PER_MEMBER + 1)]
    oldest = bearer_get(world, tokens[0], "/fhir/DiagnosticReport/report-1")
    assert (
        oldest.status_code == 401 and 'error="invalid_token"' in oldest.headers["www-authenticate"]
    )
    for token in (tokens[1], tokens[-1]):
        assert bearer_get(world, token, "/fhir/DiagnosticReport/report-1").status_code == 200


def test_an_hmac_token_keyed_with_the_public_key_is_refused(world: Consortium) -> None:
    from joserfc import jwt
    from joserfc.errors import UnsupportedAlgorithmError
    from joserfc.jwk import OctKey

    from medchain.sdk.jose import algorithms_for, verifying_key

    doctor = world.keys["doctor_b"]
    genuine = assertion_of(world, "doctor_b")
    claims = jwt.decode(genuine, verifying_key("sm", doctor.public), algorithms_for("sm")).claims
    # Anyone knows the public key: an HS256 "signature" with it as the secret.
    forged = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(doctor.public), ["HS256"])
    answer = post_token(world, backend_form(forged, "system/*.rs"))
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    with pytest.raises(UnsupportedAlgorithmError):
        jwt.decode(forged, verifying_key("sm", doctor.public), algorithms_for("sm"))


def test_token_refusals_are_in_the_edge_audit_log_with_the_member_key(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    narrow = person_token(world, "doctor_b", "user/DiagnosticReport.rs")
    assert bearer_get(world, narrow, "/fhir/MedicationRequest/rx-1").status_code == 403
    stale = assertion_of(world, "doctor_b", now=int(time.time()) - 900)
    assert post_token(world, backend_form(stale, "system/*.rs")).status_code == 401
    entries: list[dict[str, Any]] = []
    for _ in range(100):  # the log is written as the answer completes: wait for it
        entries = [e for _, e in world.edge.audit_log.entries(limit=1000)]
        if any(e["path"] == "/auth/token" for e in entries):
            break
        time.sleep(0.05)
    scope_refusal = next(e for e in entries if e["path"] == "/fhir/MedicationRequest/rx-1")
    assert scope_refusal["key"] == world.keys["doctor_b"].public.hex()
    assert scope_refusal["status"] == 403 and scope_refusal["code"] == "forbidden"
    token_refusal = next(e for e in entries if e["path"] == "/auth/token")
    assert (token_refusal["status"], token_refusal["code"]) == (401, "invalid_client")
    assert "expired" in token_refusal["message"]


def test_a_token_lives_until_fifteen_minutes_after_its_statement(world: Consortium) -> None:
    from medchain.edge.smart import InvalidToken, SmartTokens

    clock = [time.time()]
    tokens = SmartTokens(world.edge, clock=lambda: clock[0])
    issued = int(clock[0]) - 100  # the assertion was signed 100 s before it reached the edge
    form = backend_form(assertion_of(world, "doctor_b", now=issued), "system/*.rs")
    answer = tokens.issue(form, token_url(world))
    assert answer["expires_in"] in (TOKEN_MS // 1000 - 100, TOKEN_MS // 1000 - 101)
    holder = tokens.holder_of(answer["access_token"])
    assert holder.statement["form"] == "jws" and holder.public_key == world.keys["doctor_b"].public
    clock[0] = issued + TOKEN_MS // 1000 - 1
    assert tokens.holder_of(answer["access_token"]) == holder
    clock[0] = issued + TOKEN_MS // 1000
    with pytest.raises(InvalidToken, match="expired"):
        tokens.holder_of(answer["access_token"])


def test_deeply_nested_statements_are_refused_not_crashed_on(
    ledger: Ledger, chain: dict[str, Any]
) -> None:
    from medchain.sdk.smart import b64url

    key = chain["doctor_b"]
    nested = b64url(b"[" * 1400 + b"]" * 1400).encode()  # under the size cap
    header = b64url(b'{"alg":"SM2SM3"}').encode()
    for signed in (nested + b"." + header, header + b"." + nested):  # each signed by the member
        proof = {
            "form": "jws",
            "suite": "sm",
            "public_key": key.public,
            "signed": signed,
            "signature": sign_jws(key, signed),
        }
        result = token_access(ledger, chain["admin_a"], proof, ["dr-1"])
        assert result.code in (Code.BAD_SIGNATURE, Code.INVALID_PAYLOAD), result.log
    assert result.code == Code.INVALID_PAYLOAD  # the member's own signature, then refused


def test_a_nested_assertion_gets_an_oauth_error(world: Consortium) -> None:
    from medchain.sdk.smart import b64url

    nested = b64url(b"{" * 2000)
    for assertion in (f"{nested}.e30.AAAA", f"{b64url(b'{}')}.{nested}.AAAA", "x", ""):
        answer = post_token(world, backend_form(assertion, "system/*.rs"))
        assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_sdk_auth_works_in_an_async_client_too(world: Consortium) -> None:
    import asyncio

    world.grant("doctor_b", ["DiagnosticReport"])
    auth = SmartAuth(
        world.keys["doctor_b"],
        world.did("doctor_b"),
        world.edge_url,
        "user/*.rs",
        flow=CHALLENGE,
        custodian="hosp-a",
        chain_id=CHAIN_ID,
    )

    async def reads() -> list[int]:
        async with httpx.AsyncClient(base_url=world.edge_url, auth=auth) as client:
            first = await client.get("/fhir/DiagnosticReport/report-1")
            token = auth.access_token()
            auth.token_response()["access_token"] = "forgotten"  # as after an edge restart
            second = await client.get("/fhir/DiagnosticReport/report-1")
            assert auth.access_token() not in (token, "forgotten")
            return [first.status_code, second.status_code]

    assert asyncio.run(reads()) == [200, 200]


def test_an_assertion_without_iat_as_smart_allows_it(world: Consortium) -> None:
    from joserfc import jwt

    from medchain.sdk.jose import signing_key

    world.grant("doctor_b", ["DiagnosticReport"])
    key, did = world.keys["doctor_b"], world.did("doctor_b")

    def without_iat(exp_in: int) -> str:
        claims = {
            "iss": did,
            "sub": did,
            "aud": token_url(world),
            "exp": int(time.time()) + exp_in,
            "jti": f"no-iat-{exp_in}",
            "medchain": {"chain_id": CHAIN_ID, "custodian": "hosp-a"},
        }
        return jwt.encode({"alg": "SM2SM3"}, claims, signing_key(key), ["SM2SM3"])

    answer = post_token(world, backend_form(without_iat(240), "system/*.rs"))
    assert answer.status_code == 200, answer.text
    read = bearer_get(world, answer.json()["access_token"], "/fhir/DiagnosticReport/report-1")
    assert read.status_code == 200  # the chain read the statement as issued exp - 5 min
    too_far = post_token(
        world, backend_form(without_iat(STATEMENT_MS // 1000 + 600), "system/*.rs")
    )
    assert too_far.status_code == 401 and "not yet valid" in too_far.json()["error_description"]


# -- the security review of issue 15.1 (each failed before its fix) ------------------


def test_an_assertion_relayed_with_a_rogue_host_header_is_refused(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    for rogue in ("http://rogue.example/auth/token", "https://rogue.example/auth/token"):
        relayed = httpx.post(
            token_url(world),
            data=backend_form(assertion_of(world, "doctor_b", aud=rogue), "system/*.rs"),
            headers={"Host": "rogue.example"},
        )
        assert relayed.status_code == 401, relayed.text
        assert relayed.json()["error"] == "invalid_client" and "aud" in relayed.text
    # Discovery names the URL the edge published on chain, whatever the Host says.
    config = httpx.get(
        world.edge_url + "/.well-known/smart-configuration", headers={"Host": "rogue.example"}
    ).json()
    assert config["token_endpoint"] == token_url(world)


def test_a_challenge_names_its_edge_and_no_other_edge_takes_it(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    elsewhere = challenge_of(world, "doctor_b", "user/*.rs", audience="https://rogue.example/t")
    without = challenge_of(world, "doctor_b", "user/*.rs", audience="")
    for form in (elsewhere, without):
        answer = post_token(world, form)
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
        assert "audience" in answer.json()["error_description"]
    assert post_token(world, challenge_of(world, "doctor_b", "user/*.rs")).status_code == 200


def test_sdk_auth_signs_nothing_for_an_edge_naming_another_custodian(world: Consortium) -> None:
    from medchain.sdk.smart import WrongEdge

    posted: list[bytes] = []

    def rogue(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("smart-configuration"):
            named = {"chain_id": CHAIN_ID, "custodian": "hosp-a"}  # the victim's org
            return httpx.Response(
                200, json={"medchain": named, "token_endpoint": "http://rogue.example/auth/token"}
            )
        posted.append(request.content)
        return httpx.Response(400, json={"error": "invalid_request"})

    for flow in ("backend", CHALLENGE):
        auth = SmartAuth(
            world.keys["doctor_b"],
            world.did("doctor_b"),
            "http://rogue.example",
            "user/*.rs" if flow == CHALLENGE else "system/*.rs",
            flow=flow,
            http=httpx.Client(transport=httpx.MockTransport(rogue)),
            custodian="hosp-c",  # the org the caller means to reach
            chain_id=CHAIN_ID,
        )
        with pytest.raises(WrongEdge, match="hosp-a"):
            auth.access_token()
    assert posted == []
    other_chain = SmartAuth(
        world.keys["doctor_b"],
        world.did("doctor_b"),
        world.edge_url,
        "system/*.rs",
        custodian="hosp-a",
        chain_id="another-chain",
    )
    with pytest.raises(WrongEdge, match="another-chain"):
        other_chain.access_token()


def test_a_spent_jti_stays_spent_across_a_restart_and_a_second_process(
    world: Consortium,
) -> None:
    import sqlite3

    from medchain.edge.smart import InvalidClient, InvalidGrant, SmartTokens
    from medchain.edge.smart_jtis import FILE_NAME

    world.grant("doctor_b", ["DiagnosticReport"])
    assertion = backend_form(assertion_of(world, "doctor_b"), "system/*.rs")
    challenge = challenge_of(world, "doctor_b", "user/*.rs")
    first = SmartTokens(world.edge)
    first.issue(assertion, token_url(world))
    first.issue(challenge, token_url(world))
    # The edge restarted, or a second edge process on the same vault: a new service.
    for restarted in (SmartTokens(world.edge), SmartTokens(world.edge)):
        with pytest.raises(InvalidClient, match="jti"):
            restarted.issue(assertion, token_url(world))
        with pytest.raises(InvalidGrant, match="jti"):
            restarted.issue(challenge, token_url(world))
    # And over HTTP, at the edge server (its own service, same file).
    replayed = post_token(world, assertion)
    assert replayed.status_code == 401 and "jti" in replayed.json()["error_description"]
    db = sqlite3.connect(world.edge.vault.root / FILE_NAME)
    members = [m for (m,) in db.execute("SELECT member FROM spent_jtis")]
    assert members.count(world.did("doctor_b")) == 2
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # Rows of statements that can no longer be accepted are swept.
    clock = [time.time() + STATEMENT_MS / 1000 + 3600]
    later = SmartTokens(world.edge, clock=lambda: clock[0])
    fresh = assertion_of(world, "doctor_b", now=int(clock[0]))
    later.issue(backend_form(fresh, "system/*.rs"), token_url(world))
    assert [m for (m,) in db.execute("SELECT member FROM spent_jtis")] == [world.did("doctor_b")]


def test_one_member_cannot_exhaust_the_tokens_of_others(world: Consortium) -> None:
    from medchain.edge.smart import (
        MAX_JTIS_PER_PATIENT,
        MAX_TOKENS_PER_PATIENT,
        InvalidToken,
        SmartTokens,
        TemporarilyUnavailable,
    )

    tokens = SmartTokens(world.edge)
    mine = world.did("patient")

    def ask(who: str, scope: str, patient: str = "") -> dict[str, Any]:
        return tokens.issue(challenge_of(world, who, scope, patient=patient), token_url(world))

    issued = [
        ask("patient", "patient/*.rs", mine)["access_token"] for _ in range(MAX_JTIS_PER_PATIENT)
    ]
    with pytest.raises(TemporarilyUnavailable, match="this member"):
        ask("patient", "patient/*.rs", mine)
    # Only that member is refused; the others still get tokens.
    assert ask("doctor_b", "user/*.rs")["access_token"]
    assert ask("parent", "patient/*.rs", world.did("parent"))["access_token"]
    # A patient holds MAX_TOKENS_PER_PATIENT live tokens: its newest.
    for token in issued[:-MAX_TOKENS_PER_PATIENT]:
        with pytest.raises(InvalidToken):
            tokens.holder_of(token)
    for token in issued[-MAX_TOKENS_PER_PATIENT:]:
        assert tokens.holder_of(token).patient == mine
    assert tokens.live_tokens() == MAX_TOKENS_PER_PATIENT + 2


@pytest.mark.parametrize("max_digits", [0, 4300, 640])
def test_statement_numbers_past_16_digits_are_refused_on_every_node_alike(
    ledger: Ledger, chain: dict[str, Any], max_digits: int
) -> None:
    import sys

    from joserfc import jwt

    from medchain.sdk.jose import signing_key

    k, now = chain, ledger.app.db.block_time_ms()
    doctor = did_of(k["doctor_b"])
    claims = {
        "iss": doctor,
        "sub": doctor,
        "aud": TOKEN_URL,
        "iat": now // 1000,
        "exp": now // 1000 + 300,
        "jti": "long-number",
        "medchain": {"chain_id": CHAIN_ID, "custodian": "hosp-a"},
        "x": 10**999,  # a claim nobody reads, of 1,000 digits
    }
    saved = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    assertion = jwt.encode({"alg": "SM2SM3"}, claims, signing_key(k["doctor_b"]), ["SM2SM3"])
    signing_input, _, signature = assertion.rpartition(".")
    statement = {
        "form": "jws",
        "suite": "sm",
        "public_key": k["doctor_b"].public,
        "signed": signing_input.encode(),
        "signature": unb64(signature),
    }
    try:
        sys.set_int_max_str_digits(max_digits)  # as a node may be configured
        result = token_access(ledger, k["admin_a"], statement, ["dr-1"])
    finally:
        sys.set_int_max_str_digits(saved)
    assert result.code == Code.INVALID_PAYLOAD, result.log


def test_an_edge_refuses_a_statement_with_a_17_digit_number(world: Consortium) -> None:
    from joserfc import jwt

    from medchain.sdk.jose import signing_key

    did = world.did("doctor_b")
    claims = {
        "iss": did,
        "sub": did,
        "aud": token_url(world),
        "exp": int(time.time()) + 200,
        "jti": "seventeen",
        "medchain": {"chain_id": CHAIN_ID, "custodian": "hosp-a"},
        "n": 10**16,
    }
    assertion = jwt.encode(
        {"alg": "SM2SM3"}, claims, signing_key(world.keys["doctor_b"]), ["SM2SM3"]
    )
    answer = post_token(world, backend_form(assertion, "system/*.rs"))
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    assert "JSON" in answer.json()["error_description"]
    claims["n"] = 10**15  # 16 digits are fine
    claims["jti"] = "sixteen"
    assertion = jwt.encode(
        {"alg": "SM2SM3"}, claims, signing_key(world.keys["doctor_b"]), ["SM2SM3"]
    )
    assert post_token(world, backend_form(assertion, "system/*.rs")).status_code == 200


def test_unsigned_token_requests_learn_nothing_about_membership(world: Consortium) -> None:
    stranger, intl = crypto.generate_keypair(), crypto.generate_keypair("intl")
    world.ok("admin_b", "identity", "suspend_member", {"did": world.did("nurse_b")})
    cases = {  # none signed by an active key of the member it names
        "not a member": assertion_of(world, "x", key=stranger, member=did_of(stranger)),
        "suspended": assertion_of(world, "nurse_b"),
        "no active key of the suite": assertion_of(world, "doctor_b", key=intl),
        "a member's, badly signed": assertion_of(world, "doctor_b", key=stranger),
    }
    answers = {why: post_token(world, backend_form(a, "system/*.rs")) for why, a in cases.items()}
    assert {(a.status_code, a.text) for a in answers.values()} == {
        (401, answers["not a member"].text)
    }
    assert answers["not a member"].json()["error"] == "invalid_client"
    challenges = (
        challenge_form(
            stranger, did_of(stranger), CHAIN_ID, "hosp-a", "user/*.rs", audience=token_url(world)
        ),
        challenge_of(world, "nurse_b", "user/*.rs"),
        challenge_of(world, "doctor_b", "user/*.rs", key=stranger),
    )
    grants = {(a.status_code, a.text) for a in (post_token(world, f) for f in challenges)}
    assert len(grants) == 1, grants
    assert '"invalid_grant"' in grants.pop()[1]


def test_patient_scopes_need_the_patient_signed_in_the_statement(world: Consortium) -> None:
    from medchain.contracts.exchange.smart import read_statement
    from medchain.edge.smart import SmartTokens

    unbound = post_token(world, challenge_of(world, "patient", "patient/*.rs"))
    assert unbound.status_code == 400 and unbound.json()["error"] == "invalid_scope"
    tokens = SmartTokens(world.edge)
    form = challenge_of(world, "patient", "patient/*.rs", patient=world.did("patient"))
    answer = tokens.issue(form, token_url(world))
    assert answer["patient"] == world.did("patient")
    holder = tokens.holder_of(answer["access_token"])
    # What goes on chain with each read names the patient: the chain bounds reads to it.
    signed = read_statement("cbor", holder.statement["signed"])
    assert signed.patient == world.did("patient") == holder.patient


def test_any_active_key_of_the_suite_may_sign(
    world: Consortium, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medchain.edge.smart import SmartTokens

    # The identity contract keeps one active key per member today (rotation retires
    # the old one), so the record with two is made here: the edge must not stop at
    # the first active key of the suite it finds.
    node, did = world.edge.node, world.did("doctor_b")
    real_member = node.member
    earlier = crypto.generate_keypair()

    def with_two_keys(who: str) -> dict[str, Any]:
        member = dict(real_member(who))
        if who == did:
            extra = {"public_key": earlier.public.hex(), "suite": "sm", "status": "active"}
            member["keys"] = [extra, *member["keys"]]
        return member

    monkeypatch.setattr(node, "member", with_two_keys)
    tokens = SmartTokens(world.edge)
    for key in (world.keys["doctor_b"], earlier):
        form = backend_form(assertion_of(world, "doctor_b", key=key), "system/*.rs")
        answer = tokens.issue(form, token_url(world))
        assert tokens.holder_of(answer["access_token"]).public_key == key.public
    stranger = backend_form(
        assertion_of(world, "doctor_b", key=crypto.generate_keypair()), "system/*.rs"
    )
    refused = post_token(world, stranger)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_spent_jtis_refuse_a_replay_a_full_member_and_a_full_table(tmp_path: Path) -> None:
    from medchain.edge.smart_jtis import JtiRefused, SpentJtis

    jtis = SpentJtis(tmp_path / "jtis.db", max_total=3)
    jtis.spend("a", "1", until=100.0, now=0.0, member_cap=2)
    refusals = {
        "replayed": lambda: jtis.spend("a", "1", until=100.0, now=1.0, member_cap=2),
        "member_full": lambda: (
            jtis.spend("a", "2", 100.0, 1.0, 2),
            jtis.spend("a", "3", 100.0, 1.0, 2),
        ),
        "full": lambda: (jtis.spend("b", "1", 100.0, 1.0, 2), jtis.spend("c", "1", 100.0, 1.0, 2)),
    }
    for reason, spend in refusals.items():
        with pytest.raises(JtiRefused) as refused:
            spend()
        assert refused.value.reason == reason
    assert jtis.count() == 3
    # Once their statements expired, the rows are swept and the jtis usable again.
    jtis.spend("a", "1", until=300.0, now=200.0, member_cap=2)
    assert jtis.count() == 1
    again = SpentJtis(tmp_path / "jtis.db", max_total=3)  # another process, same file
    with pytest.raises(JtiRefused, match="replayed"):
        again.spend("a", "1", until=300.0, now=201.0, member_cap=2)


def test_the_token_audience_is_the_configured_or_published_url(world: Consortium) -> None:
    from medchain.edge.smart import InvalidClient, SmartTokens

    world.grant("doctor_b", ["DiagnosticReport"])
    configured = SmartTokens(world.edge, public_url="https://edge.hosp-a.example/")
    assert configured.token_url() == TOKEN_URL
    with pytest.raises(InvalidClient, match="aud"):
        configured.issue(backend_form(assertion_of(world, "doctor_b"), "system/*.rs"))
    ok = configured.issue(
        backend_form(assertion_of(world, "doctor_b", aud=TOKEN_URL), "system/*.rs")
    )
    assert ok["token_type"] == "Bearer"
    # Without one configured: the URL the org published on chain, re-read after a minute.
    clock = [time.time()]
    published = SmartTokens(world.edge, clock=lambda: clock[0])
    assert published.token_url() == token_url(world)
    moved = {"org_id": "hosp-a", "edge_url": "https://moved.hosp-a.example"}
    world.ok("admin_a", "identity", "set_endpoint", moved)
    assert published.token_url() == token_url(world)
    clock[0] += 61
    assert published.token_url() == "https://moved.hosp-a.example/auth/token"
