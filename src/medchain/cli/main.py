"""`medchain`: the command line for operators, staff and patients."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

import medchain.node as node_servers  # the servers load on first use (node/__init__.py)
from medchain import crypto
from medchain.cli.backup import register as register_backup_commands
from medchain.cli.claims import register as register_claims_commands
from medchain.cli.common import (
    DEFAULT_HOME,
    DEFAULT_LIMITS,
    DEFAULT_LOG_FORMAT,
    DEFAULT_LOG_LEVEL,
    DEFAULT_URL,
    Burst,
    Concurrency,
    Home,
    InsecureHttp,
    LogFormat,
    LogLevel,
    MaxWaits,
    NodeUrl,
    Rate,
    SelfRegistrationGatewayRate,
    SelfRegistrationRate,
    TlsCert,
    TlsClientCa,
    TlsKey,
    WaitCap,
    choose_trust,
    client_failed,
    console,
    fail,
    fail_on,
    load_key,
    passphrase,
    print_json,
    request_limits,
    server_tls,
    start_logging,
    stop_on_sigterm,
)
from medchain.cli.config import register as register_config_commands
from medchain.cli.config import settings_of
from medchain.cli.fl import register as register_fl_commands
from medchain.cli.fl_deploy import register as register_fl_deploy_commands
from medchain.cli.governance import register as register_gov_commands
from medchain.cli.health import register as register_health_commands
from medchain.cli.htlc import register as register_htlc_commands
from medchain.cli.interop import register as register_interop_commands
from medchain.cli.metrics_port import DEFAULT_METRICS_HOST, MetricsHost, MetricsPort
from medchain.cli.portal import register as register_portal_commands
from medchain.cli.referral import register as register_referral_commands
from medchain.cli.research import register as register_research_commands
from medchain.cli.scripting import Exit, ScriptableGroup, emit
from medchain.cli.sm9 import register as register_sm9_commands
from medchain.cli.supervise import register as register_supervise_commands
from medchain.cli.supply import register as register_supply_commands
from medchain.cli.tls import Hosts
from medchain.cli.tls import register as register_tls_commands
from medchain.cli.token import register as register_token_commands
from medchain.cli.zk import register as register_zk_commands
from medchain.crypto.sm9 import SM9Error
from medchain.gateway import operators as gateway_operators
from medchain.gateway.limit_config import Limits
from medchain.node import (
    DEFAULT_EDGE_PORT,
    DEFAULT_PORT,
    DEFAULT_SNAPSHOT_INTERVAL,
    DEFAULT_STATE_SYNC_MAX_BYTES,
    NodeHome,
)
from medchain.node import config as node_config
from medchain.sdk.client import Client, ClientError
from medchain.sdk.keystore import KeystoreError
from medchain.sdk.tls import DEFAULT_HOSTS, ServerTls, create_dev_pki

app = typer.Typer(
    help="MedChain: consortium ledger for health data.",
    no_args_is_help=True,
    cls=ScriptableGroup,  # exit codes, --json, --version (cli/scripting.py)
)
keys_app = typer.Typer(
    help="Create and inspect keys (encrypted at rest with SM4).", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
operators_app = typer.Typer(
    help="Keys this node trusts with raw blocks and state.", no_args_is_help=True
)
app.add_typer(operators_app, name="operators")
localnet_app = typer.Typer(help="A local multi-validator CometBFT network.", no_args_is_help=True)

StateSyncMaxBytes = Annotated[
    int,
    typer.Option(
        help="memory a state-sync restore may take while it checks a peer's snapshot "
        "(about 1,300 bytes a key plus its size); a larger snapshot is refused"
    ),
]

app.add_typer(localnet_app, name="localnet")
register_config_commands(app)
register_health_commands(app)
register_interop_commands(app)
register_research_commands(app)
register_zk_commands(app)
register_sm9_commands(app)
register_gov_commands(app)
register_token_commands(app)
register_claims_commands(app)
register_htlc_commands(app)
register_referral_commands(app)
register_fl_commands(app)
register_fl_deploy_commands(app)
register_supervise_commands(app)
register_supply_commands(app)
register_tls_commands(app)
register_backup_commands(app)
register_portal_commands(app)


@app.callback()
def trust(
    ca: Annotated[
        Path | None,
        typer.Option(
            envvar="MEDCHAIN_CA",
            help="CA certificate that signed the node's and edges' certificates "
            "(default: <home>/tls/ca.pem, else the system's trust store)",
        ),
    ] = None,
    tls_client_cert: Annotated[
        Path | None,
        typer.Option(envvar="MEDCHAIN_TLS_CLIENT_CERT", help="mutual TLS: certificate to present"),
    ] = None,
    tls_client_key: Annotated[
        Path | None, typer.Option(envvar="MEDCHAIN_TLS_CLIENT_KEY", help="its private key")
    ] = None,
) -> None:
    """MedChain: consortium ledger for health data. Every connection is HTTPS,
    checked against --ca or the home's development CA (docs/tls.md)."""
    choose_trust(ca, tls_client_cert, tls_client_key, _default_home())


