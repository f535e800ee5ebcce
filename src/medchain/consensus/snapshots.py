"""State sync: snapshots of committed state, served to and restored by new nodes.

A node with snapshots on writes one every `interval` heights, after Commit, on a
background thread that reads one pinned committed height (so consensus is not held
up), and keeps the `keep` newest. A snapshot (format 1) is the whole state as
sorted (key, value) pairs cut into chunks of about `chunk_bytes` (each chunk is a
canonical CBOR list of pairs, so it decodes on its own), plus metadata: height, app
hash, the results root the app hash also commits to, the last block's hash and
time, the key count and every chunk's SHA-256. The snapshot hash is SHA-256 over
the chunk hashes.

A joining node (`Restore`) takes only format 1, and only a snapshot whose app hash
is the one CometBFT's light client verified for that height. Each chunk is checked
against its hash in the metadata before it is decoded; a chunk that does not match
is fetched again from another peer and its sender rejected. After the last chunk
the state tree is rebuilt from the pairs and the app hash recomputed; only if it
equals the verified one is anything written (one transaction), otherwise the
snapshot is rejected, the peers that sent its chunks are rejected with it, and the
database stays empty. Until then the pairs are held in memory: a restore is charged
what it will cost at its peak (the pairs and the tree built from them, measured
about RESTORE_BYTES_PER_KEY bytes a key besides the keys' and values' own bytes)
against a cap the operator sets (`max_bytes`, default DEFAULT_MAX_RESTORE_BYTES). An
offer whose metadata key count is over the cap is refused before any chunk is
fetched, and a snapshot is rejected as soon as its chunks hold more pairs than its
metadata said or more bytes than the cap.

What the metadata carries besides the state is not covered by the app hash: the
last block's MedChain hash (the next block's prev_hash) and its time. Nothing a
joining node holds lets it check them (the block hash chains back to genesis over
blocks it never receives), so a node restored from a snapshot says so wherever it
shows them (the gateway's /v1/status, see docs/cometbft.md). The projections
(e.g. supply units) are rebuilt from the restored state.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from medchain import encoding
from medchain.core.block import compute_app_hash
from medchain.core.execution import GENESIS_KEY
from medchain.core.smt import EMPTY, SparseMerkleTree
from medchain.exceptions import InternalError, MedChainError
from medchain.files import make_durable
from medchain.storage.chain_db import ChainDB, StateExport

log = logging.getLogger("medchain.snapshots")

FORMAT = 1
HASH_DOMAIN = b"medchain/snapshot/v1"
CHUNK_BYTES = 1 << 20  # target chunk size; CometBFT's limit is 16 MB
MAX_CHUNK_BYTES = 16 << 20  # larger chunks from a peer are refused unread
MAX_METADATA_BYTES = 1 << 20
# Each chunk hash takes 34 bytes of metadata CBOR (a 2-byte header and 32 bytes):
# this many fit in MAX_METADATA_BYTES with room for the other fields.
MAX_CHUNKS = 30_000
# A restore holds the state in memory until its app hash is checked. What a key
# costs at the peak (building the tree), besides its key and value bytes: measured
# about 1,200 bytes with tracemalloc (a pair held ~150, the tree's nodes the rest).
RESTORE_BYTES_PER_KEY = 1_300
DEFAULT_MAX_RESTORE_BYTES = 1 << 30  # about 800,000 keys; the operator may raise it
DEFAULT_INTERVAL = 1000
DEFAULT_KEEP = 3
METADATA_FILE = "metadata.cbor"


class BadSnapshot(MedChainError, ValueError):
    """A snapshot's metadata or a chunk, from a peer, is not what format 1 allows."""


def snapshot_hash(chunk_hashes: Sequence[bytes]) -> bytes:
    """The snapshot's hash: SHA-256 over its chunk hashes, in order."""
    return hashlib.sha256(HASH_DOMAIN + b"".join(chunk_hashes)).digest()


