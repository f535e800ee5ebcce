"""Issue 16.3: one medchain.toml per home, flags and environment over it, `config show`,
and an edge's vault kept by organisation (it will not publish from an empty vault while
the chain lists its organisation's records).

Real parts: the settings loader on real files, `medchain` run as a process, a real
solo node and real edges on free ports, vaults on disk with real SM2/SM4 keys."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.ledger import DATA
from support.servers import free_port, medchain, start_node, wait_until_serving

from medchain.node.config import (
    ConfigError,
    EdgeSettings,
    NodeSettings,
    config_path,
    load_section,
    write_file,
)

PASS = "correct horse"
REPORT = DATA / "fhir" / "spec-examples" / "DiagnosticReport-f201.json"


def one_line(text: str) -> str:
    """Rich wraps long messages; compare them as one line."""
    return " ".join(text.split())


# -- the loader --------------------------------------------------------------------------


def test_flag_beats_env_beats_file_beats_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_file(tmp_path, {"node": {"port": 8801, "rate": 5.0, "host": "127.0.0.2"}})
    monkeypatch.setenv("MEDCHAIN_NODE_PORT", "8802")
    monkeypatch.setenv("MEDCHAIN_NODE_RATE", "6.5")
    loaded = load_section(NodeSettings, tmp_path, flags={"port": 8803})
    s = loaded.settings
    assert isinstance(s, NodeSettings)
    assert (s.port, loaded.origins["port"]) == (8803, "flag")
    assert (s.rate, loaded.origins["rate"]) == (6.5, "env")
    assert (s.host, loaded.origins["host"]) == ("127.0.0.2", "file")
    assert (s.engine, loaded.origins["engine"]) == ("solo", "default")
    monkeypatch.delenv("MEDCHAIN_NODE_PORT")
    assert load_section(NodeSettings, tmp_path).settings.port == 8801  # type: ignore[attr-defined]


def test_the_file_init_writes_changes_nothing_until_edited(tmp_path: Path) -> None:
    path = write_file(tmp_path)
    loaded = load_section(EdgeSettings, tmp_path)
    assert set(loaded.origins.values()) == {"default"}
    assert "# vault_dir =" in path.read_text() and "[edge]" in path.read_text()


def test_unknown_key_is_refused_with_the_file_and_the_key(tmp_path: Path) -> None:
    config_path(tmp_path).write_text('[edge]\nvault_dri = "/srv/vault"\n')
    with pytest.raises(ConfigError) as e:
        load_section(EdgeSettings, tmp_path)
    assert str(config_path(tmp_path)) in str(e.value) and "'vault_dri'" in str(e.value)
    config_path(tmp_path).write_text("[gateway]\nport = 1\n")
    with pytest.raises(ConfigError, match=r"unknown table \[gateway\]"):
        load_section(NodeSettings, tmp_path)


def test_wrong_type_is_refused_naming_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path(tmp_path).write_text('[node]\nport = "eighty"\n')
    with pytest.raises(ConfigError) as e:
        load_section(NodeSettings, tmp_path)
    assert f"{config_path(tmp_path)} [node] port" in str(e.value)
    assert "eighty" not in str(e.value)  # a value is never echoed: it may be a secret
    config_path(tmp_path).write_text("[node]\nport = 8801\n")
    monkeypatch.setenv("MEDCHAIN_NODE_BLOCK_INTERVAL", "soon")
    with pytest.raises(ConfigError, match="environment MEDCHAIN_NODE_BLOCK_INTERVAL"):
        load_section(NodeSettings, tmp_path)


# -- the command line ----------------------------------------------------------------------


def init_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    made = medchain("init", "--home", str(home), "--chain-id", "config-test")
    assert made.returncode == 0, made.stderr
    return home


def run_node(home: Path, *flags: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "medchain.cli", "node", "--home", str(home), *flags],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def test_a_node_listens_where_flag_env_and_file_say_in_that_order(tmp_path: Path) -> None:
    home = init_home(tmp_path)
    assert "# port = 8700" in config_path(home).read_text()  # init wrote the defaults
    file_port, env_port, flag_port = free_port(), free_port(), free_port()
    write_file(home, {"node": {"port": file_port, "insecure_http": True}})
    env = {"MEDCHAIN_NODE_PORT": str(env_port), "MEDCHAIN_NODE_BLOCK_INTERVAL": "0.05"}
    for flags, port in ((("--port", str(flag_port)), flag_port), ((), env_port)):
        proc = run_node(home, *flags, env=env)
        try:
            wait_until_serving(proc, f"http://127.0.0.1:{port}/v1/status")
        finally:
            stop(proc)
    proc = run_node(home, env={})
    try:  # the file's port, and plain HTTP as the file says
        wait_until_serving(proc, f"http://127.0.0.1:{file_port}/v1/status")
    finally:
        stop(proc)


def test_logging_and_the_metrics_port_come_from_the_file_too(tmp_path: Path) -> None:
    """[node] log_format/log_level and metrics_port/metrics_host, like every option."""
    home = init_home(tmp_path)
    port, metrics = free_port(), free_port()
    node = {"port": port, "insecure_http": True, "log_format": "json", "metrics_port": metrics}
    write_file(home, {"node": node})
    proc = run_node(home, env={})
    try:
        wait_until_serving(proc, f"http://127.0.0.1:{metrics}/healthz")
    finally:
        stop(proc)
    assert proc.stderr is not None
    lines = [ln for ln in proc.stderr.read().decode().splitlines() if ln.startswith("{")]
    assert lines and all(json.loads(ln)["level"] for ln in lines)  # JSON, as the file says
    config_path(home).write_text('[node]\nlog_format = "xml"\n')
    with pytest.raises(ConfigError) as bad:
        load_section(NodeSettings, home)
    assert "log_format" in str(bad.value)


def test_a_bad_file_stops_the_node_with_the_path_and_key_and_no_traceback(
    tmp_path: Path,
) -> None:
    home = init_home(tmp_path)
    config_path(home).write_text("[node]\nport = 8700\nprot = 8701\n")
    out = medchain("node", "--home", str(home))
    assert out.returncode != 0
    message = one_line(out.stderr)
    assert str(config_path(home)) in message and "'prot'" in message
    assert "Traceback" not in out.stderr
    config_path(home).write_text("[node]\nrate = [1, 2]\n")
    out = medchain("node", "--home", str(home))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert f"{config_path(home)} [node] rate" in one_line(out.stderr)


def test_config_show_gives_each_value_its_source_and_masks_secrets(tmp_path: Path) -> None:
    home = init_home(tmp_path)
    write_file(home, {"edge": {"port": 8811, "vault_dir": str(tmp_path / "v")}})
    env = {
        **os.environ,
        "MEDCHAIN_PASSPHRASE": "a very secret passphrase",
        "MEDCHAIN_EDGE_HOST": "127.0.0.9",
        "COLUMNS": "200",
    }
    out = subprocess.run(
        [sys.executable, "-m", "medchain.cli", "config", "show", "--home", str(home), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    edge = {row["key"]: (row["value"], row["source"]) for row in doc["tables"]["edge"]}
    assert edge["port"] == (8811, "file")
    assert edge["host"] == ("127.0.0.9", "env")
    assert edge["vault_dir"] == (str(tmp_path / "v"), "file")
    assert edge["rate"][1] == "default"
    assert {"key": "MEDCHAIN_PASSPHRASE", "value": "********", "source": "env"} in doc[
        "environment"
    ]
    assert "a very secret passphrase" not in out.stdout + out.stderr
    table = subprocess.run(
        [sys.executable, "-m", "medchain.cli", "config", "show", "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 0 and "a very secret passphrase" not in table.stdout
    assert "********" in table.stdout and "8811" in table.stdout
    # a passphrase put in the file by mistake: refused by name, its value never printed
    config_path(home).write_text('[edge]\npassphrase = "hunter2 hunter2"\n')
    bad = subprocess.run(
        [sys.executable, "-m", "medchain.cli", "config", "show", "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "'passphrase'" in one_line(bad.stderr)
    assert "hunter2" not in bad.stdout + bad.stderr


# -- the edge's vault, by organisation -------------------------------------------------------


def start_edge(home: Path, node: str, key: str, *more: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "medchain.cli", "edge", "serve", "--key", key, "--home", str(home),
         "--node", node, "--port", str(port), "--insecure-http", *more],
        env={**os.environ, "MEDCHAIN_PASSPHRASE": PASS, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(proc, f"{url}/edge/v1/status")
    return proc, url


def status(url: str) -> dict[str, object]:
    return dict(httpx.get(f"{url}/edge/v1/status", timeout=10).json())


def endpoint_of(node: str, org: str) -> object:
    return httpx.get(f"{node}/v1/identity/orgs/{org}", timeout=10).json().get("edge_url")


def published(node: str, org: str, url: str, timeout: float = 30.0) -> object:
    """The org's endpoint once it names `url`, or as it stands after `timeout` s (an
    edge publishes with a tx: it is on chain a block after the edge answers)."""
    deadline = time.monotonic() + timeout
    while (found := endpoint_of(node, org)) != url and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_edge_vaults_are_kept_by_organisation_and_an_empty_one_is_not_published(
    tmp_path: Path,
) -> None:
    home = init_home(tmp_path)
    at = ("--home", str(home))
    for key in ("admin-a", "admin-b", "patient"):
        assert medchain("keys", "new", key, *at).returncode == 0
    for key in ("admin-a", "admin-b"):  # each edge reads raw blocks and state at this node
        public = json.loads(medchain("keys", "show", key, *at).stdout)["public_key"]
        assert medchain("operators", "add", f"{key}-edge", public, *at).returncode == 0
    port = free_port()
    node = f"http://127.0.0.1:{port}"
    node_proc = start_node(home, port)
    procs: list[subprocess.Popen[bytes]] = []

    def tx(key: str, contract: str, action: str, payload: dict[str, object]) -> None:
        out = medchain(
            "tx", contract, action, "--key", key, "--payload", json.dumps(payload), *at,
            "--node", node,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr

    try:
        for org, admin in (("hosp-a", "admin-a"), ("hosp-b", "admin-b")):
            tx("admin", "identity", "register_org", {
                "org_id": org, "name": org, "org_type": "hospital",
                "admin_public_key": {"$key": admin},
            })  # fmt: skip
        tx("patient", "identity", "register_patient", {})
        patient = json.loads(medchain("keys", "show", "patient", *at).stdout)["did"]

        edge_a, url_a = start_edge(home, node, "admin-a")
        procs.append(edge_a)
        added = medchain(
            "records", "add", str(REPORT), "--patient", patient, "--record-id", "report-1",
            "--key", "admin-a", *at, "--node", node,
        )  # fmt: skip
        assert added.returncode == 0, added.stdout + added.stderr
        assert (home / "vaults" / "hosp-a" / "kek.sm2").exists()
        assert status(url_a)["records"] == 1
        stop(edge_a)

        # The same organisation's edge under another key name opens the org's vault.
        shutil.copy(home / "keys" / "admin-a.json", home / "keys" / "hosp-a-edge.json")
        again, url_again = start_edge(home, node, "hosp-a-edge")
        procs.append(again)
        assert status(url_again)["records"] == 1
        assert published(node, "hosp-a", url_again) == url_again
        stop(again)

        # An empty vault while the chain lists hosp-a's record: refused, nothing published.
        empty = tmp_path / "elsewhere"
        refused = medchain(
            "edge", "serve", "--key", "admin-a", *at, "--node", node, "--insecure-http",
            "--port", str(free_port()), "--vault-dir", str(empty),
        )  # fmt: skip
        assert refused.returncode != 0
        message = one_line(refused.stderr)
        assert str(empty) in message and "1 record(s) of hosp-a" in message
        assert "--vault-dir" in message and "backup" in message
        assert "Traceback" not in refused.stderr
        assert not (empty / "kek.sm2").exists()  # no stray vault left behind
        assert endpoint_of(node, "hosp-a") == url_again

        # A second organisation's edge in the same home gets a vault of its own.
        edge_b, url_b = start_edge(home, node, "admin-b")
        procs.append(edge_b)
        assert status(url_b) | {"operator": None} == {
            "org_id": "hosp-b", "operator": None, "records": 0,
            "synced_height": status(url_b)["synced_height"],
        }  # fmt: skip
        assert (home / "vaults" / "hosp-b" / "kek.sm2").exists()
        assert (home / "vaults" / "hosp-a" / "kek.sm2").exists()
        stop(edge_b)

        # A vault at the older location (<home>/edge/<key name>) is used in place, and said.
        (home / "edge").mkdir()
        shutil.move(home / "vaults" / "hosp-a", home / "edge" / "admin-a")
        old, url_old = start_edge(home, node, "admin-a")
        procs.append(old)
        assert status(url_old)["records"] == 1
        stop(old)
        said = one_line((old.stdout.read() if old.stdout else b"").decode())
        assert f"older location {home / 'edge' / 'admin-a'}" in said
        assert not (home / "vaults" / "hosp-a").exists()
    finally:
        for proc in procs:
            if proc.poll() is None:
                stop(proc)
        stop(node_proc)


# -- GET /v1/orgs/{org}/records/count: what the edge asks ----------------------------------


def test_record_count_is_for_the_orgs_staff_and_operators_and_skips_erased(
    tmp_path: Path,
) -> None:
    from fastapi.testclient import TestClient
    from support.ledger import Ledger, SignedReads, did_of

    from medchain import crypto
    from medchain.consensus.solo import SoloEngine
    from medchain.gateway.app import create_app

    names = ("admin_a", "doctor_a", "admin_b", "patient", "operator")
    k = {n: crypto.generate_keypair() for n in names}
    ledger = Ledger(tmp_path / "chain.db", crypto.generate_keypair())
    ledger.add_org("hosp-a", k["admin_a"])
    ledger.add_staff(k["admin_a"], "hosp-a", k["doctor_a"], ["doctor"])
    ledger.add_org("hosp-b", k["admin_b"])
    ledger.add_patient(k["patient"])
    for i, (signer, cid) in enumerate((("admin_a", "a"), ("doctor_a", "b"), ("admin_b", "c"))):
        register = {
            "record_id": f"obs-{i}", "patient": did_of(k["patient"]),
            "resource_type": "Observation", "cid": "b" + cid * 58, "content_hash": bytes(32),
        }  # fmt: skip
        assert ledger.run(k[signer], "register", register, "records").code == 0
    erased = ledger.run(k["patient"], "erase", {"record_id": "obs-0"}, "records")
    assert erased.code == 0, erased.log
    engine = SoloEngine(ledger.app, block_interval=0.01)
    engine.start()
    operators = frozenset({(k["operator"].suite, k["operator"].public)})
    try:
        with TestClient(create_app(engine, operators)) as client:

            def count(key: str, org: str) -> httpx.Response:
                answer: httpx.Response = SignedReads(client, k[key]).get(
                    f"/v1/orgs/{org}/records/count"
                )
                return answer

            for key in ("doctor_a", "operator"):
                answer = count(key, "hosp-a")
                assert answer.status_code == 200, answer.text
                assert answer.json()["records"] == 1  # obs-1; obs-0 was erased
            assert count("admin_b", "hosp-b").json()["records"] == 1
            # Another org's staff, a patient, an unsigned caller: the same 403, org or not.
            for key, org in (("admin_b", "hosp-a"), ("patient", "hosp-a"), ("patient", "nope")):
                assert count(key, org).status_code == 403
            assert client.get("/v1/orgs/hosp-a/records/count").status_code in (401, 403)
    finally:
        engine.stop()
