"""Drug traceability through real transactions: ingredient lot to dispensed
pack, a cold-chain excursion in transit, a recall, counterfeit detection, and
every refused transition with its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.ledger import Ledger, did_of, signed_get
from support.supply_chain import GTIN, Chain, evh

from medchain import crypto, encoding
from medchain.contracts.supply import model as m
from medchain.contracts.supply.model import gtin_ok
from medchain.exceptions import Code

DEVICE_GTIN = "06901234567809"


@pytest.fixture
def chain(ledger: Ledger) -> Chain:
    return Chain(ledger)


def test_ingredient_to_dispensed_pack_with_excursion_and_recall(chain: Chain) -> None:
    units = chain.setup_batch()
    assert chain.event("maker", "packing", units[:2], parent="CASE-1").code == Code.OK
    ship = {"destination": "yifeng", "shipment": "SH-1", "device": did_of(chain.k["logger"])}
    assert chain.event("maker", "shipping", ["CASE-1"], **ship).code == Code.OK
    t = chain.ledger.app.db.block_time_ms()
    # in range, then 12 s at 12.5 °C: more than the 10 s allowed
    chain.ok(
        "logger",
        "readings",
        {"shipment": "SH-1", "readings": [[t - 20_000, 50], [t - 15_000, 125]]},
    )
    assert chain.state(m.shipment_key("SH-1"))["violation"] is False
    r = chain.ok("logger", "readings", {"shipment": "SH-1", "readings": [[t - 3_000, 120]]})
    alert = dict(r.events[0].attributes)
    assert r.events[0].type == "supply.cold_chain_violation"  # in the block of that reading
    assert alert["excursion_ms"] == "12000" and alert["notify"] == "acme-pharma,yifeng"
    assert {chain.state(m.unit_key(u))["status"] for u in units[:2]} == {m.QUARANTINED}
    assert chain.event("pharmacy", "receiving", ["CASE-1"], shipment="SH-1").code == Code.OK
    quarantined = chain.event("pharmacy", "dispensing", [units[0]])
    assert quarantined.code == Code.INVALID_STATE and "quarantined" in quarantined.log
    # a second shipment, kept cold
    ship2 = {"destination": "yifeng", "shipment": "SH-2", "device": did_of(chain.k["logger"])}
    assert chain.event("maker", "shipping", units[2:], **ship2).code == Code.OK
    t = chain.ledger.app.db.block_time_ms()
    chain.ok(
        "logger", "readings", {"shipment": "SH-2", "readings": [[t - 5000, 40], [t - 1000, 45]]}
    )
    assert chain.event("pharmacy", "receiving", units[2:], shipment="SH-2").code == Code.OK
    assert chain.event("pharmacy", "dispensing", [units[2]]).code == Code.OK
    # recall of the ingredient lot: the batch and every holder are notified
    r = chain.ok("api_supplier", "recall", {"ingredient_lot": "API-77", "reason": "endotoxin"})
    notice = dict(r.events[0].attributes)
    assert notice["lot"] == "L2401" and notice["notify"] == "yifeng"
    refused = chain.event("pharmacy", "dispensing", [units[3]])
    assert (
        refused.code == Code.INVALID_STATE
        and "recalled (ingredient lot API-77: endotoxin)" in refused.log
    )
    # the forward trace finds every unit with where it is
    db = chain.ledger.app.db

    def get(key: str) -> Any:
        raw = db.get(key)
        return None if raw is None else encoding.decode(raw)

    def scan(prefix: str) -> Any:
        return ((k, encoding.decode(v)) for k, v in db.scan(prefix, 100_000))

    trace = m.trace_ingredient(get, scan, "API-77")
    assert [(u["unit"], u["status"], u["holder"]) for u in trace["units"]] == [
        (units[0], m.QUARANTINED, "yifeng"),
        (units[1], m.QUARANTINED, "yifeng"),
        (units[2], m.DISPENSED, "yifeng"),
        (units[3], m.RECEIVED, "yifeng"),
    ]
    history = [step for step, _, _ in chain.state(m.unit_key(units[2]))["history"]]
    assert history == ["commissioning", "shipping", "receiving", "dispensing"]


def test_counterfeits_are_flagged(chain: Chain) -> None:
    units = chain.setup_batch()
    again = chain.event("maker", "commissioning", [units[0]], lot="L2401")
    assert again.code == Code.ALREADY_EXISTS and "counterfeit" in again.log
    assert again.events[0].type == "supply.counterfeit_suspected"
    ship = {"destination": "yifeng", "shipment": "SH-1", "device": did_of(chain.k["logger"])}
    chain.event("maker", "shipping", units, **ship)
    chain.event("pharmacy", "receiving", units, shipment="SH-1")
    assert chain.event("pharmacy", "dispensing", [units[0]]).code == Code.OK
    twice = chain.event("pharmacy", "dispensing", [units[0]])
    assert twice.code == Code.INVALID_STATE and "counterfeit" in twice.log
    flags = chain.ledger.app.db.audit(record_id=units[0])
    assert [
        f["attributes"]["reason"] for f in flags if f["kind"] == "supply.counterfeit_suspected"
    ] == ["serial commissioned twice", "serial dispensed twice"]


def test_every_impossible_transition_is_refused(chain: Chain) -> None:
    units = chain.setup_batch()
    logger = did_of(chain.k["logger"])
    cases = [
        ("pharmacy", "receiving", [units[0]], {"shipment": "NOPE"}, Code.NOT_FOUND),
        ("pharmacy", "dispensing", [units[0]], {}, Code.INVALID_STATE),  # not held there
        (
            "pharmacy",
            "shipping",
            [units[0]],
            {"destination": "hosp-a", "shipment": "X", "device": logger},
            Code.INVALID_STATE,
        ),
        (
            "maker",
            "shipping",
            [units[0]],
            {"destination": "nowhere", "shipment": "X", "device": logger},
            Code.NOT_FOUND,
        ),
        ("maker", "packing", [units[0]], {}, Code.INVALID_PAYLOAD),
        ("maker", "commissioning", [f"{GTIN}/NEW"], {"lot": "NOLOT"}, Code.NOT_FOUND),
        ("pharmacy", "commissioning", [f"{GTIN}/NEW"], {"lot": "L2401"}, Code.UNAUTHORIZED),
        ("maker", "dispensing", ["06901234567891/S1"], {}, Code.INVALID_PAYLOAD),  # check digit
    ]
    for who, step, epcs, extra, code in cases:
        r = chain.event(who, step, epcs, **extra)
        assert r.code == code, (step, r.log)
    ship = {"destination": "yifeng", "shipment": "SH-1", "device": logger}
    assert chain.event("maker", "shipping", [units[0]], **ship).code == Code.OK
    wrong_receiver = chain.event("other_pharmacy", "receiving", [units[0]], shipment="SH-1")
    assert wrong_receiver.code == Code.UNAUTHORIZED
    not_in_shipment = chain.event("pharmacy", "receiving", [units[1]], shipment="SH-1")
    assert (
        not_in_shipment.code == Code.INVALID_STATE
        and "no receipt without shipment" in not_in_shipment.log
    )
    assert (
        chain.event("maker", "shipping", [units[0]], **ship | {"shipment": "SH-2"}).code
        == Code.INVALID_STATE
    )  # already in transit
    replay = chain.run(
        "maker",
        "record_event",
        {"event_hash": evh(1), "biz_step": "destroying", "event_time_ms": 1, "epcs": [units[1]]},
    )
    assert replay.code == Code.DUPLICATE_TX  # the same EPCIS event twice
    stranger = chain.run("pharmacy", "readings", {"shipment": "SH-1", "readings": [[1, 50]]})
    assert stranger.code == Code.UNAUTHORIZED


def test_expired_units_and_batch_recall(chain: Chain) -> None:
    chain.ok("api_supplier", "register_ingredient", {"lot_id": "API-1", "substance": "x"})
    chain.ok("maker", "register_product", {"gtin": GTIN, "name": "Tablets", "kind": "drug"})
    chain.ok(
        "maker",
        "register_batch",
        {"gtin": GTIN, "lot": "OLD", "expiry": "2020-01-01", "ingredients": ["API-1"]},
    )
    chain.ok(
        "maker",
        "register_batch",
        {"gtin": GTIN, "lot": "NEW", "expiry": "2040-01-01", "ingredients": ["API-1"]},
    )
    logger = did_of(chain.k["logger"])
    for lot in ("OLD", "NEW"):
        unit = f"{GTIN}/{lot}-1"
        chain.event("maker", "commissioning", [unit], lot=lot)
        chain.event(
            "maker", "shipping", [unit], destination="yifeng", shipment=f"S-{lot}", device=logger
        )
        chain.event("pharmacy", "receiving", [unit], shipment=f"S-{lot}")
    expired = chain.event("pharmacy", "dispensing", [f"{GTIN}/OLD-1"])
    assert expired.code == Code.INVALID_STATE and "expired" in expired.log
    assert (
        chain.run("pharmacy", "recall", {"gtin": GTIN, "lot": "NEW", "reason": "x"}).code
        == Code.UNAUTHORIZED
    )
    chain.ok("regulator", "recall", {"gtin": GTIN, "lot": "NEW", "reason": "mislabelled"})
    recalled = chain.event("pharmacy", "dispensing", [f"{GTIN}/NEW-1"])
    assert recalled.code == Code.INVALID_STATE and "recalled" in recalled.log


def test_device_fault_traced_to_batch_maintenance_and_procedures(chain: Chain) -> None:
    """The `devices` contract: a pump from registration to a fault, with the procedure
    it served, under its own namespace; the device page reads those keys."""
    from fastapi.testclient import TestClient

    from medchain.consensus.solo import SoloEngine
    from medchain.contracts.devices import model as devices
    from medchain.gateway.app import create_app

    k, ledger = chain.k, chain.ledger

    def device_tx(who: str, action: str, payload: dict[str, Any]) -> Any:
        return ledger.run(k[who], action, payload, "devices")

    def device_ok(who: str, action: str, payload: dict[str, Any]) -> None:
        result = device_tx(who, action, payload)
        assert result.code == Code.OK, result.log

    chain.ok(
        "maker",
        "register_product",
        {"gtin": DEVICE_GTIN, "name": "Infusion pump", "kind": "device"},
    )
    udi = f"{DEVICE_GTIN}/PUMP-9"
    assert chain.run("maker", "register_device", {"udi": udi, "lot": "P"}).code == (
        Code.UNKNOWN_ACTION
    )  # devices are their own contract now
    device_ok("maker", "register_device", {"udi": udi, "lot": "P-2024-03"})
    device_ok("maker", "register_device", {"udi": f"{DEVICE_GTIN}/PUMP-10", "lot": "P-2024-03"})
    device_ok("maker", "install_device", {"udi": udi, "owner": "hosp-a"})
    device_ok("hospital", "device_event", {"udi": udi, "kind": "maintenance", "note": "calibrated"})
    patient = crypto.generate_keypair()
    ledger.add_patient(patient)
    assert (
        ledger.run(
            k["hospital"],
            "register",
            {
                "record_id": "proc-1",
                "patient": did_of(patient),
                "resource_type": "Procedure",
                "cid": "b" + "a" * 58,
                "content_hash": bytes(32),
            },
            "records",
        ).code
        == Code.OK
    )
    device_ok("hospital", "device_used", {"udi": udi, "record_id": "proc-1"})
    device_ok("hospital", "device_event", {"udi": udi, "kind": "fault", "note": "occlusion alarm"})
    assert (
        device_tx("maker", "device_event", {"udi": udi, "kind": "fault", "note": "x"}).code
        == Code.UNAUTHORIZED
    )  # no longer the maker's
    bad_udi = device_tx("maker", "register_device", {"udi": f"{GTIN[:-1]}0/X", "lot": "L"})
    assert bad_udi.code == Code.INVALID_PAYLOAD and "check digit" in bad_udi.log
    device = chain.state(devices.device_key(udi))
    assert device["lot"] == "P-2024-03"
    assert [e[0] for e in device["events"]] == ["installed", "maintenance", "fault"]
    uses = [key.rsplit("/", 1)[1] for key, _ in ledger.app.db.scan(devices.use_prefix(udi), 10)]
    assert uses == ["proc-1"]
    assert chain.state(f"supply/device/{udi}") is None  # nothing left in supply's namespace
    engine = SoloEngine(ledger.app, block_interval=0.01)
    engine.start()
    try:
        with TestClient(create_app(engine)) as client:
            path = f"/v1/supply/devices/{udi}"
            page = signed_get(client, k["hospital"], path).json()
            assert page["procedure_records"] == ["proc-1"]
            assert page["same_lot_devices"] == [f"{DEVICE_GTIN}/PUMP-10"]
            assert signed_get(client, k["pharmacy"], path).status_code == 404  # not its device
    finally:
        engine.stop()


def test_gtin_check_digit() -> None:
    assert gtin_ok(GTIN) and gtin_ok(DEVICE_GTIN)
    assert not gtin_ok("06901234567891") and not gtin_ok("0690123456789")


def test_consumer_scan_shows_excursion_recall_and_counterfeit(chain: Chain) -> None:
    from fastapi.testclient import TestClient

    from medchain.consensus.solo import SoloEngine
    from medchain.gateway.app import create_app

    units = chain.setup_batch(serials=3)
    logger = did_of(chain.k["logger"])
    chain.event(
        "maker", "shipping", units[:1], destination="yifeng", shipment="SH-1", device=logger
    )
    t = chain.ledger.app.db.block_time_ms()
    chain.ok(
        "logger",
        "readings",
        {"shipment": "SH-1", "readings": [[t - 30_000, 150], [t - 1_000, 150]]},
    )
    chain.event("pharmacy", "receiving", units[:1], shipment="SH-1")
    chain.event(
        "maker", "shipping", units[1:], destination="yifeng", shipment="SH-2", device=logger
    )
    chain.event("pharmacy", "receiving", units[1:], shipment="SH-2")
    chain.event("pharmacy", "dispensing", [units[1]])
    chain.event("pharmacy", "dispensing", [units[1]])  # a copy of the same pack
    engine = SoloEngine(chain.ledger.app, block_interval=0.01)
    engine.start()
    try:
        with TestClient(create_app(engine)) as client:
            gtin, serial = units[2].split("/")
            good = client.get(
                f"/01/{gtin}/10/L2401/21/{serial}", headers={"Accept": "application/json"}
            ).json()
            assert good["verdict"] == "ok" and good["cold_chain"] == "ok"
            assert [s["step"] for s in good["life_cycle"]] == [
                "commissioning",
                "shipping",
                "receiving",
            ]
            assert good["life_cycle"][0]["by"] == "manufacturer"
            assert "acme-pharma" not in str(good)  # no organisation ids for the public
            hot = client.get(f"/01/{units[0].replace('/', '/21/')}").text
            assert "Do not use this pack" in hot and "temperature excursion" in hot
            copied = client.get(f"/v1/supply/units/{units[1]}").json()
            assert copied["counterfeit_flags"] == ["serial dispensed twice"]
            chain.ok("api_supplier", "recall", {"ingredient_lot": "API-77", "reason": "endotoxin"})
            recalled = client.get(f"/v1/supply/units/{units[2]}").json()
            assert recalled["recalled"] and recalled["verdict"] == "do not use"
            assert "endotoxin" in recalled["warnings"][0]
            both = client.get(f"/01/{units[0].replace('/', '/21/')}").text  # one pack, both
            assert "temperature excursion in transit" in both and "endotoxin" in both
            wrong_lot = client.get(
                f"/01/{gtin}/10/OTHER/21/{serial}", headers={"Accept": "application/json"}
            ).json()
            assert any("the code says lot OTHER" in w for w in wrong_lot["warnings"])
            missing = client.get(f"/01/{gtin}/21/NOPE")
            assert (
                missing.status_code == 404 and "counterfeit" in missing.json()["error"]["message"]
            )
            assert client.get("/v1/supply/trace/API-77").status_code == 401  # holders
            trace = signed_get(client, chain.k["api_supplier"], "/v1/supply/trace/API-77")
            assert len(trace.json()["units"]) == 3
    finally:
        engine.stop()


def test_pure_calendar_helpers_agree_with_datetime() -> None:
    import random
    from datetime import UTC, date, datetime

    rng = random.Random(3)
    for _ in range(5000):
        ms = rng.randrange(0, 4_102_444_800_000)
        assert m.block_date(ms) == datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()
    for _ in range(2000):
        text = (
            f"{rng.randrange(1900, 2100):04d}-{rng.randrange(0, 14):02d}-{rng.randrange(0, 33):02d}"
        )
        try:
            date.fromisoformat(text)
            real = True
        except ValueError:
            real = False
        assert m.valid_date(text) == real, text
    assert not m.valid_date("2030-1-01") and not m.valid_date("")


def epcis_document(events: list[dict[str, Any]]) -> str:
    import json

    return json.dumps(
        {
            "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2023-11-14T08:00:00+08:00",
            "epcisBody": {"eventList": events},
        }
    )


def test_epcis_documents_are_recorded_by_their_standard_hash(chain: Chain) -> None:
    from medchain.gs1 import epcis
    from medchain.gs1.ledger import StepContext, record_event_calls

    chain.ok("api_supplier", "register_ingredient", {"lot_id": "API-77", "substance": "insulin"})
    chain.ok("maker", "register_product", {"gtin": GTIN, "name": "Insulin pen", "kind": "drug"})
    chain.ok(
        "maker",
        "register_batch",
        {"gtin": GTIN, "lot": "L1", "expiry": "2030-12-31", "ingredients": ["API-77"]},
    )
    sgtins = [f"urn:epc:id:sgtin:6901234.056789.S{i}" for i in range(3)]
    doc = epcis_document(
        [
            {
                "type": "ObjectEvent",
                "action": "ADD",
                "bizStep": "commissioning",
                "disposition": "active",
                "epcList": sgtins,
                "eventTime": "2023-11-14T08:00:00+08:00",
                "eventTimeZoneOffset": "+08:00",
                "readPoint": {"id": "urn:epc:id:sgln:6901234.00001.0"},
            },
            {
                "type": "ObjectEvent",
                "action": "OBSERVE",
                "bizStep": "sensor_reporting",
                "epcList": sgtins[:1],
                "eventTime": "2023-11-14T08:05:00+08:00",
                "eventTimeZoneOffset": "+08:00",
            },
        ]
    )
    calls, notes = record_event_calls(doc, StepContext(lot="L1"))
    assert len(calls) == 1 and "sensor_reporting" in notes[0]
    assert calls[0]["epcs"] == [f"{GTIN}/S{i}" for i in range(3)]
    assert calls[0]["event_hash"] == epcis.event_hashes(doc)[0]
    chain.ok("maker", "record_event", calls[0])
    recorded = chain.state(m.event_key(calls[0]["event_hash"]))
    assert recorded["biz_step"] == "commissioning" and recorded["units"] == 3
    assert chain.state(m.unit_key(f"{GTIN}/S0"))["status"] == m.COMMISSIONED
    with pytest.raises(ValueError, match="needs --lot"):
        record_event_calls(doc, StepContext())


def test_supply_from_the_cli(chain: Chain, tmp_path: Path) -> None:
    from support.servers import free_port
    from typer.testing import CliRunner

    from medchain.cli import app
    from medchain.consensus.solo import SoloEngine
    from medchain.node import GatewayServer
    from medchain.sdk.keystore import Keystore

    home = tmp_path / "home"
    Keystore(home / "keys").save("maker", chain.k["maker"], "test-passphrase", 1000)
    chain.ok("api_supplier", "register_ingredient", {"lot_id": "API-77", "substance": "insulin"})
    engine = SoloEngine(chain.ledger.app, block_interval=0.02)
    engine.start()
    server = GatewayServer(engine, port=free_port())
    server.start()
    runner = CliRunner(env={"MEDCHAIN_PASSPHRASE": "test-passphrase"})
    at = ["--key", "maker", "--home", str(home), "--node", server.url]
    try:
        r = runner.invoke(
            app,
            [
                "supply",
                "product",
                "--gtin",
                GTIN,
                "--name",
                "Insulin pen",
                "--temp-min",
                "2",
                "--temp-max",
                "8",
                "--max-excursion-min",
                "15",
                *at,
            ],
        )
        assert r.exit_code == 0, r.output
        r = runner.invoke(
            app,
            [
                "supply",
                "batch",
                "--gtin",
                GTIN,
                "--lot",
                "L1",
                "--expiry",
                "2030-12-31",
                "--ingredients",
                "API-77",
                *at,
            ],
        )
        assert r.exit_code == 0, r.output
        doc = tmp_path / "commission.jsonld"
        doc.write_text(
            epcis_document(
                [
                    {
                        "type": "ObjectEvent",
                        "action": "ADD",
                        "bizStep": "commissioning",
                        "epcList": ["urn:epc:id:sgtin:6901234.056789.S1"],
                        "eventTime": "2023-11-14T08:00:00+08:00",
                        "eventTimeZoneOffset": "+08:00",
                    }
                ]
            )
        )
        r = runner.invoke(app, ["supply", "record", str(doc), "--lot", "L1", *at])
        assert r.exit_code == 0 and "commissioning: 1 EPC" in r.output, r.output
        link = f"https://id.gs1.org/01/{GTIN}/10/L1/21/S1"
        r = runner.invoke(app, ["supply", "check", link, "--node", server.url])
        assert r.exit_code == 0 and '"verdict": "ok"' in r.output, r.output
        r = runner.invoke(app, ["supply", "check", f"(01){GTIN[:-1]}3(21)S1", "--node", server.url])
        assert r.exit_code == 2 and "check digit" in r.output
        r = runner.invoke(app, ["supply", "trace", "API-77", *at])
        assert r.exit_code == 0 and "commissioned" in r.output
        svg = tmp_path / "qr.svg"
        r = runner.invoke(app, ["supply", "qr", link, "--out", str(svg), "--domain", server.url])
        assert r.exit_code == 0 and svg.read_text().lstrip().startswith("<svg")
        product = chain.state(m.product_key(GTIN))
        assert (product["temp_min_c10"], product["max_excursion_ms"]) == (20, 900_000)
    finally:
        server.stop()
        engine.stop()


# -- EPCIS as partners send it (issue 15, point 6) -----------------------------------------


def test_a_recall_is_lifted_by_the_manufacturer_or_a_regulator_only(chain: Chain) -> None:
    chain.setup_batch("L7", serials=1)
    batch = {"gtin": GTIN, "lot": "L7"}
    r = chain.run("maker", "lift_recall", batch | {"reason": "not recalled"})
    assert r.code == Code.INVALID_STATE and "is not recalled" in r.log
    chain.ok("maker", "recall", batch | {"reason": "label misprint"})
    r = chain.run("pharmacy", "lift_recall", batch | {"reason": "mine"})
    assert r.code == Code.UNAUTHORIZED
    r = chain.ok("regulator", "lift_recall", batch | {"reason": "label was correct"})
    [lifted] = [e for e in r.events if e.type == "supply.recall_lifted"]
    assert dict(lifted.attributes)["reason"] == "label was correct"
    stored = chain.state(m.batch_key(GTIN, "L7"))
    assert stored["status"] == m.ACTIVE and "recall_reason" not in stored


def test_xml_and_its_json_ld_twin_give_the_same_ledger_calls() -> None:
    from support.ledger import DATA

    from medchain.gs1.ledger import StepContext, record_event_calls

    twins = DATA / "epcis" / "epcisDocWithVariousEventTypes"
    context = StepContext(lot="L1", destination="hosp-a", shipment="SH-1", device="did:x")
    from_xml = record_event_calls(twins.with_suffix(".xml").read_bytes(), context, "xml")
    from_json = record_event_calls(twins.with_suffix(".jsonld").read_bytes(), context)
    assert from_xml == from_json
    assert [c["event_hash"] for c in from_xml[0]] and len(from_xml[1]) > 0


def epcis_xml(*events: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:2" schemaVersion="2.0"'
        ' creationDate="2023-11-14T08:00:00+08:00"><EPCISBody><EventList>'
        + "".join(events)
        + "</EventList></EPCISBody></epcis:EPCISDocument>"
    )


def said(result: Any, text: str) -> bool:
    """Whether the CLI printed `text` (the console wraps long lines anywhere)."""
    return "".join(text.split()) in "".join(result.output.split())


def xml_event(time: str, inner: str, action: str = "OBSERVE") -> str:
    return (
        f"<ObjectEvent><eventTime>{time}</eventTime>"
        "<eventTimeZoneOffset>+08:00</eventTimeZoneOffset>"
        "<epcList><epc>urn:epc:id:sgtin:6901234.056789.S1</epc></epcList>"
        f"<action>{action}</action>{inner}</ObjectEvent>"
    )


def test_epcis_xml_from_the_cli_records_recalls_and_lifts(chain: Chain, tmp_path: Path) -> None:
    """A partner's XML is recorded under the hash of its JSON-LD twin; a persistent
    disposition that sets `recalled` recalls the pack's batch, one that unsets it lifts
    the recall; a bad event is named by its number counted from 1 and nothing is sent."""
    from support.servers import free_port
    from typer.testing import CliRunner

    from medchain.cli import app
    from medchain.consensus.solo import SoloEngine
    from medchain.gs1 import epcis
    from medchain.node import GatewayServer
    from medchain.sdk.keystore import Keystore

    home = tmp_path / "home"
    Keystore(home / "keys").save("maker", chain.k["maker"], "test-passphrase", 1000)
    chain.ok("api_supplier", "register_ingredient", {"lot_id": "API-77", "substance": "insulin"})
    chain.ok("maker", "register_product", {"gtin": GTIN, "name": "Insulin pen", "kind": "drug"})
    batch = {"gtin": GTIN, "lot": "L1", "expiry": "2030-12-31", "ingredients": ["API-77"]}
    chain.ok("maker", "register_batch", batch)
    engine = SoloEngine(chain.ledger.app, block_interval=0.02)
    engine.start()
    server = GatewayServer(engine, port=free_port())
    server.start()
    runner = CliRunner(env={"MEDCHAIN_PASSPHRASE": "test-passphrase"})
    at = ["--key", "maker", "--home", str(home), "--node", server.url]
    commissioning = "<bizStep>urn:epcglobal:cbv:bizstep:commissioning</bizStep>"
    twin = epcis_document(
        [
            {
                "type": "ObjectEvent",
                "eventTime": "2023-11-14T08:00:00+08:00",
                "eventTimeZoneOffset": "+08:00",
                "epcList": ["urn:epc:id:sgtin:6901234.056789.S1"],
                "action": "ADD",
                "bizStep": "commissioning",
            }
        ]
    )

    def record(name: str, text: str) -> Any:
        path = tmp_path / name
        path.write_text(text)
        return runner.invoke(app, ["supply", "record", str(path), *at])

    try:
        xml = epcis_xml(xml_event("2023-11-14T08:00:00+08:00", commissioning, "ADD"))
        [twin_hash] = epcis.event_hashes(twin)
        assert epcis.event_hashes(xml, "xml") == [twin_hash]
        path = tmp_path / "commission.xml"
        path.write_text(xml)
        r = runner.invoke(app, ["supply", "record", str(path), "--lot", "L1", *at])
        assert r.exit_code == 0 and said(r, f"commissioning: 1 EPC(s), {twin_hash}"), r.output
        assert chain.state(m.event_key(twin_hash))["biz_step"] == "commissioning"

        def recall_event(time: str, which: str) -> str:
            disposition = f"<{which}>https://ref.gs1.org/cbv/Disp-recalled</{which}>"
            return xml_event(time, f"<persistentDisposition>{disposition}</persistentDisposition>")

        r = record("recall.xml", epcis_xml(recall_event("2023-11-15T08:00:00+08:00", "set")))
        assert r.exit_code == 0 and said(r, f"Recalled {GTIN}/L1"), r.output
        recalled = chain.state(m.batch_key(GTIN, "L1"))
        assert recalled["status"] == m.RECALLED
        assert recalled["recall_reason"].startswith("EPCIS event 1 sets recalled (ni:///")
        r = record("again.xml", epcis_xml(recall_event("2023-11-15T09:00:00+08:00", "set")))
        assert r.exit_code == 0 and said(r, "already recalled"), r.output

        r = record("lift.xml", epcis_xml(recall_event("2023-11-16T08:00:00+08:00", "unset")))
        assert r.exit_code == 0 and said(r, f"Lifted the recall of {GTIN}/L1"), r.output
        assert chain.state(m.batch_key(GTIN, "L1"))["status"] == m.ACTIVE

        bad = xml_event("2023-11-17T08:00:00", "")  # no offset; the recall before it is not sent
        r = record("bad.xml", epcis_xml(recall_event("2023-11-17T07:00:00+08:00", "set"), bad))
        assert r.exit_code == 2 and said(r, "event 2: eventTime must be ISO 8601"), r.output
        assert said(r, "nothing was recorded")
        assert chain.state(m.batch_key(GTIN, "L1"))["status"] == m.ACTIVE
    finally:
        server.stop()
        engine.stop()


def test_governance_registers_who_a_gs1_location_or_party_belongs_to(chain: Chain) -> None:
    """Only a consortium admin or a regulator says which organisation a GLN is (the
    chain cannot check GS1's allocation, so an organisation cannot claim another's);
    registering it again moves it, and the per-organisation index follows."""
    sgln = {"location": "urn:epc:id:sgln:6901234.00001.0", "org_id": "acme-pharma"}
    r = chain.run("maker", "register_location", sgln)  # the org itself may not
    assert r.code == Code.UNAUTHORIZED, r.log
    r = chain.run("regulator", "register_location", {**sgln, "org_id": "no-such-org"})
    assert r.code == Code.NOT_FOUND
    r = chain.run("regulator", "register_location", {**sgln, "location": "urn:epc:id:sgln:1.2.3"})
    assert r.code == Code.INVALID_PAYLOAD
    chain.ok("regulator", "register_location", sgln)
    assert chain.state(m.location_key(sgln["location"]))["org"] == "acme-pharma"
    assert chain.state(m.org_location_key("acme-pharma", sgln["location"])) is not None
    assert chain.run("regulator", "register_location", sgln).code == Code.ALREADY_EXISTS
    moved = chain.ok("regulator", "register_location", {**sgln, "org_id": "yifeng"})
    assert dict(moved.events[0].attributes)["previous"] == "acme-pharma"
    assert chain.state(m.location_key(sgln["location"]))["org"] == "yifeng"
    assert chain.state(m.org_location_key("acme-pharma", sgln["location"])) is None
    assert chain.state(m.org_location_key("yifeng", sgln["location"])) is not None
    link = {"location": "https://id.gs1.org/417/6901234000027", "org_id": "hosp-a"}
    chain.ok("regulator", "register_location", link)
