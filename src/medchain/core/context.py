"""What a contract handler sees of the world: the Context.

A handler reads any namespace but writes only its own, gets the block's
height and time (never the wall clock), the authenticated signer, and emits
events. Values are plain CBOR-able data; the Context encodes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

from medchain import encoding
from medchain.core.state import MAX_KEY_BYTES, StateView
from medchain.exceptions import Code, InternalError, InvalidTransaction


@dataclass(frozen=True)
class Signer:
    """The authenticated sender of a transaction."""

    key_id: bytes
    public_key: bytes
    suite: str
    did: str | None  # None: a key not yet registered (self-registration)


@dataclass(frozen=True)
class Event:
    """Something that happened, for indexers, edges and auditors."""

    type: str
    attributes: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        """The event as stored and answered: attributes as a map."""
        return {"type": self.type, "attributes": dict(self.attributes)}


@dataclass
class Context:
    """A handler's window on state for one transaction."""

    state: StateView
    namespace: str
    chain_id: str
    height: int
    time_ms: int
    tx_id: bytes
    signer: Signer
    events: list[Event] = field(default_factory=list)
    nonce: int = 0  # the tx's envelope nonce (identity.rotate_key's proof signs it)

    def get(self, key: str) -> Any:
        """Decoded value at `key` (any namespace), or None."""
        raw = self.state.get(key)
        if raw is None:
            return None
        try:
            return encoding.decode(raw)
        except encoding.DecodeError as e:
            raise InternalError(f"stored value at {key!r} is corrupt: {e}") from e

    def require(self, key: str, what: str) -> Any:
        """Decoded value at `key`; NOT_FOUND ("no <what>") if there is none."""
        value = self.get(key)
        if value is None:
            raise InvalidTransaction(Code.NOT_FOUND, f"no {what}")
        return value

    def scan(self, prefix: str, limit: int = 1000) -> Iterator[tuple[str, Any]]:
        """Decoded (key, value) pairs under `prefix`, in key order."""
        for k, raw in self.state.scan(prefix, limit):
            yield k, encoding.decode(raw)

    def put(self, key: str, value: Any) -> None:
        """Write `value` at `key`; only inside this contract's namespace.

        Keys and values are built from payloads, so one too long or too deep
        is the sender's fault: INVALID_PAYLOAD, never an exception that would
        stop every validator on the same block.
        """
        self._check_namespace(key)
        if len(key.encode()) > MAX_KEY_BYTES:
            raise InvalidTransaction(
                Code.INVALID_PAYLOAD,
                f"an identifier in the payload makes a state key over {MAX_KEY_BYTES} bytes",
            )
        try:
            raw = encoding.encode(value)
        except encoding.DecodeError as e:
            raise InvalidTransaction(Code.INVALID_PAYLOAD, f"value cannot be stored: {e}") from None
        self.state.set(key, raw)

    def delete(self, key: str) -> None:
        """Delete `key`; only inside this contract's namespace."""
        self._check_namespace(key)
        self.state.delete(key)

    def emit(self, event_type: str, **attributes: str) -> None:
        """Record an event; attributes are sorted so order never matters."""
        self.events.append(Event(event_type, tuple(sorted(attributes.items()))))

    def refuse(self, code: Code, message: str, event_type: str, **attributes: str) -> NoReturn:
        """Reject the tx, keeping one audit event of the refusal in its result."""
        event = Event(event_type, tuple(sorted(attributes.items())))
        raise InvalidTransaction(code, message, audit=(event,))

    def _check_namespace(self, key: str) -> None:
        if not key.startswith(self.namespace + "/"):
            raise InternalError(f"contract {self.namespace!r} may not write {key!r}")
