"""EPCIS as partners send it, at the edge (issue 15, point 6): documents captured over
the edge's HTTP API, recorded on chain by their standard hashes, kept sealed at the
recording organisation's edge and served to the partners the chain names.

Real node (solo engine on a SQLite file), real gateway and edge over uvicorn, real
SM2-signed requests; nothing mocked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.ledger import CHAIN_ID, Ledger, did_of
from support.servers import free_port
from support.supply_chain import GTIN, Chain

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.contracts.supply import model as m
from medchain.edge import epcis_capture
from medchain.edge.custodian import CustodianEdge
from medchain.edge.epcis_capture import SERVED, EpcisDocuments
from medchain.edge.vault import Vault
from medchain.gateway.limits import MAX_EPCIS_BYTES
from medchain.gs1 import epcis
from medchain.gs1.ledger import StepContext, plan_document
from medchain.node import EdgeServer, GatewayServer
from medchain.sdk.client import Client
from medchain.sdk.signing import send_signed, sign_request

pytestmark = pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")

CAPTURE = "/edge/v1/epcis/capture"
XML, JSONLD = "application/xml", "application/ld+json"
CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
SGTIN = "urn:epc:id:sgtin:6901234.056789."  # + serial: a pack of GTIN
LGTIN = "urn:epc:class:lgtin:6901234.056789."  # + lot: a batch of GTIN


@dataclass
class World:
    chain: Chain
    node: Client
    edge: CustodianEdge
    url: str
    keys: dict[str, crypto.KeyPair]
    documents: EpcisDocuments
    gateway: str

    def capture(
        self, who: str, body: bytes | str, media: str = JSONLD, **params: str
    ) -> httpx.Response:
        content = body.encode() if isinstance(body, str) else body
        return send_signed(
            self.keys[who],
            CHAIN_ID,
            "POST",
            self.url,
            CAPTURE,
            params or None,
            content,
            headers={"Content-Type": media},
        )

    def get(self, who: str, path: str, **params: str) -> httpx.Response:
        return send_signed(self.keys[who], CHAIN_ID, "GET", self.url, path, params or None)

    def state(self, key: str) -> Any:
        return self.node.value(key)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    root = crypto.generate_keypair()
    ledger = Ledger(tmp_path / "chain.db", root)
    chain = Chain(ledger)
    keys = dict(chain.k)
    keys["scanner"] = crypto.generate_keypair()  # a device of the maker: captures events
    ledger.add_staff(chain.k["maker"], "acme-pharma", keys["scanner"], ["device"])
    keys["stranger"] = crypto.generate_keypair()  # any self-registered key
    ledger.add_patient(keys["stranger"])
    keys["unknown"] = crypto.generate_keypair()  # a key the chain has never seen
    chain.ok("api_supplier", "register_ingredient", {"lot_id": "API-77", "substance": "insulin"})
    chain.ok("maker", "register_product", {"gtin": GTIN, "name": "Insulin pen", "kind": "drug"})
    batch = {"gtin": GTIN, "lot": "L1", "expiry": "2030-12-31", "ingredients": ["API-77"]}
    chain.ok("maker", "register_batch", batch)
    engine = SoloEngine(ledger.app, block_interval=0.02)
    engine.start()
    maker = chain.k["maker"]
    gateway = GatewayServer(
        engine, port=free_port(), operators=frozenset({(maker.suite, maker.public)})
    )
    gateway.start()
    node = Client(gateway.url, key=maker)
    edge = CustodianEdge(Vault(tmp_path / "vault", maker), maker, node)
    server = EdgeServer(edge, "127.0.0.1", free_port(), sync_interval=0.1)
    server.start()
    documents = server.server.config.app.state.epcis
    world = World(chain, node, edge, server.url, keys, documents, gateway.url)
    try:
        yield world
    finally:
        server.stop()
        gateway.stop()
        engine.stop()


def json_document(*events: dict[str, Any]) -> str:
    return json.dumps(
        {
            "@context": [CONTEXT],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2023-11-14T08:00:00+08:00",
            "epcisBody": {"eventList": list(events)},
        }
    )


def json_event(
    time: str, serials: list[str], action: str = "OBSERVE", **fields: Any
) -> dict[str, Any]:
    return {
        "type": "ObjectEvent",
        "eventTime": time,
        "eventTimeZoneOffset": "+08:00",
        "epcList": [SGTIN + s for s in serials],
        "action": action,
        **fields,
    }


def xml_document(*events: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:2" schemaVersion="2.0"'
        ' creationDate="2023-11-14T08:00:00+08:00"><EPCISBody><EventList>'
        + "".join(events)
        + "</EventList></EPCISBody></epcis:EPCISDocument>"
    )


def xml_event(time: str, serials: list[str], inner: str = "", action: str = "OBSERVE") -> str:
    epcs = "".join(f"<epc>{SGTIN}{s}</epc>" for s in serials)
    return (
        f"<ObjectEvent><eventTime>{time}</eventTime>"
        f"<eventTimeZoneOffset>+08:00</eventTimeZoneOffset><epcList>{epcs}</epcList>"
        f"<action>{action}</action>{inner}</ObjectEvent>"
    )


def commissioning_xml(time: str, serials: list[str]) -> str:
    step = "<bizStep>urn:epcglobal:cbv:bizstep:commissioning</bizStep>"
    return xml_document(xml_event(time, serials, step, "ADD"))


def commissioning_json(time: str, serials: list[str]) -> str:
    return json_document(json_event(time, serials, "ADD", bizStep="commissioning"))


def recall_xml(time: str, which: str) -> str:
    inner = (
        "<persistentDisposition>"
        f"<{which}>https://ref.gs1.org/cbv/Disp-recalled</{which}>"
        "</persistentDisposition>"
    )
    return xml_document(xml_event(time, ["S1"], inner))


def error(r: httpx.Response) -> dict[str, Any]:
    found: dict[str, Any] = r.json()["error"]
    return found


# -- capture ------------------------------------------------------------------------------


def test_xml_and_its_json_ld_twin_are_recorded_by_the_same_hash(world: World) -> None:
    """A document captured as XML is recorded under the hash of its JSON-LD twin, so the
    twin sent afterwards is refused by the chain as the same event (and not kept); the
    same the other way round. Each kept document is served back byte for byte."""
    as_xml, as_json = (
        commissioning_xml("2023-11-14T08:00:00+08:00", ["S1"]),
        commissioning_json("2023-11-14T08:00:00+08:00", ["S1"]),
    )
    [twin_hash] = epcis.event_hashes(as_json)
    r = world.capture("scanner", as_xml, XML, lot="L1")
    assert r.status_code == 201, r.text
    out = r.json()
    assert [e["event_hash"] for e in out["events"]] == [twin_hash]
    assert out["events"][0]["recorded"] and out["refused"] == []
    assert r.headers["location"] == f"/edge/v1/epcis/documents/{out['document_id']}"
    recorded = world.state(m.event_key(twin_hash))
    assert recorded["org"] == "acme-pharma" and recorded["biz_step"] == "commissioning"
    twin = world.capture("scanner", as_json, JSONLD, lot="L1")
    assert twin.status_code == 409, twin.text
    assert "already recorded" in error(twin)["message"]
    assert error(twin)["message"].startswith("the chain recorded nothing of this document: event 1")
    assert world.documents.store.count() == 1

    # JSON-LD first (as application/json), then its XML twin (as text/xml)
    second_json = commissioning_json("2023-11-14T09:00:00+08:00", ["S2"])
    second_xml = commissioning_xml("2023-11-14T09:00:00+08:00", ["S2"])
    assert epcis.event_hashes(second_xml, "xml") == epcis.event_hashes(second_json)
    r2 = world.capture("maker", second_json, "application/json; charset=utf-8", lot="L1")
    assert r2.status_code == 201, r2.text
    assert r2.json()["events"][0]["event_hash"] == epcis.event_hashes(second_json)[0]
    twin2 = world.capture("maker", second_xml, "text/xml", lot="L1")
    assert twin2.status_code == 409 and "already recorded" in error(twin2)["message"]
    assert world.documents.store.count() == 2
    assert world.state(m.unit_key(f"{GTIN}/S2"))["status"] == m.COMMISSIONED

    for answer, sent, media in ((r, as_xml, XML), (r2, second_json, JSONLD)):
        got = world.get("maker", answer.headers["location"])
        assert got.status_code == 200, got.text
        assert got.content == sent.encode() and got.headers["content-type"].startswith(media)


def test_a_persistent_disposition_recalls_and_lifts_through_the_endpoint(world: World) -> None:
    r = world.capture(
        "maker", commissioning_xml("2023-11-14T08:00:00+08:00", ["S1"]), XML, lot="L1"
    )
    assert r.status_code == 201, r.text
    recall = world.capture("maker", recall_xml("2023-11-15T08:00:00+08:00", "set"), XML)
    assert recall.status_code == 201, recall.text
    [applied] = recall.json()["recalls"]
    assert (applied["event"], applied["action"], applied["lot"]) == (1, "recall", "L1")
    [event] = recall.json()["events"]  # anchored by the recall tx, whose reason names it
    assert event["recorded"] and event["height"] == applied["height"]
    assert "batch of event 1" in recall.json()["parties"]["acme-pharma"]
    batch = world.state(m.batch_key(GTIN, "L1"))
    assert batch["status"] == m.RECALLED
    assert batch["recall_reason"].startswith("EPCIS event 1 sets recalled (ni:///sha-256;")
    # the same recall again changes nothing, and says so
    again = world.capture("maker", recall_xml("2023-11-15T09:00:00+08:00", "set"), XML)
    assert again.status_code == 409, again.text
    assert "is already recalled" in error(again)["message"]

    lift = json_document(
        json_event(
            "2023-11-16T08:00:00+08:00",
            [],
            quantityList=[{"epcClass": LGTIN + "L1", "quantity": 10, "uom": "EA"}],
            persistentDisposition={"unset": ["https://ref.gs1.org/cbv/Disp-recalled"]},
        )
    )
    lifted = world.capture("maker", lift, JSONLD)
    assert lifted.status_code == 201, lifted.text
    assert [(x["action"], x["gtin"], x["lot"]) for x in lifted.json()["recalls"]] == [
        ("lift_recall", GTIN, "L1")
    ]
    assert world.state(m.batch_key(GTIN, "L1"))["status"] == m.ACTIVE
    assert world.documents.store.count() == 3  # the commissioning, the recall and the lift


def test_what_the_chain_refuses_is_reported_and_stops_the_recalls_after_it(world: World) -> None:
    """Event 1 is recorded, the chain refuses event 2 (a pack never commissioned), so the
    recall in event 3 is not applied; the document is kept (event 1's hash anchors it)
    and the answer says which event was refused and why."""
    ship = {"destination": "yifeng", "shipment": "SH-9", "device": did_of(world.keys["logger"])}
    doc = json_document(
        json_event("2023-11-14T08:00:00+08:00", ["S5"], "ADD", bizStep="commissioning"),
        json_event("2023-11-14T09:00:00+08:00", ["S9"], bizStep="shipping"),
        json_event(
            "2023-11-14T10:00:00+08:00",
            ["S5"],
            persistentDisposition={"set": ["https://ref.gs1.org/cbv/Disp-recalled"]},
        ),
    )
    r = world.capture("maker", doc, JSONLD, lot="L1", **ship)
    assert r.status_code == 201, r.text
    out = r.json()
    assert [(e["event"], e["recorded"]) for e in out["events"]] == [
        (1, True),
        (2, False),
        (3, False),
    ]
    [why] = out["refused"]
    assert why.startswith("event 2: the chain refused it: ") and "S9" in why, why
    assert out["recalls"] == []
    assert world.state(m.batch_key(GTIN, "L1"))["status"] == m.ACTIVE
    assert world.state(m.unit_key(f"{GTIN}/S5"))["status"] == m.COMMISSIONED
    assert world.get("maker", r.headers["location"]).content == doc.encode()


def test_the_document_is_sealed_at_rest_and_a_changed_blob_is_never_served(
    world: World,
) -> None:
    """The document's content is only in its sealed blob; what the store indexes in the
    clear (EPCs, hashes, steps, parties, as the vault indexes records) is the metadata
    a read is decided on, not the document."""
    marker = "https://example.org/disposition/only-in-the-document-7f3a9c41"
    doc = json_document(
        json_event(
            "2023-11-14T08:00:00+08:00", ["S1"], "ADD", bizStep="commissioning", disposition=marker
        )
    )
    r = world.capture("maker", doc, JSONLD, lot="L1")
    assert r.status_code == 201, r.text
    root = world.documents.store.root
    for path in root.rglob("*"):
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), path  # neither blob nor database
    assert marker.encode() in world.get("maker", r.headers["location"]).content
    [blob] = (root / "blobs").iterdir()
    sealed = bytearray(blob.read_bytes())
    sealed[-1] ^= 1
    blob.write_bytes(bytes(sealed))
    got = world.get("maker", r.headers["location"])
    assert got.status_code == 500 and error(got)["code"] == "TAMPERED_BLOB", got.text
    assert marker.encode() not in got.content


def test_a_long_document_is_recorded_in_order_batch_after_batch(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commissioning, packing into a case, then shipping the case: with two txs a
    batch, each step lands in a later block than the one it depends on."""
    monkeypatch.setattr(epcis_capture, "CALLS_PER_BATCH", 2)
    ship = {"destination": "yifeng", "shipment": "SH-5", "device": did_of(world.keys["logger"])}
    case = "urn:epc:id:sscc:6901234.0000000001"
    packing = json_event("2023-11-14T09:00:00+08:00", ["S1", "S2"], "ADD", bizStep="packing")
    packing = {"type": "AggregationEvent", "parentID": case, "childEPCs": packing["epcList"]} | {
        k: v for k, v in packing.items() if k not in ("type", "epcList")
    }
    doc = json_document(
        json_event("2023-11-14T08:00:00+08:00", ["S1", "S2"], "ADD", bizStep="commissioning"),
        json_event("2023-11-14T08:30:00+08:00", ["S3"], "ADD", bizStep="commissioning"),
        packing,
        {
            **json_event("2023-11-14T10:00:00+08:00", [], bizStep="shipping"),
            "epcList": [case],
        },
        json_event("2023-11-14T10:30:00+08:00", ["S3"], "DELETE", bizStep="destroying"),
    )
    r = world.capture("maker", doc, JSONLD, lot="L1", **ship)
    assert r.status_code == 201, r.text
    heights = [e["height"] for e in r.json()["events"]]
    assert r.json()["refused"] == [] and None not in heights, r.text
    assert heights == sorted(heights) and heights[0] < heights[2] < heights[4]
    assert world.state(m.unit_key(f"{GTIN}/S1"))["status"] == m.IN_TRANSIT
    assert world.state(m.unit_key(f"{GTIN}/S3"))["status"] == m.DESTROYED


# -- who may read -------------------------------------------------------------------------


def shipped_document() -> str:
    return json_document(
        json_event("2023-11-14T08:00:00+08:00", ["S1", "S2"], "ADD", bizStep="commissioning"),
        json_event(
            "2023-11-14T10:00:00+08:00",
            ["S1", "S2"],
            bizStep="shipping",
            disposition="in_transit",
            readPoint={"id": "urn:epc:id:sgln:6901234.00001.0"},
        ),
    )


def test_partners_the_chain_names_read_the_document_and_nobody_else(world: World) -> None:
    """The shipment's destination (on chain: supply/shipment/SH-1 to yifeng), the maker's
    own staff and a regulator read the document; another pharmacy, a self-registered
    stranger and an unknown key get exactly the answer of a document that does not
    exist, and an empty search. Every document served is in the edge's audit log."""
    doc = shipped_document()
    ship = {"destination": "yifeng", "shipment": "SH-1", "device": did_of(world.keys["logger"])}
    r = world.capture("maker", doc, JSONLD, lot="L1", **ship)
    assert r.status_code == 201, r.text
    out = r.json()
    assert [e["biz_step"] for e in out["events"] if e["recorded"]] == ["commissioning", "shipping"]
    assert "shipment SH-1 to" in out["parties"]["yifeng"]
    path = r.headers["location"]
    missing = path.rsplit("/", 1)[0] + "/acme-pharma-epcis-00000000000000000000"

    for reader in ("pharmacy", "maker", "scanner", "regulator"):
        got = world.get(reader, path)
        assert got.status_code == 200 and got.content == doc.encode(), (reader, got.text)
    hits = world.get("pharmacy", "/edge/v1/epcis/events", epc=SGTIN + "S1").json()["events"]
    assert [(h["event"], h["biz_step"]) for h in hits] == [(1, "commissioning"), (2, "shipping")]
    by_unit = world.get("pharmacy", "/edge/v1/epcis/events", epc=f"{GTIN}/S1").json()["events"]
    assert by_unit == hits

    for outsider in ("other_pharmacy", "stranger", "unknown", "hospital", "logistics"):
        held, absent = world.get(outsider, path), world.get(outsider, missing)
        assert held.status_code == absent.status_code == 404, (outsider, held.text)
        assert error(held)["message"].replace(path.rsplit("/", 1)[1], "ID") == error(absent)[
            "message"
        ].replace(missing.rsplit("/", 1)[1], "ID")
        named = world.get(outsider, "/edge/v1/epcis/events", epc=SGTIN + "S1")
        never = world.get(outsider, "/edge/v1/epcis/events", epc=SGTIN + "NEVER")
        assert named.status_code == never.status_code == 200
        assert named.json()["events"] == never.json()["events"] == []

    served = [e for _, e in world.edge.audit_log.entries(0, 500) if e.get("code") == SERVED]
    assert {e["org"] for e in served} == {"yifeng", "acme-pharma", "nmpa"}
    assert any(e.get("document") == path.rsplit("/", 1)[1] and e["org"] == "yifeng" for e in served)
    assert not any(e.get("org") in ("other-pharmacy", "hosp-a") for e in served)


def test_an_organisation_named_by_a_registered_gs1_number_reads_the_document(
    world: World,
) -> None:
    """A destination party written in the document counts only once governance has
    registered its number to an organisation on chain: hosp-a reads nothing before the
    regulator registers the PGLN to it, and the document afterwards (decided at read
    time); another number in the document registered to nobody makes nobody a party."""
    hospital_pgln = "urn:epc:id:pgln:6909999.00002"
    doc = json_document(
        json_event(
            "2023-11-14T08:00:00+08:00",
            ["S1"],
            "ADD",
            bizStep="commissioning",
            readPoint={"id": "urn:epc:id:sgln:6901234.00001.0"},
            destinationList=[
                {"type": "owning_party", "destination": hospital_pgln},
                {"type": "location", "destination": "urn:epc:id:sgln:6908888.00001.0"},
            ],
        )
    )
    r = world.capture("maker", doc, JSONLD, lot="L1")
    assert r.status_code == 201, r.text
    path = r.headers["location"]
    assert world.get("hospital", path).status_code == 404
    hits = world.get("hospital", "/edge/v1/epcis/events", epc=SGTIN + "S1").json()["events"]
    assert hits == []
    registered = world.node.send(
        world.keys["regulator"],
        "supply",
        "register_location",
        {"location": hospital_pgln, "org_id": "hosp-a"},
    )
    assert registered["code_name"] == "OK", registered
    got = world.get("hospital", path)
    assert got.status_code == 200 and got.content == doc.encode(), got.text
    hits = world.get("hospital", "/edge/v1/epcis/events", epc=SGTIN + "S1").json()["events"]
    assert [h["biz_step"] for h in hits] == ["commissioning"]
    assert world.get("other_pharmacy", path).status_code == 404
    moved = world.node.send(
        world.keys["regulator"],
        "supply",
        "register_location",
        {"location": hospital_pgln, "org_id": "other-pharmacy"},
    )
    assert moved["code_name"] == "OK", moved
    assert world.get("hospital", path).status_code == 404
    assert world.get("other_pharmacy", path).status_code == 200


def test_only_staff_of_the_org_capture_and_a_replay_is_refused(world: World) -> None:
    doc = commissioning_json("2023-11-14T08:00:00+08:00", ["S1"]).encode()
    for outsider in ("pharmacy", "stranger", "regulator"):
        r = world.capture(outsider, doc, JSONLD, lot="L1")
        assert r.status_code == 403 and error(r)["code"] == "UNAUTHORIZED", r.text
    unsigned = httpx.post(
        world.url + CAPTURE + "?lot=L1", content=doc, headers={"Content-Type": JSONLD}
    )
    assert unsigned.status_code == 401
    path = CAPTURE + "?lot=L1"
    headers = sign_request(world.keys["maker"], CHAIN_ID, "POST", path, doc) | {
        "Content-Type": JSONLD
    }
    first = httpx.post(world.url + path, content=doc, headers=headers)
    assert first.status_code == 201, first.text
    replay = httpx.post(world.url + path, content=doc, headers=headers)
    assert replay.status_code == 409 and error(replay)["code"] == "REPLAYED_REQUEST"
    assert world.documents.store.count() == 1


def test_an_oversized_capture_is_refused_with_413(world: World) -> None:
    body = b" " * (MAX_EPCIS_BYTES + 1)
    r = world.capture("maker", body, JSONLD)
    assert r.status_code == 413, r.text[:300]
    at_cap = world.capture("maker", b" " * MAX_EPCIS_BYTES, JSONLD)  # read, then refused
    assert at_cap.status_code == 422 and error(at_cap)["code"] == "INVALID_EPCIS"
    assert world.documents.store.count() == 0


BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    "<epcis:EPCISDocument xmlns:epcis='urn:epcglobal:epcis:xsd:2'><EPCISBody><EventList>"
    "<ObjectEvent><eventTime>&lol3;</eventTime></ObjectEvent></EventList></EPCISBody>"
    "</epcis:EPCISDocument>"
)
EXTERNAL = (
    '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    "<epcis:EPCISDocument xmlns:epcis='urn:epcglobal:epcis:xsd:2'><EPCISBody><EventList>"
    "<ObjectEvent><eventTime>&x;</eventTime></ObjectEvent></EventList></EPCISBody>"
    "</epcis:EPCISDocument>"
)


