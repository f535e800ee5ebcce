"""`medchain fl server` and `medchain fl client`: real mode, one process per party.

Flower's pins keep it in the second venv, so both commands replace this process with
`.venv-fl/bin/python -m medchain.fl.deploy superlink|supernode` (docs/federated.md,
"Real mode"): the sponsor runs the SuperLink, each hospital one SuperNode with its
org and its own work directory. The run itself is submitted with
`python -m medchain.fl.deploy submit` in .venv-fl.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from medchain.cli.fl import _fl_python, fl_app

Insecure = Annotated[
    bool, typer.Option("--insecure", help="no TLS: loopback tests only (see docs/federated.md)")
]


def register(app: typer.Typer) -> None:
    """Add `medchain fl server` and `medchain fl client` to the fl group."""
    del app  # the fl group is registered by cli/fl.py; these join it
    fl_app.command("server")(server)
    fl_app.command("client")(client)


def server(
    host: Annotated[str, typer.Option(help="address the SuperLink listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="its one HTTP port (Fleet, Control, runtime)")] = 9093,
    insecure: Insecure = False,
) -> None:
    """Start the sponsor's Flower SuperLink (runs until stopped; exit 3 without .venv-fl)."""
    argv = ["superlink", "--host", host, "--port", str(port)]
    _exec_deploy(argv + (["--insecure"] if insecure else []))


def client(
    org: Annotated[str, typer.Option("--org", help="this hospital's org id in the run")],
    workdir: Annotated[Path, typer.Option("--workdir", help="this hospital's work directory")],
    superlink: Annotated[str, typer.Option(help="the SuperLink's HOST:PORT")] = "127.0.0.1:9093",
    port: Annotated[int, typer.Option(help="the SuperNode's local runtime port")] = 9094,
    insecure: Insecure = False,
) -> None:
    """Start one hospital's Flower SuperNode (runs until stopped; exit 1 if W lacks the
    run's config.json, 3 without .venv-fl)."""
    argv = ["supernode", "--org", org, "--workdir", str(workdir.resolve())]
    argv += ["--superlink", superlink, "--port", str(port)]
    _exec_deploy(argv + (["--insecure"] if insecure else []))


def _exec_deploy(args: list[str]) -> None:
    """Become the .venv-fl launcher (its exit code and signals are the command's)."""
    python = _fl_python()
    os.execv(python, [str(python), "-m", "medchain.fl.deploy", *args])
