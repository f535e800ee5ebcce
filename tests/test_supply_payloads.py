"""Supply and devices payloads are refused before any state read (issue 13, point 1):
a missing field, an extra field, a wrong type, and every rule the types hold
(GTIN check digits, lot and serial characters, real dates, a whole cold-chain
range, each business step's own fields, reading lists, one thing recalled)."""

from __future__ import annotations

from typing import Any

import pytest
from support.stateless import apply_without_state

from medchain.contracts.base import ActionHandler
from medchain.contracts.devices import DevicesHandler
from medchain.contracts.payload import payload_schema
from medchain.contracts.supply import SupplyHandler
from medchain.exceptions import Code, InvalidTransaction

GTIN = "06901234567892"
UNIT = f"{GTIN}/S1"
EVENT_HASH = f"ni:///sha-256;{1:064x}?ver=CBV2.0"

VALID: dict[tuple[str, str], dict[str, Any]] = {
    ("supply", "register_product"): {
        "gtin": GTIN,
        "name": "Insulin pen",
        "kind": "drug",
        "temp_min_c10": 20,
        "temp_max_c10": 80,
        "max_excursion_ms": 600_000,
    },
    ("supply", "register_ingredient"): {"lot_id": "API-77", "substance": "insulin"},
    ("supply", "register_batch"): {
        "gtin": GTIN,
        "lot": "L1",
        "expiry": "2028-02-29",
        "ingredients": ["API-77"],
    },
    ("supply", "record_event"): {
        "event_hash": EVENT_HASH,
        "biz_step": "commissioning",
        "event_time_ms": 0,
        "epcs": [UNIT],
        "lot": "L1",
    },
    ("supply", "readings"): {"shipment": "SH-1", "readings": [[0, 50], [1, 60]]},
    ("supply", "recall"): {"gtin": GTIN, "lot": "L1", "reason": "mislabelled"},
    ("supply", "lift_recall"): {"gtin": GTIN, "lot": "L1", "reason": "cleared"},
    ("supply", "register_location"): {
        "location": "urn:epc:id:sgln:6901234.00001.0",
        "org_id": "acme-pharma",
    },
    ("devices", "register_device"): {"udi": UNIT, "lot": "P-1"},
    ("devices", "install_device"): {"udi": UNIT, "owner": "hosp-a"},
    ("devices", "device_event"): {"udi": UNIT, "kind": "fault", "note": "alarm"},
    ("devices", "device_used"): {"udi": UNIT, "record_id": "proc-1"},
}
HANDLERS: dict[str, ActionHandler] = {"supply": SupplyHandler(), "devices": DevicesHandler()}


def refused(contract: str, action: str, payload: dict[str, Any]) -> InvalidTransaction:
    with pytest.raises(InvalidTransaction) as caught:
        apply_without_state(HANDLERS[contract], action, payload)
    return caught.value


def test_every_action_has_a_typed_payload_and_a_schema() -> None:
    for name, handler in HANDLERS.items():
        assert set(handler.payloads) == handler.actions
        assert {a for c, a in VALID if c == name} == handler.actions
        for kind in handler.payloads.values():
            schema = payload_schema(kind)
            assert schema["$defs"][kind.__name__]["additionalProperties"] is False


@pytest.mark.parametrize(("contract", "action"), sorted(VALID), ids=lambda x: x)
def test_malformed_payloads_are_refused_before_any_state_read(contract: str, action: str) -> None:
    valid = VALID[(contract, action)]
    first = next(iter(valid))
    for payload in (
        {k: v for k, v in valid.items() if k != first},  # missing
        {**valid, "extra": 1},  # unknown field
        {**valid, first: True},  # wrong type (bool is neither text nor int)
        {**valid, first: None},  # an explicit null
    ):
        assert refused(contract, action, payload).code == Code.INVALID_PAYLOAD, payload
    with pytest.raises(AssertionError, match="state read"):  # well formed: on to state
        apply_without_state(HANDLERS[contract], action, valid)


