"""State as a key-value view with per-transaction rollback.

Keys are text, namespaced `<contract>/<...>`; values are canonical CBOR bytes.
The committed state lives below, behind the StateReader protocol (SQLite in
storage/); core only sees the protocol, so it stays free of I/O choices.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from medchain.exceptions import InternalError

MAX_KEY_BYTES = 512


class StateReader(Protocol):
    """Read access to committed state."""

    def get(self, key: str) -> bytes | None:
        """The committed value of `key`, or None."""
        ...

    def scan(self, prefix: str, limit: int) -> Iterator[tuple[str, bytes]]:
        """Committed (key, value) pairs under `prefix`, in key order."""
        ...


class EmptyState:
    """A StateReader with nothing in it (genesis, tests)."""

    def get(self, key: str) -> bytes | None:
        """Nothing is stored: None."""
        return None

    def scan(self, prefix: str, limit: int) -> Iterator[tuple[str, bytes]]:
        """Nothing is stored: no pairs."""
        return iter(())


class StateView:
    """Pending writes of one block over committed state, with tx rollback.

    Reads see the current tx's writes, then the block's, then committed state.
    A deleted key is recorded as None so it hides the committed value.
    Committed values are remembered once read (absent ones too): a view lives
    over one committed height, and a tx reads the same identity and nonce
    keys several times (CheckTx, authentication, the handler).
    """

    def __init__(self, base: StateReader) -> None:
        self._base = base
        self._block: dict[str, bytes | None] = {}
        self._tx: dict[str, bytes | None] = {}
        self._read: dict[str, bytes | None] = {}

    def get(self, key: str) -> bytes | None:
        """The value as this tx sees it: its own writes, then the block's, then committed."""
        if key in self._tx:
            return self._tx[key]
        if key in self._block:
            return self._block[key]
        if key in self._read:
            return self._read[key]
        value = self._read[key] = self._base.get(key)
        return value

    def set(self, key: str, value: bytes) -> None:
        """Write `key` in the current tx (kept or rolled back with it)."""
        if len(key.encode()) > MAX_KEY_BYTES:
            # Contracts bound the ids they build keys from, so this is a contract bug.
            raise InternalError(f"state key longer than {MAX_KEY_BYTES} bytes")
        self._tx[key] = value

    def delete(self, key: str) -> None:
        """Delete `key` in the current tx; the None hides the committed value."""
        self._tx[key] = None

    def scan(self, prefix: str, limit: int) -> Iterator[tuple[str, bytes]]:
        """Merged view of pending and committed keys under `prefix`."""
        pending = {**self._block, **self._tx}
        merged: dict[str, bytes | None] = {}
        for k, v in self._base.scan(prefix, limit + len(pending)):
            merged[k] = v
        for k, pv in pending.items():
            if k.startswith(prefix):
                merged[k] = pv
        count = 0
        for k in sorted(merged):
            value = merged[k]
            if value is not None:
                yield k, value
                count += 1
                if count >= limit:
                    return

    def commit_tx(self) -> None:
        """Keep the current transaction's writes."""
        self._block.update(self._tx)
        self._tx.clear()

    def rollback_tx(self) -> None:
        """Drop the current transaction's writes."""
        self._tx.clear()

    @property
    def writes(self) -> Mapping[str, bytes | None]:
        """The block's committed-so-far write set (None = delete)."""
        return self._block
