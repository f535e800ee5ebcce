"""Typed payloads of the supply contract, validated before any state read.

Ids a payload creates (a product's GTIN, a batch lot, an ingredient lot, a shipment
id, a container, an event hash) carry their pattern here. Ids it only refers to
(the product of a batch, the lot to recall, the shipment a reading belongs to) are
plain text: they are looked up, and an id nothing could have is simply not found,
the answer it has always had. Optional fields are UNSET when absent: an explicit
null is refused, as before.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from medchain.contracts.payload import Payload, whole
from medchain.contracts.supply.model import MAX_EPCS, MAX_READINGS, gtin_ok, split_unit, valid_date

LOT = r"[A-Za-z0-9._-]{1,40}"
ID = r"[A-Za-z0-9._:-]{1,80}"
EVENT_HASH = r"ni:///sha-256;[0-9a-f]{64}\?ver=CBV2\.0"
MAX_BATCH_INGREDIENTS = 50
# A GS1 location (SGLN) or party (PGLN) as EPCIS names them: the EPC URI, or the Digital
# Link with AI 414 (location, with 254 extension) or 417 (party).
LOCATION = (
    r"urn:epc:id:sgln:[0-9]{6,12}\.[0-9]{0,6}\.[!-~]{1,20}"
    r"|urn:epc:id:pgln:[0-9]{6,12}\.[0-9]{0,6}"
    r"|https://[A-Za-z0-9.-]{1,100}/(?:414/[0-9]{13}(?:/254/[!-~]{1,20})?|417/[0-9]{13})"
)

Gtin = Annotated[
    str,
    msgspec.Meta(pattern=whole(r"\d{14}"), description="GTIN-14 with a valid GS1 check digit"),
]
Lot = Annotated[str, msgspec.Meta(pattern=whole(LOT))]
Id = Annotated[str, msgspec.Meta(pattern=whole(ID))]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
EventHash = Annotated[
    str, msgspec.Meta(pattern=whole(EVENT_HASH), description="EPCIS 2.0 standard event hash")
]
Date = Annotated[str, msgspec.Meta(pattern=whole(r"\d{4}-\d{2}-\d{2}"), description="YYYY-MM-DD")]
BizStep = Literal["commissioning", "packing", "shipping", "receiving", "dispensing", "destroying"]
Reading = Annotated[
    tuple[int, int], msgspec.Meta(description="[time_ms, temperature in tenths of °C]")
]


class RegisterProductPayload(Payload, frozen=True, kw_only=True):
    """A product; a cold-chain product states its range and how long it may spend
    outside it (all three fields, or none)."""

    gtin: Gtin
    name: Name
    kind: Literal["drug", "device"]
    temp_min_c10: int | UnsetType = UNSET
    temp_max_c10: int | UnsetType = UNSET
    max_excursion_ms: int | UnsetType = UNSET

    def __post_init__(self) -> None:
        """The GTIN's check digit, and a cold chain that is whole and not empty."""
        if not gtin_ok(self.gtin):
            raise ValueError("gtin must be 14 digits with a valid check digit")
        given = [
            value
            for value in (self.temp_min_c10, self.temp_max_c10, self.max_excursion_ms)
            if value is not UNSET
        ]
        if given and (
            len(given) != 3
            or isinstance(self.temp_min_c10, UnsetType)
            or isinstance(self.temp_max_c10, UnsetType)
            or self.temp_min_c10 >= self.temp_max_c10
        ):
            raise ValueError("a cold chain needs temp_min_c10 < temp_max_c10 and max_excursion_ms")

    def cold_chain(self) -> dict[str, int]:
        """The range fields given, as stored on the product."""
        fields = {
            "temp_min_c10": self.temp_min_c10,
            "temp_max_c10": self.temp_max_c10,
            "max_excursion_ms": self.max_excursion_ms,
        }
        return {name: value for name, value in fields.items() if isinstance(value, int)}


class RegisterIngredientPayload(Payload, frozen=True, kw_only=True):
    """An ingredient lot (active substance, excipient) by its supplier's lot id."""

    lot_id: Id
    substance: Name


class RegisterBatchPayload(Payload, frozen=True, kw_only=True):
    """A batch of a registered product, and the ingredient lots it was made from."""

    gtin: str
    lot: Lot
    expiry: Date
    ingredients: Annotated[list[str], msgspec.Meta(max_length=MAX_BATCH_INGREDIENTS)]

    def __post_init__(self) -> None:
        """A real calendar date (the pattern only fixes the shape)."""
        if not valid_date(self.expiry):
            raise ValueError("expiry must be a real date, YYYY-MM-DD")


