"""The `medchain` command line, run as a user would run it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.servers import free_port, medchain, start_node

from medchain import crypto
from medchain.sdk.keystore import Keystore, KeystoreError


def test_loading_the_command_tree_loads_no_server_or_standards_library() -> None:
    """What cli/__init__.py promises: `medchain` starts without the web framework, the
    servers, the edge, the FHIR/GS1 libraries or the portal (each command imports what
    it needs), so every short command and every FL round hook starts quickly."""
    code = (
        "import sys, medchain.cli.main\n"
        "heavy = ('fastapi', 'uvicorn', 'matplotlib', 'fhir', 'biip', 'pyld', 'hl7',\n"
        "         'medchain.node.servers', 'medchain.edge', 'medchain.gateway.app',\n"
        "         'medchain.portal', 'medchain.network', 'medchain.demo', 'medchain.fhir')\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith(heavy))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []


def test_key_file_is_encrypted_and_needs_the_passphrase(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    key = crypto.generate_keypair()
    path = store.save("dr-li", key, "s3cret-passphrase", iterations=1000)
    assert key.private.hex() not in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert store.load("dr-li", "s3cret-passphrase") == key
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        store.load("dr-li", "guess")
    doc = json.loads(path.read_text())
    doc["public_key"] = crypto.generate_keypair().public.hex()
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError):
        store.load("dr-li", "s3cret-passphrase")


def test_keys_new_show_list(tmp_path: Path) -> None:
    home = str(tmp_path)
    assert medchain("keys", "new", "nurse-wang", "--home", home).returncode == 0
    shown = json.loads(medchain("keys", "show", "nurse-wang", "--home", home).stdout)
    assert shown["did"].startswith("did:medchain:") and len(shown["public_key"]) == 128
    assert medchain("keys", "list", "--home", home).stdout.split() == ["nurse-wang"]
    again = medchain("keys", "new", "nurse-wang", "--home", home)
    assert again.returncode != 0


def test_init_node_tx_query_status(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert medchain("init", "--home", home, "--chain-id", "cli-chain").returncode == 0
    assert medchain("keys", "new", "patient", "--home", home).returncode == 0
    port = free_port()
    node = f"http://127.0.0.1:{port}"
    proc = start_node(Path(home), port)
    try:
        out = medchain(
            "tx", "identity", "register_patient", "--key", "patient", "--home", home, "--node", node
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["code_name"] == "OK"
        org = medchain(
            "tx",
            "identity",
            "register_org",
            "--key",
            "admin",
            "--home",
            home,
            "--node",
            node,
            "--payload",
            '{"org_id": "pumch", "name": "PUMCH", "org_type": "hospital",'
            ' "admin_public_key": {"$key": "patient"}}',
        )
        assert org.returncode == 1 and "ALREADY_EXISTS" in org.stdout  # key is a patient's
        status = json.loads(medchain("status", "--node", node).stdout)
        assert status["chain_id"] == "cli-chain" and status["height"] == 2
        query = ("query", "identity/org/", "--prefix", "--home", home, "--node", node)
        orgs = json.loads(medchain(*query, "--key", "admin").stdout)  # init made admin an operator
        assert orgs["items"] == []
        refused = medchain(*query, "--key", "patient")  # raw state is for operators
        assert refused.returncode != 0 and "operators" in refused.stderr
        wrong = medchain(
            "tx",
            "identity",
            "register_patient",
            "--key",
            "patient",
            "--home",
            home,
            "--node",
            node,
            passphrase="wrong",
        )
        assert wrong.returncode == 4 and "wrong passphrase" in wrong.stderr  # unauthorised
        bad = medchain(
            "tx",
            "identity",
            "x",
            "--key",
            "patient",
            "--home",
            home,
            "--node",
            node,
            "--payload",
            "[1, 2",
        )
        assert bad.returncode == 2 and "bad --payload" in bad.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_unreachable_node_says_what_to_do() -> None:
    out = medchain("status", "--node", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 5  # unreachable (cli/scripting.py)
    assert "UNREACHABLE" in out.stderr and "medchain node" in out.stderr


def test_demo_runs_every_step_as_expected_then_serves_a_portal_per_role(tmp_path: Path) -> None:
    args = ["demo", "--home", str(tmp_path / "demo"), "--port", str(free_port())]
    args += ["--edge-port", str(free_port())]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDCHAIN_")}
    env["COLUMNS"] = "200"
    demo = subprocess.Popen(
        [sys.executable, "-m", "medchain.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:  # until the demo says it keeps serving
            lines.append(line)
            if "Ctrl-C to stop" in line:
                break
        portals = dict(re.findall(r"Portal for ([a-z-]+): (http://\S+)", "".join(lines)))
        assert set(portals) == {
            "patient-zhang",
            "dr-chen",
            "dr-zhou",
            "pumch-admin",
            "inspector-sun",
        }, "".join(lines)
        patient = httpx.Client(follow_redirects=True)
        assert patient.get(portals["patient-zhang"]).status_code == 200  # signed in
        base = portals["patient-zhang"].split("/login")[0]
        records = patient.get(f"{base}/records")
        assert records.status_code == 200 and "pumch" in records.text, records.text
        regulator = httpx.Client(follow_redirects=True)
        assert regulator.get(portals["inspector-sun"]).status_code == 200
        alerts = regulator.get(portals["inspector-sun"].split("/login")[0] + "/regulator")
        assert alerts.status_code == 200 and 'id="alerts"' in alerts.text, alerts.text
        assert httpx.get(f"{base}/records").status_code == 401  # no launch link, nothing
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    out = "".join(lines) + rest
    assert demo.returncode == 0, out
    assert "unexpected" not in out
    for expected in ("BAD_NONCE", "SIGNER_INACTIVE", "UNAUTHORIZED", "INVALID_STATE"):
        assert expected in out
    assert (tmp_path / "demo" / "keys" / "dr-li.json").exists()
    assert "decrypted" in out and "purge receipt" in out
    assert "HL7 v2" in out and "ruijin: 1 avoided" in out
    assert "a patient scans pen P1" in out and "proved against the app hash" in out


def test_the_mllp_commands_default_port_is_the_listeners() -> None:
    """cli/health.py names the MLLP port without importing the edge (for start-up time):
    it must stay the listener's own default."""
    from medchain.cli.health import MLLP_PORT
    from medchain.edge.mllp import DEFAULT_MLLP_PORT

    assert MLLP_PORT == DEFAULT_MLLP_PORT == 2575
