"""A short fuzz run of every parser that reads untrusted bytes, and the crashes fuzzing found.

The targets, their documented rejections and their seeds are bench/fuzz_targets.py,
which bench/fuzz.py drives with atheris for a million inputs each. Here
hypothesis mutates the same real seeds (byte flips, inserted delimiters and
CBOR/protobuf headers, cuts, repeats) a few thousand times per target: any
exception other than the target's rejections fails the test, shrunk to a
small input.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from fuzz_targets import TARGETS, Target

# Tokens that mean something to one of the parsers: HL7 and CSV delimiters,
# CBOR major-type heads and breaks, protobuf tags and varints, header names.
TOKENS = (
    b"|", b"^", b"~", b"\\", b"&", b"\r", b"\n", b"\r\n", b",", b'"', b"\x0b", b"\x1c",
    b"MSH|^~\\&|", b"\nOBX|", b"\nPID|", b"\\X41\\", b"\\.br\\",
    b"\x00", b"\xff", b"\x80", b"\x9f", b"\xbf", b"\xc0", b"\xfb", b"\x1b" + b"\xff" * 8,
    b"\x5b" + b"\x7f" * 8, b"\xa1\x61a", b"\x7a\xff\xff\xff\xff", b"\xff\xff\xff\xff\x0f",
    b"\xe2\x82", b"\xed\xa0\x80", b"9" * 30, b"-1", b"x-medchain-key: ", b"x-medchain-time: ",
)  # fmt: skip
# Longest seed prefix fed in; whole HL7 and CSV files would make each input cost an import.
SEED_PREFIX = {"hl7v2": 1200, "csv": 1200}
EXAMPLES = {"baseline": 500, "tx": 3000, "abci": 2000, "hl7v2": 1500, "csv": 1500}
DEFAULT_EXAMPLES = 3000


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few random edits; sometimes two seeds spliced."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data)))
        op = draw(
            st.sampled_from(("flip", "token", "bytes", "cut", "repeat", "truncate", "splice"))
        )
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "token":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif op == "bytes":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))] * draw(st.integers(2, 40))
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            data[at:] = other[draw(st.integers(0, len(other))) :]
    return bytes(data)


def fuzz(target: Target, examples: int) -> None:
    seeds = [seed[: SEED_PREFIX.get(target.name, len(seed))] for seed in target.seeds()]

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=mutated(seeds) | st.binary(max_size=64))
    def one_input(data: bytes) -> None:
        with contextlib.suppress(*target.rejections):
            target.call(data)

    one_input()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_parser_raises_only_its_documented_rejections(name: str) -> None:
    fuzz(TARGETS[name], EXAMPLES.get(name, DEFAULT_EXAMPLES))


def test_every_seed_is_accepted() -> None:
    """The seeds are valid inputs, so mutations start deep inside each parser."""
    for target in TARGETS.values():
        for seed in target.seeds():
            target.call(seed)


# ---- crashes the fuzzers found, each now a clear rejection ------------------------------


HL7_CRASHES = {
    # python-hl7 asserts (AssertionError) when two MSH delimiters are the same character.
    "component-is-repetition": b"MSH|~~\\&|A~B&C|FAC|||20210818||ADT~A01|1|P|2.5\r",
    "subcomponent-is-component": b"MSH|^~\\^|A^B~C&D|F\r",
    # MSH-2 not closed by a field separator: python-hl7 then drops its last delimiter.
    "msh-2-unterminated": b"MSH|&\\^~\r",
}


@pytest.mark.parametrize("raw", HL7_CRASHES.values(), ids=HL7_CRASHES.keys())
def test_hl7_fuzz_crash_is_a_mapping_error(raw: bytes) -> None:
    target = TARGETS["hl7v2"]
    with pytest.raises(target.rejections):
        target.call(raw)
