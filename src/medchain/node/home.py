"""A node's home directory (see medchain.node for its layout), its default ports, and
a free port for local runs: what every `medchain` command needs, without the servers."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from medchain import crypto
from medchain.consensus.snapshots import DEFAULT_INTERVAL, DEFAULT_MAX_RESTORE_BYTES
from medchain.core.genesis import Genesis, load_genesis, parse_genesis
from medchain.sdk.keystore import Keystore
from medchain.sdk.tls import ServerTls, TlsDir

DEFAULT_PORT = 8700
DEFAULT_EDGE_PORT = 8710
DEFAULT_SNAPSHOT_INTERVAL = DEFAULT_INTERVAL  # heights between state-sync snapshots
DEFAULT_STATE_SYNC_MAX_BYTES = DEFAULT_MAX_RESTORE_BYTES  # memory a restore may take


@dataclass(frozen=True)
class NodeHome:
    """Paths inside a node's home directory."""

    root: Path

    @property
    def genesis_path(self) -> Path:
        """The genesis file `medchain init` writes; every node of a chain holds the same one."""
        return self.root / "genesis.json"

    @property
    def db_path(self) -> Path:
        """The node's SQLite chain DB (blocks, state, audit index)."""
        return self.root / "data" / "chain.db"

    @property
    def keystore(self) -> Keystore:
        """The node's encrypted keys (operator, validator, edge)."""
        return Keystore(self.root / "keys")

    @property
    def tls(self) -> TlsDir:
        """The node's CA, certificates and TLS keys."""
        return TlsDir(self.root / "tls")

    def server_tls(self, name: str, client_ca: Path | None = None) -> ServerTls | None:
        """The home's certificate `name` (e.g. node) to serve HTTPS with, if it has one."""
        tls = self.tls
        return ServerTls(tls.cert(name), tls.key(name), client_ca) if tls.has(name) else None

    @property
    def header_key_path(self) -> Path:
        """The solo node's header-signing key (see the module docstring)."""
        return self.root / "header_key.json"

    def header_key(self) -> crypto.KeyPair:
        """The key this solo node signs block headers with; made at first use. It must
        sign without a passphrase at every block, so it is kept unencrypted (0600): its
        only power is to vouch for this node's blocks to other chains."""
        path = self.header_key_path
        if not path.exists():
            key = crypto.generate_keypair()
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"suite": key.suite, "private_key": key.private.hex()}, f)
            return key
        doc = json.loads(path.read_text())
        return crypto.keypair_from_private(doc["suite"], bytes.fromhex(doc["private_key"]))

    def genesis(self) -> Genesis:
        """The chain's genesis, with a hint to run `medchain init` when the home has none."""
        if not self.genesis_path.exists():
            raise FileNotFoundError(
                f"no genesis at {self.genesis_path}: run `medchain init --home {self.root}`"
            )
        return load_genesis(self.genesis_path.read_text())

    def write_genesis(
        self,
        chain_id: str,
        admin_name: str,
        admin: crypto.KeyPair,
        genesis_time_ms: int | None = None,
        profile: str = "business",
    ) -> Genesis:
        """A genesis with one consortium admin (more orgs join by transaction)."""
        g = parse_genesis(
            {
                "chain_id": chain_id,
                "genesis_time_ms": int(time.time() * 1000)
                if genesis_time_ms is None
                else genesis_time_ms,
                "consortium_admins": [
                    {"name": admin_name, "suite": admin.suite, "public_key": admin.public.hex()}
                ],
                "profile": profile,
            }
        )
        self.root.mkdir(parents=True, exist_ok=True)
        self.genesis_path.write_text(g.to_json())
        return g


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for local demos and tests)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
