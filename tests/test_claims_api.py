"""The claims routes of the gateway: who may read a claim, its FHIR views, the lists,
and the patient's own trail of claims in their audit."""

from __future__ import annotations

from fastapi.testclient import TestClient
from support.ledger import Ledger, did_of, signed_get
from test_claims import World

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.contracts.claims import model as m
from medchain.exceptions import Code
from medchain.gateway.app import create_app


def test_a_claim_is_seen_by_its_parties_and_one_403_for_everyone_else(ledger: Ledger) -> None:
    world = World(ledger)
    world.plan()
    units = world.dispensed()
    world.ok("pharmacy", "submit", world.claim([units[0]]))
    world.ok(
        "insurer_clerk", "settle", {"claim_id": "CLM-1", "reference": "PAY-1", "amount_fen": 6_400}
    )
    assert world.run("pharmacy", "submit", world.claim([units[0]], "pharmacy", "E/2")).code == (
        Code.ALREADY_EXISTS
    )
    k = world.k
    k["parent"] = crypto.generate_keypair()
    ledger.add_patient(k["parent"])
    world.ok("patient", "delegate_guardian", {"guardian": did_of(k["parent"])}, "consent")
    engine = SoloEngine(ledger.app, block_interval=0.01)
    engine.start()
    try:
        with TestClient(create_app(engine)) as client:
            for who in ("patient", "parent", "pharmacy", "insurer_clerk", "regulator"):
                r = signed_get(client, k[who], "/v1/claims/CLM-1")
                assert r.status_code == 200, (who, r.text)
                assert r.json()["status"] == m.PAID and r.json()["payable_fen"] == 6_400
            # a stranger patient, another pharmacy, the hospital, the maker: one 403,
            # the same for a claim that does not exist
            for who in ("stranger_patient", "other_pharmacy", "hospital", "maker", "logistics"):
                for claim_id in ("CLM-1", "CLM-404"):
                    r = signed_get(client, k[who], f"/v1/claims/{claim_id}")
                    assert r.status_code == 403, (who, claim_id)
                    assert r.json()["error"]["message"].startswith("a claim is for its patient")
                for view in ("ClaimResponse", "ExplanationOfBenefit"):
                    assert signed_get(client, k[who], f"/v1/claims/CLM-1/{view}").status_code == 403
            assert signed_get(client, k["regulator"], "/v1/claims/CLM-404").status_code == 404
            assert client.get("/v1/claims/CLM-1").status_code == 401  # unsigned
            response = signed_get(client, k["patient"], "/v1/claims/CLM-1/ClaimResponse").json()
            assert response["resourceType"] == "ClaimResponse"
            assert response["payment"]["amount"]["value"] == 64.0
            eob = signed_get(client, k["insurer_clerk"], "/v1/claims/CLM-1/ExplanationOfBenefit")
            assert eob.json()["resourceType"] == "ExplanationOfBenefit"
            # lists: by patient for the patient's side, by organisation for its staff
            mine = signed_get(client, k["patient"], "/v1/claims", {"patient": world.patient})
            assert [c["claim_id"] for c in mine.json()] == ["CLM-1"]
            by_provider = signed_get(client, k["pharmacy"], "/v1/claims", {"provider": "yifeng"})
            assert [c["claim_id"] for c in by_provider.json()] == ["CLM-1"]
            by_insurer = signed_get(client, k["insurer"], "/v1/claims", {"insurer": "pingan"})
            assert [c["claim_id"] for c in by_insurer.json()] == ["CLM-1"]
            for who, params in (
                ("stranger_patient", {"patient": world.patient}),
                ("other_pharmacy", {"provider": "yifeng"}),
                ("pharmacy", {"insurer": "pingan"}),
            ):
                assert signed_get(client, k[who], "/v1/claims", params).status_code == 403
            both = {"patient": world.patient, "insurer": "pingan"}
            assert signed_get(client, k["regulator"], "/v1/claims", both).status_code == 400
            # any signed member reads a plan
            plan = signed_get(client, k["hospital"], "/v1/claims/plans/basic-2027").json()
            assert plan["copay_bp"] == 2_000 and plan["insurer"] == "pingan"
            # the patient's audit shows enrolment, the claim, its settlement and the
            # refused duplicate
            audit = signed_get(client, k["patient"], "/v1/audit", {"patient": world.patient})
            kinds = [e["kind"] for e in audit.json()["events"] if e["kind"].startswith("claims.")]
            assert kinds == [
                "claims.enrolled",
                "claims.submitted",
                "claims.settled",
                "claims.duplicate_suspected",
            ]
    finally:
        engine.stop()
