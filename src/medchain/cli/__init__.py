"""The `medchain` command line (Typer): one module per command group.

main.py holds the app and the core commands (init, node, keys, tx, query,
status, demo, localnet, edge, operators); health, interop, supervise, supply
and tls add their groups; common.py is what they share (options, key
loading, output). The CLI sits on top: it may import every other layer, and
nothing imports it.
"""

from medchain.cli.main import app

__all__ = ["app"]