@pytest.mark.parametrize(
    ("body", "media", "status", "code", "says"),
    [
        ("<epcis:EPCISDocument><EPCISBody>", XML, 422, "INVALID_EPCIS", "not well-formed XML"),
        (BOMB, XML, 422, "INVALID_EPCIS", "must not have a DOCTYPE"),
        (EXTERNAL, "text/xml", 422, "INVALID_EPCIS", "must not have a DOCTYPE"),
        ("<a/>", XML, 422, "INVALID_EPCIS", "no EPCISBody/EventList"),
        ('{"epcisBody": ', JSONLD, 422, "INVALID_EPCIS", "not JSON"),
        (
            json.dumps(
                {
                    "@context": ["https://example.org/evil-context.jsonld"],
                    "epcisBody": {"eventList": [json_event("2023-11-14T08:00:00+08:00", ["S1"])]},
                }
            ),
            JSONLD,
            422,
            "INVALID_EPCIS",
            "is not bundled",
        ),
        ("[" * 200 + "]" * 200, JSONLD, 400, "MALFORMED", "nest"),
        (
            commissioning_xml("2023-11-14T08:00:00+08:00", ["S1"]),
            "text/plain",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "text/plain",
        ),
    ],
)
def test_a_malformed_or_hostile_document_is_refused_and_nothing_is_kept(
    world: World, body: str, media: str, status: int, code: str, says: str
) -> None:
    height = world.node.status()["height"]
    r = world.capture("maker", body, media, lot="L1")
    assert r.status_code == status and error(r)["code"] == code, r.text
    assert says in error(r)["message"], r.text
    assert "root:" not in r.text  # the external entity was never read
    assert world.documents.store.count() == 0
    assert world.state(m.unit_key(f"{GTIN}/S1")) is None
    blocks = [world.node.block(h) for h in range(height + 1, world.node.status()["height"] + 1)]
    assert not any(b["results"] for b in blocks), "a refused document sent a transaction"


