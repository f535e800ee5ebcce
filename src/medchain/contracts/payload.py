"""Strict payload decoding shared by all contracts.

Decode and validate the whole payload before touching state: unknown
fields, missing fields and wrong types are rejected with INVALID_PAYLOAD.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from medchain.exceptions import Code, InvalidTransaction

T = TypeVar("T")


def invalid(message: str) -> InvalidTransaction:
    """An INVALID_PAYLOAD rejection."""
    return InvalidTransaction(Code.INVALID_PAYLOAD, message)


def check_fields(
    payload: Mapping[str, Any], required: Mapping[str, type], optional: Mapping[str, type] = {}
) -> None:
    """Exactly the named fields, each of the given type (bool is not int)."""
    unknown = sorted(set(payload) - set(required) - set(optional))
    if unknown:
        raise invalid(f"unknown field(s) {unknown}")
    for name in required:
        if name not in payload:
            raise invalid(f"missing field {name!r}")
    for name, value in payload.items():
        kind = required.get(name) or optional[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise invalid(f"field {name!r} must be {kind.__name__}")


def text(payload: Mapping[str, Any], name: str, pattern: str = r"^.{1,200}$") -> str:
    """A text field matching `pattern`."""
    value = payload[name]
    if not isinstance(value, str) or not re.fullmatch(pattern, value, re.DOTALL):
        raise invalid(f"field {name!r} has an invalid value")
    return value


def one_of(payload: Mapping[str, Any], name: str, allowed: frozenset[str]) -> str:
    """A text field from a closed set."""
    value = payload[name]
    if value not in allowed:
        raise invalid(f"field {name!r} must be one of {sorted(allowed)}")
    return str(value)
