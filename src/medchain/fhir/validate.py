"""Validate FHIR R4 JSON before it is stored, and put it in one canonical form.

A record's on-chain hash is over the canonical JSON (sorted keys, no
insignificant whitespace, UTF-8), so the same resource always hashes the same
whatever tool wrote the file.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class

from medchain.exceptions import MedChainError
from medchain.fhir.strict import check_resource

MAX_ERRORS_SHOWN = 3


class InvalidFhir(MedChainError, ValueError):
    """Not a valid FHIR R4 resource; the message says what is wrong and where.

    `issues` holds (element path, message) pairs when the problems have a path, as
    an OperationOutcome's issue.expression and issue.diagnostics."""

    def __init__(self, message: str, issues: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.issues = issues or []


def canonical_json(resource: dict[str, Any]) -> bytes:
    """One byte form per resource (sorted keys, no spaces), so its hash is stable."""
    return json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_resource(raw: bytes, resource_id: str | None = None) -> tuple[str, bytes]:
    """(resourceType, canonical JSON bytes) of a valid FHIR R4 resource; with
    `resource_id`, the resource takes that logical id (a server assigns ids)."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidFhir(f"not JSON: {e}") from None
    resource_type, content, _ = validate_resource(data, resource_id)
    return resource_type, content


def validate_resource(
    data: Any, resource_id: str | None = None
) -> tuple[str, bytes, dict[str, Any]]:
    """(resourceType, canonical JSON bytes, the resource) of a resource already parsed
    from JSON; with `resource_id`, a copy that takes that logical id. The input is not
    changed."""
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise InvalidFhir("a FHIR resource is a JSON object with a resourceType")
    resource_type = data["resourceType"]
    if resource_id is not None:
        data = {**data, "id": resource_id}
    try:
        model = get_fhir_model_class(resource_type)
    except ValueError:
        raise InvalidFhir(f"{resource_type!r} is not a FHIR R4 resource type") from None
    issues = check_resource(data)
    if issues:
        raise InvalidFhir(_refusal(resource_type, [f"{p}: {m}" for p, m in issues]), issues)
    try:
        model.model_validate(data)
    except pydantic.ValidationError as e:
        problems = [
            f"{'.'.join(map(str, err['loc'])) or resource_type}: {err['msg']}" for err in e.errors()
        ]
        raise InvalidFhir(_refusal(resource_type, problems)) from None
    return resource_type, canonical_json(data), data


def _refusal(resource_type: str, problems: list[str]) -> str:
    shown = problems[:MAX_ERRORS_SHOWN]
    more = len(problems) - len(shown)
    suffix = f" (and {more} more)" if more > 0 else ""
    return f"{resource_type} is not valid FHIR R4: {'; '.join(shown)}{suffix}"
