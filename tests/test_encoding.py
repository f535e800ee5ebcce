"""Canonical CBOR: one value, one encoding, and strict rejection of everything else."""

from __future__ import annotations

from typing import Any

import pytest

from medchain import encoding
from medchain.encoding import MAX_DEPTH, DecodeError


def nested_lists(levels: int) -> Any:
    """`levels` lists, each inside the previous one: [[[...]]]."""
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


ROUND_TRIP_VALUES = [
    None,
    True,
    False,
    0,
    23,
    24,
    255,
    256,
    2**32,
    2**64 - 1,
    -1,
    -25,
    -(2**64),
    "",
    "患者 42",
    b"",
    b"\x00\xff" * 40,
    [],
    [1, "two", b"three", None, [True]],
    {},
    {"b": 1, "a": 2, "aa": 3, "": 4},
    {"patient": {"did": "did:medchain:abc", "grants": [{"scope": "lab", "until": 2**40}]}},
]


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=repr)
def test_value_round_trips_through_canonical_bytes(value: Any) -> None:
    data = encoding.encode(value)
    assert encoding.decode(data) == value
    assert encoding.encode(encoding.decode(data)) == data


def test_map_key_order_does_not_change_the_encoding() -> None:
    assert encoding.encode({"b": 1, "a": 2, "ccc": 3}) == encoding.encode(
        {"ccc": 3, "a": 2, "b": 1}
    )


def test_map_keys_are_ordered_shorter_first_then_bytewise() -> None:
    # RFC 8949 §4.2.1: bytewise order of the encoded keys.
    assert encoding.encode({"b": 1, "aa": 2, "a": 3}) == bytes.fromhex("a361610361620162616102")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (65536, "1a00010000"),
        (2**32, "1b0000000100000000"),
        (-1, "20"),
        (-24, "37"),
        (-25, "3818"),
        ("a", "6161"),
        (b"\x01", "4101"),
        ([], "80"),
        ({}, "a0"),
        (None, "f6"),
        (True, "f5"),
        (False, "f4"),
    ],
)
def test_encoding_uses_the_shortest_form(value: Any, expected: str) -> None:
    assert encoding.encode(value).hex() == expected


REJECTED_ENCODINGS = {
    "trailing byte": "0100",
    "trailing value": "a0a0",
    "empty input": "",
    "truncated array": "8201",
    "truncated byte string": "4301",
    "map keys out of order": "a2616202616101",
    "longer key before shorter": "a262616101616202",
    "int 1 in two bytes": "1801",
    "int 23 in three bytes": "190017",
    "int 255 in five bytes": "1a000000ff",
    "negative int in two bytes": "3800",
    "string length in two bytes": "780161",
    "duplicate map key": "a2616101616102",
    "indefinite-length array": "9f01ff",
    "indefinite-length map": "bf616101ff",
    "indefinite-length byte string": "5f41614162ff",
    "indefinite-length text string": "7f61616162ff",
    "date tag": "c11a5f000000",
    "bignum tag on a small value": "c24101",
    "set tag": "d901028101",
    "self-describe tag": "d9d9f701",
    "unassigned tag": "d9ffff01",
    "half float": "f93c00",
    "double float": "fb3ff0000000000000",
    "NaN": "f97e00",
    "undefined": "f7",
    "simple value": "f0",
    "integer map key": "a10102",
    "byte string map key": "a1416101",
    "invalid utf-8": "61ff",
}


@pytest.mark.parametrize("hex_data", REJECTED_ENCODINGS.values(), ids=REJECTED_ENCODINGS.keys())
def test_non_canonical_or_forbidden_bytes_are_rejected(hex_data: str) -> None:
    with pytest.raises(DecodeError):
        encoding.decode(bytes.fromhex(hex_data))


def test_decode_error_is_a_value_error_with_a_reason() -> None:
    with pytest.raises(ValueError, match="canonical") as caught:
        encoding.decode(bytes.fromhex("1801"))
    assert type(caught.value) is DecodeError


def test_nesting_up_to_the_limit_round_trips() -> None:
    value = nested_lists(MAX_DEPTH + 1)
    assert encoding.decode(encoding.encode(value)) == value


def test_nesting_past_the_limit_is_rejected_when_encoding() -> None:
    with pytest.raises(DecodeError, match="deep"):
        encoding.encode(nested_lists(MAX_DEPTH + 2))


@pytest.mark.parametrize("levels", [MAX_DEPTH + 2, 1000, 100_000])
def test_nesting_past_the_limit_is_rejected_when_decoding(levels: int) -> None:
    data = b"\x81" * (levels - 1) + b"\x80"
    with pytest.raises(DecodeError):
        encoding.decode(data)


def test_deeply_nested_maps_are_rejected_like_lists() -> None:
    value: Any = {}
    for _ in range(MAX_DEPTH + 1):
        value = {"k": value}
    with pytest.raises(DecodeError):
        encoding.encode(value)
    with pytest.raises(DecodeError):
        encoding.decode(b"\xa1\x61k" * (MAX_DEPTH + 1) + b"\xa0")