# -- events counted from 1 ---------------------------------------------------------------

GOOD = json_event("2023-11-14T08:00:00+08:00", ["S1"], "ADD", bizStep="commissioning")


@pytest.mark.parametrize(
    ("second", "says"),
    [
        (json_event("2023-11-14T09:00:00", ["S2"]), "eventTime must be ISO 8601"),
        (json_event("2023-11-14T09:00:00+08:00", ["S2"], "MOVE"), "action must be ADD"),
        ({**GOOD, "type": "NoSuchEvent"}, "not an object with an EPCIS event type"),
        (json_event("2023-11-14T09:00:00+08:00", ["S2"], bizStep=7), "bizStep must be a string"),
        (
            {
                **GOOD,
                "epcList": ["urn:epc:id:sgtin:12.34.S9"],
                "eventTime": "2023-11-14T09:00:00+08:00",
            },
            "company prefix + item reference must be 13 digits",
        ),
        (
            json_event(
                "2023-11-14T09:00:00+08:00",
                [],
                persistentDisposition={"set": ["recalled"]},
            ),
            "must list the units",
        ),
        (
            json_event(
                "2023-11-14T09:00:00+08:00",
                [],
                quantityList=[{"epcClass": "urn:epc:class:lgtin:1.2.L1", "quantity": 1}],
                persistentDisposition={"set": ["recalled"]},
            ),
            "company prefix + item reference must be 13 digits",
        ),
        (
            json_event(
                "2023-11-14T09:00:00+08:00",
                ["S2"],
                persistentDisposition={"set": ["recalled"], "unset": ["recalled"]},
            ),
            "both sets and unsets",
        ),
        (
            json_event("2023-11-14T09:00:00+08:00", ["S2"], bizStep="shipping"),
            "a shipping event needs --destination",
        ),
    ],
)
def test_every_error_about_an_event_counts_it_from_one(second: dict[str, Any], says: str) -> None:
    document = json_document(GOOD, second)
    with pytest.raises(ValueError) as raised:
        plan_document(document, StepContext(lot="L1"))
    assert str(raised.value).startswith("event 2: "), str(raised.value)
    assert says in str(raised.value)


