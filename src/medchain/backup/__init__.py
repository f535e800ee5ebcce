"""Online backups of a node's and an edge's files, and restoring them.

A backup is a directory: a copy of each SQLite database taken with SQLite's backup
API inside one read transaction (so it is one committed state even while the node
writes: a chain DB copy ends at a committed height, never between two), the plain
files beside them (genesis, keystores, certificates, the vault's wrapped KEK), the
ciphertext blobs the copied vault names (copied after its snapshot: a blob is written
before the row naming it, so every one is there unless erased meanwhile), and
`manifest.json`: the SM3 of every file, the chain height, the vault's synced height
and every database's schema version. `restore` checks each file against the
manifest before it writes anything, into a home that must not exist yet.

What a backup holds is as secret as the home it came from: the keystores (encrypted
under their passphrase) and the vault's key-encryption key (SM2-wrapped for the
custodian) are in it. An edge restored from a backup is behind the chain: it must
re-apply the erasures recorded since (CustodianEdge.sync does, from the vault's
synced height) before it serves; `medchain edge restore` runs that sync.

Layer: backup. Imports encoding, crypto (SM3), files and exceptions only: it reads
the databases with sqlite3 itself; the CLI chooses the files and runs the sync.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medchain import crypto, encoding
from medchain.exceptions import MedChainError
from medchain.files import make_durable

FORMAT = "medchain-backup/1"
MANIFEST = "manifest.json"
PAGES_PER_STEP = 4096  # SQLite pages copied between progress reports (16 MiB at 4 KiB)
READ_CHUNK = 1 << 20
# Where a home keeps its chain DB: solo (data/), `medchain node --engine cometbft`
# (cometbft/medchain/), a localnet node (medchain/) and `medchain abci` (the home).
CHAIN_DB_PLACES = ("data/chain.db", "cometbft/medchain/chain.db", "medchain/chain.db", "chain.db")
# Plain files and folders of a node home worth keeping. Left out on purpose: CometBFT's
# data (block sync fetches it again), state-sync snapshots (made again), the edge (its
# own backup) and a validator's signing key and state (priv_validator_*.json): a second
# copy of a validator's key that signs is a double-signing fault; keep it offline.
NODE_FILES = ("genesis.json", "operators.json", "keys", "tls", "config", "cometbft/config")
# An edge's databases (under its vault folder) and its plain files; blobs come apart.
EDGE_DATABASES = (
    "vault.db",
    "audit-log.db",
    "mllp.db",
    "smart-jtis.db",
    "epcis/documents.db",
)
EDGE_FILES = ("kek.sm2", "epcis/kek.sm2", "epcis/blobs")
NEVER_COPIED = ("priv_validator_key.json", "priv_validator_state.json")

Progress = Callable[[str, int, int], None]  # (file, done, total) in pages or bytes


class BackupError(MedChainError):
    """A backup could not be made or restored; the message says which file and why."""


@dataclass(frozen=True)
class Manifest:
    """What a backup holds: per file its SM3 and size; the chain height, the vault's
    synced height and schema versions of the databases."""

    kind: str  # "node" or "edge"
    files: dict[str, dict[str, Any]]
    chain_height: int | None
    synced_height: int | None
    schema_versions: dict[str, int]
    missing_blobs: tuple[str, ...] = ()  # erased between the vault's snapshot and its copy

    def to_json(self) -> str:
        """The manifest as written to manifest.json."""
        return json.dumps(
            {
                "format": FORMAT,
                "kind": self.kind,
                "chain_height": self.chain_height,
                "synced_height": self.synced_height,
                "schema_versions": self.schema_versions,
                "files": self.files,
                "missing_blobs": list(self.missing_blobs),
            },
            indent=2,
            sort_keys=True,
        )


def _quiet(_file: str, _done: int, _total: int) -> None:
    return None


def copy_database(src: Path, dst: Path, progress: Progress = _quiet) -> int:
    """Copy a live SQLite database (WAL) to `dst` with the backup API, all of it from one
    read transaction: the copy is one committed state however much is written
    meanwhile. Returns the copy's schema version."""
    if not src.is_file():
        raise BackupError(f"no database at {src}")
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    source = sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    target = sqlite3.connect(dst, isolation_level=None)
    try:
        source.execute("PRAGMA busy_timeout=10000")
        source.execute("BEGIN")
        source.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # pins the snapshot

        def report(_status: int, remaining: int, total: int) -> None:
            progress(dst.name, total - remaining, total)

        source.backup(target, pages=PAGES_PER_STEP, progress=report)
        source.execute("COMMIT")
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        os.chmod(dst, 0o600)
        return int(target.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as e:
        raise BackupError(f"backup of {src} failed: {e}") from e
    finally:
        source.close()
        target.close()


def file_sm3(path: Path) -> str:
    """SM3 of a file's bytes, read a megabyte at a time (hex)."""

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while chunk := f.read(READ_CHUNK):
                yield chunk

    return crypto.sm3_chunks(chunks()).hex()


def _copy_file(src: Path, dst: Path) -> None:
    """Copy readable by the owner only: a backup holds keystores and the wrapped KEK."""
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o600)


