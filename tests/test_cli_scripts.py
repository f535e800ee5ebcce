"""`medchain` as scripts use it: each exit code from a real failure against a real solo
node and edge, one JSON document with --json, --version, passphrase files, the
home/node chain check, full DIDs when piped, a clear message when a port is taken."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx
import pytest
import typer
from support.ledger import DATA
from support.servers import free_port, start_node, wait_until_serving

from medchain.cli.main import app
from medchain.cli.scripting import Exit, failure_of
from medchain.edge.custodian import NotHere, Refused
from medchain.exceptions import Code, InvalidTransaction
from medchain.sdk.client import ClientError
from medchain.sdk.keystore import KeystoreError

PASSPHRASE = "correct horse"
SYNTHEA = sorted((DATA / "fhir" / "synthea").glob("*.json"))


def run(
    *args: str, env: dict[str, str] | None = None, passphrase: str | None = PASSPHRASE
) -> subprocess.CompletedProcess[str]:
    """`medchain ARGS` as a script runs it: stdout piped, no terminal, narrow COLUMNS."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MEDCHAIN_")}
    base["COLUMNS"] = "40"  # a piped table must not be cut to the terminal's width
    if passphrase is not None:
        base["MEDCHAIN_PASSPHRASE"] = passphrase
    return subprocess.run(
        [sys.executable, "-m", "medchain.cli", *args],
        env=base | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def ok(out: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def clean_failure(out: subprocess.CompletedProcess[str], code: Exit) -> None:
    """Failed with `code`, one `error:` line and a next step, and no traceback."""
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert "error:" in out.stderr and "Traceback" not in out.stderr, out.stderr


@dataclass
class Chain:
    home: str
    node: str
    port: int
    patient: str
    admin_a: str

    @property
    def at(self) -> tuple[str, ...]:
        return ("--home", self.home, "--node", self.node)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """A solo node (chain scripts-a) with an organisation hosp-a whose edge runs."""
    home = str(tmp_path_factory.mktemp("scripts") / "home")
    ok(run("init", "--home", home, "--chain-id", "scripts-a"))
    for key in ("admin-a", "patient"):
        ok(run("keys", "new", key, "--home", home))
    edge_key = json.loads(ok(run("keys", "show", "admin-a", "--home", home)).stdout)
    ok(run("operators", "add", "hosp-a-edge", edge_key["public_key"], "--home", home))
    port = free_port()
    node = f"http://127.0.0.1:{port}"
    proc = start_node(Path(home), port)
    edge = None
    try:
        at = ("--home", home, "--node", node)
        org = {
            "org_id": "hosp-a",
            "name": "hosp-a",
            "org_type": "hospital",
            "admin_public_key": {"$key": "admin-a"},
        }
        ok(
            run(
                "tx",
                "identity",
                "register_org",
                "--key",
                "admin",
                "--payload",
                json.dumps(org),
                *at,
            )
        )
        ok(run("tx", "identity", "register_patient", "--key", "patient", *at))
        patient = json.loads(ok(run("keys", "show", "patient", "--home", home)).stdout)["did"]
        edge_port = free_port()
        edge = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "medchain.cli",
                "edge",
                "serve",
                "--key",
                "admin-a",
                *at,
                "--port",
                str(edge_port),
                "--insecure-http",
            ],
            env={"MEDCHAIN_PASSPHRASE": PASSPHRASE, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_until_serving(edge, f"http://127.0.0.1:{edge_port}/edge/v1/status")
        yield Chain(home, node, port, patient, edge_key["did"])
    finally:
        for p in (edge, proc):
            if p is not None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:  # a loaded machine: do not fail on teardown
                    p.kill()
                    p.wait(timeout=10)


def test_refused_by_the_chain_exits_1_with_the_chain_code_in_json(chain: Chain) -> None:
    again = run("tx", "identity", "register_patient", "--key", "patient", "--json", *chain.at)
    assert again.returncode == Exit.REFUSED
    doc = json.loads(again.stdout)
    assert doc["exit_code"] == 1 and doc["result"]["code_name"] == "ALREADY_EXISTS"
    assert doc["error"]["code"] == "ALREADY_EXISTS"


def test_unknown_ids_exit_3(chain: Chain) -> None:
    clean_failure(
        run("records", "show", "no-such-record", "--key", "admin", *chain.at), Exit.NOT_FOUND
    )
    clean_failure(run("keys", "show", "nobody", "--home", chain.home), Exit.NOT_FOUND)


def test_bad_input_exits_2(chain: Chain, tmp_path: Path) -> None:
    bad_payload = run("tx", "identity", "x", "--key", "admin", "--payload", "[1, 2", *chain.at)
    clean_failure(bad_payload, Exit.BAD_INPUT)
    assert "bad --payload" in bad_payload.stderr
    missing = run("verify", str(tmp_path / "no-such-proof.json"))
    assert missing.returncode == Exit.BAD_INPUT and "Traceback" not in missing.stderr
    listed = tmp_path / "list-proof.json"
    listed.write_text("[1, 2]")  # JSON, but not a proof: was an internal error (70)
    not_a_proof = run("verify", str(listed))
    assert not_a_proof.returncode == Exit.REFUSED and "one JSON object" in not_a_proof.stderr
    not_fhir = tmp_path / "not-fhir.json"
    not_fhir.write_text("{ this is not JSON")
    refused_file = run("import", "fhir", str(not_fhir), "--key", "admin-a", *chain.at)
    assert refused_file.returncode == Exit.REFUSED, refused_file.stdout + refused_file.stderr


def test_unreachable_node_exits_5() -> None:
    out = run("status", "--node", f"http://127.0.0.1:{free_port()}")
    clean_failure(out, Exit.UNREACHABLE)
    assert "UNREACHABLE" in out.stderr and "medchain node" in out.stderr


def test_unauthorised_read_and_wrong_passphrase_exit_4(chain: Chain) -> None:
    raw = run("query", "identity/org/", "--prefix", "--key", "patient", *chain.at)
    clean_failure(raw, Exit.UNAUTHORISED)
    assert "operators" in raw.stderr
    wrong = run("query", "identity/org/", "--prefix", "--key", "admin", *chain.at, passphrase="no")
    clean_failure(wrong, Exit.UNAUTHORISED)
    assert "wrong passphrase" in wrong.stderr


def test_partial_import_exits_6_and_a_full_one_0(chain: Chain) -> None:
    first = run(
        "import", "fhir", str(SYNTHEA[0]), "--patient", chain.patient, "--key", "admin-a", *chain.at
    )
    assert first.returncode == 0, first.stdout + first.stderr
    # The first file's records are already there now; the second's are new.
    both = run(
        "import", "fhir", str(SYNTHEA[0]), str(SYNTHEA[1]), "--patient", chain.patient,
        "--key", "admin-a", "--json", *chain.at,
    )  # fmt: skip
    assert both.returncode == Exit.PARTIAL, both.stdout + both.stderr
    doc = json.loads(both.stdout)
    rows = {row["file"]: row for row in doc["result"]}
    assert int(rows[SYNTHEA[1].name]["imported"]) > 0
    assert rows[SYNTHEA[0].name]["imported"] == "0"
    assert int(rows[SYNTHEA[0].name]["already there / refused"]) > 0
    unlinked = run("import", "fhir", str(SYNTHEA[2]), "--key", "admin-a", *chain.at)
    assert unlinked.returncode == Exit.PARTIAL and "link-patient" in unlinked.stderr


def test_home_and_node_of_different_chains_exit_7(chain: Chain, tmp_path: Path) -> None:
    other = str(tmp_path / "other")
    ok(run("init", "--home", other, "--chain-id", "scripts-b"))
    out = run(
        "query",
        "identity/org/",
        "--prefix",
        "--key",
        "admin",
        "--home",
        other,
        "--node",
        chain.node,
    )
    clean_failure(out, Exit.WRONG_CHAIN)
    assert "'scripts-b'" in out.stderr and "'scripts-a'" in out.stderr


def test_a_taken_port_exits_8_with_a_clear_message(chain: Chain) -> None:
    taken = str(chain.port)
    for args in (
        ("node", "--home", chain.home, "--port", taken, "--insecure-http"),
        ("edge", "serve", "--key", "admin-a", *chain.at, "--port", taken, "--insecure-http"),
        ("edge", "mllp", "--key", "admin-a", *chain.at, "--port", taken),
    ):
        out = run(*args)
        clean_failure(out, Exit.PORT_TAKEN)
        assert f"port {taken}" in out.stderr and "taken" in out.stderr


def test_piped_tables_keep_full_dids(chain: Chain) -> None:
    grant = (
        "consent",
        "grant",
        "--to",
        chain.admin_a,
        "--types",
        "Observation",
        "--key",
        "patient",
    )
    ok(run(*grant, *chain.at))
    listed = ok(run("consent", "list", "--patient", chain.patient, "--key", "patient", *chain.at))
    assert f"did:{chain.admin_a}" in listed.stdout or chain.admin_a in listed.stdout
    assert "…" not in listed.stdout
    rows = json.loads(
        ok(
            run(
                "consent",
                "list",
                "--patient",
                chain.patient,
                "--key",
                "patient",
                "--json",
                *chain.at,
            )
        ).stdout
    )
    assert rows[0]["to"] == f"did:{chain.admin_a}"


def _leaves(
    group: typer.core.TyperGroup, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], object]]:
    for name, command in group.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            yield from _leaves(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_command_takes_json() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    leaves = list(_leaves(root))
    assert len(leaves) > 40
    for path, command in leaves:
        opts = [o for p in command.params for o in getattr(p, "opts", [])]  # type: ignore[attr-defined]
        assert "--json" in opts, path


@pytest.mark.timeout(900)  # a dozen processes, each importing the whole CLI
def test_json_output_parses_for_commands_that_print(chain: Chain) -> None:
    at = chain.at
    cheap = [
        ("status", "--node", chain.node),
        ("keys", "list", "--home", chain.home),
        ("keys", "show", "patient", "--home", chain.home),
        ("operators", "list", "--home", chain.home),
        ("tls", "show", "node", "--home", chain.home),
        ("records", "list", "--patient", chain.patient, "--key", "patient", *at),
        ("consent", "list", "--patient", chain.patient, "--key", "patient", *at),
        ("audit", "--patient", chain.patient, "--key", "patient", *at),
        ("query", "identity/org/hosp-a", "--key", "admin", *at),
        ("prove", "state", "identity/org/hosp-a", "--key", "admin", *at),
        ("records", "show", "no-such-record", "--key", "admin", *at),  # a failure: one document too
    ]
    docs = {}
    for args in cheap:
        out = run(*args, "--json")
        docs[args[:2]] = doc = json.loads(out.stdout)  # one document, nothing else on stdout
        assert out.returncode == 0 or doc["exit_code"] == out.returncode, (args, out.stderr)
    assert docs["keys", "list"] == ["admin", "admin-a", "patient"]
    assert docs["status", "--node"]["chain_id"] == "scripts-a"
    assert docs["records", "show"]["error"]["code"] == "NOT_FOUND"
    assert all("…" not in row["actor"] for row in docs["audit", "--patient"])
    revoked = run("consent", "revoke", "no-such-grant", "--key", "patient", "--json", *at)
    assert json.loads(revoked.stdout)["exit_code"] == revoked.returncode != 0


def test_version() -> None:
    out = ok(run("--version"))
    assert out.stdout.strip() == f"medchain {metadata.version('medchain')}"
    assert json.loads(ok(run("--json", "--version")).stdout) == {
        "medchain": metadata.version("medchain")
    }


def test_passphrase_file_and_per_key_passphrases(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    single = tmp_path / "pass.txt"
    single.write_text("one passphrase for all\n")
    single.chmod(0o600)
    ok(
        run(
            "keys",
            "new",
            "nurse",
            "--home",
            home,
            "--passphrase-file",
            str(single),
            passphrase=None,
        )
    )
    per_key = {"MEDCHAIN_PASSPHRASE_DR_LI": "dr li's own passphrase"}
    ok(run("keys", "new", "dr-li", "--home", home, env=per_key, passphrase=None))
    table = tmp_path / "keys.json"
    table.write_text(
        json.dumps({"nurse": "one passphrase for all", "dr-li": "dr li's own passphrase"})
    )
    table.chmod(0o644)
    # Each key opens with its own passphrase from the table (a node is not needed to
    # unlock it: an unreachable node fails after the key, with its own code).
    for key in ("nurse", "dr-li"):
        out = run("query", "x", "--key", key, "--home", home, "--node", f"http://127.0.0.1:{free_port()}",
                  "--passphrase-file", str(table), passphrase=None)  # fmt: skip
        clean_failure(out, Exit.UNREACHABLE)
        assert "readable by others" in out.stderr
    wrong = run("query", "x", "--key", "dr-li", "--home", home, "--node", "http://127.0.0.1:1",
                "--passphrase-file", str(single), passphrase=None)  # fmt: skip
    clean_failure(wrong, Exit.UNAUTHORISED)
    none = run("keys", "new", "clerk", "--home", home, passphrase=None)
    clean_failure(none, Exit.BAD_INPUT)
    assert "MEDCHAIN_PASSPHRASE_CLERK" in none.stderr and "--passphrase-file" in none.stderr


def test_one_table_maps_errors_to_exit_codes() -> None:
    """What a command lets through ends with the code the table gives (real exceptions
    of the kinds the SDK, the contracts, the edge, the keystore and the OS raise)."""
    cases: list[tuple[BaseException, Exit]] = [
        (ClientError("NOT_FOUND", "no record", status=404), Exit.NOT_FOUND),
        (ClientError("HTTP_404", "not here", status=404), Exit.NOT_FOUND),
        (ClientError("ALREADY_EXISTS", "taken", status=409), Exit.REFUSED),
        (ClientError("UNAUTHENTICATED", "unsigned", status=401), Exit.UNAUTHORISED),
        (ClientError("UNREACHABLE", "no node answered"), Exit.UNREACHABLE),
        (ClientError("RATE_LIMITED", "slow down", status=429), Exit.UNREACHABLE),
        (ClientError("TLS_UNTRUSTED", "unknown CA"), Exit.BAD_INPUT),
        (ClientError("INTERNAL", "node fault", status=500), Exit.INTERNAL),
        (InvalidTransaction(Code.UNAUTHORIZED, "not staff"), Exit.UNAUTHORISED),
        (InvalidTransaction(Code.WRONG_CHAIN, "other chain"), Exit.WRONG_CHAIN),
        (InvalidTransaction(Code.INVALID_STATE, "revoked"), Exit.REFUSED),
        (NotHere("no such record"), Exit.NOT_FOUND),
        (Refused("no consent"), Exit.UNAUTHORISED),
        (KeystoreError("wrong passphrase, or the key file was altered"), Exit.UNAUTHORISED),
        (KeystoreError("no key named 'x' in /tmp/keys"), Exit.NOT_FOUND),
        (OSError(errno.EADDRINUSE, "Address already in use"), Exit.PORT_TAKEN),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), Exit.UNREACHABLE),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "in.json"), Exit.BAD_INPUT),
        (httpx.ConnectError("Connection refused"), Exit.UNREACHABLE),
        (json.JSONDecodeError("Expecting value", "{", 1), Exit.BAD_INPUT),
        (ZeroDivisionError("a bug"), Exit.INTERNAL),
    ]
    for error, code in cases:
        failure = failure_of(error)
        assert failure.exit == code, (error, failure)
        assert failure.message
    assert "--debug" in failure_of(ZeroDivisionError("a bug")).hint


def test_a_damaged_database_is_an_internal_error_with_a_traceback_only_on_debug(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    ok(run("init", "--home", str(home), "--chain-id", "damaged"))
    db = home / "data" / "chain.db"
    db.parent.mkdir(exist_ok=True)
    db.write_bytes(b"not a database, " * 512)
    node = ("node", "--home", str(home), "--port", str(free_port()), "--insecure-http")
    out = run(*node)
    clean_failure(out, Exit.INTERNAL)
    assert "file is not a database" in out.stderr and "backup" in out.stderr
    debug = run(*node, env={"MEDCHAIN_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr + debug.stdout


def test_records_add_answers_the_record_in_json(chain: Chain) -> None:
    report = DATA / "fhir" / "spec-examples" / "DiagnosticReport-f201.json"
    add = ("records", "add", str(report), "--patient", chain.patient, "--record-id", "scripted-1")
    out = ok(run(*add, "--key", "admin-a", "--json", *chain.at))
    doc = json.loads(out.stdout)
    assert doc["record_id"] == "scripted-1" and doc["resource_type"] == "DiagnosticReport"
    again = run(*add, "--key", "admin-a", "--json", *chain.at)
    assert again.returncode != 0 and json.loads(again.stdout)["exit_code"] == again.returncode
