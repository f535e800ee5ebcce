"""Every action of every contract, fed random and adversarial payloads (issue 12, finding 12).

A contract may refuse a transaction only with InvalidTransaction; anything else
raised inside FinalizeBlock would stop every validator on the same block. And
a refused transaction changes nothing but its signer's nonce.

Payloads are dicts over each contract's own field names (read from its source)
plus random ones, holding values that hit the edges: identifiers of real
members, over-long text, text with path separators, 64-bit limits, nested
structures near the encoder's depth limit, bytes of every common length.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.ledger import Ledger, did_of

from medchain import crypto
from medchain.contracts.registry import ContractRegistry
from medchain.core.block import Block, results_root
from medchain.core.context import Context, Signer
from medchain.core.execution import NONCE_PREFIX, process_transaction, read_params
from medchain.core.state import EmptyState, StateView
from medchain.core.tx import build_tx
from medchain.exceptions import Code, InvalidTransaction

CONTRACTS = Path(__file__).resolve().parents[1] / "src" / "medchain" / "contracts"
EXAMPLES_PER_ACTION = 60
# Valid-looking values no contract source spells out: a GTIN with its check digit, a URL.
LIKELY_VALUES = ["09506000134352", "https://edge.example.org", "2030-12-31", "LOT-1", "SN-1"]


@dataclass
class World:
    """A small consortium on a real chain DB, and the keys that may sign."""

    ledger: Ledger
    signers: dict[str, crypto.KeyPair]
    ids: list[str]
    fresh_keys: list[bytes]  # public keys nobody registered yet


def build_world(path: Path, profile: str) -> World:
    admin = crypto.generate_keypair()
    ledger = Ledger(path, admin, profile=profile)
    keys = {name: crypto.generate_keypair() for name in ("hosp_admin", "doctor", "nurse")}
    keys["patient"] = crypto.generate_keypair()
    keys["stranger"] = crypto.generate_keypair()
    ledger.add_org("pumch", keys["hosp_admin"])
    ledger.add_staff(keys["hosp_admin"], "pumch", keys["doctor"], ["doctor"])
    ledger.add_staff(keys["hosp_admin"], "pumch", keys["nurse"], ["nurse"])
    if profile == "business":
        ledger.add_patient(keys["patient"])
        for org_id, org_type in (("pharm", "pharmacy"), ("maker", "manufacturer")):
            keys[f"{org_id}_admin"] = crypto.generate_keypair()
            ledger.add_org(org_id, keys[f"{org_id}_admin"], org_type=org_type)
    keys["regulator_admin"] = crypto.generate_keypair()
    ledger.add_org("nhc", keys["regulator_admin"], org_type="regulator")
    keys["admin"] = admin
    ids = ["pumch", "pharm", "maker", "nhc", *(did_of(k) for k in keys.values())]
    return World(ledger, keys, ids, [crypto.generate_keypair().public for _ in range(3)])


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, World]]:
    base = tmp_path_factory.mktemp("properties")
    yield {p: build_world(base / f"{p}.db", p) for p in ("business", "regulator")}


def field_names(contract: str) -> list[str]:
    """Quoted identifiers in the contract's source: its payload fields, and more."""
    source = "".join(p.read_text() for p in (CONTRACTS / contract).glob("*.py"))
    quoted = re.findall(r"[\"']([A-Za-z][A-Za-z0-9_.:-]{1,40})[\"']", source)
    declared = re.findall(r"^    ([a-z][a-z0-9_]{0,40}): ", source, re.MULTILINE)  # Struct fields
    return sorted(set(quoted) | set(declared))


def edge_text(ids: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(ids),
        st.sampled_from(
            [
                "",
                "a",
                "a/b",
                "../x",
                "x" * 64,
                "x" * 128,
                "x" * 190,
                "x" * 200,
                "x" * 513,
                "TREAT",
                "ETREAT",
                "hospital",
                "doctor",
                "Observation",
                "01",
                "2024-01-01",
                "active",
                "0" * 14,
                "\x00",
                "é" * 300,
            ]
        ),
        st.text(max_size=40),
    )


def cbor_values(ids: list[str]) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from([0, 1, -1, 2**63 - 1, 2**64 - 1, -(2**64), 10**12, 1_700_000_000_000]),
        st.integers(min_value=-(2**64), max_value=2**64 - 1),
        edge_text(ids),
        st.sampled_from([b"", b"\x00" * 16, b"\x01" * 32, b"\x02" * 33, b"\x04" * 65]),
        st.binary(max_size=80),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(edge_text(ids), inner, max_size=4)
        ),
        max_leaves=12,
    )


def nested(depth: int) -> Any:
    """A value `depth` levels deep: near the canonical encoder's limit."""
    value: Any = "deep"
    for _ in range(depth):
        value = {"x": value}
    return value


Schema = tuple[dict[str, type], dict[str, type]]


def basic_type(annotation: Any) -> type:
    """The CBOR-level type a payload field annotation decodes from (Annotated and
    Literal stripped, tuples as lists, an optional field as its non-None type)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return basic_type(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return type(typing.get_args(annotation)[0])
    if origin in (tuple, list, frozenset, set):
        return list
    if origin is dict:
        return dict
    if origin in (typing.Union, types.UnionType):
        return basic_type(next(a for a in typing.get_args(annotation) if a is not type(None)))
    return annotation if isinstance(annotation, type) else dict


def schema_of(world: World, contract: str, action: str) -> Schema:
    """The fields an action's payload type declares, required and optional."""
    handler = world.ledger.app.registry.handler(contract, 1)
    fields = msgspec.structs.fields(handler.payloads[action])  # type: ignore[attr-defined]
    return (
        {f.encode_name: basic_type(f.type) for f in fields if f.required},
        {f.encode_name: basic_type(f.type) for f in fields if not f.required},
    )


