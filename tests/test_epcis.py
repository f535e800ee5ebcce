"""EPCIS 2.0 event hashes and summaries against the shared reference documents."""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from epcis_event_hash_generator import PROP_ORDER  # type: ignore[import-untyped]
from pyld import jsonld  # type: ignore[import-untyped]
from support.ledger import DATA

from medchain.gs1 import epcis
from medchain.gs1.epcis import InvalidEPCIS, event_hashes, events, summarize

# The generator reads its bundled context with importlib.resources.open_text (deprecated
# on 3.11, still present); that is its business, not a finding of these tests.
pytestmark = pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")

EPCIS = DATA / "epcis"
DOCUMENTS = sorted(p.with_suffix("") for p in EPCIS.glob("*.hashes"))
CASES = [
    (doc, kind)
    for doc in DOCUMENTS
    for kind, suffix in (("jsonld", ".jsonld"), ("xml", ".xml"))
    if doc.with_suffix(suffix).exists()
]
SINGLE = EPCIS / "epcisDocWithSingleEvent"
REFERENCE = EPCIS / "ReferenceEventHashAlgorithm"
SENSOR = EPCIS / "epcisDocWithSensorComponent"
SHIPPING = EPCIS / "epcisDocWithShippingAndTransportingEvent"
VARIOUS = EPCIS / "epcisDocWithVariousEventTypes"
CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"

