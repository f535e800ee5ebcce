"""HL7 v2 messages -> FHIR R4 resources.

ADT^A01/A08 become Patient + Encounter, ORU^R01 Patient + DiagnosticReport +
Observation, RDE^O11 Patient + MedicationRequest. python-hl7 parses; this
module reads fields by number through small tables, and rejects what it cannot
map with the segment and field (e.g. "OBX[3]-5") instead of importing half a
message: a hospital must be able to trust that what reached the ledger is the
whole message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import hl7  # type: ignore[import-untyped, unused-ignore]

from medchain.crypto import sm3
from medchain.fhir import conversion as conv
from medchain.fhir.conversion import (
    Conversion,
    MappingError,
    SourcePatient,
    code_system,
    coding,
    decimal_fields,
    identifier_type,
    integer_value,
    interpretation,
    quantity,
    reference_range,
    resource_id,
    unit_fields,
    urn_part,
    validated,
)

MAPPER_VERSION = "1"
# The mapping is this module plus the shared tables it uses.
MAPPING_HASH = sm3(
    Path(conv.__file__).read_bytes() + Path(__file__).read_bytes() + MAPPER_VERSION.encode()
)

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
DIAGNOSTIC_SERVICE = conv.V2_TABLE + "0074"

# ---- code tables (HL7 v2 table -> FHIR) --------------------------------------

GENDERS = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other", "N": "other"}
# XPN-7 name type (table 0200) -> HumanName.use, as FHIR's v2 name-use map pairs them;
# the other table 0200 codes have no FHIR use, so the name is kept without one.
NAME_USES: dict[str, str | None] = {
    "L": "official",
    "D": "usual",
    "M": "maiden",
    "N": "nickname",
    "S": "anonymous",
    "TEMP": "temp",
    "NOUSE": "old",
    "BAD": "old",
}
NAME_USES |= {code: None for code in ("A", "B", "C", "I", "K", "P", "R", "T", "U")}
# XAD-7 address type -> (Address.use, Address.type)
ADDRESS_TYPES: dict[str, tuple[str | None, str | None]] = {
    "H": ("home", None),
    "P": ("home", None),
    "B": ("work", None),
    "O": ("work", None),
    "C": ("temp", None),
    "V": ("temp", None),
    "BA": ("old", None),
    "M": (None, "postal"),
    "L": (None, None),
    "N": (None, None),
    "F": (None, None),
    "BDL": (None, None),
    "BR": (None, None),
}
# XTN-3 equipment type -> (ContactPoint.system, use implied by the device)
TELECOM_EQUIPMENT: dict[str, tuple[str, str | None]] = {
    "PH": ("phone", None),
    "CP": ("phone", "mobile"),
    "FX": ("fax", None),
    "BP": ("pager", None),
    "INTERNET": ("email", None),
    "X.400": ("email", None),
    "TDD": ("other", None),
    "TTY": ("other", None),
    "MD": ("other", None),
    "SAT": ("other", None),
}
TELECOM_USES: dict[str, str | None] = {
    "PRN": "home",
    "ORN": "home",
    "VHN": "temp",
    "WPN": "work",
    "PRS": "mobile",
    "ASN": None,
    "EMR": None,
    "NET": None,
    "BPN": None,
}
# PV1-2 patient class -> Encounter.class
PATIENT_CLASSES: dict[str, tuple[str, str, str]] = {
    "I": (ACT_CODE, "IMP", "inpatient encounter"),
    "B": (ACT_CODE, "IMP", "inpatient encounter"),
    "O": (ACT_CODE, "AMB", "ambulatory"),
    "R": (ACT_CODE, "AMB", "ambulatory"),
    "E": (ACT_CODE, "EMER", "emergency"),
    "P": (ACT_CODE, "PRENC", "pre-admission"),
    "U": (NULL_FLAVOR, "UNK", "unknown"),
    "N": (NULL_FLAVOR, "NA", "not applicable"),
}
# PV1 field -> Encounter.participant type (v3 ParticipationType)
PARTICIPANTS = (
    (7, "ATND", "attender"),
    (8, "REF", "referrer"),
    (9, "CON", "consultant"),
    (17, "ADM", "admitter"),
)
# OBX-11 (table 0085) -> Observation.status
OBSERVATION_STATUSES = {
    "F": "final",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "C": "corrected",
    "A": "amended",
    "I": "registered",
    "X": "cancelled",
    "N": "cancelled",
    "D": "entered-in-error",
    "W": "entered-in-error",
    "U": "final",
}
# OBR-25 (table 0123) -> DiagnosticReport.status
REPORT_STATUSES = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "A": "partial",
    "P": "preliminary",
    "R": "preliminary",
    "F": "final",
    "C": "corrected",
    "X": "cancelled",
}
# ORC-5 (table 0038) and, when it is empty, ORC-1 (table 0119) -> MedicationRequest.status
ORDER_STATUSES = {
    "A": "active",
    "IP": "active",
    "SC": "active",
    "CM": "completed",
    "CA": "cancelled",
    "DC": "stopped",
    "RP": "stopped",
    "HD": "on-hold",
    "ER": "entered-in-error",
}
ORDER_CONTROLS = {code: "active" for code in ("NW", "OK", "SN", "XO", "XX", "RL", "SC")}
ORDER_CONTROLS |= {"CA": "cancelled", "CR": "cancelled", "OC": "cancelled"}
ORDER_CONTROLS |= {"DC": "stopped", "OD": "stopped", "DR": "stopped", "HD": "on-hold"}
ORDER_CONTROLS |= {"OH": "on-hold"}
PRIORITIES = {"S": "stat", "A": "asap", "R": "routine", "T": "urgent"}
SUBSTITUTIONS = {"N": False, "G": True, "T": True}
SN_COMPARATORS: dict[str, str | None] = {"": None, "=": None, "<": "<", ">": ">", "<=": "<="}
SN_COMPARATORS |= {">=": ">="}
TEXT_TYPES = frozenset({"ST", "TX", "FT"})
CHARSETS = {
    "": "utf-8",
    "ASCII": "ascii",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
    "GB 18030-2000": "gb18030",
    "GB18030": "gb18030",
    "GBK": "gb18030",
    "GB2312": "gb18030",
    "BIG-5": "big5",
    "KS X 1001": "euc-kr",
}
CHARSETS |= {f"8859/{n}": f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15)}
UNIQUE_SEGMENTS = frozenset({"MSH", "EVN", "PID", "PV1", "PV2", "PD1", "SFT"})
TEXT_ESCAPES = {".br": "\n", ".sp": "\n", ".ce": "\n"}

_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
# MSH-2 must end at a field separator: python-hl7 reads the delimiters up to the next one.
_MSH_HEADER = re.compile(r"MSH([^A-Za-z0-9\r\n])[^A-Za-z0-9\r\n]{4,5}\1")
_TIMESTAMP = re.compile(
    r"(\d{4})(\d\d)?(\d\d)?(\d\d)?(\d\d)?(\d\d)?(\.\d{1,4})?([+-])?(\d\d)?(\d\d)?"
)
_MESSAGE_START = re.compile(rb"(?:^|(?<=[\r\n\x0b]))MSH(?=[^A-Za-z0-9\r\n])")
_LINE_ENDS = re.compile(r"\r\n|\n")


# ---- parsed message access ---------------------------------------------------


@dataclass(frozen=True)
class _Rep:
    """One repetition of a field: components of subcomponents, still escaped."""

    parts: tuple[tuple[str, ...], ...]
    unescape: Callable[[str], str]

    def get(self, component: int = 1, sub: int = 1) -> str:
        if component > len(self.parts) or sub > len(self.parts[component - 1]):
            return ""
        return self.unescape(self.parts[component - 1][sub - 1])

    def code(self, component: int = 1) -> str:
        return self.get(component).strip()

    def subs(self, component: int) -> list[str]:
        if component > len(self.parts):
            return []
        return [self.unescape(s) for s in self.parts[component - 1]]

    def text(self) -> str:
        """The whole repetition as written (for text values that used a delimiter)."""
        return "^".join("&".join(self.unescape(s) for s in c) for c in self.parts)

    def empty(self) -> bool:
        return not any(any(c) for c in self.parts)


class _Segment:
    """One segment: fields by their HL7 number, unescaped on read."""

    __slots__ = ("_fields", "_unescape", "index", "label", "name")

    def __init__(self, raw: Any, unescape: Callable[[str], str], index: int, nth: int) -> None:
        self._fields = raw
        self._unescape = unescape
        self.name = str(raw[0][0]) if len(raw[0]) else ""
        self.index = index
        self.label = self.name if self.name in UNIQUE_SEGMENTS else f"{self.name}[{nth}]"

    def where(self, field_no: int, component: int | None = None) -> str:
        return f"{self.label}-{field_no}" + (f".{component}" if component else "")

    def reps(self, field_no: int) -> list[_Rep]:
        """The non-empty repetitions of a field (python-hl7 nests only as deep as needed)."""
        if field_no >= len(self._fields):
            return []
        items = list(self._fields[field_no])
        if not items or isinstance(items[0], str):
            nested = [[str(items[0]) if items else ""]]
        else:
            nested = [[rep] if isinstance(rep, str) else list(rep) for rep in items]
        reps = [
            _Rep(tuple((c,) if isinstance(c, str) else tuple(c) for c in rep), self._unescape)
            for rep in nested
        ]
        return [r for r in reps if not r.empty()]

    def rep(self, field_no: int) -> _Rep:
        reps = self.reps(field_no)
        return reps[0] if reps else _Rep((), self._unescape)

    def get(self, field_no: int, component: int = 1, sub: int = 1) -> str:
        return self.rep(field_no).get(component, sub)

    def code(self, field_no: int) -> str:
        return self.get(field_no).strip()


@dataclass
class _Message:
    """A parsed message and what every builder needs from its MSH."""

    segments: list[_Segment]
    mapping_id: str
    facility: str  # MSH-4.1 (else MSH-3.1): owner of local code systems
    control: tuple[str, str, str]  # MSH-3.1, MSH-4.1, MSH-10: unique per message
    offset: str | None  # MSH-7's UTC offset, for times sent without one
    by_name: dict[str, list[_Segment]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for seg in self.segments:
            self.by_name.setdefault(seg.name, []).append(seg)

    def first(self, name: str) -> _Segment | None:
        found = self.by_name.get(name)
        return found[0] if found else None

    def required(self, name: str) -> _Segment:
        seg = self.first(name)
        if seg is None:
            raise MappingError(name, f"required segment {name} is missing")
        return seg

    def rid(self, resource_type: str, seg: _Segment) -> str:
        return resource_id(self.mapping_id, *self.control, resource_type, str(seg.index))


# ---- times ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Time:
    """An HL7 TS/DTM split into the parts FHIR writes differently."""

    written: str
    date: str  # YYYY, YYYY-MM or YYYY-MM-DD
    time: str | None  # hh:mm:ss[.ffff] when the source gave hours
    offset: str | None  # +hh:mm when the source gave one


def _parse_time(text: str, where: str, what: str = "date/time") -> _Time:
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
    return _Time(text, day_part, clock, offset)


def _datetime_fields(msg: _Message, seg: _Segment, field_no: int, name: str) -> dict[str, Any]:
    """{name: FHIR dateTime} for a TS field; a time with no known offset keeps only the date.

    FHIR needs an offset once there is a time. HL7 says a missing one is the
    sender's, so MSH-7's offset is used; with none there either, the date is
    kept and the full source value goes into an originalText extension.
    """
    text = seg.get(field_no)
    if not text.strip():
        return {}
    t = _parse_time(text, seg.where(field_no))
    offset = t.offset or msg.offset
    if t.time is None:
        return {name: t.date}
    if offset is None:
        return {name: t.date, f"_{name}": conv.original_text(t.written)}
    return {name: f"{t.date}T{t.time}{offset}"}


def _instant(msg: _Message, seg: _Segment, field_no: int) -> str | None:
    """A FHIR instant, or None when the source lacks the time or the offset."""
    text = seg.get(field_no)
    if not text.strip():
        return None
    t = _parse_time(text, seg.where(field_no))
    offset = t.offset or msg.offset
    if t.time is None or offset is None:
        return None
    return f"{t.date}T{t.time}{offset}"


# ---- data types ----------------------------------------------------------------


def _concept(
    msg: _Message, rep: _Rep, where: str, default_system: str = ""
) -> dict[str, Any] | None:
    """CWE/CE -> CodeableConcept: the primary and alternate codes, original text kept."""
    codings = []
    for code_at, version_at in ((1, 7), (4, 8)):
        code = rep.get(code_at)
        if code:
            name = rep.get(code_at + 2) or default_system
            system = (
                code_system(name, msg.facility) if name else conv.local_system(msg.facility, "code")
            )
            codings.append(coding(code, rep.get(code_at + 1), system, where, rep.get(version_at)))
    concept: dict[str, Any] = {}
    if codings:
        concept["coding"] = codings
    text = rep.get(9) or ("" if codings else rep.get(2))
    if text:
        concept["text"] = text
    return concept or None


def _concepts(
    msg: _Message, seg: _Segment, field_no: int, default_system: str = ""
) -> list[dict[str, Any]]:
    found = (_concept(msg, r, seg.where(field_no), default_system) for r in seg.reps(field_no))
    return [c for c in found if c]


def _hd_system(prefix: str, authority: list[str], fallback: str) -> str:
    """Identifier system from an HL7 assigning authority (HD): an OID when it is one."""
    namespace, universal, kind = [*authority, "", "", ""][:3]
    if universal and kind.upper() == "ISO":
        return f"urn:oid:{universal}"
    if universal and kind.upper() in ("URI", "URL"):
        return universal
    if universal and kind.upper() == "UUID":
        return f"urn:uuid:{universal}"
    return f"{prefix}:{urn_part(namespace or universal or fallback)}"


def _cx_identifier(msg: _Message, rep: _Rep, prefix: str, where: str) -> dict[str, Any]:
    """CX (id^check^scheme^authority&oid&type^id type) -> Identifier."""
    value = rep.get(1)
    if not value.strip():
        raise MappingError(where, "identifier is empty")
    out: dict[str, Any] = {}
    if rep.code(5):
        out["type"] = identifier_type(rep.code(5))
    out["system"] = _hd_system(prefix, rep.subs(4), msg.facility)
    out["value"] = value
    return out


def _ei_identifier(msg: _Message, rep: _Rep, id_type: str) -> dict[str, Any] | None:
    """EI (id^namespace^oid^type) -> Identifier, e.g. placer/filler order numbers."""
    if not rep.get(1):
        return None
    system = _hd_system("urn:medchain:order", [rep.get(i) for i in (2, 3, 4)], msg.facility)
    return {"type": identifier_type(id_type), "system": system, "value": rep.get(1)}


def _person_name(rep: _Rep, family_at: int) -> str:
    """Display form of an XPN/XCN name: prefix, given, middle, family, suffix."""
    order = (family_at + 4, family_at + 1, family_at + 2, family_at, family_at + 3)
    return " ".join(p for p in (rep.get(i) for i in order) if p.strip())


def _practitioner(msg: _Message, rep: _Rep) -> dict[str, Any]:
    """XCN -> a Reference by identifier (the ledger has no Practitioner resources)."""
    ref: dict[str, Any] = {}
    if rep.get(1):
        system = _hd_system("urn:medchain:practitioner", rep.subs(9), msg.facility)
        ref["identifier"] = {"system": system, "value": rep.get(1)}
    display = _person_name(rep, 2)
    if display:
        ref["display"] = display
    return ref


def _human_name(rep: _Rep, where: str) -> dict[str, Any] | None:
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


def _address(rep: _Rep, where: str) -> dict[str, Any] | None:
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


def _telecom(rep: _Rep, default_use: str, where: str) -> dict[str, Any] | None:
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


# ---- resources -----------------------------------------------------------------


def _patient(msg: _Message) -> tuple[dict[str, Any], SourcePatient]:
    """PID (+ NK1) -> Patient, and the source identity a later step maps to a DID."""
    pids = msg.by_name.get("PID", [])
    if len(pids) > 1:
        raise MappingError("PID", "a message may describe one patient; found several PID")
    pid = msg.required("PID")
    ids = [_cx_identifier(msg, r, "urn:medchain:mrn", pid.where(3)) for r in pid.reps(3)]
    if not ids:
        raise MappingError(pid.where(3), "patient identifier list is empty")
    patient: dict[str, Any] = {"resourceType": "Patient", "id": msg.rid("Patient", pid)}
    patient["identifier"] = ids
    names = [n for n in (_human_name(r, pid.where(5)) for r in pid.reps(5)) if n]
    if names:
        patient["name"] = names
    telecom = [_telecom(r, "home", pid.where(13)) for r in pid.reps(13)]
    telecom += [_telecom(r, "work", pid.where(14)) for r in pid.reps(14)]
    if any(telecom):
        patient["telecom"] = [t for t in telecom if t]
    gender = None
    if pid.code(8):
        gender = GENDERS.get(pid.code(8).upper())
        if gender is None:
            known = ", ".join(GENDERS)
            raise MappingError(pid.where(8), f"unknown sex code {pid.code(8)!r}; known: {known}")
        patient["gender"] = gender
    birth_date = None
    if pid.code(7):
        born = _parse_time(pid.get(7), pid.where(7), "date")
        birth_date = born.date
        patient["birthDate"] = born.date
        exact = _datetime_fields(msg, pid, 7, "valueDateTime")
        if born.time and "_valueDateTime" not in exact:
            patient["_birthDate"] = {"extension": [{"url": BIRTH_TIME, **exact}]}
    patient |= _datetime_fields(msg, pid, 29, "deceasedDateTime")
    addresses = [a for a in (_address(r, pid.where(11)) for r in pid.reps(11)) if a]
    if addresses:
        patient["address"] = addresses
    contacts = [c for c in (_contact(msg, nk1) for nk1 in msg.by_name.get("NK1", [])) if c]
    if contacts:
        patient["contact"] = contacts
    first_name = pid.rep(5)
    source = SourcePatient(
        identifier=ids[0]["value"],
        system=ids[0]["system"],
        family=first_name.get(1) or None,
        given=first_name.get(2) or None,
        birth_date=birth_date if birth_date and len(birth_date) == 10 else None,
        sex=gender,
    )
    return validated(patient), source


def _contact(msg: _Message, nk1: _Segment) -> dict[str, Any]:
    """NK1 -> Patient.contact: name, relationship (table 0063), address, phone."""
    contact: dict[str, Any] = {}
    relationship = _concepts(msg, nk1, 3, "HL70063")
    if relationship:
        contact["relationship"] = relationship
    name = _human_name(nk1.rep(2), nk1.where(2))
    if name:
        contact["name"] = name
    phones = [_telecom(r, "home", nk1.where(5)) for r in nk1.reps(5)]
    if any(phones):
        contact["telecom"] = [p for p in phones if p]
    address = _address(nk1.rep(4), nk1.where(4))
    if address:
        contact["address"] = address
    return contact


def _encounter(msg: _Message, pv1: _Segment, patient_ref: str) -> dict[str, Any]:
    """PV1 (+ DG1) -> Encounter: class, visit number, admit/discharge times, location, staff."""
    class_code = pv1.code(2)
    if not class_code:
        raise MappingError(pv1.where(2), "patient class is empty")
    if class_code not in PATIENT_CLASSES:
        known = ", ".join(PATIENT_CLASSES)
        raise MappingError(pv1.where(2), f"unknown patient class {class_code!r}; known: {known}")
    system, code, display = PATIENT_CLASSES[class_code]
    discharged = bool(pv1.code(45))
    status = "finished" if discharged else "planned" if code == "PRENC" else "in-progress"
    encounter: dict[str, Any] = {"resourceType": "Encounter", "id": msg.rid("Encounter", pv1)}
    visit = pv1.rep(19)
    if not visit.empty():
        encounter["identifier"] = [_cx_identifier(msg, visit, "urn:medchain:visit", pv1.where(19))]
    encounter["status"] = status
    encounter["class"] = {"system": system, "code": code, "display": display}
    encounter["subject"] = {"reference": patient_ref}
    participants = [
        {
            "type": [{"coding": [{"system": PARTICIPATION_TYPE, "code": kind, "display": text}]}],
            "individual": who,
        }
        for field_no, kind, text in PARTICIPANTS
        for who in (_practitioner(msg, rep) for rep in pv1.reps(field_no))
        if who
    ]
    if participants:
        encounter["participant"] = participants
    period = _datetime_fields(msg, pv1, 44, "start") | _datetime_fields(msg, pv1, 45, "end")
    if period:
        encounter["period"] = period
    reasons = [c for dg1 in msg.by_name.get("DG1", []) for c in _concepts(msg, dg1, 3, dg1.code(2))]
    if reasons:
        encounter["reasonCode"] = reasons
    location = pv1.rep(3)
    place = ", ".join(p for p in (location.get(1), location.get(2), location.get(3)) if p)
    if place:
        encounter["location"] = [{"location": {"display": place}}]
    return validated(encounter)


def _observation_value(
    msg: _Message, obx: _Segment, rep: _Rep, unit: dict[str, Any]
) -> dict[str, Any]:
    """One OBX-5 repetition -> the Observation value[x] its OBX-2 type calls for."""
    value_type = obx.code(2)
    where = obx.where(5)
    builder = VALUE_TYPES.get(value_type)
    if builder is None:
        known = ", ".join(VALUE_TYPES)
        raise MappingError(
            obx.where(2), f"value type {value_type!r} is not supported; supported: {known}"
        )
    return builder(msg, rep, unit, where)


def _numeric(msg: _Message, rep: _Rep, unit: dict[str, Any], where: str) -> dict[str, Any]:
    return {"valueQuantity": quantity(rep.get(1), unit, where)}


def _structured_numeric(
    msg: _Message, rep: _Rep, unit: dict[str, Any], where: str
) -> dict[str, Any]:
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


def _string(msg: _Message, rep: _Rep, unit: dict[str, Any], where: str) -> dict[str, Any]:
    return {"valueString": rep.text()}


def _coded(msg: _Message, rep: _Rep, unit: dict[str, Any], where: str) -> dict[str, Any]:
    concept = _concept(msg, rep, where)
    return {"valueCodeableConcept": concept} if concept else {}


def _date_time(msg: _Message, rep: _Rep, unit: dict[str, Any], where: str) -> dict[str, Any]:
    t = _parse_time(rep.get(1), where)
    offset = t.offset or msg.offset
    if t.time is None:
        return {"valueDateTime": t.date}
    if offset is None:
        return {"valueDateTime": t.date, "_valueDateTime": conv.original_text(t.written)}
    return {"valueDateTime": f"{t.date}T{t.time}{offset}"}


VALUE_TYPES: dict[str, Callable[[_Message, _Rep, dict[str, Any], str], dict[str, Any]]] = {
    "NM": _numeric,
    "SN": _structured_numeric,
    "ST": _string,
    "TX": _string,
    "FT": _string,
    "CWE": _coded,
    "CE": _coded,
    "CNE": _coded,
    "DT": _date_time,
    "DTM": _date_time,
    "TS": _date_time,
}


def _observation(
    msg: _Message,
    obx: _Segment,
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
    code = _concept(msg, obx.rep(3), obx.where(3))
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
    effective = _datetime_fields(msg, obx, 14, "effectiveDateTime")
    obs |= effective or context.get("effective", {})
    units = obx.rep(6)
    unit = unit_fields(units.get(1), units.get(2), units.get(3), msg.facility, obx.where(6))
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


def _trailing_notes(msg: _Message, seg: _Segment) -> list[str]:
    """Text of the NTE segments that directly follow `seg`."""
    notes = []
    for nxt in msg.segments[seg.index + 1 :]:
        if nxt.name != "NTE":
            break
        text = "\n".join(r.text() for r in nxt.reps(3))
        if text:
            notes.append(text)
    return notes


def _report(
    msg: _Message,
    obr: _Segment,
    subject: dict[str, Any],
    context: dict[str, Any],
    results: list[str],
) -> dict[str, Any]:
    """OBR -> DiagnosticReport: order numbers, service code, status, times, its results."""
    status_code = obr.code(25)
    if status_code and status_code not in REPORT_STATUSES:
        raise MappingError(obr.where(25), f"unknown result status {status_code!r}")
    code = _concept(msg, obr.rep(4), obr.where(4))
    if code is None:
        raise MappingError(obr.where(4), "universal service identifier is empty")
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": msg.rid("DiagnosticReport", obr),
    }
    ids = [_ei_identifier(msg, obr.rep(2), "PLAC"), _ei_identifier(msg, obr.rep(3), "FILL")]
    if any(ids):
        report["identifier"] = [i for i in ids if i]
    report["status"] = REPORT_STATUSES.get(status_code, "unknown")
    service = obr.code(24) or "LAB"
    report["category"] = [{"coding": [{"system": DIAGNOSTIC_SERVICE, "code": service}]}]
    report["code"] = code
    report["subject"] = subject
    if "encounter" in context:
        report["encounter"] = context["encounter"]
    report |= context.get("effective", {})
    issued = _instant(msg, obr, 22)
    if issued:
        report["issued"] = issued
    if results:
        report["result"] = [{"reference": f"Observation/{r}"} for r in results]
    return validated(report)


def _visit(msg: _Message, patient: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The Encounter of a PV1 if the message has one, and the context that refers to it."""
    pv1 = msg.first("PV1")
    if pv1 is None:
        return [], {}
    encounter = _encounter(msg, pv1, f"Patient/{patient['id']}")
    return [encounter], {"encounter": {"reference": f"Encounter/{encounter['id']}"}}


