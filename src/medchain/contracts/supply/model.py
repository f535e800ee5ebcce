"""Drug and device traceability: vocabulary, state keys, and pure queries.

Units are keyed by GS1 (GTIN + serial), batches by GTIN + lot, ingredient
lots by the supplier's lot id. The chain keeps each unit's status, holder and
a short life-cycle history, each EPCIS event's standard hash (the event itself
stays with its custodian), shipments with their cold-chain state, and the
indexes that trace an ingredient lot forward to every unit made from it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any, NotRequired, TypedDict

NAMESPACE = "supply"
Get = Callable[[str], Any]
Scan = Callable[[str], Iterator[tuple[str, Any]]]

# Unit statuses and the EPCIS business steps that move them.
COMMISSIONED, PACKED, IN_TRANSIT, RECEIVED = "commissioned", "packed", "in_transit", "received"
DISPENSED, DESTROYED, QUARANTINED = "dispensed", "destroyed", "quarantined"
BIZ_STEPS = frozenset(
    {"commissioning", "packing", "shipping", "receiving", "dispensing", "destroying"}
)
HOLDING = frozenset({COMMISSIONED, PACKED, RECEIVED})  # at rest with a holder
ACTIVE, RECALLED = "active", "recalled"  # batches and ingredient lots
IN_TRANSIT_SHIPMENT, RECEIVED_SHIPMENT = "in_transit", "received"
MAX_EPCS = 1000
MAX_READINGS = 500
HISTORY = 30  # life-cycle steps kept on a unit; the EPCIS events keep the rest
SERIAL = r"[!-~]{1,40}"  # GS1 AI 21: printable ASCII


# -- state records (plain dicts on chain: these name their fields for readers) --


class Product(TypedDict):
    """`supply/product/<gtin>`; a cold-chain product has all three range fields."""

    gtin: str
    name: str
    kind: str  # "drug" or "device"
    manufacturer: str
    temp_min_c10: NotRequired[int]
    temp_max_c10: NotRequired[int]
    max_excursion_ms: NotRequired[int]


class Ingredient(TypedDict):
    """`supply/ingredient/<lot_id>`."""

    lot_id: str
    substance: str
    supplier: str
    status: str  # ACTIVE or RECALLED


class Batch(TypedDict):
    """`supply/batch/<gtin>/<lot>`; `units` counts the units commissioned."""

    gtin: str
    lot: str
    expiry: str  # YYYY-MM-DD
    ingredients: list[str]
    manufacturer: str
    status: str  # ACTIVE or RECALLED
    units: int
    recall_reason: NotRequired[str]


class BatchRef(TypedDict):
    """`supply/by-ingredient/<lot_id>/<gtin>/<lot>`: a batch made from the lot."""

    gtin: str
    lot: str


class Unit(TypedDict):
    """`supply/unit/<gtin>/<serial>`; history rows are [step, time_ms, org]."""

    unit: str
    gtin: str
    serial: str
    lot: str
    status: str
    holder: str
    container: str | None
    shipment: str | None
    history: list[list[Any]]


class UnitPlace(TypedDict):
    """One unit in a forward trace: where it is and its status."""

    unit: str
    status: str
    holder: str


# units(gtin, lots): the units of those lots of a product, in unit id order.
UnitsOf = Callable[[str, Collection[str]], Iterable[UnitPlace]]


class UnitRef(TypedDict):
    """`supply/by-batch/<gtin>/<lot>/<serial>`: a unit of the batch."""

    unit: str


class Container(TypedDict):
    """`supply/container/<id>`: a case or pallet and the units packed in it."""

    units: list[str]
    org: str


# `supply/shipment/<id>`. The range fields are None for a shipment with no cold-chain
# product; `last_reading` is [time_ms, tenths of °C]. The functional form because
# the sender's field is named `from`, a Python keyword.
Shipment = TypedDict(
    "Shipment",
    {
        "shipment": str,
        "from": str,
        "to": str,
        "device": str,
        "units": list[str],
        "status": str,
        "temp_min_c10": int | None,
        "temp_max_c10": int | None,
        "max_excursion_ms": int | None,
        "excursion_ms": int,
        "last_reading": list[int] | None,
        "violation": bool,
    },
)


class RecordedEvent(TypedDict):
    """`supply/event/<EPCIS event hash>`: that the event happened, and where."""

    biz_step: str
    org: str
    units: int
    event_time_ms: int
    height: int


class Location(TypedDict):
    """`supply/location/<id>`: the organisation a GS1 location or party number (an
    SGLN, a PGLN, or its Digital Link) belongs to, as governance attested it."""

    location: str
    org: str
    height: int


# -- identifiers ----------------------------------------------------------------------


def gtin_ok(gtin: str) -> bool:
    """14 digits with a valid GS1 mod-10 check digit."""
    if not re.fullmatch(r"\d{14}", gtin):
        return False
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(gtin[:13]))
    return (10 - total % 10) % 10 == int(gtin[13])


def split_unit(unit: str) -> tuple[str, str] | None:
    """(gtin, serial) of a "<GTIN-14 with check digit>/<serial>" unit id, else None."""
    gtin, _, serial = unit.partition("/")
    if not gtin_ok(gtin) or not re.fullmatch(SERIAL, serial):
        return None
    return gtin, serial


# -- keys -------------------------------------------------------------------------


def product_key(gtin: str) -> str:
    """A product, by GTIN-14."""
    return f"{NAMESPACE}/product/{gtin}"


def ingredient_key(lot_id: str) -> str:
    """An ingredient lot, by its supplier's lot id."""
    return f"{NAMESPACE}/ingredient/{lot_id}"


