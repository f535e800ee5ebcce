"""FHIR R4 search parameters: what each served type is searched by, the values a
resource yields for them, and how a search value is read.

The definitions are the specification's SearchParameter resources (code, base,
type, FHIRPath expression, target), kept in search_parameters.json; the values
are what `fhirpathpy` gives for the expression on the resource, so the index
follows the specification instead of hand-written paths. fhirpathpy has no
`resolve()`: `X.where(resolve() is Patient)` is evaluated as `X` kept to
references whose type is Patient, which is what it means for local references.
FHIRPath's `as` takes one item, yet R4 applies it to repeating elements (e.g.
`(Goal.target.due as date)`, two targets): it is evaluated as `ofType`, which
gives the same for one item and every match for several (as R5 writes them).

Most expressions are plain paths (`Observation.code`, `Goal.target.due`, a
choice like `Observation.effective`, ending perhaps in `ofType(T)`). Those are
compiled into a direct walk over the JSON (`_path_walker`) that follows the
same R4 model tables fhirpathpy follows (choice types, element types), at a
tenth of its cost: an import extracts these values for every resource, and
fhirpathpy cost about as much as validating it. Anything else goes to
fhirpathpy. tests/test_search_params_compiled.py checks both give the same
values on every FHIR resource under tests/data.

Dates are kept as ranges [low, high) in microseconds since the epoch (UTC): a
date, a partial date, a dateTime or a Period each cover a range, and the FHIR
prefixes compare ranges (see DATE_PREFIXES). A dateTime written without a zone
is read as UTC (the specification leaves it to the server).
"""

from __future__ import annotations

import json
import re
import unicodedata
from calendar import monthrange
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import Any

from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.models import models

from medchain import crypto
from medchain.exceptions import MedChainError

# Every type the edge stores and serves with search (consent/model.py CLINICAL,
# less Bundle and Binary: those are served as records through exchange sessions).
SERVED_TYPES = (
    "Patient",
    "Encounter",
    "Observation",
    "DiagnosticReport",
    "MedicationRequest",
    "ImagingStudy",
    "Condition",
    "Procedure",
    "AllergyIntolerance",
    "Immunization",
    "DocumentReference",
    "ServiceRequest",
    "CarePlan",
    "CareTeam",
    "Goal",
    "MedicationAdministration",
)
SUPPORTED_TYPES = ("token", "reference", "date", "string", "quantity")
QUANTITY_SCALE = 10**6  # quantities are kept as integers of millionths
MAX_QUANTITY = 10**12  # larger magnitudes are not indexed (they would not fit)
MIN_US, MAX_US = -(2**62), 2**62  # open ends of a Period
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_RESOLVE_IS = re.compile(r"^(.*)\.where\(resolve\(\) is (\w+)\)$")
_AS_OPERATOR = re.compile(r"^\((.+) as (\w+)\)$")
_AS_FUNCTION = re.compile(r"\.as\((\w+)\)")
_PLAIN_PATH = re.compile(r"^([A-Z][A-Za-z]*)((?:\.[a-z][A-Za-z]*)+)(?:\.ofType\(([A-Za-z]+)\))?$")
_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BadSearchValue(MedChainError, ValueError):
    """A search value that cannot be read as its parameter's type; the message says why."""


@dataclass(frozen=True)
class SearchParam:
    """One search parameter of one resource type, with its compiled expression."""

    code: str
    type: str
    expression: str
    target: tuple[str, ...]
    evaluate: Callable[[dict[str, Any]], list[Any]]
    id: str = ""  # the SearchParameter's id in the specification (e.g. clinical-patient)


@dataclass(frozen=True)
class IndexValue:
    """One value a resource has for a search parameter, as the index keeps it:
    token (system, code); reference ("", "Type/id"); string (the text, its
    folded form); date ("", "", low, high); quantity (system, code or unit,
    value, value) in millionths."""

    param: str
    system: str
    value: str
    low: int = 0
    high: int = 0


