"""What the benchmarks share: a solo chain serving its gateway (and a free port)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medchain import crypto
from medchain.consensus.application import Application
from medchain.consensus.solo import SoloEngine
from medchain.core.genesis import parse_genesis
from medchain.core.tx import build_tx
from medchain.gateway.limits import Limits
from medchain.node import GatewayServer, free_port
from medchain.sdk.client import Client
from medchain.storage.chain_db import ChainDB

__all__ = ["free_port", "patient_registration", "percentile", "start_chain"]


def start_chain(
    directory: Path,
    chain_id: str,
    admin: crypto.KeyPair,
    interval: float,
    profile: str = "business",
    operators: frozenset[tuple[str, bytes]] = frozenset(),
) -> tuple[Client, list[Any]]:
    """A fresh solo chain with `admin` as consortium admin, served over HTTP, and a
    client that signs its reads as `admin` (an operator: it may read raw blocks and
    state, as the relay and an edge beside the node do); the parts to stop (gateway,
    engine) in order. `operators` (suite, public key) may read raw blocks and state
    too, e.g. the org keys of edges beside the node."""
    genesis = parse_genesis(
        {
            "chain_id": chain_id,
            "genesis_time_ms": int(time.time() * 1000),
            "consortium_admins": [{"name": "root", "public_key": admin.public.hex()}],
            "profile": profile,
        }
    )
    app = Application(ChainDB(directory / f"{chain_id}.db"))
    app.init_chain(genesis)
    engine = SoloEngine(app, block_interval=interval)
    engine.start()
    # A bench floods from one address on purpose: no request limits (gateway/limits.py).
    gateway = GatewayServer(
        engine, port=free_port(), operators=operators, limits=Limits.unlimited()
    )
    gateway.start()
    return Client(gateway.url, key=admin), [gateway, engine]


def patient_registration(chain_id: str) -> bytes:
    """A valid, independent tx: a fresh SM2 key registering itself as a patient."""
    return build_tx(
        crypto.generate_keypair(),
        chain_id=chain_id,
        contract="identity",
        action="register_patient",
        payload={},
        nonce=0,
    )


def percentile(sorted_xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list, q in 0..1 (nan if empty)."""
    if not sorted_xs:
        return math.nan
    return sorted_xs[min(len(sorted_xs) - 1, max(0, math.ceil(q * len(sorted_xs)) - 1))]
