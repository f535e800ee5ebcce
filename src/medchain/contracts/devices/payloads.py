"""Typed payloads of the devices contract, validated before any state read.

The UDI a registration creates carries its pattern (a GS1 unit id with its check
digit); UDIs and ids the other actions only refer to are plain text, looked up
(an id nothing could have is simply not found).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from medchain.contracts.payload import Payload, whole
from medchain.contracts.supply.model import split_unit
from medchain.contracts.supply.payloads import LOT

Udi = Annotated[
    str,
    msgspec.Meta(
        pattern=whole(r"\d{14}/[!-~]{1,40}"),
        description="<GTIN-14 with a valid check digit>/<serial>",
    ),
]
Lot = Annotated[str, msgspec.Meta(pattern=whole(LOT))]


class RegisterDevicePayload(Payload, frozen=True, kw_only=True):
    """A device of one of the signer's organisation's device products, with its
    production lot."""

    udi: Udi
    lot: Lot

    def __post_init__(self) -> None:
        """The GTIN's check digit (the pattern only fixes the shape)."""
        if split_unit(self.udi) is None:
            raise ValueError(f"unit {self.udi!r} is not <GTIN-14 with check digit>/<serial>")


class InstallDevicePayload(Payload, frozen=True, kw_only=True):
    """The manufacturer hands the device over to the organisation that will run it."""

    udi: str
    owner: str


class DeviceEventPayload(Payload, frozen=True, kw_only=True):
    """Maintenance or a fault, with a note (kept to its first 300 characters)."""

    udi: str
    kind: Literal["maintenance", "fault"]
    note: str


class DeviceUsedPayload(Payload, frozen=True, kw_only=True):
    """The device was used in the procedure that record `record_id` describes."""

    udi: str
    record_id: str