def chunk_hash(chunk: bytes) -> bytes:
    """SHA-256 of one chunk's bytes."""
    return hashlib.sha256(chunk).digest()


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot as ListSnapshots and OfferSnapshot describe it."""

    height: int
    format: int
    chunks: int
    hash: bytes
    metadata: bytes


@dataclass(frozen=True)
class Metadata:
    """The decoded, type-checked metadata of a format-1 snapshot."""

    height: int
    app_hash: bytes
    results_root: bytes
    time_ms: int
    block_hash: bytes
    keys: int
    chunk_hashes: tuple[bytes, ...]

    def encode(self) -> bytes:
        """Canonical CBOR, as carried in the Snapshot's metadata field."""
        return encoding.encode(
            {
                "format": FORMAT,
                "height": self.height,
                "app_hash": self.app_hash,
                "results_root": self.results_root,
                "time_ms": self.time_ms,
                "block_hash": self.block_hash,
                "keys": self.keys,
                "chunk_hashes": list(self.chunk_hashes),
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Metadata:
        """Metadata from a peer: BadSnapshot unless every field has its type and size."""
        if len(raw) > MAX_METADATA_BYTES:
            raise BadSnapshot(f"metadata of {len(raw)} bytes (limit {MAX_METADATA_BYTES})")
        try:
            d = encoding.decode(raw)
        except encoding.DecodeError as e:
            raise BadSnapshot(f"metadata is not canonical CBOR: {e}") from e
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise BadSnapshot("metadata is not a format-1 map")
        ints = ("height", "time_ms", "keys")
        hashes = ("app_hash", "results_root", "block_hash")
        if not all(type(d.get(k)) is int and d[k] >= 0 for k in ints):
            raise BadSnapshot(f"metadata fields {ints} must be non-negative integers")
        if not all(isinstance(d.get(k), bytes) and len(d[k]) == 32 for k in hashes):
            raise BadSnapshot(f"metadata fields {hashes} must be 32-byte hashes")
        chunks = d.get("chunk_hashes")
        if (
            not isinstance(chunks, list)
            or not 0 < len(chunks) <= MAX_CHUNKS
            or not all(isinstance(h, bytes) and len(h) == 32 for h in chunks)
        ):
            raise BadSnapshot(f"chunk_hashes must be 1 to {MAX_CHUNKS} SHA-256 hashes")
        return cls(
            d["height"],
            d["app_hash"],
            d["results_root"],
            d["time_ms"],
            d["block_hash"],
            d["keys"],
            tuple(chunks),
        )


def cut_chunks(items: Iterable[tuple[str, bytes]], chunk_bytes: int) -> Iterator[bytes]:
    """Sorted (key, value) pairs as chunks of about `chunk_bytes` (a chunk closes once
    it reaches the size), each a canonical CBOR list of [key, value]; at least one."""
    batch: list[list[Any]] = []
    size, cut = 0, False
    for key, value in items:
        batch.append([key, value])
        size += len(key) + len(value) + 8
        if size >= chunk_bytes:
            yield encoding.encode(batch)
            batch, size, cut = [], 0, True
    if batch or not cut:
        yield encoding.encode(batch)


def decode_chunk(chunk: bytes, after: str | None) -> list[tuple[str, bytes]]:
    """A chunk's pairs: BadSnapshot unless a canonical list of [str, bytes] pairs with
    keys strictly ascending and after `after` (the previous chunk's last key)."""
    try:
        pairs = encoding.decode(chunk)
    except encoding.DecodeError as e:
        raise BadSnapshot(f"chunk is not canonical CBOR: {e}") from e
    if not isinstance(pairs, list):
        raise BadSnapshot("chunk is not a list of pairs")
    out: list[tuple[str, bytes]] = []
    last = after
    for pair in pairs:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not isinstance(pair[0], str)
            or not isinstance(pair[1], bytes)
        ):
            raise BadSnapshot("chunk entry is not a [key, value] pair")
        if last is not None and pair[0] <= last:
            raise BadSnapshot(f"chunk keys out of order at {pair[0]!r}")
        last = pair[0]
        out.append((pair[0], pair[1]))
    return out


class SnapshotStore:
    """Snapshots on disk under `root/<height>/`: chunk files and metadata, the
    metadata written last (a directory without it is unfinished and ignored)."""

    def __init__(
        self,
        root: Path,
        interval: int = DEFAULT_INTERVAL,
        keep: int = DEFAULT_KEEP,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        if interval < 1 or keep < 1 or not 0 < chunk_bytes <= MAX_CHUNK_BYTES // 2:
            raise ValueError("snapshot interval and keep must be ≥ 1, chunk size 1 B to 8 MB")
        self.root = root
        self.interval = interval
        self.keep = keep
        self.chunk_bytes = chunk_bytes
        self._busy = threading.Lock()
        self._worker: threading.Thread | None = None
        root.mkdir(parents=True, exist_ok=True)

    def after_commit(self, db: ChainDB) -> None:
        """Called after every Commit: at a multiple of the interval, pin the committed
        height now and write its snapshot on a background thread (skipped, with a log
        line, while the previous one is still being written)."""
        height = db.height
        if height <= 0 or height % self.interval:
            return
        if not self._busy.acquire(blocking=False):
            log.warning("snapshot at height %d skipped: the previous one is still running", height)
            return
        try:
            export = db.open_export()
        except BaseException:
            self._busy.release()
            raise
        self._worker = threading.Thread(
            target=self._write_and_release, args=(export,), name="snapshot", daemon=True
        )
        self._worker.start()

    def wait(self, timeout: float = 60.0) -> None:
        """Wait for a snapshot being written (tests and benchmarks)."""
        if self._worker is not None:
            self._worker.join(timeout)

    def _write_and_release(self, export: StateExport) -> None:
        try:
            self.write(export)
            self.prune()
        except Exception as e:  # a failed snapshot must not stop the node
            log.error("snapshot at height %d failed: %s", export.height, e)
        finally:
            export.close()
            self._busy.release()

    def write(self, export: StateExport) -> SnapshotInfo:
        """Write the snapshot of a pinned height; returns what ListSnapshots offers."""
        if export.roots is None:
            raise InternalError(f"no roots stored for height {export.height}")
        started = time.monotonic()
        final = self.root / str(export.height)
        temp = self.root / f".{export.height}.tmp"
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir()
        hashes: list[bytes] = []
        keys = 0

        def counted() -> Iterator[tuple[str, bytes]]:
            nonlocal keys
            for pair in export.items():
                keys += 1
                yield pair

        written: list[Path] = []
        for i, chunk in enumerate(cut_chunks(counted(), self.chunk_bytes)):
            if i >= MAX_CHUNKS:
                raise InternalError(
                    f"snapshot at height {export.height} needs over {MAX_CHUNKS} chunks: "
                    "raise the chunk size"
                )
            written.append(temp / f"chunk-{i:06d}")
            written[-1].write_bytes(chunk)
            hashes.append(chunk_hash(chunk))
        roots = export.roots
        meta = Metadata(
            export.height,
            roots["app_hash"],
            roots["results_root"],
            roots["time_ms"],
            export.block_hash,
            keys,
            tuple(hashes),
        )
        written.append(temp / METADATA_FILE)
        written[-1].write_bytes(meta.encode())
        # Chunks and metadata reach the disk before the rename makes the snapshot
        # finished, and the rename before it is offered: after a power loss a
        # snapshot is either whole or ignored (an unfinished .tmp is pruned).
        make_durable(temp, written)
        shutil.rmtree(final, ignore_errors=True)
        temp.rename(final)
        make_durable(self.root, [])
        log.info(
            "snapshot at height %d: %d keys, %d bytes in %d chunks, written in %.3f s",
            export.height,
            keys,
            sum(f.stat().st_size for f in final.iterdir()),
            len(hashes),
            time.monotonic() - started,
        )
        return self._info(meta)

    @staticmethod
    def _info(meta: Metadata) -> SnapshotInfo:
        return SnapshotInfo(
            meta.height,
            FORMAT,
            len(meta.chunk_hashes),
            snapshot_hash(meta.chunk_hashes),
            meta.encode(),
        )

    def heights(self) -> list[int]:
        """Heights of the finished snapshots on disk, newest first."""
        found = []
        for path in self.root.iterdir():
            if path.name.isdigit() and (path / METADATA_FILE).exists():
                found.append(int(path.name))
        return sorted(found, reverse=True)

    def list(self) -> list[SnapshotInfo]:
        """The finished snapshots, newest first."""
        out = []
        for height in self.heights():
            try:
                raw = (self.root / str(height) / METADATA_FILE).read_bytes()
                out.append(self._info(Metadata.decode(raw)))
            except (OSError, BadSnapshot) as e:
                log.warning("snapshot at height %d unreadable, not offered: %s", height, e)
        return out

    def chunk(self, height: int, format_: int, index: int) -> bytes:
        """One chunk's bytes; empty when this node does not have it (pruned meanwhile)."""
        if format_ != FORMAT or index < 0:
            return b""
        try:
            return (self.root / str(height) / f"chunk-{index:06d}").read_bytes()
        except OSError:
            return b""

    def prune(self) -> None:
        """Delete all but the `keep` newest snapshots, and any left unfinished (a node
        killed while writing one)."""
        for path in self.root.glob(".*.tmp"):
            shutil.rmtree(path, ignore_errors=True)
        for height in self.heights()[self.keep :]:
            shutil.rmtree(self.root / str(height), ignore_errors=True)
            log.info("snapshot at height %d pruned", height)


class ChunkOutcome(Enum):
    """What ApplySnapshotChunk answers CometBFT."""

    ACCEPT = "accept"
    RETRY = "retry"  # refetch this chunk from another peer, reject its sender
    REFETCH = "refetch"  # fetch this chunk again; its sender did nothing wrong
    REJECT_SNAPSHOT = "reject_snapshot"
    REJECT_SENDERS = "reject_senders"  # the snapshot, and every peer that sent a chunk
    ABORT = "abort"


@dataclass(frozen=True)
class Restored:
    """A snapshot written into the database: its height and app hash."""

    height: int
    app_hash: bytes


class Restore:
    """One state sync attempt: the offered snapshot, the chunks so far, the result."""

    def __init__(
        self,
        db: ChainDB,
        offered: SnapshotInfo,
        verified_app_hash: bytes,
        max_bytes: int = DEFAULT_MAX_RESTORE_BYTES,
    ) -> None:
        """Check an offer: BadSnapshot when its format, metadata, hash or app hash do
        not fit, or its key count would cost more than `max_bytes` of memory (the
        snapshot is refused and CometBFT tries another)."""
        if offered.format != FORMAT:
            raise BadSnapshot(f"format {offered.format} (this node knows {FORMAT})")
        meta = Metadata.decode(offered.metadata)
        if meta.height != offered.height or len(meta.chunk_hashes) != offered.chunks:
            raise BadSnapshot("metadata height or chunk count differs from the snapshot's")
        if snapshot_hash(meta.chunk_hashes) != offered.hash:
            raise BadSnapshot("snapshot hash is not the hash of the metadata's chunk hashes")
        if meta.app_hash != verified_app_hash:
            raise BadSnapshot(
                f"metadata app hash {meta.app_hash.hex()} is not the light-client-verified "
                f"{verified_app_hash.hex()} of height {meta.height}"
            )
        if meta.keys * RESTORE_BYTES_PER_KEY > max_bytes:
            raise BadSnapshot(
                f"{meta.keys} keys would take about {meta.keys * RESTORE_BYTES_PER_KEY} bytes "
                f"of memory to restore, over this node's {max_bytes}: raise the state sync "
                "memory cap (medchain abci --state-sync-max-bytes) if the node has it"
            )
        self.db = db
        self.meta = meta
        self.verified_app_hash = verified_app_hash
        self.max_bytes = max_bytes
        self.next_index = 0
        self._items: list[tuple[str, bytes]] = []
        self._cost = 0
        # Who sent the chunks applied so far: all are rejected if the state they make
        # up does not hash to the verified app hash.
        self.senders: list[str] = []
        self.restored: Restored | None = None

    def apply(self, index: int, chunk: bytes, sender: str) -> ChunkOutcome:
        """Check and keep one chunk; after the last, verify and write the state."""
        meta = self.meta
        if index != self.next_index:
            if index < self.next_index:
                return ChunkOutcome.ACCEPT  # a chunk applied before, sent again
            log.warning("state sync: chunk %d arrived before chunk %d", index, self.next_index)
            return ChunkOutcome.REFETCH
        if len(chunk) > MAX_CHUNK_BYTES or chunk_hash(chunk) != meta.chunk_hashes[index]:
            log.warning(
                "state sync: refused chunk %d of snapshot %d from peer %s: %s",
                index,
                meta.height,
                sender or "?",
                f"{len(chunk)} bytes, over the limit"
                if len(chunk) > MAX_CHUNK_BYTES
                else "its hash is not the one in the snapshot's metadata",
            )
            return ChunkOutcome.RETRY
        if sender and sender not in self.senders:
            self.senders.append(sender)
        try:
            after = self._items[-1][0] if self._items else None
            pairs = decode_chunk(chunk, after)
            if len(self._items) + len(pairs) > meta.keys:
                raise BadSnapshot(f"more pairs than the {meta.keys} keys its metadata names")
            self._cost += sum(len(k) + len(v) + RESTORE_BYTES_PER_KEY for k, v in pairs)
            if self._cost > self.max_bytes:
                raise BadSnapshot(
                    f"restoring it would take over this node's {self.max_bytes} bytes of memory"
                )
            self._items.extend(pairs)
        except BadSnapshot as e:  # the hash matched: the snapshot itself is bad
            log.warning("state sync: snapshot %d rejected, chunk %d: %s", meta.height, index, e)
            self._items = []
            return ChunkOutcome.REJECT_SNAPSHOT
        self.next_index += 1
        if self.next_index < len(meta.chunk_hashes):
            return ChunkOutcome.ACCEPT
        return self._finish()

    def _finish(self) -> ChunkOutcome:
        meta, items = self.meta, self._items
        self._items = []
        if len(items) != meta.keys:
            log.warning(
                "state sync: snapshot %d has %d keys, its metadata says %d",
                meta.height,
                len(items),
                meta.keys,
            )
            return ChunkOutcome.REJECT_SNAPSHOT
        tree = SparseMerkleTree(lambda _: None)
        state_root = tree.update(EMPTY, dict(items))
        app_hash = compute_app_hash(meta.height, state_root, meta.results_root)
        if app_hash != self.verified_app_hash:
            log.warning(
                "state sync: snapshot %d rejected: its state hashes to app hash %s, the "
                "verified header says %s",
                meta.height,
                app_hash.hex(),
                self.verified_app_hash.hex(),
            )
            return ChunkOutcome.REJECT_SENDERS
        chain_id = _chain_id(items)
        if chain_id is None:
            log.warning("state sync: snapshot %d holds no genesis record", meta.height)
            return ChunkOutcome.REJECT_SNAPSHOT
        roots = {
            "height": meta.height,
            "state_root": state_root,
            "results_root": meta.results_root,
            "app_hash": app_hash,
            "time_ms": meta.time_ms,
        }
        try:
            self.db.restore_state(items, tree.created, roots, meta.block_hash, chain_id)
        except InternalError as e:
            log.error("state sync: %s", e)
            return ChunkOutcome.ABORT
        self.restored = Restored(meta.height, app_hash)
        log.info(
            "state sync: restored height %d (app hash %s, %d keys)",
            meta.height,
            app_hash.hex(),
            meta.keys,
        )
        return ChunkOutcome.ACCEPT


def _chain_id(items: Sequence[tuple[str, bytes]]) -> str | None:
    """The chain id from the restored state's genesis record (covered by the app hash)."""
    for key, value in items:
        if key == GENESIS_KEY:
            try:
                record = encoding.decode(value)
            except encoding.DecodeError:
                return None
            chain_id = record.get("chain_id") if isinstance(record, dict) else None
            return chain_id if isinstance(chain_id, str) else None
    return None