def _default_home() -> Path:
    env = os.environ.get("MEDCHAIN_HOME")
    return Path(env) if env else DEFAULT_HOME


@app.command()
def init(
    home: Home = DEFAULT_HOME,
    chain_id: Annotated[str, typer.Option(help="chain id")] = "medchain-local",
    profile: Annotated[
        str, typer.Option(help="business (health records) or regulator (supervision)")
    ] = "business",
    host: Hosts = None,
) -> None:
    """Create a home with a consortium admin key, a genesis file, and a development
    CA with the node's TLS certificate (for --host; default localhost, 127.0.0.1, ::1)."""
    node_home = NodeHome(home)
    if node_home.genesis_path.exists():
        fail(f"{node_home.genesis_path} exists", "use another --home, or delete it first")
    if node_home.tls.ca_cert.exists():
        fail(f"{node_home.tls.ca_cert} exists", "use another --home, or delete it first")
    admin = crypto.generate_keypair()
    secret = passphrase(confirm=True, name="admin")
    node_home.keystore.save("admin", admin, secret)
    if profile not in ("business", "regulator"):
        fail(f"unknown profile {profile!r}", "use --profile business or --profile regulator")
    g = node_home.write_genesis(chain_id, "admin", admin, profile=profile)
    gateway_operators.add_operator(home, "admin", admin.suite, admin.public)
    hosts = host or list(DEFAULT_HOSTS)
    ca = create_dev_pki(node_home.tls, chain_id, hosts, secret)
    if not node_config.config_path(home).exists():
        node_config.write_file(home)
    console.print(f"Initialised chain [bold]{g.chain_id}[/] in {home}")
    console.print(f"Consortium admin key 'admin': {admin.public.hex()}")
    console.print(f"Development CA {ca} (its key is encrypted with the same passphrase)")
    console.print(f"Node TLS certificate for {', '.join(hosts)}: {node_home.tls.cert('node')}")
    console.print(f"Configuration (defaults, commented): {node_config.config_path(home)}")
    console.print(f"Next: medchain node --home {home}")


