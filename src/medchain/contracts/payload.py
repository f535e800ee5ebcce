"""Strict payload decoding shared by all contracts.

Each action's payload is a `Payload` (a frozen msgspec Struct) in its
contract's payloads.py, with its constraints (patterns, lengths, ranges) in
the type and cross-field rules in `__post_init__`. `decode_payload` turns the
decoded CBOR map into that type before the handler touches state: unknown
fields, missing fields, wrong types (bool is not int, text is not bytes) and
broken constraints are all INVALID_PAYLOAD.

Why msgspec rather than dataclasses: one call both converts and validates
(strictly, with constraints), it is several times faster than hand-written
checks on the hot path, and the same types give the JSON Schema we publish.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from medchain.exceptions import Code, InvalidTransaction

T = TypeVar("T")


class Payload(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every action's payload type: immutable, no unknown fields."""


P = TypeVar("P", bound=Payload)


def decode_payload(payload: Mapping[str, Any], kind: type[P]) -> P:
    """The payload as `kind`, fully validated; INVALID_PAYLOAD naming the field if not.

    `__post_init__` checks raise ValueError, which msgspec reports the same way.
    """
    try:
        return msgspec.convert(payload, kind, strict=True, builtin_types=(bytes,))
    except msgspec.ValidationError as e:
        raise invalid(str(e)) from None


def whole(body: str) -> str:
    """A `msgspec.Meta(pattern=...)` regex that must match the whole text.

    msgspec searches rather than full-matches, and a bare `$` also matches
    before a trailing newline, so `^[a-z]+$` would let "abc\\n" through.
    The lookahead is plain ECMA-262 too, so the published JSON Schema agrees.
    """
    return f"^(?:{body})$(?!\\n)"


def payload_schema(kind: type[Payload]) -> dict[str, Any]:
    """JSON Schema of a payload type, for the docs and OpenAPI. Byte strings are
    CBOR byte strings on chain; in JSON (REST, CLI `--payload`) they are hex."""
    schema: dict[str, Any] = _hex_bytes(msgspec.json.schema(kind))
    for struct in _structs(msgspec.inspect.type_info(kind)):
        properties = schema["$defs"][struct.cls.__name__]["properties"]
        for field in struct.fields:
            for option in _options(field.type):
                if isinstance(option, msgspec.inspect.BytesType):
                    _set_hex_lengths(properties[field.encode_name], option)
    return schema


def _hex_bytes(node: Any) -> Any:
    """Byte strings as hex: msgspec describes them as base64 (with base64 lengths)."""
    if isinstance(node, dict):
        if node.get("contentEncoding") == "base64":
            node = {
                k: v
                for k, v in node.items()
                if k not in ("contentEncoding", "minLength", "maxLength")
            }
            node["contentEncoding"] = "base16"
            node.setdefault("description", "byte string (hex in JSON; a CBOR byte string on chain)")
        return {k: _hex_bytes(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_hex_bytes(v) for v in node]
    return node


def _structs(info: Any, seen: set[type] | None = None) -> list[Any]:
    """Every Struct type reachable from `info` (nested payload parts included)."""
    seen = set() if seen is None else seen
    found: list[Any] = []
    if isinstance(info, msgspec.inspect.StructType) and info.cls not in seen:
        seen.add(info.cls)
        found.append(info)
        for field in info.fields:
            found += _structs(field.type, seen)
    for child in ("types", "item_type", "value_type"):
        inner = getattr(info, child, None)
        for item in inner if isinstance(inner, tuple) else ([inner] if inner else []):
            found += _structs(item, seen)
    return found


def _options(info: Any) -> tuple[Any, ...]:
    return tuple(info.types) if isinstance(info, msgspec.inspect.UnionType) else (info,)


def _set_hex_lengths(node: dict[str, Any], info: Any) -> None:
    """Two hex digits per byte, on the byte-string branch of `node`."""
    for branch in node.get("anyOf", [node]):
        if branch.get("contentEncoding") == "base16":
            if info.min_length is not None:
                branch["minLength"] = 2 * info.min_length
            if info.max_length is not None:
                branch["maxLength"] = 2 * info.max_length


def invalid(message: str) -> InvalidTransaction:
    """An INVALID_PAYLOAD rejection."""
    return InvalidTransaction(Code.INVALID_PAYLOAD, message)