def _admission(msg: _Message) -> tuple[list[dict[str, Any]], SourcePatient]:
    """ADT^A01 / ADT^A08: the patient and the visit (PV1 is required)."""
    patient, source = _patient(msg)
    msg.required("PV1")
    encounters, _ = _visit(msg, patient)
    return [patient, *encounters], source


def _results(msg: _Message) -> tuple[list[dict[str, Any]], SourcePatient]:
    """ORU^R01: a DiagnosticReport per OBR, an Observation per OBX under it."""
    patient, source = _patient(msg)
    encounters, context = _visit(msg, patient)
    subject = {"reference": f"Patient/{patient['id']}"}
    context["category"] = conv.laboratory_category()
    groups: list[tuple[_Segment, list[_Segment]]] = []
    for seg in msg.segments:
        if seg.name == "OBR":
            groups.append((seg, []))
        elif seg.name == "OBX":
            if not groups:
                raise MappingError("OBR", f"{seg.label} comes before any OBR segment")
            groups[-1][1].append(seg)
    if not groups:
        raise MappingError("OBR", "required segment OBR is missing")
    resources = [patient, *encounters]
    for obr, obxs in groups:
        group = context | {"effective": _datetime_fields(msg, obr, 7, "effectiveDateTime")}
        observations = [
            _observation(msg, obx, subject, group, _trailing_notes(msg, obx)) for obx in obxs
        ]
        report = _report(msg, obr, subject, group, [o["id"] for o in observations])
        resources += [report, *observations]
    return resources, source