@app.command()
def node(
    ctx: typer.Context,
    home: Home = DEFAULT_HOME,
    engine: Annotated[str, typer.Option(help="solo (embedded) or cometbft")] = "solo",
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    block_interval: Annotated[float, typer.Option(help="seconds (solo)")] = 0.2,
    cometbft_ip: Annotated[
        str,
        typer.Option(
            help="cometbft: the loopback or host address its CometBFT binds (RPC 26657, "
            "P2P 26656, ABCI 26658), written when <home>/cometbft is first made"
        ),
    ] = "127.0.0.1",
    public_port: Annotated[
        int | None,
        typer.Option(
            help="also serve only the public routes (status, DIDs, organisations, GS1 "
            "Digital Link pages, tx submission) on this port"
        ),
    ] = None,
    snapshot_interval: Annotated[
        int,
        typer.Option(
            help="cometbft: write a state-sync snapshot every N heights for joining "
            "nodes (the 3 newest are kept; 0: none)"
        ),
    ] = DEFAULT_SNAPSHOT_INTERVAL,
    state_sync_max_bytes: StateSyncMaxBytes = DEFAULT_STATE_SYNC_MAX_BYTES,
    external_cometbft: Annotated[
        bool,
        typer.Option(
            "--external-cometbft",
            help="cometbft: do not start CometBFT; serve the ABCI app and the gateway and "
            "let a service manager run `cometbft start --home <home>/cometbft` beside it",
        ),
    ] = False,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    tls_client_ca: TlsClientCa = None,
    insecure_http: InsecureHttp = False,
    rate: Rate = DEFAULT_LIMITS.rate,
    burst: Burst = DEFAULT_LIMITS.burst,
    concurrency: Concurrency = DEFAULT_LIMITS.concurrency,
    max_waits: MaxWaits = DEFAULT_LIMITS.max_waits,
    wait_cap: WaitCap = DEFAULT_LIMITS.max_wait_seconds,
    self_registration_rate: SelfRegistrationRate = DEFAULT_LIMITS.self_registration_rate,
    self_registration_gateway_rate: SelfRegistrationGatewayRate = (
        DEFAULT_LIMITS.self_registration_gateway_rate
    ),
    log_format: LogFormat = DEFAULT_LOG_FORMAT,
    log_level: LogLevel = DEFAULT_LOG_LEVEL,
    metrics_port: MetricsPort = 0,
    metrics_host: MetricsHost = DEFAULT_METRICS_HOST,
) -> None:
    """Run a node until Ctrl-C, with its gateway: solo, or the ABCI app beside CometBFT
    (a validator or a full node, by its CometBFT keys and genesis).
    The gateway serves HTTPS with <home>/tls/node.pem unless told otherwise; each
    client address is held to the request limits below (429 with Retry-After past them).
    Options not given come from MEDCHAIN_NODE_<OPTION>, then [node] of <home>/medchain.toml."""
    cfg = settings_of(ctx, node_config.NodeSettings, home)
    start_logging(cfg.log_format, cfg.log_level)
    metrics_port, metrics_host = cfg.metrics_port, cfg.metrics_host
    engine, host, port, block_interval = cfg.engine, cfg.host, cfg.port, cfg.block_interval
    cometbft_ip, public_port = cfg.cometbft_ip, cfg.public_port
    external_cometbft = cfg.external_cometbft
    snapshot_interval, state_sync_max_bytes = cfg.snapshot_interval, cfg.state_sync_max_bytes
    tls_cert, tls_key, tls_client_ca = cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca
    insecure_http, rate, burst = cfg.insecure_http, cfg.rate, cfg.burst
    concurrency, max_waits, wait_cap = cfg.concurrency, cfg.max_waits, cfg.wait_cap
    self_registration_rate = cfg.self_registration_rate
    self_registration_gateway_rate = cfg.self_registration_gateway_rate
    if engine not in ("solo", "cometbft"):
        fail(f"unknown engine {engine!r}", "use --engine solo or --engine cometbft")
    tls = server_tls(home, ("node",), tls_cert, tls_key, tls_client_ca, insecure_http)
    limits = request_limits(
        rate,
        burst,
        concurrency,
        max_waits,
        wait_cap,
        self_registration_rate,
        self_registration_gateway_rate,
    )
    if engine == "cometbft":
        gateway = _Gateway(
            host,
            port,
            public_port,
            tls,
            gateway_operators.load_operators(home),
            limits,
            metrics_port,
            metrics_host,
        )
        _run_cometbft_node(
            home, cometbft_ip, gateway, snapshot_interval, state_sync_max_bytes, external_cometbft
        )
        return
    if external_cometbft:
        fail("--external-cometbft is for --engine cometbft")
    try:
        solo = node_servers.open_solo(NodeHome(home), block_interval)
    except FileNotFoundError as e:
        fail(str(e))
        raise
    server = node_servers.GatewayServer(
        solo, host, port, tls, operators=gateway_operators.load_operators(home), limits=limits
    )
    servers: list[node_servers.HttpServer] = [server]
    if public_port is not None:  # one set of counters for both ports
        servers.append(
            node_servers.PublicGatewayServer(solo, host, public_port, tls, limits=server.limiter)
        )
    if metrics_port:  # /metrics, /healthz, /readyz unsigned, for Prometheus
        servers.append(node_servers.MetricsServer(server, metrics_port, metrics_host))
    for s in servers:
        s.start()
    stop_on_sigterm()
    console.print(f"MedChain node (solo) at height {solo.app.db.height}; API {server.url}/docs")
    if public_port is not None:
        console.print(f"Public routes only: {servers[1].url}/docs")
    try:
        while solo.failure is None:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        for s in servers:
            s.stop()
        solo.stop()
    if solo.failure is not None:
        fail(
            f"node stopped on an internal fault: {solo.failure}", "see the log above", Exit.INTERNAL
        )


@dataclass(frozen=True)
class _Gateway:
    """Where and how a node serves its gateway (the `node` command's options)."""

    host: str
    port: int
    public_port: int | None
    tls: ServerTls | None
    operators: frozenset[tuple[str, bytes]]
    limits: Limits
    metrics_port: int = 0  # 0: no separate metrics port
    metrics_host: str = DEFAULT_METRICS_HOST


