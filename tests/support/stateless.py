"""Apply one action with a state that fails the test if it is touched: proof that a
payload is refused (or accepted) before the handler reads anything."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from medchain.contracts.base import ActionHandler
from medchain.core.context import Context, Signer
from medchain.core.tx import Envelope, SignedTx


class UntouchableState:
    """A state view whose every read or write is a test failure."""

    def get(self, key: str) -> bytes | None:
        raise AssertionError(f"state read {key!r} before the payload was validated")

    def scan(self, prefix: str, limit: int = 1000) -> Iterator[tuple[str, bytes]]:
        raise AssertionError(f"state scan {prefix!r} before the payload was validated")

    def set(self, key: str, value: bytes) -> None:
        raise AssertionError(f"state write {key!r} before the payload was validated")

    def delete(self, key: str) -> None:
        raise AssertionError(f"state delete {key!r} before the payload was validated")


def apply_without_state(handler: ActionHandler, action: str, payload: dict[str, Any]) -> None:
    """Run `handler.apply` for `action` with `payload` against an untouchable state."""
    envelope = Envelope("test", handler.namespace, 1, action, payload, b"\x02" * 33, 0, "sm")
    tx = SignedTx(envelope, b"", b"", b"", b"\x00" * 32)
    signer = Signer(b"\x00" * 20, b"\x02" * 33, "sm", "did:medchain:nobody")
    ctx = Context(UntouchableState(), handler.namespace, "test", 1, 1, b"\x00" * 32, signer)  # type: ignore[arg-type]
    handler.apply(tx, ctx)
