"""OBX (+ its NTE notes) -> Observation, shared by ORU results and RDE orders.

OBX-2 names the value type; `tables.VALUE_TYPES` says which kind of FHIR
value[x] each becomes, and this module has one reader per kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medchain.fhir import conversion
from medchain.fhir.conversion import (
    MappingError,
    decimal_fields,
    interpretation,
    quantity,
    reference_range,
    validated,
)
from medchain.fhir.hl7v2.datatypes import coded_concept, datetime_fields, parse_time, unit_of
from medchain.fhir.hl7v2.message import Message, Rep, Segment
from medchain.fhir.hl7v2.tables import (
    OBSERVATION_STATUSES,
    SN_COMPARATORS,
    TEXT_TYPES,
    VALUE_TYPES,
)


def _observation_value(
    msg: Message, obx: Segment, rep: Rep, unit: dict[str, Any]
) -> dict[str, Any]:
    """One OBX-5 repetition -> the Observation value[x] its OBX-2 type calls for."""
    value_type = obx.code(2)
    where = obx.where(5)
    kind = VALUE_TYPES.get(value_type)
    if kind is None:
        known = ", ".join(VALUE_TYPES)
        raise MappingError(
            obx.where(2), f"value type {value_type!r} is not supported; supported: {known}"
        )
    return VALUE_READERS[kind](msg, rep, unit, where)


def _numeric(msg: Message, rep: Rep, unit: dict[str, Any], where: str) -> dict[str, Any]:
    """NM: a number with OBX-6's unit."""
    return {"valueQuantity": quantity(rep.get(1), unit, where)}


def _structured_numeric(msg: Message, rep: Rep, unit: dict[str, Any], where: str) -> dict[str, Any]:
    """SN: comparator^num1^separator^num2 -> a quantity, range, ratio or ordinal."""
    comparator, first, separator, second = (rep.get(i).strip() for i in (1, 2, 3, 4))
    if comparator not in SN_COMPARATORS:
        raise MappingError(where, f"unknown comparator {comparator!r}")
    if second or separator:
        if comparator:
            raise MappingError(where, f"a comparator cannot go with {rep.text()!r}")
        if separator == "-" and second:
            low, high = quantity(first, unit, where), quantity(second, unit, where)
            return {"valueRange": {"low": low, "high": high}}
        if separator in (":", "/") and second:
            ratio = {"numerator": quantity(first, {}, where)}
            ratio["denominator"] = quantity(second, {}, where)
            return {"valueRatio": ratio}
        if separator == "+" and not second:
            decimal_fields(first, where)
            return {"valueString": f"{first}+"}
        raise MappingError(where, f"structured numeric {rep.text()!r} is not supported")
    value = quantity(first, unit, where)
    if SN_COMPARATORS[comparator]:
        value["comparator"] = SN_COMPARATORS[comparator]
    return {"valueQuantity": value}


def _string(msg: Message, rep: Rep, unit: dict[str, Any], where: str) -> dict[str, Any]:
    """ST/TX/FT: the text as written, delimiters included."""
    return {"valueString": rep.text()}


def _coded(msg: Message, rep: Rep, unit: dict[str, Any], where: str) -> dict[str, Any]:
    """CWE/CE/CNE: a CodeableConcept."""
    concept = coded_concept(msg, rep, where)
    return {"valueCodeableConcept": concept} if concept else {}


def _date_time(msg: Message, rep: Rep, unit: dict[str, Any], where: str) -> dict[str, Any]:
    """DT/DTM/TS: a dateTime (offset from MSH-7 when the value has none)."""
    t = parse_time(rep.get(1), where)
    offset = t.offset or msg.offset
    if t.time is None:
        return {"valueDateTime": t.date}
    if offset is None:
        return {"valueDateTime": t.date, "_valueDateTime": conversion.original_text(t.written)}
    return {"valueDateTime": f"{t.date}T{t.time}{offset}"}


ValueReader = Callable[[Message, Rep, dict[str, Any], str], dict[str, Any]]
VALUE_READERS: dict[str, ValueReader] = {
    "numeric": _numeric,
    "structured-numeric": _structured_numeric,
    "string": _string,
    "coded": _coded,
    "date-time": _date_time,
}


def observation(
    msg: Message,
    obx: Segment,
    subject: dict[str, Any],
    context: dict[str, Any],
    notes: list[str],
) -> dict[str, Any]:
    """OBX (+ following NTE) -> Observation. `context` holds category/encounter/default time."""
    status_code = obx.code(11)
    if not status_code:
        raise MappingError(obx.where(11), "observation result status is empty")
    if status_code not in OBSERVATION_STATUSES:
        raise MappingError(obx.where(11), f"unknown observation result status {status_code!r}")
    code = coded_concept(msg, obx.rep(3), obx.where(3))
    if code is None:
        raise MappingError(obx.where(3), "observation identifier is empty")
    obs: dict[str, Any] = {"resourceType": "Observation", "id": msg.rid("Observation", obx)}
    obs["status"] = OBSERVATION_STATUSES[status_code]
    if "category" in context:
        obs["category"] = [context["category"]]
    obs["code"] = code
    obs["subject"] = subject
    if "encounter" in context:
        obs["encounter"] = context["encounter"]
    effective = datetime_fields(msg, obx, 14, "effectiveDateTime")
    obs |= effective or context.get("effective", {})
    unit = unit_of(msg, obx.rep(6), obx.where(6))
    values = [_observation_value(msg, obx, r, unit) for r in obx.reps(5)]
    if len(values) == 1:
        obs |= values[0]
    elif values and obx.code(2) in TEXT_TYPES:
        obs["valueString"] = "\n".join(v["valueString"] for v in values)
    elif values:
        obs["component"] = [{"code": code, **v} for v in values]
    flags = [interpretation(r.code(1), obx.where(8)) for r in obx.reps(8)]
    if flags:
        obs["interpretation"] = flags
    if notes:
        obs["note"] = [{"text": n} for n in notes]
    ref_range = reference_range(obx.get(7), unit, obx.where(7))
    if ref_range:
        obs["referenceRange"] = [ref_range]
    return validated(obs)


def trailing_notes(msg: Message, seg: Segment) -> list[str]:
    """Text of the NTE segments that directly follow `seg`."""
    notes = []
    for nxt in msg.segments[seg.index + 1 :]:
        if nxt.name != "NTE":
            break
        text = "\n".join(r.text() for r in nxt.reps(3))
        if text:
            notes.append(text)
    return notes
