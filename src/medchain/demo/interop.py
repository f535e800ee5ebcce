"""Story 3, interoperability: HIS data (HL7 v2) becomes FHIR with a mapping
attestation, and a CT study is recognised across hospitals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from medchain.demo.records import upload
from medchain.demo.run import (
    DEMO_CHAIN_ID,
    DemoRun,
)
from medchain.edge.requester import (
    import_file,
    link_patient,
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
