"""The layer rule of ARCHITECTURE.md, as one table checked on every import form.

A layer is a top-level package (or module) of src/medchain. MAY_IMPORT says, for
each, which other layers it may import; every module under src/medchain must
belong to a row, so a new package has to take its place in the table. An import
counts in every form Python has: `import a.b`, `import a.b as c`, `from a.b
import c`, `from medchain import storage` (a submodule), relative imports at any
level, and `importlib.import_module` / `__import__` with a literal name; a dynamic
import of a computed name cannot be checked, so it is refused. Imports inside
functions and under TYPE_CHECKING count too: a dependency is a dependency.

The table keeps ARCHITECTURE.md's rule (a test below checks the table itself):
core, contracts, encoding and crypto import nothing above them; fhir and gs1
import only those four and the shared exceptions; nothing imports cli or demo
(the `medchain demo` command aside); contracts see state only through core's
Context. test_checker_catches_* plant each forbidden form in a throwaway package
and show the checker reports it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "medchain"
FACE = "medchain"  # src/medchain/__init__.py: the version, importable by every layer


def layers(*names: str) -> frozenset[str]:
    """A table row: the named layers plus the shared error module every layer may raise."""
    return frozenset(names) | {"exceptions"}


PURE = ("encoding", "crypto", "core", "contracts")

# Layer -> the layers it may import (besides itself and the package face). Derived
# from the code, lowest first; an edge that broke the architecture was fixed in the
# code instead of listed here.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "exceptions": frozenset(),
    # Durable file writes (fsync) for the layers that keep files beside the chain DB.
    "files": frozenset(),
    # Schema versions (PRAGMA user_version) and migrations of every SQLite file.
    "sqlite_schema": layers(),
    "encoding": layers(),
    "crypto": layers("encoding"),
    "core": layers("encoding", "crypto"),
    "contracts": layers("encoding", "crypto", "core"),
    "fhir": layers(*PURE),
    "gs1": layers(*PURE),
    "storage": layers("encoding", "core", "sqlite_schema"),
    "consensus": layers("encoding", "core", "contracts", "storage", "files"),
    "sdk": layers("encoding", "crypto", "core", "contracts"),
    # `medchain.client`: the SDK's public names under the name issue 16 gives them.
    "client": layers("sdk"),
    # Health and Prometheus metrics: counts committed blocks (core's Block, CBOR decoding);
    # the servers above (gateway, edge, node, relay, CLI) register theirs.
    "metrics": layers("encoding", "core"),
    "gateway": layers(
        "encoding", "crypto", "core", "contracts", "fhir", "consensus", "sdk", "metrics"
    ),
    # The edge's HTTP apps reuse the gateway's error table, limits and JSON rendering,
    # so the edge sits above the gateway; the gateway never imports the edge.
    "edge": layers(
        "encoding",
        "crypto",
        "core",
        "contracts",
        "fhir",
        "gs1",
        "sdk",
        "gateway",
        "files",
        "sqlite_schema",
        "metrics",
    ),
    # Federated learning (issue 17): Flower apps and CKKS aggregation, run in .venv-fl.
    # SM3 for model files; the chain side reaches it through files and named hooks.
    "fl": layers("encoding", "crypto"),
    # Online backups of a node's and an edge's SQLite files, with an SM3 manifest.
    "backup": layers("encoding", "crypto", "files"),
    "node": layers("crypto", "core", "storage", "consensus", "sdk", "gateway", "edge", "metrics"),
    "network": layers("encoding", "crypto", "core", "contracts", "sdk", "metrics"),
    # The demo serves a portal per cast member once its story has run.
    "demo": layers(
        "crypto", "core", "contracts", "gs1", "sdk", "gateway", "edge", "node", "network", "portal"
    ),
    # `medchain portal` (issue 20): a local web app that signs with the user's key through
    # the SDK; the edge's requester runs the exchange. No gateway internals, no node.
    # The explorer checks CometBFT headers with network.comet_rpc's parsing.
    "portal": layers("encoding", "crypto", "core", "contracts", "sdk", "edge", "network"),
    # `medchain demo` is the CLI command that runs the demo: the one edge into demo.
    # `medchain fl` imports only medchain.fl.features (pure Python, no numpy).
    "cli": layers(
        "fl",
        "crypto",
        "core",
        "contracts",
        "fhir",
        "gs1",
        "storage",
        "consensus",
        "sdk",
        "gateway",
        "edge",
        "node",
        "network",
        "demo",
        "backup",
        "metrics",
        "portal",
    ),
}

# Contracts see state only through the Context core hands them: of core, a contract
# may import the Context, the signed tx it carries and the genesis (profiles and
# parameters, no state), and the block's pure hashing (the app hash over results, which
# supervision recomputes for a relayed block), and the pure state-proof check (proofs,
# smt) htlc's light client runs over another chain's proof, never over this chain's
# state. The registry is the one bridge that core's execution calls with its state
# view (signer lookup, genesis).
CONTRACTS_SEE_OF_CORE = (
    "medchain.core.context",
    "medchain.core.tx",
    "medchain.core.genesis",
    "medchain.core.block",
    "medchain.core.merkle",
    "medchain.core.proofs",
    "medchain.core.smt",
)
CONTRACTS_BRIDGE = "medchain.contracts.registry"

# Standard or third-party modules a layer must not import. The state machine sees no
# clock, randomness, threads or environment; the pure layers do no network, disk or
# process I/O. (crypto may lock a cache and read the OS's randomness for keys.)
NONDETERMINISM = ("time", "random", "datetime", "threading", "secrets", "os", "uuid")
IO = (
    "sqlite3",
    "socket",
    "ssl",
    "http",
    "urllib",
    "subprocess",
    "asyncio",
    "httpx",
    "fastapi",
    "starlette",
    "uvicorn",
)
FORBIDDEN_EXTERNAL: dict[str, tuple[str, ...]] = {
    "encoding": IO,
    "crypto": IO,
    "core": IO + NONDETERMINISM,
    "contracts": IO + NONDETERMINISM,
}


@dataclass(frozen=True)
class Import:
    """One import in a source file: the dotted module it brings in ("" if computed)."""

    path: Path
    line: int
    target: str


def module_name(path: Path, root: Path) -> str:
    """`root/core/tx.py` -> `medchain.core.tx` (root is the package directory)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str, root: Path) -> bool:
    """Whether `name` is a module or package inside the package at `root`."""
    head, _, rest = name.partition(".")
    if head != root.name:
        return False
    where = root.joinpath(*rest.split(".")) if rest else root
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def resolve_relative(name: str, level: int, package: str) -> str:
    """The absolute name of `from <level dots><name> import ...` inside `package`."""
    base = package.split(".")
    if level - 1 >= len(base):
        return ""  # beyond the top: Python refuses it; report it rather than guess
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def dynamic_import_target(call: ast.Call, package: str) -> str | None:
    """The module an `import_module(...)` / `__import__(...)` call names, "" if computed,
    None if the call is not a dynamic import."""
    func = call.func
    called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    if called not in ("import_module", "__import__"):
        return None
    if not call.args:
        return ""
    first = call.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return ""
    name = first.value
    if called == "import_module" and name.startswith("."):
        anchor = call.args[1] if len(call.args) > 1 else None
        anchor = anchor or next((k.value for k in call.keywords if k.arg == "package"), None)
        if not (isinstance(anchor, ast.Constant) and isinstance(anchor.value, str)):
            return ""
        level = len(name) - len(name.lstrip("."))
        return resolve_relative(name.lstrip("."), level, anchor.value)
    return name


