"""What a HIS -> FHIR conversion produces, and the building blocks both converters share.

HL7 v2 messages and CSV exports name code systems, units, numbers, reference
ranges and abnormal flags in the same ways, so the tables that turn those into
FHIR R4 live here once. Everything is deterministic: the same input gives the
same resources, ids included, because their hashes go on chain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any
from urllib.parse import quote

import pydantic
from fhir.resources.R4B import get_fhir_model_class

from medchain.crypto import sm3
from medchain.exceptions import MedChainError
from medchain.fhir.strict import check_resource

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
V2_TABLE = "http://terminology.hl7.org/CodeSystem/v2-"
V2_IDENTIFIER_TYPE = V2_TABLE + "0203"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
GTS_ABBREVIATION = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
QUANTITY_PRECISION = "http://hl7.org/fhir/StructureDefinition/quantity-precision"
ORIGINAL_TEXT = "http://hl7.org/fhir/StructureDefinition/originalText"

# Coding-system names as HIS exports write them (HL7 table 0396 and common
# variants) -> FHIR system URI. Anything else is a local code system.
CODE_SYSTEMS: dict[str, str] = {
    "LN": LOINC,
    "LOINC": LOINC,
    "SCT": SNOMED,
    "SNM": SNOMED,
    "SNM3": SNOMED,
    "SNOMED": SNOMED,
    "SNOMEDCT": SNOMED,
    "SNOMED CT": SNOMED,
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CDX": "http://hl7.org/fhir/sid/icd-9-cm",
    "ICD9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "WC": "http://www.whocc.no/atc",
    "ATC": "http://www.whocc.no/atc",
    "UCUM": UCUM,
    "ISO3166_1": "urn:iso:std:iso:3166",
}
V2_TABLE_NAME = re.compile(r"HL7(\d{4})")

# HL7 v2 table 0078 abnormal flags -> v3 ObservationInterpretation (same codes).
INTERPRETATIONS: dict[str, str] = {
    "N": "Normal",
    "A": "Abnormal",
    "AA": "Critical abnormal",
    "H": "High",
    "HH": "Critical high",
    "HU": "Significantly high",
    "L": "Low",
    "LL": "Critical low",
    "LU": "Significantly low",
    "<": "Off scale low",
    ">": "Off scale high",
    "B": "Better",
    "W": "Worse",
    "U": "Significant change up",
    "D": "Significant change down",
    "I": "Intermediate",
    "R": "Resistant",
    "S": "Susceptible",
    "MS": "moderately susceptible",
    "VS": "very susceptible",
    "NS": "Non-susceptible",
    "SDD": "Susceptible-dose dependent",
    "POS": "Positive",
    "NEG": "Negative",
    "IND": "Indeterminate",
    "DET": "Detected",
    "ND": "Not detected",
    "E": "Equivocal",
    "AC": "Anti-complementary substances present",
    "QCF": "Quality control failure",
    "RR": "Reactive",
    "WR": "Weakly reactive",
    "NR": "Non-reactive",
    "TOX": "Cytotoxic substance present",
    "EX": "outside threshold",
    "HX": "above high threshold",
    "LX": "below low threshold",
}

OBSERVATION_STATUSES = frozenset(
    {"registered", "preliminary", "final", "amended", "corrected", "cancelled"}
    | {"entered-in-error", "unknown"}
)
MEDICATION_REQUEST_STATUSES = frozenset(
    {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft"}
    | {"unknown"}
)
GENDERS = frozenset({"male", "female", "other", "unknown"})


@dataclass(frozen=True)
class Frequency:
    """A dosing frequency: `frequency` times per `period` `unit`."""

    frequency: int
    period: int
    unit: str  # FHIR Timing.repeat.periodUnit (UCUM: h, d, wk)
    gts: str | None  # v3 GTSAbbreviation code where FHIR R4 defines one


# HL7 table 0335 / prescription abbreviations -> Timing.repeat.
FREQUENCIES: dict[str, Frequency] = {
    "QD": Frequency(1, 1, "d", "QD"),
    "BID": Frequency(2, 1, "d", "BID"),
    "TID": Frequency(3, 1, "d", "TID"),
    "QID": Frequency(4, 1, "d", "QID"),
    "QOD": Frequency(1, 2, "d", "QOD"),
    "AM": Frequency(1, 1, "d", "AM"),
    "PM": Frequency(1, 1, "d", "PM"),
    "QN": Frequency(1, 1, "d", None),
    "Q1H": Frequency(1, 1, "h", "Q1H"),
    "Q2H": Frequency(1, 2, "h", "Q2H"),
    "Q3H": Frequency(1, 3, "h", "Q3H"),
    "Q4H": Frequency(1, 4, "h", "Q4H"),
    "Q6H": Frequency(1, 6, "h", "Q6H"),
    "Q8H": Frequency(1, 8, "h", None),
    "Q12H": Frequency(1, 12, "h", None),
    "QW": Frequency(1, 1, "wk", None),
}


class MappingError(MedChainError, ValueError):
    """Input that cannot be mapped; says where and why."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


