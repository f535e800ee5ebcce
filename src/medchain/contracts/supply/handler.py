"""Supply contract: products, ingredient lots, batches, EPCIS events, cold chain,
recall, and medical devices.

Authority:
  register_product, register_batch     staff of the manufacturer
  register_ingredient                  staff of a manufacturer or supplier
  record_event                         staff of the organisation doing the step
                                       (commissioning: the batch's manufacturer;
                                       receiving: the shipment's destination; ...)
  readings                             the logistics device named on the shipment
  recall                               the manufacturer of the batch / ingredient
                                       lot, or a regulator
  register_device, install_device      the device's manufacturer
  device_event, device_used            staff of the organisation that has it

A refused step says why; a duplicated serial (commissioned again, or
dispensed again) is refused *and* leaves a `supply.counterfeit_suspected`
audit event in the block, so the pack's lookup shows it.
"""

from __future__ import annotations

import re
from typing import Any

from medchain.contracts.base import ActionHandler, signer_member
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import check_fields, invalid, one_of, text
from medchain.contracts.records.handler import record_key
from medchain.contracts.supply import model as m
from medchain.core.context import Context
from medchain.core.tx import SignedTx
from medchain.exceptions import Code, InvalidTransaction

_LOT = r"[A-Za-z0-9._-]{1,40}"
_SERIAL = r"[!-~]{1,40}"
_ID = r"[A-Za-z0-9._:-]{1,80}"
_HASH = r"ni:///sha-256;[0-9a-f]{64}\?ver=CBV2\.0"
HISTORY = 30
DAY_MS = 86_400_000


def gtin_ok(gtin: str) -> bool:
    """14 digits with a valid GS1 mod-10 check digit."""
    if not re.fullmatch(r"\d{14}", gtin):
        return False
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(gtin[:13]))
    return (10 - total % 10) % 10 == int(gtin[13])


def _unit(p: str) -> tuple[str, str]:
    gtin, _, serial = p.partition("/")
    if not gtin_ok(gtin) or not re.fullmatch(_SERIAL, serial):
        raise invalid(f"unit {p!r} is not <GTIN-14 with check digit>/<serial>")
    return gtin, serial


def _fail(message: str, code: Code = Code.INVALID_STATE) -> InvalidTransaction:
    return InvalidTransaction(code, message)