SINGLE_EVENT_HASH = (
    "ni:///sha-256;ffa491b16867e34a7791a8d5389d826afc24e63a121026b6a4004ace38631b4b?ver=CBV2.0"
)
REFERENCE_HASH = (
    "ni:///sha-256;6ae96341e0acc6d7a261364751f60e68278a81cdf51da0abb6b4e617014e39d7?ver=CBV2.0"
)
VARIOUS_FIRST = "25be54b3d29f31ef9b4e62d62e7610f5d186369ba6eabb5e70ba9884153792a7"
VARIOUS_LAST = "756558aa09b2d38c6bcb6e50eab2fcbebd9bde17362a7c4f4686a5d7f5fb013f"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every test here runs with name lookups and connections refused, and fails if any
    was attempted."""
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args))
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield attempts
    assert attempts == []


def read(doc: Path, suffix: str) -> bytes:
    return doc.with_suffix(suffix).read_bytes()


def expected_hashes(doc: Path) -> list[str]:
    return doc.with_suffix(".hashes").read_text().splitlines()


def document(*event_list: dict[str, Any], context: list[Any] | None = None) -> str:
    return json.dumps(
        {
            "@context": context if context is not None else [CONTEXT],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2024-05-02T09:00:00.000Z",
            "epcisBody": {"eventList": list(event_list)},
        }
    )


def dispensing(**changes: Any) -> dict[str, Any]:
    event = {
        "type": "ObjectEvent",
        "eventTime": "2024-05-02T10:15:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
        "action": "OBSERVE",
        "bizStep": "dispensing",
        "disposition": "dispensed",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"},
    }
    event.update(changes)
    return event


def test_every_shared_document_is_covered() -> None:
    assert [d.name for d in DOCUMENTS] == [
        "ReferenceEventHashAlgorithm",
        "epcisDocWithSensorComponent",
        "epcisDocWithShippingAndTransportingEvent",
        "epcisDocWithSingleEvent",
        "epcisDocWithVariousEventTypes",
    ]
    assert len(CASES) == 9


@pytest.mark.parametrize(("doc", "kind"), CASES, ids=lambda v: getattr(v, "name", v))
def test_event_hashes_equal_the_reference_hashes(doc: Path, kind: str) -> None:
    suffix = ".jsonld" if kind == "jsonld" else ".xml"
    assert event_hashes(read(doc, suffix), kind) == expected_hashes(doc)


def test_known_hashes_appear_literally() -> None:
    assert event_hashes(read(SINGLE, ".jsonld")) == [SINGLE_EVENT_HASH]
    assert event_hashes(read(REFERENCE, ".jsonld")) == [REFERENCE_HASH]
    assert event_hashes(read(REFERENCE, ".xml"), "xml") == [REFERENCE_HASH]
    various = event_hashes(read(VARIOUS, ".xml"), "xml")
    assert len(various) == 13
    assert various[0] == f"ni:///sha-256;{VARIOUS_FIRST}?ver=CBV2.0"
    assert various[-1] == f"ni:///sha-256;{VARIOUS_LAST}?ver=CBV2.0"


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: d.name)
def test_each_hash_is_sha256_of_the_published_prehash(doc: Path) -> None:
    prehashes = doc.with_suffix(".prehashes").read_text(encoding="utf-8").splitlines()
    digests = [hashlib.sha256(line.encode()).hexdigest() for line in prehashes]
    hashes = event_hashes(read(doc, ".jsonld"))
    assert hashes == [f"ni:///sha-256;{d}?ver=CBV2.0" for d in digests]


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: d.name)
def test_events_pair_one_to_one_with_hashes(doc: Path) -> None:
    assert len(events(read(doc, ".jsonld"))) == len(expected_hashes(doc))


def test_text_and_bytes_with_bom_hash_alike() -> None:
    raw = read(SINGLE, ".jsonld")
    assert event_hashes(raw.decode()) == event_hashes(b"\xef\xbb\xbf" + raw) == [SINGLE_EVENT_HASH]


def test_another_event_time_gives_another_hash() -> None:
    original = json.loads(read(SINGLE, ".jsonld"))
    changed = json.loads(read(SINGLE, ".jsonld"))
    changed["epcisBody"]["eventList"][0]["eventTime"] = "2022-02-16T20:33:32.116000-06:00"
    assert event_hashes(json.dumps(original)) == [SINGLE_EVENT_HASH]
    assert event_hashes(json.dumps(changed)) != [SINGLE_EVENT_HASH]


def test_another_epc_or_disposition_gives_another_hash() -> None:
    base = event_hashes(document(dispensing()))
    other_pack = dispensing(epcList=["urn:epc:id:sgtin:0614141.107346.2018"])
    assert event_hashes(document(other_pack)) != base
    assert event_hashes(document(dispensing(disposition="destroyed"))) != base


def test_hash_ignores_representation_choices() -> None:
    """Same event, written differently: EPC order, instant written in UTC, CBV URN form,
    recordTime and eventID (which the standard leaves out of the hash)."""
    base = event_hashes(document(dispensing()))
    same = dispensing(
        eventTime="2024-05-02T02:15:00Z",
        bizStep="urn:epcglobal:cbv:bizstep:dispensing",
        disposition="https://ref.gs1.org/cbv/Disp-dispensed",
        recordTime="2024-05-03T00:00:00Z",
        eventID="ni:///sha-256;00?ver=CBV2.0",
    )
    assert event_hashes(document(same)) == base
    two = dispensing(
        epcList=["urn:epc:id:sgtin:0614141.107346.2017", "urn:epc:id:sgtin:0614141.107346.2018"]
    )
    swapped = dispensing(epcList=list(reversed(two["epcList"])))
    assert event_hashes(document(two)) == event_hashes(document(swapped))


def test_hash_does_not_depend_on_documents_hashed_before() -> None:
    """The generator remembers namespace prefixes across documents; we must not."""
    undeclared = document(dispensing(**{"example:batchNote": "cool"}))
    other = document(
        dispensing(**{"example:batchNote": "x"}),
        context=[CONTEXT, {"example": "https://other.example.org/ns/"}],
    )
    event_hashes(other)
    first = event_hashes(undeclared)
    event_hashes(read(REFERENCE, ".jsonld"))  # declares example: https://ns.example.com/epcis/
    assert event_hashes(undeclared) == first


def test_concurrent_hashing_gives_the_reference_hashes() -> None:
    jobs = [(doc, kind) for doc, kind in CASES] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(
                lambda job: event_hashes(
                    read(job[0], ".jsonld" if job[1] == "jsonld" else ".xml"), job[1]
                ),
                jobs,
            )
        )
    assert results == [expected_hashes(doc) for doc, _ in jobs]


def test_a_context_that_is_not_bundled_is_refused_without_fetching(
    no_network: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with a fetching loader installed in pyld (as with `requests` present),
    hashing uses only the bundled contexts and leaves that loader in place."""
    fetched: list[str] = []

    def fetching_loader(url: str, options: Any = None) -> Any:
        fetched.append(url)
        raise OSError("would fetch")

    monkeypatch.setattr(jsonld, "_default_document_loader", fetching_loader)
    doc = document(dispensing(), context=["https://contexts.example.org/pharma.jsonld"])
    with pytest.raises(InvalidEPCIS, match=r"https://contexts\.example\.org/pharma\.jsonld"):
        event_hashes(doc)
    assert event_hashes(read(SINGLE, ".jsonld")) == [SINGLE_EVENT_HASH]
    assert fetched == [] and no_network == []
    assert jsonld.get_document_loader() is fetching_loader