class RecordEventPayload(Payload, frozen=True, kw_only=True):
    """One EPCIS event by its standard hash, and what the step needs in ledger
    terms: the batch lot (commissioning), the container (packing), the
    destination, shipment id and logger DID (shipping), the shipment (receiving).

    Fields a step does not use are allowed, not checked and not stored: an
    EPCIS event may carry a parent on any step, and the event itself, which the
    hash commits to, stays with the organisation that wrote it.
    """

    event_hash: EventHash
    biz_step: BizStep
    event_time_ms: int
    epcs: Annotated[list[str], msgspec.Meta(min_length=1, max_length=MAX_EPCS)]
    lot: str | UnsetType = UNSET
    parent: str | UnsetType = UNSET
    destination: str | UnsetType = UNSET
    shipment: str | UnsetType = UNSET
    device: str | UnsetType = UNSET

    def __post_init__(self) -> None:
        """Each step's own fields, and commissioned units that are real GS1 ids."""
        step = self.biz_step
        if step == "commissioning":
            if isinstance(self.lot, UnsetType):
                raise ValueError("commissioning names the batch lot")
            _check(self.lot, LOT, "lot")
            for epc in self.epcs:
                if split_unit(epc) is None:
                    raise ValueError(f"unit {epc!r} is not <GTIN-14 with check digit>/<serial>")
        elif step == "packing":
            if isinstance(self.parent, UnsetType) or not self.parent:
                raise ValueError("packing needs the container (parent) id")
            _check(self.parent, ID, "parent")
        elif step == "shipping":
            if (
                isinstance(self.destination, UnsetType)
                or isinstance(self.shipment, UnsetType)
                or isinstance(self.device, UnsetType)
            ):
                raise ValueError(
                    "shipping needs destination (org), shipment id and device (logger DID)"
                )
            _check(self.shipment, ID, "shipment")
        elif step == "receiving" and isinstance(self.shipment, UnsetType):
            raise ValueError("receiving names the shipment")


def _check(value: str, pattern: str, name: str) -> None:
    if not re.fullmatch(pattern, value):
        raise ValueError(f"field {name!r} has an invalid value")


class ReadingsPayload(Payload, frozen=True, kw_only=True):
    """Temperature readings of a shipment's logger, oldest first."""

    shipment: str
    readings: Annotated[list[Reading], msgspec.Meta(min_length=1, max_length=MAX_READINGS)]

    def __post_init__(self) -> None:
        """Times increase within the list (the handler checks them against the
        shipment's last reading and the block time)."""
        times = [time_ms for time_ms, _ in self.readings]
        if any(later <= earlier for earlier, later in pairwise(times)):
            raise ValueError("reading times must increase and not be in the future")


class RecallPayload(Payload, frozen=True, kw_only=True):
    """Recall one batch (gtin and lot) or one ingredient lot (and so every batch made
    from it), with the reason every holder is told."""

    reason: str
    gtin: str | UnsetType = UNSET
    lot: str | UnsetType = UNSET
    ingredient_lot: str | UnsetType = UNSET

    def __post_init__(self) -> None:
        """Exactly one thing recalled: a batch or an ingredient lot, not both."""
        names_batch = (self.gtin is not UNSET, self.lot is not UNSET)
        names_lot = self.ingredient_lot is not UNSET
        if names_batch not in ((True, True), (False, False)) or names_lot == any(names_batch):
            raise ValueError("recall a batch (gtin and lot) or an ingredient_lot, not both")


class LiftRecallPayload(Payload, frozen=True, kw_only=True):
    """Lift the recall of one batch (an EPCIS persistentDisposition that unsets
    `recalled`, or a recall found to be wrong), with the reason every holder is told.
    A recall of an ingredient lot the batch was made from still blocks its units."""

    gtin: str
    lot: str
    reason: str


class RegisterLocationPayload(Payload, frozen=True, kw_only=True):
    """A GS1 location or party number and the organisation it belongs to, as a
    consortium admin or a regulator attests (GS1 numbers are not checked on chain, so
    an organisation cannot claim another's). An EPCIS event naming it as read point,
    business location, source or destination makes that organisation a party to the
    event's document. Registering a number again moves it to the organisation given."""

    location: Annotated[str, msgspec.Meta(pattern=whole(LOCATION), max_length=160)]
    org_id: str
