"""A node's home directory and how to start a node from it.

<home>/genesis.json     the chain's genesis (shared by every node)
<home>/keys/*.json      encrypted private keys (see sdk/keystore.py)
<home>/data/chain.db    the SQLite chain database
<home>/operators.json   keys this node trusts with raw blocks and state (gateway/auth.py)
<home>/vaults/<org_id>/ a custodian edge's vault (records encrypted at rest; node/vaults.py:
                        by organisation, <home>/edge/<key name>/ before)
<home>/medchain.toml    the serving commands' configuration (node/config.py)
<home>/tls/             dev CA (ca.pem, ca.key) and certificates (node.pem, ...)
<home>/header_key.json  the solo node's SM2 key that signs block headers for other
                        chains' light clients (htlc); made at first start, mode 0600,
                        unencrypted like CometBFT's priv_validator_key.json

Layer: node. Imports the engines (consensus), storage, gateway, edge, sdk, core,
crypto and exceptions to wire one node together; never network, the CLI or the
demo.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from medchain.node.home import (
    DEFAULT_EDGE_PORT,
    DEFAULT_PORT,
    DEFAULT_SNAPSHOT_INTERVAL,
    DEFAULT_STATE_SYNC_MAX_BYTES,
    NodeHome,
    free_port,
)

if TYPE_CHECKING:
    from medchain.node.servers import (
        EdgeServer,
        GatewayServer,
        HttpServer,
        MetricsServer,
        PublicGatewayServer,
        open_cometbft,
        open_edge,
        open_solo,
    )

__all__ = [
    "DEFAULT_EDGE_PORT",
    "DEFAULT_PORT",
    "DEFAULT_SNAPSHOT_INTERVAL",
    "DEFAULT_STATE_SYNC_MAX_BYTES",
    "EdgeServer",
    "GatewayServer",
    "HttpServer",
    "MetricsServer",
    "NodeHome",
    "PublicGatewayServer",
    "free_port",
    "open_cometbft",
    "open_edge",
    "open_solo",
]
_SERVERS = frozenset(
    {
        "EdgeServer",
        "GatewayServer",
        "HttpServer",
        "MetricsServer",
        "PublicGatewayServer",
        "open_cometbft",
        "open_edge",
        "open_solo",
    }
)


def __getattr__(name: str) -> Any:
    """The servers and engines (node/servers.py) load on first use, so a `medchain`
    command that only reads a home or signs does not pay for FastAPI, uvicorn, the
    gateway and the edge."""
    if name in _SERVERS:
        return getattr(importlib.import_module("medchain.node.servers"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
