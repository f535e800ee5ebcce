"""`medchain demo`: a small consortium doing real transactions on a real node.

Two hospitals, a pharmacy and a regulator join; staff are added by their
org admins; patients register themselves; a doctor rotates a key; a nurse is
suspended then revoked. Then health records: PUMCH's edge stores a patient's
lab result and prescription encrypted; the patient grants a Ruijin doctor,
who fetches and decrypts the result; the patient revokes and the next request
is refused; a pharmacist sees the prescription but not the lab result; an
emergency needs a second approver; an erased record yields a purge receipt;
the patient reads who accessed what. Along the way the chain refuses a
replay, a stale key, a revoked member and unauthorised actions, and the demo
shows each refusal with its error code.

Layer: demo, at the top beside the CLI. Imports node, network, edge, gateway, sdk,
gs1, contracts, core, crypto and exceptions; only the CLI's `medchain demo`
command imports it.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from medchain import crypto
from medchain.contracts.identity.model import did_for_key, rotation_message
from medchain.core.tx import build_tx
from medchain.edge.requester import (
    ExchangeFailed,
    fetch_record,
    import_file,
    link_patient,
    upload_record,
)
from medchain.edge.vault import receipt_from_json, verify_purge_receipt
from medchain.gateway.auth import add_operator, load_operators
from medchain.node import EdgeServer, GatewayServer, NodeHome, free_port, open_edge, open_solo
from medchain.sdk.client import Client, ClientError
from medchain.sdk.tls import (
    ClientTls,
    create_dev_pki,
    default_client_tls,
    issue_certificate,
    use_client_tls,
)

DEMO_CHAIN_ID = "medchain-demo"
DEMO_PASSPHRASE = "medchain-demo"
DEMO_KDF_ITERATIONS = 20_000

ORGS = [
    ("pumch", "Peking Union Medical College Hospital", "hospital"),
    ("ruijin", "Ruijin Hospital, Shanghai", "hospital"),
    ("yifeng-pharmacy", "Yifeng Pharmacy No. 12", "pharmacy"),
    ("nhc-supervision", "Health Commission Supervision Bureau", "regulator"),
    ("tonghua-pharma", "Tonghua Insulin Works", "manufacturer"),
    ("sino-api", "Sino API Ingredients", "manufacturer"),
    ("coldlink", "ColdLink Logistics", "logistics"),
]
STAFF = [
    ("dr-li", "pumch", ["doctor"]),
    ("dr-zhou", "pumch", ["doctor", "attending"]),
    ("nurse-wang", "pumch", ["nurse"]),
    ("dr-chen", "ruijin", ["doctor"]),
    ("pharmacist-zhao", "yifeng-pharmacy", ["pharmacist"]),
    ("inspector-sun", "nhc-supervision", ["regulator"]),
    ("logger-07", "coldlink", ["device"]),
]
PATIENTS = ["patient-zhang", "patient-liu"]


@dataclass
class DemoRun:
    """Keys made during the demo and a log of what happened."""

    client: Client
    home: NodeHome
    console: Console
    keys: dict[str, crypto.KeyPair] = field(default_factory=dict)
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    readers: dict[str, Client] = field(default_factory=dict)

    def key(self, name: str) -> crypto.KeyPair:
        if name not in self.keys:
            self.keys[name] = crypto.generate_keypair()
            self.home.keystore.save(name, self.keys[name], DEMO_PASSPHRASE, DEMO_KDF_ITERATIONS)
        return self.keys[name]

    def reader(self, name: str) -> Client:
        """A client of the demo node that signs its reads as `name`, so the node answers
        what `name` may see (gateway/policy.py)."""
        if name not in self.readers:
            self.readers[name] = Client(self.client.url, tls=self.client.tls, key=self.key(name))
        return self.readers[name]

    def step(
        self,
        what: str,
        signer: str,
        contract: str,
        action: str,
        payload: dict[str, Any],
        expect_ok: bool = True,
    ) -> dict[str, Any] | None:
        try:
            out = self.client.send(self.key(signer), contract, action, payload)
        except ClientError as e:
            self.note(what, f"refused {e.code}", e.message, expect_ok is False)
            return None
        code = out.get("code_name", "PENDING")
        self.note(
            what,
            f"block {out.get('height')} {code}",
            out.get("log") or "",
            (code == "OK") == expect_ok,
        )
        return out

    def did(self, name: str) -> str:
        key = self.key(name)
        return did_for_key(key.suite, key.public)

    def exchange(self, what: str, who: str, record_id: str, purpose: str, expect_ok: bool) -> None:
        """One whole exchange (request, fetch, decrypt, verify, ack) as `who`."""
        try:
            got = fetch_record(self.reader(who), self.key(who), record_id, purpose)
        except ExchangeFailed as e:
            self.note(what, f"refused {e.code}", e.message, not expect_ok)
            return
        ms = sum(got.timings.values()) * 1000
        detail = f"decrypted {len(got.plaintext)} bytes of {got.resource_type} in {ms:.0f} ms"
        self.note(what, "OK", detail, expect_ok)

    def expect_refusal(self, what: str, attempt: Callable[[], Any]) -> None:
        try:
            out = attempt()
        except ClientError as e:
            self.note(what, f"refused {e.code}", e.message, True)
            return
        code = out.get("code_name")
        self.note(what, f"block {out.get('height')} {code}", out.get("log") or "", code != "OK")

    def note(self, what: str, outcome: str, detail: str, as_expected: bool) -> None:
        mark = "[green]✔[/]" if as_expected else "[red]✘ unexpected[/]"
        self.rows.append((what, f"{mark} {outcome}", detail[:90]))
        self.console.print(f"  {mark} {what}: {outcome} {detail[:90]}")


def run_demo_transactions(run: DemoRun) -> None:
    """The demo story, as real signed transactions through the gateway."""
    for org_id, name, org_type in ORGS:
        run.step(
            f"consortium admits {name}",
            "consortium-admin",
            "identity",
            "register_org",
            {
                "org_id": org_id,
                "name": name,
                "org_type": org_type,
                "admin_public_key": run.key(f"{org_id}-admin").public,
                "admin_name": f"{org_id} administrator",
            },
        )
    for person, org_id, roles in STAFF:
        run.step(
            f"{org_id} admin adds {person} as {'/'.join(roles)}",
            f"{org_id}-admin",
            "identity",
            "add_member",
            {
                "org_id": org_id,
                "public_key": run.key(person).public,
                "roles": roles,
                "name": person,
            },
        )
    for patient in PATIENTS:
        run.step(f"{patient} registers themself", patient, "identity", "register_patient", {})

    run.step(
        "pharmacist tries to add a doctor (not an org admin)",
        "pharmacist-zhao",
        "identity",
        "add_member",
        {"org_id": "yifeng-pharmacy", "public_key": run.key("mallory").public, "roles": ["doctor"]},
        expect_ok=False,
    )
    run.step(
        "pumch admin tries to make a regulator",
        "pumch-admin",
        "identity",
        "add_member",
        {"org_id": "pumch", "public_key": run.key("mallory").public, "roles": ["regulator"]},
        expect_ok=False,
    )
    run.step(
        "coldlink (logistics) admin tries to make a doctor",
        "coldlink-admin",
        "identity",
        "add_member",
        {"org_id": "coldlink", "public_key": run.key("mallory").public, "roles": ["doctor"]},
        expect_ok=False,
    )
    run.step(
        "ruijin admin tries to add staff to pumch",
        "ruijin-admin",
        "identity",
        "add_member",
        {"org_id": "pumch", "public_key": run.key("mallory").public, "roles": ["doctor"]},
        expect_ok=False,
    )

    # Replay: resubmit the exact bytes of an already committed transaction.
    replay = build_tx(
        run.key("patient-zhang"),
        chain_id=DEMO_CHAIN_ID,
        contract="identity",
        action="register_patient",
        payload={},
        nonce=0,
    )
    run.expect_refusal(
        "replay of patient-zhang's registration", lambda: run.client.submit_raw(replay)
    )

    # Key rotation: dr-chen moves to a new key; the old key stops working.
    old = run.key("dr-chen")
    new = crypto.generate_keypair()
    did = did_for_key(old.suite, old.public)
    nonce = run.client.account(old)["next_nonce"]
    proof = crypto.sign(new, rotation_message(DEMO_CHAIN_ID, did, new.public, nonce))
    run.step(
        "dr-chen rotates to a new key",
        "dr-chen",
        "identity",
        "rotate_key",
        {"new_public_key": new.public, "proof": proof},
    )
    run.home.keystore.save("dr-chen-2", new, DEMO_PASSPHRASE, DEMO_KDF_ITERATIONS)
    run.keys["dr-chen-2"] = new
    run.step(
        "dr-chen signs with the rotated-out key",
        "dr-chen",
        "identity",
        "revoke_member",
        {"did": did},
        expect_ok=False,
    )

    nurse_did = did_for_key("sm", run.key("nurse-wang").public)
    run.step(
        "pumch admin suspends nurse-wang",
        "pumch-admin",
        "identity",
        "suspend_member",
        {"did": nurse_did, "reason": "badge lost"},
    )
    run.step(
        "suspended nurse-wang tries to act",
        "nurse-wang",
        "identity",
        "revoke_member",
        {"did": nurse_did},
        expect_ok=False,
    )
    run.step(
        "pumch admin revokes nurse-wang",
        "pumch-admin",
        "identity",
        "revoke_member",
        {"did": nurse_did, "reason": "left the hospital"},
    )
    run.step(
        "pumch admin tries to reinstate a revoked member",
        "pumch-admin",
        "identity",
        "reinstate_member",
        {"did": nurse_did},
        expect_ok=False,
    )


# Demo health records (our own, FHIR R4): an HbA1c result and a prescription.
def lab_result(patient: str) -> dict[str, Any]:
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


# Our own HL7 v2 lab result from PUMCH's LIS (a fasting glucose), as the HIS sends it.
HIS_MRN_SYSTEM = "urn:medchain:mrn:PUMCH"  # PID-3 assigning authority PUMCH
HL7_GLUCOSE = (
    "MSH|^~\\&|LIS|PUMCH|MEDCHAIN|PUMCH|20261120093000+0800||ORU^R01|LIS-0001|P|2.5.1\r"
    "PID|1||PUMCH-000123^^^PUMCH^MR||ZHANG^WEI||19800512|F\r"
    "OBR|1|ORD-778|LAB-778|GLU^Glucose fasting^L|||20261120081500+0800|||||||||||||||"
    "20261120093000+0800|||F\r"
    "OBX|1|NM|1558-6^Fasting glucose [Mass/volume] in Serum or Plasma^LN||126|mg/dL^^UCUM|"
    "70-99|H|||F|||20261120081500+0800\r"
)
CT_CODE = "http://dicom.nema.org/resources/ontology/DCM|CT"


def ct_study(patient: str) -> dict[str, Any]:
    """A head CT PUMCH did three days ago."""
    started = datetime.now(UTC) - timedelta(days=3)
    return {
        "resourceType": "ImagingStudy",
        "status": "available",
        "subject": {"identifier": {"system": "urn:medchain:did", "value": patient}},
        "started": started.replace(microsecond=0).isoformat(),
        "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}],
        "numberOfSeries": 1,
        "numberOfInstances": 120,
        "series": [
            {
                "uid": "2.25.1234567890123456789",
                "modality": {
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": "CT",
                },
                "bodySite": {
                    "system": "http://snomed.info/sct",
                    "code": "69536005",
                    "display": "Head",
                },
                "numberOfInstances": 120,
            }
        ],
    }


def run_interop_story(run: DemoRun, edge_url: str) -> None:
    """HIS data as FHIR with a mapping attestation, and a CT recognised across hospitals."""
    zhang = run.did("patient-zhang")
    key = run.key("pumch-admin")
    link_patient(key, DEMO_CHAIN_ID, edge_url, HIS_MRN_SYSTEM, "PUMCH-000123", zhang)
    r = import_file(key, DEMO_CHAIN_ID, edge_url, "hl7", HL7_GLUCOSE.encode())
    body = r.json()
    ok = r.status_code == 200 and body["imported"] == 3
    first = body["patients"][zhang]["imported"][1]["record_id"] if ok else ""
    mapping = run.reader("pumch-admin").record(first)["derived_from"]["mapping_id"] if ok else ""
    run.note(
        "PUMCH imports an HL7 v2 glucose result from its LIS",
        "OK" if ok else "failed",
        f"3 FHIR records, attested by mapping {mapping}",
        ok,
    )
    upload(run, edge_url, "dr-li", "zhang-ct-head", ct_study(zhang))
    far = run.client.block_time_ms() + 365 * 86_400_000
    run.step(
        "regulator sets the CT recognition rule (180 days, grade 3B+)",
        "inspector-sun",
        "recognition",
        "set_rule",
        {"exam_code": CT_CODE, "max_age_days": 180, "min_level": "3B"},
    )
    run.step(
        "regulator accredits PUMCH as grade 3A",
        "inspector-sun",
        "recognition",
        "accredit",
        {"org_id": "pumch", "level": "3A", "expires_ms": far},
    )
    run.step(
        "dr-chen (Ruijin) accepts zhang's CT without consent",
        "dr-chen-2",
        "recognition",
        "accept",
        {"record_id": "zhang-ct-head"},
        expect_ok=False,
    )
    now = run.client.block_time_ms()
    run.step(
        "patient-zhang lets dr-chen see her imaging",
        "patient-zhang",
        "consent",
        "grant",
        {
            "patient": zhang,
            "grantee_kind": "did",
            "grantee": run.did("dr-chen"),
            "purposes": ["TREAT"],
            "scope_types": ["ImagingStudy"],
            "expires_ms": now + 7 * 86_400_000,
        },
    )
    found = run.reader("dr-chen-2").recognition_candidates(zhang, run.did("dr-chen"), CT_CODE)
    eligible = [c["record_id"] for c in found if c["eligible"]]
    run.note(
        "dr-chen finds zhang's recent CT from PUMCH",
        "OK" if eligible else "none",
        ", ".join(eligible),
        bool(eligible),
    )
    run.step(
        "dr-chen recognises it instead of repeating the CT",
        "dr-chen-2",
        "recognition",
        "accept",
        {"record_id": "zhang-ct-head"},
    )
    rows = run.reader("inspector-sun").recognition_report()["hospitals"]  # every hospital
    summary = ", ".join(f"{r['org_id']}: {r['exams_avoided']} avoided" for r in rows)
    run.note("recognition report", "OK", summary, bool(rows))


INSULIN_GTIN = "06901234567892"


def run_supply_story(run: DemoRun, node_url: str) -> None:
    """An insulin pen from ingredient lot to pharmacy: EPCIS events by their standard
    hash, a cold-chain excursion in transit, a recall, and what a patient sees."""
    from medchain.gs1.ledger import StepContext, record_event_calls

    run.step(
        "Sino API registers insulin ingredient lot API-2611",
        "sino-api-admin",
        "supply",
        "register_ingredient",
        {"lot_id": "API-2611", "substance": "insulin glargine"},
    )
    run.step(
        "Tonghua registers its insulin pen (2-8 °C, 15 min out of range)",
        "tonghua-pharma-admin",
        "supply",
        "register_product",
        {
            "gtin": INSULIN_GTIN,
            "name": "Insulin glargine pen 3 ml",
            "kind": "drug",
            "temp_min_c10": 20,
            "temp_max_c10": 80,
            "max_excursion_ms": 15 * 60_000,
        },
    )
    run.step(
        "Tonghua registers batch L2611 made from API-2611",
        "tonghua-pharma-admin",
        "supply",
        "register_batch",
        {"gtin": INSULIN_GTIN, "lot": "L2611", "expiry": "2028-06-30", "ingredients": ["API-2611"]},
    )
    now = datetime.now(UTC).replace(microsecond=0)

    def document(step: str, serials: list[str], minutes_ago: int) -> str:
        return json.dumps(
            {
                "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
                "type": "EPCISDocument",
                "schemaVersion": "2.0",
                "creationDate": now.isoformat(),
                "epcisBody": {
                    "eventList": [
                        {
                            "type": "ObjectEvent",
                            "action": "ADD" if step == "commissioning" else "OBSERVE",
                            "bizStep": step,
                            "epcList": [f"urn:epc:id:sgtin:6901234.056789.{s}" for s in serials],
                            "eventTime": (now - timedelta(minutes=minutes_ago)).isoformat(),
                            "eventTimeZoneOffset": "+00:00",
                        }
                    ]
                },
            }
        )

    steps = [
        ("commissioning", ["P1", "P2"], 60, "tonghua-pharma-admin", StepContext(lot="L2611")),
        (
            "shipping",
            ["P1"],
            50,
            "tonghua-pharma-admin",
            StepContext(
                destination="yifeng-pharmacy", shipment="CL-881", device=run.did("logger-07")
            ),
        ),
    ]
    for step, serials, ago, who, context in steps:
        calls, _ = record_event_calls(document(step, serials, ago), context)
        run.step(
            f"{who.split('-')[0]} records EPCIS {step} (standard event hash)",
            who,
            "supply",
            "record_event",
            calls[0],
        )
    t = run.client.block_time_ms()
    out = run.step(
        "logger-07 reports 12 °C for 20 minutes on CL-881",
        "logger-07",
        "supply",
        "readings",
        {
            "shipment": "CL-881",
            "readings": [
                [t - 40 * 60_000, 50],
                [t - 25 * 60_000, 120],
                [t - 5 * 60_000, 120],
                [t - 60_000, 60],
            ],
        },
    )
    alert = [e for e in (out or {}).get("events", []) if e["type"] == "supply.cold_chain_violation"]
    run.note(
        "cold-chain alert in the block of the reading that crossed 15 min",
        "OK" if alert else "missing",
        "pen P1 quarantined",
        bool(alert),
    )
    calls, _ = record_event_calls(document("receiving", ["P1"], 1), StepContext(shipment="CL-881"))
    run.step("Yifeng receives CL-881", "yifeng-pharmacy-admin", "supply", "record_event", calls[0])
    calls, _ = record_event_calls(document("dispensing", ["P1"], 0), StepContext())
    run.step(
        "Yifeng tries to dispense the quarantined pen",
        "yifeng-pharmacy-admin",
        "supply",
        "record_event",
        calls[0],
        expect_ok=False,
    )
    run.step(
        "Sino API recalls ingredient lot API-2611",
        "sino-api-admin",
        "supply",
        "recall",
        {"ingredient_lot": "API-2611", "reason": "out-of-specification potency"},
    )
    view = run.client.get(f"/v1/supply/units/{INSULIN_GTIN}/P1")
    run.note(
        "a patient scans pen P1",
        view["verdict"],
        "; ".join(view["warnings"])[:90],
        view["verdict"] == "do not use",
    )
    run.console.print(f"  scan page: {node_url}/01/{INSULIN_GTIN}/10/L2611/21/P1")


REGULATOR_CHAIN_ID = "medchain-demo-regulator"


def run_regulator_story(run: DemoRun, reg_client: Client) -> None:
    """The regulator network: relay every business block, see the alerts, check the
    stream against the business chain, and prove an audit event offline."""
    from medchain.core import proofs
    from medchain.network.relay import Relay, verify_stream

    relayer, nhc = run.key("relay-nhc"), run.key("nhc-regulator-admin")
    reg_root = run.keys["regulator-root"]
    steps: list[tuple[crypto.KeyPair, str, str, dict[str, Any]]] = [
        (
            reg_root,
            "identity",
            "register_org",
            {
                "org_id": "nhc",
                "name": "National Health Commission",
                "org_type": "regulator",
                "admin_public_key": nhc.public,
            },
        ),
        (
            nhc,
            "identity",
            "add_member",
            {"org_id": "nhc", "public_key": relayer.public, "roles": ["device"]},
        ),
        (
            reg_root,
            "supervision",
            "authorize_relayer",
            {"source": DEMO_CHAIN_ID, "relayer": run.did("relay-nhc")},
        ),
    ]
    for key, contract, action, payload in steps:
        out = reg_client.send(key, contract, action, payload)
        run.note(
            f"regulator chain: {contract}.{action}",
            out.get("code_name", "?"),
            "",
            out.get("code") == 0,
        )
    # The relay reads raw blocks and state of both chains: an operator of both nodes.
    relay_reads = Client(reg_client.url, tls=reg_client.tls, key=relayer)
    relay = Relay(run.reader("relay-nhc"), relay_reads, relayer, DEMO_CHAIN_ID)
    relayed = 0
    while n := relay.step():
        relayed += n
    problems = verify_stream(run.reader("relay-nhc"), relay_reads, DEMO_CHAIN_ID)
    run.note(
        "relay hands the regulator chain a digest of every block",
        "OK" if not problems else "mismatch",
        f"{relayed} digests; stream verified against the business chain",
        not problems,
    )
    regulator = Client(reg_client.url, tls=reg_client.tls, key=reg_root)
    alerts = regulator.alerts("open")
    rules = sorted({a["rule"] for a in alerts})
    run.note(
        "supervision alerts on the regulator chain", "OK", ", ".join(rules), "break_glass" in rules
    )
    zhang = run.did("patient-zhang")
    revoked = next(
        e
        for e in run.reader("patient-zhang").audit(patient=zhang, limit=1000)["events"]
        if e["kind"] == "consent.revoked"
    )
    doc = run.reader("patient-zhang").prove_tx(revoked["tx_id"])
    digest = regulator.get(f"/v1/supervision/digests/{DEMO_CHAIN_ID}/{doc['height']}")
    what = proofs.verify(doc, bytes.fromhex(digest["app_hash"]))
    run.note(
        "zhang's revocation proved against the app hash the regulator holds", "OK", what[:90], True
    )


def run_demo(
    home_dir: Path, port: int, keep_running: bool, console: Console, edge_port: int
) -> bool:
    """Reset `home_dir`, start a node with a gateway, run the demo; True if all as expected."""
    if home_dir.exists():
        shutil.rmtree(home_dir)
    home = NodeHome(home_dir)
    # The admin (as `medchain init` lists it), PUMCH's edge (its org key) and the NHC
    # relay read raw state and blocks: operators of this node, in <home>/operators.json.
    keys = {n: crypto.generate_keypair() for n in ("consortium-admin", "pumch-admin", "relay-nhc")}
    for name, key in keys.items():
        home.keystore.save(name, key, DEMO_PASSPHRASE, DEMO_KDF_ITERATIONS)
        add_operator(home_dir, name, key.suite, key.public)
    admin = keys["consortium-admin"]
    home.write_genesis(DEMO_CHAIN_ID, "consortium-admin", admin)
    # TLS everywhere, as `medchain init` sets it up: a dev CA, node and edge certificates;
    # every client of this process (requester, uploads, relay) trusts that CA.
    ca = create_dev_pki(home.tls, DEMO_CHAIN_ID, ["localhost", "127.0.0.1"], DEMO_PASSPHRASE)
    issue_certificate(home.tls, "edge", ["localhost", "127.0.0.1"], DEMO_PASSPHRASE)
    trusted_before = default_client_tls()
    use_client_tls(ClientTls(ca))
    engine = open_solo(home, block_interval=0.05)
    server = GatewayServer(
        engine, port=port, tls=home.server_tls("node"), operators=load_operators(home_dir)
    )
    server.start()
    console.print(f"[bold]MedChain demo[/] node on {server.url} (home {home_dir}, CA {ca})")
    run = DemoRun(Client(server.url, ca=ca), home, console, keys=keys)
    edge_server: EdgeServer | None = None
    try:
        run_demo_transactions(run)
        edge = open_edge(home, run.key("pumch-admin"), server.url, "pumch", ClientTls(ca))
        edge_server = EdgeServer(edge, "127.0.0.1", edge_port, tls=home.server_tls("edge"))
        edge_server.start()
        run.step(
            "pumch publishes its edge (vault + exchange) endpoint",
            "pumch-admin",
            "identity",
            "set_endpoint",
            {"org_id": "pumch", "edge_url": edge_server.url},
        )
        run_health_story(run, edge_server.url)
        run_interop_story(run, edge_server.url)
        run_supply_story(run, server.url)
        reg_home = NodeHome(home_dir / "regulator")
        reg_root = crypto.generate_keypair()
        run.keys["regulator-root"] = reg_root
        reg_home.write_genesis(REGULATOR_CHAIN_ID, "regulator-root", reg_root, profile="regulator")
        relayer = run.key("relay-nhc")
        add_operator(reg_home.root, "relay-nhc", relayer.suite, relayer.public)
        reg_engine = open_solo(reg_home, block_interval=0.05)
        reg_server = GatewayServer(
            reg_engine,
            port=free_port(),
            tls=home.server_tls("node"),
            operators=load_operators(reg_home.root),
        )
        reg_server.start()
        try:
            run_regulator_story(run, Client(reg_server.url, ca=ca))
        finally:
            reg_server.stop()
            reg_engine.stop()
        ok = all("✔" in r[1] for r in run.rows)
        status = run.client.status()
        table = Table(title="MedChain demo: what happened")
        for col in ("step", "outcome", "detail"):
            table.add_column(col)
        for row in run.rows:
            table.add_row(*row)
        console.print(table)
        console.print(
            f"chain [bold]{status['chain_id']}[/] at height {status['height']}, "
            f"app hash {status['app_hash'][:16]}…"
        )
        console.print(f"Keys are in {home_dir / 'keys'} (passphrase: {DEMO_PASSPHRASE!r}).")
        console.print(
            f"Look at: {server.url}/docs (API), {server.url}/v1/status, "
            f"{server.url}/v1/identity/orgs (public). Records, consent and audit are "
            "signed reads: e.g. `medchain audit --patient "
            f"{run.did('patient-zhang')} --key patient-zhang --home {home_dir} "
            f"--node {server.url}`"
        )
        console.print(
            f"HTTPS with a development CA: `curl --cacert {ca} {server.url}/v1/status`, "
            f"`medchain --ca {ca} status --node {server.url}` (or import it in a browser)."
        )
        if keep_running:
            console.print("Node and PUMCH edge keep running; Ctrl-C to stop.")
            while engine.failure is None:
                time.sleep(1)
        return ok
    except KeyboardInterrupt:
        return True
    finally:
        if edge_server is not None:
            edge_server.stop()
        server.stop()
        engine.stop()
        use_client_tls(trusted_before)
