"""Running MedChain under CometBFT: the binary, node configs, processes.

CometBFT v0.38 (Tendermint BFT: safe with fewer than n/3 faulty validators)
orders the transactions; every validator runs the MedChain ABCI app beside
its CometBFT node. This module finds the binary, writes configs and starts
the two processes of a node; localnet.py builds whole local networks.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from medchain.exceptions import MedChainError

COMETBFT_VERSION = "v0.38.26"

# Config choices (written into every node's config.toml); see docs/cometbft.md.
CONSENSUS_CONFIG: dict[tuple[str, str], str] = {
    ("consensus", "timeout_commit"): '"300ms"',
    ("consensus", "create_empty_blocks"): "true",
    ("consensus", "create_empty_blocks_interval"): '"1s"',
    ("mempool", "size"): "20000",
    ("mempool", "cache_size"): "40000",
    ("mempool", "recheck"): "true",
    ("p2p", "allow_duplicate_ip"): "true",
    ("p2p", "addr_book_strict"): "false",
    ("rpc", "max_body_bytes"): "4000000",
}


class CometBFTNotFound(MedChainError, RuntimeError):
    """The cometbft binary is not installed."""


def binary() -> str:
    """Path of the cometbft binary: $MEDCHAIN_COMETBFT, the venv's bin, or PATH."""
    candidates = [
        os.environ.get("MEDCHAIN_COMETBFT", ""),
        str(Path(sys.executable).parent / "cometbft"),
        shutil.which("cometbft") or "",
    ]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise CometBFTNotFound(
        "cometbft not found: run `make setup` (it runs `go install "
        f"github.com/cometbft/cometbft/cmd/cometbft@{COMETBFT_VERSION}`)"
    )


def set_config(text: str, section: str, key: str, value: str) -> str:
    """Set `key = value` inside `[section]` of a config.toml ('' = top level)."""
    lines = text.splitlines()
    current = ""
    for i, line in enumerate(lines):
        header = re.match(r"^\[([^\]]+)\]\s*$", line)
        if header:
            current = header.group(1)
        elif current == section and re.match(rf"^{re.escape(key)}\s*=", line):
            lines[i] = f"{key} = {value}"
            return "\n".join(lines) + "\n"
    raise KeyError(f"no {key} in [{section or 'top level'}] of config.toml")


def configure_node(
    home: Path,
    ip: str,
    rpc_port: int = 26657,
    p2p_port: int = 26656,
    abci_port: int = 26658,
    extra: dict[tuple[str, str], str] | None = None,
) -> None:
    """Bind a node to its own loopback address and apply our consensus settings."""
    path = home / "config" / "config.toml"
    text = path.read_text()
    settings = {
        ("", "proxy_app"): f'"tcp://{ip}:{abci_port}"',
        ("rpc", "laddr"): f'"tcp://{ip}:{rpc_port}"',
        ("p2p", "laddr"): f'"tcp://{ip}:{p2p_port}"',
        **CONSENSUS_CONFIG,
        **(extra or {}),
    }
    for (section, key), value in settings.items():
        text = set_config(text, section, key, value)
    path.write_text(text)


def node_addresses(home: Path) -> tuple[str, str]:
    """Where a node's CometBFT looks for its ABCI app (`proxy_app`, tcp:// or unix://)
    and the http:// URL of its RPC (`rpc.laddr`), read from its config.toml."""
    config = tomllib.loads((home / "config" / "config.toml").read_text())
    host, port = str(config["rpc"]["laddr"]).removeprefix("tcp://").rsplit(":", 1)
    if host in ("0.0.0.0", "", "[::]"):
        host = "127.0.0.1"
    return str(config["proxy_app"]), f"http://{host}:{port}"


def configured_peers(home: Path) -> int:
    """How many persistent peers other than itself a node's config.toml names (0 for a
    lone node, whose list may name only its own address): a node with peers configured
    is not ready until it has at least one."""
    p2p = tomllib.loads((home / "config" / "config.toml").read_text()).get("p2p", {})
    own = str(p2p.get("laddr", "")).removeprefix("tcp://")
    peers = [p.strip() for p in str(p2p.get("persistent_peers", "")).split(",")]
    return len([p for p in peers if p and p.rpartition("@")[2] != own])


def write_app_state(home: Path, app_state: dict[str, Any], max_block_bytes: int) -> None:
    """Put the MedChain genesis into CometBFT's genesis.json as app_state.

    The validators CometBFT starts with are copied into the MedChain genesis,
    so validator changes by transaction start from the same set on every node.
    The chain id is the MedChain genesis's if it has one, else CometBFT's.
    """
    path = home / "config" / "genesis.json"
    doc = json.loads(path.read_text())
    doc["chain_id"] = app_state.get("chain_id") or doc["chain_id"]
    validators = [
        {
            "name": v.get("name", ""),
            "pub_key": base64.b64decode(v["pub_key"]["value"]).hex(),
            "power": int(v["power"]),
        }
        for v in doc.get("validators", [])
    ]
    app_state = {**app_state, "chain_id": doc["chain_id"], "validators": validators}
    doc["app_state"] = app_state
    doc["consensus_params"]["block"]["max_bytes"] = str(max_block_bytes)
    path.write_text(json.dumps(doc, indent=2))


def start_abci(
    home: Path, address: str, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """The MedChain ABCI app process of one node."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "medchain.cli",
                "abci",
                "--home",
                str(home),
                "--address",
                address,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )


def start_cometbft(home: Path, log: Path) -> subprocess.Popen[bytes]:
    """The CometBFT process of one node."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [binary(), "start", "--home", str(home)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