def _definitions() -> list[dict[str, Any]]:
    text = resources.files("medchain.fhir").joinpath("search_parameters.json").read_text()
    params: list[dict[str, Any]] = json.loads(text)["parameters"]
    return params


# Raise when what index_values extracts changes without the definitions changing.
EXTRACTION_VERSION = 1


@cache
def index_format() -> int:
    """A number naming the parameters and extraction an index is built with: the
    SM3 of the definitions file and EXTRACTION_VERSION, cut to 7 bytes. An edge
    whose vault was indexed under another rebuilds its index (edge/fhir_reads.py)."""
    text = resources.files("medchain.fhir").joinpath("search_parameters.json").read_bytes()
    digest = crypto.sm3(text + EXTRACTION_VERSION.to_bytes(4, "big"))
    return int.from_bytes(digest[:7], "big")


def _parts_for(expression: str, base: str) -> list[str]:
    """The union members of a multi-base expression that apply to `base`."""
    parts = [p.strip() for p in expression.split(" | ")]
    return [p for p in parts if re.match(rf"^\(?{base}\.", p)]


# A node of a path walk: a JSON value and its FHIR path or type (as fhirpathpy names it).
_Node = tuple[Any, str]


@cache
def _member(path: str, key: str) -> tuple[tuple[str, str], ...]:
    """(JSON key, the child's path or type) pairs that `key` of an element at `path`
    may be written as, tried in order: one per choice type for a choice element
    (`effective` -> effectiveDateTime, effectivePeriod, ...), else `key` itself.
    The same lookups as fhirpathpy's member invocation over the R4 model."""
    model = models["r4"]
    child = f"{path}.{key}"
    child = model["pathsDefinedElsewhere"].get(child, child)
    choices = model["choiceTypePaths"].get(child)
    if choices:
        return tuple(
            (f"{key}{kind}", model["path2Type"].get(child + kind, child + kind)) for kind in choices
        )
    child = "Extension" if key == "extension" else child
    return ((key, model["path2Type"].get(child, child)),)


def _children(node: _Node, key: str, out: list[_Node]) -> None:
    data, path = node
    if not isinstance(data, dict):
        return
    for field, child in _member(path, key):
        value, extra = data.get(field), data.get(f"_{field}")
        if value is None and extra is None:
            continue
        for item in (value, extra):  # a primitive's `_field` (its extensions) too
            if item is None or item == []:
                continue
            for x in item if isinstance(item, list) else [item]:
                kind = x.get("resourceType") if isinstance(x, dict) else None
                out.append((x, kind if isinstance(kind, str) else child))
        return  # the first choice type present is the one


def _is_type(node: _Node, wanted: str) -> bool:
    """fhirpathpy's `ofType` under the R4 model: the node's type or one of its parents."""
    model = models["r4"]
    kind: str | None = node[1] if "." not in node[1] else "BackboneElement"
    while kind:
        if kind == wanted:
            return True
        kind = model["type2Parent"].get(kind) or model["path2Type"].get(kind)
    return False


def _path_walker(expression: str) -> Callable[[dict[str, Any]], list[Any]] | None:
    """A direct evaluator of a plain path expression (`Type.a.b`, perhaps ending in
    `.ofType(T)`), or None for any other expression (fhirpathpy evaluates those)."""
    match = _PLAIN_PATH.match(expression)
    if match is None:
        return None
    root, keys, wanted = match.group(1), match.group(2).split(".")[1:], match.group(3)

    def walk(resource: dict[str, Any]) -> list[Any]:
        if resource.get("resourceType") != root:
            return []
        nodes: list[_Node] = [(resource, root)]
        for key in keys:
            found: list[_Node] = []
            for node in nodes:
                _children(node, key, found)
            nodes = found
        if wanted is not None:
            nodes = [node for node in nodes if _is_type(node, wanted)]
        return [data for data, _ in nodes]

    return walk