def _run_cometbft_node(
    home: Path,
    cometbft_ip: str,
    gateway: _Gateway,
    snapshot_interval: int = 0,
    state_sync_max_bytes: int = DEFAULT_STATE_SYNC_MAX_BYTES,
    external: bool = False,
) -> None:
    """A CometBFT node under <home>/cometbft: made from the `medchain init` genesis the
    first time (a single validator), or as found there (a validator or full node of an
    existing network: its genesis.json, keys and peers). The ABCI app and the gateway
    run in this process, CometBFT beside it (started here unless `external`: then a
    service manager starts it once the app listens)."""
    from medchain.network import cometbft as cmt

    comet_home = home / "cometbft"
    try:
        if not (comet_home / "config" / "genesis.json").exists():
            genesis = NodeHome(home).genesis()
            subprocess.run(
                [cmt.binary(), "init", "--home", str(comet_home)], check=True, capture_output=True
            )
            cmt.configure_node(comet_home, cometbft_ip)
            cmt.write_app_state(comet_home, genesis.to_dict(), genesis.params.max_block_bytes)
        abci_address, rpc_url = cmt.node_addresses(comet_home)
        cmt.binary()
    except (FileNotFoundError, cmt.CometBFTNotFound) as e:
        fail(str(e))
        raise
    stop_on_sigterm()
    engine = node_servers.open_cometbft(
        comet_home / "medchain" / "chain.db",
        abci_address,
        rpc_url,
        snapshot_interval,
        state_sync_max_bytes,
    )
    comet = None if external else cmt.start_cometbft(comet_home, comet_home / "cometbft.log")
    server = node_servers.GatewayServer(
        engine,
        gateway.host,
        gateway.port,
        gateway.tls,
        gateway.operators,
        gateway.limits,
        min_peers=min(1, cmt.configured_peers(comet_home)),
    )
    servers: list[node_servers.HttpServer] = [server]
    if gateway.public_port is not None:  # one set of counters for both ports
        servers.append(
            node_servers.PublicGatewayServer(
                engine, gateway.host, gateway.public_port, gateway.tls, server.limiter
            )
        )
    if gateway.metrics_port:
        servers.append(
            node_servers.MetricsServer(server, gateway.metrics_port, gateway.metrics_host)
        )
    try:
        while engine.app.db.height < 0:  # serve once InitChain has written the genesis
            if comet is not None and comet.poll() is not None:
                fail(f"CometBFT exited with {comet.returncode}", f"see {comet_home}/cometbft.log")
            time.sleep(0.1)
        for s in servers:
            s.start()
        console.print(f"MedChain on CometBFT: RPC {rpc_url}, logs in {comet_home}")
        console.print(f"API {server.url}/docs")
        while comet is None or comet.poll() is None:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        for s in servers:
            s.stop()
        if comet is not None:
            comet.terminate()
            comet.wait(timeout=20)
        engine.stop()


@operators_app.command("add")
def operators_add(
    name: Annotated[str, typer.Argument(help="a label, e.g. the edge or relay it serves")],
    public_key: Annotated[str, typer.Argument(help="hex public key")],
    suite: Annotated[str, typer.Option(help="sm or intl")] = "sm",
    home: Home = DEFAULT_HOME,
) -> None:
    """List a key in <home>/operators.json (read by `medchain node` at start): it may
    read raw blocks and raw state, as a custodian's edge or a relay beside this node does."""
    try:
        crypto.get_suite(suite)
        public = bytes.fromhex(public_key)
    except (crypto.UnknownSuite, ValueError) as e:
        fail(f"bad key: {e}")
    if gateway_operators.add_operator(home, name, suite, public):
        console.print(f"{name} is now an operator of the node at {home}; restart the node")
    else:
        console.print(f"{name}'s key was already an operator")


@operators_app.command("list")
def operators_list(home: Home = DEFAULT_HOME) -> None:
    """The keys listed as this node's operators."""
    print_json(
        [
            {"suite": s, "public_key": k.hex()}
            for s, k in sorted(gateway_operators.load_operators(home))
        ]
    )


@app.command()
def abci(
    ctx: typer.Context,
    home: Home,
    address: Annotated[
        str, typer.Option(help="tcp://host:port or unix://path")
    ] = "tcp://127.0.0.1:26658",
    snapshot_interval: Annotated[
        int,
        typer.Option(
            help="write a state-sync snapshot every N heights under <home>/snapshots "
            "(the 3 newest are kept; 0: none)"
        ),
    ] = DEFAULT_SNAPSHOT_INTERVAL,
    state_sync_max_bytes: StateSyncMaxBytes = DEFAULT_STATE_SYNC_MAX_BYTES,
    log_format: LogFormat = DEFAULT_LOG_FORMAT,
    log_level: LogLevel = DEFAULT_LOG_LEVEL,
) -> None:
    """Serve the MedChain ABCI app for a CometBFT node (state in <home>/chain.db).
    Options not given come from MEDCHAIN_ABCI_<OPTION>, then [abci] of <home>/medchain.toml."""
    cfg = settings_of(ctx, node_config.AbciSettings, home)
    address, snapshot_interval = cfg.address, cfg.snapshot_interval
    state_sync_max_bytes = cfg.state_sync_max_bytes
    from medchain.consensus.abci.server import AbciApplication, AbciServer
    from medchain.consensus.application import Application
    from medchain.consensus.snapshots import SnapshotStore
    from medchain.storage.chain_db import ChainDB

    start_logging(cfg.log_format, cfg.log_level)
    app_ = Application(ChainDB(home / "chain.db"))
    snapshots = (
        SnapshotStore(home / "snapshots", snapshot_interval) if snapshot_interval > 0 else None
    )
    AbciServer(AbciApplication(app_, snapshots, state_sync_max_bytes), address).serve_forever()


