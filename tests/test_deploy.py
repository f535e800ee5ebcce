"""deploy/: the container image, the compose consortium and the systemd units.

No container engine runs here, so the compose file is checked against the Compose
Specification's schema (vendored by check-jsonschema), every `medchain` command in
deploy/ against the real CLI, and the consortium's homes are made for real by
deploy/consortium.sh init and compared with the compose topology.
"""

from __future__ import annotations

import configparser
import contextlib
import copy
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import typer.main
import yaml

from medchain.cli import app
from medchain.network import cometbft as cmt
from medchain.node import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
SCRIPT = DEPLOY / "consortium.sh"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
BIN = Path(sys.executable).parent
PASSPHRASE = "deploy-test-passphrase"
HOSPITALS = ["pumch", "ruijin", "huashan", "xiangya"]
COMPOSE_NET = "172.30.0"  # the compose network's addresses, as consortium.sh's default
LOOPBACK_NET = "127.0.78"  # the same consortium on this machine's loopback addresses


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def services(kind: str) -> dict[str, dict[str, Any]]:
    """Compose services whose name starts with `kind` (validator, edge-)."""
    return {n: s for n, s in compose()["services"].items() if n.startswith(kind)}


def ip_of(service: dict[str, Any]) -> str:
    return str(service["networks"]["consortium"]["ipv4_address"])


def local(text: str) -> str:
    """A compose address (or a text holding some) moved to LOOPBACK_NET."""
    return text.replace(f"{COMPOSE_NET}.", f"{LOOPBACK_NET}.")


def option(args: list[str], name: str) -> list[str]:
    """Every value given to `name` in an argument list."""
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == name]


# -- checking a command line against the real CLI --------------------------------


def is_group(command: Any) -> bool:
    """A command with subcommands."""
    return hasattr(command, "list_commands")


def check_medchain_args(args: list[str]) -> str:
    """Walk `medchain ARGS` through the Typer app: every subcommand and option must
    exist, options that take a value get one, required options are present and no
    more positional arguments are given than the command takes. Returns the path of
    the command (e.g. "localnet init") or raises AssertionError."""
    command: Any = typer.main.get_command(app)  # typer's own click: duck typing
    path: list[str] = []
    rest = list(args)
    while True:
        given: set[str] = set()
        positional = 0
        while rest:
            token = rest.pop(0)
            if token.startswith("--"):
                name = token.split("=", 1)[0]
                params = [p for p in command.params if name in p.opts + p.secondary_opts]
                assert params, f"medchain {' '.join(path)}: no option {name} ({args})"
                param = params[0]
                given.add(param.name or "")
                takes_value = param.param_type_name == "option" and not param.is_flag
                if takes_value and "=" not in token:
                    assert rest, f"{name} needs a value ({args})"
                    rest.pop(0)
            elif is_group(command) and positional == 0:
                sub = command.get_command(None, token)
                assert sub is not None, f"medchain {' '.join(path)}: no command {token}"
                path.append(token)
                command = sub
                break
            else:
                positional += 1
        else:
            assert not is_group(command), f"medchain {path}: incomplete"
            arguments = [p for p in command.params if p.param_type_name == "argument"]
            assert positional <= len(arguments), f"too many arguments: {args}"
            assert positional >= sum(1 for p in arguments if p.required), f"missing: {args}"
            missing = [
                p.name
                for p in command.params
                if p.param_type_name == "option" and p.required and p.name not in given
            ]
            assert not missing, f"medchain {' '.join(path)} lacks {missing}: {args}"
            return " ".join(path)