@dataclass(frozen=True)
class _RxFields:
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


RX_FIELDS = {
    "RXO": _RxFields(1, 2, 3, 4, 7, 11, 12, 13, substitution=9),
    "RXE": _RxFields(
        2, 3, 4, 5, 7, 10, 11, 12, rate_amount=23, rate_units=24, prescription_number=15
    ),
}


@dataclass
class _OrderGroup:
    """One ORC and its segments, split where RXE starts the pharmacy-encoded part."""

    orc: _Segment
    requested: list[_Segment] = field(default_factory=list)
    encoded: list[_Segment] = field(default_factory=list)


def _order_groups(msg: _Message) -> list[_OrderGroup]:
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


def _order_status(orc: _Segment) -> str:
    """ORC-5 order status if given, else what ORC-1 (order control) implies."""
    control = orc.code(1)
    if control not in ORDER_CONTROLS:
        reason = "order control is empty" if not control else f"unknown order control {control!r}"
        raise MappingError(orc.where(1), reason)
    status = orc.code(5)
    if status and status not in ORDER_STATUSES:
        raise MappingError(orc.where(5), f"unknown order status {status!r}")
    return ORDER_STATUSES[status] if status else ORDER_CONTROLS[control]


def _timing(msg: _Message, tq1: _Segment) -> dict[str, Any] | None:
    """TQ1 -> Timing: repeat pattern (table 0335) and start/end."""
    timing: dict[str, Any] = {}
    repeat: dict[str, Any] = {}
    pattern = tq1.rep(3)
    code = pattern.code(1)
    if code:
        _, text, system_name = ([*pattern.subs(1), "", ""])[:3]
        system = code_system(system_name or "HL70335", msg.facility)
        timing["code"] = {"coding": [coding(code, text, system, tq1.where(3))]}
        frequency = conv.FREQUENCIES.get(code.upper())
        if frequency:
            repeat = conv.timing_repeat(frequency)
    bounds = _datetime_fields(msg, tq1, 7, "start") | _datetime_fields(msg, tq1, 8, "end")
    if bounds:
        repeat["boundsPeriod"] = bounds
    if repeat:
        timing["repeat"] = repeat
    return timing or None


