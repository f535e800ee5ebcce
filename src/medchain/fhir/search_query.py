"""A FHIR search request read into a typed query, by the specification's rules.

Parameters are those of fhir/search_params.py for the type, plus `_id`,
`_lastUpdated`, `_sort`, `_include`, `_count` and the page offset `_offset`.
Repeating a parameter ANDs its values, a comma ORs them. A parameter or
modifier this edge does not support is refused (UnsupportedSearch) unless the
client asked for `Prefer: handling=lenient`, in which case it is left out of
the query and of the self link (`SearchQuery.ignored` names it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medchain.exceptions import MedChainError
from medchain.fhir.search_params import (
    BadSearchValue,
    date_range,
    fix_zone,
    fold,
    normal_reference,
    params_of,
    quantity_range,
    split_prefix,
)

DEFAULT_COUNT, MAX_COUNT = 50, 100
MAX_VALUES = 50  # comma-separated values of one parameter
MAX_PARAMETERS = 30  # parameters of one search
MAX_OFFSET = 1_000_000
DID_PREFIX = "did:"
PASSED_THROUGH = ("_format", "_pretty")  # answered by the app itself (errors.FhirErrors)
STRING_MODIFIERS = ("exact", "contains")


class BadSearch(MedChainError, ValueError):
    """A search the edge refuses (400); the message names the parameter and why."""


class UnsupportedSearch(BadSearch):
    """A parameter or modifier this edge does not support (ignored under lenient handling)."""


@dataclass(frozen=True)
class Criterion:
    """One parameter's test: any of its values (OR) must hold, by type: `tokens`
    (system or None for any, code); `texts`, `Type/id` references or folded strings
    (the text as given under the `exact` modifier); `dates` (prefix, low, high).
    Modifier `not` (tokens) inverts the test, resources without a value included;
    `missing` / `present` (from `:missing=true|false`) test only whether there is one."""

    code: str
    type: str
    modifier: str | None = None
    tokens: tuple[tuple[str | None, str], ...] = ()
    texts: tuple[str, ...] = ()
    dates: tuple[tuple[str, int, int], ...] = ()
    # quantity: (prefix, value, low, high, system or None for any, code or None for any)
    quantities: tuple[tuple[str, int, int, int, str | None, str | None], ...] = ()


@dataclass
class SearchQuery:
    """What a search asks for, with the pieces its links are built from."""

    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)  # ledger DIDs (patient/subject=did:...)
    ids: list[tuple[str, ...]] = field(default_factory=list)  # _id, each AND'd
    last_updated: list[tuple[tuple[str, int, int], ...]] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    include: list[str] = field(default_factory=list)  # reference params to Patient
    count: int = DEFAULT_COUNT
    offset: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)  # echoed in the self link
    ignored: list[str] = field(default_factory=list)


def _split(value: str) -> list[str]:
    parts = [p.replace("\\,", ",") for p in _split_unescaped(value)]
    if len(parts) > MAX_VALUES:
        raise BadSearch(f"at most {MAX_VALUES} comma-separated values per parameter")
    return parts


def _split_unescaped(value: str) -> list[str]:
    out, current, escaped = [], "", False
    for ch in value:
        if ch == "," and not escaped:
            out.append(current)
            current = ""
        else:
            current += ch
        escaped = ch == "\\" and not escaped
    return [*out, current]


def _dates(name: str, raw: str) -> tuple[tuple[str, int, int], ...]:
    out = []
    for part in _split(raw):
        prefix, text = split_prefix(fix_zone(part))
        try:
            low, high = date_range(text)
        except BadSearchValue as e:
            raise BadSearch(f"{name}: {e}") from None
        out.append((prefix, low, high))
    return tuple(out)


def _int(name: str, raw: str, low: int, high: int) -> int:
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise BadSearch(f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def parse_search(
    resource_type: str, items: list[tuple[str, str]], lenient: bool = False
) -> SearchQuery:
    """The query of `GET /fhir/<resource_type>?<items>`; BadSearch if it cannot be
    answered as asked (UnsupportedSearch for what this edge does not support, which
    lenient handling ignores instead)."""
    query = SearchQuery(resource_type)
    if len(items) > MAX_PARAMETERS:
        raise BadSearch(f"at most {MAX_PARAMETERS} parameters in one search")
    for name, raw in items:
        try:
            _apply(query, name, raw)
        except UnsupportedSearch:
            if not lenient:
                raise
            query.ignored.append(name)
            continue
        if name != "_offset" and name not in PASSED_THROUGH:
            query.kept.append((name, raw))
    return query


def _apply(query: SearchQuery, name: str, raw: str) -> None:
    if name in PASSED_THROUGH:
        return
    if name == "_count":
        query.count = min(_int(name, raw, 1, 10**6), MAX_COUNT)
    elif name == "_offset":
        query.offset = _int(name, raw, 0, MAX_OFFSET)
    elif name == "_id":
        query.ids.append(tuple(_split(raw)))
    elif name == "_lastUpdated":
        query.last_updated.append(_dates(name, raw))
    elif name == "_sort":
        query.sort = [_sort_key(query.resource_type, key) for key in _split(raw)]
    elif name == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise BadSearch("_total must be none, estimate or accurate")
        # every answer carries the accurate total, which each of these allows
    elif name == "_include":
        query.include.append(_include(query.resource_type, raw))
    else:
        _criterion(query, name, raw)


def _sort_key(resource_type: str, key: str) -> tuple[str, bool]:
    descending = key.startswith("-")
    code = key.removeprefix("-")
    param = params_of(resource_type).get(code)
    if code not in ("_id", "_lastUpdated") and (param is None or param.type != "date"):
        raise UnsupportedSearch(
            f"_sort: {code!r} is not sortable here (sort by _id, _lastUpdated or a date "
            f"parameter of {resource_type})"
        )
    return code, descending


def _include(resource_type: str, raw: str) -> str:
    parts = raw.split(":")
    if len(parts) not in (2, 3) or parts[0] != resource_type:
        raise UnsupportedSearch(f"_include={raw}: write it as {resource_type}:<parameter>")
    param = params_of(resource_type).get(parts[1])
    target = parts[2] if len(parts) == 3 else "Patient"
    if param is None or param.type != "reference" or target != "Patient":
        raise UnsupportedSearch(
            f"_include={raw}: only the patient is included here "
            f"({resource_type}:patient or {resource_type}:subject)"
        )
    if "Patient" not in param.target:
        raise UnsupportedSearch(f"_include={raw}: {parts[1]} does not point at a Patient")
    return parts[1]


def _criterion(query: SearchQuery, name: str, raw: str) -> None:
    code, _, modifier = name.partition(":")
    param = params_of(query.resource_type).get(code)
    if param is None:
        raise UnsupportedSearch(
            f"{code!r} is not a search parameter of {query.resource_type} here (see /fhir/metadata)"
        )
    mod = modifier or None
    if mod == "missing":
        if raw not in ("true", "false"):
            raise BadSearch(f"{name} must be true or false")
        query.criteria.append(
            Criterion(code, param.type, "missing" if raw == "true" else "present")
        )
    elif param.type == "token" and mod in (None, "not"):
        tokens = tuple(_token(v) for v in _split(raw))
        query.criteria.append(Criterion(code, "token", mod, tokens=tokens))
    elif param.type == "date" and mod is None:
        query.criteria.append(Criterion(code, "date", dates=_dates(code, raw)))
    elif param.type == "quantity" and mod is None:
        quantities = tuple(_quantity(code, v) for v in _split(raw))
        query.criteria.append(Criterion(code, "quantity", quantities=quantities))
    elif param.type == "string" and mod in (None, *STRING_MODIFIERS):
        texts = tuple(v if mod == "exact" else fold(v) for v in _split(raw))
        query.criteria.append(Criterion(code, "string", mod, texts=texts))
    elif param.type == "reference" and (mod is None or mod in param.target):
        _reference(query, code, mod, param.target, _split(raw))
    else:
        raise UnsupportedSearch(f"{name}: modifier {modifier!r} is not supported here")


def _reference(
    query: SearchQuery, code: str, mod: str | None, targets: tuple[str, ...], values: list[str]
) -> None:
    dids = [v.removeprefix("Patient/") for v in values]
    by_did = all(d.startswith(DID_PREFIX) for d in dids)
    if by_did and "Patient" in targets and mod in (None, "Patient"):
        if len(set(dids)) > 1:
            raise BadSearch(f"{code}: name one patient by ledger DID at a time")
        query.owners.append(dids[0])
        return
    refs: list[str] = []
    for value in values:
        if value.startswith(DID_PREFIX) or "/did:" in value:
            raise BadSearch(f"{code}: mix no ledger DIDs with other references")
        if "/" in value:
            ref = normal_reference(value)
            if mod is not None and not ref.startswith(f"{mod}/"):
                raise BadSearch(f"{code}:{mod}={value} names another type")
            refs.append(ref)
        else:
            refs.extend(f"{t}/{value}" for t in ([mod] if mod else targets))
    if not refs or any(not r.split("/")[-1] for r in refs):
        raise BadSearch(f"{code}: an empty reference")
    query.criteria.append(Criterion(code, "reference", texts=tuple(refs)))


def _quantity(name: str, value: str) -> tuple[str, int, int, int, str | None, str | None]:
    """`[prefix]number[|system|code]`; `number||unit` matches a code or unit, any system."""
    number, *unit = value.split("|")
    if len(unit) not in (0, 2):
        raise BadSearch(f"{name}: write a quantity as [prefix]number[|system|code]")
    prefix, text = split_prefix(number)
    try:
        amount, low, high = quantity_range(text)
    except BadSearchValue as e:
        raise BadSearch(f"{name}: {e}") from None
    system = unit[0] or None if unit else None
    code = unit[1] or None if unit else None
    return prefix, amount, low, high, system, code


def _token(value: str) -> tuple[str | None, str]:
    """`system|code`, `|code` (no system), `system|` (any code of it) or `code` (any system)."""
    if "|" in value:
        system, code = value.split("|", 1)
        return system, code
    return None, value
