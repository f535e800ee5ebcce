"""What a custodian indexes from each stored FHIR resource, for FHIR search.

The edge answers `GET /fhir/<type>?...` from its own index (the chain holds no
clinical codes or dates); each hit is then authorised and audited on chain
before it is served. The values of every search parameter the specification
defines for the type come from fhir/search_params.py (its SearchParameter
expressions); `codes` and `date` are the older summary columns (the exam a
record attests, and the default newest-first order).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from medchain.fhir.search_params import SERVED_TYPES, IndexValue, index_values

SEARCHABLE = SERVED_TYPES

# resource type -> (paths to CodeableConcepts or lists of them, paths to its date, in order)
_CODE_PATHS: dict[str, tuple[str, ...]] = {
    "Observation": ("code",),
    "DiagnosticReport": ("code",),
    "MedicationRequest": ("medicationCodeableConcept",),
    "ImagingStudy": ("procedureCode", "series.modality"),
    "Encounter": ("type", "class"),
    "Patient": (),
}
_DATE_PATHS: dict[str, tuple[str, ...]] = {
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "MedicationRequest": ("authoredOn",),
    "ImagingStudy": ("started",),
    "Encounter": ("period.start",),
    "Patient": ("birthDate",),
}


@dataclass(frozen=True)
class IndexEntry:
    """What the edge's search index keeps of a record: type, codes and date, no values."""

    resource_type: str
    codes: tuple[tuple[str, str], ...]  # (system, code)
    date: str | None  # ISO 8601 as written (sorts correctly at equal precision)
    values: tuple[IndexValue, ...] = ()  # every search parameter's values


def _values(node: Any, path: str) -> list[Any]:
    """Every value at a dotted path, descending through lists."""
    current = [node]
    for part in path.split("."):
        nxt: list[Any] = []
        for item in current:
            value = item.get(part) if isinstance(item, dict) else None
            if isinstance(value, list):
                nxt.extend(value)
            elif value is not None:
                nxt.append(value)
        current = nxt
    return current


def _codings(concept: Any) -> list[tuple[str, str]]:
    if not isinstance(concept, dict):
        return []
    codings = concept.get("coding", [concept] if "code" in concept else [])
    return [
        (str(c.get("system", "")), str(c["code"]))
        for c in codings
        if isinstance(c, dict) and c.get("code")
    ]


def index_entry(resource: dict[str, Any]) -> IndexEntry | None:
    """The index entry of a searchable resource; None for other types."""
    rtype = resource.get("resourceType")
    if rtype not in SEARCHABLE:
        return None
    code_paths, date_paths = _CODE_PATHS.get(rtype, ()), _DATE_PATHS.get(rtype, ())
    codes = sorted({c for path in code_paths for v in _values(resource, path) for c in _codings(v)})
    date = next((str(v) for path in date_paths for v in _values(resource, path)), None)
    return IndexEntry(rtype, tuple(codes), date, index_values(resource))


def nested_types(resource: dict[str, Any]) -> frozenset[str]:
    """The resourceType of every resource nested anywhere inside this one (contained
    resources, bundle entries, parameters), not counting the resource itself."""
    found: set[str] = set()
    stack: list[Any] = list(resource.values())
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("resourceType"), str):
                found.add(node["resourceType"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return frozenset(found)


# Exams other hospitals may recognise: what was done (first coding) and when.
_EXAM_PATHS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ImagingStudy": (("procedureCode", "series.modality"), ("started",)),
    "DiagnosticReport": (("code",), ("effectiveDateTime", "effectivePeriod.start", "issued")),
}


def exam_of(resource: dict[str, Any]) -> tuple[str, int] | None:
    """(`system|code`, performed time in ms) of an imaging study or report, if it says both."""
    paths = _EXAM_PATHS.get(str(resource.get("resourceType")))
    if paths is None:
        return None
    code_paths, date_paths = paths
    codes = [c for path in code_paths for v in _values(resource, path) for c in _codings(v)]
    when = next((str(v) for path in date_paths for v in _values(resource, path)), None)
    if not codes or not codes[0][0] or when is None:
        return None
    try:
        moment = datetime.fromisoformat(when)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    system, code = codes[0]
    return f"{system}|{code}", int(moment.timestamp() * 1000)
