"""Devices contract: medical devices from manufacture to the procedures they served.

Authority:
  register_device, install_device      the device's manufacturer (install hands
                                       it to the organisation that will run it)
  device_event, device_used            staff of the organisation that has it

The product a device belongs to is a `supply` product of kind "device"; a
procedure it was used in is a `records` record held by the device's
organisation. Both are read through their contracts' key builders.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medchain.contracts.base import ActionHandler, staff_member, unauthorized
from medchain.contracts.devices import model
from medchain.contracts.devices.model import Device, DeviceUse
from medchain.contracts.devices.payloads import (
    DeviceEventPayload,
    DeviceUsedPayload,
    InstallDevicePayload,
    RegisterDevicePayload,
)
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import Payload
from medchain.contracts.records.model import record_key
from medchain.contracts.supply import model as supply
from medchain.core.context import Context
from medchain.exceptions import Code, InvalidTransaction


class DevicesHandler(ActionHandler):
    """The `devices` system contract, version 1."""

    namespace = model.NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "register_device": RegisterDevicePayload,
        "install_device": InstallDevicePayload,
        "device_event": DeviceEventPayload,
        "device_used": DeviceUsedPayload,
    }

    def register_device(self, payload: RegisterDevicePayload, ctx: Context) -> None:
        """A device of the signer's organisation's device product."""
        gtin = payload.udi.split("/", 1)[0]
        product = ctx.require(supply.product_key(gtin), f"product {gtin}")
        staff = staff_member(ctx, {"manufacturer"})
        if product["kind"] != "device" or product["manufacturer"] != staff["org_id"]:
            raise unauthorized("only the manufacturer registers its devices")
        if ctx.get(model.device_key(payload.udi)) is not None:
            raise InvalidTransaction(Code.ALREADY_EXISTS, f"device {payload.udi} exists")
        device: Device = {
            "udi": payload.udi,
            "gtin": gtin,
            "lot": payload.lot,
            "owner": staff["org_id"],
            "events": [],
        }
        ctx.put(model.device_key(payload.udi), device)
        ctx.emit("devices.registered", udi=payload.udi, actor=staff["did"])

    def _owned(self, ctx: Context, udi: str, staff: dict[str, Any]) -> Device:
        """The device, if the signer's organisation has it; else UNAUTHORIZED."""
        device: Device = ctx.require(model.device_key(udi), f"device {udi}")
        if device["owner"] != staff["org_id"]:
            raise unauthorized("only the organisation that has the device may do this")
        return device

    def install_device(self, payload: InstallDevicePayload, ctx: Context) -> None:
        """The manufacturer hands the device to the organisation that will run it."""
        staff = staff_member(ctx, {"manufacturer"})
        device = self._owned(ctx, payload.udi, staff)
        if ctx.get(identity.org_key(payload.owner)) is None:
            raise InvalidTransaction(Code.NOT_FOUND, f"no organisation {payload.owner!r}")
        device["owner"] = payload.owner
        device["events"] = [*device["events"], [model.INSTALLED, ctx.time_ms, payload.owner, ""]]
        ctx.put(model.device_key(payload.udi), device)
        ctx.emit("devices.installed", udi=payload.udi, owner=payload.owner, actor=staff["did"])

    def device_event(self, payload: DeviceEventPayload, ctx: Context) -> None:
        """Maintenance or a fault, on the device's history."""
        staff = staff_member(ctx)
        device = self._owned(ctx, payload.udi, staff)
        note = payload.note[: model.MAX_NOTE]
        entry = [payload.kind, ctx.time_ms, staff["did"], note]
        device["events"] = [*device["events"], entry][-model.MAX_EVENTS :]
        ctx.put(model.device_key(payload.udi), device)
        ctx.emit(f"devices.{payload.kind}", udi=payload.udi, note=note, actor=staff["did"])

    def device_used(self, payload: DeviceUsedPayload, ctx: Context) -> None:
        """The device was used in a procedure, recorded as a (consent-protected) record
        held by the device's organisation."""
        staff = staff_member(ctx)
        self._owned(ctx, payload.udi, staff)
        record = ctx.require(record_key(payload.record_id), f"record {payload.record_id!r}")
        if record["custodian"] != staff["org_id"]:
            raise unauthorized("the procedure record must be held by the device's organisation")
        use: DeviceUse = {"time_ms": ctx.time_ms}
        ctx.put(model.use_key(payload.udi, payload.record_id), use)
        ctx.emit("devices.used", udi=payload.udi, record_id=payload.record_id, actor=staff["did"])