def _compiled(parts: list[str], direct: bool = True) -> Callable[[dict[str, Any]], list[Any]]:
    """An evaluator of a union of expressions; `direct`: plain paths walked directly
    (_path_walker) instead of by fhirpathpy."""
    model = models["r4"]
    steps: list[tuple[Callable[..., list[Any]], str | None]] = []
    for part in parts:
        match = _RESOLVE_IS.match(part)
        expression, only = (match.group(1), match.group(2)) if match else (part, None)
        expression = _AS_OPERATOR.sub(r"\1.ofType(\2)", expression)
        expression = _AS_FUNCTION.sub(r".ofType(\1)", expression)
        walker = _path_walker(expression) if direct else None
        steps.append((walker or compile_fhirpath(expression, model), only))

    def evaluate(resource: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        for step, only in steps:
            try:
                values = step(resource)
            except ValueError:  # fhirpathpy's refusal of an odd shape: index the rest
                continue
            for value in values:
                if only is None or reference_type(value) == only:
                    out.append(value)
        return out

    return evaluate


@cache
def params_of(resource_type: str, direct: bool = True) -> dict[str, SearchParam]:
    """The search parameters of a served type, by code (empty for other types);
    `direct=False`: every expression evaluated by fhirpathpy (to check the walker)."""
    found: dict[str, SearchParam] = {}
    if resource_type not in SERVED_TYPES:
        return found
    for d in _definitions():
        if resource_type not in d["base"] or d["type"] not in SUPPORTED_TYPES:
            continue
        parts = _parts_for(d["expression"], resource_type)
        found[d["code"]] = SearchParam(
            d["code"],
            d["type"],
            " | ".join(parts),
            tuple(d.get("target", ())),
            _compiled(parts, direct),
            d["id"],
        )
    return found


def reference_type(value: Any) -> str | None:
    """The resource type a Reference points at (`type`, or its `Type/id`), if it says."""
    if not isinstance(value, dict):
        return None
    ref = value.get("reference")
    if isinstance(ref, str) and "/" in ref and not ref.startswith(("urn:", "#")):
        return ref.rstrip("/").split("/")[-2]
    kind = value.get("type")
    return kind if isinstance(kind, str) else None


def normal_reference(ref: str) -> str:
    """`Type/id` of a literal reference (absolute URLs and `_history` cut off)."""
    ref = ref.split("/_history/", 1)[0].rstrip("/")
    parts = ref.split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else ref


def fold(text: str) -> str:
    """Text as string search compares it: case and accents ignored."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _tokens(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, bool):
        return [("", "true" if value else "false")]
    if isinstance(value, str):
        return [("", value)]
    if not isinstance(value, dict):
        return []
    if isinstance(value.get("coding"), list):
        return [t for c in value["coding"] for t in _tokens(c)]
    code = value.get("code", value.get("value"))
    if isinstance(code, str):
        return [(str(value.get("system", "")), code)]
    return []


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    out: list[str] = []
    for key in ("text", "family", "given", "prefix", "suffix", "line", "city", "state"):
        item = value.get(key)
        items = [item] if isinstance(item, str) else item if isinstance(item, list) else []
        out.extend(i for i in items if isinstance(i, str))
    return out


def _dates(value: Any) -> list[tuple[int, int]]:
    if isinstance(value, str):
        try:
            return [date_range(value)]
        except BadSearchValue:
            return []  # a string choice (e.g. onsetString) is no date
    if isinstance(value, dict) and ("start" in value or "end" in value):
        low = date_range(value["start"])[0] if isinstance(value.get("start"), str) else MIN_US
        high = date_range(value["end"])[1] if isinstance(value.get("end"), str) else MAX_US
        return [(low, high)]
    return []


def index_values(resource: dict[str, Any], direct: bool = True) -> tuple[IndexValue, ...]:
    """Every (parameter, value) of a served resource, from the specification's
    expressions (`direct=False`: all by fhirpathpy, as params_of)."""
    out: set[IndexValue] = set()
    for code, param in params_of(str(resource.get("resourceType")), direct).items():
        for value in param.evaluate(resource):
            if param.type == "token":
                out.update(IndexValue(code, s, c) for s, c in _tokens(value))
            elif param.type == "reference":
                ref = value.get("reference") if isinstance(value, dict) else None
                if isinstance(ref, str) and not ref.startswith(("#", "urn:")):
                    out.add(IndexValue(code, "", normal_reference(ref)))
            elif param.type == "string":
                out.update(IndexValue(code, s, fold(s)) for s in _strings(value))
            elif param.type == "date":
                out.update(IndexValue(code, "", "", low, high) for low, high in _dates(value))
            elif param.type == "quantity":
                out.update(_quantities(code, value))
    return tuple(sorted(out, key=lambda v: (v.param, v.system, v.value, v.low, v.high)))


def _quantities(code: str, value: Any) -> list[IndexValue]:
    """A Quantity's index rows: under its system and code, and under its unit."""
    if not isinstance(value, dict) or isinstance(value.get("value"), bool):
        return []
    try:
        amount = scaled(Decimal(str(value["value"])))
    except (KeyError, InvalidOperation, BadSearchValue):
        return []
    system, unit_code, unit = (str(value.get(k, "")) for k in ("system", "code", "unit"))
    rows = [IndexValue(code, system, unit_code, amount, amount)]
    if unit and unit != unit_code:
        rows.append(IndexValue(code, "", unit, amount, amount))
    return rows


def scaled(amount: Decimal) -> int:
    """A decimal in millionths (rounded down), BadSearchValue if too large to index."""
    if not amount.is_finite() or abs(amount) > MAX_QUANTITY:
        raise BadSearchValue(f"{amount} is out of the range searched here")
    return int((amount * QUANTITY_SCALE).to_integral_value(rounding=ROUND_FLOOR))


def quantity_range(text: str) -> tuple[int, int, int]:
    """(value, low, high) in millionths of a search number: [low, high) is the range
    its precision implies (`5.4` is [5.35, 5.45), `1e2` [50, 150)), for eq and ne."""
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise BadSearchValue(f"{text!r} is not a number") from None
    if not amount.is_finite() or not re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text):
        raise BadSearchValue(f"{text!r} is not a number")
    exponent = int(amount.as_tuple().exponent)
    if amount.adjusted() > 12 or not -30 <= exponent <= 12:
        # checked before any arithmetic: 1e99999999 would overflow the decimal context
        raise BadSearchValue(f"{text!r} is out of the range searched here")
    half = Decimal(5).scaleb(exponent - 1)
    return scaled(amount), scaled(amount - half), scaled(amount + half)