@dataclass(frozen=True)
class SourcePatient:
    """Who the resources are about, as the source system identifies them."""

    identifier: str
    system: str
    family: str | None
    given: str | None
    birth_date: str | None
    sex: str | None


@dataclass(frozen=True)
class Conversion:
    """One source unit (a message, a CSV row) and the FHIR resources made from it."""

    mapping_id: str
    mapping_hash: bytes
    input: bytes
    patient: SourcePatient
    resources: list[dict[str, Any]]


def resource_id(*parts: str) -> str:
    """A FHIR id that depends only on `parts` (length-prefixed, so parts cannot run together)."""
    data = b"".join(len(b).to_bytes(4, "big") + b for b in (p.encode() for p in parts))
    return sm3(data).hex()[:40]


def urn_part(text: str) -> str:
    """`text` made safe for one colon-separated part of a URN (reversible percent-encoding)."""
    return quote(text, safe="-._~")


def local_system(facility: str, name: str) -> str:
    """The system URI for codes only `facility` defines (e.g. its LIS item codes)."""
    return f"urn:medchain:local:{urn_part(facility)}:{urn_part(name or 'code')}"


def code_system(name: str, facility: str) -> str:
    """FHIR system URI for a coding-system name as written; unknown names stay local."""
    known = CODE_SYSTEMS.get(name.strip().upper())
    if known:
        return known
    table = V2_TABLE_NAME.fullmatch(name.strip().upper())
    if table:
        return V2_TABLE + table.group(1)
    if name.startswith(("http://", "https://", "urn:")):
        return name
    return local_system(facility, name)


_FHIR_CODE = re.compile(r"[^\s]+( [^\s]+)*")


def coding(code: str, display: str, system: str, where: str, version: str = "") -> dict[str, Any]:
    """A Coding with the code and display kept as written (the code must be a FHIR code)."""
    if not _FHIR_CODE.fullmatch(code):
        raise MappingError(where, f"code {code!r} has leading, trailing or repeated spaces")
    out: dict[str, Any] = {"system": system}
    if version:
        out["version"] = version
    out["code"] = code
    if display:
        out["display"] = display
    return out


# ---- numbers ---------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def is_number(text: str) -> bool:
    """Whether `text` is a plain decimal (sign, digits, one point) as HL7 NM allows."""
    return _NUMBER.fullmatch(text.strip()) is not None