def batch_key(gtin: str, lot: str) -> str:
    """A batch, by GTIN and lot."""
    return f"{NAMESPACE}/batch/{gtin}/{lot}"


def by_ingredient_prefix(lot_id: str) -> str:
    """The batches made from an ingredient lot (forward trace)."""
    return f"{NAMESPACE}/by-ingredient/{lot_id}/"


UNITS_PREFIX = f"{NAMESPACE}/unit/"


def unit_key(unit: str) -> str:
    """`unit` is "<gtin>/<serial>"."""
    return UNITS_PREFIX + unit


def unit_of_key(key: str) -> str:
    """The unit id ("<gtin>/<serial>") a `unit_key` names."""
    return key.removeprefix(UNITS_PREFIX)


def product_units_prefix(gtin: str) -> str:
    """Every unit of a product (all its batches), in one range scan."""
    return f"{UNITS_PREFIX}{gtin}/"


def by_batch_prefix(gtin: str, lot: str) -> str:
    """The units of a batch."""
    return f"{NAMESPACE}/by-batch/{gtin}/{lot}/"


def container_key(container: str) -> str:
    """A case or pallet packed earlier."""
    return f"{NAMESPACE}/container/{container}"


def shipment_key(shipment: str) -> str:
    """A shipment and its cold-chain state."""
    return f"{NAMESPACE}/shipment/{shipment}"


def event_key(event_hash: str) -> str:
    """A recorded EPCIS event, by its standard event hash."""
    return f"{NAMESPACE}/event/{event_hash}"


def location_key(location: str) -> str:
    """Who a GS1 location or party number belongs to."""
    return f"{NAMESPACE}/location/{location}"


def org_locations_prefix(org_id: str) -> str:
    """Every location registered to an organisation (`<prefix><location>`), so an edge
    learns in one scan which identifiers in a document are a reader's."""
    return f"{NAMESPACE}/org-location/{org_id}/"


def org_location_key(org_id: str, location: str) -> str:
    """The entry saying `location` is registered to `org_id`."""
    return org_locations_prefix(org_id) + location


def holders_prefix(gtin: str, lot: str) -> str:
    """Per-organisation unit counts of a batch (`<prefix><org>`: count), whom a recall
    notifies."""
    return f"{NAMESPACE}/holders/{gtin}/{lot}/"


def holder_key(gtin: str, lot: str, org_id: str) -> str:
    """How many units of the batch `org_id` holds."""
    return holders_prefix(gtin, lot) + org_id


def by_ingredient_key(lot_id: str, gtin: str, lot: str) -> str:
    """The entry saying batch gtin/lot was made from ingredient lot `lot_id`."""
    return f"{by_ingredient_prefix(lot_id)}{gtin}/{lot}"


def by_batch_key(gtin: str, lot: str, serial: str) -> str:
    """The entry saying unit gtin/serial belongs to batch gtin/lot."""
    return by_batch_prefix(gtin, lot) + serial


def scanned_units(scan: Scan) -> UnitsOf:
    """`units(gtin, lots)` read from state itself: one range scan over the product's
    units (cheaper than a point read per unit), keeping those of `lots`, in key
    order, which is unit id order."""

    def units(gtin: str, lots: Collection[str]) -> Iterator[UnitPlace]:
        for _, unit in scan(product_units_prefix(gtin)):
            if unit["lot"] in lots:
                yield {"unit": unit["unit"], "status": unit["status"], "holder": unit["holder"]}

    return units


def trace_ingredient(
    get: Get, scan: Scan, lot_id: str, units: UnitsOf | None = None
) -> dict[str, Any]:
    """Every batch made from an ingredient lot and every unit of those batches,
    with where each unit is and its status: products by GTIN, each product's units
    by unit id. `units` answers per product; by default a scan of state, and a
    node passes its indexed read table (the same answer without decoding every
    unit record)."""
    units_of = scanned_units(scan) if units is None else units
    batches = [get(batch_key(e["gtin"], e["lot"])) for _, e in scan(by_ingredient_prefix(lot_id))]
    lots_by_gtin: dict[str, set[str]] = {}
    for batch in batches:
        lots_by_gtin.setdefault(batch["gtin"], set()).add(batch["lot"])
    found: list[UnitPlace] = []
    for gtin, lots in sorted(lots_by_gtin.items()):
        found.extend(units_of(gtin, lots))
    return {"ingredient_lot": lot_id, "batches": batches, "units": found}


def batch_blocked(get: Get, batch: dict[str, Any]) -> str | None:
    """Why units of this batch may not be dispensed (recalled batch or ingredient)."""
    if batch["status"] == "recalled":
        return f"batch {batch['gtin']}/{batch['lot']} is recalled ({batch.get('recall_reason')})"
    for lot_id in batch["ingredients"]:
        ingredient = get(ingredient_key(lot_id))
        if ingredient is not None and ingredient["status"] == "recalled":
            return f"ingredient lot {lot_id} is recalled"
    return None


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def valid_date(text: str) -> bool:
    """A real calendar date written YYYY-MM-DD (pure: contracts see no clock modules)."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return False
    y, mo, d = text[:4], text[5:7], text[8:]
    if not (
        y.isdigit()
        and mo.isdigit()
        and d.isdigit()
        and y.isascii()
        and mo.isascii()
        and d.isascii()
    ):
        return False
    year, month, day = int(y), int(mo), int(d)
    return 1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)


def block_date(time_ms: int) -> str:
    """The UTC calendar date (YYYY-MM-DD) of a block time, by integer arithmetic."""
    days = time_ms // 86_400_000 + 719_468  # days from 0000-03-01 (civil-from-days)
    era = days // 146_097
    doe = days - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return f"{year:04d}-{month:02d}-{day:02d}"
