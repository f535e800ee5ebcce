"""Drug and device traceability: vocabulary, state keys, and pure queries.

Units are keyed by GS1 (GTIN + serial), batches by GTIN + lot, ingredient
lots by the supplier's lot id. The chain keeps each unit's status, holder and
a short life-cycle history, each EPCIS event's standard hash (the event itself
stays with its custodian), shipments with their cold-chain state, and the
indexes that trace an ingredient lot forward to every unit made from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

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
MAX_EPCS = 1000
MAX_READINGS = 500


def product_key(gtin: str) -> str:
    return f"{NAMESPACE}/product/{gtin}"


def ingredient_key(lot_id: str) -> str:
    return f"{NAMESPACE}/ingredient/{lot_id}"


def batch_key(gtin: str, lot: str) -> str:
    return f"{NAMESPACE}/batch/{gtin}/{lot}"


def by_ingredient_prefix(lot_id: str) -> str:
    return f"{NAMESPACE}/by-ingredient/{lot_id}/"


def unit_key(unit: str) -> str:
    """`unit` is "<gtin>/<serial>"."""
    return f"{NAMESPACE}/unit/{unit}"


def by_batch_prefix(gtin: str, lot: str) -> str:
    return f"{NAMESPACE}/by-batch/{gtin}/{lot}/"


def container_key(container: str) -> str:
    return f"{NAMESPACE}/container/{container}"


def shipment_key(shipment: str) -> str:
    return f"{NAMESPACE}/shipment/{shipment}"


def event_key(event_hash: str) -> str:
    return f"{NAMESPACE}/event/{event_hash}"


def holders_prefix(gtin: str, lot: str) -> str:
    return f"{NAMESPACE}/holders/{gtin}/{lot}/"


def device_key(udi: str) -> str:
    return f"{NAMESPACE}/device/{udi}"


def device_use_prefix(udi: str) -> str:
    return f"{NAMESPACE}/device-use/{udi}/"


def trace_ingredient(get: Get, scan: Scan, lot_id: str) -> dict[str, Any]:
    """Every batch made from an ingredient lot and every unit of those batches,
    with where each unit is and its status."""
    batches = [get(batch_key(e["gtin"], e["lot"])) for _, e in scan(by_ingredient_prefix(lot_id))]
    lots_by_gtin: dict[str, set[str]] = {}
    for batch in batches:
        lots_by_gtin.setdefault(batch["gtin"], set()).add(batch["lot"])
    units = []
    for gtin, lots in sorted(lots_by_gtin.items()):
        # One range scan over the product's units beats a point read per unit.
        for _, unit in scan(f"{NAMESPACE}/unit/{gtin}/"):
            if unit["lot"] in lots:
                units.append(
                    {"unit": unit["unit"], "status": unit["status"], "holder": unit["holder"]}
                )
    return {"ingredient_lot": lot_id, "batches": batches, "units": units}


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