def test_time_without_offset_is_refused() -> None:
    """dateutil would read it in the machine's local zone: hashes would differ by node."""
    with pytest.raises(InvalidEPCIS, match="eventTime must be ISO 8601 with an offset"):
        event_hashes(document(dispensing(eventTime="2024-05-02T10:15:00.000")))
    with pytest.raises(InvalidEPCIS, match="eventTime"):
        event_hashes(document(dispensing(eventTime=5)))
    sensor = json.loads(read(SENSOR, ".jsonld"))
    sensor["epcisBody"]["eventList"][0]["sensorElementList"][0]["sensorMetadata"] = {
        "time": "2022-04-07T10:00:00"
    }
    with pytest.raises(InvalidEPCIS, match="event 1: time must be ISO 8601"):
        event_hashes(json.dumps(sensor))


def test_event_without_time_is_refused() -> None:
    event = dispensing()
    del event["eventTime"]
    with pytest.raises(InvalidEPCIS, match="event 1: no eventTime"):
        event_hashes(document(event))


def test_event_the_generator_cannot_canonicalise_is_refused_not_skipped() -> None:
    """.9996 s rounds to a millisecond of 1000: the generator drops such an event."""
    doc = document(dispensing(), dispensing(eventTime="2024-05-02T10:15:00.9996+08:00"))
    with pytest.raises(InvalidEPCIS, match="event 2: the hash generator could not"):
        event_hashes(doc)


