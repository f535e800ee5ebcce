"""The `medchain` command line (Typer): one module per command group.

main.py holds the app and the core commands (init, node, keys, tx, query,
status, demo, localnet, edge, operators); health, interop, supervise, supply
and tls add their groups; common.py is what they share (options, key
loading, output).

Layer: cli, the top. It may import every other layer, the demo included (the
`medchain demo` command), and nothing imports it.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""

from medchain.cli.main import app

__all__ = ["app"]