@localnet_app.command("up")
def localnet_up(
    directory: Annotated[Path, typer.Option("--dir")] = Path(".localnet"),
    nodes: int = 4,
    first_ip: str = "127.0.0.1",
    gateway_port: Annotated[
        int, typer.Option(help="each node's HTTPS gateway port, on the node's own address")
    ] = DEFAULT_PORT,
    log_format: LogFormat = DEFAULT_LOG_FORMAT,
    log_level: LogLevel = DEFAULT_LOG_LEVEL,
) -> None:
    """Create (if needed) and start an N-validator network on loopback addresses, each
    node with its HTTPS gateway; their URLs go to <dir>/nodes.json."""
    start_logging(log_format, log_level)  # the nodes it starts log the same way
    os.environ["MEDCHAIN_LOG_FORMAT"], os.environ["MEDCHAIN_LOG_LEVEL"] = log_format, log_level
    from medchain.network.localnet import Localnet

    net = Localnet(directory)
    if not (directory / "localnet.json").exists():
        net.create(nodes, first_ip, gateway_port=gateway_port)
        _write_node_configs(net)
        console.print(f"created {nodes} validators in {directory} (chain {net.chain_id})")
    net.up()
    if not net.manifest.get("builtin_app"):
        try:
            net.wait_serving()
        except RuntimeError as e:
            fail(str(e), f"see {directory}/node<i>/abci.log and cometbft.log")
        for node in net.nodes:
            console.print(f"node {node.index}: API {node.gateway}/docs, RPC {node.rpc}")
        console.print(f"CA: {net.tls.ca_cert} (pass --ca, or MEDCHAIN_CA, to clients)")
    console.print(f"started; URLs in {directory / 'nodes.json'}; `medchain localnet status`")


@localnet_app.command("init")
def localnet_init(
    directory: Annotated[Path, typer.Option("--dir")] = Path(".localnet"),
    nodes: int = 4,
    first_ip: str = "127.0.0.1",
    gateway_port: Annotated[
        int, typer.Option(help="each node's HTTPS gateway port, on the node's own address")
    ] = DEFAULT_PORT,
    chain_id: Annotated[
        str | None, typer.Option(help="chain id (default: the one `cometbft testnet` picks)")
    ] = None,
) -> None:
    """Create an N-validator network's keys, genesis, configs, CA and certificates
    without starting it (what `localnet up` does first); e.g. to deploy the nodes'
    homes in containers (deploy/consortium.sh)."""
    from medchain.network.localnet import Localnet

    if nodes < 1:
        fail("--nodes must be at least 1")
    net = Localnet(directory)
    try:
        net.create(nodes, first_ip, gateway_port=gateway_port, chain_id=chain_id)
    except (FileExistsError, ValueError) as e:
        fail(str(e), "use another --dir, or delete it first")
    _write_node_configs(net)
    console.print(f"created {nodes} validators in {directory} (chain {net.chain_id})")


def _write_node_configs(net: Any) -> None:
    """Each localnet node's medchain.toml (in its home): [node] with its own address,
    gateway port and snapshot interval; `localnet serve-node` reads its limits there."""
    for n in net.nodes:
        node_config.write_file(
            n.home,
            {
                "node": {
                    "engine": "cometbft",
                    "host": n.ip,
                    "port": n.gateway_port,
                    "snapshot_interval": net.snapshot_interval,
                }
            },
        )


