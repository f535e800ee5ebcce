"""Two running networks: a business chain and a regulator chain (each a solo node
with its gateway), and the relay between them, in-process and as a process
killed with SIGKILL mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.ledger import Ledger, did_of, patient_registration
from support.servers import free_port

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.contracts.supervision import model as m
from medchain.core.tx import build_tx
from medchain.gateway.limits import Limits
from medchain.network.relay import Relay, block_digests, verify_stream
from medchain.node import GatewayServer
from medchain.sdk.client import Client
from medchain.sdk.keystore import Keystore

SOURCE = "business-1"


@dataclass
class Networks:
    business: Client
    regulator: Client
    biz: Ledger
    reg: Ledger
    relayer: crypto.KeyPair
    inspector: crypto.KeyPair
    keys: dict[str, crypto.KeyPair]

    def load(self, n: int) -> None:
        """n patient self-registrations on the business chain, submitted at once."""
        raws = [patient_registration(self.business.chain_id) for _ in range(n)]
        self.business.submit_batch(raws)

    def wait_relayed(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            head = self.business.status()["height"]
            stream = self.regulator.value(m.stream_key(SOURCE))
            if stream is not None and stream["height"] >= head:
                return dict(stream)
            assert time.monotonic() < deadline, f"relay stuck at {stream} (head {head})"
            time.sleep(0.1)

    def digest_heights(self) -> list[int]:
        prefix = f"supervision/digest/{SOURCE}/"
        items = self.regulator.scan(prefix, limit=1000)["items"]
        parts = [i["key"].rsplit("/", 2) for i in items]
        return [int(height) for _, height, part in parts if part == "0000"]


def serve(ledger: Ledger, stack: list[Any], operator: crypto.KeyPair) -> Client:
    """A node for `ledger` where `operator` (the relayer) may read raw blocks and state,
    and a client that signs its reads with that key."""
    engine = SoloEngine(ledger.app, block_interval=0.05)
    engine.start()
    operators = frozenset({(operator.suite, operator.public)})
    # Thousands of txs and self-registrations from 127.0.0.1: no request limits here.
    limits = Limits.unlimited()
    gateway = GatewayServer(engine, port=free_port(), operators=operators, limits=limits)
    gateway.start()
    stack += [gateway, engine]
    return Client(gateway.url, key=operator)


@pytest.fixture
def nets(tmp_path: Path) -> Iterator[Networks]:
    keys = {n: crypto.generate_keypair() for n in ("admin_a", "doctor", "attending", "patient")}
    biz = Ledger(tmp_path / "business.db", crypto.generate_keypair(), chain_id=SOURCE)
    biz.add_org("hosp-a", keys["admin_a"])
    biz.add_staff(keys["admin_a"], "hosp-a", keys["doctor"], ["doctor"])
    biz.add_staff(keys["admin_a"], "hosp-a", keys["attending"], ["doctor", "attending"])
    biz.add_patient(keys["patient"])
    reg = Ledger(
        tmp_path / "regulator.db",
        crypto.generate_keypair(),
        profile="regulator",
        chain_id="regulator-1",
    )
    reg_admin, inspector, relayer = (crypto.generate_keypair() for _ in range(3))
    reg.add_org("nhc", reg_admin, "regulator")
    reg.add_staff(reg_admin, "nhc", inspector, ["regulator"])
    reg.add_staff(reg_admin, "nhc", relayer, ["device"])
    r = reg.run(
        inspector,
        "authorize_relayer",
        {"source": SOURCE, "relayer": did_of(relayer)},
        "supervision",
    )
    assert r.code == 0, r.log
    stack: list[Any] = []
    business, regulator = serve(biz, stack, relayer), serve(reg, stack, relayer)
    yield Networks(business, regulator, biz, reg, relayer, inspector, keys)
    for part in stack:
        part.stop()


def test_relay_mirrors_the_business_chain_under_load(nets: Networks) -> None:
    stop = threading.Event()
    relay = Relay(nets.business, nets.regulator, nets.relayer, SOURCE, batch=20)
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for _ in range(5):
            nets.load(60)
            time.sleep(0.2)
        stream = nets.wait_relayed()
    finally:
        stop.set()
        thread.join(10)
    head = nets.business.status()["height"]
    assert stream["height"] == head and nets.digest_heights() == list(range(head + 1))
    assert verify_stream(nets.business, nets.regulator, SOURCE) == []
    stored = nets.regulator.value(m.digest_key(SOURCE, head))
    assert stored["app_hash"] == nets.business.block(head)["app_hash"]


def test_break_glass_on_the_business_chain_alerts_the_regulator(nets: Networks) -> None:
    k = nets.keys
    patient = did_of(k["patient"])
    r = nets.business.send(
        k["doctor"],
        "consent",
        "break_glass",
        {"patient": patient, "reason": "unconscious, no relatives reachable"},
    )
    request_id = r["events"][0]["attributes"]["request_id"]
    nets.business.send(k["attending"], "consent", "approve_break_glass", {"request_id": request_id})
    Relay(nets.business, nets.regulator, nets.relayer, SOURCE).step()
    [alert] = nets.regulator.alerts("open", "break_glass")
    assert alert["subject"] == did_of(k["doctor"]) and alert["patient"] == patient


def test_killed_relay_resumes_without_gap_or_duplicate(nets: Networks, tmp_path: Path) -> None:
    home = tmp_path / "relay-home"
    Keystore(home / "keys").save("relayer", nets.relayer, "test-passphrase", 1000)
    nets.load(200)
    cmd = [
        sys.executable,
        "-m",
        "medchain.cli",
        "relay",
        "--business",
        nets.business.url,
        "--regulator",
        nets.regulator.url,
        "--key",
        "relayer",
        "--source",
        SOURCE,
        "--home",
        str(home),
        "--batch",
        "3",
    ]
    env = {**os.environ, "MEDCHAIN_PASSPHRASE": "test-passphrase"}
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while (nets.regulator.value(m.stream_key(SOURCE)) or {}).get("height", -1) < 3:
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # mid-stream, maybe mid-submission
    first.wait(10)
    nets.load(50)  # the business chain goes on meanwhile
    done = subprocess.run([*cmd, "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    head = nets.business.status()["height"]
    assert nets.digest_heights() == list(range(head + 1))  # every height once, in order
    assert verify_stream(nets.business, nets.regulator, SOURCE) == []


def test_tampered_digests_are_refused_or_detected(nets: Networks) -> None:
    relay = Relay(nets.business, nets.regulator, nets.relayer, SOURCE)
    relay.step()
    nets.load(5)
    time.sleep(0.3)
    stream = relay.stream()
    height = stream.height + 1
    [honest] = block_digests(SOURCE, nets.business.block(height))
    # 1. altered after the running hash was computed: the contract refuses it
    forged = honest | {"app_hash": b"\x07" * 32}
    r = nets.regulator.send(
        nets.relayer,
        "supervision",
        "digest",
        forged | {"running_hash": m.running_hash(stream.running_hash, honest)},
    )
    assert r["code_name"] == "INVALID_STATE" and "running hash" in r["log"]
    # 2. a relay that lies consistently: accepted, but the cross-check finds it
    r = nets.regulator.send(
        nets.relayer,
        "supervision",
        "digest",
        forged | {"running_hash": m.running_hash(stream.running_hash, forged)},
    )
    assert r["code_name"] == "OK"
    problems = verify_stream(nets.business, nets.regulator, SOURCE)
    assert problems == [f"height {height}: relayed digest differs from the business block"]


def test_supervision_from_the_cli(nets: Networks, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medchain.cli import app

    k = nets.keys
    r = nets.business.send(
        k["doctor"],
        "consent",
        "break_glass",
        {"patient": did_of(k["patient"]), "reason": "cardiac arrest in ER"},
    )
    request_id = r["events"][0]["attributes"]["request_id"]
    nets.business.send(k["attending"], "consent", "approve_break_glass", {"request_id": request_id})
    Relay(nets.business, nets.regulator, nets.relayer, SOURCE).step()
    home = tmp_path / "home"
    Keystore(home / "keys").save("relayer", nets.relayer, "test-passphrase", 1000)
    Keystore(home / "keys").save("inspector", nets.inspector, "test-passphrase", 1000)
    runner = CliRunner(env={"MEDCHAIN_PASSPHRASE": "test-passphrase"})
    unsigned = runner.invoke(app, ["supervise", "alerts", "--regulator", nets.regulator.url])
    assert unsigned.exit_code != 0  # alerts name patients and doctors: a signed read
    as_inspector = ["--key", "inspector", "--home", str(home)]
    alerts = runner.invoke(
        app, ["supervise", "alerts", "--regulator", nets.regulator.url, *as_inspector]
    )
    assert alerts.exit_code == 0 and "break_glass" in alerts.output
    checked = runner.invoke(
        app,
        [
            "supervise",
            "verify-stream",
            "--business",
            nets.business.url,
            "--regulator",
            nets.regulator.url,
            "--source",
            SOURCE,
            "--key",
            "relayer",
            "--home",
            str(home),
        ],
    )
    assert checked.exit_code == 0 and "verified" in checked.output
    out = tmp_path / "audit.csv"
    exported = runner.invoke(
        app,
        [
            "supervise",
            "export",
            "--node",
            nets.business.url,
            "--from",
            "0",
            "--to",
            str(2**50),
            "--org",
            "hosp-a",
            "--out",
            str(out),
            "--key",
            "relayer",
            "--home",
            str(home),
        ],
    )
    assert exported.exit_code == 0, exported.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("seq,height,time") and any("break_glass" in x for x in lines)


def test_blocks_with_many_audit_events_are_split_and_verified(nets: Networks) -> None:
    from medchain.network.relay import PART_BYTES

    k = nets.keys
    patient = did_of(k["patient"])
    raws = []
    nonce = nets.business.account(k["doctor"])["next_nonce"]
    for i in range(400):  # 400 break-glass requests with long reasons: ~200 KB of events
        raws.append(
            build_tx(
                k["doctor"],
                chain_id=SOURCE,
                contract="consent",
                action="break_glass",
                nonce=nonce + i,
                payload={"patient": patient, "reason": f"emergency {i:04d} " + "x" * 400},
            )
        )
    nets.business.submit_batch(raws)
    nets.business.wait_committed([crypto.sm3(r).hex() for r in raws])
    relay = Relay(nets.business, nets.regulator, nets.relayer, SOURCE)
    while relay.step():
        pass
    head = nets.business.status()["height"]
    sizes = [len(block_digests(SOURCE, nets.business.block(h))) for h in range(head + 1)]
    assert max(sizes) > 1, "the load did not make a block bigger than one digest"
    assert verify_stream(nets.business, nets.regulator, SOURCE) == []
    stream = nets.regulator.value(m.stream_key(SOURCE))
    assert m.complete_height(stream) == head and stream["digests"] == sum(sizes)
    assert PART_BYTES < 64 * 1024