@pytest.mark.parametrize(
    ("doc", "kind", "message"),
    [
        (b"\xff\xfe{}", "jsonld", "not UTF-8"),
        ("{not json", "jsonld", "not JSON"),
        ('{"epcisBody": {"eventList": [NaN]}}', "jsonld", "NaN is not a JSON number"),
        ('{"type": "EPCISDocument"}', "jsonld", "no epcisBody"),
        ('{"epcisBody": {}}', "jsonld", "no eventList"),
        ('{"epcisBody": {"eventList": {}}}', "jsonld", "must be a list"),
        ('{"epcisBody": {"eventList": [{"type": "Event"}]}}', "jsonld", "event 1: not an"),
        ("[" * 100_000, "jsonld", "nests too deeply"),
        ("<EPCISDocument><EPCISBody>", "xml", "not well-formed XML"),
        ("<EPCISDocument/>", "xml", "no EPCISBody/EventList"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><x/>', "xml", "must not have a DOCTYPE"),
        (
            "<e><EPCISBody><EventList><Foo><eventTime>2024-05-02T10:15:00Z</eventTime></Foo>"
            "</EventList></EPCISBody></e>",
            "xml",
            "unknown event type 'Foo'",
        ),
        ("{}", "csv", "kind must be"),
    ],
)
def test_malformed_documents_are_refused(doc: str | bytes, kind: str, message: str) -> None:
    with pytest.raises(InvalidEPCIS, match=message):
        event_hashes(doc, kind)


def test_shapes_the_generator_cannot_read_are_refused() -> None:
    bare_source = dispensing(sourceList=["urn:epc:id:pgln:4012345.00000"])
    with pytest.raises(InvalidEPCIS, match="the hash generator cannot read this document"):
        event_hashes(document(bare_source))
    deep = "<x>" * 5000 + "</x>" * 5000
    xml = (
        "<d><EPCISBody><EventList><ObjectEvent><eventTime>2024-05-02T10:15:00Z</eventTime>"
        f"{deep}</ObjectEvent></EventList></EPCISBody></d>"
    )
    with pytest.raises(InvalidEPCIS, match="the hash generator cannot read this document"):
        event_hashes(xml, "xml")


def test_empty_event_lists_have_no_hashes() -> None:
    assert event_hashes(document()) == []
    assert event_hashes("<d><EPCISBody><EventList/></EPCISBody></d>", "xml") == []


def test_time_fields_match_what_the_generator_normalises() -> None:
    def names(order: Any) -> Iterator[str]:
        for item in order:
            if isinstance(item[0], tuple):
                yield from names(item)
            else:
                yield item[0]
                if item[1]:
                    yield from names(item[1])

    found = {n for n in names(PROP_ORDER) if "time" in n.lower() and "offset" not in n.lower()}
    assert found == epcis.TIME_FIELDS


# -- summaries of the real events -----------------------------------------------------------


def test_summary_of_the_single_shipping_event() -> None:
    [event] = events(read(SINGLE, ".jsonld"))
    assert dict(summarize(event)) == {
        "type": "ObjectEvent",
        "action": "OBSERVE",
        "biz_step": "shipping",
        "event_time": "2022-02-16T20:33:31.116000-06:00",
        "epcs": ["urn:epc:id:sgtin:0614141.107346.2017", "urn:epc:id:sgtin:0614141.107346.2018"],
        "parent": None,
        "read_point": "urn:epc:id:sgln:0614141.07346.1234",
        "biz_location": "",
        "disposition": "in_transit",
        "quantities": [],
        "disposition_set": [],
        "disposition_unset": [],
    }


def test_summaries_of_departing_and_transporting() -> None:
    departing, transporting = (summarize(e) for e in events(read(SHIPPING, ".jsonld")))
    assert (departing["biz_step"], transporting["biz_step"]) == ("departing", "transporting")
    assert departing["epcs"] == transporting["epcs"] == ["urn:epc:id:sscc:4012345.1112223334"]
    assert departing["read_point"] == "urn:epc:id:sgln:4012345.00022.0"
    assert transporting["read_point"] == "geo:47.506694,11.104301"
    assert transporting["event_time"] == "2022-02-16T16:50:00.000+01:00"


def test_summary_of_the_sensor_event() -> None:
    [event] = events(read(SENSOR, ".jsonld"))
    summary = summarize(event)
    assert summary["biz_step"] == "sensor_reporting"
    assert summary["epcs"] == ["https://id.example.com/8003/040123450007718765"]
    assert summary["read_point"] == "https://id.example.com/414/4012345000054"
    assert summary["disposition"] == ""


def test_summaries_of_every_event_type() -> None:
    summaries = [summarize(e) for e in events(read(VARIOUS, ".jsonld"))]
    assert [s["type"] for s in summaries] == ["ObjectEvent"] * 4 + ["AggregationEvent"] * 4 + [
        "TransactionEvent"
    ] * 2 + ["TransformationEvent"] * 3
    assert [s["biz_step"] for s in summaries] == [
        "departing",
        "receiving",
        "inspecting",
        "commissioning",
        "packing",
        "packing",
        "unpacking",
        "unpacking",
        "shipping",
        "holding",
        "commissioning",
        "commissioning",
        "http://epcis.example.com/user/vocab/bizstep/exampling",
    ]
    assert [s["action"] for s in summaries] == ["OBSERVE"] * 3 + ["ADD"] * 3 + ["DELETE"] * 2 + [
        "ADD"
    ] * 2 + [""] * 3
    assert summaries[2]["disposition"] == "in_progress"
    assert summaries[3]["quantities"] == [
        {"epcClass": "urn:epc:class:lgtin:4054739.099914.20160711", "quantity": "600", "uom": "KGM"}
    ]
    packing = summaries[4]
    assert packing["parent"] == "urn:epc:id:sscc:4047023.0111111122"
    assert packing["epcs"] == [
        "urn:epc:id:sgtin:4047023.077551.98",
        "urn:epc:id:sgtin:4047023.077551.97",
        "urn:epc:id:sgtin:4047023.077551.107",
        "urn:epc:id:sgtin:4047023.077551.109",
    ]
    assert summaries[5]["quantities"][1] == {
        "epcClass": "urn:epc:class:lgtin:4054739.012345.lot2",
        "quantity": "17",
        "uom": "",
    }
    assert summaries[6]["epcs"] == []
    assert summaries[6]["parent"] == "urn:epc:id:sscc:4012344.0111111144"
    shipping = summaries[8]
    assert shipping["event_time"] == "2019-10-21T00:05:00-06:00"
    assert shipping["biz_location"] == "urn:epc:id:sgln:4012345.00000.0"
    assert shipping["epcs"] == [
        "urn:epc:id:sgtin:0614141.107340.1",
        "urn:epc:id:sgtin:0614141.107340.2",
    ]
    transformation = summaries[10]
    assert transformation["epcs"][:2] == [
        "urn:epc:id:sgtin:4012345.011122.25",
        "urn:epc:id:sgtin:4000001.065432.99886655",
    ]
    assert transformation["epcs"][2:] == [
        f"urn:epc:id:sgtin:4012345.077889.{n}" for n in range(25, 29)
    ]
    assert [q["quantity"] for q in summaries[11]["quantities"]] == ["10", "30", "220"]


def test_summary_strips_cbv_urn_and_web_forms() -> None:
    urn = summarize(
        dispensing(
            bizStep="urn:epcglobal:cbv:bizstep:destroying",
            disposition="urn:epcglobal:cbv:disp:destroyed",
        )
    )
    web = summarize(
        dispensing(
            bizStep="https://ref.gs1.org/cbv/BizStep-destroying",
            disposition="https://ref.gs1.org/cbv/Disp-destroyed",
        )
    )
    assert (urn["biz_step"], urn["disposition"]) == ("destroying", "destroyed")
    assert (web["biz_step"], web["disposition"]) == ("destroying", "destroyed")
    assert summarize(dispensing())["biz_step"] == "dispensing"


def test_quantities_keep_their_decimal_text() -> None:
    event = dispensing(
        quantityList=[
            {
                "epcClass": "urn:epc:class:lgtin:4012345.012345.998877",
                "quantity": 12.50,
                "uom": "KGM",
            }
        ]
    )
    [parsed] = events(document(event).replace("12.5", "12.50"))
    assert parsed["quantityList"][0]["quantity"] == Decimal("12.50")
    assert summarize(parsed)["quantities"][0]["quantity"] == "12.50"
    assert summarize(event)["quantities"][0]["quantity"] == "12.5"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"type": "Shipment"}, "event type must be one of"),
        ({"eventTime": "yesterday"}, "eventTime must be ISO 8601"),
        ({"eventTime": "2024-05-02T10:15:00"}, "eventTime must be ISO 8601"),
        ({"action": "UPDATE"}, "action must be ADD, OBSERVE or DELETE"),
        ({"epcList": [{"id": "x"}]}, "epcList must list EPC URIs"),
        ({"readPoint": "urn:epc:id:sgln:0614141.07346.1234"}, "readPoint must be an object"),
        ({"quantityList": [{"quantity": 1}]}, "needs an epcClass"),
        ({"quantityList": [{"epcClass": "c", "quantity": True}]}, "quantity must be a number"),
    ],
)
def test_summarize_refuses_malformed_events(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidEPCIS, match=message):
        summarize(dispensing(**changes))


