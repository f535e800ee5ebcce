"""Supply contract: products, ingredient lots, batches, EPCIS events, cold chain,
recall. (Medical devices are the `devices` contract.)

Authority:
  register_product, register_batch     staff of the manufacturer
  register_ingredient                  staff of a manufacturer or supplier
  record_event                         staff of the organisation doing the step
                                       (commissioning: the batch's manufacturer;
                                       receiving: the shipment's destination; ...)
  readings                             the logistics device named on the shipment
  recall                               the manufacturer of the batch / ingredient
                                       lot, or a regulator
  lift_recall                          the manufacturer of the batch, or a regulator
  register_location                    a consortium admin or a regulator

A refused step says why; a duplicated serial (commissioned again, or
dispensed again) is refused *and* leaves a `supply.counterfeit_suspected`
audit event in the block, so the pack's lookup shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from msgspec import UnsetType

from medchain.contracts.base import (
    ActionHandler,
    governor_member,
    signer_member,
    staff_member,
    unauthorized,
)
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import Payload, invalid
from medchain.contracts.supply import model
from medchain.contracts.supply.model import Batch, Ingredient, Location, Product, Shipment, Unit
from medchain.contracts.supply.payloads import (
    LiftRecallPayload,
    ReadingsPayload,
    RecallPayload,
    RecordEventPayload,
    RegisterBatchPayload,
    RegisterIngredientPayload,
    RegisterLocationPayload,
    RegisterProductPayload,
)
from medchain.core.context import Context
from medchain.exceptions import Code, InvalidTransaction

Member = dict[str, Any]


def _fail(message: str, code: Code = Code.INVALID_STATE) -> InvalidTransaction:
    return InvalidTransaction(code, message)


def _split_unit(unit: str) -> tuple[str, str]:
    """(gtin, serial) of a unit id, or INVALID_PAYLOAD."""
    parts = model.split_unit(unit)
    if parts is None:
        raise invalid(f"unit {unit!r} is not <GTIN-14 with check digit>/<serial>")
    return parts


class SupplyHandler(ActionHandler):
    """The `supply` system contract, version 1."""

    namespace = model.NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "register_product": RegisterProductPayload,
        "register_ingredient": RegisterIngredientPayload,
        "register_batch": RegisterBatchPayload,
        "record_event": RecordEventPayload,
        "readings": ReadingsPayload,
        "recall": RecallPayload,
        "lift_recall": LiftRecallPayload,
        "register_location": RegisterLocationPayload,
    }

    # -- catalogue --------------------------------------------------------------

    def register_product(self, payload: RegisterProductPayload, ctx: Context) -> None:
        """A product and its cold-chain range, by its manufacturer."""
        staff = staff_member(ctx, {"manufacturer"})
        if ctx.get(model.product_key(payload.gtin)) is not None:
            raise _fail(f"product {payload.gtin} exists", Code.ALREADY_EXISTS)
        product: Product = {
            "gtin": payload.gtin,
            "name": payload.name,
            "kind": payload.kind,
            "manufacturer": staff["org_id"],
        }
        ctx.put(model.product_key(payload.gtin), product | payload.cold_chain())
        ctx.emit("supply.product_registered", gtin=payload.gtin, actor=staff["did"])

    def register_ingredient(self, payload: RegisterIngredientPayload, ctx: Context) -> None:
        """An ingredient lot, by the manufacturer or lab that supplies it."""
        staff = staff_member(ctx, {"manufacturer", "lab"})
        if ctx.get(model.ingredient_key(payload.lot_id)) is not None:
            raise _fail(f"ingredient lot {payload.lot_id} exists", Code.ALREADY_EXISTS)
        ingredient: Ingredient = {
            "lot_id": payload.lot_id,
            "substance": payload.substance,
            "supplier": staff["org_id"],
            "status": model.ACTIVE,
        }
        ctx.put(model.ingredient_key(payload.lot_id), ingredient)
        ctx.emit("supply.ingredient_registered", lot_id=payload.lot_id, actor=staff["did"])

    def register_batch(self, payload: RegisterBatchPayload, ctx: Context) -> None:
        """A batch of the signer's organisation's product, indexed under every
        ingredient lot it was made from so a recall of the lot finds it."""
        gtin, lot = payload.gtin, payload.lot
        product: Product = ctx.require(model.product_key(gtin), f"product {gtin}")
        staff = staff_member(ctx, {"manufacturer"})
        if product["manufacturer"] != staff["org_id"]:
            raise unauthorized("only the product's manufacturer registers its batches")
        for lot_id in payload.ingredients:
            ctx.require(model.ingredient_key(lot_id), f"ingredient lot {lot_id!r}")
        if ctx.get(model.batch_key(gtin, lot)) is not None:
            raise _fail(f"batch {gtin}/{lot} exists", Code.ALREADY_EXISTS)
        batch: Batch = {
            "gtin": gtin,
            "lot": lot,
            "expiry": payload.expiry,
            "ingredients": payload.ingredients,
            "manufacturer": staff["org_id"],
            "status": model.ACTIVE,
            "units": 0,
        }
        ctx.put(model.batch_key(gtin, lot), batch)
        for lot_id in payload.ingredients:
            ctx.put(model.by_ingredient_key(lot_id, gtin, lot), {"gtin": gtin, "lot": lot})
        ctx.emit("supply.batch_registered", gtin=gtin, lot=lot, actor=staff["did"])

    # -- EPCIS events -------------------------------------------------------------

    def record_event(self, payload: RecordEventPayload, ctx: Context) -> None:
        """One EPCIS event, by its standard hash: checked against each unit's state."""
        if payload.event_time_ms > ctx.time_ms:
            raise invalid("event_time_ms is in the future of this block")
        if ctx.get(model.event_key(payload.event_hash)) is not None:
            raise _fail("this EPCIS event is already recorded", Code.DUPLICATE_TX)
        staff = staff_member(ctx)
        steps: dict[str, Callable[[Context, RecordEventPayload, Member], list[str]]] = {
            "commissioning": self._commission,
            "packing": self._pack,
            "shipping": self._ship,
            "receiving": self._receive,
            "dispensing": self._dispense,
            "destroying": self._destroy,
        }
        units = steps[payload.biz_step](ctx, payload, staff)
        ctx.put(
            model.event_key(payload.event_hash),
            {
                "biz_step": payload.biz_step,
                "org": staff["org_id"],
                "units": len(units),
                "event_time_ms": payload.event_time_ms,
                "height": ctx.height,
            },
        )
        ctx.emit(
            "supply.event",
            event_hash=payload.event_hash,
            biz_step=payload.biz_step,
            units=str(len(units)),
            org=staff["org_id"],
            actor=staff["did"],
        )

    def _units_of(self, ctx: Context, epcs: list[str]) -> list[str]:
        """Unit keys, expanding containers (cases, pallets) packed earlier."""
        out: list[str] = []
        for epc in epcs:
            container = ctx.get(model.container_key(epc))
            out.extend(container["units"] if container is not None else [epc])
        return out

    def _load(self, ctx: Context, unit_id: str) -> Unit:
        _split_unit(unit_id)
        unit: Unit = ctx.require(model.unit_key(unit_id), f"unit {unit_id}")  # a fresh decode
        return unit

    def _save(self, ctx: Context, unit: Unit, step: str, org: str, **change: Any) -> None:
        unit.update(change)  # type: ignore[typeddict-item]
        unit["history"] = [*unit["history"], [step, ctx.time_ms, org]][-model.HISTORY :]
        ctx.put(model.unit_key(unit["unit"]), unit)

    def _holders(self, ctx: Context, unit: Unit, org: str, delta: int) -> None:
        key = model.holder_key(unit["gtin"], unit["lot"], org)
        count = (ctx.get(key) or 0) + delta
        if count:
            ctx.put(key, count)
        else:
            ctx.delete(key)

    def _commission(self, ctx: Context, payload: RecordEventPayload, staff: Member) -> list[str]:
        lot = str(payload.lot)  # commissioning always names it (RecordEventPayload checks)
        units = []
        for epc in payload.epcs:
            gtin, serial = _split_unit(epc)
            batch = ctx.require(model.batch_key(gtin, lot), f"batch {gtin}/{lot}")
            if batch["manufacturer"] != staff["org_id"]:
                raise unauthorized("only the batch's manufacturer commissions its units")
            if ctx.get(model.unit_key(epc)) is not None:
                ctx.refuse(
                    Code.ALREADY_EXISTS,
                    f"serial {epc} is already commissioned: suspected counterfeit",
                    "supply.counterfeit_suspected",
                    record_id=epc,
                    reason="serial commissioned twice",
                    actor=staff["did"],
                    org=staff["org_id"],
                )
            unit: Unit = {
                "unit": epc,
                "gtin": gtin,
                "serial": serial,
                "lot": lot,
                "status": model.COMMISSIONED,
                "holder": staff["org_id"],
                "container": None,
                "shipment": None,
                "history": [],
            }
            self._save(ctx, unit, "commissioning", staff["org_id"])
            ctx.put(model.by_batch_key(gtin, lot, serial), {"unit": epc})
            self._holders(ctx, unit, staff["org_id"], 1)
            units.append(epc)
        per_gtin: dict[str, int] = {}
        for epc in units:
            gtin = epc.split("/", 1)[0]
            per_gtin[gtin] = per_gtin.get(gtin, 0) + 1
        for gtin, count in sorted(per_gtin.items()):
            counted: Batch = ctx.require(model.batch_key(gtin, lot), "batch")
            counted["units"] += count
            ctx.put(model.batch_key(gtin, lot), counted)
        return units

    def _pack(self, ctx: Context, payload: RecordEventPayload, staff: Member) -> list[str]:
        container = str(payload.parent)  # packing always names it (RecordEventPayload checks)
        units = self._units_of(ctx, payload.epcs)
        for unit_id in units:
            unit = self._load(ctx, unit_id)
            if unit["holder"] != staff["org_id"] or unit["status"] not in model.HOLDING:
                raise _fail(f"{unit_id} is not held here at rest ({unit['status']})")
            self._save(ctx, unit, "packing", staff["org_id"], container=container)
        ctx.put(model.container_key(container), {"units": units, "org": staff["org_id"]})
        return units

    def _ship(self, ctx: Context, payload: RecordEventPayload, staff: Member) -> list[str]:
        # shipping always names all three (RecordEventPayload checks)
        shipment_id, destination = str(payload.shipment), str(payload.destination)
        if ctx.get(identity.org_key(destination)) is None:
            raise _fail(f"no organisation {destination!r}", Code.NOT_FOUND)
        if ctx.get(model.shipment_key(shipment_id)) is not None:
            raise _fail(f"shipment {shipment_id} exists", Code.ALREADY_EXISTS)
        units = self._units_of(ctx, payload.epcs)
        ranges: list[Product] = []
        for unit_id in units:
            unit = self._load(ctx, unit_id)
            if unit["holder"] != staff["org_id"] or unit["status"] not in model.HOLDING:
                raise _fail(f"{unit_id} cannot be shipped from here ({unit['status']})")
            product: Product = ctx.get(model.product_key(unit["gtin"]))
            if "temp_min_c10" in product:
                ranges.append(product)
            self._holders(ctx, unit, staff["org_id"], -1)
            self._save(
                ctx,
                unit,
                "shipping",
                staff["org_id"],
                status=model.IN_TRANSIT,
                shipment=shipment_id,
            )
        shipment: Shipment = {
            "shipment": shipment_id,
            "from": staff["org_id"],
            "to": destination,
            "device": str(payload.device),
            "units": units,
            "status": model.IN_TRANSIT_SHIPMENT,
            "temp_min_c10": max((r["temp_min_c10"] for r in ranges), default=None),
            "temp_max_c10": min((r["temp_max_c10"] for r in ranges), default=None),
            "max_excursion_ms": min((r["max_excursion_ms"] for r in ranges), default=None),
            "excursion_ms": 0,
            "last_reading": None,
            "violation": False,
        }
        ctx.put(model.shipment_key(shipment_id), shipment)
        return units

    def _receive(self, ctx: Context, payload: RecordEventPayload, staff: Member) -> list[str]:
        shipment_id = str(payload.shipment)  # receiving always names it (RecordEventPayload checks)
        shipment: Shipment = ctx.require(model.shipment_key(shipment_id), "shipment")
        if shipment["to"] != staff["org_id"]:
            raise unauthorized("only the shipment's destination receives it")
        units = self._units_of(ctx, payload.epcs)
        for unit_id in units:
            unit = self._load(ctx, unit_id)
            if unit["status"] not in (model.IN_TRANSIT, model.QUARANTINED) or (
                unit["shipment"] != shipment["shipment"]
            ):
                raise _fail(
                    f"{unit_id} was not shipped in {shipment['shipment']}: "
                    "no receipt without shipment"
                )
            status = model.QUARANTINED if shipment["violation"] else model.RECEIVED
            self._save(
                ctx,
                unit,
                "receiving",
                staff["org_id"],
                status=status,
                holder=staff["org_id"],
                shipment=None,
            )
            self._holders(ctx, unit, staff["org_id"], 1)
        shipment["status"] = model.RECEIVED_SHIPMENT
        ctx.put(model.shipment_key(shipment["shipment"]), shipment)
        return units

    def _dispense(self, ctx: Context, payload: RecordEventPayload, staff: Member) -> list[str]:
        units = self._units_of(ctx, payload.epcs)
        today = model.block_date(ctx.time_ms)
        batches: dict[tuple[str, str], tuple[Batch, str | None]] = {}
        for unit_id in units:
            unit = self._load(ctx, unit_id)
            if unit["status"] == model.DISPENSED:
                ctx.refuse(
                    Code.INVALID_STATE,
                    f"{unit_id} was already dispensed: suspected counterfeit",
                    "supply.counterfeit_suspected",
                    record_id=unit_id,
                    reason="serial dispensed twice",
                    actor=staff["did"],
                    org=staff["org_id"],
                )
            if unit["holder"] != staff["org_id"] or unit["status"] != model.RECEIVED:
                raise _fail(
                    f"{unit_id} cannot be dispensed here ({unit['status']} at {unit['holder']})"
                )
            lot_key = (unit["gtin"], unit["lot"])
            if lot_key not in batches:  # one recall/expiry check per batch, not per unit
                batch = ctx.get(model.batch_key(*lot_key))
                batches[lot_key] = (batch, model.batch_blocked(ctx.get, batch))
            batch, blocked = batches[lot_key]
            if blocked is not None:
                raise _fail(f"{unit_id} may not be dispensed: {blocked}")
            if batch["expiry"] < today:
                raise _fail(f"{unit_id} expired on {batch['expiry']}")
            self._holders(ctx, unit, staff["org_id"], -1)
            self._save(ctx, unit, "dispensing", staff["org_id"], status=model.DISPENSED)
        return units

    def _destroy(self, ctx: Context, payload: RecordEventPayload, staff: Member) -> list[str]:
        units = self._units_of(ctx, payload.epcs)
        for unit_id in units:
            unit = self._load(ctx, unit_id)
            if unit["holder"] != staff["org_id"] or unit["status"] in (
                model.DISPENSED,
                model.DESTROYED,
            ):
                raise _fail(f"{unit_id} cannot be destroyed here ({unit['status']})")
            self._holders(ctx, unit, staff["org_id"], -1)
            self._save(ctx, unit, "destroying", staff["org_id"], status=model.DESTROYED)
        return units

    # -- cold chain -----------------------------------------------------------------

    def readings(self, payload: ReadingsPayload, ctx: Context) -> None:
        """Signed temperature readings of a shipment's logger; a violation alerts in this
        block and quarantines every unit of the shipment."""
        shipment: Shipment = ctx.require(
            model.shipment_key(payload.shipment), f"shipment {payload.shipment}"
        )
        device = signer_member(ctx)
        if device["did"] != shipment["device"]:
            raise unauthorized("only the shipment's logger reports its temperature")
        low, high, limit = (
            shipment["temp_min_c10"],
            shipment["temp_max_c10"],
            shipment["max_excursion_ms"],
        )
        if low is None or high is None or limit is None:
            raise _fail("this shipment has no cold-chain range")
        last = shipment["last_reading"]
        for time_ms, temp in payload.readings:
            if time_ms > ctx.time_ms or (last is not None and time_ms <= last[0]):
                raise invalid("reading times must increase and not be in the future")
            if last is not None and not low <= last[1] <= high:
                shipment["excursion_ms"] += time_ms - last[0]
            last = [time_ms, temp]
            if shipment["excursion_ms"] > limit and not shipment["violation"]:
                shipment["violation"] = True
                self._quarantine(ctx, shipment, device["did"], time_ms, temp)
        shipment["last_reading"] = last
        ctx.put(model.shipment_key(shipment["shipment"]), shipment)

    def _quarantine(
        self, ctx: Context, shipment: Shipment, device: str, time_ms: int, temp: int
    ) -> None:
        for unit_id in shipment["units"]:
            unit: Unit = ctx.get(model.unit_key(unit_id))
            if unit["status"] == model.IN_TRANSIT:
                self._save(ctx, unit, "quarantine", shipment["to"], status=model.QUARANTINED)
        ctx.emit(
            "supply.cold_chain_violation",
            shipment=shipment["shipment"],
            units=str(len(shipment["units"])),
            excursion_ms=str(shipment["excursion_ms"]),
            reading_time_ms=str(time_ms),
            temp_c10=str(temp),
            notify=f"{shipment['from']},{shipment['to']}",
            actor=device,
        )

    # -- recall ---------------------------------------------------------------------

    def recall(self, payload: RecallPayload, ctx: Context) -> None:
        """Recall a batch or an ingredient lot (and so every batch made from it)."""
        caller = signer_member(ctx)
        regulator = "regulator" in caller["roles"]
        if not isinstance(payload.ingredient_lot, UnsetType):
            ingredient: Ingredient = ctx.require(
                model.ingredient_key(payload.ingredient_lot), "ingredient lot"
            )
            if not (regulator or caller["org_id"] == ingredient["supplier"]):
                raise unauthorized("only the supplier or a regulator recalls a lot")
            ingredient["status"] = model.RECALLED
            ctx.put(model.ingredient_key(ingredient["lot_id"]), ingredient)
            batches = [
                (entry["gtin"], entry["lot"])
                for _, entry in ctx.scan(model.by_ingredient_prefix(ingredient["lot_id"]))
            ]
            reason = f"ingredient lot {ingredient['lot_id']}: {payload.reason}"
        else:  # a batch: RecallPayload makes sure both are given
            gtin, lot = str(payload.gtin), str(payload.lot)
            batch = ctx.require(model.batch_key(gtin, lot), "batch")
            if not (regulator or caller["org_id"] == batch["manufacturer"]):
                raise unauthorized("only the manufacturer or a regulator recalls a batch")
            batches = [(gtin, lot)]
            reason = payload.reason
        for gtin, lot in batches:
            recalled: Batch = ctx.get(model.batch_key(gtin, lot))
            recalled["status"], recalled["recall_reason"] = model.RECALLED, reason[:300]
            ctx.put(model.batch_key(gtin, lot), recalled)
            holders = [
                key.rsplit("/", 1)[1] for key, _ in ctx.scan(model.holders_prefix(gtin, lot))
            ]
            ctx.emit(
                "supply.recall",
                gtin=gtin,
                lot=lot,
                reason=payload.reason[:300],
                notify=",".join(holders),
                actor=caller["did"],
            )

    def lift_recall(self, payload: LiftRecallPayload, ctx: Context) -> None:
        """Lift a batch's recall: its units may be dispensed again (unless an ingredient
        lot they were made from is recalled), and every holder is told."""
        caller = signer_member(ctx)
        batch: Batch = ctx.require(model.batch_key(payload.gtin, payload.lot), "batch")
        if not ("regulator" in caller["roles"] or caller["org_id"] == batch["manufacturer"]):
            raise unauthorized("only the manufacturer or a regulator lifts a batch's recall")
        if batch["status"] != model.RECALLED:
            raise _fail(f"batch {payload.gtin}/{payload.lot} is not recalled")
        batch["status"] = model.ACTIVE
        batch.pop("recall_reason", None)
        ctx.put(model.batch_key(payload.gtin, payload.lot), batch)
        holders = [
            key.rsplit("/", 1)[1]
            for key, _ in ctx.scan(model.holders_prefix(payload.gtin, payload.lot))
        ]
        ctx.emit(
            "supply.recall_lifted",
            gtin=payload.gtin,
            lot=payload.lot,
            reason=payload.reason[:300],
            notify=",".join(holders),
            actor=caller["did"],
        )

    # -- GS1 locations and parties ---------------------------------------------------

    def register_location(self, payload: RegisterLocationPayload, ctx: Context) -> None:
        """Record which organisation a GS1 location or party number belongs to; only
        governance may, since the chain cannot check who GS1 gave a number to."""
        caller = governor_member(ctx)
        org = ctx.get(identity.org_key(payload.org_id))
        if org is None:
            raise _fail(f"no organisation {payload.org_id!r}", Code.NOT_FOUND)
        key = model.location_key(payload.location)
        previous: Location | None = ctx.get(key)
        if previous is not None and previous["org"] == payload.org_id:
            raise _fail(
                f"{payload.location} is already registered to {payload.org_id}",
                Code.ALREADY_EXISTS,
            )
        if previous is not None:
            ctx.delete(model.org_location_key(previous["org"], payload.location))
        location: Location = {
            "location": payload.location,
            "org": payload.org_id,
            "height": ctx.height,
        }
        ctx.put(key, location)
        ctx.put(model.org_location_key(payload.org_id, payload.location), {"since": ctx.height})
        ctx.emit(
            "supply.location_registered",
            location=payload.location,
            org=payload.org_id,
            previous="" if previous is None else previous["org"],
            actor=caller["did"],
        )