@localnet_app.command("serve-node", hidden=True)
def localnet_serve_node(
    index: int,
    directory: Annotated[Path, typer.Option("--dir")] = Path(".localnet"),
    log_format: LogFormat = DEFAULT_LOG_FORMAT,
    log_level: LogLevel = DEFAULT_LOG_LEVEL,
) -> None:
    """Node `index`'s ABCI app and HTTPS gateway in one process (what `localnet up`
    starts beside the node's CometBFT): the app serves CometBFT on the node's ABCI
    address, the gateway the same API as `medchain node --engine cometbft`, on the
    node's own address, with its certificate and operators.json."""
    from medchain.network.cometbft import configured_peers
    from medchain.network.localnet import Localnet

    start_logging(log_format, log_level)
    net = Localnet(directory)
    node = net.nodes[index]
    try:  # its medchain.toml ([node]): request limits; address and port stay the manifest's
        cfg = node_config.load_section(node_config.NodeSettings, node.home).settings
    except node_config.ConfigError as e:
        fail(escape(str(e)), f"fix {node_config.config_path(node.home)}")
    assert isinstance(cfg, node_config.NodeSettings)
    limits = request_limits(
        cfg.rate,
        cfg.burst,
        cfg.concurrency,
        cfg.max_waits,
        cfg.wait_cap,
        cfg.self_registration_rate,
        cfg.self_registration_gateway_rate,
    )
    tls = ServerTls(net.tls.cert(node.tls_name), net.tls.key(node.tls_name))
    stop_on_sigterm()
    engine = node_servers.open_cometbft(
        node.home / "medchain" / "chain.db", node.abci_address, node.rpc, net.snapshot_interval
    )
    peers = min(1, configured_peers(node.home))  # /readyz: a peer, if it has any configured
    server = node_servers.GatewayServer(
        engine,
        node.ip,
        node.gateway_port,
        tls,
        gateway_operators.load_operators(node.home),
        limits,
        peers,
    )
    try:
        while engine.app.db.height < 0:  # serve once InitChain has written the genesis
            time.sleep(0.1)
        server.start()
        console.print(f"node {index}: API {server.url}/docs, ABCI {node.abci_address}")
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        engine.stop()


@localnet_app.command("add-node")
def localnet_add_node(
    directory: Annotated[Path, typer.Option("--dir")] = Path(".localnet"),
    block_sync: Annotated[
        bool, typer.Option(help="replay every block from genesis instead of state sync")
    ] = False,
) -> None:
    """Add a full node (not a validator) to a running localnet and start it: its own
    keys, the network's genesis, the validators as peers; it joins by state sync from
    a snapshot (trust root from node 0, nodes 0 and 1 as light-client servers)."""
    from medchain.network.localnet import Localnet

    net = Localnet(directory)
    try:
        index = net.add_node(state_sync=not block_sync)
        net.start_node(index)
        net.wait_serving(300, nodes=[index])
    except (FileNotFoundError, RuntimeError) as e:
        fail(str(e), f"see {directory}/node<i>/abci.log and cometbft.log")
    node = net.nodes[index]
    how = "block sync from genesis" if block_sync else "state sync"
    console.print(f"node {index} joined by {how}: API {node.gateway}/docs, RPC {node.rpc}")


@localnet_app.command("status")
def localnet_status(directory: Annotated[Path, typer.Option("--dir")] = Path(".localnet")) -> None:
    """RPC and gateway URLs, height, app hash and peers of every node."""
    from rich.table import Table

    from medchain.network.localnet import Localnet

    table = Table(title=f"localnet {directory}")
    for col in ("node", "rpc", "gateway", "height", "app hash", "peers"):
        table.add_column(col)
    for row in Localnet(directory).status():
        table.add_row(
            str(row["node"]),
            row["rpc"],
            str(row["gateway"] or "-"),
            str(row["height"]),
            str(row["app_hash"])[:16],
            str(row["peers"]),
        )
    console.print(table)


@localnet_app.command("stop-node")
def localnet_stop_node(
    index: int, directory: Annotated[Path, typer.Option("--dir")] = Path(".localnet")
) -> None:
    """Stop one node (CometBFT, then its app and gateway)."""
    from medchain.network.localnet import Localnet

    Localnet(directory).stop_node(index)


@localnet_app.command("start-node")
def localnet_start_node(
    index: int, directory: Annotated[Path, typer.Option("--dir")] = Path(".localnet")
) -> None:
    """Start one node again; it catches up from its peers."""
    from medchain.network.localnet import Localnet

    Localnet(directory).start_node(index)


@localnet_app.command("down")
def localnet_down(directory: Annotated[Path, typer.Option("--dir")] = Path(".localnet")) -> None:
    """Stop every node (data stays; `up` resumes)."""
    from medchain.network.localnet import Localnet

    Localnet(directory).down()