# -- XML as partners send it ---------------------------------------------------------------

XML_CASES = [doc for doc in DOCUMENTS if doc.with_suffix(".xml").exists()]


@pytest.mark.parametrize("doc", XML_CASES, ids=lambda v: v.name)
def test_xml_and_its_json_ld_twin_give_the_same_events(doc: Path) -> None:
    """Same hashes, same summaries (but the text of a time: the twins write the same
    instant as 10:00:00Z and 10:00:00.000Z), one event per hash."""
    xml, twin = read(doc, ".xml"), read(doc, ".jsonld")
    assert event_hashes(xml, "xml") == event_hashes(twin) == expected_hashes(doc)
    from_xml = [dict(summarize(e)) for e in events(xml, "xml")]
    from_json = [dict(summarize(e)) for e in events(twin)]
    assert len(from_xml) == len(expected_hashes(doc))
    for x, j in zip(from_xml, from_json, strict=True):
        x_time, j_time = x.pop("event_time"), j.pop("event_time")
        assert datetime.fromisoformat(x_time) == datetime.fromisoformat(j_time)
        assert x == j


def test_xml_keeps_extension_fields_and_sensor_elements() -> None:
    [reference] = events(read(REFERENCE, ".xml"), "xml")
    assert any(key.startswith("{https://ns.example.com/epcis") for key in reference)
    [sensor] = events(read(SENSOR, ".xml"), "xml")
    [element] = sensor["sensorElementList"]
    assert [r["value"] for r in element["sensorReport"]] == ["42.698334", "23.319941"]
    transformation = events(read(VARIOUS, ".xml"), "xml")[-1]
    assert transformation["type"] == "TransformationEvent"
    assert [q["quantity"] for q in transformation["outputQuantityList"]] == [Decimal("9520")]


