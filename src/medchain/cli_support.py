"""What every `medchain` command shares: consoles, options, keys, failing well."""

from __future__ import annotations

import getpass
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from medchain import crypto
from medchain.client import ClientError
from medchain.keystore import KeystoreError
from medchain.node import DEFAULT_PORT, NodeHome

console = Console()
err = Console(stderr=True)

Home = Annotated[Path, typer.Option("--home", envvar="MEDCHAIN_HOME", help="node home directory")]
NodeUrl = Annotated[str, typer.Option("--node", envvar="MEDCHAIN_NODE", help="gateway URL")]
DEFAULT_HOME = Path.home() / ".medchain"
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


def fail(message: str, hint: str = "", code: int = 2) -> NoReturn:
    err.print(f"[red]error:[/] {message}")
    if hint:
        err.print(f"[yellow]next:[/] {hint}")
    raise typer.Exit(code)


def stop_on_sigterm() -> None:
    """Make SIGTERM (systemd, kill) run the same clean shutdown as Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def passphrase(confirm: bool = False) -> str:
    value = os.environ.get("MEDCHAIN_PASSPHRASE")
    if value:
        return value
    if not sys.stdin.isatty():
        fail("no passphrase", "set MEDCHAIN_PASSPHRASE or run in a terminal")
    first = getpass.getpass("Key passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != first:
        fail("passphrases differ")
    return first


def load_key(home: Path, name: str) -> crypto.KeyPair:
    try:
        return NodeHome(home).keystore.load(name, passphrase())
    except KeystoreError as e:
        fail(str(e), f"list keys with `medchain keys list --home {home}`")
        raise


def print_json(value: Any) -> None:
    console.print_json(json.dumps(value))


def client_failed(e: ClientError) -> NoReturn:
    fail(f"{e.code}: {e.message}", e.hint)
