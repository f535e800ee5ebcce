"""The demo's driver: a fresh home, a node and PUMCH's edge over TLS, the stories in
order, a regulator node for the last one, then the table of what happened; while it
keeps running, a web portal for each of the cast's roles."""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from medchain import crypto
from medchain.demo.consortium import run_demo_transactions
from medchain.demo.interop import run_interop_story
from medchain.demo.records import run_health_story
from medchain.demo.regulator import REGULATOR_CHAIN_ID, run_regulator_story
from medchain.demo.run import (
    DEMO_CHAIN_ID,
    DEMO_KDF_ITERATIONS,
    DEMO_PASSPHRASE,
    DemoRun,
)
from medchain.demo.supply_chain import run_supply_story
from medchain.gateway.auth import add_operator, load_operators
from medchain.node import EdgeServer, GatewayServer, NodeHome, free_port, open_edge, open_solo
from medchain.portal.app import PortalServer
from medchain.sdk.client import Client
from medchain.sdk.tls import (
    ClientTls,
    create_dev_pki,
    default_client_tls,
    issue_certificate,
    use_client_tls,
)


def interrupted(console: Console) -> bool:
    """Say that Ctrl-C stopped the story midway; the demo's result is then a failure."""
    console.print(
        "[bold red]Interrupted[/]: the demo stopped midway (Ctrl-C); nothing after "
        "the last step shown was checked. Run `medchain demo` again to see it whole."
    )
    return False


def print_summary(run: DemoRun, console: Console, status: dict[str, Any]) -> None:
    """The table of every step's outcome, and where the chain (`status`) ended."""
    table = Table(title="MedChain demo: what happened")
    for col in ("step", "outcome", "detail"):
        table.add_column(col)
    for row in run.rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        f"chain [bold]{status['chain_id']}[/] at height {status['height']}, "
        f"app hash {status['app_hash'][:16]}…"
    )


# Whose portal the demo opens once the story has run (issue 20): the patient, a doctor
# of each hospital, PUMCH's admin; the inspector's is on the regulator chain.
PORTAL_CAST = ("patient-zhang", "dr-chen", "dr-zhou", "pumch-admin")


def start_portals(
    run: DemoRun, node_url: str, regulator_url: str, ca: Path, console: Console
) -> list[PortalServer]:
    """A portal on 127.0.0.1 for each of PORTAL_CAST and the inspector, each signing
    with that member's key; prints their launch links (they sign a browser in)."""
    portals = []
    cast = [(name, node_url) for name in PORTAL_CAST]
    for name, url in [*cast, ("inspector-sun", regulator_url)]:
        key = run.key(name)
        portal = PortalServer(Client(url, ca=ca, key=key), key, free_port())
        portal.start()
        portals.append(portal)
        console.print(f"Portal for {name}: {portal.launch_url}", soft_wrap=True)
    return portals