def imports_in(path: Path, root: Path) -> Iterator[Import]:
    """Every module `path` imports, in any form, resolved to an absolute dotted name."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = resolve_relative(node.module or "", node.level, package)
            else:
                base = node.module or ""
            if not base:
                yield Import(path, node.lineno, "")
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(path, node.lineno, submodule if is_module(submodule, root) else base)
        elif isinstance(node, ast.Call):
            target = dynamic_import_target(node, package)
            if target is not None:
                yield Import(path, node.lineno, target)


def layer_of(module: str) -> str:
    """`medchain.gateway.routes.fhir` -> `gateway`; the package face -> `medchain`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else FACE


def violations(root: Path) -> list[str]:
    """Every import under the package at `root` that the table does not allow."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        layer = layer_of(module)
        allowed = MAY_IMPORT.get(layer, frozenset()) if layer != FACE else frozenset()
        where = f"{path.relative_to(root.parent)}"
        if layer != FACE and layer not in MAY_IMPORT:
            found.append(f"{where}: layer {layer!r} has no row in MAY_IMPORT")
        for imp in imports_in(path, root):
            at = f"{where}:{imp.line}"
            if not imp.target:
                found.append(f"{at}: an import whose module cannot be read from the source")
                continue
            head = imp.target.split(".")[0]
            if head != root.name:
                if head in FORBIDDEN_EXTERNAL.get(layer, ()):
                    found.append(f"{at}: {layer} must not import {imp.target}")
                continue
            target = layer_of(imp.target)
            if target in (layer, FACE):
                pass
            elif target not in allowed:
                found.append(f"{at}: {layer} may not import {target} ({imp.target})")
            if (
                layer == "contracts"
                and target == "core"
                and module != CONTRACTS_BRIDGE
                and imp.target not in CONTRACTS_SEE_OF_CORE
            ):
                found.append(f"{at}: a contract sees state only through the Context ({imp.target})")
    return list(dict.fromkeys(found))  # `from a import b, c` reports a line once


def test_every_import_keeps_to_the_layer_table() -> None:
    assert len(list(SRC.rglob("*.py"))) > 100
    assert violations(SRC) == []


def test_every_package_and_module_has_a_row() -> None:
    tops = {p.stem for p in SRC.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    assert tops - {"__init__"} == set(MAY_IMPORT)


def test_every_package_says_its_layer() -> None:
    """Each folder opens with what the layer is and what it may import."""
    for layer in MAY_IMPORT:
        if (SRC / layer).is_dir():
            opening = ast.get_docstring(ast.parse((SRC / layer / "__init__.py").read_text()))
            assert opening and f"Layer: {layer}" in opening, layer


def test_the_table_keeps_the_architecture() -> None:
    """The table cannot be widened past ARCHITECTURE.md to let an import through."""
    for layer in PURE:
        below = PURE[: PURE.index(layer)]
        assert MAY_IMPORT[layer] <= layers(*below), layer
    for standard in ("fhir", "gs1"):
        assert MAY_IMPORT[standard] <= layers(*PURE), standard
    importers_of_top = {layer for layer, row in MAY_IMPORT.items() if row & {"cli", "demo"}}
    assert importers_of_top == {"cli"} and "cli" not in MAY_IMPORT["cli"]
    assert "exceptions" not in MAY_IMPORT["exceptions"] and not MAY_IMPORT["exceptions"]
    placed: list[str] = []  # a layer order exists: no two layers import each other
    while len(placed) < len(MAY_IMPORT):
        ready = [k for k, row in MAY_IMPORT.items() if k not in placed and row <= set(placed)]
        assert ready, f"the table has a cycle among {set(MAY_IMPORT) - set(placed)}"
        placed.extend(sorted(ready))


def test_core_has_no_floats_in_state_paths() -> None:
    floats = [
        f"{p.relative_to(SRC)}:{n.lineno}"
        for p in (SRC / "core").rglob("*.py")
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.Constant) and isinstance(n.value, float)
    ]
    assert floats == []


# One forbidden import per form, planted at the path given in a throwaway medchain.
FORBIDDEN_FORMS: dict[str, tuple[str, str]] = {
    "import": ("core/bad.py", "import medchain.storage\n"),
    "import_as": ("core/bad.py", "import medchain.storage.chain_db as db\n"),
    "from_module_import_name": ("core/bad.py", "from medchain.storage.chain_db import DB\n"),
    "from_package_import_submodule": ("core/bad.py", "from medchain import storage\n"),
    "relative_package": ("core/bad.py", "from .. import storage\n"),
    "relative_module": ("core/bad.py", "from ..storage import chain_db\n"),
    "relative_three_levels": ("core/inner/bad.py", "from ...storage.chain_db import DB\n"),
    "import_module": (
        "core/bad.py",
        "import importlib\nimportlib.import_module('medchain.storage')\n",
    ),
    "import_module_relative": (
        "core/bad.py",
        "from importlib import import_module\nimport_module('.storage', package='medchain')\n",
    ),
    "dunder_import": ("core/bad.py", "__import__('medchain.storage.chain_db')\n"),
    "computed_name": ("core/bad.py", "import importlib\nimportlib.import_module('x' + 'y')\n"),
    "inside_a_function": ("core/bad.py", "def f() -> None:\n    import medchain.storage\n"),
    "type_checking_only": (
        "core/bad.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from medchain import storage\n",
    ),
    "clock_in_core": ("core/bad.py", "import time\n"),
    "randomness_in_contracts": ("contracts/bad.py", "from random import choice\n"),
    "io_in_encoding": ("encoding/bad.py", "import sqlite3\n"),
    "contract_reads_state_directly": ("contracts/bad.py", "from medchain.core.state import S\n"),
    "fhir_imports_storage": ("fhir/bad.py", "from medchain.storage import chain_db\n"),
    "gateway_imports_edge": ("gateway/bad.py", "from medchain.edge import custodian\n"),
    "anything_imports_cli": ("node/bad.py", "from medchain.cli import app\n"),
    "anything_imports_demo": ("network/bad.py", "import medchain.demo\n"),
    "face_imports_a_layer": ("__init__.py", "from medchain import cli\n"),
    "unplaced_package": ("plugins/bad.py", "import json\n"),
}


def throwaway_package(tmp_path: Path) -> Path:
    """A medchain with every layer as an empty package, and storage/chain_db.py."""
    root = tmp_path / "medchain"
    root.mkdir()
    (root / "__init__.py").write_text("")
    for layer in MAY_IMPORT:
        (root / layer).mkdir()
        (root / layer / "__init__.py").write_text("")
    (root / "storage" / "chain_db.py").write_text("DB = 1\n")
    (root / "core" / "inner").mkdir()
    (root / "core" / "inner" / "__init__.py").write_text("")
    return root


@pytest.mark.parametrize("form", sorted(FORBIDDEN_FORMS))
def test_checker_catches_forbidden_import(tmp_path: Path, form: str) -> None:
    root = throwaway_package(tmp_path)
    where, source = FORBIDDEN_FORMS[form]
    planted = root / where
    planted.parent.mkdir(parents=True, exist_ok=True)
    (planted.parent / "__init__.py").touch()
    planted.write_text(source)
    found = violations(root)
    assert any(str(planted.relative_to(tmp_path)) in v for v in found), found


def test_checker_passes_allowed_imports(tmp_path: Path) -> None:
    root = throwaway_package(tmp_path)
    (root / "core" / "context.py").write_text("")
    (root / "contracts" / "good.py").write_text(
        "import hashlib\nfrom medchain import crypto, encoding\nfrom medchain.core import context\n"
        "from . import registry\nfrom ..exceptions import Code\n"
    )
    (root / "edge" / "good.py").write_text(
        "import time\nimport importlib\nfrom medchain.gateway import errors\n"
        "importlib.import_module('medchain.sdk')\nfrom .. import __version__\n"
    )
    assert violations(root) == []


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """A cycle between modules shows only when the cycle is entered at one of its
    members: records.model imported first (as a validation worker process does)
    once failed on records -> consent -> research -> records. Each module is
    imported first, with every medchain module forgotten in between. The fl layer
    runs in .venv-fl (Flower, numpy) and __main__ runs the command line: left out."""
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import medchain
        names = [
            i.name for i in pkgutil.walk_packages(medchain.__path__, "medchain.")
            if not i.name.startswith("medchain.fl") and not i.name.endswith("__main__")
        ]
        failed = []
        for name in names:
            for loaded in [m for m in sys.modules if m.startswith("medchain.")]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception as e:  # the test reports every module that fails, then fails
                failed.append(f"{name}: {e!r}")
        print(len(names))
        print("\\n".join(failed))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    count, *failed = done.stdout.splitlines()
    assert int(count) > 150
    assert [f for f in failed if f] == []
