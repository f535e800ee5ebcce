"""Story 4, the drug supply chain: an insulin pen from ingredient lot to pharmacy
as EPCIS events, with cold chain and recall."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from medchain.demo.run import (
    DemoRun,
)

INSULIN_GTIN = "06901234567892"


def run_supply_story(run: DemoRun, node_url: str) -> None:
    """An insulin pen from ingredient lot to pharmacy: EPCIS events by their standard
    hash, a cold-chain excursion in transit, a recall, and what a patient sees."""
    from medchain.gs1.ledger import StepContext, record_event_calls

    run.step(
        "Sino API registers insulin ingredient lot API-2611",
        "sino-api-admin",
        "supply",
        "register_ingredient",
        {"lot_id": "API-2611", "substance": "insulin glargine"},
    )
    run.step(
        "Tonghua registers its insulin pen (2-8 °C, 15 min out of range)",
        "tonghua-pharma-admin",
        "supply",
        "register_product",
        {
            "gtin": INSULIN_GTIN,
            "name": "Insulin glargine pen 3 ml",
            "kind": "drug",
            "temp_min_c10": 20,
            "temp_max_c10": 80,
            "max_excursion_ms": 15 * 60_000,
        },
    )
    run.step(
        "Tonghua registers batch L2611 made from API-2611",
        "tonghua-pharma-admin",
        "supply",
        "register_batch",
        {"gtin": INSULIN_GTIN, "lot": "L2611", "expiry": "2028-06-30", "ingredients": ["API-2611"]},
    )
    now = datetime.now(UTC).replace(microsecond=0)

    def document(step: str, serials: list[str], minutes_ago: int) -> str:
        return json.dumps(
            {
                "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
                "type": "EPCISDocument",
                "schemaVersion": "2.0",
                "creationDate": now.isoformat(),
                "epcisBody": {
                    "eventList": [
                        {
                            "type": "ObjectEvent",
                            "action": "ADD" if step == "commissioning" else "OBSERVE",
                            "bizStep": step,
                            "epcList": [f"urn:epc:id:sgtin:6901234.056789.{s}" for s in serials],
                            "eventTime": (now - timedelta(minutes=minutes_ago)).isoformat(),
                            "eventTimeZoneOffset": "+00:00",
                        }
                    ]
                },
            }
        )

    steps = [
        ("commissioning", ["P1", "P2"], 60, "tonghua-pharma-admin", StepContext(lot="L2611")),
        (
            "shipping",
            ["P1"],
            50,
            "tonghua-pharma-admin",
            StepContext(
                destination="yifeng-pharmacy", shipment="CL-881", device=run.did("logger-07")
            ),
        ),
    ]
    for step, serials, ago, who, context in steps:
        calls, _ = record_event_calls(document(step, serials, ago), context)
        run.step(
            f"{who.split('-')[0]} records EPCIS {step} (standard event hash)",
            who,
            "supply",
            "record_event",
            calls[0],
        )
    t = run.client.block_time_ms()
    out = run.step(
        "logger-07 reports 12 °C for 20 minutes on CL-881",
        "logger-07",
        "supply",
        "readings",
        {
            "shipment": "CL-881",
            "readings": [
                [t - 40 * 60_000, 50],
                [t - 25 * 60_000, 120],
                [t - 5 * 60_000, 120],
                [t - 60_000, 60],
            ],
        },
    )
    alert = [e for e in (out or {}).get("events", []) if e["type"] == "supply.cold_chain_violation"]
    run.note(
        "cold-chain alert in the block of the reading that crossed 15 min",
        "OK" if alert else "missing",
        "pen P1 quarantined",
        bool(alert),
    )
    calls, _ = record_event_calls(document("receiving", ["P1"], 1), StepContext(shipment="CL-881"))
    run.step("Yifeng receives CL-881", "yifeng-pharmacy-admin", "supply", "record_event", calls[0])
    calls, _ = record_event_calls(document("dispensing", ["P1"], 0), StepContext())
    run.step(
        "Yifeng tries to dispense the quarantined pen",
        "yifeng-pharmacy-admin",
        "supply",
        "record_event",
        calls[0],
        expect_ok=False,
    )
    run.step(
        "Sino API recalls ingredient lot API-2611",
        "sino-api-admin",
        "supply",
        "recall",
        {"ingredient_lot": "API-2611", "reason": "out-of-specification potency"},
    )
    view = run.client.get(f"/v1/supply/units/{INSULIN_GTIN}/P1")
    run.note(
        "a patient scans pen P1",
        view["verdict"],
        "; ".join(view["warnings"])[:90],
        view["verdict"] == "do not use",
    )
    run.console.print(f"  scan page: {node_url}/01/{INSULIN_GTIN}/10/L2611/21/P1")
