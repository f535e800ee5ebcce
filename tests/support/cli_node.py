"""A solo node over a test's prepared Ledger, and a home whose keystore holds the
test's keys, for tests that drive `medchain ... --json` as a script would and read
the node's gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.node import GatewayServer
from medchain.sdk.keystore import Keystore
from support.ledger import Ledger, did_of
from support.servers import free_port

PASSPHRASE = "correct horse"


class Addressed(Protocol):
    """Anything that names the home and node the CLI runs against."""

    @property
    def at(self) -> tuple[str, ...]: ...


@dataclass
class CliNode:
    """A running node's gateway URL, the CLI home whose keystore holds `keys`, and
    the keys themselves (a test subclasses it to add its own reads)."""

    url: str
    home: Path
    keys: dict[str, crypto.KeyPair]

    @property
    def at(self) -> tuple[str, ...]:
        return ("--home", str(self.home), "--node", self.url)

    def did(self, who: str) -> str:
        return did_of(self.keys[who])


def save_keys(home: Path, keys: dict[str, crypto.KeyPair]) -> None:
    """Every key into `home`'s keystore, named as the CLI's --key takes it (`_` -> `-`),
    with a cheap KDF (the passphrase is a test's)."""
    store = Keystore(home / "keys")
    for name, key in keys.items():
        store.save(name.replace("_", "-"), key, PASSPHRASE, 1000)


@contextmanager
def serving(ledger: Ledger, operators: frozenset[tuple[str, bytes]] = frozenset()) -> Iterator[str]:
    """A solo engine over `ledger`'s app and its gateway (URL yielded); both stop on
    exit. `operators` (suite, public key) may read raw blocks and state, as an edge
    beside the node does."""
    engine = SoloEngine(ledger.app, block_interval=0.05)
    engine.start()
    try:
        gateway = GatewayServer(engine, port=free_port(), operators=operators)
        gateway.start()
        try:
            yield gateway.url
        finally:
            gateway.stop()
    finally:
        engine.stop()


def run(node: Addressed, *args: str) -> subprocess.CompletedProcess[str]:
    """`medchain ARGS --json` as a script runs it against `node`: none of this
    machine's MEDCHAIN_* settings, the passphrase from the environment, no stdin."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDCHAIN_")}
    env["MEDCHAIN_PASSPHRASE"] = PASSPHRASE
    return subprocess.run(
        [sys.executable, "-m", "medchain.cli", *args, "--json", *node.at],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def ok(out: subprocess.CompletedProcess[str]) -> Any:
    """The JSON document of a command that succeeded (the only thing on its stdout)."""
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)