def typed(kind: type, ids: list[str], keys: list[bytes]) -> st.SearchStrategy[Any]:
    """Values of the declared type, from the edges inward."""
    if kind is str:
        return edge_text(ids)
    if kind is int:
        return st.one_of(
            st.sampled_from([0, 1, -1, 2**63 - 1, 2**64 - 1, -(2**64), 1_700_000_000_000]),
            st.integers(min_value=-(2**64), max_value=2**64 - 1),
        )
    if kind is bytes:
        return st.one_of(st.sampled_from(keys), st.binary(max_size=80))
    if kind is bool:
        return st.booleans()
    if kind is list:
        return st.one_of(
            st.lists(edge_text(ids), max_size=5), st.lists(cbor_values(ids), max_size=4)
        )
    return st.one_of(
        st.dictionaries(edge_text(ids), cbor_values(ids), max_size=6),
        st.builds(nested, st.integers(10, 14)),
    )


def payloads(
    contract: str, schema: Schema, ids: list[str], keys: list[bytes]
) -> st.SearchStrategy[dict[str, Any]]:
    """Mostly well-typed payloads (to reach the handler's logic), some shapeless."""
    names = field_names(contract)
    values = st.one_of(cbor_values(ids), st.builds(nested, st.integers(10, 14)))
    shapeless = st.dictionaries(
        st.one_of(st.sampled_from(names), st.text(max_size=8)), values, max_size=8
    )
    required, optional = schema
    well_typed = st.fixed_dictionaries(
        {k: typed(t, ids, keys) for k, t in required.items()},
        optional={k: typed(t, ids, keys) for k, t in optional.items()},
    )
    return st.one_of(well_typed, well_typed, well_typed, shapeless)


def actions() -> list[tuple[str, str, str]]:
    from medchain.contracts.registry import registry_for

    out = []
    for profile in ("business", "regulator"):
        registry: ContractRegistry = registry_for(profile)
        for name, version in registry.contracts:
            handler = registry.handler(name, version)
            for action in sorted(getattr(handler, "actions", ())):
                out.append((profile, name, action))
    return out


def apply_one(world: World, signer: crypto.KeyPair, contract: str, action: str, payload: Any):
    """Run one tx through the state transition on a fresh view; nothing is committed."""
    ledger = world.ledger
    db = ledger.app.db
    raw = build_tx(
        signer,
        chain_id=ledger.chain_id,
        contract=contract,
        action=action,
        payload=payload,
        nonce=ledger.nonce(signer),
    )
    block = Block(
        ledger.chain_id, db.height + 1, db.block_time_ms() + 1000, (raw,), db.last_block_hash
    )
    state = StateView(db)
    result = process_transaction(state, raw, block, ledger.app.registry, read_params(db))
    results_root((result,))  # every event must be encodable, or sealing the block fails
    return result, dict(state.writes)


ACTIONS = actions()


@pytest.mark.parametrize(
    ("profile", "contract", "action"), ACTIONS, ids=[f"{p}-{c}.{a}" for p, c, a in ACTIONS]
)
def test_random_payloads_are_refused_cleanly(
    worlds: dict[str, World], profile: str, contract: str, action: str
) -> None:
    world = worlds[profile]
    schema = schema_of(world, contract, action)
    keys = [k.public for k in world.signers.values()] + world.fresh_keys
    vocabulary = world.ids + field_names(contract) + LIKELY_VALUES

    @settings(
        max_examples=EXAMPLES_PER_ACTION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        signer=st.sampled_from(sorted(world.signers)),
        payload=payloads(contract, schema, vocabulary, keys),
    )
    def run(signer: str, payload: dict[str, Any]) -> None:
        try:
            result, writes = apply_one(world, world.signers[signer], contract, action, payload)
        except Exception as e:  # the property under test: nothing but a TxResult comes back
            raise AssertionError(
                f"{contract}.{action} by {signer} raised {type(e).__name__}: {e}\n"
                f"payload={payload!r}"
            ) from e
        if result.code != Code.OK:
            changed = set(writes)
            assert all(k.startswith(NONCE_PREFIX) for k in changed), (
                f"refused {contract}.{action} ({result.code.name}) wrote {sorted(changed)}"
            )
        else:
            assert all(k.startswith((contract + "/", NONCE_PREFIX)) for k in writes), sorted(writes)

    run()


def test_a_state_key_too_long_is_an_invalid_payload_not_a_crash() -> None:
    """Regression: Context.put with a key over 512 bytes raised a plain ValueError,
    which process_transaction does not catch (a crash on every validator)."""
    ctx = Context(
        StateView(EmptyState()), "supervision", "c", 1, 0, b"", Signer(b"", b"", "sm", None)
    )
    with pytest.raises(InvalidTransaction) as e:
        ctx.put("supervision/grant/" + "g" * 600, {"x": 1})
    assert e.value.code == Code.INVALID_PAYLOAD
    with pytest.raises(InvalidTransaction) as e:
        ctx.put("supervision/deep", nested(40))
    assert e.value.code == Code.INVALID_PAYLOAD
