"""Strict FHIR JSON: every value of the JSON type FHIR's JSON format gives its
element, and every required binding holding a code of its value set.

fhir.resources validates with pydantic in lax mode, so it turns "36.5" into a
decimal, "yes" into true and "2" into an integer, and it knows no value set
("FINAL" passes as Observation.status). pydantic's `strict=True` does not help:
fhir_core validates nested elements with their own calls, which drop the flag.
So this module walks the raw JSON once, guided by the element types the
fhir.resources models declare, before the models see it. Each problem is an
(element path, message) pair, ready for an OperationOutcome issue's expression
and diagnostics.
"""

from __future__ import annotations

import re
import types
import typing
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import FhirBase, FhirElementOrResourceBase

from medchain.fhir.bindings import REQUIRED_BINDINGS, ValueSet

MAX_ISSUES = 20

# FHIR R4 regexes of the date and time primitives (datatypes.html#primitive).
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_MONTH, _DAY = r"(0[1-9]|1[0-2])", r"(0[1-9]|[1-2][0-9]|3[0-1])"
PATTERNS: dict[str, re.Pattern[str]] = {
    "date": re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY})?)?"),
    "dateTime": re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY}(T{_TIME}{_ZONE})?)?)?"),
    "instant": re.compile(rf"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_ZONE}"),
    "time": re.compile(_TIME),
}
INTEGERS = frozenset({"integer", "unsignedInt", "positiveInt", "integer64"})


@dataclass(frozen=True)
class Element:
    """What the models declare for one JSON property: a primitive (its FHIR type
    name) or a complex type (its model class), single or repeating."""

    repeats: bool
    primitive: str | None
    model: Any = None
    any_resource: bool = False


