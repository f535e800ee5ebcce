"""`medchain claims` run as a user runs it, against a solo node's gateway: the
insurer publishes a plan and enrols the patient, the pharmacy submits the FHIR
Claim of a dispensed pen, the insurer settles, the patient reads the
ExplanationOfBenefit; a second claim of the pen and a stranger's read fail."""

from __future__ import annotations

import json
from pathlib import Path

from support.ledger import DATA, Ledger
from support.servers import free_port, medchain
from test_claims import DRUG, World

from medchain.consensus.solo import SoloEngine
from medchain.contracts.claims import model as m
from medchain.node import GatewayServer
from medchain.sdk.keystore import Keystore

CLAIM = DATA / "fhir" / "claim-insulin-pen.json"


def test_plan_enrol_submit_settle_and_show_from_the_shell(ledger: Ledger, tmp_path: Path) -> None:
    world = World(ledger)
    world.dispensed()
    home = tmp_path / "home"
    store = Keystore(home / "keys")
    for who in ("insurer", "insurer_clerk", "pharmacy", "patient", "stranger_patient"):
        store.save(who, world.k[who], "correct horse", iterations=1000)
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "plan_id": "basic-2027",
                "covered": [{"code": DRUG, "unit_cap_fen": 8_000, "required_criteria": []}],
                "copay_bp": 2_000,
                "annual_limit_fen": 1_000_000,
            }
        )
    )
    engine = SoloEngine(ledger.app, block_interval=0.05)
    engine.start()
    gateway = GatewayServer(engine, port=free_port())
    gateway.start()

    def run(*args: str) -> tuple[int, str, str]:
        out = medchain("claims", *args, "--home", str(home), "--node", gateway.url)
        return out.returncode, out.stdout, out.stderr

    try:
        assert run("plan", "--plan", str(plan), "--key", "insurer")[0] == 0
        enrol = run(
            "enrol", "--plan", "basic-2027", "--patient", world.patient, "--key", "insurer_clerk"
        )
        assert enrol[0] == 0, enrol
        submit = (
            "submit", "--claim", str(CLAIM), "--patient", world.patient, "--plan", "basic-2027",
            "--insurer", "pingan", "--org", "yifeng", "--key", "pharmacy",
        )  # fmt: skip
        code, out, err = run(*submit)
        assert code == 0, err
        answer = json.loads(out)
        assert answer["claim_id"] == "CLM-YF-0001" and answer["outcome"] == m.COMPLETE
        assert answer["payable_fen"] == 6_400
        # the same visit and pen billed again under a new Claim id: refused
        again = tmp_path / "again.json"
        again.write_text(json.dumps(json.loads(CLAIM.read_bytes()) | {"id": "CLM-YF-0002"}))
        code, _, err = run(*submit[:2], str(again), *submit[3:])
        assert code != 0 and "encounter already claimed in claim CLM-YF-0001" in err
        settle = ("settle", "CLM-YF-0001", "--reference", "PAY-1", "--amount", "64.00")
        assert run(*settle, "--key", "insurer_clerk")[0] == 0
        code, out, err = run("show", "CLM-YF-0001", "--view", "eob", "--key", "patient")
        assert code == 0, err
        eob = json.loads(out)
        assert eob["resourceType"] == "ExplanationOfBenefit"
        assert eob["payment"]["amount"]["value"] == 64.0
        code, _, err = run("show", "CLM-YF-0001", "--key", "stranger_patient")
        assert code != 0 and "a claim is for its patient" in err
        code, out, _ = run("list", "--patient", world.patient, "--key", "patient")
        assert [c["status"] for c in json.loads(out)] == [m.PAID]
    finally:
        gateway.stop()
        engine.stop()
