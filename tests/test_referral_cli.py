"""`medchain referral` run as a user runs it, against a solo node's gateway and
hosp-a's edge: the doctor refers, the patient approves, the receiving doctor
accepts, and the timeline is shown to the parties and refused to a stranger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.consortium import Consortium, running_consortium
from support.servers import medchain

from medchain.sdk.keystore import Keystore

PASSPHRASE = "correct horse"
SERVICE_REQUEST = {
    "resourceType": "ServiceRequest",
    "status": "active",
    "intent": "order",
    "subject": {"reference": "Patient/p"},
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "11429006"}]},
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def run(world: Consortium, home: Path, *args: str) -> tuple[int, str, str]:
    out = medchain("referral", *args, "--home", str(home), "--node", world.node.url)
    return out.returncode, out.stdout, out.stderr


def test_refer_approve_accept_and_the_timeline_from_the_shell(
    world: Consortium, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    store = Keystore(home / "keys")
    for who in ("doctor_a", "doctor_b", "patient", "parent"):
        store.save(who, world.keys[who], PASSPHRASE, iterations=1000)
    world.grant("doctor_a", ["DiagnosticReport"])
    stored = world.upload(
        "doctor_a", json.dumps(SERVICE_REQUEST).encode(), world.did("patient"), record_id="sr-1"
    )
    assert stored.status_code == 201, stored.text
    code, _, err = run(
        world,
        home,
        "refer",
        "ref-cli",
        "--patient",
        world.did("patient"),
        "--to-org",
        "hosp-b",
        "--to-doctor",
        world.did("doctor_b"),
        "--reason-code",
        "ICD-10|I48.0",
        "--records",
        "report-1",
        "--service-request-id",
        "sr-1",
        "--urgency",
        "urgent",
        "--key",
        "doctor_a",
    )
    assert code == 0, err
    code, _, err = run(world, home, "accept", "ref-cli", "--key", "doctor_b")
    assert code != 0 and "INVALID_STATE" in err  # not approved yet
    assert run(world, home, "approve", "ref-cli", "--key", "patient")[0] == 0
    assert run(world, home, "accept", "ref-cli", "--key", "doctor_b")[0] == 0
    out = medchain(
        "--json",
        "referral",
        "timeline",
        "ref-cli",
        "--key",
        "doctor_a",
        "--home",
        str(home),
        "--node",
        world.node.url,
    )
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)  # the timeline itself, as the API answers it
    assert [s["step"] for s in shown["steps"]] == ["requested", "approved", "accepted"]
    code, _, err = run(world, home, "timeline", "ref-cli", "--key", "parent")
    assert code != 0 and "a referral is for its patient" in err  # the gateway's one 403
