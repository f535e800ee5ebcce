"""`medchain demo --engine cometbft`: the same stories on a 4-validator localnet.

Each hospital talks to its own validator (PUMCH node 0, Ruijin node 1, Yifeng
Pharmacy node 2; patients, regulators and suppliers node 3), failing over to the
others; PUMCH's edge follows node 0. After the consortium forms, validator 3 is
stopped: the records story (and the interop and supply stories) go on with 3 of
4 validators, and its clients move to another node. Then validator 3 comes back,
catches up, and the demo shows that it signed none of the blocks made without it
and that all four nodes hold the same app hash. The regulator chain is a solo
node fed by the relay from the business network, as in the solo demo.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from medchain import crypto
from medchain.demo.consortium import run_demo_transactions
from medchain.demo.driver import interrupted, print_summary
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
from medchain.network.localnet import DEFAULT_PASSPHRASE, Localnet, rpc
from medchain.node import EdgeServer, GatewayServer, NodeHome, free_port, open_edge, open_solo
from medchain.sdk.client import Client, ClientError
from medchain.sdk.tls import ServerTls, default_client_tls, issue_certificate, use_client_tls

NETWORK_FIRST_IP = "127.0.20.1"  # apart from `medchain localnet up` (127.0.0.1) and tests
HOME_NODES = {"pumch": 0, "ruijin": 1, "yifeng-pharmacy": 2}  # everyone else: node 3
STOPPED = 3  # the validator stopped midway
CATCH_UP_SECONDS = 60.0


def _preferring(urls: list[str], first: int) -> list[str]:
    """`urls` with node `first` first and the others after it, for a failover client."""
    return urls[first:] + urls[:first]


def run_network_demo(
    home_dir: Path,
    port: int,
    keep_running: bool,
    console: Console,
    edge_port: int,
    first_ip: str = NETWORK_FIRST_IP,
    quick: bool = False,
) -> bool:
    """Reset `home_dir`, start a 4-validator localnet under it and run the demo on it
    (`quick`: the consortium, records and regulator stories only); True if every step
    behaved as expected. Every process it started is stopped on return or Ctrl-C."""
    if home_dir.exists():
        shutil.rmtree(home_dir)
    home = NodeHome(home_dir)
    keys = {n: crypto.generate_keypair() for n in ("pumch-admin", "relay-nhc")}
    for name, key in keys.items():
        home.keystore.save(name, key, DEMO_PASSPHRASE, DEMO_KDF_ITERATIONS)
    net = Localnet(home_dir / "localnet")
    trusted_before = default_client_tls()
    edge_server: EdgeServer | None = None
    opened: list[Client] = []  # every client made here, closed on the way out
    run: DemoRun | None = None
    result: bool | None = None  # set once the story has run to its end
    try:
        console.print(f"[bold]MedChain demo on CometBFT[/]: 4 validators from {first_ip}")
        # PUMCH's edge (its org key) and the NHC relay read raw state and blocks:
        # operators of every node.
        net.create(
            4,
            first_ip,
            operators=[(name, key.suite, key.public) for name, key in keys.items()],
            gateway_port=port,
            chain_id=DEMO_CHAIN_ID,
        )
        net.up()
        net.wait_serving(120)
        urls = net.gateways
        for node in net.nodes:
            console.print(f"  validator {node.index}: API {node.gateway}/docs, RPC {node.rpc}")
        admin = net.admin_key()
        keys["consortium-admin"] = admin
        home.keystore.save("consortium-admin", admin, DEMO_PASSPHRASE, DEMO_KDF_ITERATIONS)
        use_client_tls(net.client_tls)
        clients = [Client(_preferring(urls, i), tls=net.client_tls) for i in range(len(urls))]
        opened.extend(clients)

        def caught_up(height: int) -> None:
            """Wait until every hospital's node has committed `height` (the demo reads
            what it just wrote, possibly through another node)."""
            deadline = time.monotonic() + 10
            for client in clients:
                while time.monotonic() < deadline:
                    try:
                        if client.status()["height"] >= height:
                            break
                    except ClientError:
                        pass
                    time.sleep(0.05)

        run = DemoRun(
            clients[STOPPED],
            home,
            console,
            keys=keys,
            nodes={org: clients[i] for org, i in HOME_NODES.items()},
            caught_up=caught_up,
        )
        console.print("[bold]The consortium forms[/] (each organisation through its own node)")
        run_demo_transactions(run)
        secret = os.environ.get("MEDCHAIN_PASSPHRASE", DEFAULT_PASSPHRASE)
        issue_certificate(net.tls, "edge", ["localhost", "127.0.0.1"], secret)
        edge_tls = ServerTls(net.tls.cert("edge"), net.tls.key("edge"))
        edge = open_edge(home, keys["pumch-admin"], _preferring(urls, 0), "pumch", net.client_tls)
        opened.append(edge.node)
        edge_server = EdgeServer(edge, "127.0.0.1", edge_port, tls=edge_tls)
        edge_server.start()
        console.print(f"  PUMCH's edge on {edge_server.url}, following validator 0")
        run.step(
            "pumch publishes its edge (vault + exchange) endpoint",
            "pumch-admin",
            "identity",
            "set_endpoint",
            {"org_id": "pumch", "edge_url": edge_server.url},
        )
        stopped_at = clients[0].status()["height"]
        console.print(
            f"[bold yellow]Validator {STOPPED} stops[/] at height {stopped_at} "
            f"(`medchain localnet stop-node {STOPPED}`): the story carries on with 3 of 4 "
            f"validators; those who used node {STOPPED} fail over to another node"
        )
        net.stop_node(STOPPED)
        run_health_story(run, edge_server.url)
        if not quick:
            run_interop_story(run, edge_server.url)
            run_supply_story(run, urls[0])
        resumed_at = clients[0].status()["height"]
        _bring_back(run, net, stopped_at, resumed_at)
        _regulator(run, home, net, secret)
        status = clients[0].status()
        print_summary(run, console, status)
        console.print(f"Keys are in {home_dir / 'keys'} (passphrase: {DEMO_PASSPHRASE!r}).")
        console.print(
            f"Nodes, RPC and CA: {net.root / 'nodes.json'}; "
            f"`medchain localnet status --dir {net.root}`; "
            f"`curl --cacert {net.tls.ca_cert} {urls[0]}/v1/status`"
        )
        result = all("✔" in r[1] for r in run.rows)
        if keep_running:
            console.print("The 4 validators and PUMCH's edge keep running; Ctrl-C to stop.")
            while True:
                time.sleep(1)
        return result
    except KeyboardInterrupt:
        if result is not None:  # stopped while serving after the story: as it ended
            return result
        return interrupted(console)
    finally:
        for client in [*opened, *(run.readers.values() if run is not None else [])]:
            client.close()
        with _no_interrupt():  # a second Ctrl-C must not leave validators running
            if edge_server is not None:
                edge_server.stop()
            if (net.root / "localnet.json").exists():
                net.down()
        use_client_tls(trusted_before)


@contextlib.contextmanager
def _no_interrupt() -> Iterator[None]:
    """Ctrl-C ignored for the length of the block (on the main thread, where Python
    delivers it), so shutting the network down is not itself cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _bring_back(run: DemoRun, net: Localnet, stopped_at: int, resumed_at: int) -> None:
    """Restart the stopped validator, wait for it to catch up, and show from the
    chain that it signed none of the blocks made without it and that all four nodes
    now hold the same app hash."""
    run.console.print(f"[bold green]Validator {STOPPED} starts again[/] and catches up")
    net.start_node(STOPPED)
    net.wait_serving(120, nodes=[STOPPED])
    deadline = time.monotonic() + CATCH_UP_SECONDS
    height, error = -1, ""
    with Client(net.gateways[STOPPED], tls=net.client_tls) as back:
        while height < resumed_at and time.monotonic() < deadline:
            try:
                height, error = back.status()["height"], ""
            except ClientError as e:  # still starting, or down again: ask until the deadline
                error = f"{e.code}: {e.message}"
            time.sleep(0.2)
    if error and height < resumed_at:
        home = net.nodes[STOPPED].home
        run.note(
            f"validator {STOPPED} answers again",
            "unreachable",
            f"{error}; see {home / 'cometbft.log'} and {home / 'abci.log'}, "
            f"`medchain localnet status --dir {net.root}`",
            False,
        )
        return
    address = json.loads(
        (net.nodes[STOPPED].home / "config" / "priv_validator_key.json").read_text()
    )["address"]
    # A stop lands in the middle of a height: from two heights on, it signed nothing.
    heights = range(stopped_at + 2, resumed_at + 1)
    signed = [
        h
        for h in heights
        if any(
            s.get("validator_address") == address
            for s in rpc(net.nodes[0].rpc, "commit", height=h)["signed_header"]["commit"][
                "signatures"
            ]
        )
    ]
    run.note(
        f"blocks {heights.start}-{heights.stop - 1} committed without validator {STOPPED}",
        "OK" if heights and not signed else "signed",
        f"{len(heights)} blocks signed by 3 of 4 validators; validator {STOPPED} signed "
        f"{len(signed)}",
        bool(heights) and not signed,
    )
    hashes = set()
    for url in net.gateways:
        with Client(url, tls=net.client_tls, key=run.key("relay-nhc")) as node:
            hashes.add(node.block(resumed_at)["app_hash"])
    run.note(
        f"all 4 nodes hold the same app hash at height {resumed_at}",
        "OK" if len(hashes) == 1 else "diverged",
        ", ".join(sorted(h[:16] for h in hashes)),
        len(hashes) == 1,
    )


