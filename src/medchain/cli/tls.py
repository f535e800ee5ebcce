"""`medchain tls`: the development CA of a home and the certificates it signs."""

from __future__ import annotations

from typing import Annotated

import typer

from medchain.cli.common import DEFAULT_HOME, Home, console, fail, passphrase, print_json
from medchain.node import NodeHome
from medchain.sdk.tls import (
    DEFAULT_HOSTS,
    TlsError,
    create_dev_pki,
    describe_certificate,
    issue_certificate,
)

tls_app = typer.Typer(
    help="Development CA and TLS certificates (see docs/tls.md).", no_args_is_help=True
)
Hosts = Annotated[
    list[str] | None,
    typer.Option("--host", help="DNS name or IP address the certificate is valid for (repeat)"),
]


def register(app: typer.Typer) -> None:
    """Add the certificate commands (tls)."""
    app.add_typer(tls_app, name="tls")


@tls_app.command("init")
def tls_init(home: Home = DEFAULT_HOME, host: Hosts = None) -> None:
    """Give an existing home a development CA and a node certificate (new homes get
    them from `medchain init`)."""
    node_home = NodeHome(home)
    try:
        chain_id = node_home.genesis().chain_id
        create_dev_pki(node_home.tls, chain_id, host or list(DEFAULT_HOSTS), passphrase(True))
    except (FileNotFoundError, TlsError) as e:
        fail(str(e))
    console.print(
        f"CA {node_home.tls.ca_cert}; node certificate for {', '.join(host or DEFAULT_HOSTS)}"
    )


@tls_app.command("issue")
def tls_issue(
    name: Annotated[str, typer.Argument(help="file name: <home>/tls/NAME.pem and NAME.key")],
    host: Hosts = None,
    home: Home = DEFAULT_HOME,
) -> None:
    """Sign a certificate for an edge or another node with the home's CA; it serves
    HTTPS and, for mutual TLS, identifies its holder as a client."""
    if not host:
        fail("name at least one --host", "e.g. --host edge.pumch.example --host 10.0.0.7")
    tls = NodeHome(home).tls
    try:
        path = issue_certificate(tls, name, host, passphrase())
    except TlsError as e:
        fail(str(e))
    console.print(f"{path} and {tls.key(name)} for {', '.join(host)}, signed by {tls.ca_cert}")
    console.print("Copy both to the server, and give clients the CA certificate only.")


@tls_app.command("show")
def tls_show(
    name: Annotated[str, typer.Argument(help="certificate name")] = "node",
    home: Home = DEFAULT_HOME,
) -> None:
    """Who a home's certificate names, who signed it, its hosts and expiry."""
    path = NodeHome(home).tls.cert(name)
    if not path.exists():
        fail(f"no certificate {path}", f"`medchain tls issue {name} --host ... --home {home}`")
    print_json({"certificate": str(path)} | describe_certificate(path))
