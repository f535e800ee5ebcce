"""Issue 17 end to end, embedded: `medchain fl run` trains a study on a solo node, and
on a 4-validator CometBFT localnet (the [cometbft] case, `-k cometbft`).

Three hospitals hold synthetic diabetes patients (FHIR, imported into their vaults by
the edge's import path); patients join the study by consent; `fl run --rounds 2`,
one patient leaves, `fl run --rounds 1`. The chain's cohorts hold that patient in
rounds 1-2 and not in 3 (the proofs verify), every round record names the model
file trained that round, the registry's model is the final file (an altered copy is
detected), and the contributions are on chain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.consortium import run_in_rounds
from support.ledger import Ledger, did_of
from support.network import ENGINES, Network, running_network
from support.servers import free_port

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.contracts.research import model as rm
from medchain.edge.custodian import CustodianEdge
from medchain.edge.importer import import_fhir
from medchain.edge.vault import Vault
from medchain.fl.features import STUDY_FEATURES
from medchain.gateway.limits import Limits
from medchain.node import GatewayServer
from medchain.sdk.client import Client
from medchain.sdk.keystore import Keystore
from medchain.sdk.tls import ClientTls

REPO = Path(__file__).resolve().parents[1]
FL_PYTHON = REPO / ".venv-fl" / "bin" / "python"
PASSPHRASE = "correct horse"
STUDY = "dm-progression-2026"
HOSPITALS = ("hosp-a", "hosp-b", "hosp-c")
PER_HOSPITAL = 25  # 75 patients: at most 20 register through each localnet node
DAY_MS = 86_400_000


@dataclass
class World:
    url: str
    home: Path
    keys: dict[str, crypto.KeyPair]
    patients: dict[str, list[str]]  # org -> patient key names
    tls: ClientTls | None = None
    env: dict[str, str] = field(default_factory=dict)  # the CLI's trust (MEDCHAIN_CA)

    def client(self, who: str | None = None) -> Client:
        return Client(self.url, tls=self.tls, key=None if who is None else self.keys[who])

    @property
    def at(self) -> tuple[str, ...]:
        return ("--home", str(self.home), "--node", self.url)

    def medchain(self, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
        """`medchain ARGS --json` as the sponsor's script runs it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDCHAIN_")}
        env |= {"MEDCHAIN_PASSPHRASE": PASSPHRASE, **self.env, **env_vars}
        return subprocess.run(
            [sys.executable, "-m", "medchain.cli", *args, "--json", *self.at],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )


def solo_network(tmp: Path) -> Iterator[Network]:
    """support.network's solo node, without the self-registration limit (one address
    registers every patient here)."""
    root, operator = crypto.generate_keypair(), crypto.generate_keypair()
    ledger = Ledger(tmp / "chain.db", root)
    engine = SoloEngine(ledger.app, block_interval=0.05)
    engine.start()
    operators = frozenset({(operator.suite, operator.public)})
    gateway = GatewayServer(
        engine, port=free_port(), operators=operators, limits=Limits.unlimited()
    )
    gateway.start()
    try:
        yield Network("solo", ledger.chain_id, [gateway.url], {"root": root, "operator": operator})
    finally:
        gateway.stop()
        engine.stop()