def shell_commands(text: str, program: str) -> list[list[str]]:
    """The arguments of every `program ...` command line in a shell script."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("#"):
            continue
        for match in re.finditer(rf"(?:^|[;|(]\s*|\$\()\s*{re.escape(program)} (.*)", line):
            tokens = []
            for token in shlex.split(match.group(1), comments=True):
                if token in ("|", ">", ";", "&&", "||") or token.startswith(("|", ">")):
                    break
                tokens.append(token)
            found.append(tokens)
    return found


def compose_medchain_commands() -> dict[str, list[str]]:
    """The `medchain` arguments each compose service runs (image entrypoint: medchain)."""
    out = {}
    for name, service in compose()["services"].items():
        if "entrypoint" not in service:
            out[name] = list(service["command"])
    return out


def test_check_medchain_args_refuses_made_up_commands_and_options() -> None:
    assert check_medchain_args(["localnet", "init", "--nodes", "4"]) == "localnet init"
    for bad in (
        ["localnet", "launch"],
        ["node", "--engine", "cometbft", "--turbo"],
        ["supervise", "alerts", "--key", "k"],  # --regulator is required
        ["keys", "show"],  # NAME is required
        ["node", "--port"],  # a value is missing
    ):
        with pytest.raises(AssertionError):
            check_medchain_args(bad)


# -- compose -----------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    doc = compose()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []
    broken = copy.deepcopy(doc)
    broken["services"]["validator0"]["restart_policy"] = "always"  # not a service key
    broken["services"]["relay"]["ports"] = "8790"  # ports is a list
    messages = [e.message for e in validator.iter_errors(broken)]
    assert any("'restart_policy' was unexpected" in m for m in messages)
    assert any("'8790' is not of type 'array'" in m for m in messages)


def test_every_compose_command_is_a_real_medchain_command() -> None:
    commands = {
        name: check_medchain_args(args) for name, args in compose_medchain_commands().items()
    }
    assert commands == {
        **{f"validator{i}": "node" for i in range(4)},
        **{f"edge-{h}": "edge serve" for h in HOSPITALS},
        "regulator": "node",
        "relay": "relay",
    }
    for name in ("init", "bootstrap"):
        service = compose()["services"][name]
        assert service["entrypoint"] == ["sh", "/opt/medchain/deploy/consortium.sh"]
        assert service["command"] in (["init"], ["bootstrap"])


def test_every_command_in_the_consortium_script_is_real() -> None:
    commands = shell_commands(SCRIPT.read_text(), "medchain")
    used = {check_medchain_args(args) for args in commands}
    assert used == {
        "localnet init",
        "keys new",
        "keys show",
        "tls issue",
        "init",
        "operators add",
        "tx",
        "supervise authorize-relayer",
    }


def test_no_two_services_share_a_host_port_an_address_or_a_home() -> None:
    doc = compose()
    host_ports: list[str] = []
    for service in doc["services"].values():
        for mapping in service.get("ports", []):
            host_ip, host_port, container_port = str(mapping).split(":")
            assert host_ip == "127.0.0.1"  # published to the host only, not the LAN
            host_ports.append(host_port)
            args = service["command"]
            assert container_port in option(args, "--port")
            assert "0.0.0.0" in option(args, "--host")  # reachable through the mapping
    assert len(host_ports) == len(set(host_ports)) == 4 + 4 + 1
    addresses = [ip_of(s) for s in doc["services"].values()]
    assert len(addresses) == len(set(addresses))
    subnet = doc["networks"]["consortium"]["ipam"]["config"][0]["subnet"]
    assert subnet == f"{COMPOSE_NET}.0/24"
    assert f"NET=${{MEDCHAIN_NET_PREFIX:-{COMPOSE_NET}}}" in SCRIPT.read_text()
    assert all(a.startswith(subnet.rsplit(".", 1)[0] + ".") for a in addresses)
    declared = set(doc["volumes"])
    homes: list[str] = []
    for name, service in doc["services"].items():
        mounts = [str(v).split(":") for v in service["volumes"]]
        assert {source for source, _ in mounts} <= declared
        if name in ("init", "bootstrap"):  # the one-shots make and seed every home
            assert {source for source, _ in mounts} == declared
            continue
        assert mounts == [[mounts[0][0], "/var/lib/medchain"]], name
        homes.append(mounts[0][0])
        assert option(service["command"], "--home") == ["/var/lib/medchain"]
    assert len(homes) == len(set(homes)) == len(declared) - 1  # all but the admin's


def test_services_start_in_order_and_only_key_holders_get_the_passphrase() -> None:
    doc = compose()["services"]
    for name, service in doc.items():
        needs = service.get("depends_on", {})
        if name.startswith(("validator", "regulator")):
            assert needs == {"init": {"condition": "service_completed_successfully"}}
            assert "MEDCHAIN_PASSPHRASE" not in service["environment"]
        elif name.startswith(("edge-", "relay")):
            assert needs == {"bootstrap": {"condition": "service_completed_successfully"}}
            assert "MEDCHAIN_PASSPHRASE" in service["environment"]
        if name in ("init", "bootstrap"):
            assert service["healthcheck"] == {"disable": True}
            continue
        # The health check probes the port the service's command serves on (the
        # image's default probes the gateway's 8700).
        probe = service.get("healthcheck", {}).get("test", ["https://localhost:8700/healthz"])
        port = re.fullmatch(r"https?://(localhost|127\.0\.0\.1):(\d+)/healthz", probe[-1])
        assert port is not None, probe
        served = option(service["command"], "--port") + option(service["command"], "--metrics-port")
        assert port.group(2) in served, name
    nodes = {n for n in doc if n.startswith(("validator", "regulator"))}
    assert set(doc["bootstrap"]["depends_on"]) == nodes
    assert all(
        v == {"condition": "service_healthy"} for v in doc["bootstrap"]["depends_on"].values()
    )
    assert doc["init"]["environment"]["MEDCHAIN_PASSPHRASE"].startswith("${MEDCHAIN_PASSPHRASE:?")


# -- the homes made by consortium.sh init, against the compose topology ---------------


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/consortium.sh init run for real into a directory per volume, with the
    consortium's addresses on loopback (LOOPBACK_NET) so that its services can run here."""
    root = tmp_path_factory.mktemp("deploy")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MEDCHAIN_DEPLOY_ROOT": str(root),
        "MEDCHAIN_PASSPHRASE": PASSPHRASE,
        "MEDCHAIN_NET_PREFIX": LOOPBACK_NET,
    }
    for var in ("MEDCHAIN_HOME", "MEDCHAIN_CA", "MEDCHAIN_DEPLOY_OWNER"):
        env.pop(var, None)
    done = subprocess.run(
        ["sh", str(SCRIPT), "init"], env=env, capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stderr[-3000:]
    again = subprocess.run(
        ["sh", str(SCRIPT), "init"], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0 and "already initialised" in again.stdout
    return root


@pytest.mark.timeout(600)
def test_compose_has_the_nodes_localnet_makes_for_four_hospitals(consortium: Path) -> None:
    manifest = json.loads((consortium / "admin" / "localnet.json").read_text())
    validators = services("validator")
    assert len(manifest["nodes"]) == len(validators) == len(HOSPITALS)
    assert [n["ip"] for n in manifest["nodes"]] == [
        local(ip_of(validators[f"validator{i}"])) for i in range(4)
    ]
    assert set(compose()["services"]) == {
        "init",
        "bootstrap",
        *validators,
        *(f"edge-{h}" for h in HOSPITALS),
        "regulator",
        "relay",
    }
    genesis = {
        (consortium / f"validator{i}/cometbft/config/genesis.json").read_text() for i in range(4)
    }
    assert len(genesis) == 1  # one network
    doc = json.loads(genesis.pop())
    assert len(doc["validators"]) == 4
    relay_args = compose()["services"]["relay"]["command"]
    assert option(relay_args, "--source") == [doc["chain_id"]] == [manifest["chain_id"]]
    for i in range(4):
        config = tomllib.loads(
            (consortium / f"validator{i}/cometbft/config/config.toml").read_text()
        )
        ip = local(ip_of(validators[f"validator{i}"]))
        assert config["proxy_app"] == "unix:///var/lib/medchain/cometbft/abci.sock"
        assert config["rpc"]["laddr"] == f"tcp://{ip}:26657"
        peers = {
            p.split("@")[1].split(":")[0] for p in config["p2p"]["persistent_peers"].split(",")
        }
        assert peers == {local(ip_of(s)) for s in validators.values()}
        cert = subprocess.run(
            [
                str(BIN / "medchain"),
                "tls",
                "show",
                "node",
                "--home",
                str(consortium / f"validator{i}"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert ip in cert.stdout
    # The validators' secrets left the admin's volume with them.
    assert not list((consortium / "admin").rglob("priv_validator_key.json"))
    assert not list((consortium / "admin").rglob("node*.key"))


def test_each_hospital_edge_has_its_key_and_follows_its_own_validator_first(
    consortium: Path,
) -> None:
    validators = services("validator")
    operator_lists = [
        {
            o["public_key"]
            for o in json.loads((consortium / f"validator{i}/operators.json").read_text())[
                "operators"
            ]
        }
        for i in range(4)
    ]
    for i, hospital in enumerate(HOSPITALS):
        args = compose()["services"][f"edge-{hospital}"]["command"]
        key = option(args, "--key")[0]
        keys = consortium / f"edge-{hospital}" / "keys"
        assert (keys / f"{key}.json").exists()
        public = json.loads((keys / f"{key}.json").read_text())["public_key"]
        assert all(public in operators for operators in operator_lists)  # failover
        nodes = option(args, "--node")
        assert nodes[0] == f"https://{ip_of(validators[f'validator{i}'])}:8700"
        assert len(set(nodes)) == 4
        assert (consortium / f"edge-{hospital}/tls/edge.pem").exists()
    relay_public = json.loads((consortium / "relay/keys/relay.json").read_text())["public_key"]
    assert all(relay_public in operators for operators in operator_lists)
    regulator = json.loads((consortium / "regulator/operators.json").read_text())["operators"]
    assert relay_public in {o["public_key"] for o in regulator}
    bundle = (consortium / "relay/tls/ca-bundle.pem").read_text()
    assert bundle.count("BEGIN CERTIFICATE") == 2
    relay_args = compose()["services"]["relay"]["command"]
    assert relay_args[:2] == ["--ca", "/var/lib/medchain/tls/ca-bundle.pem"]


def service_process(
    name: str, consortium: Path, extra: list[str], log: Path
) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    """Start compose service `name`'s command as a process here: its volume is its
    directory under `consortium`, its address moved to loopback; returns the process,
    its address and its environment."""
    service = compose()["services"][name]
    home = consortium / str(service["volumes"][0]).split(":")[0]
    ip = local(ip_of(service))
    args: list[str] = []
    for arg in service["command"]:
        if arg.startswith("https://${MEDCHAIN_EDGE_PUBLIC_HOST"):
            arg = f"https://{ip}:8800"
        if args and args[-1] == "--metrics-port":  # loopback is shared here
            arg = str(free_port())
        args.append(local(arg.replace("/var/lib/medchain", str(home)).replace("0.0.0.0", ip)))
    config = home / "cometbft" / "config" / "config.toml"
    if config.exists():  # the volume is mounted at `home` here, not /var/lib/medchain
        config.write_text(
            config.read_text().replace("unix:///var/lib/medchain/", f"unix://{home}/")
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDCHAIN_")}
    env["MEDCHAIN_HOME"] = str(home)
    if "MEDCHAIN_PASSPHRASE" in service["environment"]:
        env["MEDCHAIN_PASSPHRASE"] = PASSPHRASE
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(BIN / "medchain"), *args, *extra], env=env, stdout=out, stderr=out
        )
    return proc, ip, env


def wait_healthy(url: str, env: dict[str, str], proc: subprocess.Popen[bytes], log: Path) -> None:
    """Run the image's health check until it passes, as compose's service_healthy does."""
    deadline = time.monotonic() + 240
    check = [sys.executable, str(DEPLOY / "healthcheck.py"), url]
    while subprocess.run(check, env=env, capture_output=True).returncode != 0:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{url} never healthy: {log.read_text()[-3000:]}"
        time.sleep(1)


@pytest.mark.timeout(900)
def test_the_compose_consortium_comes_up_on_loopback(consortium: Path, tmp_path: Path) -> None:
    """What `docker compose up` runs, in its order, with the same commands: validators
    and the regulator healthy, bootstrap, every hospital's edge healthy, and the relay
    hands the regulator chain the business chain's blocks."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        nodes = [*services("validator"), "regulator"]
        started = []
        for name in nodes:
            proc, ip, env = service_process(name, consortium, [], tmp_path / f"{name}.log")
            procs.append(proc)
            started.append((name, proc, ip, env))
        for name, proc, ip, env in started:
            wait_healthy(f"https://{ip}:8700/healthz", env, proc, tmp_path / f"{name}.log")
        boot_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MEDCHAIN_")},
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "MEDCHAIN_DEPLOY_ROOT": str(consortium),
            "MEDCHAIN_PASSPHRASE": PASSPHRASE,
            "MEDCHAIN_NET_PREFIX": LOOPBACK_NET,
        }
        boot = subprocess.run(
            ["sh", str(SCRIPT), "bootstrap"], env=boot_env, capture_output=True, text=True
        )
        assert boot.returncode == 0, boot.stdout[-2000:] + boot.stderr[-2000:]
        edges = []
        for hospital in HOSPITALS:
            name = f"edge-{hospital}"
            proc, ip, env = service_process(name, consortium, [], tmp_path / f"{name}.log")
            procs.append(proc)
            edges.append((name, proc, ip, env))
        for name, proc, ip, env in edges:
            wait_healthy(f"https://{ip}:8800/healthz", env, proc, tmp_path / f"{name}.log")
        relay, _, _ = service_process("relay", consortium, ["--once"], tmp_path / "relay.log")
        assert relay.wait(timeout=240) == 0, (tmp_path / "relay.log").read_text()[-3000:]
        relayed = re.search(r"Relayed (\d+) block digest", (tmp_path / "relay.log").read_text())
        assert relayed is not None and int(relayed.group(1)) > 0
        # Every hospital's organisation is on chain with its edge's published URL.
        env = {**os.environ, "MEDCHAIN_CA": str(consortium / "admin/tls/ca.pem")}
        with httpx.Client(verify=ssl.create_default_context(cafile=env["MEDCHAIN_CA"])) as c:
            for hospital, (_, _, ip, _) in zip(HOSPITALS, edges, strict=True):
                org = c.get(f"https://{LOOPBACK_NET}.11:8700/v1/identity/orgs/{hospital}")
                assert org.status_code == 200
                assert org.json()["edge_url"] == f"https://{ip}:8800"
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- the image ----------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def test_image_builds_the_makefile_cometbft_and_runs_as_a_user() -> None:
    steps = dockerfile_instructions()
    makefile = re.search(r"COMETBFT_VERSION := (\S+)", (ROOT / "Makefile").read_text())
    assert makefile is not None
    assert ("ARG", f"COMETBFT_VERSION={cmt.COMETBFT_VERSION}") in steps
    assert makefile.group(1) == cmt.COMETBFT_VERSION
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 3 and froms[-1] == "${PYTHON_IMAGE}"
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim-bookworm") in steps
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    assert "go install github.com/cometbft/cometbft/cmd/cometbft@${COMETBFT_VERSION}" in runs
    assert "medchain.consensus.abci.protogen --cometbft ${COMETBFT_VERSION} --out" in runs
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    users = [rest for word, rest in final if word == "USER"]
    assert users == ["medchain"]
    assert ("VOLUME", '["/var/lib/medchain"]') in final
    exposed = {p for word, rest in final if word == "EXPOSE" for p in rest.split()}
    published = {
        str(m).rsplit(":", 1)[1] for s in compose()["services"].values() for m in s.get("ports", [])
    }
    assert published <= exposed
    health = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert len(health) == 1 and "/opt/medchain/deploy/healthcheck.py" in health[0]


def test_dockerfile_commands_are_real() -> None:
    steps = dockerfile_instructions()
    entrypoint = [json.loads(rest) for word, rest in steps if word == "ENTRYPOINT"]
    cmd = [json.loads(rest) for word, rest in steps if word == "CMD"]
    assert entrypoint == [["medchain"]]
    assert check_medchain_args(cmd[-1]) == "node"
    protogen = subprocess.run(
        [sys.executable, "-m", "medchain.consensus.abci.protogen", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--cometbft" in protogen.stdout and "--out" in protogen.stdout
    # Whatever is copied into the image exists and is not left out by .dockerignore.
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for word, rest in steps:
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/") in allowed or source.startswith("src"), source


# -- systemd ----------------------------------------------------------------------


def read_unit(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(path.read_text())
    return unit


def test_units_are_hardened_and_restart_on_failure() -> None:
    assert [u.name for u in UNITS] == [
        "medchain-cometbft.service",
        "medchain-edge.service",
        "medchain-node.service",
        "medchain-relay.service",
    ]
    for path in UNITS:
        service = read_unit(path)["Service"]
        args = shlex.split(service["ExecStart"])
        home = (option(args, "--home") or [""])[0].removesuffix("/cometbft")
        assert home.startswith("/var/lib/medchain"), path.name
        assert service["User"] == "medchain"
        assert service["Restart"] == "on-failure"
        assert service["NoNewPrivileges"] == "yes"
        assert service["ProtectSystem"] == "strict"
        assert service["PrivateTmp"] == "yes"
        assert service["ReadWritePaths"] == home
        assert service["CapabilityBoundingSet"] == ""


def test_cometbft_starts_after_the_app_that_does_not_start_it_twice() -> None:
    node = read_unit(DEPLOY / "systemd/medchain-node.service")
    comet = read_unit(DEPLOY / "systemd/medchain-cometbft.service")
    assert "medchain-cometbft.service" in node["Unit"]["Before"]
    assert "medchain-node.service" in comet["Unit"]["After"]
    assert comet["Unit"]["BindsTo"] == "medchain-node.service"
    node_args = shlex.split(node["Service"]["ExecStart"])
    assert "--external-cometbft" in node_args
    comet_args = shlex.split(comet["Service"]["ExecStart"])
    assert comet_args[:2] == ["/opt/medchain/bin/cometbft", "start"]
    assert option(comet_args, "--home") == [option(node_args, "--home")[0] + "/cometbft"]


def test_unit_commands_are_real_medchain_commands() -> None:
    used = {}
    for path in UNITS:
        args = shlex.split(read_unit(path)["Service"]["ExecStart"])
        if args[0] == "/opt/medchain/bin/medchain":
            used[path.name] = check_medchain_args(args[1:])
    assert used == {
        "medchain-edge.service": "edge serve",
        "medchain-node.service": "node",
        "medchain-relay.service": "relay",
    }


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    for path in UNITS:  # the installed paths, pointed at this checkout's programs
        text = path.read_text().replace("/opt/medchain/bin/", f"{BIN}/")
        text = text.replace("EnvironmentFile=/", "EnvironmentFile=-/")
        (tmp_path / path.name).write_text(text)
    done = subprocess.run(
        [analyze, "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    (tmp_path / "medchain-node.service").write_text(
        (tmp_path / "medchain-node.service").read_text().replace(f"{BIN}/medchain", "/nowhere/x")
    )
    bad = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / "medchain-node.service")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0


# -- an app beside an external CometBFT, and the image's health check ---------------


def _listening(ip: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((ip, port)) == 0


def _children(pid: int) -> list[str]:
    """The process's children: every thread's list (a thread may end while we read)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            found += (task / "children").read_text().split()
    return found


def test_node_with_external_cometbft_serves_once_the_service_manager_starts_it(
    tmp_path: Path,
) -> None:
    ip = "127.0.77.1"
    home = tmp_path / "home"
    env = {**os.environ, "MEDCHAIN_PASSPHRASE": PASSPHRASE}
    env.pop("MEDCHAIN_HOME", None)
    medchain = str(BIN / "medchain")
    subprocess.run(
        [medchain, "init", "--home", str(home), "--host", ip, "--chain-id", "deploy-test"],
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    health = [sys.executable, str(DEPLOY / "healthcheck.py"), f"https://{ip}:{port}/healthz"]
    health_env = {**env, "MEDCHAIN_CA": str(home / "tls" / "ca.pem")}
    assert subprocess.run(health, env=health_env, capture_output=True).returncode == 1
    procs: list[subprocess.Popen[bytes]] = []
    try:
        node = subprocess.Popen(
            [
                medchain,
                "node",
                "--engine",
                "cometbft",
                "--external-cometbft",
                "--home",
                str(home),
                "--cometbft-ip",
                ip,
                "--host",
                ip,
                "--port",
                str(port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(node)
        deadline = time.monotonic() + 60
        while not _listening(ip, 26658):
            assert node.poll() is None, node.stderr.read() if node.stderr else ""
            assert time.monotonic() < deadline, "the ABCI app never listened"
            time.sleep(0.1)
        assert _children(node.pid) == []  # it started no CometBFT of its own
        assert not _listening(ip, 26657)
        comet = subprocess.Popen(
            [cmt.binary(), "start", "--home", str(home / "cometbft")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(comet)
        trust = ssl.create_default_context(cafile=str(home / "tls" / "ca.pem"))
        height = -1
        while height < 1 and time.monotonic() < deadline + 60:
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(f"https://{ip}:{port}/v1/status", verify=trust)
                height = answer.json()["height"]
            time.sleep(0.2)
        assert height >= 1
        assert subprocess.run(health, env=health_env, capture_output=True).returncode == 0
        wrong_ca = {**env, "MEDCHAIN_CA": str(Path(resources.files("certifi") / "cacert.pem"))}
        assert subprocess.run(health, env=wrong_ca, capture_output=True).returncode == 1
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
