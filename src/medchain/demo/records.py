"""Story 2, health records: PUMCH's edge stores a lab result and a prescription
encrypted; consent, exchange, revocation, a pharmacist's narrower view, emergency
access with a second approver, erasure with a purge receipt, and the audit trail."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from medchain.demo.run import (
    DEMO_CHAIN_ID,
    DemoRun,
)
from medchain.edge.requester import (
    upload_record,
)
from medchain.edge.vault import receipt_from_json, verify_purge_receipt


def lab_result(patient: str) -> dict[str, Any]:
    """An HbA1c Observation (our own demo data, FHIR R4): what the Ruijin doctor fetches."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "4548-4",
                    "display": "Hemoglobin A1c/Hemoglobin.total in Blood",
                }
            ]
        },
        "subject": {"identifier": {"system": "urn:medchain:did", "value": patient}},
        "effectiveDateTime": "2026-11-20T09:30:00+08:00",
        "valueQuantity": {
            "value": 7.2,
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        },
    }


def prescription(patient: str) -> dict[str, Any]:
    """An insulin MedicationRequest: what the pharmacist may see."""
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "860975",
                    "display": "metformin hydrochloride 500 MG Extended Release Oral Tablet",
                }
            ]
        },
        "subject": {"identifier": {"system": "urn:medchain:did", "value": patient}},
        "authoredOn": "2026-11-20",
        "dosageInstruction": [{"text": "500 mg once daily with the evening meal"}],
    }


def upload(run: DemoRun, edge_url: str, who: str, record_id: str, resource: dict[str, Any]) -> None:
    """Staff hand a record to their hospital's edge (signed request); it stores and registers."""
    body = json.dumps(resource).encode()
    patient = resource["subject"]["identifier"]["value"]
    r = upload_record(run.key(who), DEMO_CHAIN_ID, edge_url, body, patient, record_id)
    detail = r.json().get("cid", "") if r.status_code == 201 else r.text
    what = f"{who} stores {resource['resourceType']} {record_id} in the PUMCH vault"
    run.note(what, "OK" if r.status_code == 201 else f"HTTP {r.status_code}", detail, True)


def run_health_story(run: DemoRun, edge_url: str) -> None:
    """Records, consent, exchange, emergency access, erasure and audit."""
    zhang, liu = run.did("patient-zhang"), run.did("patient-liu")
    upload(run, edge_url, "dr-li", "zhang-hba1c", lab_result(zhang))
    upload(run, edge_url, "dr-li", "zhang-rx", prescription(zhang))
    upload(run, edge_url, "dr-li", "liu-hba1c", lab_result(liu))
    run.exchange(
        "dr-chen (Ruijin) asks for zhang's HbA1c",
        "dr-chen-2",
        "zhang-hba1c",
        "TREAT",
        expect_ok=False,
    )
    week = 7 * 86_400_000
    now = run.client.block_time_ms()
    out = run.step(
        "patient-zhang grants dr-chen lab results for treatment, 7 days",
        "patient-zhang",
        "consent",
        "grant",
        {
            "patient": zhang,
            "grantee_kind": "did",
            "grantee": run.did("dr-chen"),  # a DID outlives key rotation
            "purposes": ["TREAT"],
            "scope_types": ["Observation"],
            "expires_ms": now + week,
        },
    )
    grant_id = out["events"][0]["attributes"]["grant_id"] if out else ""
    run.exchange(
        "dr-chen fetches and decrypts zhang's HbA1c",
        "dr-chen-2",
        "zhang-hba1c",
        "TREAT",
        expect_ok=True,
    )
    run.exchange(
        "dr-chen asks for it for research instead",
        "dr-chen-2",
        "zhang-hba1c",
        "HRESEARCH",
        expect_ok=False,
    )
    run.step(
        "patient-zhang grants Yifeng Pharmacy prescriptions and lab results",
        "patient-zhang",
        "consent",
        "grant",
        {
            "patient": zhang,
            "grantee_kind": "org",
            "grantee": "yifeng-pharmacy",
            "purposes": ["TREAT"],
            "scope_types": ["MedicationRequest", "Observation"],
            "expires_ms": now + week,
        },
    )
    run.exchange(
        "pharmacist-zhao fetches zhang's prescription",
        "pharmacist-zhao",
        "zhang-rx",
        "TREAT",
        expect_ok=True,
    )
    run.exchange(
        "pharmacist-zhao asks for the lab result (role does not allow)",
        "pharmacist-zhao",
        "zhang-hba1c",
        "TREAT",
        expect_ok=False,
    )
    run.step(
        "patient-zhang revokes dr-chen's grant",
        "patient-zhang",
        "consent",
        "revoke",
        {"grant_id": grant_id},
    )
    run.exchange(
        "dr-chen asks again after the revocation",
        "dr-chen-2",
        "zhang-hba1c",
        "TREAT",
        expect_ok=False,
    )
    out = run.step(
        "dr-li requests emergency access to patient-liu",
        "dr-li",
        "consent",
        "break_glass",
        {"patient": liu, "reason": "unconscious in the emergency room, allergy status unknown"},
    )
    request_id = out["events"][0]["attributes"]["request_id"] if out else ""
    run.exchange(
        "dr-li opens liu's record before a second approval",
        "dr-li",
        "liu-hba1c",
        "ETREAT",
        expect_ok=False,
    )
    run.step(
        "pumch admin (not an approving clinician) tries to approve",
        "pumch-admin",
        "consent",
        "approve_break_glass",
        {"request_id": request_id},
        expect_ok=False,
    )
    run.step(
        "dr-zhou (attending, pumch) approves the emergency access",
        "dr-zhou",
        "consent",
        "approve_break_glass",
        {"request_id": request_id},
    )
    run.exchange(
        "dr-li opens liu's record in the emergency window",
        "dr-li",
        "liu-hba1c",
        "ETREAT",
        expect_ok=True,
    )
    run.step(
        "patient-zhang erases her prescription",
        "patient-zhang",
        "records",
        "erase",
        {"record_id": "zhang-rx", "reason": "no longer taking it"},
    )
    receipt = None
    for _ in range(100):  # the edge follows the chain and purges within a block or two
        r = httpx.get(
            f"{edge_url}/edge/v1/receipts/zhang-rx", timeout=10, verify=run.client.ssl_context
        )
        if r.status_code == 200:
            receipt = receipt_from_json(r.json())
            break
        time.sleep(0.1)
    valid = receipt is not None and verify_purge_receipt(receipt, run.key("pumch-admin").public)
    run.note(
        "PUMCH's signed purge receipt for zhang-rx verifies",
        "OK" if valid else "missing",
        "",
        valid,
    )
    run.exchange(
        "pharmacist-zhao asks for the erased prescription",
        "pharmacist-zhao",
        "zhang-rx",
        "TREAT",
        expect_ok=False,
    )
    log = run.reader("patient-zhang").audit(patient=zhang, limit=1000)["events"]
    refusals = sum(e["kind"] == "exchange.refused" for e in log)
    run.note(
        "patient-zhang reads her audit trail",
        "OK",
        f"{len(log)} events, {refusals} refused requests",
        True,
    )