@app.command()
def demo(
    home: Home = Path(".medchain-demo"),
    port: int = DEFAULT_PORT,
    edge_port: Annotated[int, typer.Option(help="PUMCH's edge")] = DEFAULT_EDGE_PORT,
    keep_running: Annotated[bool, typer.Option(help="serve after the demo")] = True,
    engine: Annotated[
        str, typer.Option(help="solo (one embedded node) | cometbft (4-validator localnet)")
    ] = "solo",
    first_ip: Annotated[
        str, typer.Option(help="cometbft: the first validator's loopback address")
    ] = "127.0.20.1",
    quick: Annotated[
        bool, typer.Option(help="cometbft: only the consortium, records and regulator stories")
    ] = False,
    log_format: LogFormat = DEFAULT_LOG_FORMAT,
    log_level: LogLevel = DEFAULT_LOG_LEVEL,
) -> None:
    """Build a small consortium and run real transactions (resets --home): on one solo
    node, or with --engine cometbft on 4 validators (each gateway on its own address
    and --port), one of which stops midway."""
    start_logging(log_format, log_level)
    if engine == "solo":
        from medchain.demo import run_demo

        ok = run_demo(home, port, keep_running, console, edge_port)
    elif engine == "cometbft":
        from medchain.demo.network import run_network_demo

        ok = run_network_demo(home, port, keep_running, console, edge_port, first_ip, quick)
    else:
        fail(f"unknown engine {engine!r}", "use --engine solo or --engine cometbft")
    if not ok:
        fail("some demo steps did not behave as expected (see the table)", code=1)


@keys_app.command("new")
def keys_new(
    name: str,
    home: Home = DEFAULT_HOME,
    suite: Annotated[
        str, typer.Option(help="sm | intl | pq | sm2+mldsa (sm9 keys: medchain sm9 issue)")
    ] = "sm",
) -> None:
    """Generate a key pair and store it encrypted."""
    try:
        key = crypto.generate_keypair(suite)
        path = NodeHome(home).keystore.save(name, key, passphrase(confirm=True, name=name))
    except (crypto.UnknownSuite, SM9Error, KeystoreError, FileExistsError) as e:
        fail(str(e))
        raise
    console.print(f"{name}: suite {suite}, public key {key.public.hex()} ({path})")


@keys_app.command("show")
def keys_show(name: str, home: Home = DEFAULT_HOME) -> None:
    """Show a key's public half and DID (no passphrase needed)."""
    from medchain.contracts.identity import did_for_key

    try:
        info = NodeHome(home).keystore.public_info(name)
    except KeystoreError as e:
        fail_on(e)
        raise
    info["did"] = did_for_key(str(info["suite"]), bytes.fromhex(str(info["public_key"])))
    print_json(info)


@keys_app.command("list")
def keys_list(home: Home = DEFAULT_HOME) -> None:
    """List key names in the home's keystore."""
    names = list(NodeHome(home).keystore.names())
    emit(names, lambda: console.print("\n".join(names)) if names else None)


def _payload(text: str, home: Path) -> dict[str, Any]:
    """JSON payload; {"$bytes": hex} is bytes, {"$key": name} a stored key's public key."""

    def convert(v: Any) -> Any:
        if isinstance(v, dict):
            if set(v) == {"$bytes"}:
                return bytes.fromhex(v["$bytes"])
            if set(v) == {"$key"}:
                return bytes.fromhex(
                    str(NodeHome(home).keystore.public_info(v["$key"])["public_key"])
                )
            return {k: convert(x) for k, x in v.items()}
        if isinstance(v, list):
            return [convert(x) for x in v]
        return v

    try:
        value = convert(json.loads(text))
    except (json.JSONDecodeError, ValueError, KeystoreError) as e:
        fail(f"bad --payload: {e}", 'example: --payload \'{"org_id": "pumch"}\'')
    if not isinstance(value, dict):
        fail("--payload must be a JSON object")
    return dict(value)


@app.command()
def tx(
    contract: str,
    action: str,
    key: Annotated[str, typer.Option(help="name of the signing key")],
    payload: Annotated[str, typer.Option(help="JSON object")] = "{}",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
    wait: Annotated[bool, typer.Option(help="wait for the block")] = True,
) -> None:
    """Sign a transaction with a stored key and submit it."""
    body = _payload(payload, home)
    signer = load_key(home, key)
    try:
        out = Client(node).send(signer, contract, action, body, wait=wait)
    except ClientError as e:
        client_failed(e)
        raise
    print_json(out)
    if out.get("code", 0) != 0:
        raise typer.Exit(1)


ReadKey = Annotated[
    str, typer.Option("--key", help="name of the key that signs the read (see `keys list`)")
]