@pytest.mark.parametrize(
    ("second", "says"),
    [
        (xml_event("2023-11-14T09:00:00", ["S2"]), "eventTime must be ISO 8601"),
        (
            "<NoSuchEvent><eventTime>2023-11-14T09:00:00+08:00</eventTime></NoSuchEvent>",
            "unknown event type",
        ),
        (xml_event("2023-11-14T09:00:00+08:00", ["S2"], action="MOVE"), "action must be ADD"),
        (
            xml_event(
                "2023-11-14T09:00:00+08:00",
                ["S2"],
                "<quantityList><quantityElement><epcClass>x</epcClass>"
                "<quantity>many</quantity></quantityElement></quantityList>",
            ),
            "quantity must be a number",
        ),
    ],
)
def test_every_error_about_an_xml_event_counts_it_from_one(second: str, says: str) -> None:
    first = xml_event(
        "2023-11-14T08:00:00+08:00", ["S1"], "<bizStep>commissioning</bizStep>", "ADD"
    )
    with pytest.raises(ValueError) as raised:
        plan_document(xml_document(first, second), StepContext(lot="L1"), "xml")
    assert str(raised.value).startswith("event 2: "), str(raised.value)
    assert says in str(raised.value)


def test_the_endpoint_names_the_failing_event_counted_from_one(world: World) -> None:
    bad = json_document(GOOD, json_event("2023-11-14T09:00:00+08:00", ["S2"], "MOVE"))
    r = world.capture("maker", bad, JSONLD, lot="L1")
    assert r.status_code == 422 and error(r)["message"].startswith("event 2: action must be"), (
        r.text
    )
    assert "nothing was recorded" in error(r)["hint"]
    assert world.state(m.unit_key(f"{GTIN}/S1")) is None  # event 1 was not sent either


