"""RDE^O11 (pharmacy/treatment encoded order) -> Patient + MedicationRequest per
order (RXO as requested, RXE as the pharmacy encoded it) + Observations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medchain.fhir import conversion
from medchain.fhir.conversion import (
    MappingError,
    SourcePatient,
    code_system,
    coding,
    integer_value,
    quantity,
    urn_part,
    validated,
)
from medchain.fhir.hl7v2 import tables
from medchain.fhir.hl7v2.datatypes import (
    coded_concept,
    datetime_fields,
    ei_identifier,
    order_status,
    practitioner,
    unit_of,
)
from medchain.fhir.hl7v2.message import Message, Segment
from medchain.fhir.hl7v2.observation import observation, trailing_notes
from medchain.fhir.hl7v2.patient import read_patient, read_visit
from medchain.fhir.hl7v2.tables import ORDER_CONTROLS, ORDER_STATUSES, PRIORITIES, SUBSTITUTIONS


@dataclass(frozen=True)
class RxFields:
    """Where RXO (as requested) and RXE (as encoded by pharmacy) keep the same facts."""

    code: int
    amount_min: int
    amount_max: int
    units: int
    instructions: int
    dispense_amount: int
    dispense_units: int
    refills: int
    substitution: int | None = None
    rate_amount: int | None = None
    rate_units: int | None = None
    prescription_number: int | None = None


def _rx_fields(table: Mapping[str, int | None]) -> RxFields:
    """An RxFields from its row of `tables.RX_FIELDS` (the always-present fields are numbers)."""

    def number(name: str) -> int:
        value = table[name]
        if value is None:
            raise TypeError(f"tables.RX_FIELDS: {name} must be a field number")
        return value

    return RxFields(
        code=number("code"),
        amount_min=number("amount_min"),
        amount_max=number("amount_max"),
        units=number("units"),
        instructions=number("instructions"),
        dispense_amount=number("dispense_amount"),
        dispense_units=number("dispense_units"),
        refills=number("refills"),
        substitution=table["substitution"],
        rate_amount=table["rate_amount"],
        rate_units=table["rate_units"],
        prescription_number=table["prescription_number"],
    )


RX_FIELDS = {segment: _rx_fields(row) for segment, row in tables.RX_FIELDS.items()}


@dataclass
class _OrderGroup:
    """One ORC and its segments, split where RXE starts the pharmacy-encoded part."""

    orc: Segment
    requested: list[Segment] = field(default_factory=list)
    encoded: list[Segment] = field(default_factory=list)


def _order_groups(msg: Message) -> list[_OrderGroup]:
    groups: list[_OrderGroup] = []
    for seg in msg.segments:
        if seg.name == "ORC":
            groups.append(_OrderGroup(seg))
        elif not groups:
            if seg.name in ("RXO", "RXE", "RXR", "RXC", "TQ1", "OBX"):
                raise MappingError("ORC", f"{seg.label} comes before any ORC segment")
        elif seg.name == "RXE":
            if groups[-1].encoded:
                raise MappingError(seg.label, f"a second RXE in order group {groups[-1].orc.label}")
            groups[-1].encoded.append(seg)
        else:
            (groups[-1].encoded or groups[-1].requested).append(seg)
    if not groups:
        raise MappingError("ORC", "required segment ORC is missing")
    for group in groups:
        if not group.encoded:
            raise MappingError("RXE", f"order group {group.orc.label} has no RXE segment")
    return groups


def _timing(msg: Message, tq1: Segment) -> dict[str, Any] | None:
    """TQ1 -> Timing: repeat pattern (table 0335) and start/end."""
    timing: dict[str, Any] = {}
    repeat: dict[str, Any] = {}
    pattern = tq1.rep(3)
    code = pattern.code(1)
    if code:
        _, text, system_name = ([*pattern.subs(1), "", ""])[:3]
        system = code_system(system_name or "HL70335", msg.facility)
        timing["code"] = {"coding": [coding(code, text, system, tq1.where(3))]}
        frequency = conversion.FREQUENCIES.get(code.upper())
        if frequency:
            repeat = conversion.timing_repeat(frequency)
    bounds = datetime_fields(msg, tq1, 7, "start") | datetime_fields(msg, tq1, 8, "end")
    if bounds:
        repeat["boundsPeriod"] = bounds
    if repeat:
        timing["repeat"] = repeat
    return timing or None


def _dose(msg: Message, rx: Segment, f: RxFields) -> dict[str, Any]:
    """Give amount (min, or min-max) with its units, and the rate for infusions."""
    unit = unit_of(msg, rx.rep(f.units), rx.where(f.units))
    dose: dict[str, Any] = {}
    low, high = rx.get(f.amount_min), rx.get(f.amount_max)
    if low and high:
        dose["doseRange"] = {
            "low": quantity(low, unit, rx.where(f.amount_min)),
            "high": quantity(high, unit, rx.where(f.amount_max)),
        }
    elif low:
        dose["doseQuantity"] = quantity(low, unit, rx.where(f.amount_min))
    if f.rate_amount and f.rate_units and rx.get(f.rate_amount):
        rate_unit = unit_of(msg, rx.rep(f.rate_units), rx.where(f.rate_units))
        dose["rateQuantity"] = quantity(rx.get(f.rate_amount), rate_unit, rx.where(f.rate_amount))
    return dose


def _dosage(msg: Message, rx: Segment, part: list[Segment], f: RxFields) -> dict[str, Any]:
    """Instructions, timing (TQ1), route (RXR-1, table 0162) and dose of one order part."""
    dosage: dict[str, Any] = {}
    text = "\n".join(r.get(2) or r.get(9) or r.get(1) for r in rx.reps(f.instructions))
    if text:
        dosage["text"] = text
    tq1 = next((s for s in part if s.name == "TQ1"), None)
    timing = _timing(msg, tq1) if tq1 else None
    if timing:
        dosage["timing"] = timing
    rxr = next((s for s in part if s.name == "RXR"), None)
    route = coded_concept(msg, rxr.rep(1), rxr.where(1), "HL70162") if rxr else None
    if route:
        dosage["route"] = route
    dose = _dose(msg, rx, f)
    if dose:
        dosage["doseAndRate"] = [dose]
    return dosage


def _medication_request(
    msg: Message,
    orc: Segment,
    rx: Segment,
    part: list[Segment],
    context: dict[str, Any],
) -> dict[str, Any]:
    """ORC + RXO (as requested) or ORC + RXE (as encoded) -> MedicationRequest."""
    f = RX_FIELDS[rx.name]
    medication = coded_concept(msg, rx.rep(f.code), rx.where(f.code))
    if medication is None:
        raise MappingError(rx.where(f.code), "medication code is empty")
    mr: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": msg.rid("MedicationRequest", rx),
    }
    ids = [ei_identifier(msg, orc.rep(2), "PLAC"), ei_identifier(msg, orc.rep(3), "FILL")]
    if f.prescription_number and rx.get(f.prescription_number):
        system = f"urn:medchain:prescription:{urn_part(msg.facility)}"
        ids.append({"system": system, "value": rx.get(f.prescription_number)})
    if any(ids):
        mr["identifier"] = [i for i in ids if i]
    mr["status"] = order_status(orc, ORDER_CONTROLS, ORDER_STATUSES)
    mr["intent"] = context["intent"]
    tq1 = next((s for s in part if s.name == "TQ1"), None)
    if tq1 and tq1.code(9) in PRIORITIES:
        mr["priority"] = PRIORITIES[tq1.code(9)]
    mr["medicationCodeableConcept"] = medication
    mr["subject"] = context["subject"]
    if "encounter" in context:
        mr["encounter"] = context["encounter"]
    if context.get("supporting"):
        mr["supportingInformation"] = context["supporting"]
    mr |= datetime_fields(msg, orc, 9, "authoredOn")
    requester = practitioner(msg, orc.rep(12)) if orc.reps(12) else None
    if requester:
        mr["requester"] = requester
    if context.get("based_on"):
        mr["basedOn"] = [{"reference": f"MedicationRequest/{context['based_on']}"}]
    dosage = _dosage(msg, rx, part, f)
    if dosage:
        mr["dosageInstruction"] = [dosage]
    dispense: dict[str, Any] = {}
    if rx.get(f.refills):
        dispense["numberOfRepeatsAllowed"] = integer_value(rx.get(f.refills), rx.where(f.refills))
    if rx.get(f.dispense_amount):
        unit = unit_of(msg, rx.rep(f.dispense_units), rx.where(f.dispense_units))
        where = rx.where(f.dispense_amount)
        dispense["quantity"] = quantity(rx.get(f.dispense_amount), unit, where)
    if dispense:
        mr["dispenseRequest"] = dispense
    if f.substitution and rx.code(f.substitution):
        allowed = SUBSTITUTIONS.get(rx.code(f.substitution))
        if allowed is None:
            reason = f"unknown substitution code {rx.code(f.substitution)!r}"
            raise MappingError(rx.where(f.substitution), reason)
        mr["substitution"] = {"allowedBoolean": allowed}
    return validated(mr)


def build_orders(msg: Message) -> tuple[list[dict[str, Any]], SourcePatient]:
    """RDE^O11: per ORC group, a MedicationRequest for RXE (the pharmacy's encoding).

    When the group also has the prescriber's RXO, that becomes its own
    MedicationRequest (intent "order") and the RXE one is its filler-order,
    because the two may name different products (brand vs generic...).
    """
    patient, source = read_patient(msg)
    encounters, context = read_visit(msg, patient)
    context["subject"] = {"reference": f"Patient/{patient['id']}"}
    resources = [patient, *encounters]
    for group in _order_groups(msg):
        observations = [
            observation(msg, obx, context["subject"], context, trailing_notes(msg, obx))
            for obx in group.requested + group.encoded
            if obx.name == "OBX"
        ]
        rxo = next((s for s in group.requested if s.name == "RXO"), None)
        requested = None
        if rxo:
            requested = _medication_request(
                msg, group.orc, rxo, group.requested, context | {"intent": "order"}
            )
        encoded_context = context | {
            "intent": "filler-order" if requested else "order",
            "based_on": requested["id"] if requested else None,
            "supporting": [{"reference": f"Observation/{o['id']}"} for o in observations],
        }
        rxe = group.encoded[0]
        encoded = _medication_request(msg, group.orc, rxe, group.encoded, encoded_context)
        resources += [r for r in (requested, encoded) if r] + observations
    return resources, source
