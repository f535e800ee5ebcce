"""HL7 v2 datatypes -> FHIR datatypes: TS/DTM times, CWE/CE codes, CX/EI/HD
identifiers, XCN practitioners, XPN names, XAD addresses, XTN telecoms.

Each reads one repetition (or field) and either returns the FHIR value or raises
a MappingError naming the field, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from medchain.fhir import conversion
from medchain.fhir.conversion import (
    MappingError,
    code_system,
    coding,
    identifier_type,
    unit_fields,
    urn_part,
)
from medchain.fhir.hl7v2 import tables
from medchain.fhir.hl7v2.message import Message, Rep, Segment
from medchain.fhir.hl7v2.tables import (
    ADDRESS_TYPES,
    NAME_USES,
    TELECOM_EQUIPMENT,
    TELECOM_USES,
)

_TIMESTAMP = re.compile(
    r"(\d{4})(\d\d)?(\d\d)?(\d\d)?(\d\d)?(\d\d)?(\.\d{1,4})?([+-])?(\d\d)?(\d\d)?"
)


@dataclass(frozen=True)
class Time:
    """An HL7 TS/DTM split into the parts FHIR writes differently."""

    written: str
    date: str  # YYYY, YYYY-MM or YYYY-MM-DD
    time: str | None  # hh:mm:ss[.ffff] when the source gave hours
    offset: str | None  # +hh:mm when the source gave one


def parse_time(text: str, where: str, what: str = "date/time") -> Time:
    """An HL7 TS/DTM/DT split into parts; a MappingError for an impossible date or time."""
    m = _TIMESTAMP.fullmatch(text.strip())
    bad = MappingError(where, f"{text!r} is not a {what}")
    if m is None:
        raise bad
    year, month, day, hour, minute, second, frac, sign, oh, om = m.groups()
    if (frac and not second) or (sign and not om) or (oh and not sign):
        raise bad
    try:
        date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        raise bad from None
    if int(hour or 0) > 23 or int(minute or 0) > 59 or int(second or 0) > 59:
        raise bad
    if sign and (int(oh) > 14 or int(om) > 59):
        raise bad
    day_part = "-".join(p for p in (year, month, day) if p)
    clock = None
    if hour:
        clock = f"{hour}:{minute or '00'}:{second or '00'}{frac or ''}"
    offset = f"{sign}{oh}:{om}" if sign else None
    return Time(text, day_part, clock, offset)


def datetime_fields(msg: Message, seg: Segment, field_no: int, name: str) -> dict[str, Any]:
    """{name: FHIR dateTime} for a TS field; a time with no known offset keeps only the date.

    FHIR needs an offset once there is a time. HL7 says a missing one is the
    sender's, so MSH-7's offset is used; with none there either, the date is
    kept and the full source value goes into an originalText extension.
    """
    text = seg.get(field_no)
    if not text.strip():
        return {}
    t = parse_time(text, seg.where(field_no))
    offset = t.offset or msg.offset
    if t.time is None:
        return {name: t.date}
    if offset is None:
        return {name: t.date, f"_{name}": conversion.original_text(t.written)}
    return {name: f"{t.date}T{t.time}{offset}"}


def instant(msg: Message, seg: Segment, field_no: int) -> str | None:
    """A FHIR instant, or None when the source lacks the time or the offset."""
    text = seg.get(field_no)
    if not text.strip():
        return None
    t = parse_time(text, seg.where(field_no))
    offset = t.offset or msg.offset
    if t.time is None or offset is None:
        return None
    return f"{t.date}T{t.time}{offset}"


def coded_concept(
    msg: Message, rep: Rep, where: str, default_system: str = ""
) -> dict[str, Any] | None:
    """CWE/CE -> CodeableConcept: the primary and alternate codes, original text kept."""
    codings = []
    for code_at, version_at in ((1, 7), (4, 8)):
        code = rep.get(code_at)
        if code:
            name = rep.get(code_at + 2) or default_system
            system = (
                code_system(name, msg.facility)
                if name
                else conversion.local_system(msg.facility, "code")
            )
            codings.append(coding(code, rep.get(code_at + 1), system, where, rep.get(version_at)))
    concept: dict[str, Any] = {}
    if codings:
        concept["coding"] = codings
    text = rep.get(9) or ("" if codings else rep.get(2))
    if text:
        concept["text"] = text
    return concept or None


def coded_concepts(
    msg: Message, seg: Segment, field_no: int, default_system: str = ""
) -> list[dict[str, Any]]:
    """Every non-empty repetition of a coded field as a CodeableConcept."""
    found = (coded_concept(msg, r, seg.where(field_no), default_system) for r in seg.reps(field_no))
    return [c for c in found if c]


def hd_system(prefix: str, authority: list[str], fallback: str) -> str:
    """Identifier system from an HL7 assigning authority (HD): an OID when it is one."""
    namespace, universal, kind = [*authority, "", "", ""][:3]
    if universal and kind.upper() == "ISO":
        return f"urn:oid:{universal}"
    if universal and kind.upper() in ("URI", "URL"):
        return universal
    if universal and kind.upper() == "UUID":
        return f"urn:uuid:{universal}"
    return f"{prefix}:{urn_part(namespace or universal or fallback)}"


def cx_identifier(msg: Message, rep: Rep, prefix: str, where: str) -> dict[str, Any]:
    """CX (id^check^scheme^authority&oid&type^id type) -> Identifier."""
    value = rep.get(1)
    if not value.strip():
        raise MappingError(where, "identifier is empty")
    out: dict[str, Any] = {}
    if rep.code(5):
        out["type"] = identifier_type(rep.code(5))
    out["system"] = hd_system(prefix, rep.subs(4), msg.facility)
    out["value"] = value
    return out


def ei_identifier(msg: Message, rep: Rep, id_type: str) -> dict[str, Any] | None:
    """EI (id^namespace^oid^type) -> Identifier, e.g. placer/filler order numbers."""
    if not rep.get(1):
        return None
    system = hd_system("urn:medchain:order", [rep.get(i) for i in (2, 3, 4)], msg.facility)
    return {"type": identifier_type(id_type), "system": system, "value": rep.get(1)}


def _person_name(rep: Rep, family_at: int) -> str:
    """Display form of an XPN/XCN name: prefix, given, middle, family, suffix."""
    order = (family_at + 4, family_at + 1, family_at + 2, family_at, family_at + 3)
    return " ".join(p for p in (rep.get(i) for i in order) if p.strip())


def practitioner(msg: Message, rep: Rep) -> dict[str, Any]:
    """XCN -> a Reference by identifier (the ledger has no Practitioner resources)."""
    ref: dict[str, Any] = {}
    if rep.get(1):
        system = hd_system("urn:medchain:practitioner", rep.subs(9), msg.facility)
        ref["identifier"] = {"system": system, "value": rep.get(1)}
    display = _person_name(rep, 2)
    if display:
        ref["display"] = display
    return ref


def human_name(rep: Rep, where: str) -> dict[str, Any] | None:
    """XPN -> HumanName (family is FN.1, the surname subcomponent)."""
    name: dict[str, Any] = {}
    use_code = rep.code(7)
    if use_code:
        if use_code not in NAME_USES:
            raise MappingError(where, f"unknown name type {use_code!r}")
        if NAME_USES[use_code]:
            name["use"] = NAME_USES[use_code]
    parts = {
        "family": rep.get(1),
        "given": [g for g in (rep.get(2), rep.get(3)) if g],
        "prefix": [rep.get(5)] if rep.get(5) else [],
        "suffix": [s for s in (rep.get(4), rep.get(6)) if s],
    }
    if not parts["family"] and not parts["given"]:
        return None
    name.update({k: v for k, v in parts.items() if v})
    return name


def postal_address(rep: Rep, where: str) -> dict[str, Any] | None:
    """XAD -> Address (street subcomponents joined, city, state, postal code, country)."""
    address: dict[str, Any] = {}
    kind = rep.code(7)
    if kind:
        if kind not in ADDRESS_TYPES:
            raise MappingError(where, f"unknown address type {kind!r}")
        use, typ = ADDRESS_TYPES[kind]
        address |= {k: v for k, v in (("use", use), ("type", typ)) if v}
    street = " ".join(s for s in rep.subs(1) if s.strip())
    lines = [s for s in (street, rep.get(2)) if s.strip()]
    fields = (("city", 3), ("state", 4), ("postalCode", 5), ("country", 6))
    parts = {"line": lines} | {k: rep.get(i) for k, i in fields}
    parts = {k: v for k, v in parts.items() if v}
    return address | parts if parts else None


def contact_point(rep: Rep, default_use: str, where: str) -> dict[str, Any] | None:
    """XTN -> ContactPoint; the equipment type says phone, fax, email..."""
    equipment = rep.code(3).upper() or "PH"
    if equipment not in TELECOM_EQUIPMENT:
        raise MappingError(where, f"unknown telecommunication equipment type {rep.code(3)!r}")
    system, device_use = TELECOM_EQUIPMENT[equipment]
    use_code = rep.code(2)
    if use_code and use_code not in TELECOM_USES:
        raise MappingError(where, f"unknown telecommunication use code {use_code!r}")
    use = device_use or (TELECOM_USES[use_code] if use_code else default_use)
    if system == "email":
        value = rep.get(4) or rep.get(1)
    else:
        value = rep.get(1) or rep.get(12) or "".join(rep.get(i) for i in (5, 6, 7))
    if not value:
        return None
    return {"system": system, "value": value} | ({"use": use} if use else {})


# A term after a solidus with a negative exponent (`g/l-1`, `mg/10*-3`): a double inversion.
_INVERSE_AFTER_SOLIDUS = re.compile(r"/(?:\[[^\]]*\]|[^./\[{(])*-\d")


def true_ucum(code: str) -> bool:
    """Whether a unit code is tagged as UCUM from version 2: it parses under the UCUM
    grammar with known atoms and prefixes, written exactly so (not an alias such as
    `μg`), and no term after a solidus has a negative exponent (see tables.UCUM_TAGGING)."""
    if conversion.ucum_code(code) != code:
        return False
    return _INVERSE_AFTER_SOLIDUS.search(code) is None


def unit_of(msg: Message, rep: Rep, where: str) -> dict[str, Any]:
    """A CWE/CE unit (code, text, coding system) -> Quantity unit, system and code.

    Version 2 tags UCUM only for a `true_ucum` code and keeps any other unit as text."""
    unit = unit_fields(rep.get(1), rep.get(2), rep.get(3), msg.facility, where)
    if unit.get("system") != conversion.UCUM:
        return unit
    if "UCUM_TAGGING" not in tables.tables_of(msg.version) or true_ucum(unit["code"]):
        return unit
    return {"unit": unit["unit"]}


def order_status(orc: Segment, controls: Mapping[str, str], statuses: Mapping[str, str]) -> str:
    """The FHIR status of an order: ORC-5 (order status) if given, else what ORC-1
    (order control) implies, each looked up in the message type's own table."""
    control = orc.code(1)
    if control not in controls:
        reason = "order control is empty" if not control else f"unknown order control {control!r}"
        raise MappingError(orc.where(1), reason)
    status = orc.code(5)
    if status and status not in statuses:
        raise MappingError(orc.where(5), f"unknown order status {status!r}")
    return statuses[status] if status else controls[control]
