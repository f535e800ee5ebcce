"""`medchain demo --engine cometbft` (issue 14 point 5): the demo's stories on a
4-validator localnet, one validator stopped midway. The demo runs as the user runs
it (a subprocess, kept running at the end); the test then checks the live chain
itself, not only what the demo printed: the stopped validator signed none of the
blocks made while it was down and signs again, every node (the restarted one too)
holds the same app hash at a common height and the whole history with the
exchanges in it; then Ctrl-C brings every process down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.servers import free_port

from medchain.network.cometbft import CometBFTNotFound, binary
from medchain.network.localnet import Localnet, rpc
from medchain.sdk.client import Client
from medchain.sdk.keystore import Keystore

FIRST_IP = "127.0.22.1"  # apart from the other localnet tests and the demo's default
STOPPED = 3


def _read_lines(proc: subprocess.Popen[str], lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)


def _wait_for(lines: list[str], text: str, proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        assert proc.poll() is None, "demo exited early:\n" + "".join(lines)
        assert time.monotonic() < deadline, f"no {text!r} after {timeout}s:\n" + "".join(lines)
        time.sleep(0.5)


def _signers(net: Localnet, height: int) -> set[str]:
    commit = rpc(net.nodes[0].rpc, "commit", height=height)["signed_header"]["commit"]
    return {s["validator_address"] for s in commit["signatures"] if s.get("validator_address")}


def _processes_under(path: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-af", str(path)], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "pgrep" not in line]


def test_demo_on_cometbft_carries_on_with_three_of_four_validators(tmp_path: Path) -> None:
    try:
        binary()
    except CometBFTNotFound as e:
        pytest.skip(str(e))
    home = tmp_path / "demo"
    command = [
        sys.executable,
        "-m",
        "medchain.cli",
        "demo",
        "--engine",
        "cometbft",
        "--quick",
        "--home",
        str(home),
        "--port",
        str(free_port()),
        "--edge-port",
        str(free_port()),
        "--first-ip",
        FIRST_IP,
    ]
    env = {**os.environ, "COLUMNS": "200"}  # one line per step
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: list[str] = []
    threading.Thread(target=_read_lines, args=(proc, lines), daemon=True).start()
    net = Localnet(home / "localnet")
    try:
        _wait_for(lines, "Ctrl-C to stop", proc, 600)
        out = "".join(lines)
        assert "unexpected" not in out, out
        assert f"Validator {STOPPED} stops" in out and f"Validator {STOPPED} starts again" in out
        assert "decrypted" in out and "purge receipt" in out
        assert "proved against the app hash" in out
        assert "each block's commit checked by the regulator chain" in out

        # The chain itself: a run of blocks without the stopped validator's signature...
        address = json.loads(
            (net.nodes[STOPPED].home / "config" / "priv_validator_key.json").read_text()
        )["address"]
        head = int(rpc(net.nodes[0].rpc, "status")["sync_info"]["latest_block_height"])
        without = [h for h in range(2, head) if address not in _signers(net, h)]
        assert len(without) >= 10, without
        # ... and it signs again once back.
        deadline = time.monotonic() + 60
        while address not in _signers(net, head):
            assert time.monotonic() < deadline, "the restarted validator never signed again"
            time.sleep(1)
            head = int(rpc(net.nodes[0].rpc, "status")["sync_info"]["latest_block_height"])

        # Every node, the restarted one too, holds the same app hash at a common height
        # and the whole history, exchanges included.
        operator = Keystore(home / "keys").load("relay-nhc", "medchain-demo")
        nodes = [Client(url, tls=net.client_tls, key=operator) for url in net.gateways]
        common = min(n.status()["height"] for n in nodes)
        assert len({n.block(common)["app_hash"] for n in nodes}) == 1
        events = [
            e["type"]
            for h in range(1, common + 1)
            for result in nodes[STOPPED].block(h)["results"]
            for e in result["events"]
        ]
        assert events.count("exchange.acknowledged") == 3  # dr-chen, pharmacist, dr-li
        assert "records.erased" in events and "consent.revoked" in events
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        try:
            proc.wait(timeout=180)  # it stops 4 validators, edges and a regulator in turn
        finally:
            if proc.poll() is None:
                proc.kill()
            if (net.root / "localnet.json").exists() and _processes_under(home):
                net.down()
    assert proc.returncode == 0, "".join(lines)
    assert _processes_under(home) == []  # nothing left running after Ctrl-C
