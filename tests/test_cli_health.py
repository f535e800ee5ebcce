"""Health records from the command line: a node and an edge run as processes,
and staff and patient use `medchain records | consent | exchange | audit | import |
recognition`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from support.ledger import DATA
from support.servers import free_port, medchain, start_node, wait_until_serving

from medchain.fhir.hl7v2 import convert_message
from medchain.fhir.validate import canonical_json

REPORT = DATA / "fhir" / "spec-examples" / "DiagnosticReport-f201.json"


def start_edge(home: str, node: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medchain.cli",
            "edge",
            "serve",
            "--key",
            "admin-a",
            "--home",
            home,
            "--node",
            node,
            "--port",
            str(port),
            "--insecure-http",  # TLS is beside the point here (tests/test_security_tls.py)
        ],
        env={"MEDCHAIN_PASSPHRASE": "correct horse", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return wait_until_serving(proc, f"http://127.0.0.1:{port}/edge/v1/status")


def did(home: str, key: str) -> str:
    out = medchain("keys", "show", key, "--home", home)
    return str(json.loads(out.stdout)["did"])


def test_records_consent_exchange_audit_from_the_cli(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert medchain("init", "--home", home, "--chain-id", "cli-health").returncode == 0
    for key in ("admin-a", "admin-b", "doctor-b", "patient"):
        assert medchain("keys", "new", key, "--home", home).returncode == 0
    # hosp-a's edge runs beside this node: its key reads raw state and blocks there.
    edge_key = json.loads(medchain("keys", "show", "admin-a", "--home", home).stdout)
    added = medchain("operators", "add", "hosp-a-edge", edge_key["public_key"], "--home", home)
    assert added.returncode == 0, added.stderr
    port = free_port()
    node = f"http://127.0.0.1:{port}"
    proc = start_node(Path(home), port)
    edge = None
    at = ("--home", home, "--node", node)

    def tx(key: str, contract: str, action: str, payload: str) -> None:
        out = medchain("tx", contract, action, "--key", key, "--payload", payload, *at)
        assert out.returncode == 0, out.stdout + out.stderr

    try:
        for org, admin in (("hosp-a", "admin-a"), ("hosp-b", "admin-b")):
            tx(
                "admin",
                "identity",
                "register_org",
                json.dumps(
                    {
                        "org_id": org,
                        "name": org,
                        "org_type": "hospital",
                        "admin_public_key": {"$key": admin},
                    }
                ),
            )
        tx(
            "admin-b",
            "identity",
            "add_member",
            json.dumps(
                {"org_id": "hosp-b", "public_key": {"$key": "doctor-b"}, "roles": ["doctor"]}
            ),
        )
        tx("patient", "identity", "register_patient", "{}")
        patient, doctor = did(home, "patient"), did(home, "doctor-b")
        edge = start_edge(home, node, free_port())

        added = medchain(
            "records",
            "add",
            str(REPORT),
            "--patient",
            patient,
            "--record-id",
            "report-1",
            "--key",
            "admin-a",
            *at,
        )
        assert added.returncode == 0, added.stdout + added.stderr
        assert "Stored and registered report-1" in added.stdout

        out_file = tmp_path / "report.json"
        get = ("exchange", "get", "report-1", "--key", "doctor-b", "--out", str(out_file), *at)
        refused = medchain(*get)
        # The chain refuses the request itself (and audits it), saying what to do next.
        assert refused.returncode == 1 and "UNAUTHORIZED" in refused.stderr
        assert "consent" in refused.stderr

        granted = medchain(
            "consent",
            "grant",
            "--to",
            doctor,
            "--types",
            "DiagnosticReport",
            "--key",
            "patient",
            *at,
        )
        assert granted.returncode == 0, granted.stderr
        grant_id = granted.stdout.split()[1]
        got = medchain(*get)
        assert got.returncode == 0, got.stdout + got.stderr
        stored = json.loads(REPORT.read_bytes()) | {"id": "report-1"}
        assert out_file.read_bytes() == canonical_json(stored)

        listed = medchain("consent", "list", "--patient", patient, "--key", "patient", *at)
        assert grant_id in listed.stdout and "active" in listed.stdout
        exported = json.loads(
            medchain("consent", "export", grant_id, "--key", "doctor-b", *at).stdout
        )
        assert exported["resourceType"] == "Consent" and exported["status"] == "active"

        revoke = ("consent", "revoke", grant_id, "--reason", "moved away", "--key", "patient")
        assert medchain(*revoke, *at).returncode == 0
        assert medchain(*get).returncode == 1

        audit = medchain("audit", "--patient", patient, "--key", "patient", *at)
        assert audit.returncode == 0
        for kind in (
            "records.registered",
            "consent.granted",
            "exchange.released",
            "consent.revoked",
            "REFUSED",
        ):
            assert kind in audit.stdout
        fhir = json.loads(
            medchain("audit", "--actor", doctor, "--fhir", "--key", "doctor-b", *at).stdout
        )
        assert fhir["resourceType"] == "Bundle" and fhir["total"] == 4

        # HIS import and exam mutual recognition
        synthea = sorted((DATA / "fhir" / "synthea").glob("*.json"))[0]
        imported = medchain(
            "import", "fhir", str(synthea), "--patient", patient, "--key", "admin-a", *at
        )
        assert imported.returncode == 0, imported.stdout + imported.stderr
        assert synthea.name in imported.stdout and " 51 " in imported.stdout
        ghh = DATA / "hl7v2" / "ORU-R01-RMGEAD.hl7"
        source = convert_message(ghh.read_bytes()).patient
        linked = medchain(
            "import",
            "link-patient",
            "--system",
            source.system,
            "--id",
            source.identifier,
            "--did",
            patient,
            "--key",
            "admin-a",
            *at,
        )
        assert linked.returncode == 0, linked.stderr
        hl7_import = medchain("import", "hl7", str(ghh), "--key", "admin-a", *at)
        assert hl7_import.returncode == 0 and " 3 " in hl7_import.stdout, hl7_import.stdout
        with sqlite3.connect(Path(home) / "vaults" / "hosp-a" / "vault.db") as vault:
            record_id, salt = vault.execute(  # the custodian hands the auditor the salt
                "SELECT r.record_id, r.salt FROM records r JOIN search s USING (record_id) "
                "WHERE s.resource_type = 'Observation' AND s.record_id LIKE 'hosp-a-%' "
                "ORDER BY r.rowid DESC LIMIT 1"
            ).fetchone()
        verify = ("import", "verify", record_id, "--input", str(ghh), "--key", "admin", *at)
        verified = medchain(*verify, "--salt", bytes(salt).hex())
        assert verified.returncode == 0 and "verified" in verified.stdout, verified.stderr
        assert medchain(*verify, "--salt", "00" * 16).returncode == 1
        study = json.loads(
            (DATA / "fhir" / "spec-examples" / "ImagingStudy-example.json").read_bytes()
        )
        study["started"] = datetime.now(UTC).replace(microsecond=0).isoformat()
        study_file = tmp_path / "ct.json"
        study_file.write_text(json.dumps(study))
        added = medchain(
            "records",
            "add",
            str(study_file),
            "--patient",
            patient,
            "--record-id",
            "ct-1",
            "--key",
            "admin-a",
            *at,
        )
        assert added.returncode == 0, added.stderr
        ct = "http://dicom.nema.org/resources/ontology/DCM|CT"
        rule = medchain(
            "recognition",
            "rule",
            "--exam-code",
            ct,
            "--max-age-days",
            "180",
            "--min-level",
            "3B",
            "--key",
            "admin",
            *at,
        )
        assert rule.returncode == 0, rule.stdout + rule.stderr
        assert (
            medchain(
                "recognition", "accredit", "--org", "hosp-a", "--level", "3A", "--key", "admin", *at
            ).returncode
            == 0
        )
        find = ("recognition", "find", "--patient", patient, "--key", "doctor-b", *at)
        assert "No prior exams" in medchain(*find).stdout
        assert (
            medchain(
                "consent",
                "grant",
                "--to",
                doctor,
                "--types",
                "ImagingStudy",
                "--key",
                "patient",
                *at,
            ).returncode
            == 0
        )
        found = medchain(*find)
        assert "ct-1" in found.stdout and "yes" in found.stdout
        assert medchain("recognition", "accept", "ct-1", "--key", "doctor-b", *at).returncode == 0
        report = json.loads(
            medchain("recognition", "report", "--json", "--key", "admin", *at).stdout
        )
        assert report["hospitals"] == [
            {"org_id": "hosp-b", "exams_avoided": 1, "repeated": 0, "recognition_rate": 1.0}
        ]

        assert medchain("records", "erase", "report-1", "--key", "patient", *at).returncode == 0
        receipt = medchain("records", "receipt", "report-1", "--key", "patient", *at)
        assert receipt.returncode == 0, receipt.stdout + receipt.stderr
        assert json.loads(receipt.stdout)["verified"] is True
    finally:
        if edge is not None:
            edge.terminate()
            edge.wait(timeout=20)
        proc.terminate()
        proc.wait(timeout=20)