def decimal_fields(text: str, where: str) -> dict[str, Any]:
    """{"value": n} for a decimal written in the source, keeping its precision.

    JSON numbers drop trailing zeros ("7.80" -> 7.8), so when that would lose
    the written precision the FHIR quantity-precision extension records it.
    """
    stripped = text.strip()
    if not _NUMBER.fullmatch(stripped):
        raise MappingError(where, f"{text!r} is not a number")
    exact = Decimal(stripped)
    places = -int(exact.as_tuple().exponent)
    if places <= 0:
        return {"value": int(exact)}
    value = float(exact)
    shown = Decimal(repr(value))
    if shown != exact:
        raise MappingError(where, f"{text!r} has more digits than a FHIR JSON number keeps")
    out: dict[str, Any] = {"value": value}
    if -int(shown.as_tuple().exponent) != places:
        out["_value"] = {"extension": [{"url": QUANTITY_PRECISION, "valueInteger": places}]}
    return out


def integer_value(text: str, where: str) -> int:
    """A non-negative whole number (counts such as refills)."""
    stripped = text.strip()
    if not stripped.isdigit():
        raise MappingError(where, f"{text!r} is not a whole number")
    return int(stripped)


# ---- units -----------------------------------------------------------------

_UCUM_PREFIXES = ("da", "Ki", "Mi", "Gi", "Ti", *"YZEPTGMkhdcmunpfazy")
_UCUM_METRIC = frozenset(
    str.split(
        "m s g rad K C cd mol sr Hz N Pa J W A V F Ohm S Wb Cel T H lm lx Bq Gy Sv l L ar t "
        "bar u eV B bit By Bd cal [iU] [IU] U eq osm kat g% m[Hg] m[H2O] Ci R"
    )
)
_UCUM_OTHER = frozenset(
    str.split(
        "10* 10^ % [ppth] [ppm] [ppb] min h d wk mo a [in_i] [ft_i] [lb_av] [oz_av] [degF] "
        "[pH] [drp] [arb'U] [HPF] [LPF] [CFU] [pfu] [BAU] [AU] [USP'U] [hnsf'U] [Lf] "
        "[tb'U] [APL'U] [GPL'U] [MPL'U] [beth'U] [knk'U] [todd'U] [smgy'U] [kp_C] deg"
    )
)
_UCUM_TERM = re.compile(r"(?P<base>.*?)(?P<exp>[+-]?\d+)?(?P<note>\{[^{}]*\})?")
_UCUM_SPLIT = re.compile(r"[./](?![^\[{]*[\]}])")
# Spellings common in Chinese LIS exports -> their UCUM form.
_UNIT_ALIASES = (("μ", "u"), ("µ", "u"), ("×10", "10"), ("x10", "10"), ("X10", "10"))
_BARE_IU = re.compile(r"(?<!\[)IU(?!\])")


def _ucum_atom(base: str) -> bool:
    if base in _UCUM_OTHER or base in _UCUM_METRIC:
        return True
    return any(base.startswith(p) and base[len(p) :] in _UCUM_METRIC for p in _UCUM_PREFIXES)


def _is_ucum(unit: str) -> bool:
    if not unit or (unit.isdigit() and unit != "1") or "(" in unit or " " in unit:
        return False
    terms = _UCUM_SPLIT.split(unit)
    if terms[0] == "" and unit.startswith("/"):
        terms = terms[1:]
    for term in terms:
        m = _UCUM_TERM.fullmatch(term)
        if m is None or not term:
            return False
        base = m.group("base")
        if base == "":
            if m.group("exp") is None and m.group("note") is None:
                return False
            continue
        if not _ucum_atom(base):
            return False
    return True


def ucum_code(unit: str) -> str | None:
    """The UCUM code for a unit as written, if it is (or plainly spells) one."""
    if _is_ucum(unit):
        return unit
    normal = unit
    for old, new in _UNIT_ALIASES:
        normal = normal.replace(old, new)
    normal = _BARE_IU.sub("[IU]", normal)
    return normal if normal != unit and _is_ucum(normal) else None


