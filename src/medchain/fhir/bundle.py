"""Reading FHIR files for import: bundles, single resources, NDJSON; grouping
resources by patient; giving each resource its ledger record id.

A Synthea bundle is a `transaction` whose entries refer to each other by
`urn:uuid:` fullUrls; an NDJSON export refers by `Type/id`. Import keeps the
resources about a patient (the Patient itself and everything whose
subject/patient points at it), gives each a record id, and rewrites the
references between them to `Type/<record id>` so they still resolve on the
custodian's FHIR API. Resources about nobody (Organization, Practitioner) are
not patient records and are reported as skipped; references to them (and
conditional ones, `Practitioner?identifier=system|value`) become logical
references (type, identifier, display) instead of dangling (logical_reference).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from medchain.fhir.validate import InvalidFhir

PATIENT_REFS = ("subject", "patient", "beneficiary")


@dataclass
class PatientGroup:
    """Everything in a file about one patient."""

    key: str  # the source Patient's id (or the referenced id if the Patient is absent)
    patient: dict[str, Any] | None
    resources: list[dict[str, Any]] = field(default_factory=list)
    # "Type/id" -> the resource, for every resource of the file (see logical_reference)
    described: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ReadResult:
    """What a file held: resources grouped per patient, and what was skipped and why."""

    groups: list[PatientGroup]
    skipped: list[str]  # "Organization/abc: not about a patient"
    aliases: dict[str, str]  # fullUrl or Type/id -> "Type/id" of the same resource


def read_file(raw: bytes) -> tuple[list[tuple[dict[str, Any], str | None]], list[str]]:
    """Resources in a JSON resource, a Bundle, or NDJSON, each with its fullUrl if any;
    and notes on Bundle entries that carry no resource (e.g. DELETE or GET requests)."""
    text = raw.decode("utf-8-sig", errors="strict") if raw else ""
    stripped = text.strip()
    if not stripped:
        raise InvalidFhir("the file is empty")
    try:
        if "\n" in stripped and not stripped.startswith(("{\n", "{\r")) and _is_ndjson(stripped):
            lines = stripped.splitlines()
            return [(json.loads(line), None) for line in lines if line.strip()], []
        data = json.loads(stripped)
    except json.JSONDecodeError as e:
        raise InvalidFhir(f"not JSON or NDJSON: {e}") from None
    if not isinstance(data, dict) or "resourceType" not in data:
        raise InvalidFhir("not a FHIR resource or Bundle (no resourceType)")
    if data["resourceType"] != "Bundle":
        return [(data, None)], []
    out, notes = [], []
    for i, entry in enumerate(data.get("entry", [])):
        if not isinstance(entry, dict):
            raise InvalidFhir(f"Bundle.entry[{i}] is not an object")
        resource = entry.get("resource")
        if resource is None:
            method = entry.get("request", {}).get("method", "an entry")
            notes.append(f"Bundle.entry[{i}]: {method} without a resource, nothing to import")
            continue
        if not isinstance(resource, dict) or "resourceType" not in resource:
            raise InvalidFhir(f"Bundle.entry[{i}].resource is not a FHIR resource")
        out.append((resource, entry.get("fullUrl")))
    return out, notes


def _is_ndjson(text: str) -> bool:
    first = text.splitlines()[0].strip()
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def _ref_of(resource: dict[str, Any]) -> str | None:
    rid = resource.get("id")
    return f"{resource['resourceType']}/{rid}" if rid else None


def group_by_patient(items: list[tuple[dict[str, Any], str | None]]) -> ReadResult:
    """Group resources by the patient they are about."""
    aliases: dict[str, str] = {}
    for resource, full_url in items:
        ref = _ref_of(resource)
        if ref is None:
            continue
        aliases[ref] = ref
        # NDJSON exports keep Bundle-style urn:uuid references to resource ids.
        aliases.setdefault(f"urn:uuid:{resource['id']}", ref)
        if full_url:
            aliases[full_url] = ref
    groups: dict[str, PatientGroup] = {}
    skipped = []
    described = {ref: r for r, _ in items if (ref := _ref_of(r)) is not None}
    for resource, full_url in items:
        ref = _ref_of(resource) or full_url or resource["resourceType"]
        if resource["resourceType"] == "Patient":
            key = ref.split("/", 1)[1] if "/" in ref else ref
            group = groups.setdefault(key, PatientGroup(key, None, described=described))
            group.patient = resource
            group.resources.insert(0, resource)
            continue
        target = _patient_reference(resource, aliases)
        if target is None:
            skipped.append(f"{ref}: not about a patient")
            continue
        group = groups.setdefault(target, PatientGroup(target, None, described=described))
        group.resources.append(resource)
    return ReadResult(list(groups.values()), skipped, aliases)


def _patient_reference(resource: dict[str, Any], aliases: dict[str, str]) -> str | None:
    for name in PATIENT_REFS:
        value = resource.get(name)
        ref = value.get("reference") if isinstance(value, dict) else None
        if isinstance(ref, str):
            resolved = aliases.get(ref, ref)
            if resolved.startswith("Patient/"):
                return resolved.split("/", 1)[1]
    return None


def assign_ids(
    group: PatientGroup, aliases: dict[str, str], new_id: Callable[[dict[str, Any]], str]
) -> list[tuple[str, dict[str, Any]]]:
    """(record id, resource with id and internal references rewritten) for a group."""
    record_ids = [new_id(resource) for resource in group.resources]
    renamed: dict[str, str] = {}
    for resource, record_id in zip(group.resources, record_ids, strict=True):
        ref = _ref_of(resource)
        if ref is not None:
            renamed[ref] = f"{resource['resourceType']}/{record_id}"
    targets = {alias: renamed[ref] for alias, ref in aliases.items() if ref in renamed}
    absent = {
        alias: group.described[ref]
        for alias, ref in aliases.items()
        if ref not in renamed and ref in group.described
    }
    out = []
    for resource, record_id in zip(group.resources, record_ids, strict=True):
        rewritten = _rewrite(resource, targets, absent)
        rewritten["id"] = record_id
        out.append((record_id, rewritten))
    return out


def _rewrite(node: Any, targets: dict[str, str], absent: dict[str, dict[str, Any]]) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite(v, targets, absent) for k, v in node.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref in targets:
            out["reference"] = targets[ref]
        elif isinstance(ref, str) and (ref in absent or _dangling(ref)):
            out = logical_reference(out, absent.get(ref))
        return out
    if isinstance(node, list):
        return [_rewrite(v, targets, absent) for v in node]
    return node


def _dangling(ref: str) -> bool:
    """A reference no served resource can answer: a bundle-local urn:uuid or urn:oid
    whose resource is not a record, or a conditional reference (`Type?query`)."""
    return ref.startswith(("urn:uuid:", "urn:oid:")) or (
        "?" in ref and "/" not in ref.split("?")[0]
    )


def logical_reference(reference: dict[str, Any], resource: dict[str, Any] | None) -> dict[str, Any]:
    """A Reference to something this custodian does not hold (a Practitioner or
    Organization the import skipped, or a conditional reference) as a logical one:
    its type, the identifier that names it (the target's first identifier, or the
    conditional reference's `identifier=system|value`) and a display, and no
    `reference` to dangle."""
    ref = str(reference["reference"])
    out = {k: v for k, v in reference.items() if k != "reference"}
    kind = resource["resourceType"] if resource else ref.split("?")[0]
    if kind and not kind.startswith("urn:"):
        out.setdefault("type", kind)
    identifier: dict[str, Any] | None = None
    if resource is not None:
        identifier = next((i for i in resource.get("identifier", []) if i.get("value")), None)
    elif "?identifier=" in ref:
        system, _, value = ref.split("?identifier=", 1)[1].partition("|")
        identifier = {"system": system, "value": value} if value else {"value": system}
    if identifier is not None and "identifier" not in out:
        out["identifier"] = {k: identifier[k] for k in ("system", "value") if k in identifier}
    if "display" not in out:
        out["display"] = _display(resource) or f"{kind or 'resource'} not held by this custodian"
    return out


def _display(resource: dict[str, Any] | None) -> str | None:
    if resource is None:
        return None
    name = resource.get("name")
    if isinstance(name, str):
        return name
    if isinstance(name, list) and name and isinstance(name[0], dict):
        first = name[0]
        if first.get("text"):
            return str(first["text"])
        parts = [*first.get("prefix", []), *first.get("given", []), first.get("family", "")]
        return " ".join(str(p) for p in parts if p) or None
    return None


def iter_identifiers(patient: dict[str, Any] | None) -> Iterator[tuple[str, str]]:
    """(system, value) of a Patient's identifiers, for matching a patient index."""
    if patient is None:
        return
    for ident in patient.get("identifier", []):
        if isinstance(ident, dict) and ident.get("value"):
            yield str(ident.get("system", "")), str(ident["value"])
