"""Layer rule: core, contracts, crypto and encoding import no I/O layer."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "medchain"
PURE = ("core", "contracts", "crypto", "encoding")
IO_LAYERS = (
    "medchain.consensus",
    "medchain.storage",
    "medchain.edge",
    "medchain.gateway",
    "medchain.node",
    "medchain.cli",
    "medchain.sdk.client",
    "medchain.sdk.keystore",
    "medchain.demo",
    "medchain.network.localnet",
    "medchain.network.cometbft",
    "medchain.sdk.tls",
    "sqlite3",
    "socket",
)
# The state machine must not see clocks, randomness or threads; crypto may lock a cache.
NONDETERMINISM = ("time", "random", "datetime", "threading", "secrets")


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_pure_layers_import_no_io_layer() -> None:
    offenders = []
    files = [p for layer in PURE for p in (SRC / layer).rglob("*.py")]
    assert len(files) > 10
    for path in files:
        layer = path.relative_to(SRC).parts[0]
        forbidden = IO_LAYERS + (NONDETERMINISM if layer != "crypto" else ())
        for name in imports_of(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                offenders.append(f"{path.relative_to(SRC)} imports {name}")
    assert offenders == []


def test_core_has_no_floats_in_state_paths() -> None:
    floats = [
        f"{p.relative_to(SRC)}:{n.lineno}"
        for p in (SRC / "core").rglob("*.py")
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.Constant) and isinstance(n.value, float)
    ]
    assert floats == []