RULES: list[tuple[str, str, dict[str, Any]]] = [
    ("supply", "register_product", {"gtin": GTIN[:-1] + "3"}),  # check digit
    ("supply", "register_product", {"gtin": "6901234567892"}),  # 13 digits
    ("supply", "register_product", {"kind": "food"}),
    ("supply", "register_product", {"name": ""}),
    ("supply", "register_product", {"name": "x" * 201}),
    ("supply", "register_product", {"temp_min_c10": 80}),  # min must be below max
    ("supply", "register_ingredient", {"lot_id": "API 77"}),
    ("supply", "register_ingredient", {"lot_id": "API-77\n"}),  # no trailing newline
    ("supply", "register_batch", {"expiry": "2030-02-30"}),
    ("supply", "register_batch", {"expiry": "2030-2-01"}),
    ("supply", "register_batch", {"lot": "L/1"}),
    ("supply", "register_batch", {"ingredients": [f"A{i}" for i in range(51)]}),
    ("supply", "register_batch", {"ingredients": ["A", 1]}),
    ("supply", "record_event", {"biz_step": "sensor_reporting"}),
    ("supply", "record_event", {"event_hash": "ni:///sha-256;00?ver=CBV2.0"}),
    ("supply", "record_event", {"epcs": []}),
    ("supply", "record_event", {"epcs": [UNIT] * 1001}),
    ("supply", "record_event", {"epcs": [f"{GTIN[:-1]}3/S1"]}),  # commissioning: a GS1 unit
    ("supply", "record_event", {"epcs": [f"{GTIN}/S 1"]}),
    ("supply", "record_event", {"lot": "L 1"}),
    ("supply", "record_event", {"biz_step": "packing", "lot": "L1"}),  # no container
    ("supply", "record_event", {"biz_step": "packing", "parent": "CASE/1"}),
    ("supply", "record_event", {"biz_step": "shipping", "destination": "x", "shipment": "S"}),
    ("supply", "record_event", {"biz_step": "receiving"}),  # which shipment?
    ("supply", "readings", {"readings": []}),
    ("supply", "readings", {"readings": [[0, 50]] * 501}),
    ("supply", "readings", {"readings": [[1, 50], [1, 60]]}),  # times must increase
    ("supply", "readings", {"readings": [[0, 50, 1]]}),
    ("supply", "readings", {"readings": [[0, True]]}),
    ("supply", "recall", {"ingredient_lot": "API-77"}),  # a batch and a lot
    ("supply", "recall", {"lot": None}),
    ("devices", "register_device", {"udi": f"{GTIN[:-1]}3/S1"}),
    ("devices", "register_device", {"udi": GTIN}),
    ("devices", "register_device", {"lot": "P 1"}),
    ("devices", "device_event", {"kind": "repair"}),
]


@pytest.mark.parametrize(("contract", "action", "change"), RULES, ids=str)
def test_payload_rules_hold_before_any_state_read(
    contract: str, action: str, change: dict[str, Any]
) -> None:
    payload = {**VALID[(contract, action)], **change}
    assert refused(contract, action, payload).code == Code.INVALID_PAYLOAD


def test_recall_names_one_batch_or_one_lot() -> None:
    for payload in (
        {"reason": "x"},
        {"reason": "x", "gtin": GTIN},
        {"reason": "x", "lot": "L1", "ingredient_lot": "API-77"},
    ):
        assert refused("supply", "recall", payload).code == Code.INVALID_PAYLOAD
    with pytest.raises(AssertionError, match="state read"):
        apply_without_state(SupplyHandler(), "recall", {"reason": "x", "ingredient_lot": "A"})


def test_a_product_without_a_cold_chain_and_other_steps_pass_the_type() -> None:
    plain = {"gtin": GTIN, "name": "Pump", "kind": "device"}
    with pytest.raises(AssertionError, match="state read"):
        apply_without_state(SupplyHandler(), "register_product", plain)
    assert refused("supply", "register_product", plain | {"temp_min_c10": 20}).code == (
        Code.INVALID_PAYLOAD
    )  # a partial range
    shipping = {
        **VALID[("supply", "record_event")],
        "biz_step": "shipping",
        "destination": "yifeng",
        "shipment": "SH-1",
        "device": "did:medchain:logger",
    }
    with pytest.raises(AssertionError, match="state read"):
        apply_without_state(SupplyHandler(), "record_event", shipping)
