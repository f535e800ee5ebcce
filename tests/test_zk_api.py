"""Zero-knowledge eligibility from the shell and the REST API, on a real solo node and
its gateway: a lab attests with `medchain zk attest` (the opening file opens only
with the patient's key), an insurer challenges, the patient proves with `medchain
zk prove` (refused locally when the value does not meet the criterion, nothing
sent), the status is read back; who may read attestations and challenges, and that
a stranger learns nothing from a refusal. Plus one end-to-end run on a CometBFT
localnet."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.cli_node import CliNode, ok, run, save_keys, serving
from support.ledger import Ledger, did_of, signed_get
from support.network import Network, caught_up, running_network
from test_zk import build_world, register_record

from medchain import crypto
from medchain.cli.zk import open_opening, scaled_value
from medchain.contracts.zk import model as m
from medchain.crypto import rangeproof
from medchain.sdk.client import Client


class Node(CliNode):
    """The node, its CLI home and keys, and signed (or unsigned) gateway reads."""

    def get(self, who: str | None, path: str) -> httpx.Response:
        with httpx.Client(base_url=self.url) as client:
            if who is None:
                return client.get(path)
            return signed_get(client, self.keys[who], path)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """test_zk's world (a regulator, an accredited lab, an insurer, patients) with two
    HbA1c records at the lab, on a solo node serving its gateway; keys in a keystore."""
    tmp = tmp_path_factory.mktemp("zk-api")
    ledger = Ledger(tmp / "chain.db", crypto.generate_keypair())
    keys = build_world(ledger)
    register_record(ledger, keys["tech"], "obs-high", keys["patient"])
    register_record(ledger, keys["tech"], "obs-low", keys["patient"])
    # The solo node stamps blocks with this machine's clock, years after the Ledger's.
    until = int(time.time() * 1000) + 365 * m.DAY_MS
    renewal = {"org_id": "lab-a", "quantities": [m.HBA1C], "expires_ms": until}
    assert ledger.run(keys["inspector"], "accredit", renewal, "zk").code == 0
    home = tmp / "home"
    save_keys(home, keys)
    with serving(ledger) as url:
        yield Node(url, home, keys)


@pytest.fixture(scope="module")
def proven(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Node:
    """The CLI flow: attest 7.1 %, challenge on diabetes-hba1c, prove."""
    files = tmp_path_factory.mktemp("openings")
    attest(node, "att-high", "obs-high", "7.1", files / "high.json")
    ok(
        run(
            node,
            *("zk", "challenge", "ch-1", "--criterion", "diabetes-hba1c"),
            *("--patient", node.did("patient"), "--key", "ins-admin"),
        )
    )
    ok(run(node, "zk", "prove", "ch-1", "--opening", str(files / "high.json"), "--key", "patient"))
    return node


def attest(node: Node, attestation_id: str, record: str, value: str, out: Path) -> Any:
    return ok(
        run(
            node,
            *("zk", "attest", attestation_id, "--patient", node.did("patient")),
            *("--record", record, "--quantity", m.HBA1C, "--value", value),
            *("--unit", "%", "--scale", "1", "--out", str(out), "--key", "tech"),
        )
    )


def test_the_cli_attests_challenges_and_proves(proven: Node) -> None:
    node = proven
    status = ok(run(node, "zk", "status", "ch-1", "--key", "ins-admin"))
    assert status["status"] == "proven"
    assert status["proof"]["attestation_id"] == "att-high"
    assert status["proof"]["verifier_org"] == "ins-a"
    # The value (7.1 %, scaled 71) is nowhere in the proof, as a whole token: a hex
    # commitment holds "71" by chance, and so may the block height.
    shown = {k: v for k, v in status["proof"].items() if k != "height"}
    assert not {"71", "7.1"} & set(re.findall(r"[\w.]+", json.dumps(shown)))
    listed = ok(run(node, "zk", "criteria"))
    assert {c["criterion_id"] for c in listed} >= {"diabetes-hba1c", "ckd-egfr", "age-65"}


def test_the_opening_file_opens_only_with_the_patients_key(node: Node, tmp_path: Path) -> None:
    attest(node, "att-file", "obs-high", "7.3", tmp_path / "file.json")
    doc = json.loads((tmp_path / "file.json").read_text())
    opening = open_opening(node.keys["patient"], doc)
    assert opening["value"] == 73
    with pytest.raises(crypto.DecryptionFailed):
        open_opening(node.keys["other"], doc)
    with pytest.raises(crypto.DecryptionFailed):
        open_opening(node.keys["patient"], doc | {"attestation_id": "att-other"})


def test_a_value_below_the_criterion_is_refused_before_sending(node: Node, tmp_path: Path) -> None:
    attest(node, "att-low", "obs-low", "6.2", tmp_path / "low.json")
    ok(
        run(
            node,
            *("zk", "challenge", "ch-low", "--criterion", "diabetes-hba1c"),
            *("--patient", node.did("patient"), "--key", "ins-admin"),
        )
    )
    out = run(
        node, "zk", "prove", "ch-low", "--opening", str(tmp_path / "low.json"), "--key", "patient"
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "does not meet criterion diabetes-hba1c" in out.stdout + out.stderr
    assert "6.2" not in out.stdout + out.stderr and "62" not in out.stdout + out.stderr
    assert ok(run(node, "zk", "status", "ch-low", "--key", "patient"))["status"] == "open"
    # The other patient's key does not open the file.
    stolen = run(
        node, "zk", "prove", "ch-low", "--opening", str(tmp_path / "low.json"), "--key", "other"
    )
    assert (
        stolen.returncode == 2
        and "not an opening file this key opens" in stolen.stdout + stolen.stderr
    )


def test_scaled_values_are_exact() -> None:
    assert scaled_value("7.1", m.HBA1C, 1) == 71
    assert scaled_value("6.50", m.HBA1C, 1) == 65
    assert scaled_value("1950-03-01", m.BIRTH_DATE, 0) == (date(1950, 3, 1) - date(1900, 1, 1)).days
    for bad, scale in (("7.15", 1), ("x", 1), ("-1", 0)):
        with pytest.raises(ValueError):
            scaled_value(bad, m.HBA1C, scale)
    with pytest.raises(ValueError):
        scaled_value("1950-02-30", m.BIRTH_DATE, 0)


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("ins_admin", 200),  # the verifier
        ("patient", 200),
        ("inspector", 200),  # a regulator
        ("other", 403),
        ("tech", 403),
        ("doctor", 403),
        (None, 401),
    ],
)
def test_who_may_read_a_challenge(proven: Node, who: str | None, expected: int) -> None:
    answer = proven.get(who, "/v1/zk/challenges/ch-1")
    assert answer.status_code == expected, answer.text
    proof = proven.get(who, "/v1/zk/proofs/ch-1")
    assert proof.status_code == expected, proof.text
    if expected == 403:  # the same answer for an id that does not exist
        missing = proven.get(who, "/v1/zk/challenges/no-such-challenge")
        assert (missing.status_code, missing.json()) == (403, answer.json())


@pytest.mark.parametrize(
    ("who", "expected"),
    [("patient", 200), ("tech", 200), ("inspector", 200), ("ins_admin", 403), ("other", 403)],
)
def test_who_may_read_an_attestation(proven: Node, who: str, expected: int) -> None:
    answer = proven.get(who, "/v1/zk/attestations/att-high")
    assert answer.status_code == expected, answer.text
    if expected == 200:
        assert set(answer.json()) >= {"commitment", "content_hash", "lab_org"}
        assert "value" not in answer.json()


def test_regulators_learn_that_an_id_does_not_exist(proven: Node) -> None:
    assert proven.get("inspector", "/v1/zk/challenges/no-such").status_code == 404
    assert proven.get("inspector", "/v1/zk/attestations/no-such").status_code == 404


def test_criteria_and_accreditations_are_public(proven: Node) -> None:
    criteria = proven.get(None, "/v1/zk/criteria")
    assert criteria.status_code == 200
    assert {c["criterion_id"] for c in criteria.json()} >= {"diabetes-hba1c"}
    lab = proven.get(None, "/v1/zk/accreditations/lab-a")
    assert lab.status_code == 200 and m.HBA1C in lab.json()["quantities"]
    assert proven.get(None, "/v1/zk/accreditations/lab-b").status_code == 404


# -- end to end on a CometBFT localnet --------------------------------------------

LOCALNET_FIRST_IP = "127.0.48.1"  # apart from every other localnet in tests and bench


@pytest.fixture(scope="module")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """A 4-validator CometBFT localnet (real processes), each node with its gateway."""
    yield from running_network(
        "cometbft", tmp_path_factory.mktemp("zk-localnet"), first_ip=LOCALNET_FIRST_IP
    )


def test_a_proof_verifies_on_every_validator_of_a_cometbft_localnet(localnet: Network) -> None:
    """Governance and the lab through node 0, the insurer's challenge through node 1,
    the patient reads it from node 2 and proves through it (a tampered proof first,
    refused by consensus); the insurer reads the proof back from node 3."""
    net = localnet
    k = {
        n: crypto.generate_keypair() for n in ("reg", "inspector", "lab", "tech", "ins", "patient")
    }
    root = net.client(0)

    def ok(client: Client, who: str, contract: str, action: str, body: dict[str, Any]) -> Any:
        signer = net.keys["root"] if who == "root" else k[who]
        result = client.send(signer, contract, action, body)
        assert result["code_name"] == "OK", result
        return result

    for org, admin, kind in (
        ("nhc", "reg", "regulator"),
        ("lab-a", "lab", "lab"),
        ("ins-a", "ins", "insurer"),
    ):
        body = {"org_id": org, "name": org, "org_type": kind, "admin_public_key": k[admin].public}
        ok(root, "root", "identity", "register_org", body)
    ok(
        root,
        "reg",
        "identity",
        "add_member",
        {"org_id": "nhc", "public_key": k["inspector"].public, "roles": ["regulator"]},
    )
    ok(
        root,
        "lab",
        "identity",
        "add_member",
        {"org_id": "lab-a", "public_key": k["tech"].public, "roles": ["lab_technician"]},
    )
    ok(root, "patient", "identity", "register_patient", {})
    ok(root, "inspector", "zk", "set_defaults", {})
    until = root.block_time_ms() + 365 * m.DAY_MS
    ok(
        root,
        "inspector",
        "zk",
        "accredit",
        {"org_id": "lab-a", "quantities": [m.HBA1C], "expires_ms": until},
    )
    patient = did_of(k["patient"])
    record = {
        "record_id": "obs-1", "patient": patient, "resource_type": "Observation",
        "cid": "b" + "a" * 58, "content_hash": crypto.sm3(b"HbA1c 7.1 %"),
    }  # fmt: skip
    ok(root, "tech", "records", "register", record)
    blinding = rangeproof.random_blinding()
    attestation = {
        "attestation_id": "att-1", "patient": patient, "record_id": "obs-1",
        "quantity": m.HBA1C, "unit": "%", "scale": 1, "commitment": rangeproof.commit(71, blinding),
    }  # fmt: skip
    ok(root, "tech", "zk", "attest", attestation)
    expires = root.block_time_ms() + 7 * m.DAY_MS
    challenge = {
        "challenge_id": "ch-1",
        "criterion_id": "diabetes-hba1c",
        "patient": patient,
        "expires_ms": expires,
    }
    posted = ok(net.client(1), "ins", "zk", "challenge", challenge)

    prover = net.client(2, key=k["patient"])
    caught_up(prover, posted["height"])
    seen = prover.zk_challenge("ch-1")
    att = prover.zk_attestation("att-1")
    context = m.proof_context(
        net.chain_id,
        seen | {"nonce": bytes.fromhex(seen["nonce"])},
        att | {"commitment": bytes.fromhex(att["commitment"])},
    )
    proof = rangeproof.prove_threshold(71, blinding, "ge", 65, context)
    answer = {"challenge_id": "ch-1", "attestation_id": "att-1", "proofs": [proof]}
    tampered = prover.send(
        k["patient"], "zk", "prove", answer | {"proofs": [proof[:-1] + bytes([proof[-1] ^ 1])]}
    )
    assert tampered["code_name"] == "INVALID_PROOF", tampered
    done = ok(prover, "patient", "zk", "prove", answer)

    verifier = net.client(3, key=k["ins"])
    caught_up(verifier, done["height"])
    status = verifier.zk_challenge("ch-1")
    assert status["status"] == "proven"
    assert status["proof"]["verifier_org"] == "ins-a" and status["proof"]["patient"] == patient