def _regulator(run: DemoRun, home: NodeHome, net: Localnet, secret: str) -> None:
    """The regulator's own chain (a solo node) fed by the relay from the business network."""
    reg_home = NodeHome(home.root / "regulator")
    reg_root = crypto.generate_keypair()
    run.keys["regulator-root"] = reg_root
    reg_home.write_genesis(REGULATOR_CHAIN_ID, "regulator-root", reg_root, profile="regulator")
    relayer = run.key("relay-nhc")
    add_operator(reg_home.root, "relay-nhc", relayer.suite, relayer.public)
    issue_certificate(net.tls, "regulator", ["localhost", "127.0.0.1"], secret)
    reg_engine = open_solo(reg_home, block_interval=0.05)
    reg_server = GatewayServer(
        reg_engine,
        port=free_port(),
        tls=ServerTls(net.tls.cert("regulator"), net.tls.key("regulator")),
        operators=load_operators(reg_home.root),
    )
    reg_server.start()
    try:
        run.console.print(f"[bold]The regulator's chain[/] on {reg_server.url}")
        with Client(reg_server.url, tls=net.client_tls) as regulator:
            run_regulator_story(run, regulator, business_rpc=net.nodes[0].rpc)
    finally:
        reg_server.stop()
        reg_engine.stop()