def unit_fields(
    code: str, text: str, system_name: str, facility: str, where: str
) -> dict[str, Any]:
    """Quantity unit/system/code for a unit as written (code, text, coding-system name).

    UCUM when the source says so or the unit parses as UCUM; a coded non-UCUM
    unit becomes a local code; a bare non-UCUM unit keeps only its text.
    """
    unit = text or code
    if not unit:
        return {}
    if code and not _FHIR_CODE.fullmatch(code):
        raise MappingError(where, f"unit code {code!r} has leading, trailing or repeated spaces")
    if system_name and code:
        return {"unit": unit, "system": code_system(system_name, facility), "code": code}
    ucum = ucum_code(code or text)
    if ucum is not None:
        return {"unit": unit, "system": UCUM, "code": ucum}
    if code and text and code != text:
        return {"unit": unit, "system": local_system(facility, "code"), "code": code}
    return {"unit": unit}


def quantity(number: str, unit: dict[str, Any], where: str) -> dict[str, Any]:
    """A Quantity from a written number and the unit fields of `unit_fields`."""
    return {**decimal_fields(number, where), **unit}


# ---- reference ranges, interpretations ---------------------------------------

_NUM = r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))"
_RANGE = re.compile(rf"\s*{_NUM}\s*(?:-{{1,2}}|_|~|～|－|—|to|至)\s*{_NUM}\s*")
_BOUND = re.compile(rf"\s*(<=|≤|＜=|>=|≥|＞=)\s*{_NUM}\s*")


def reference_range(text: str, unit: dict[str, Any], where: str) -> dict[str, Any] | None:
    """referenceRange from 'low-high', 'low_high', 'low to high', '<=x' or '>=x', text kept."""
    if not text.strip():
        return None
    out: dict[str, Any] = {}
    rng = _RANGE.fullmatch(text)
    bound = _BOUND.fullmatch(text)
    if rng:
        out["low"] = quantity(rng.group(1), unit, where)
        out["high"] = quantity(rng.group(2), unit, where)
    elif bound:
        side = "high" if bound.group(1) in ("<=", "≤", "＜=") else "low"
        out[side] = quantity(bound.group(2), unit, where)
    out["text"] = text
    return out


def interpretation(code: str, where: str) -> dict[str, Any]:
    """An abnormal flag (HL7 table 0078) as a v3 ObservationInterpretation concept."""
    display = INTERPRETATIONS.get(code)
    if display is None:
        raise MappingError(where, f"unknown abnormal flag {code!r}")
    return {"coding": [{"system": V3_INTERPRETATION, "code": code, "display": display}]}


def identifier_type(code: str) -> dict[str, Any]:
    """Identifier.type from an HL7 table 0203 code (MR, VN, PLAC, FILL...)."""
    return {"coding": [{"system": V2_IDENTIFIER_TYPE, "code": code}]}


def laboratory_category() -> dict[str, Any]:
    """The Observation category lab results carry, so FHIR searches by category find them."""
    return {
        "coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]
    }


def timing_repeat(frequency: Frequency) -> dict[str, Any]:
    """Timing.repeat for a named frequency, so systems that do not know the code still can."""
    return {
        "frequency": frequency.frequency,
        "period": frequency.period,
        "periodUnit": frequency.unit,
    }


def original_text(text: str) -> dict[str, Any]:
    """An `_element` extension keeping a source value that FHIR could only hold in part."""
    return {"extension": [{"url": ORIGINAL_TEXT, "valueString": text}]}


# ---- validation --------------------------------------------------------------


@cache
def _model(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


def validated(resource: dict[str, Any]) -> dict[str, Any]:
    """`resource` itself, once it is strict FHIR JSON and the fhir.resources R4B model
    accepts it."""
    resource_type = resource["resourceType"]
    issues = check_resource(resource)
    if issues:
        raise MappingError(*issues[0])
    try:
        _model(resource_type).model_validate(resource)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        where = ".".join([resource_type, *map(str, first["loc"])])
        raise MappingError(where, f"not valid FHIR R4: {first['msg']}") from None
    return resource
