"""The `medchain` command line (Typer): one module per command group.

main.py holds the app and the core commands (init, node, keys, tx, query,
status, demo, localnet, edge, operators); health, interop, supervise, supply
and tls add their groups; common.py is what they share (options, key
loading, output).

Every `medchain` run imports this whole tree, so the command modules import the
heavy layers (the servers, edge, FHIR and GS1 libraries, network, portal) inside
the commands that use them: a command that signs one transaction starts in about a
third of a second instead of one and a half. tests/test_cli.py checks that loading
the tree loads none of them.

Layer: cli, the top. It may import every other layer, the demo included (the
`medchain demo` command), and nothing imports it.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""

from medchain.cli.main import app

__all__ = ["app"]
