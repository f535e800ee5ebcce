"""`medchain models infer` end to end: a doctor at hospital B runs a registered model
on a patient's panel held at hospital A, through the exchange, and registers the AI
result; and the pure-Python inference against fl/model.py (numpy, .venv-fl)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.cli_node import run, save_keys, serving
from support.ledger import Ledger, did_of
from support.servers import free_port

from medchain import crypto
from medchain.edge.custodian import CustodianEdge
from medchain.edge.requester import upload_record
from medchain.edge.vault import Vault
from medchain.fl import inference
from medchain.fl.features import FEATURES, LOINC
from medchain.node import EdgeServer
from medchain.sdk.client import Client

FL_PYTHON = Path(__file__).resolve().parents[1] / ".venv-fl" / "bin" / "python"
# Weights for the ten features, then the bias: a model file written by the pure writer.
PARAMS = [0.31, -0.2, 0.92, 0.41, -0.13, 0.07, -0.55, 0.38, 0.71, 0.29, -0.04]
# One patient in real units: age, sex, then the eight LOINC measurements.
VALUES = {
    "bmi": 32.1,
    "map": 101.0,
    "tc": 212.0,
    "ldl": 139.0,
    "hdl": 38.0,
    "tc_hdl": 5.6,
    "tg": 148.4,
    "glucose": 104.0,
}


def panel(pid: str) -> dict[str, Any]:
    """A patient's panel as one record: a collection Bundle of the Patient and one
    final Observation per LOINC feature (the form fl/synth.py writes resources in)."""
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": pid, "gender": "male", "birthDate": "1964-01-01"}
    ]
    for f in FEATURES[2:]:
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"{pid}-{f.code}",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": f.code, "display": f.display}]},
                "subject": {"reference": f"Patient/{pid}"},
                "valueQuantity": {"value": VALUES[f.name], "unit": f.unit},
            }
        )
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }


@dataclass
class World:
    url: str
    home: Path
    keys: dict[str, crypto.KeyPair]
    edges: dict[str, CustodianEdge]
    model_file: Path
    model_sm3: str

    def client(self) -> Client:
        return Client(self.url)

    def did(self, who: str) -> str:
        return did_of(self.keys[who])

    def ok(self, who: str, contract: str, action: str, payload: dict[str, Any]) -> Any:
        r = self.client().send(self.keys[who], contract, action, payload)
        assert r["code_name"] == "OK", r
        return r

    @property
    def at(self) -> tuple[str, ...]:
        return ("--home", str(self.home), "--node", self.url)

    def infer(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(self, "models", "infer", *args)

    def results_at(self, org: str, who: str) -> list[str]:
        return list(self.edges[org].vault.patient_records(self.did(who), ["Observation"]))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A solo node; hospitals A and B with an edge each; doctor_b at B; two patients
    whose panels are at A; model diab-risk v1 registered by A (no study lineage)."""
    tmp = tmp_path_factory.mktemp("infer")
    names = ("admin_a", "admin_b", "doctor_b", "patient", "stranger")
    keys = {n: crypto.generate_keypair() for n in names}
    ledger = Ledger(tmp / "chain.db", crypto.generate_keypair())
    ledger.add_org("hosp-a", keys["admin_a"])
    ledger.add_org("hosp-b", keys["admin_b"])
    ledger.add_staff(keys["admin_b"], "hosp-b", keys["doctor_b"], ["doctor"])
    ledger.add_patient(keys["patient"])
    ledger.add_patient(keys["stranger"])
    home = tmp / "home"
    save_keys(home, keys)
    admins = {"hosp-a": keys["admin_a"], "hosp-b": keys["admin_b"]}
    operators = frozenset((k.suite, k.public) for k in admins.values())
    with serving(ledger, operators) as url:
        edges: dict[str, CustodianEdge] = {}
        servers: list[EdgeServer] = []
        model = inference.model_bytes(PARAMS)
        model_file = tmp / "diab-risk-1.bin"
        model_file.write_bytes(model)
        w = World(url, home, keys, edges, model_file, crypto.sm3(model).hex())
        try:
            for org, admin in admins.items():
                node = Client(url, key=admin)
                edges[org] = CustodianEdge(Vault(tmp / f"vault-{org}", admin), admin, node)
                server = EdgeServer(edges[org], "127.0.0.1", free_port(), sync_interval=0.1)
                server.start()
                servers.append(server)
                who = "admin_a" if org == "hosp-a" else "admin_b"
                w.ok(who, "identity", "set_endpoint", {"org_id": org, "edge_url": server.url})
            for who in ("patient", "stranger"):
                r = upload_record(
                    keys["admin_a"],
                    w.client().chain_id,
                    servers[0].url,
                    json.dumps(panel(f"p-{who}")).encode(),
                    w.did(who),
                    f"panel-{who}",
                )
                assert r.status_code == 201, r.text
            w.ok(
                "admin_a",
                "models",
                "register",
                {
                    "model_id": "diab-risk",
                    "version": 1,
                    "model_hash": crypto.sm3(model),
                    "card_hash": crypto.sm3(b"card of diab-risk v1"),
                    "licence": "Apache-2.0",
                },
            )
            yield w
        finally:
            for server in servers:
                server.stop()


def expected_probability(who: str) -> float:
    resources = inference.panel_resources(panel(f"p-{who}"))
    return inference.predict(PARAMS, inference.feature_row(resources))


