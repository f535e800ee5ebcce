"""A regulator chain for relay tests: a solo node with its gateway, a regulator
organisation with an inspector, and a relayer authorised for one source (as a
CometBFT source, with finality checked, when given its chain id and validators)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.gateway.limits import Limits
from medchain.node import GatewayServer
from medchain.sdk.client import Client
from support.ledger import Ledger, did_of
from support.servers import free_port


@dataclass
class Regulator:
    """A running regulator chain: its ledger, a client signing as the relayer, and
    the inspector (a regulator member) who authorised the relayer."""

    ledger: Ledger
    client: Client
    inspector: crypto.KeyPair


@contextmanager
def regulator_chain(
    db: Path,
    relayer: crypto.KeyPair,
    source: str,
    cometbft: dict[str, Any] | None = None,
    from_height: int = -1,
) -> Iterator[Regulator]:
    """Start the regulator chain at `db` with `relayer` authorised for `source`."""
    ledger = Ledger(db, crypto.generate_keypair(), profile="regulator", chain_id="regulator-1")
    admin, inspector = crypto.generate_keypair(), crypto.generate_keypair()
    ledger.add_org("nhc", admin, "regulator")
    ledger.add_staff(admin, "nhc", inspector, ["regulator"])
    ledger.add_staff(admin, "nhc", relayer, ["device"])
    payload: dict[str, Any] = {
        "source": source,
        "relayer": did_of(relayer),
        "from_height": from_height,
    }
    if cometbft is not None:
        payload["cometbft"] = cometbft
    r = ledger.run(inspector, "authorize_relayer", payload, "supervision")
    assert r.code == 0, r.log
    engine = SoloEngine(ledger.app, block_interval=0.05)
    engine.start()
    operators = frozenset({(relayer.suite, relayer.public)})
    gateway = GatewayServer(
        engine, port=free_port(), operators=operators, limits=Limits.unlimited()
    )
    gateway.start()
    try:
        yield Regulator(ledger, Client(gateway.url, key=relayer), inspector)
    finally:
        gateway.stop()
        engine.stop()
