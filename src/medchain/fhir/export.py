"""Ledger facts as HL7 FHIR R4 resources: Consent, AuditEvent, Provenance.

Each builder turns on-chain data (a grant, an audit row, a record) into a
plain FHIR JSON dict and validates it with the fhir.resources R4B models
before returning it, so what leaves the API is well-formed FHIR. Ledger
identities are FHIR identifiers: DIDs under `urn:medchain:did`, orgs under
`urn:medchain:org`, records under `urn:medchain:record`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.provenance import Provenance

DID_SYSTEM = "urn:medchain:did"
ORG_SYSTEM = "urn:medchain:org"
ROLE_SYSTEM = "urn:medchain:role"
STUDY_SYSTEM = "urn:medchain:study"  # a research study a patient joined (consent kind "study")
RECORD_SYSTEM = "urn:medchain:record"
TX_SYSTEM = "urn:medchain:tx"
EVENT_SYSTEM = "urn:medchain:event"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
DCM = "http://dicom.nema.org/resources/ontology/DCM"

# Ledger event -> (AuditEvent.action, DICOM audit event type, display).
AUDIT_KINDS: dict[str, tuple[str, str, str]] = {
    "records.registered": ("C", "110110", "Patient Record"),
    "records.superseded": ("U", "110110", "Patient Record"),
    "records.erased": ("D", "110110", "Patient Record"),
    "consent.granted": ("C", "110110", "Patient Record"),
    "consent.revoked": ("U", "110110", "Patient Record"),
    "consent.guardian_delegated": ("C", "110110", "Patient Record"),
    "consent.guardian_revoked": ("U", "110110", "Patient Record"),
    "consent.break_glass_requested": ("E", "110113", "Security Alert"),
    "consent.break_glass_opened": ("E", "110113", "Security Alert"),
    "exchange.opened": ("E", "110112", "Query"),
    "exchange.refused": ("E", "110112", "Query"),
    "exchange.released": ("R", "110106", "Export"),
    "exchange.acknowledged": ("R", "110107", "Import"),
}
OUTCOME_SUCCESS, OUTCOME_REFUSED = "0", "4"


def iso(time_ms: int) -> str:
    """Block time (ms since the epoch, UTC) as a FHIR instant."""
    return datetime.fromtimestamp(time_ms / 1000, UTC).isoformat(timespec="milliseconds")


def identifier_ref(system: str, value: str, display: str | None = None) -> dict[str, Any]:
    """A FHIR Reference by identifier: ledger DIDs and org ids are not FHIR resources."""
    ref: dict[str, Any] = {"identifier": {"system": system, "value": value}}
    if display:
        ref["display"] = display
    return ref


def _validated(model: Any, resource: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(
        model.model_validate(resource).model_dump_json(exclude_none=True)
    )
    return out


def _grantee_ref(kind: str, grantee: str) -> dict[str, Any]:
    system = {"did": DID_SYSTEM, "org": ORG_SYSTEM, "role": ROLE_SYSTEM, "study": STUDY_SYSTEM}[
        kind
    ]
    return identifier_ref(system, grantee, f"{kind}:{grantee}")


def consent_resource(grant: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """A consent grant as a FHIR R4 Consent (active, or inactive once revoked/expired)."""
    active = grant["status"] == "active" and now_ms < grant["expires_ms"]
    provision: dict[str, Any] = {
        "type": "permit",
        "period": {"start": iso(grant["granted_time_ms"]), "end": iso(grant["expires_ms"])},
        "actor": [
            {
                "role": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "IRCP",
                            "display": "information recipient",
                        }
                    ]
                },
                "reference": _grantee_ref(grant["grantee_kind"], grant["grantee"]),
            }
        ],
        "purpose": [{"system": ACT_REASON, "code": p} for p in grant["purposes"]],
    }
    if grant["scope_types"]:
        provision["class"] = [
            {"system": "http://hl7.org/fhir/resource-types", "code": t}
            for t in grant["scope_types"]
        ]
    if grant["scope_records"]:
        provision["data"] = [
            {"meaning": "instance", "reference": identifier_ref(RECORD_SYSTEM, r)}
            for r in grant["scope_records"]
        ]
    resource = {
        "resourceType": "Consent",
        "id": grant["grant_id"],
        "status": "active" if active else "inactive",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [
            {"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Consent"}]}
        ],
        "patient": identifier_ref(DID_SYSTEM, grant["patient"]),
        "dateTime": iso(grant["granted_time_ms"]),
        "performer": [identifier_ref(DID_SYSTEM, grant["granted_by"])],
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
            ]
        },
        "provision": provision,
    }
    return _validated(Consent, resource)


def audit_event(row: dict[str, Any], chain_id: str) -> dict[str, Any]:
    """One audit index row (see ChainDB.audit) as a FHIR R4 AuditEvent."""
    attrs: dict[str, str] = row["attributes"]
    action, dcm_code, display = AUDIT_KINDS.get(row["kind"], ("E", "110110", "Patient Record"))
    refused = row["code"] != 0 or row["kind"] == "exchange.refused"
    entities: list[dict[str, Any]] = []
    if row["record_id"]:
        entities.append(
            {
                "what": identifier_ref(RECORD_SYSTEM, row["record_id"]),
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
            }
        )
    if row["patient"]:
        entities.append(
            {
                "what": identifier_ref(DID_SYSTEM, row["patient"]),
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            }
        )
    entities.append(
        {
            "what": identifier_ref(TX_SYSTEM, row["tx_id"].hex()),
            "detail": [
                {"type": name, "valueString": value} for name, value in sorted(attrs.items())
            ]
            + [{"type": "height", "valueString": str(row["height"])}],
        }
    )
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"audit-{row['seq']}",
        "type": {"system": DCM, "code": dcm_code, "display": display},
        "subtype": [{"system": EVENT_SYSTEM, "code": row["kind"]}],
        "action": action,
        "recorded": iso(row["time_ms"]),
        "outcome": OUTCOME_REFUSED if refused else OUTCOME_SUCCESS,
        "agent": [{"who": identifier_ref(DID_SYSTEM, row["actor"]), "requestor": True}],
        "source": {"observer": {"display": f"MedChain ledger {chain_id}"}},
        "entity": entities,
    }
    if refused:
        resource["outcomeDesc"] = attrs.get("reason", "refused")
    if attrs.get("purpose"):
        resource["purposeOfEvent"] = [
            {"coding": [{"system": ACT_REASON, "code": attrs["purpose"]}]}
        ]
    return _validated(AuditEvent, resource)


def provenance(record: dict[str, Any]) -> dict[str, Any]:
    """Who created a record, for whom, when, and which version it revises."""
    activity = "CREATE" if record.get("supersedes") is None else "UPDATE"
    if record["status"] == "erased":
        activity = "DELETE"
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": f"prov-{record['record_id']}"[:64].replace(":", "-").replace("_", "-"),
        "target": [identifier_ref(RECORD_SYSTEM, record["record_id"])],
        "recorded": iso(record["created_time_ms"]),
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": activity,
                }
            ]
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/"
                            "provenance-participant-type",
                            "code": "custodian",
                        }
                    ]
                },
                "who": identifier_ref(DID_SYSTEM, record["registered_by"]),
                "onBehalfOf": identifier_ref(ORG_SYSTEM, record["custodian"]),
            }
        ],
    }
    if record.get("supersedes"):
        resource["entity"] = [
            {"role": "revision", "what": identifier_ref(RECORD_SYSTEM, record["supersedes"])}
        ]
    return _validated(Provenance, resource)


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A FHIR searchset Bundle of resources."""
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"urn:medchain:{r['resourceType']}/{r['id']}", "resource": r}
            for r in resources
        ],
    }
    return _validated(Bundle, bundle)
