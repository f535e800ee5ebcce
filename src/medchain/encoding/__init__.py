"""Canonical CBOR (RFC 8949 §4.2.1 core deterministic encoding).

The only encoding that reaches the chain. Decoding is strict: the bytes must
be exactly the canonical encoding of what they decode to (no trailing bytes,
no duplicate keys, no indefinite lengths, no tags, no floats), so one value
has one encoding and one hash.

Layer: encoding, the bottom with exceptions. Imports only exceptions.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""

from __future__ import annotations

from typing import Any

import cbor2

from medchain.exceptions import MedChainError

MAX_DEPTH = 16

Value = None | bool | int | str | bytes | list[Any] | dict[str, Any]


class DecodeError(MedChainError, ValueError):
    """The bytes are not canonical MedChain CBOR."""


def encode(value: Any) -> bytes:
    """Canonical CBOR bytes of `value` (only plain JSON-like types and bytes)."""
    _check_types(value, 0)
    return cbor2.dumps(value, canonical=True)


def decode(data: bytes) -> Any:
    """Decode canonical CBOR strictly; DecodeError on anything else."""
    value = decode_trusted(data)
    if encode(value) != data:
        raise DecodeError("CBOR is not in canonical form (or has trailing bytes)")
    return value


def decode_trusted(data: bytes) -> Any:
    """Decode CBOR this node's own state machine wrote (committed state), for
    read paths only: gateway answers, queries, benches. Never for consensus.

    Committed values were canonically encoded by `encode` before they reached
    the state tree, so re-encoding each one to prove it canonical (what `decode`
    does to every byte that arrives from outside) only costs time: about four
    times the decode itself on a trace of many units. Indefinite lengths,
    duplicate keys, deep nesting and tags cbor2 does not itself interpret are
    still refused (the few it does, such as dates, never reach committed state).
    """
    try:
        return cbor2.loads(
            data,
            max_depth=MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            tag_hook=_reject_tag,
        )
    except DecodeError:
        raise
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as e:
        raise DecodeError(f"invalid CBOR: {e}") from None


def _reject_tag(decoder: object, tag: object) -> object:
    raise DecodeError("CBOR tags are not allowed")


# Exact types that are always allowed as they are: the common case, checked with
# one set lookup instead of a chain of isinstance calls.
_PLAIN = frozenset({str, bytes, bool, type(None)})
_INT_RANGE_ERROR = "integers must fit in 64 bits (CBOR bignum tags are not allowed)"


def _check_types(value: Any, depth: int) -> None:
    """Raise DecodeError unless `value` is on-chain data (see `_check_types_slow`).

    The same verdict and the same first error as `_check_types_slow`, which
    this falls back to for anything unusual (subclasses of the allowed types,
    refused types, the last levels of nesting). The common shapes, dicts and
    lists of exact str, bytes, bool, None and int, are walked with one type
    lookup per item instead of a call and isinstance chain per item.
    """
    if depth >= MAX_DEPTH:
        _check_types_slow(value, depth)
        return
    t = type(value)
    if t is dict:
        for k, v in value.items():
            if type(k) is not str and not isinstance(k, str):
                raise DecodeError("map keys must be text")
            tv = type(v)
            if tv in _PLAIN:
                continue
            if tv is int:
                if not -(2**64) <= v < 2**64:
                    raise DecodeError(_INT_RANGE_ERROR)
                continue
            _check_types(v, depth + 1)
        return
    if t is list:
        for v in value:
            tv = type(v)
            if tv in _PLAIN:
                continue
            if tv is int:
                if not -(2**64) <= v < 2**64:
                    raise DecodeError(_INT_RANGE_ERROR)
                continue
            _check_types(v, depth + 1)
        return
    if t in _PLAIN:
        return
    _check_types_slow(value, depth)


def _check_types_slow(value: Any, depth: int) -> None:
    """The definition of what may be encoded: None, bool, str, bytes, ints in
    [-2^64, 2^64), lists and text-keyed maps of those, nested at most MAX_DEPTH
    deep (subclasses of these types count as them, as cbor2 encodes them so)."""
    if depth > MAX_DEPTH:
        raise DecodeError("value nested too deeply")
    if isinstance(value, int) and not isinstance(value, bool):
        if not -(2**64) <= value < 2**64:
            raise DecodeError(_INT_RANGE_ERROR)
        return
    if value is None or isinstance(value, (bool, str, bytes)):
        return
    if isinstance(value, list):
        for item in value:
            _check_types(item, depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise DecodeError("map keys must be text")
            _check_types(v, depth + 1)
        return
    raise DecodeError(f"type {type(value).__name__} is not allowed on chain")