def test_a_doctor_with_consent_stores_and_registers_the_result_at_their_hospital(
    world: World,
) -> None:
    now = world.client().block_time_ms()
    world.ok(
        "patient",
        "consent",
        "grant",
        {
            "patient": world.did("patient"),
            "grantee_kind": "did",
            "grantee": world.did("doctor_b"),
            "purposes": ["TREAT"],
            "scope_types": ["Bundle", "Observation", "Patient"],
            "expires_ms": now + 86_400_000,
        },
    )
    out = world.infer(
        "--model", "diab-risk", "--model-file", str(world.model_file),
        "--input", "panel-patient", "--key", "doctor-b",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    output_id = doc["output_record_id"]
    assert doc["probability"] == pytest.approx(expected_probability("patient"), abs=1e-12)
    assert doc["model"]["verified"] and doc["model"]["version"] == 1
    # The result is an Observation at B's edge, not A's, derived from the input.
    assert world.results_at("hosp-b", "patient") == [output_id]
    assert world.results_at("hosp-a", "patient") == []
    stored = json.loads(world.edges["hosp-b"].vault.plaintext(output_id))
    assert stored["resourceType"] == "Observation"
    assert stored["valueQuantity"]["value"] == doc["probability"]
    assert stored["derivedFrom"][0]["identifier"]["value"] == "panel-patient"
    assert world.model_sm3 in stored["method"]["text"]
    # The chain's provenance, read afresh: the model version and the input's hash.
    reader = Client(world.url, key=world.keys["doctor_b"])
    prov = reader.provenance(output_id, purpose="TREAT")
    assert prov == doc["provenance"]
    assert prov["result"]["model_id"] == "diab-risk" and prov["result"]["version"] == 1
    assert prov["model"]["model_hash"] == world.model_sm3
    source = reader.record("panel-patient", purpose="TREAT")
    assert prov["result"]["input_content_hash"] == source["content_hash"]
    assert prov["result"]["org_id"] == "hosp-b" and prov["input_unchanged"] is True


def test_without_consent_nothing_is_stored_or_registered(world: World) -> None:
    out = world.infer(
        "--model", "diab-risk", "--model-file", str(world.model_file),
        "--input", "panel-stranger", "--key", "doctor-b",
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    error = json.loads(out.stdout)["error"]
    assert error["code"] == "UNAUTHORIZED", error
    assert world.results_at("hosp-b", "stranger") == []


def test_an_altered_model_file_is_refused_before_anything_is_fetched(
    world: World, tmp_path: Path
) -> None:
    data = bytearray(world.model_file.read_bytes())
    data[-3] ^= 0x01  # one bit of the bias
    altered = tmp_path / "altered.bin"
    altered.write_bytes(bytes(data))
    nonce = world.client().account(world.keys["doctor_b"])["next_nonce"]
    out = world.infer(
        "--model", "diab-risk", "--model-file", str(altered),
        "--input", "panel-patient", "--key", "doctor-b",
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "altered" in out.stdout + out.stderr
    # No exchange request (nor anything else) was signed by the doctor.
    assert world.client().account(world.keys["doctor_b"])["next_nonce"] == nonce


def test_the_pure_reader_refuses_a_file_not_in_canonical_form() -> None:
    good = inference.model_bytes(PARAMS)
    assert inference.parse_model(good) == PARAMS
    for bad in (good[1:], good + b"\0", good[:-8], good.replace(b'"<f8"', b'"<f4"')):
        with pytest.raises(inference.InferenceError):
            inference.parse_model(bad)


@pytest.mark.skipif(not FL_PYTHON.exists(), reason="needs .venv-fl (numpy)")
def test_pure_inference_matches_fl_model_in_numpy(tmp_path: Path) -> None:
    """The same file, the same rows: fl/model.py (numpy) and fl/inference.py agree
    to 1e-9, and numpy's writer and the pure one write the same bytes."""
    rows = [[(i * 7 + j * 3) % 11 / 3.0 - 1.5 for j in range(10)] for i in range(20)]
    rows.append([40.0] * 10)  # far into the clipped range
    model = tmp_path / "m.bin"
    model.write_bytes(inference.model_bytes(PARAMS))
    script = (
        "import json, sys, numpy as np\n"
        "from medchain.fl import model\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "params = model.parse_model(data)\n"
        "rows = np.array(json.loads(sys.argv[2]), dtype=np.float64)\n"
        "print(json.dumps({'p': model.predict_proba(params, rows).tolist(),\n"
        "    'same_bytes': model.model_bytes(params) == data}))\n"
    )
    done = subprocess.run(
        [str(FL_PYTHON), "-c", script, str(model), json.dumps(rows)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    numpy_side = json.loads(done.stdout)
    assert numpy_side["same_bytes"] is True
    params = inference.parse_model(model.read_bytes())
    ours = [inference.predict(params, row) for row in rows]
    assert len(ours) == len(numpy_side["p"])
    for a, b in zip(ours, numpy_side["p"], strict=True):
        assert abs(a - b) < 1e-9


def test_models_verify_shares_the_check(world: World, tmp_path: Path) -> None:
    """`models verify` (cli/fl.py) runs the same check as infer: 0 on the published
    file, 1 (ALTERED) on a file one bit away."""
    altered = tmp_path / "altered.bin"
    altered.write_bytes(world.model_file.read_bytes()[:-1] + b"\x01")

    def verify(file: Path) -> subprocess.CompletedProcess[str]:
        args = ("--model", "diab-risk", "--key", "doctor-b")
        return run(world, "models", "verify", str(file), *args)

    good = verify(world.model_file)
    assert good.returncode == 0, good.stdout + good.stderr
    assert json.loads(good.stdout)["verified"] is True
    bad = verify(altered)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "ALTERED" in bad.stdout
