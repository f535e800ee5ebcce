"""`<home>/operators.json`: the keys a node trusts with raw blocks and state (see
auth.py), read and written apart from the HTTP side so `medchain init` and
`medchain operators` do not load the web framework."""

from __future__ import annotations

import json
from pathlib import Path

OPERATORS_FILE = "operators.json"


def load_operators(home: Path) -> frozenset[tuple[str, bytes]]:
    """The (suite, public key) pairs listed in `<home>/operators.json` (none if absent)."""
    path = home / OPERATORS_FILE
    if not path.exists():
        return frozenset()
    doc = json.loads(path.read_text())
    return frozenset((o["suite"], bytes.fromhex(o["public_key"])) for o in doc["operators"])


def add_operator(home: Path, name: str, suite: str, public_key: bytes) -> bool:
    """List a key as an operator of the node at `home`; False if it already was."""
    path = home / OPERATORS_FILE
    doc = json.loads(path.read_text()) if path.exists() else {"operators": []}
    if any(o["suite"] == suite and o["public_key"] == public_key.hex() for o in doc["operators"]):
        return False
    doc["operators"].append({"name": name, "suite": suite, "public_key": public_key.hex()})
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return True
