"""Payload schemas are published (issue 13 point 1) and malformed payloads are
refused before the handler reads any state."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from medchain.contracts.payload import Payload
from medchain.contracts.registry import registry_for
from medchain.contracts.schemas import action_payloads, openapi_components, payloads_markdown
from medchain.core.context import Context, Signer
from medchain.core.state import StateView
from medchain.core.tx import Envelope, SignedTx
from medchain.exceptions import Code, InvalidTransaction

ROOT = Path(__file__).resolve().parents[1]
TYPED = [
    (contract, version, action, kind)
    for (contract, version), actions in action_payloads().items()
    for action, kind in actions.items()
    if kind is not None
]
UNTYPED = sorted(
    f"{contract}.{action}"
    for (contract, _), actions in action_payloads().items()
    for action, kind in actions.items()
    if kind is None
)


class CountingState:
    """Committed state that is empty and counts every read made of it."""

    def __init__(self) -> None:
        self.reads = 0

    def get(self, key: str) -> bytes | None:
        self.reads += 1
        return None

    def scan(self, prefix: str, limit: int) -> Iterator[tuple[str, bytes]]:
        self.reads += 1
        return iter(())


def sample(info: msgspec.inspect.Type) -> Any:
    """A value of the field's type (constraints aside), as the CBOR decoder gives it."""
    if isinstance(info, msgspec.inspect.StrType):
        return "x"
    if isinstance(info, msgspec.inspect.BoolType):
        return False
    if isinstance(info, msgspec.inspect.IntType):
        return info.ge if info.ge is not None else 1
    if isinstance(info, msgspec.inspect.BytesType):
        return bytes(32)
    if isinstance(info, msgspec.inspect.LiteralType):
        return info.values[0]
    if isinstance(info, msgspec.inspect.EnumType):
        return next(iter(info.cls)).value
    if isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.TupleType)):
        return []
    if isinstance(info, (msgspec.inspect.DictType, msgspec.inspect.StructType)):
        return {}
    if isinstance(info, msgspec.inspect.UnionType):
        return None if info.includes_none else sample(info.types[0])
    return "x"


def wrong(info: msgspec.inspect.Type) -> Any:
    """A value of a type the field does not accept (strict: a bool is not an int)."""
    return "yes" if isinstance(info, msgspec.inspect.BoolType) else True


def well_typed(kind: type[Payload]) -> dict[str, Any]:
    """Every required field, each with a value of its type."""
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.encode_name: sample(f.type) for f in info.fields if f.required}


def malformed(kind: type[Payload]) -> dict[str, dict[str, Any]]:
    """A payload missing a required field, one with an extra field, one with a wrong type."""
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    base = well_typed(kind)
    cases = {"extra field": base | {"not_a_field_of_any_payload": "x"}}
    required = [f for f in info.fields if f.required]
    if required:
        cases["missing field"] = {k: v for k, v in base.items() if k != required[0].encode_name}
    if info.fields:  # a payload with no fields (identity.register_patient) has no type to break
        field = (required or list(info.fields))[0]
        cases["wrong type"] = base | {field.encode_name: wrong(field.type)}
    return cases


def apply_counting_reads(contract: str, version: int, action: str, payload: Any) -> int:
    """Apply the action with `payload` to an empty counting state; the reads it made
    (the handler's only: authorize's nonce and signer reads happen before it)."""
    registry = registry_for("regulator" if contract == "supervision" else "business")
    handler = registry.handler(contract, version)
    base = CountingState()
    envelope = Envelope("test-chain", contract, version, action, payload, bytes(33), 0, "sm")
    tx = SignedTx(envelope, b"", b"", b"", bytes(32))
    signer = Signer(bytes(20), bytes(33), "sm", "did:medchain:test")
    ctx = Context(StateView(base), handler.namespace, "test-chain", 1, 0, bytes(32), signer)
    with pytest.raises(InvalidTransaction) as refused:
        handler.apply(tx, ctx)
    assert refused.value.code == Code.INVALID_PAYLOAD, refused.value.message
    return base.reads


@pytest.mark.parametrize(
    ("contract", "version", "action", "kind"),
    TYPED,
    ids=[f"{c}.{a}" for c, _, a, _ in TYPED],
)
def test_malformed_payload_is_refused_before_any_state_read(
    contract: str, version: int, action: str, kind: type[Payload]
) -> None:
    for case, payload in malformed(kind).items():
        reads = apply_counting_reads(contract, version, action, payload)
        assert reads == 0, f"{contract}.{action}: {case} refused only after {reads} state reads"


def test_a_payload_that_is_not_a_map_is_refused_before_any_state_read() -> None:
    contract, version, action, _ = TYPED[0]
    assert apply_counting_reads(contract, version, action, ["not", "a", "map"]) == 0


def test_every_action_of_every_contract_has_a_payload_type() -> None:
    assert UNTYPED == []


def test_every_typed_action_is_an_openapi_component() -> None:
    components = openapi_components()
    for contract, _, action, _ in TYPED:
        assert components[f"{contract}.{action}"]["type"] == "object"
    refs = [r for r in _refs(components) if not r.startswith("#/components/schemas/")]
    assert refs == []
    named = {f"#/components/schemas/{n}" for n in components}
    assert set(_refs(components)) <= named


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_committed_payload_docs_are_up_to_date() -> None:
    committed = (ROOT / "docs" / "payloads.md").read_text()
    assert committed == payloads_markdown(), (
        "regenerate: python -m medchain.contracts.schemas > docs/payloads.md"
    )


def test_the_docs_generator_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "medchain.contracts.schemas"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == payloads_markdown()
