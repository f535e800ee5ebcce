"""Claims end to end on both engines: a solo node, and a 4-validator CometBFT
localnet of its own where the pen is dispensed through one node, claimed through
another, settled through a third, claimed again through the fourth (refused, with
its audit event) and read back through the first once it has the block."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.consortium import run_in_rounds
from support.network import ENGINES, Network, caught_up, running_network

from medchain import crypto
from medchain.contracts.claims import model as m
from medchain.contracts.identity.model import did_for_key
from medchain.sdk.client import ClientError

FIRST_IP = "127.0.36.1"  # apart from the other localnet tests (3, 5-8, 14-18, 22-33, 41, 48, 77)
GTIN = "06901234567892"
DRUG = f"{m.GTIN_SYSTEM}|{GTIN}"


@pytest.fixture(scope="module", params=ENGINES)
def network(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Network]:
    """A solo node, or a localnet of its own (an address range no other test uses)."""
    tmp: Path = tmp_path_factory.mktemp(f"claims-{request.param}")
    yield from running_network(request.param, tmp, first_ip=FIRST_IP)


def did(key: crypto.KeyPair) -> str:
    return did_for_key(key.suite, key.public)


def test_a_dispensed_pen_claimed_settled_and_refused_again_across_nodes(network: Network) -> None:
    names = ("maker", "logistics", "logger", "pharmacy", "insurer", "patient")
    k = {"root": network.keys["root"]} | {n: crypto.generate_keypair() for n in names}
    writer = network.client(0)

    def rounds(*calls: tuple[str, str, str, dict[str, Any]]) -> None:
        run_in_rounds(writer, k, list(calls))

    def org(org_id: str, admin: str, kind: str) -> tuple[str, str, str, dict[str, Any]]:
        payload = {
            "org_id": org_id,
            "name": org_id,
            "org_type": kind,
            "admin_public_key": k[admin].public,
        }
        return ("root", "identity", "register_org", payload)

    rounds(
        org("acme-pharma", "maker", "manufacturer"),
        org("cold-logistics", "logistics", "logistics"),
        org("yifeng", "pharmacy", "pharmacy"),
        org("pingan", "insurer", "insurer"),
        ("patient", "identity", "register_patient", {}),
    )
    logger = {"org_id": "cold-logistics", "public_key": k["logger"].public, "roles": ["device"]}
    rounds(
        ("logistics", "identity", "add_member", logger),
        (
            "maker",
            "supply",
            "register_product",
            {"gtin": GTIN, "name": "Insulin pen", "kind": "drug"},
        ),
    )
    batch = {"gtin": GTIN, "lot": "L1", "expiry": "2030-12-31", "ingredients": []}
    rounds(("maker", "supply", "register_batch", batch))
    pen = f"{GTIN}/P0001"
    serial = iter(range(1, 10))

    def event(who: str, step: str, **extra: Any) -> tuple[str, str, str, dict[str, Any]]:
        payload = {
            "event_hash": f"ni:///sha-256;{next(serial):064x}?ver=CBV2.0",
            "biz_step": step,
            "event_time_ms": writer.block_time_ms(),
            "epcs": [pen],
            **extra,
        }
        return (who, "supply", "record_event", payload)

    rounds(event("maker", "commissioning", lot="L1"))
    ship = {"destination": "yifeng", "shipment": "SH-1", "device": did(k["logger"])}
    rounds(event("maker", "shipping", **ship))
    rounds(event("pharmacy", "receiving", shipment="SH-1"))
    rounds(event("pharmacy", "dispensing"))
    plan = {
        "plan_id": "basic",
        "covered": [{"code": DRUG, "unit_cap_fen": 8_000}],
        "copay_bp": 2_000,
        "annual_limit_fen": 1_000_000,
    }
    rounds(("insurer", "claims", "set_plan", plan))
    rounds(("insurer", "claims", "enrol", {"plan_id": "basic", "patient": did(k["patient"])}))

    def claim(claim_id: str, encounter: str) -> dict[str, Any]:
        return {
            "claim_id": claim_id,
            "patient": did(k["patient"]),
            "plan_id": "basic",
            "insurer": "pingan",
            "encounter_hash": m.encounter_hash("yifeng", encounter),
            "items": [{"code": DRUG, "quantity": 1, "unit_price_fen": 7_500, "packs": [pen]}],
            "claim_hash": bytes(32),
        }

    submitted = network.client(1).send(k["pharmacy"], "claims", "submit", claim("C-1", "E/1"))
    assert submitted["code_name"] == "OK", submitted
    assert submitted["events"][0]["attributes"]["payable_fen"] == "6000"  # 75.00 less 20 %
    caught_up(network.client(2), submitted["height"])
    settle = {"claim_id": "C-1", "reference": "PAY-1", "amount_fen": 6_000}
    settled = network.client(2).send(k["insurer"], "claims", "settle", settle)
    assert settled["code_name"] == "OK", settled
    caught_up(network.client(3), settled["height"])
    again = network.client(3).send(k["pharmacy"], "claims", "submit", claim("C-2", "E/2"))
    assert again["code_name"] == "ALREADY_EXISTS" and "pack already claimed" in again["log"]
    [alert] = again["events"]
    assert alert["type"] == "claims.duplicate_suspected"
    assert alert["attributes"]["earlier_claim"] == "C-1"
    reader = network.client(0, key=k["patient"])
    caught_up(reader, again["height"])
    seen = reader.get("/v1/claims/C-1")
    assert seen["status"] == m.PAID and seen["payment"]["amount_fen"] == 6_000
    # the refused claim left nothing: the patient gets the 403 a stranger's claim gets
    with pytest.raises(ClientError) as refused:
        reader.get("/v1/claims/C-2")
    assert refused.value.status == 403
