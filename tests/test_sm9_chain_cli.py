"""`medchain sm9` from the shell on a solo node: the org admin creates its KGC (sealed
at rest), publishes it, issues a member's sm9 key file for a DID, adds the member
with the generic tx command, and the member signs with that key file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli_node import PASSPHRASE, CliNode, ok, run, save_keys, serving
from support.ledger import Ledger

from medchain import crypto
from medchain.cli.sm9 import kgc_path, open_kgc
from medchain.sdk.client import Client
from medchain.sdk.keystore import KeystoreError

DID = "did:medchain:hosp-a:dr-li"


def local(home: Path, *args: str, secret: str = PASSPHRASE) -> subprocess.CompletedProcess[str]:
    """`medchain ARGS --json --home HOME` for commands that need no node."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDCHAIN_")}
    env["MEDCHAIN_PASSPHRASE"] = secret
    return subprocess.run(
        [sys.executable, "-m", "medchain.cli", *args, "--json", "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def failed(out: subprocess.CompletedProcess[str]) -> Any:
    assert out.returncode != 0, out.stdout
    return json.loads(out.stdout)


@pytest.fixture(name="node")
def node_fixture(tmp_path: Path) -> Iterator[CliNode]:
    ledger = Ledger(tmp_path / "chain.db", crypto.generate_keypair())
    keys = {"admin": crypto.generate_keypair()}
    ledger.add_org("hosp-a", keys["admin"])
    home = tmp_path / "home"
    save_keys(home, keys)
    with serving(ledger) as url:
        yield CliNode(url, home, keys)


def test_kgc_publish_issue_add_and_sign(node: CliNode) -> None:
    made = ok(local(node.home, "sm9", "kgc-init", "--org", "hosp-a"))
    path = kgc_path(node.home, "hosp-a")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kgc = open_kgc(json.loads(path.read_text()), PASSPHRASE)
    assert made["sign_master_public"] == kgc.sign_master_public.hex()
    with pytest.raises(KeystoreError):
        open_kgc(json.loads(path.read_text()), "not the passphrase")
    assert "exists" in str(failed(local(node.home, "sm9", "kgc-init", "--org", "hosp-a")))

    ok(run(node, "sm9", "publish", "--org", "hosp-a", "--key", "admin"))
    org = Client(node.url).org("hosp-a")
    assert org["sm9_sign_master"] == kgc.sign_master_public.hex()
    assert org["sm9_enc_master"] == kgc.enc_master_public.hex()

    issue = ("sm9", "issue", "--org", "hosp-a", "--did", DID, "--name", "dr-li")
    refused = failed(local(node.home, *issue, secret="a wrong passphrase"))
    assert "wrong passphrase" in str(refused)
    ok(local(node.home, *issue))
    shown = ok(local(node.home, "keys", "show", "dr-li"))
    assert shown["suite"] == "sm9" and shown["did"] == DID

    member = {"org_id": "hosp-a", "public_key": {"$key": "dr-li"}, "suite": "sm9"}
    payload = json.dumps(member | {"roles": ["doctor"]})
    ok(run(node, "tx", "identity", "add_member", "--key", "admin", "--payload", payload))
    # The member's key file signs as its DID through the ordinary --key option.
    revoke = json.dumps({"did": DID, "reason": "test"})
    ok(run(node, "tx", "identity", "revoke_member", "--key", "dr-li", "--payload", revoke))


def test_keys_new_points_sm9_to_the_kgc(node: CliNode) -> None:
    out = failed(local(node.home, "keys", "new", "x", "--suite", "sm9"))
    assert "medchain sm9 issue" in str(out)