def _dose(msg: _Message, rx: _Segment, f: _RxFields) -> dict[str, Any]:
    """Give amount (min, or min-max) with its units, and the rate for infusions."""
    units = rx.rep(f.units)
    unit = unit_fields(units.get(1), units.get(2), units.get(3), msg.facility, rx.where(f.units))
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
        rate = rx.rep(f.rate_units)
        rate_unit = unit_fields(
            rate.get(1), rate.get(2), rate.get(3), msg.facility, rx.where(f.rate_units)
        )
        dose["rateQuantity"] = quantity(rx.get(f.rate_amount), rate_unit, rx.where(f.rate_amount))
    return dose


def _dosage(msg: _Message, rx: _Segment, part: list[_Segment], f: _RxFields) -> dict[str, Any]:
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
    route = _concept(msg, rxr.rep(1), rxr.where(1), "HL70162") if rxr else None
    if route:
        dosage["route"] = route
    dose = _dose(msg, rx, f)
    if dose:
        dosage["doseAndRate"] = [dose]
    return dosage


def _medication_request(
    msg: _Message,
    orc: _Segment,
    rx: _Segment,
    part: list[_Segment],
    context: dict[str, Any],
) -> dict[str, Any]:
    """ORC + RXO (as requested) or ORC + RXE (as encoded) -> MedicationRequest."""
    f = RX_FIELDS[rx.name]
    medication = _concept(msg, rx.rep(f.code), rx.where(f.code))
    if medication is None:
        raise MappingError(rx.where(f.code), "medication code is empty")
    mr: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": msg.rid("MedicationRequest", rx),
    }
    ids = [_ei_identifier(msg, orc.rep(2), "PLAC"), _ei_identifier(msg, orc.rep(3), "FILL")]
    if f.prescription_number and rx.get(f.prescription_number):
        system = f"urn:medchain:prescription:{urn_part(msg.facility)}"
        ids.append({"system": system, "value": rx.get(f.prescription_number)})
    if any(ids):
        mr["identifier"] = [i for i in ids if i]
    mr["status"] = _order_status(orc)
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
    mr |= _datetime_fields(msg, orc, 9, "authoredOn")
    requester = _practitioner(msg, orc.rep(12)) if orc.reps(12) else None
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
        units = rx.rep(f.dispense_units)
        unit = unit_fields(
            units.get(1), units.get(2), units.get(3), msg.facility, rx.where(f.dispense_units)
        )
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