def quantity_condition(prefix: str, value: int, low: int, high: int) -> tuple[str, list[int]]:
    """SQL over a quantity's column `v.low` for a prefix: eq within the precision
    range [low, high) of the search number, ne outside it, gt/lt/ge/le/sa/eb compare
    with the number itself, ap within 10% of it."""
    spread = abs(value) // 10
    conditions: dict[str, tuple[str, list[int]]] = {
        "eq": ("(v.low >= ? AND v.low < ?)", [low, high]),
        "ne": ("NOT (v.low >= ? AND v.low < ?)", [low, high]),
        "gt": ("v.low > ?", [value]),
        "lt": ("v.low < ?", [value]),
        "ge": ("v.low >= ?", [value]),
        "le": ("v.low <= ?", [value]),
        "sa": ("v.low > ?", [value]),
        "eb": ("v.low < ?", [value]),
        "ap": ("(v.low >= ? AND v.low <= ?)", [value - spread, value + spread]),
    }
    return conditions[prefix]


def _us(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def date_range(text: str) -> tuple[int, int]:
    """The range [low, high) in µs (UTC) a FHIR date, dateTime or instant covers at the
    precision it is written to: `2013` is that year, `2013-04-02T10:00:00+01:00` that
    second. BadSearchValue for anything else."""
    m = _DATE.match(text)
    if m is None:
        raise BadSearchValue(f"{text!r} is not a FHIR date (YYYY[-MM[-DD[Thh:mm[:ss]][zone]]])")
    g = m.groupdict()
    year, month, day = int(g["y"]), int(g["mo"] or 1), int(g["d"] or 1)
    try:
        if g["h"] is None:
            start = datetime(year, month, day, tzinfo=UTC)
            if g["d"] is not None:
                return _us(start), _us(start + timedelta(days=1))
            if g["mo"] is not None:
                days = monthrange(year, month)[1]
                return _us(start), _us(start + timedelta(days=days))
            return _us(start), _us(datetime(year + 1, 1, 1, tzinfo=UTC))
        zone = _zone(g["tz"])
        fraction = g["f"] or ""
        start = datetime(year, month, day, int(g["h"]), int(g["mi"]), int(g["s"] or 0), tzinfo=zone)
    except ValueError as e:
        raise BadSearchValue(f"{text!r} is not a valid date: {e}") from None
    low = _us(start) + (int(fraction.ljust(6, "0")[:6]) if fraction else 0)
    if g["s"] is None:
        width = 60_000_000
    elif not fraction:
        width = 1_000_000
    else:
        width = max(1, 10 ** (6 - len(fraction))) if len(fraction) <= 6 else 1
    return low, low + width


def _zone(text: str | None) -> tzinfo:
    """The zone of `Z`, `+hh:mm` or `-hh:mm` (UTC when absent): what strptime's %z
    reads, without its cost (an import reads a zone in most resources)."""
    if text is None or text == "Z":
        return UTC
    hours, minutes = int(text[1:3]), int(text[4:6])
    if minutes > 59:
        raise ValueError(f"minutes {minutes} out of range")
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if text[0] == "-" else offset)


