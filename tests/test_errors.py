"""Two kinds of failure, end to end (issue 13 point 4): every error MedChain
raises derives from its documented base, core's broken invariants are
InternalError, and edge errors carry codes while one table per app gives the
HTTP status."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import medchain
from medchain.core.smt import BadProof, Proof, SparseMerkleTree
from medchain.core.state import MAX_KEY_BYTES, EmptyState, StateView
from medchain.edge import custodian
from medchain.edge.http import errors as edge_errors
from medchain.exceptions import InternalError, InvalidTransaction, MedChainError


def medchain_error_classes() -> list[type[BaseException]]:
    """Every exception class defined in a medchain module."""
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(medchain.__path__, "medchain."):
        if info.name.endswith(".__main__"):  # importing it runs the command line
            continue
        if info.name.startswith("medchain.fl"):  # runs in .venv-fl (Flower, numpy):
            continue  # tests/test_federated.py checks its error classes there
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == info.name:
                found.append(value)
    return found


def test_every_error_class_derives_from_the_documented_base() -> None:
    classes = medchain_error_classes()
    assert len(classes) > 20
    strays = [c.__qualname__ for c in classes if not issubclass(c, MedChainError)]
    assert strays == []


def test_a_missing_state_tree_node_is_an_internal_error() -> None:
    tree = SparseMerkleTree(lambda _: None)
    with pytest.raises(InternalError):
        tree.prove(b"\x07" * 32, "identity/org/x")


def test_an_unbounded_state_key_is_an_internal_error_not_a_rejection() -> None:
    view = StateView(EmptyState())
    with pytest.raises(InternalError) as raised:
        view.set("k" * (MAX_KEY_BYTES + 1), b"v")
    assert not isinstance(raised.value, InvalidTransaction)


def test_a_malformed_proof_is_the_callers_input_not_a_node_fault() -> None:
    with pytest.raises(BadProof) as raised:
        Proof.from_dict(
            {"key_hash": b"1", "siblings": [], "leaf_key": None, "leaf_value_hash": None}
        )
    assert not isinstance(raised.value, InternalError)


def test_edge_errors_carry_codes_and_the_edge_table_gives_every_code_a_status() -> None:
    kinds = [c for c in medchain_error_classes() if issubclass(c, custodian.EdgeError)]
    assert len(kinds) >= 7
    for kind in kinds:
        assert "status" not in vars(kind), f"{kind.__qualname__} carries an HTTP status"
        assert kind.code in edge_errors.HTTP_STATUS, kind.code
    assert edge_errors.status_of(custodian.Refused.code) == 403
    assert edge_errors.status_of(custodian.Tampered.code) == 500
