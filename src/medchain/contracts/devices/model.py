"""Medical devices: state records and keys.

A device is keyed by its UDI, written like a pack: "<GTIN-14>/<serial>". Its
product (GTIN, kind "device") is a `supply` product; the records it was used in
are `records` records, whose content stays consent-protected.
"""

from __future__ import annotations

from typing import Any, TypedDict

NAMESPACE = "devices"
EVENT_KINDS = ("maintenance", "fault")
INSTALLED = "installed"
MAX_EVENTS = 100  # newest kept on the device; each is also an event in its block
MAX_NOTE = 300


class Device(TypedDict):
    """`devices/device/<udi>`; events are [kind, time_ms, by, note] with `by` the new
    owner's org id (installed) or the staff member's DID (maintenance, fault)."""

    udi: str
    gtin: str
    lot: str
    owner: str
    events: list[list[Any]]


class DeviceUse(TypedDict):
    """`devices/use/<udi>/<record_id>`: the device was used in that procedure."""

    time_ms: int


def device_key(udi: str) -> str:
    """A device, by UDI ("<gtin>/<serial>")."""
    return f"{NAMESPACE}/device/{udi}"


def product_devices_prefix(gtin: str) -> str:
    """Every device of a product (the other devices of a faulty one's lot are here)."""
    return f"{NAMESPACE}/device/{gtin}/"


def use_prefix(udi: str) -> str:
    """The procedure records a device was used in."""
    return f"{NAMESPACE}/use/{udi}/"


def use_key(udi: str, record_id: str) -> str:
    """The entry saying the device was used in record `record_id`."""
    return use_prefix(udi) + record_id
