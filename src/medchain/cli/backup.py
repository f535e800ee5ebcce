"""`medchain backup` / `medchain restore` (a node home) and `medchain edge backup` /
`medchain edge restore` (an edge's vault directory): online copies with a verified manifest
(medchain/backup). An edge restore re-applies the erasures the chain recorded since
the backup before anything can serve the restored vault."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from medchain import backup
from medchain.cli.common import DEFAULT_HOME, DEFAULT_URL, Home, console, fail, load_key
from medchain.cli.health import Key, NodeUrls, edge_app
from medchain.sdk.client import ClientError
from medchain.sdk.tls import default_client_tls

Out = Annotated[Path, typer.Option("--out", help="new folder to write the backup into")]
From = Annotated[Path, typer.Option("--from", help="a backup folder (with manifest.json)")]


class _Bar:
    """Progress of long copies on the console: one line per file, in pages or blobs."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, name: str, done: int, total: int) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
        self.progress.update(self.tasks[name], completed=done, total=total)


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        console=console,
        transient=True,
    )


def _summary(manifest: backup.Manifest, where: Path) -> None:
    heights = (
        f"chain height {manifest.chain_height}"
        if manifest.kind == "node"
        else f"vault synced to height {manifest.synced_height}"
    )
    versions = ", ".join(f"{k} v{v}" for k, v in sorted(manifest.schema_versions.items()))
    console.print(f"{len(manifest.files)} files in {where}; {heights}; schemas: {versions}")


def backup_command(
    home: Home = DEFAULT_HOME,
    out: Out = Path("backup"),
    with_cometbft_data: Annotated[
        bool,
        typer.Option(help="also CometBFT's block store and state (only with CometBFT stopped)"),
    ] = False,
) -> None:
    """Back up a node home while the node runs: its chain DB (one committed height),
    genesis, operators, keystores and certificates, with an SM3 manifest. The backup
    is as secret as the home (keystores, the CA key). A validator's signing key is
    never copied: keep it offline yourself. A CometBFT node restored without its
    CometBFT data cannot start on CometBFT 0.38 (docs/operations.md)."""
    try:
        with _bar() as progress:
            manifest = backup.backup_node(home, out, _Bar(progress), with_cometbft_data)
    except backup.BackupError as e:
        fail(str(e), "check --home and use a new --out folder")
    _summary(manifest, out)


def restore_command(source: From, home: Home = DEFAULT_HOME) -> None:
    """Check a node backup against its manifest, then restore it into a new home; start
    it with `medchain node --home` (it goes on from the backup's height)."""
    try:
        with _bar() as progress:
            manifest = backup.restore(source, home, "node", _Bar(progress))
    except backup.BackupError as e:
        fail(str(e), "nothing was restored")
    _summary(manifest, home)


VaultDir = Annotated[
    Path, typer.Option("--vault-dir", help="the edge's vault directory (<home>/vaults/<org_id>)")
]


@edge_app.command("backup")
def edge_backup(vault_dir: VaultDir, out: Out = Path("edge-backup")) -> None:
    """Back up an edge's vault directory while the edge runs: its databases, the blobs
    they name and the wrapped key-encryption key, with an SM3 manifest. The backup
    holds every record it names until it is destroyed: keep it encrypted."""
    try:
        with _bar() as progress:
            manifest = backup.backup_edge(vault_dir, out, _Bar(progress))
    except backup.BackupError as e:
        fail(str(e), "check --vault-dir and use a new --out folder")
    _summary(manifest, out)
    if manifest.missing_blobs:
        console.print(f"{len(manifest.missing_blobs)} blobs were erased during the backup")


@edge_app.command("restore")
def edge_restore(
    source: From, vault_dir: VaultDir, key: Key, home: Home = DEFAULT_HOME, node: NodeUrls = None
) -> None:
    """Restore an edge backup into --vault-dir (which must not exist), then follow the
    chain from the backup's synced height so that every record erased since is erased
    again before anything serves the vault; then start `medchain edge serve
    --vault-dir` on it. --key (in <home>'s keystore) must be the key the vault was made
    for, and the node (--node) must answer: without the chain the erasures are unknown,
    and nothing is left restored."""
    from medchain.edge.custodian import EdgeError
    from medchain.node.vaults import open_org_edge, opens_with

    signer = load_key(home, key)
    try:
        with _bar() as progress:
            manifest = backup.restore(source, vault_dir, "edge", _Bar(progress))
    except backup.BackupError as e:
        fail(str(e), "nothing was restored")
    _summary(manifest, vault_dir)
    try:
        if not opens_with(vault_dir, signer):
            raise EdgeError(f"the backup's vault was not made for the key {key!r}")
        edge, _ = open_org_edge(
            home, signer, node or [DEFAULT_URL], key, default_client_tls(), vault_dir
        )
        purged = edge.sync()
        edge.vault.close()
    except (ClientError, EdgeError) as e:
        shutil.rmtree(vault_dir)  # never left behind with erased records in it
        fail(f"{e}; nothing was restored", getattr(e, "hint", "") or "check --key and --node")
    console.print(f"re-applied {purged} erasures the chain recorded since the backup")


def register(app: typer.Typer) -> None:
    """Add `medchain backup` and `medchain restore` (the edge's are on `medchain edge`)."""
    app.command("backup")(backup_command)
    app.command("restore")(restore_command)
