"""Typed contract actions for integrators: the payload type each (contract, action)
takes, and a payload checked against it before anything is signed.

Each action's payload type lives in its contract's payloads.py (a frozen msgspec
Struct, e.g. `medchain.contracts.consent.payloads.Grant`). Building one runs its
cross-field checks, but msgspec checks field types and constraints (patterns,
lengths, ranges) only when it decodes, so `checked_payload` converts the value to
what goes on chain and decodes it back with the contract's own strict decoder: a
payload that passes here is one the contract's payload check accepts too (state
checks such as "the grantee exists" remain the chain's).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import msgspec

from medchain.contracts.payload import Payload, decode_payload
from medchain.contracts.schemas import action_payloads
from medchain.exceptions import InvalidTransaction, MedChainError


class PayloadError(MedChainError):
    """A payload refused before signing; `code` says why (UNKNOWN_ACTION,
    WRONG_PAYLOAD_TYPE or INVALID_PAYLOAD), nothing was sent."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@cache
def _catalogue() -> dict[tuple[str, int], dict[str, type[Payload] | None]]:
    """The contracts' payload types, built once (every chain profile's registry)."""
    return action_payloads()


def type_name(kind: type[Any]) -> str:
    """`medchain.contracts.consent.payloads.Grant`: two contracts may both have a
    `SetRulePayload`, so errors name the module too."""
    return f"{kind.__module__}.{kind.__qualname__}"


def payload_type(contract: str, action: str, version: int = 1) -> type[Payload] | None:
    """The payload type of `contract.action` at `version` (None: the action takes an
    untyped map); PayloadError UNKNOWN_ACTION naming what exists otherwise."""
    catalogue = _catalogue()
    actions = catalogue.get((contract, version))
    if actions is None:
        known = ", ".join(f"{n} v{v}" for n, v in catalogue)
        raise PayloadError("UNKNOWN_ACTION", f"no contract {contract} v{version}; known: {known}")
    if action not in actions:
        raise PayloadError(
            "UNKNOWN_ACTION",
            f"{contract} v{version} has no action {action!r}; known: {', '.join(actions)}",
        )
    return actions[action]


def checked_payload(
    contract: str, action: str, payload: Payload | Mapping[str, Any], version: int = 1
) -> dict[str, Any]:
    """The map a tx of `contract.action` carries, from its typed payload (or a plain map
    of the same fields), refused with PayloadError if the contract would refuse it
    as INVALID_PAYLOAD: the wrong type, an unknown or missing field, a wrong field
    type, a broken constraint."""
    kind = payload_type(contract, action, version)
    if isinstance(payload, Payload):
        if kind is None or type(payload) is not kind:
            wanted = "a map" if kind is None else type_name(kind)
            raise PayloadError(
                "WRONG_PAYLOAD_TYPE",
                f"{contract}.{action} takes {wanted}, not {type_name(type(payload))}",
            )
        body = _on_chain(msgspec.to_builtins(payload, builtin_types=(bytes,)))
    elif isinstance(payload, Mapping):
        body = _on_chain(dict(payload))
    else:
        raise PayloadError(
            "WRONG_PAYLOAD_TYPE",
            f"{contract}.{action} takes a payload struct or a map, not {type(payload).__name__}",
        )
    if kind is not None:
        try:
            decode_payload(body, kind)
        except InvalidTransaction as e:
            raise PayloadError("INVALID_PAYLOAD", f"{contract}.{action}: {e.message}") from None
    if not isinstance(body, dict):
        raise PayloadError("INVALID_PAYLOAD", f"{contract}.{action}: a payload is a map")
    return body


def _on_chain(value: Any) -> Any:
    """Tuples (how payload types hold lists) as lists: canonical CBOR on chain takes
    lists only."""
    if isinstance(value, tuple | list):
        return [_on_chain(v) for v in value]
    if isinstance(value, dict):
        return {k: _on_chain(v) for k, v in value.items()}
    return value