def check_resource(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, message) for each value of the wrong JSON type or outside its required
    value set, at most MAX_ISSUES; empty if the resource is strict FHIR JSON.
    An unknown resourceType is left to the model lookup that follows."""
    resource_type = resource.get("resourceType")
    issues: list[tuple[str, str]] = []
    try:
        model = get_fhir_model_class(resource_type)
    except (ValueError, KeyError, TypeError):
        return issues
    _walk(resource, model, str(resource_type), issues)
    return issues[:MAX_ISSUES]


def prepare(resource_types: Iterable[str]) -> int:
    """Build now, not on the first resource that needs them, the element tables and
    required-binding lookups of these resource types and of every complex type they
    reach (a server calls this at start: the first import would otherwise pay ~0.5 s
    for them). How many model classes it prepared."""
    resolved_bindings()
    seen: set[Any] = set()
    todo = [get_fhir_model_class(name) for name in resource_types]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        _bindings(model)
        todo += [e.model for e in _elements(model).values() if e.model is not None]
    return len(seen)


def _walk(obj: dict[str, Any], model: Any, path: str, issues: list[tuple[str, str]]) -> None:
    elements = _elements(model)
    bindings = _bindings(model)
    for key, value in obj.items():
        element = elements.get(key)
        if element is None or value is None:
            continue  # unknown properties and nulls: the model refuses those itself
        where = f"{path}.{key}"
        binding = bindings.get(key)
        if element.repeats:
            if not isinstance(value, list):
                issues.append((where, f"expected a JSON array, got {_json_kind(value)}"))
                continue
            for i, item in enumerate(value):
                if item is not None:
                    _check_value(item, element, binding, f"{where}[{i}]", issues)
        elif isinstance(value, list):
            issues.append((where, "expected a single value, got a JSON array"))
        else:
            _check_value(value, element, binding, where, issues)
        if len(issues) >= MAX_ISSUES:
            return


def _check_value(
    value: Any,
    element: Element,
    binding: ValueSet | None,
    where: str,
    issues: list[tuple[str, str]],
) -> None:
    if element.primitive is not None:
        problem = _primitive_problem(value, element.primitive)
        if problem is None and binding is not None and value not in binding.codes:
            problem = f"{value!r} is not a code of the required value set {binding.url}"
        if problem is not None:
            issues.append((where, problem))
        return
    if not isinstance(value, dict):
        issues.append((where, f"expected a JSON object, got {_json_kind(value)}"))
        return
    model = element.model
    if element.any_resource and "resourceType" in value:
        try:
            model = get_fhir_model_class(value["resourceType"])
        except (ValueError, KeyError, TypeError):
            return  # the model names the unknown type
    _walk(value, model, where, issues)
    if binding is not None:
        problem = _concept_problem(value, binding)
        if problem is not None:
            issues.append((where, problem))


def _primitive_problem(value: Any, fhir_type: str) -> str | None:
    if fhir_type == "boolean":
        ok = isinstance(value, bool)
        expected = "a JSON boolean (true or false)"
    elif fhir_type in INTEGERS:
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "a JSON number without a fraction"
    elif fhir_type == "decimal":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        expected = "a JSON number"
    else:
        ok = isinstance(value, str)
        expected = "a JSON string"
        pattern = PATTERNS.get(fhir_type)
        if ok and pattern is not None and not pattern.fullmatch(value):
            return f"{value!r} is not a FHIR {fhir_type}"
    return None if ok else f"expected {expected}, got {_json_kind(value)}"


def _concept_problem(concept: dict[str, Any], binding: ValueSet) -> str | None:
    codings = concept.get("coding")
    ours = [
        c
        for c in (codings if isinstance(codings, list) else [])
        if isinstance(c, dict) and c.get("system") == binding.system
    ]
    if not ours:
        return f"needs a coding from {binding.system} (required value set {binding.url})"
    for coding in ours:
        if coding.get("code") not in binding.codes:
            return f"{coding.get('code')!r} is not a code of the required value set {binding.url}"
    return None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@cache
def _elements(model: Any) -> dict[str, Element]:
    """The JSON properties of a model class, by alias (fhir.resources names
    `class_` for `class`, `status__ext` for `_status`)."""
    return {
        field.alias or name: _element(field.annotation)
        for name, field in model.model_fields.items()
    }


def _element(annotation: Any) -> Element:
    inner, repeats = _strip_optional(annotation), False
    if typing.get_origin(inner) is list:
        inner, repeats = _strip_optional(typing.get_args(inner)[0]), True
    if isinstance(inner, type) and issubclass(inner, FhirBase):
        return Element(
            repeats, None, inner.get_model_klass(), issubclass(inner, FhirElementOrResourceBase)
        )
    return Element(repeats, _primitive_name(inner))


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _primitive_name(annotation: Any) -> str:
    if annotation is bool:
        return "boolean"
    for marker in getattr(annotation, "__metadata__", ()):
        name = getattr(marker, "__visit_name__", None)
        if isinstance(name, str):
            return name
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if annotation is uuid.UUID:
        return "uuid"
    return "string"


@cache
def _bindings(model: Any) -> dict[str, ValueSet]:
    """The required bindings of a model class's properties, its base classes' included
    (Age is a Quantity)."""
    found: dict[str, ValueSet] = {}
    for (owner, alias), value_set in resolved_bindings().items():
        if issubclass(model, owner):
            found[alias] = value_set
    return found


@cache
def resolved_bindings() -> dict[tuple[Any, str], ValueSet]:
    """REQUIRED_BINDINGS keyed by (model class, JSON property); a path the models do
    not have is a KeyError, so a typo in the table cannot silently check nothing."""
    resolved: dict[tuple[Any, str], ValueSet] = {}
    for path, value_set in REQUIRED_BINDINGS.items():
        head, *steps, last = path.split(".")
        model = get_fhir_model_class(head)
        for step in steps:
            model = _elements(model)[step].model
        if last not in _elements(model):
            raise KeyError(f"required binding {path}: no such element in the models")
        resolved[(model, last)] = value_set
    return resolved