def split_prefix(value: str) -> tuple[str, str]:
    """(prefix, rest) of a date search value; `eq` when it names none."""
    if len(value) > 2 and value[:2] in DATE_PREFIXES and not value[:2].isdigit():
        return value[:2], value[2:]
    return "eq", value


def fix_zone(value: str) -> str:
    """A zone sign `+` that reached us as a space (an unencoded `+` in a query string)."""
    return re.sub(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:\d{2})$", r"\1+\2", value)


def date_condition(prefix: str, low: int, high: int) -> tuple[str, list[int]]:
    """SQL over a value's range columns `v.low`, `v.high` for a prefix and the search
    range [low, high), by the specification's rules (3.1.1.4.2 of R4 search):
    eq the search range contains the value's; ne not that; gt/lt the value's range
    reaches above/below the search range; ge/le those or eq; sa/eb the value's range
    starts after/ends before the search range; ap the value's range overlaps the
    search range widened by its own width on each side (the specification leaves
    the width to the server; this one needs no clock, so answers do not drift)."""
    eq = "(v.low >= ? AND v.high <= ?)"
    conditions: dict[str, tuple[str, list[int]]] = {
        "eq": (eq, [low, high]),
        "ne": (f"NOT {eq}", [low, high]),
        "gt": ("v.high > ?", [high]),
        "lt": ("v.low < ?", [low]),
        "ge": (f"(v.high > ? OR {eq})", [high, low, high]),
        "le": (f"(v.low < ? OR {eq})", [low, low, high]),
        "sa": ("v.low >= ?", [high]),
        "eb": ("v.high <= ?", [low]),
        "ap": ("(v.low < ? AND v.high > ?)", [high + (high - low), low - (high - low)]),
    }
    return conditions[prefix]