@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {b"k": 1}, {None: 1}, {True: 1}, {"ok": {2: "nested"}}],
    ids=repr,
)
def test_non_text_map_keys_are_rejected_when_encoding(value: Any) -> None:
    with pytest.raises(DecodeError, match="map keys must be text"):
        encoding.encode(value)


@pytest.mark.parametrize(
    "value",
    [1.0, 0.5, float("nan"), (1, 2), {1, 2}, bytearray(b"x"), object()],
    # object()'s repr holds its address: name it by type so every collection agrees.
    ids=lambda v: "object" if type(v) is object else repr(v),
)
def test_types_outside_the_chain_model_are_rejected_when_encoding(value: Any) -> None:
    with pytest.raises(DecodeError, match="not allowed"):
        encoding.encode(value)


@pytest.mark.parametrize("value", [2**64, -(2**64) - 1])
def test_integers_beyond_64_bits_are_rejected_when_encoding(value: int) -> None:
    with pytest.raises(DecodeError):
        encoding.encode(value)


@pytest.mark.parametrize("hex_data", ["c249010000000000000000", "c349010000000000000000"])
def test_bignum_tags_are_rejected_when_decoding(hex_data: str) -> None:
    with pytest.raises(DecodeError):
        encoding.decode(bytes.fromhex(hex_data))


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES)
def test_trusted_decode_reads_what_encode_wrote(value: Any) -> None:
    assert encoding.decode_trusted(encoding.encode(value)) == value


@pytest.mark.parametrize("hex_data", ["c60100", "d9fde80100", "9f01ff", "a2616101616102"])
def test_trusted_decode_still_refuses_tags_indefinite_lengths_and_duplicate_keys(
    hex_data: str,
) -> None:
    with pytest.raises(DecodeError):
        encoding.decode_trusted(bytes.fromhex(hex_data))


def test_trusted_decode_skips_only_the_canonical_form_check() -> None:
    """Read paths trust committed state; consensus never uses decode_trusted."""
    long_form = bytes.fromhex("1817")  # 23 written in two bytes
    assert encoding.decode_trusted(long_form) == 23
    with pytest.raises(DecodeError):
        encoding.decode(long_form)


@pytest.mark.parametrize("levels", [MAX_DEPTH + 2, 1000])
def test_trusted_decode_refuses_deep_nesting(levels: int) -> None:
    data = b"\x81" * (levels - 1) + b"\x80"
    with pytest.raises(DecodeError):
        encoding.decode_trusted(data)


REFUSED_ITEMS = {
    "float": (1.5, "not allowed"),
    "tuple": ((1,), "not allowed"),
    "set": ({1}, "not allowed"),
    "bytearray": (bytearray(b"x"), "not allowed"),
    "int above 64 bits": (2**64, "64 bits"),
    "int below 64 bits": (-(2**64) - 1, "64 bits"),
    "map with an int key": ({1: "a"}, "map keys must be text"),
}


@pytest.mark.parametrize("item", REFUSED_ITEMS.values(), ids=REFUSED_ITEMS.keys())
@pytest.mark.parametrize("where", ["list item", "map value", "deep map value", "after good"])
def test_a_refused_value_is_refused_wherever_it_sits(item: tuple[Any, str], where: str) -> None:
    """The type check walks containers fast; nothing nested gets past it."""
    value, reason = item
    container: Any = {
        "list item": [value],
        "map value": {"k": value},
        "deep map value": {"a": [{"b": [value]}]},
        "after good": {"a": 1, "b": "s", "c": b"b", "d": None, "e": True, "f": [value]},
    }[where]
    with pytest.raises(DecodeError, match=reason):
        encoding.encode(container)


def test_subclasses_of_the_allowed_types_encode_as_their_base_type() -> None:
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    class Name(str):
        pass

    class Items(list[Any]):
        pass

    class Record(dict[str, Any]):
        pass

    value = Record({Name("level"): Level.HIGH, "items": Items([Level.HIGH, Name("x")])})
    assert encoding.encode(value) == encoding.encode({"level": 3, "items": [3, "x"]})
    assert encoding.encode([Level.HIGH]) == encoding.encode([3])


@pytest.mark.parametrize("bottom", [{"k": 1}, [1], {}, [], "leaf", 2**64 - 1, None])
def test_the_depth_limit_counts_every_innermost_value(bottom: Any) -> None:
    """Under MAX_DEPTH maps, a scalar or an empty container fits; anything inside
    the innermost container is one level too deep."""
    value: Any = bottom
    for _ in range(MAX_DEPTH):
        value = {"k": value}
    if isinstance(bottom, (dict, list)) and bottom:
        with pytest.raises(DecodeError, match="deep"):
            encoding.encode(value)
        return
    assert encoding.decode(encoding.encode(value)) == value