def _plain_files(root: Path, names: tuple[str, ...]) -> Iterator[Path]:
    """Regular files under root named by `names` (a file or a folder), relative."""
    for name in names:
        path = root / name
        if path.is_file():
            yield Path(name)
        elif path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.is_file() and found.name not in NEVER_COPIED:
                    yield found.relative_to(root)


def find_chain_db(home: Path) -> Path:
    """The chain database of a node home (solo, CometBFT node or ABCI app)."""
    for place in CHAIN_DB_PLACES:
        if (home / place).is_file():
            return Path(place)
    raise BackupError(f"no chain database under {home} (looked at {', '.join(CHAIN_DB_PLACES)})")


def _chain_height(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT value FROM meta WHERE name = 'height'").fetchone()
    finally:
        conn.close()
    return -1 if row is None else int(encoding.decode(bytes(row[0])))


def _start(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty: back up into a new folder")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)


def _finish(out: Path, manifest: Manifest) -> Manifest:
    (out / MANIFEST).write_text(manifest.to_json())
    make_durable(out, [out / MANIFEST])
    return manifest


def _entry(out: Path, relative: Path) -> dict[str, Any]:
    path = out / relative
    return {"sm3": file_sm3(path), "size": path.stat().st_size}


def cometbft_data(home: Path) -> Path:
    """CometBFT's data folder of a node home (a localnet node's or `node --engine
    cometbft`'s), relative; BackupError if it has none."""
    for place in ("data", "cometbft/data"):
        if (home / place / "blockstore.db").is_dir():
            return Path(place)
    raise BackupError(f"no CometBFT data under {home}")


def _refuse_running(data: Path) -> None:
    """CometBFT's databases (goleveldb) cannot be copied while it writes them: it holds
    an exclusive flock on each database's LOCK file while it runs."""
    for lock in sorted(data.glob("*.db/LOCK")):
        with open(lock, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BackupError(
                    f"CometBFT is running ({lock} is locked): stop the node to copy its data"
                ) from None
            fcntl.flock(f, fcntl.LOCK_UN)


def backup_node(
    home: Path, out: Path, progress: Progress = _quiet, with_cometbft_data: bool = False
) -> Manifest:
    """Back up a node home (running or not) into the new folder `out`. With
    `with_cometbft_data`, CometBFT's data folder as well (its block store and state, so
    a restored CometBFT node starts where the app is): only while CometBFT is stopped."""
    chain_db = find_chain_db(home)
    data = cometbft_data(home) if with_cometbft_data else None
    if data is not None:
        _refuse_running(home / data)
    _start(out)
    version = copy_database(home / chain_db, out / chain_db, progress)
    files = {str(chain_db): _entry(out, chain_db)}
    extra = () if data is None else (str(data),)
    for relative in _plain_files(home, NODE_FILES + extra):
        _copy_file(home / relative, out / relative)
        files[str(relative)] = _entry(out, relative)
    manifest = Manifest(
        "node", files, _chain_height(out / chain_db), None, {str(chain_db): version}
    )
    return _finish(out, manifest)


def _vault_blobs(vault_db: Path) -> list[str]:
    """The blob and pack files a vault database names."""
    conn = sqlite3.connect(vault_db)
    try:
        loose = conn.execute(
            "SELECT cid FROM records WHERE cid NOT IN (SELECT cid FROM packed_blobs)"
        ).fetchall()
        packs = conn.execute("SELECT DISTINCT pack FROM packed_blobs").fetchall()
    finally:
        conn.close()
    return sorted(str(row[0]) for row in loose + packs)


def backup_edge(vault_root: Path, out: Path, progress: Progress = _quiet) -> Manifest:
    """Back up an edge's vault folder (running or not) into the new folder `out`: its
    databases first, then the blobs the vault snapshot names. A blob erased between
    the two is listed under `missing` in the manifest; the restore's sync erases
    its record again."""
    if not (vault_root / "vault.db").is_file():
        raise BackupError(f"no vault at {vault_root}")
    _start(out)
    files: dict[str, dict[str, Any]] = {}
    versions: dict[str, int] = {}
    for name in EDGE_DATABASES:
        if (vault_root / name).is_file():
            versions[name] = copy_database(vault_root / name, out / name, progress)
            files[name] = _entry(out, Path(name))
    missing: list[str] = []
    blobs = _vault_blobs(out / "vault.db")
    for done, blob in enumerate(blobs, 1):
        relative = Path("blobs") / blob
        try:
            _copy_file(vault_root / relative, out / relative)
        except FileNotFoundError:
            missing.append(blob)
            continue
        files[str(relative)] = _entry(out, relative)
        progress("blobs", done, len(blobs))
    (out / "blobs").mkdir(exist_ok=True)
    for relative in _plain_files(vault_root, EDGE_FILES):
        _copy_file(vault_root / relative, out / relative)
        files[str(relative)] = _entry(out, relative)
    conn = sqlite3.connect(out / "vault.db")
    try:
        row = conn.execute("SELECT value FROM meta WHERE name = 'synced_height'").fetchone()
    finally:
        conn.close()
    synced = None if row is None else int(row[0])
    manifest = Manifest("edge", files, None, synced, versions, tuple(missing))
    return _finish(out, manifest)


def read_manifest(backup: Path) -> Manifest:
    """The manifest of a backup folder; BackupError if absent or not a backup's."""
    try:
        doc = json.loads((backup / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise BackupError(f"{backup} has no readable {MANIFEST}: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BackupError(f"{backup / MANIFEST} is not a {FORMAT} manifest")
    try:
        return Manifest(
            str(doc["kind"]),
            dict(doc["files"]),
            doc["chain_height"],
            doc["synced_height"],
            dict(doc["schema_versions"]),
            tuple(doc.get("missing_blobs", ())),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise BackupError(f"{backup / MANIFEST} lacks {e}") from e


def verify(backup: Path) -> Manifest:
    """Check every file of a backup against its manifest (size and SM3); the manifest,
    or BackupError naming the first file that is missing, altered or not listed."""
    manifest = read_manifest(backup)
    listed = set(manifest.files)
    for name in sorted(listed):
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise BackupError(f"the manifest names a file outside the backup: {name!r}")
        path = backup / relative
        parts = relative.parts
        if any((backup / Path(*parts[:i])).is_symlink() for i in range(1, len(parts) + 1)):
            raise BackupError(f"{name} is a symbolic link in the backup: refused")
        if not path.is_file():
            raise BackupError(f"{name} is in the manifest but not in the backup")
        entry = manifest.files[name]
        if path.stat().st_size != entry["size"] or file_sm3(path) != entry["sm3"]:
            raise BackupError(f"{name} does not match its SM3 in the manifest: altered")
    extra = sorted(
        str(p.relative_to(backup))
        for p in backup.rglob("*")
        if p.is_file() and p.name != MANIFEST and str(p.relative_to(backup)) not in listed
    )
    if extra:
        raise BackupError(f"files not in the manifest: {', '.join(extra[:5])}")
    return manifest


def restore(backup: Path, target: Path, kind: str, progress: Progress = _quiet) -> Manifest:
    """Verify a backup, then copy it into `target`, which must not exist (a node home
    for kind "node", a vault folder for "edge"). Nothing is written if a check fails."""
    manifest = verify(backup)
    if manifest.kind != kind:
        raise BackupError(f"{backup} is a {manifest.kind} backup, not a {kind} backup")
    if target.exists():
        raise BackupError(f"{target} exists: restore into a new folder")
    staging = target.with_name(target.name + ".restoring")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(mode=0o700, parents=True)
    names = sorted(manifest.files)
    for done, name in enumerate(names, 1):
        _copy_file(backup / name, staging / name)
        progress(name, done, len(names))
    if kind == "edge":
        (staging / "blobs").mkdir(exist_ok=True)
    make_durable(staging, [])
    os.rename(staging, target)
    make_durable(target.parent, [])
    return manifest