def test_a_partner_fetches_what_it_may_from_the_cli(world: World, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medchain.cli import app
    from medchain.sdk.keystore import Keystore

    doc = shipped_document()
    ship = {"destination": "yifeng", "shipment": "SH-1", "device": did_of(world.keys["logger"])}
    captured = world.capture("maker", doc, JSONLD, lot="L1", **ship)
    assert captured.status_code == 201, captured.text
    document_id = captured.json()["document_id"]
    home = tmp_path / "home"
    for name in ("pharmacy", "other_pharmacy"):
        Keystore(home / "keys").save(name, world.keys[name], "test-passphrase", 1000)
    runner = CliRunner(env={"MEDCHAIN_PASSPHRASE": "test-passphrase", "COLUMNS": "250"})
    at = ["--org", "acme-pharma", "--edge", world.url, "--home", str(home), "--node", world.gateway]

    listed = runner.invoke(
        app, ["supply", "documents", "--epc", f"{GTIN}/S2", "--key", "pharmacy", *at]
    )
    assert listed.exit_code == 0 and document_id in listed.output, listed.output
    assert "shipping" in listed.output and "commissioning" in listed.output
    out = tmp_path / "shipped.jsonld"
    fetched = runner.invoke(
        app,
        ["supply", "documents", "--id", document_id, "--out", str(out), "--key", "pharmacy", *at],
    )
    assert fetched.exit_code == 0, fetched.output
    assert out.read_bytes() == doc.encode()
    refused = runner.invoke(
        app, ["supply", "documents", "--id", document_id, "--key", "other_pharmacy", *at]
    )
    assert refused.exit_code == 1 and "NOT_FOUND" in refused.output, refused.output
    assert doc not in refused.output