@pytest.fixture(scope="module", params=ENGINES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """A sponsor and three hospitals on a solo node, or on a 4-validator CometBFT
    localnet (the [cometbft] test); each hospital's vault holds its synthetic
    patients, and every patient has joined the study."""
    if not FL_PYTHON.exists():
        pytest.fail(f"{FL_PYTHON} is missing: run make setup (it makes the second venv)")
    tmp = tmp_path_factory.mktemp(f"fl-chain-{request.param}")
    synth = tmp / "synth"
    synth_args = ["--out", str(synth), "--hospitals", ",".join(HOSPITALS)]
    made = subprocess.run(
        [str(FL_PYTHON), "-m", "medchain.fl.synth", *synth_args, "--patients", str(PER_HOSPITAL)],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    manifest = json.loads((synth / "patients.json").read_text())
    patients = {org: list(ids) for org, ids in manifest["hospitals"].items()}
    everyone = [pid for ids in patients.values() for pid in ids]
    networks = solo_network(tmp) if request.param == "solo" else running_network("cometbft", tmp)
    for network in networks:
        keys = {n: crypto.generate_keypair() for n in ("admin-s", "researcher", "admin-b")}
        keys |= {"root": network.keys["root"], "admin-a": network.keys["operator"]}
        keys |= {"admin-c": crypto.generate_keypair()}
        keys |= {pid: crypto.generate_keypair() for pid in everyone}
        node = network.client(0)
        orgs = [("uni-research", "admin-s", "research")]
        orgs += [(org, f"admin-{org[-1]}", "hospital") for org in HOSPITALS]
        registrations = [
            {"org_id": org, "name": org, "org_type": kind, "admin_public_key": keys[admin].public}
            for org, admin, kind in orgs
        ]
        run_in_rounds(node, keys, [("root", "identity", "register_org", r) for r in registrations])
        staff = {"org_id": "uni-research", "public_key": keys["researcher"].public}
        run_in_rounds(
            node, keys, [("admin-s", "identity", "add_member", staff | {"roles": ["researcher"]})]
        )
        # Patients register themselves, a gateway taking 20 at once from one address:
        # spread over the nodes, node 0's share last (so it has seen the others').
        nodes = len(network.urls)
        for i in [*range(1, nodes), 0]:
            patients_there = [(p, "identity", "register_patient", {}) for p in everyone[i::nodes]]
            run_in_rounds(network.client(i), keys, patients_there)
        home = tmp / "home"
        store = Keystore(home / "keys")
        for name in ("researcher", "admin-a", "admin-b", "admin-c"):
            store.save(name, keys[name], PASSPHRASE, 1000)
        # The HIS export goes in through the edge's import path; the edges read the
        # chain as the network's operator (hosp-a's admin).
        reader = network.client(0, key=keys["admin-a"])
        for org in HOSPITALS:
            admin = keys[f"admin-{org[-1]}"]
            edge = CustodianEdge(Vault(home / "vaults" / org, admin), admin, reader)
            for pid in patients[org]:
                edge.link_patient(manifest["system"], pid, did_of(keys[pid]))
            report = import_fhir(edge, (synth / f"{org}.ndjson").read_bytes()).to_json()
            assert report["imported"] == PER_HOSPITAL * 10 and not report["rejected"], report
            edge.vault.close()
        ethics = {
            "record_id": "ethics-dm-2026",
            "patient": did_of(keys[everyone[0]]),
            "resource_type": "DocumentReference",
            "cid": "b" + "c" * 58,
            "content_hash": crypto.sm3(b"ethics approval"),
        }
        assert node.send(keys["admin-a"], "records", "register", ethics)["code"] == 0
        study = {
            "study_id": STUDY,
            "title": "Diabetes progression from BMI, blood pressure, lipids, glucose, age, sex",
            "protocol_hash": crypto.sm3(b"protocol v1"),
            "ethics_record_id": "ethics-dm-2026",
            "data_types": ["Patient", "Observation"],
            "features": list(STUDY_FEATURES),
            "hospitals": list(HOSPITALS),
            "rounds_planned": 3,
            "aggregation": "ckks-fedavg",
            "expires_ms": node.block_time_ms() + 365 * DAY_MS,
        }
        created = node.send(keys["researcher"], "research", "create_study", study)
        assert created["code"] == 0, created
        grant = {
            "grantee_kind": "study",
            "grantee": STUDY,
            "purposes": ["HRESEARCH"],
            "scope_types": ["Patient", "Observation"],
            "expires_ms": node.block_time_ms() + 300 * DAY_MS,
        }
        run_in_rounds(
            node,
            keys,
            [(p, "consent", "grant", grant | {"patient": did_of(keys[p])}) for p in everyone],
        )
        ca = {} if network.tls is None else {"MEDCHAIN_CA": str(network.tls.ca)}
        yield World(network.urls[0], home, keys, patients, network.tls, ca)


def kept_ciphertext_hashes(workdir: Path) -> dict[int, dict[str, str]]:
    """SM3 of each update the aggregator kept in its last run (W/server/state.pkl), by
    round and hospital, read in .venv-fl where its classes live."""
    code = (
        "import json, pickle, sys\n"
        "from medchain.crypto import sm3\n"
        "state = pickle.load(open(sys.argv[1], 'rb'))\n"
        "out = {}\n"
        "for u in state.received:\n"
        "    out.setdefault(u.round, {})[u.org] = sm3(u.payload).hex()\n"
        "print(json.dumps(out))\n"
    )
    state = str(workdir / "server" / "state.pkl")
    done = subprocess.run([str(FL_PYTHON), "-c", code, state], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {int(r): hashes for r, hashes in json.loads(done.stdout).items()}


@pytest.mark.timeout(900)
def test_a_study_trained_over_two_runs_is_recorded_round_by_round(
    world: World, tmp_path: Path
) -> None:
    workdir = tmp_path / "W"
    sites = [f"--site={org}=admin-{org[-1]}" for org in HOSPITALS]
    run = ("fl", "run", "--study", STUDY, "--key", "researcher", "--workdir", str(workdir), *sites)
    # hosp-b named with another hospital's key: round 1 stops after hosp-a committed
    # its cohort; the next run reuses that commitment (same members, same root).
    wrong = [*run[:-2], "--site=hosp-b=admin-c", sites[2]]
    stopped = world.medchain(*wrong, "--rounds", "2")
    assert stopped.returncode == 1 and "FL_RUN_FAILED" in stopped.stdout, stopped.stderr
    assert "prepare-round` failed (exit 4): error: UNAUTHORIZED" in stopped.stdout
    assert [c["org_id"] for c in world.client("researcher").study_cohorts(STUDY, 1)["cohorts"]] == [
        "hosp-a"
    ]
    first = world.medchain(*run, "--rounds", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "round 2 of 3: recorded" in first.stderr  # progress: stderr under --json

    # Before anything starts: the second venv must be there, and a later run continues
    # only from the model file the chain recorded.
    no_venv = world.medchain(*run, "--rounds", "1", MEDCHAIN_FL_PYTHON=str(tmp_path / "none"))
    assert no_venv.returncode == 3 and "make setup" in no_venv.stderr
    model_2 = workdir / "models" / "round-2.bin"
    published = model_2.read_bytes()
    model_2.write_bytes(published[:-1] + bytes([published[-1] ^ 1]))
    altered_start = world.medchain(*run, "--rounds", "1")
    assert altered_start.returncode == 1 and "ALTERED_MODEL" in altered_start.stdout
    model_2.write_bytes(published)

    leaver = world.patients["hosp-a"][0]
    did = did_of(world.keys[leaver])
    grant_id = world.client(leaver).grants(did)[0]["grant_id"]
    revoked = world.client().send(
        world.keys[leaver], "consent", "revoke", {"grant_id": grant_id, "reason": "left"}
    )
    assert revoked["code"] == 0, revoked

    second = world.medchain(*run, "--rounds", "1")
    assert second.returncode == 0, second.stdout + second.stderr
    done = json.loads(second.stdout)
    assert done["rounds"] == [3]

    sponsor = world.client("researcher")
    rounds = sponsor.study_rounds(STUDY)
    assert [r["round"] for r in rounds] == [1, 2, 3]
    received = kept_ciphertext_hashes(workdir)  # what the aggregator got in round 3
    for r in rounds:  # the chain's round record names the file trained that round ...
        model_file = workdir / "models" / f"round-{r['round']}.bin"
        assert r["global_model_hash"] == crypto.sm3(model_file.read_bytes()).hex()
        assert {m["org_id"] for m in r["metrics"]} == set(HOSPITALS)
        updates = {u["org_id"]: u["hash"] for u in r["update_hashes"]}
        assert len(updates) == 3
        if r["round"] >= 3:  # state.pkl holds the last run's rounds
            assert updates == received[r["round"]]
        for c in r["cohorts"]:  # ... and the rows each hospital trained on: its cohort
            rows = json.loads(
                (workdir / "data" / c["org_id"] / f"round-{r['round']}.json").read_text()
            )
            ids = rows["train"]["sample_ids"] + rows["heldout"]["sample_ids"]
            leaves = sorted(bytes.fromhex(i) for i in ids)
            assert rm.cohort_root(leaves).hex() == c["root"] and rows["unusable"] == 0
    assert set(received) == {3}

    sample = rm.sample_id(STUDY, did)
    patient = world.client(leaver)
    for r in range(1, 4):
        answer = patient.cohort_proof(STUDY, r, "hosp-a")
        committed = next(
            c for c in patient.study_cohorts(STUDY, r)["cohorts"] if c["org_id"] == "hosp-a"
        )
        cohort = {"root": bytes.fromhex(committed["root"]), "count": committed["count"]}
        assert rm.verify_cohort_proof(answer["proof"], sample, cohort) == (True, r <= 2), r
    # ... and the rows trained on in round 3 were the cohort's, without the leaver.
    rows = json.loads((workdir / "data" / "hosp-a" / "round-3.json").read_text())
    assert rows["cohort"]["count"] == PER_HOSPITAL - 1
    assert sample.hex() not in rows["train"]["sample_ids"] + rows["heldout"]["sample_ids"]

    contributions = sponsor.study_contributions(STUDY)
    assert {c["org_id"] for c in contributions} == set(HOSPITALS)
    assert all(c["rounds"] == 3 and c["method"] == "leave-one-out" for c in contributions)
    assert sponsor.study(STUDY)["status"] == "completed"

    final = workdir / "models" / "round-3.bin"
    version = sponsor.model_version(STUDY, 1)
    assert version["model_hash"] == crypto.sm3(final.read_bytes()).hex()
    card = (workdir / "model-card.json").read_bytes()
    assert version["card_hash"] == crypto.sm3(card).hex()
    verify = ("models", "verify", str(final), "--model", STUDY, "--key", "researcher")
    verified = world.medchain(*verify)
    assert verified.returncode == 0 and json.loads(verified.stdout)["verified"] is True
    altered = tmp_path / "altered.bin"
    data = bytearray(final.read_bytes())
    data[-1] ^= 1
    altered.write_bytes(bytes(data))
    refused = world.medchain("models", "verify", str(altered), *verify[3:])
    assert refused.returncode == 1 and "altered" in refused.stderr

    again = world.medchain(*run, "--rounds", "1")
    assert again.returncode == 1 and "no round left" in again.stderr