def _orders(msg: _Message) -> tuple[list[dict[str, Any]], SourcePatient]:
    """RDE^O11: per ORC group, a MedicationRequest for RXE (the pharmacy's encoding).

    When the group also has the prescriber's RXO, that becomes its own
    MedicationRequest (intent "order") and the RXE one is its filler-order,
    because the two may name different products (brand vs generic...).
    """
    patient, source = _patient(msg)
    encounters, context = _visit(msg, patient)
    context["subject"] = {"reference": f"Patient/{patient['id']}"}
    resources = [patient, *encounters]
    for group in _order_groups(msg):
        observations = [
            _observation(msg, obx, context["subject"], context, _trailing_notes(msg, obx))
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


Builder = Callable[[_Message], tuple[list[dict[str, Any]], SourcePatient]]
MESSAGE_TYPES: dict[tuple[str, str], tuple[str, Builder]] = {
    ("ADT", "A01"): (f"hl7v2-adt-a01/{MAPPER_VERSION}", _admission),
    ("ADT", "A08"): (f"hl7v2-adt-a08/{MAPPER_VERSION}", _admission),
    ("ORU", "R01"): (f"hl7v2-oru-r01/{MAPPER_VERSION}", _results),
    ("RDE", "O11"): (f"hl7v2-rde-o11/{MAPPER_VERSION}", _orders),
}


# ---- entry points --------------------------------------------------------------

_BOM = b"\xef\xbb\xbf"


def _decode(raw: bytes) -> str:
    """The message as text, in the character set MSH-18 names (UTF-8 when it names none)."""
    body = raw.lstrip(b"\x0b")
    body = body[len(_BOM) :] if body.startswith(_BOM) else body
    header = re.split(rb"[\r\n]", body, maxsplit=1)[0]
    if not header.startswith(b"MSH") or len(header) < 8:
        raise MappingError("MSH", "the message does not start with an MSH segment")
    fields = header.split(header[3:4])
    charset_field = fields[17] if len(fields) > 17 else b""
    charset = charset_field.split(header[5:6])[0].decode("ascii", "replace").strip()
    codec = CHARSETS.get(charset.upper())
    if codec is None:
        known = ", ".join(k for k in CHARSETS if k)
        raise MappingError("MSH-18", f"unknown character set {charset!r}; known: {known}")
    try:
        return body.decode(codec)
    except UnicodeDecodeError as e:
        named = f"is not valid {charset}" if charset else "is not UTF-8 and MSH-18 names no charset"
        raise MappingError("MSH-18", f"the message {named} (byte {e.start})") from None


def _parse(raw: bytes) -> tuple[list[_Segment], Any]:
    text = _LINE_ENDS.sub("\r", _decode(raw)).strip("\x0b\x1c\r")
    if not _MSH_HEADER.match(text):
        raise MappingError("MSH-2", "MSH does not start with a field separator and encoding chars")
    delimiters = text[3:8]  # field, component, repetition, escape, subcomponent
    if len(set(delimiters)) != len(delimiters):
        raise MappingError("MSH-2", f"delimiters {delimiters!r} are not all different")
    try:
        parsed = hl7.parse(text)
    except (hl7.exceptions.HL7Exception, IndexError) as e:
        raise MappingError("MSH", f"not an HL7 v2 message: {e}") from None
    escape = parsed.esc

    def unescape(value: str) -> str:
        if escape not in value:
            return value
        try:
            return str(parsed.unescape(value, TEXT_ESCAPES))
        except ValueError:
            raise MappingError("message", f"bad escape sequence in {value!r}") from None

    segments: list[_Segment] = []
    seen: dict[str, int] = {}
    for index, raw_segment in enumerate(parsed):
        name = str(raw_segment[0][0]) if len(raw_segment[0]) else ""
        if not _SEGMENT_ID.fullmatch(name):
            raise MappingError(f"segment {index + 1}", f"{name!r} is not a segment id")
        seen[name] = seen.get(name, 0) + 1
        segments.append(_Segment(raw_segment, unescape, index, seen[name]))
    return segments, parsed


def convert_message(raw: bytes) -> Conversion:
    """One HL7 v2 message -> FHIR R4 resources, all validated, or a MappingError."""
    segments, _ = _parse(raw)
    msh = segments[0]
    message_type = msh.rep(9)
    entry = MESSAGE_TYPES.get((message_type.code(1), message_type.code(2)))
    if entry is None:
        supported = ", ".join("^".join(k) for k in MESSAGE_TYPES)
        reason = f"message type {message_type.text()!r} is not supported; supported: {supported}"
        raise MappingError("MSH-9", reason)
    mapping_id, build = entry
    control_id = msh.get(10)
    if not control_id.strip():
        raise MappingError("MSH-10", "message control id is empty")
    facility = msh.get(4) or msh.get(3)
    if not facility.strip():
        raise MappingError("MSH-4", "sending facility and sending application are empty")
    offset = _parse_time(msh.get(7), "MSH-7").offset if msh.code(7) else None
    msg = _Message(segments, mapping_id, facility, (msh.get(3), msh.get(4), control_id), offset)
    resources, patient = build(msg)
    return Conversion(mapping_id, MAPPING_HASH, raw, patient, resources)


def split_messages(raw: bytes) -> list[bytes]:
    """The messages in a file (each starts with MSH), as their own bytes.

    Segment ends may be \\r, \\n or \\r\\n; MLLP framing bytes and blank lines
    between messages are dropped, each message keeps one final segment end.
    """
    body = raw[len(_BOM) :] if raw.startswith(_BOM) else raw
    starts = [m.start() for m in _MESSAGE_START.finditer(body)]
    if not starts:
        raise MappingError("MSH", "no HL7 v2 message found (no segment starts with MSH)")
    if body[: starts[0]].strip(b" \t\r\n\x0b\x1c"):
        raise MappingError("line 1", "data before the first MSH segment")
    messages = []
    for start, end in zip(starts, [*starts[1:], len(body)], strict=True):
        chunk = body[start:end]
        content = chunk.rstrip(b"\r\n\x0b\x1c")
        tail = chunk[len(content) :].replace(b"\x0b", b"").replace(b"\x1c", b"")
        ending = b"\r\n" if tail.startswith(b"\r\n") else tail[:1]
        messages.append(content + ending)
    return messages