def _xml_document(event_xml: str, prolog: str = "") -> str:
    return (
        f'<?xml version="1.0"?>{prolog}<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:2"'
        ' schemaVersion="2.0" creationDate="2024-05-02T09:00:00Z"><EPCISBody><EventList>'
        f"{event_xml}</EventList></EPCISBody></epcis:EPCISDocument>"
    )


OBJECT_EVENT = (
    "<ObjectEvent><eventTime>2024-05-02T10:15:00.000+08:00</eventTime>"
    "<eventTimeZoneOffset>+08:00</eventTimeZoneOffset>"
    "<epcList><epc>urn:epc:id:sgtin:0614141.107346.2017</epc></epcList>"
    "<action>OBSERVE</action>{inner}</ObjectEvent>"
)


@pytest.mark.parametrize(
    "prolog",
    [
        # billion laughs: ten levels of ten, 10^10 copies of "lol" if expanded
        '<!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(
            f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
            for i in range(1, 10)
        )
        + "]>",
        # external entity: would read a file of the node
        '<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        # external DTD: would fetch over the network
        '<!DOCTYPE d SYSTEM "http://example.com/evil.dtd">',
    ],
    ids=["entity-expansion", "external-entity", "external-dtd"],
)
def test_hostile_xml_is_refused_before_anything_reads_it(prolog: str) -> None:
    doc = _xml_document(OBJECT_EVENT.format(inner="<bizStep>&xxe;</bizStep>"), prolog)
    for read_it in (lambda: event_hashes(doc, "xml"), lambda: events(doc, "xml")):
        with pytest.raises(InvalidEPCIS, match=r"must not have a DOCTYPE .*send the document"):
            read_it()


def test_entities_are_refused_by_the_parser_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The DOCTYPE check is the first gate; defusedxml is the second, should a DTD ever
    slip past the first (here the first is switched off)."""
    monkeypatch.setattr(epcis, "_DOCTYPE", re.compile("(?!)"))
    doc = _xml_document(OBJECT_EVENT.format(inner="<bizStep>&a;</bizStep>"))
    doc = doc.replace("?>", '?><!DOCTYPE d [<!ENTITY a "shipping">]>', 1)
    with pytest.raises(InvalidEPCIS, match=r"EPCIS XML refused: .*not read"):
        event_hashes(doc, "xml")


def test_oversized_xml_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(epcis, "MAX_XML_BYTES", 200)
    with pytest.raises(InvalidEPCIS, match=r"larger than .*split it"):
        event_hashes(_xml_document(OBJECT_EVENT.format(inner="")), "xml")


def test_persistent_disposition_from_xml_and_json_ld() -> None:
    inner = (
        "<persistentDisposition><set>https://ref.gs1.org/cbv/Disp-recalled</set>"
        "<unset>urn:epcglobal:cbv:disp:completeness_inferred</unset></persistentDisposition>"
    )
    [from_xml] = events(_xml_document(OBJECT_EVENT.format(inner=inner)), "xml")
    summary = summarize(from_xml)
    assert (summary["disposition_set"], summary["disposition_unset"]) == (
        ["recalled"],
        ["completeness_inferred"],
    )
    compact = summarize(dispensing(persistentDisposition={"set": "recalled"}))
    assert (compact["disposition_set"], compact["disposition_unset"]) == (["recalled"], [])
    with pytest.raises(InvalidEPCIS, match="persistentDisposition must be an object"):
        summarize(dispensing(persistentDisposition=["recalled"]))


def test_xml_error_messages_count_events_from_1() -> None:
    good = OBJECT_EVENT.format(inner="")
    bad = "<Shipment><eventTime>2024-05-02T10:15:00Z</eventTime></Shipment>"
    with pytest.raises(InvalidEPCIS, match="event 2: unknown event type 'Shipment'"):
        events(_xml_document(good + bad), "xml")
    with pytest.raises(InvalidEPCIS, match="event 2: unknown event type 'Shipment'"):
        event_hashes(_xml_document(good + bad), "xml")
