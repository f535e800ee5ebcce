"""EPCIS 2.0 events: their standard hash, and what the chain keeps of each.

The chain records an event by its CBV 2.0 event hash (`ni:///sha-256;<hex>?ver=CBV2.0`)
while the event itself stays with its custodian, so every party must derive the same
hash from the same event whether it arrived as JSON-LD or XML. We use the reference
implementation, epcis-event-hash-generator, and guard it where it is not safe for a ledger:

- Its JSON-LD path expands the document with pyld, which resolves remote `@context`
  URLs. It bundles the GS1 EPCIS contexts but otherwise falls back to the network; we
  allow only the bundled ones, so hashing never touches the network.
- It keeps state between calls: namespace prefixes seen in one document are applied to
  later documents. We clear that state before every document and serialise use of it.
- It normalises timestamps with dateutil, which reads a time without an offset in the
  machine's local zone and fills a bare number from today's date. We require every time
  it normalises to be an ISO 8601 date-time with an offset.
- It drops an event it cannot canonicalise and hashes the rest. We refuse the document.
- It parses XML with the standard library, which expands entities. Partner XML is
  hostile until read: we parse it first with defusedxml (no DTD, no entity, no external
  reference) and a size bound, and only a document that passes reaches the generator.

`events` reads the events of either form into one model (the JSON-LD shape), so XML
and its JSON-LD twin give the same summaries and the same hashes. Events are counted
from 1 in every message, as a person counts them in the document.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import fromstring as defused_fromstring  # type: ignore[import-untyped]
from epcis_event_hash_generator import (  # type: ignore[import-untyped]
    file_document_loader,
    hash_generator,
    json_to_py,
    xml_to_py,
)
from pyld import jsonld  # type: ignore[import-untyped]

from medchain.exceptions import MedChainError

EVENT_TYPES = frozenset(
    {
        "ObjectEvent",
        "AggregationEvent",
        "TransactionEvent",
        "TransformationEvent",
        "AssociationEvent",
    }
)
ACTIONS = frozenset({"ADD", "OBSERVE", "DELETE"})
# The contexts epcis-event-hash-generator ships a copy of.
BUNDLED_CONTEXTS = frozenset(
    {
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
        "https://gs1.github.io/EPCIS/epcis-context.jsonld",
    }
)
# The fields the hash generator rewrites as UTC timestamps (its PROP_ORDER names with
# "time" in them, except eventTimeZoneOffset).
TIME_FIELDS = frozenset({"eventTime", "time", "startTime", "endTime"})

_BIZ_STEP_PREFIXES = (
    "https://ref.gs1.org/cbv/BizStep-",
    "urn:epcglobal:cbv:bizstep:",
    "cbv:BizStep-",
)
_DISPOSITION_PREFIXES = ("https://ref.gs1.org/cbv/Disp-", "urn:epcglobal:cbv:disp:", "cbv:Disp-")
_EPC_LISTS = ("epcList", "childEPCs", "inputEPCList", "outputEPCList")
_QUANTITY_LISTS = ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList")
# xsd:dateTime with the offset EPCIS needs to place the event in time.
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_DOCTYPE = re.compile(r"<!DOCTYPE", re.IGNORECASE)
# The largest XML document read (bytes of UTF-8): far above any real EPCIS capture batch,
# far below what would hurt a node that parses it.
MAX_XML_BYTES = 32 * 1024 * 1024
# XML children that hold a list, and the name each item gets in the JSON-LD form
# (None: the item is its text).
_XML_LISTS: dict[str, str | None] = {
    "epcList": None,
    "childEPCs": None,
    "inputEPCList": None,
    "outputEPCList": None,
    "quantityList": None,
    "childQuantityList": None,
    "inputQuantityList": None,
    "outputQuantityList": None,
    "bizTransactionList": "bizTransaction",
    "sourceList": "source",
    "destinationList": "destination",
    "sensorElementList": None,
    "correctiveEventIDs": None,
}
# Element text read as a number; attributes (a sensor report's value) stay text.
_XML_NUMBERS = frozenset({"quantity", "value", "minValue", "maxValue", "meanValue", "sDev"})

# How the generator fails on input it does not expect (a source list of bare strings, a
# relative context IRI, deep nesting): all mean the document is not one we can hash.
_GENERATOR_FAILURES = (LookupError, TypeError, AttributeError, ValueError, RecursionError)

_generator_lock = threading.Lock()
_bundled_loader = file_document_loader.file_document_loader()


class InvalidEPCIS(MedChainError, ValueError):
    """The document or event is not EPCIS 2.0 we can hash or read; the message says why."""


class Quantity(TypedDict):
    """An EPCIS quantityElement: how much of a class (e.g. a lot) an event moved."""

    epcClass: str
    quantity: str
    uom: str


class Summary(TypedDict):
    """What the supply contract needs from one event; `parent` is None when absent."""

    type: str
    action: str
    biz_step: str
    event_time: str
    epcs: list[str]
    parent: str | None
    read_point: str
    biz_location: str
    disposition: str
    quantities: list[Quantity]
    disposition_set: list[str]
    disposition_unset: list[str]


def event_hashes(document: bytes | str, kind: str = "jsonld") -> list[str]:
    """The CBV 2.0 event hash of every event in an EPCIS document, in document order.

    `kind` is "jsonld" or "xml". For JSON-LD, hash i belongs to `events(document)[i]`.
    """
    if kind not in ("jsonld", "xml"):
        raise InvalidEPCIS(f"kind must be 'jsonld' or 'xml', got {kind!r}")
    text = _text(document)
    with _hash_generator():
        tree = _json_tree(text) if kind == "jsonld" else _xml_tree(text)
        prehashes = [_prehash(i, event) for i, event in enumerate(tree[2], start=1)]
    hashes: list[str] = hash_generator.calculate_hashes_from_pre_hashes(prehashes, "sha256")
    return hashes


def events(document: bytes | str, kind: str = "jsonld") -> list[dict[str, Any]]:
    """The events of an EPCIS 2.0 document, JSON-LD (`epcisBody.eventList`) or XML
    (`EPCISBody/EventList`), in document order and in the JSON-LD shape.

    Hash i of `event_hashes(document, kind)` belongs to event i. Numbers that are not
    integers come back as Decimal, never as float, so a quantity reaches the chain
    exactly as written. From XML, user extension fields keep their namespace as
    `{namespace}name` keys.
    """
    if kind == "xml":
        return [_xml_event(i, e) for i, e in enumerate(_xml_events(_text(document)), start=1)]
    if kind != "jsonld":
        raise InvalidEPCIS(f"kind must be 'jsonld' or 'xml', got {kind!r}")
    return _event_list(_load_json(_text(document), Decimal))


def summarize(event: dict[str, Any]) -> Summary:
    """The facts the chain keeps about one event, as strings.

    Business step and disposition lose their CBV prefix ("shipping", "in_transit");
    a value from another vocabulary stays a full URI. `epcs` lists epcList, childEPCs,
    inputEPCList and outputEPCList in that order; the parent goes in `parent`.
    """
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise InvalidEPCIS(f"event type must be one of {sorted(EVENT_TYPES)}, got {kind!r}")
    event_time = event.get("eventTime")
    if not isinstance(event_time, str) or not _is_date_time(event_time):
        raise InvalidEPCIS(f"eventTime must be ISO 8601 with an offset, got {event_time!r}")
    action = _string(event, "action")
    if action and action not in ACTIONS:
        raise InvalidEPCIS(f"action must be ADD, OBSERVE or DELETE, got {action!r}")
    parent = _string(event, "parentID")
    return {
        "type": kind,
        "action": action,
        "biz_step": _short_name(_string(event, "bizStep"), _BIZ_STEP_PREFIXES),
        "event_time": event_time,
        "epcs": [epc for name in _EPC_LISTS for epc in _strings(event, name)],
        "parent": parent or None,
        "read_point": _location(event, "readPoint"),
        "biz_location": _location(event, "bizLocation"),
        "disposition": _short_name(_string(event, "disposition"), _DISPOSITION_PREFIXES),
        "quantities": [
            _quantity(element) for name in _QUANTITY_LISTS for element in _list(event, name)
        ],
        "disposition_set": _persistent(event, "set"),
        "disposition_unset": _persistent(event, "unset"),
    }


def named_parties(event: dict[str, Any]) -> list[str]:
    """The GS1 locations and parties an event names, each once: its read point and
    business location, then the ids its source and destination lists give (owning or
    possessing party, location). Values that are not strings are left out: `summarize`
    and the hash decide whether the event is valid, this only reads who it names."""
    found = [_location(event, "readPoint"), _location(event, "bizLocation")]
    for name, field in (("sourceList", "source"), ("destinationList", "destination")):
        items = event.get(name, [])
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, dict) and isinstance(item.get(field), str):
                found.append(item[field].strip())
    return [n for n in dict.fromkeys(found) if n]


# -- hashing ----------------------------------------------------------------------------


class _ContextNotBundled(MedChainError):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _offline_loader(url: str, options: dict[str, Any] | None = None) -> Any:
    """pyld document loader that serves the bundled GS1 contexts and fetches nothing."""
    if url not in BUNDLED_CONTEXTS:
        raise _ContextNotBundled(url)
    return _bundled_loader(url, options or {})


@contextmanager
def _hash_generator() -> Iterator[None]:
    """Exclusive use of the hash generator, offline and with no state from earlier calls."""
    with _generator_lock:
        previous = jsonld.get_document_loader()
        jsonld.set_document_loader(_offline_loader)
        json_to_py._namespaces.clear()
        try:
            yield
        finally:
            jsonld.set_document_loader(previous)


def _json_tree(text: str) -> Any:
    document = _load_json(text, float)  # floats, as the reference implementation reads them
    _event_list(document)
    try:
        return json_to_py.event_list_from_epcis_document_json(document)
    except jsonld.JsonLdError as exc:
        if isinstance(exc.__cause__, _ContextNotBundled):
            raise InvalidEPCIS(
                f"JSON-LD context {exc.__cause__.url} is not bundled; contexts are never "
                "fetched over the network"
            ) from None
        raise InvalidEPCIS(f"JSON-LD expansion failed: {exc.args[0]}") from None
    except _GENERATOR_FAILURES as exc:
        raise InvalidEPCIS(f"the hash generator cannot read this document: {exc!r}") from None


def _xml_root(text: str) -> Element:
    """The document's root element, parsed only if it is safe to parse."""
    if len(text.encode("utf-8")) > MAX_XML_BYTES:
        raise InvalidEPCIS(
            f"EPCIS XML document is larger than {MAX_XML_BYTES // (1024 * 1024)} MiB; "
            "split it into several documents"
        )
    if _DOCTYPE.search(text):
        raise InvalidEPCIS(
            "EPCIS XML must not have a DOCTYPE (DTDs and entities are refused: they can "
            "expand without bound or read files); send the document without one"
        )
    try:
        root: Element = defused_fromstring(
            text, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise InvalidEPCIS(
            f"EPCIS XML refused: {exc}; DTDs, entities and external references are not read"
        ) from None
    except ParseError as exc:
        raise InvalidEPCIS(f"not well-formed XML: {exc}") from None
    return root


def _xml_event_list(root: Element) -> Element:
    event_list = root.find("EPCISBody/EventList")
    if event_list is None:
        raise InvalidEPCIS("not an EPCIS XML document: no EPCISBody/EventList")
    return event_list


def _xml_tree(text: str) -> Any:
    event_list = _xml_event_list(_xml_root(text))
    if len(event_list) == 0:
        return ("EventList", "", [])
    try:
        tree = xml_to_py.event_list_from_epcis_document_str(text)
    except _GENERATOR_FAILURES as exc:
        raise InvalidEPCIS(f"the hash generator cannot read this document: {exc!r}") from None
    if tree[0] != "EventList":
        raise InvalidEPCIS("the hash generator found no EventList")
    return tree


def _prehash(index: int, event: Any) -> str:
    """One event's canonical pre-hash string, after checking what the generator trusts."""
    name = event[0]
    if name not in EVENT_TYPES:
        raise InvalidEPCIS(f"event {index}: unknown event type {name!r}")
    if not any(child[0] == "eventTime" for child in event[2]):
        raise InvalidEPCIS(f"event {index}: no eventTime")
    for field, value in _elements(event):
        if field in TIME_FIELDS and not _is_date_time(value.strip()):
            raise InvalidEPCIS(f"event {index}: {field} must be ISO 8601 with an offset")
    prehashes = hash_generator.derive_prehashes_from_events(("EventList", "", [event]), "")
    if len(prehashes) != 1:
        raise InvalidEPCIS(f"event {index}: the hash generator could not canonicalise it")
    prehash: str = prehashes[0]
    return prehash


def _elements(node: Any) -> Iterator[tuple[str, str]]:
    """(name, text) of every element in the generator's tuple tree; list entries such as
    sources are pairs of elements rather than elements."""
    if isinstance(node, tuple):
        if len(node) == 3 and isinstance(node[0], str):
            yield node[0], str(node[1])
            for child in node[2]:
                yield from _elements(child)
        else:
            for part in node:
                yield from _elements(part)


# -- reading ----------------------------------------------------------------------------


def _text(document: bytes | str) -> str:
    if isinstance(document, str):
        return document
    try:
        return document.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidEPCIS(f"document is not UTF-8: {exc}") from None


def _load_json(text: str, parse_float: type[float] | type[Decimal]) -> Any:
    def no_constants(name: str) -> None:
        raise InvalidEPCIS(f"{name} is not a JSON number")

    try:
        return json.loads(text, parse_float=parse_float, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise InvalidEPCIS(f"not JSON: {exc}") from None
    except RecursionError:
        raise InvalidEPCIS("document nests too deeply") from None


def _event_list(document: Any) -> list[dict[str, Any]]:
    """epcisBody.eventList (or the single epcisBody.event), each a typed event object."""
    body = document.get("epcisBody") if isinstance(document, dict) else None
    if not isinstance(body, dict):
        raise InvalidEPCIS("not an EPCIS 2.0 JSON document: no epcisBody object")
    if "eventList" in body:
        found = body["eventList"]
    elif "event" in body:
        found = [body["event"]]
    else:
        raise InvalidEPCIS("epcisBody has no eventList")
    if not isinstance(found, list):
        raise InvalidEPCIS("epcisBody.eventList must be a list")
    for i, event in enumerate(found):
        if not isinstance(event, dict) or event.get("type") not in EVENT_TYPES:
            raise InvalidEPCIS(f"event {i + 1}: not an object with an EPCIS event type")
    return found


def _xml_events(text: str) -> list[Element]:
    """The event elements of an XML document; EPCIS 1.x `extension` wrappers (around a
    TransformationEvent, say) are looked through, as the hash generator does."""
    found: list[Element] = []
    for child in _xml_event_list(_xml_root(text)):
        found.extend(child if _local(child.tag) == "extension" else [child])
    return found


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_children(element: Element) -> list[Element]:
    """Child elements, with `extension` wrappers looked through."""
    children: list[Element] = []
    for child in element:
        if child.tag == "extension":
            children.extend(_xml_children(child))
        else:
            children.append(child)
    return children


def _xml_event(index: int, element: Element) -> dict[str, Any]:
    """One XML event in the JSON-LD shape `summarize` reads."""
    kind = _local(element.tag)
    if kind not in EVENT_TYPES:
        raise InvalidEPCIS(f"event {index}: unknown event type {kind!r}")
    try:
        event: dict[str, Any] = {"type": kind}
        event.update(_xml_fields(element))
    except RecursionError:
        raise InvalidEPCIS(f"event {index}: nests too deeply") from None
    return event


def _xml_fields(element: Element) -> dict[str, Any]:
    fields: dict[str, Any] = dict(element.attrib)
    for child in _xml_children(element):
        name = child.tag  # a user extension field keeps its {namespace}
        if name in _XML_LISTS:
            fields[name] = [_xml_item(item, _XML_LISTS[name]) for item in _xml_children(child)]
        elif name == "persistentDisposition":
            disposition: dict[str, list[str]] = {}
            for item in _xml_children(child):
                disposition.setdefault(item.tag, []).append((item.text or "").strip())
            fields[name] = disposition
        elif name == "sensorReport":  # a list in JSON-LD, even of one
            fields.setdefault(name, []).append(_xml_value(name, child))
        elif name in fields and isinstance(fields[name], list):
            fields[name].append(_xml_value(name, child))
        elif name in fields:
            fields[name] = [fields[name], _xml_value(name, child)]
        else:
            fields[name] = _xml_value(name, child)
    return fields


def _xml_value(name: str, element: Element) -> Any:
    if len(element) == 0 and not element.attrib:
        text = (element.text or "").strip()
        return _xml_number(text) if name in _XML_NUMBERS else text
    return _xml_fields(element)


def _xml_item(element: Element, named: str | None) -> Any:
    """One entry of a list: an EPC's text, a quantity or sensor element's fields, or
    (sources, destinations, business transactions) its type and its text under `named`."""
    if named is not None:
        item: dict[str, Any] = dict(element.attrib)
        item[named] = (element.text or "").strip()
        return item
    if len(element) == 0 and not element.attrib:
        return (element.text or "").strip()
    return {
        name: (_xml_number(value) if name in _XML_NUMBERS else value)
        for name, value in _xml_fields(element).items()
    }


def _xml_number(text: str) -> Any:
    """xsd:decimal/double text as Decimal (exact, as the JSON path reads numbers); text
    that is not a number stays text, for `summarize` to refuse by name."""
    try:
        return Decimal(text)
    except ArithmeticError:
        return text


def _is_date_time(value: str) -> bool:
    if not _DATE_TIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _string(event: dict[str, Any], name: str) -> str:
    value = event.get(name, "")
    if not isinstance(value, str):
        raise InvalidEPCIS(f"{name} must be a string, got {value!r}")
    return value


def _list(event: dict[str, Any], name: str) -> list[Any]:
    value = event.get(name, [])
    if not isinstance(value, list):
        raise InvalidEPCIS(f"{name} must be a list")
    return value


def _strings(event: dict[str, Any], name: str) -> list[str]:
    values = _list(event, name)
    if not all(isinstance(v, str) for v in values):
        raise InvalidEPCIS(f"{name} must list EPC URIs as strings")
    return values


def _short_name(value: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def _location(event: dict[str, Any], name: str) -> str:
    value = event.get(name)
    if value is None:
        return ""
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        raise InvalidEPCIS(f"{name} must be an object with an id")
    location: str = value["id"]
    return location


def _persistent(event: dict[str, Any], which: str) -> list[str]:
    """persistentDisposition.set or .unset, each without its CBV prefix ("recalled")."""
    value = event.get("persistentDisposition")
    if value is None:
        return []
    if not isinstance(value, dict):
        raise InvalidEPCIS("persistentDisposition must be an object with set and/or unset")
    names = value.get(which, [])
    if isinstance(names, str):  # JSON-LD compaction writes a one-item list as the item
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidEPCIS(f"persistentDisposition.{which} must list dispositions")
    return [_short_name(n, _DISPOSITION_PREFIXES) for n in names]


def _quantity(element: Any) -> Quantity:
    if not isinstance(element, dict) or not isinstance(element.get("epcClass"), str):
        raise InvalidEPCIS("a quantity element needs an epcClass")
    return {
        "epcClass": element["epcClass"],
        "quantity": _number_text(element.get("quantity")),
        "uom": _string(element, "uom"),
    }


def _number_text(value: Any) -> str:
    """A quantity as plain decimal text (600, 12.5); floats go through their shortest
    repr, so the same JSON number always gives the same text."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise InvalidEPCIS(f"quantity must be a number, got {value!r}")
    number = Decimal(value) if isinstance(value, int) else Decimal(str(value))
    if not number.is_finite():
        raise InvalidEPCIS(f"quantity must be finite, got {value!r}")
    return format(number, "f")