class SupplyHandler(ActionHandler):
    """The `supply` system contract, version 1."""

    namespace = m.NAMESPACE
    actions = frozenset(
        {
            "register_product",
            "register_ingredient",
            "register_batch",
            "record_event",
            "readings",
            "recall",
            "register_device",
            "install_device",
            "device_event",
            "device_used",
        }
    )

    # -- who --------------------------------------------------------------------

    def _staff(self, ctx: Context, org_types: set[str] | None = None) -> dict[str, Any]:
        member = signer_member(ctx)
        if member["org_id"] is None or "patient" in member["roles"]:
            raise _fail("only staff of an organisation may do this", Code.UNAUTHORIZED)
        org = ctx.get(identity.org_key(member["org_id"]))
        if org_types is not None and org["org_type"] not in org_types:
            raise _fail(f"only a {' or '.join(sorted(org_types))} may do this", Code.UNAUTHORIZED)
        return member

    # -- catalogue --------------------------------------------------------------

    def register_product(self, tx: SignedTx, ctx: Context) -> None:
        p = tx.envelope.payload
        check_fields(
            p,
            {"gtin": str, "name": str, "kind": str},
            {"temp_min_c10": int, "temp_max_c10": int, "max_excursion_ms": int},
        )
        if not gtin_ok(p["gtin"]):
            raise invalid("gtin must be 14 digits with a valid check digit")
        kind = one_of(p, "kind", frozenset({"drug", "device"}))
        staff = self._staff(ctx, {"manufacturer"})
        if ctx.get(m.product_key(p["gtin"])) is not None:
            raise _fail(f"product {p['gtin']} exists", Code.ALREADY_EXISTS)
        cold = {k: p[k] for k in ("temp_min_c10", "temp_max_c10", "max_excursion_ms") if k in p}
        if cold and (len(cold) != 3 or cold["temp_min_c10"] >= cold["temp_max_c10"]):
            raise invalid("a cold chain needs temp_min_c10 < temp_max_c10 and max_excursion_ms")
        ctx.put(
            m.product_key(p["gtin"]),
            {
                "gtin": p["gtin"],
                "name": text(p, "name"),
                "kind": kind,
                "manufacturer": staff["org_id"],
                **cold,
            },
        )
        ctx.emit("supply.product_registered", gtin=p["gtin"], actor=staff["did"])

    def register_ingredient(self, tx: SignedTx, ctx: Context) -> None:
        p = tx.envelope.payload
        check_fields(p, {"lot_id": str, "substance": str})
        lot_id = text(p, "lot_id", _ID)
        staff = self._staff(ctx, {"manufacturer", "lab"})
        if ctx.get(m.ingredient_key(lot_id)) is not None:
            raise _fail(f"ingredient lot {lot_id} exists", Code.ALREADY_EXISTS)
        ctx.put(
            m.ingredient_key(lot_id),
            {
                "lot_id": lot_id,
                "substance": text(p, "substance"),
                "supplier": staff["org_id"],
                "status": "active",
            },
        )
        ctx.emit("supply.ingredient_registered", lot_id=lot_id, actor=staff["did"])

    def register_batch(self, tx: SignedTx, ctx: Context) -> None:
        p = tx.envelope.payload
        check_fields(p, {"gtin": str, "lot": str, "expiry": str, "ingredients": list})
        lot = text(p, "lot", _LOT)
        product = ctx.require(m.product_key(p["gtin"]), f"product {p['gtin']}")
        staff = self._staff(ctx, {"manufacturer"})
        if product["manufacturer"] != staff["org_id"]:
            raise _fail("only the product's manufacturer registers its batches", Code.UNAUTHORIZED)
        if not m.valid_date(p["expiry"]):
            raise invalid("expiry must be a real date, YYYY-MM-DD")
        ingredients = p["ingredients"]
        if not all(isinstance(i, str) for i in ingredients) or len(ingredients) > 50:
            raise invalid("ingredients: up to 50 ingredient lot ids")
        for lot_id in ingredients:
            ctx.require(m.ingredient_key(lot_id), f"ingredient lot {lot_id!r}")
        if ctx.get(m.batch_key(p["gtin"], lot)) is not None:
            raise _fail(f"batch {p['gtin']}/{lot} exists", Code.ALREADY_EXISTS)
        ctx.put(
            m.batch_key(p["gtin"], lot),
            {
                "gtin": p["gtin"],
                "lot": lot,
                "expiry": p["expiry"],
                "ingredients": ingredients,
                "manufacturer": staff["org_id"],
                "status": "active",
                "units": 0,
            },
        )
        for lot_id in ingredients:
            ctx.put(
                m.by_ingredient_prefix(lot_id) + f"{p['gtin']}/{lot}",
                {"gtin": p["gtin"], "lot": lot},
            )
        ctx.emit("supply.batch_registered", gtin=p["gtin"], lot=lot, actor=staff["did"])

    # -- EPCIS events -------------------------------------------------------------

    def record_event(self, tx: SignedTx, ctx: Context) -> None:
        """One EPCIS event, by its standard hash: checked against each unit's state."""
        p = tx.envelope.payload
        check_fields(
            p,
            {"event_hash": str, "biz_step": str, "event_time_ms": int, "epcs": list},
            {"lot": str, "parent": str, "destination": str, "shipment": str, "device": str},
        )
        event_hash = text(p, "event_hash", _HASH)
        step = one_of(p, "biz_step", m.BIZ_STEPS)
        if not 0 < len(p["epcs"]) <= m.MAX_EPCS or not all(isinstance(e, str) for e in p["epcs"]):
            raise invalid(f"epcs: 1 to {m.MAX_EPCS} units (<gtin>/<serial>) or containers")
        if p["event_time_ms"] > ctx.time_ms:
            raise invalid("event_time_ms is in the future of this block")
        if ctx.get(m.event_key(event_hash)) is not None:
            raise _fail("this EPCIS event is already recorded", Code.DUPLICATE_TX)
        staff = self._staff(ctx)
        step_fn = {
            "commissioning": self._commission,
            "packing": self._pack,
            "shipping": self._ship,
            "receiving": self._receive,
            "dispensing": self._dispense,
            "destroying": self._destroy,
        }[step]
        units = step_fn(ctx, p, staff)
        ctx.put(
            m.event_key(event_hash),
            {
                "biz_step": step,
                "org": staff["org_id"],
                "units": len(units),
                "event_time_ms": p["event_time_ms"],
                "height": ctx.height,
            },
        )
        ctx.emit(
            "supply.event",
            event_hash=event_hash,
            biz_step=step,
            units=str(len(units)),
            org=staff["org_id"],
            actor=staff["did"],
        )

    def _units_of(self, ctx: Context, epcs: list[str]) -> list[str]:
        """Unit keys, expanding containers (cases, pallets) packed earlier."""
        out: list[str] = []
        for epc in epcs:
            container = ctx.get(m.container_key(epc))
            out.extend(container["units"] if container is not None else [epc])
        return out

    def _load(self, ctx: Context, unit: str) -> dict[str, Any]:
        _unit(unit)
        return dict(ctx.require(m.unit_key(unit), f"unit {unit}"))

    def _save(self, ctx: Context, unit: dict[str, Any], step: str, org: str, **change: Any) -> None:
        unit.update(change)
        unit["history"] = [*unit["history"], [step, ctx.time_ms, org]][-HISTORY:]
        ctx.put(m.unit_key(unit["unit"]), unit)

    def _holders(self, ctx: Context, unit: dict[str, Any], org: str, delta: int) -> None:
        key = m.holders_prefix(unit["gtin"], unit["lot"]) + org
        count = (ctx.get(key) or 0) + delta
        if count:
            ctx.put(key, count)
        else:
            ctx.delete(key)

    def _commission(self, ctx: Context, p: dict[str, Any], staff: dict[str, Any]) -> list[str]:
        if "lot" not in p:
            raise invalid("commissioning names the batch lot")
        lot = text(p, "lot", _LOT)
        units = []
        for epc in p["epcs"]:
            gtin, serial = _unit(epc)
            batch = ctx.require(m.batch_key(gtin, lot), f"batch {gtin}/{lot}")
            if batch["manufacturer"] != staff["org_id"]:
                raise _fail(
                    "only the batch's manufacturer commissions its units", Code.UNAUTHORIZED
                )
            if ctx.get(m.unit_key(epc)) is not None:
                ctx.refuse(
                    Code.ALREADY_EXISTS,
                    f"serial {epc} is already commissioned: suspected counterfeit",
                    "supply.counterfeit_suspected",
                    record_id=epc,
                    reason="serial commissioned twice",
                    actor=staff["did"],
                    org=staff["org_id"],
                )
            unit = {
                "unit": epc,
                "gtin": gtin,
                "serial": serial,
                "lot": lot,
                "status": m.COMMISSIONED,
                "holder": staff["org_id"],
                "container": None,
                "shipment": None,
                "history": [],
            }
            self._save(ctx, unit, "commissioning", staff["org_id"])
            ctx.put(m.by_batch_prefix(gtin, lot) + serial, {"unit": epc})
            self._holders(ctx, unit, staff["org_id"], 1)
            units.append(epc)
        per_gtin: dict[str, int] = {}
        for epc in units:
            per_gtin[epc.split("/", 1)[0]] = per_gtin.get(epc.split("/", 1)[0], 0) + 1
        for gtin, count in sorted(per_gtin.items()):
            batch = dict(ctx.require(m.batch_key(gtin, lot), "batch"))
            batch["units"] += count
            ctx.put(m.batch_key(gtin, lot), batch)
        return units

    def _pack(self, ctx: Context, p: dict[str, Any], staff: dict[str, Any]) -> list[str]:
        container = text(p, "parent", _ID) if "parent" in p else ""
        if not container:
            raise invalid("packing needs the container (parent) id")
        units = self._units_of(ctx, p["epcs"])
        for key in units:
            unit = self._load(ctx, key)
            if unit["holder"] != staff["org_id"] or unit["status"] not in m.HOLDING:
                raise _fail(f"{key} is not held here at rest ({unit['status']})")
            self._save(ctx, unit, "packing", staff["org_id"], container=container)
        ctx.put(m.container_key(container), {"units": units, "org": staff["org_id"]})
        return units

    def _ship(self, ctx: Context, p: dict[str, Any], staff: dict[str, Any]) -> list[str]:
        check = {k: p.get(k) for k in ("destination", "shipment", "device")}
        if not all(isinstance(v, str) for v in check.values()):
            raise invalid("shipping needs destination (org), shipment id and device (logger DID)")
        shipment = text(p, "shipment", _ID)
        if ctx.get(identity.org_key(p["destination"])) is None:
            raise _fail(f"no organisation {p['destination']!r}", Code.NOT_FOUND)
        if ctx.get(m.shipment_key(shipment)) is not None:
            raise _fail(f"shipment {shipment} exists", Code.ALREADY_EXISTS)
        units = self._units_of(ctx, p["epcs"])
        ranges = []
        for key in units:
            unit = self._load(ctx, key)
            if unit["holder"] != staff["org_id"] or unit["status"] not in m.HOLDING:
                raise _fail(f"{key} cannot be shipped from here ({unit['status']})")
            product = ctx.get(m.product_key(unit["gtin"]))
            if "temp_min_c10" in product:
                ranges.append(product)
            self._holders(ctx, unit, staff["org_id"], -1)
            self._save(
                ctx, unit, "shipping", staff["org_id"], status=m.IN_TRANSIT, shipment=shipment
            )
        cold = {
            "temp_min_c10": max((r["temp_min_c10"] for r in ranges), default=None),
            "temp_max_c10": min((r["temp_max_c10"] for r in ranges), default=None),
            "max_excursion_ms": min((r["max_excursion_ms"] for r in ranges), default=None),
        }
        ctx.put(
            m.shipment_key(shipment),
            {
                "shipment": shipment,
                "from": staff["org_id"],
                "to": p["destination"],
                "device": p["device"],
                "units": units,
                "status": "in_transit",
                **cold,
                "excursion_ms": 0,
                "last_reading": None,
                "violation": False,
            },
        )
        return units

    def _receive(self, ctx: Context, p: dict[str, Any], staff: dict[str, Any]) -> list[str]:
        shipment = dict(ctx.require(m.shipment_key(str(p.get("shipment"))), "shipment"))
        if shipment["to"] != staff["org_id"]:
            raise _fail("only the shipment's destination receives it", Code.UNAUTHORIZED)
        units = self._units_of(ctx, p["epcs"])
        for key in units:
            unit = self._load(ctx, key)
            if unit["status"] not in (m.IN_TRANSIT, m.QUARANTINED) or (
                unit["shipment"] != shipment["shipment"]
            ):
                raise _fail(
                    f"{key} was not shipped in {shipment['shipment']}: no receipt without shipment"
                )
            status = m.QUARANTINED if shipment["violation"] else m.RECEIVED
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
        shipment["status"] = "received"
        ctx.put(m.shipment_key(shipment["shipment"]), shipment)
        return units

    def _dispense(self, ctx: Context, p: dict[str, Any], staff: dict[str, Any]) -> list[str]:
        units = self._units_of(ctx, p["epcs"])
        today = m.block_date(ctx.time_ms)
        batches: dict[tuple[str, str], tuple[dict[str, Any], str | None]] = {}
        for key in units:
            unit = self._load(ctx, key)
            if unit["status"] == m.DISPENSED:
                ctx.refuse(
                    Code.INVALID_STATE,
                    f"{key} was already dispensed: suspected counterfeit",
                    "supply.counterfeit_suspected",
                    record_id=key,
                    reason="serial dispensed twice",
                    actor=staff["did"],
                    org=staff["org_id"],
                )
            if unit["holder"] != staff["org_id"] or unit["status"] != m.RECEIVED:
                raise _fail(
                    f"{key} cannot be dispensed here ({unit['status']} at {unit['holder']})"
                )
            lot_key = (unit["gtin"], unit["lot"])
            if lot_key not in batches:  # one recall/expiry check per batch, not per unit
                batch = ctx.get(m.batch_key(*lot_key))
                batches[lot_key] = (batch, m.batch_blocked(ctx.get, batch))
            batch, blocked = batches[lot_key]
            if blocked is not None:
                raise _fail(f"{key} may not be dispensed: {blocked}")
            if batch["expiry"] < today:
                raise _fail(f"{key} expired on {batch['expiry']}")
            self._holders(ctx, unit, staff["org_id"], -1)
            self._save(ctx, unit, "dispensing", staff["org_id"], status=m.DISPENSED)
        return units

    def _destroy(self, ctx: Context, p: dict[str, Any], staff: dict[str, Any]) -> list[str]:
        units = self._units_of(ctx, p["epcs"])
        for key in units:
            unit = self._load(ctx, key)
            if unit["holder"] != staff["org_id"] or unit["status"] in (m.DISPENSED, m.DESTROYED):
                raise _fail(f"{key} cannot be destroyed here ({unit['status']})")
            self._holders(ctx, unit, staff["org_id"], -1)
            self._save(ctx, unit, "destroying", staff["org_id"], status=m.DESTROYED)
        return units

    # -- cold chain -----------------------------------------------------------------

    def readings(self, tx: SignedTx, ctx: Context) -> None:
        """Signed temperature readings of a shipment's logger; a violation alerts in this
        block and quarantines every unit of the shipment."""
        p = tx.envelope.payload
        check_fields(p, {"shipment": str, "readings": list})
        shipment = dict(ctx.require(m.shipment_key(p["shipment"]), f"shipment {p['shipment']}"))
        device = signer_member(ctx)
        if device["did"] != shipment["device"]:
            raise _fail("only the shipment's logger reports its temperature", Code.UNAUTHORIZED)
        readings = p["readings"]
        if not 0 < len(readings) <= m.MAX_READINGS or not all(
            isinstance(r, list) and len(r) == 2 and all(type(x) is int for x in r) for r in readings
        ):
            raise invalid(f"readings: 1 to {m.MAX_READINGS} [time_ms, tenths of °C] pairs")
        if shipment["temp_min_c10"] is None:
            raise _fail("this shipment has no cold-chain range")
        last = shipment["last_reading"]
        for t, temp in readings:
            if t > ctx.time_ms or (last is not None and t <= last[0]):
                raise invalid("reading times must increase and not be in the future")
            if last is not None and not (
                shipment["temp_min_c10"] <= last[1] <= shipment["temp_max_c10"]
            ):
                shipment["excursion_ms"] += t - last[0]
            last = [t, temp]
            if (
                shipment["excursion_ms"] > shipment["max_excursion_ms"]
                and not shipment["violation"]
            ):
                shipment["violation"] = True
                self._quarantine(ctx, shipment, device["did"], t, temp)
        shipment["last_reading"] = last
        ctx.put(m.shipment_key(shipment["shipment"]), shipment)

    def _quarantine(
        self, ctx: Context, shipment: dict[str, Any], device: str, t: int, temp: int
    ) -> None:
        for key in shipment["units"]:
            unit = ctx.get(m.unit_key(key))
            if unit["status"] == m.IN_TRANSIT:
                self._save(ctx, unit, "quarantine", shipment["to"], status=m.QUARANTINED)
        ctx.emit(
            "supply.cold_chain_violation",
            shipment=shipment["shipment"],
            units=str(len(shipment["units"])),
            excursion_ms=str(shipment["excursion_ms"]),
            reading_time_ms=str(t),
            temp_c10=str(temp),
            notify=f"{shipment['from']},{shipment['to']}",
            actor=device,
        )

    # -- recall ---------------------------------------------------------------------

    def recall(self, tx: SignedTx, ctx: Context) -> None:
        """Recall a batch or an ingredient lot (and so every batch made from it)."""
        p = tx.envelope.payload
        check_fields(p, {"reason": str}, {"gtin": str, "lot": str, "ingredient_lot": str})
        caller = signer_member(ctx)
        regulator = "regulator" in caller["roles"]
        if "ingredient_lot" in p:
            ingredient = dict(ctx.require(m.ingredient_key(p["ingredient_lot"]), "ingredient lot"))
            if not (regulator or caller["org_id"] == ingredient["supplier"]):
                raise _fail("only the supplier or a regulator recalls a lot", Code.UNAUTHORIZED)
            ingredient["status"] = "recalled"
            ctx.put(m.ingredient_key(ingredient["lot_id"]), ingredient)
            batches = [
                (e["gtin"], e["lot"])
                for _, e in ctx.scan(m.by_ingredient_prefix(ingredient["lot_id"]))
            ]
            reason = f"ingredient lot {ingredient['lot_id']}: {p['reason']}"
        elif "gtin" in p and "lot" in p:
            batch = ctx.require(m.batch_key(p["gtin"], p["lot"]), "batch")
            if not (regulator or caller["org_id"] == batch["manufacturer"]):
                raise _fail(
                    "only the manufacturer or a regulator recalls a batch", Code.UNAUTHORIZED
                )
            batches = [(p["gtin"], p["lot"])]
            reason = p["reason"]
        else:
            raise invalid("recall a batch (gtin and lot) or an ingredient_lot")
        for gtin, lot in batches:
            batch = dict(ctx.get(m.batch_key(gtin, lot)))
            batch.update(status="recalled", recall_reason=reason[:300])
            ctx.put(m.batch_key(gtin, lot), batch)
            holders = [k.rsplit("/", 1)[1] for k, _ in ctx.scan(m.holders_prefix(gtin, lot))]
            ctx.emit(
                "supply.recall",
                gtin=gtin,
                lot=lot,
                reason=p["reason"][:300],
                notify=",".join(holders),
                actor=caller["did"],
            )

    # -- medical devices ----------------------------------------------------------------

    def register_device(self, tx: SignedTx, ctx: Context) -> None:
        p = tx.envelope.payload
        check_fields(p, {"udi": str, "lot": str})
        gtin, _ = _unit(p["udi"])
        product = ctx.require(m.product_key(gtin), f"product {gtin}")
        staff = self._staff(ctx, {"manufacturer"})
        if product["kind"] != "device" or product["manufacturer"] != staff["org_id"]:
            raise _fail("only the manufacturer registers its devices", Code.UNAUTHORIZED)
        if ctx.get(m.device_key(p["udi"])) is not None:
            raise _fail(f"device {p['udi']} exists", Code.ALREADY_EXISTS)
        ctx.put(
            m.device_key(p["udi"]),
            {
                "udi": p["udi"],
                "gtin": gtin,
                "lot": text(p, "lot", _LOT),
                "owner": staff["org_id"],
                "events": [],
            },
        )
        ctx.emit("supply.device_registered", udi=p["udi"], actor=staff["did"])

    def _device(self, ctx: Context, udi: str, staff: dict[str, Any]) -> dict[str, Any]:
        device = dict(ctx.require(m.device_key(udi), f"device {udi}"))
        if device["owner"] != staff["org_id"]:
            raise _fail("only the organisation that has the device may do this", Code.UNAUTHORIZED)
        return device

    def install_device(self, tx: SignedTx, ctx: Context) -> None:
        p = tx.envelope.payload
        check_fields(p, {"udi": str, "owner": str})
        staff = self._staff(ctx, {"manufacturer"})
        device = self._device(ctx, p["udi"], staff)
        if ctx.get(identity.org_key(p["owner"])) is None:
            raise _fail(f"no organisation {p['owner']!r}", Code.NOT_FOUND)
        device["owner"] = p["owner"]
        device["events"] = [*device["events"], ["installed", ctx.time_ms, p["owner"], ""]]
        ctx.put(m.device_key(p["udi"]), device)
        ctx.emit("supply.device_installed", udi=p["udi"], owner=p["owner"], actor=staff["did"])

    def device_event(self, tx: SignedTx, ctx: Context) -> None:
        """Maintenance or a fault, on the device's history."""
        p = tx.envelope.payload
        check_fields(p, {"udi": str, "kind": str, "note": str})
        kind = one_of(p, "kind", frozenset({"maintenance", "fault"}))
        staff = self._staff(ctx)
        device = self._device(ctx, p["udi"], staff)
        device["events"] = [*device["events"], [kind, ctx.time_ms, staff["did"], p["note"][:300]]][
            -100:
        ]
        ctx.put(m.device_key(p["udi"]), device)
        ctx.emit(f"supply.device_{kind}", udi=p["udi"], note=p["note"][:300], actor=staff["did"])

    def device_used(self, tx: SignedTx, ctx: Context) -> None:
        """The device was used in a procedure, recorded as a (consent-protected) record."""
        p = tx.envelope.payload
        check_fields(p, {"udi": str, "record_id": str})
        staff = self._staff(ctx)
        self._device(ctx, p["udi"], staff)
        record = ctx.require(record_key(p["record_id"]), f"record {p['record_id']!r}")
        if record["custodian"] != staff["org_id"]:
            raise _fail(
                "the procedure record must be held by the device's organisation", Code.UNAUTHORIZED
            )
        ctx.put(m.device_use_prefix(p["udi"]) + p["record_id"], {"time_ms": ctx.time_ms})
        ctx.emit("supply.device_used", udi=p["udi"], record_id=p["record_id"], actor=staff["did"])