def run_demo(
    home_dir: Path, port: int, keep_running: bool, console: Console, edge_port: int
) -> bool:
    """Reset `home_dir`, start a node with a gateway, run the demo; True if all as expected."""
    if home_dir.exists():
        shutil.rmtree(home_dir)
    home = NodeHome(home_dir)
    # The admin (as `medchain init` lists it), PUMCH's edge (its org key) and the NHC
    # relay read raw state and blocks: operators of this node, in <home>/operators.json.
    keys = {n: crypto.generate_keypair() for n in ("consortium-admin", "pumch-admin", "relay-nhc")}
    for name, key in keys.items():
        home.keystore.save(name, key, DEMO_PASSPHRASE, DEMO_KDF_ITERATIONS)
        add_operator(home_dir, name, key.suite, key.public)
    admin = keys["consortium-admin"]
    home.write_genesis(DEMO_CHAIN_ID, "consortium-admin", admin)
    # TLS everywhere, as `medchain init` sets it up: a dev CA, node and edge certificates;
    # every client of this process (requester, uploads, relay) trusts that CA.
    ca = create_dev_pki(home.tls, DEMO_CHAIN_ID, ["localhost", "127.0.0.1"], DEMO_PASSPHRASE)
    issue_certificate(home.tls, "edge", ["localhost", "127.0.0.1"], DEMO_PASSPHRASE)
    trusted_before = default_client_tls()
    use_client_tls(ClientTls(ca))
    engine = open_solo(home, block_interval=0.05)
    server = GatewayServer(
        engine, port=port, tls=home.server_tls("node"), operators=load_operators(home_dir)
    )
    server.start()
    console.print(f"[bold]MedChain demo[/] node on {server.url} (home {home_dir}, CA {ca})")
    run = DemoRun(Client(server.url, ca=ca), home, console, keys=keys)
    edge_server: EdgeServer | None = None
    ok: bool | None = None  # set once the story has run to its end
    stack = ExitStack()  # the regulator chain and the portals, stopped first
    try:
        run_demo_transactions(run)
        edge = open_edge(home, run.key("pumch-admin"), server.url, "pumch", ClientTls(ca))
        edge_server = EdgeServer(edge, "127.0.0.1", edge_port, tls=home.server_tls("edge"))
        edge_server.start()
        run.step(
            "pumch publishes its edge (vault + exchange) endpoint",
            "pumch-admin",
            "identity",
            "set_endpoint",
            {"org_id": "pumch", "edge_url": edge_server.url},
        )
        run_health_story(run, edge_server.url)
        run_interop_story(run, edge_server.url)
        run_supply_story(run, server.url)
        reg_home = NodeHome(home_dir / "regulator")
        reg_root = crypto.generate_keypair()
        run.keys["regulator-root"] = reg_root
        reg_home.write_genesis(REGULATOR_CHAIN_ID, "regulator-root", reg_root, profile="regulator")
        relayer = run.key("relay-nhc")
        add_operator(reg_home.root, "relay-nhc", relayer.suite, relayer.public)
        reg_engine = open_solo(reg_home, block_interval=0.05)
        reg_server = GatewayServer(
            reg_engine,
            port=free_port(),
            tls=home.server_tls("node"),
            operators=load_operators(reg_home.root),
        )
        reg_server.start()
        stack.callback(reg_engine.stop)
        stack.callback(reg_server.stop)
        run_regulator_story(run, Client(reg_server.url, ca=ca))
        ok = all("✔" in r[1] for r in run.rows)
        print_summary(run, console, run.client.status())
        console.print(f"Keys are in {home_dir / 'keys'} (passphrase: {DEMO_PASSPHRASE!r}).")
        console.print(
            f"Look at: {server.url}/docs (API), {server.url}/v1/status, "
            f"{server.url}/v1/identity/orgs (public). Records, consent and audit are "
            "signed reads: e.g. `medchain audit --patient "
            f"{run.did('patient-zhang')} --key patient-zhang --home {home_dir} "
            f"--node {server.url}`"
        )
        console.print(
            f"HTTPS with a development CA: `curl --cacert {ca} {server.url}/v1/status`, "
            f"`medchain --ca {ca} status --node {server.url}` (or import it in a browser)."
        )
        if keep_running:
            for portal in start_portals(run, server.url, reg_server.url, ca, console):
                stack.callback(portal.stop)
            console.print(
                "Web pages: open a portal link above in a browser (see docs/web.md). "
                "Node, PUMCH edge, regulator chain and portals keep running; Ctrl-C to stop."
            )
            while engine.failure is None:
                time.sleep(1)
        return ok
    except KeyboardInterrupt:
        if ok is not None:  # stopped while serving after the story: as it ended
            return ok
        return interrupted(console)
    finally:
        stack.close()
        if edge_server is not None:
            edge_server.stop()
        server.stop()
        engine.stop()
        use_client_tls(trusted_before)