@app.command()
def query(
    key: Annotated[str, typer.Argument(help="state key, or prefix with --prefix")],
    signer: ReadKey,
    prefix: bool = False,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Read committed state from a node (raw state is for the node's operators)."""
    try:
        c = Client(node, key=load_key(home, signer))
        print_json(c.scan(key) if prefix else c.state(key))
    except ClientError as e:
        client_failed(e)


@app.command()
def prove(
    kind: Annotated[str, typer.Argument(help="state or tx")],
    what: Annotated[str, typer.Argument(help="a state key, or a tx id (hex)")],
    signer: ReadKey,
    out: Annotated[Path | None, typer.Option(help="write the proof here")] = None,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Fetch a proof (a state value or a tx's result and audit events) to check offline."""
    if kind not in ("state", "tx"):
        fail(f"unknown proof kind {kind!r}", "use `medchain prove state KEY` or `prove tx ID`")
    try:
        c = Client(node, key=load_key(home, signer))
        doc = c.prove_state(what) if kind == "state" else c.prove_tx(what)
    except ClientError as e:
        client_failed(e)
    text = json.dumps(doc, indent=1)
    if out is None:
        emit(doc, lambda: print(text))
    else:
        out.write_text(text)
        console.print(f"Proof written to {out}; check it with `medchain verify {out}`.")


@app.command()
def verify(
    proof_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    app_hash: Annotated[
        str | None,
        typer.Option(
            help="the app hash you trust for that height (validators' header, regulator chain)"
        ),
    ] = None,
    node: Annotated[
        str | None,
        typer.Option(
            help="a CometBFT RPC url: fetch the header at the proof's height + 1 through "
            "CometBFT's light client and check the proof against its app hash"
        ),
    ] = None,
    trust_height: Annotated[
        int | None, typer.Option(help="height of a header you trust (with --node)")
    ] = None,
    trust_hash: Annotated[
        str | None, typer.Option(help="hash (hex) of that header, obtained out of band")
    ] = None,
    witness: Annotated[
        list[str] | None,
        typer.Option(help="another node's CometBFT RPC url to cross-check --node (repeatable)"),
    ] = None,
) -> None:
    """Check a proof offline, trusting no node."""
    from medchain.core import proofs

    try:
        doc = json.loads(proof_file.read_text())
    except (json.JSONDecodeError, ValueError) as e:
        fail(f"proof does not verify: {e}", code=1)
    if not isinstance(doc, dict):
        fail("proof does not verify: a proof file holds one JSON object", code=1)
    if node is not None:
        _verify_through_light_client(doc, node, trust_height, trust_hash, witness or [], app_hash)
        return
    try:
        trusted = None if app_hash is None else bytes.fromhex(app_hash)
        what = proofs.verify(doc, trusted)
    except ValueError as e:
        fail(f"proof does not verify: {e}", code=1)
    console.print(f"[green]verified[/]: {what}")
    if app_hash is None:
        console.print(
            "[yellow]note:[/] compare that app hash with one you trust for this height "
            "(or pass --app-hash, or --node with --trust-height and --trust-hash)"
        )


def _verify_through_light_client(
    doc: Any,
    node: str,
    trust_height: int | None,
    trust_hash: str | None,
    witnesses: list[str],
    app_hash: str | None,
) -> None:
    from medchain.network import light

    if trust_height is None or trust_hash is None:
        fail(
            "--node needs a trusted header: --trust-height and --trust-hash",
            "take them from a source you trust (e.g. height 1 and its hash from the "
            "consortium's published genesis block), not from the node you are checking",
        )
    if app_hash is not None:
        fail("give either --app-hash or --node, not both")
    try:
        root = light.TrustRoot(trust_height, bytes.fromhex(trust_hash))
        bound = light.verify_proof(doc, node, root, tuple(witnesses))
    except light.LightClientError as e:
        fail(f"no verified header: {e}", code=1)
    except ValueError as e:
        fail(f"proof does not verify: {e}", code=1)
    h = bound.header
    console.print(f"[green]verified[/]: {bound.what}")
    console.print(
        f"  against header {h.height} of {h.chain_id} (hash {h.hash.hex()}), which CometBFT's "
        f"light client verified from trusted header {trust_height}: signed by more than 2/3 "
        f"of the voting power of the validator set it followed ({h.signatures} signatures)"
    )
    if not witnesses:
        console.print(
            "[yellow]note:[/] no --witness: signatures were checked, but no other node "
            "cross-checked this one for a fork"
        )


@app.command()
def status(node: NodeUrl = DEFAULT_URL) -> None:
    """Show a node's chain id, height and app hash."""
    try:
        print_json(Client(node).status())
    except ClientError as e:
        client_failed(e)
