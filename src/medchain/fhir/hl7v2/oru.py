"""ORU^R01 (unsolicited observation result) -> Patient, DiagnosticReport per OBR,
Observation per OBX."""

from __future__ import annotations

from typing import Any

from medchain.fhir import conversion
from medchain.fhir.conversion import MappingError, SourcePatient, validated
from medchain.fhir.hl7v2.datatypes import coded_concept, datetime_fields, ei_identifier, instant
from medchain.fhir.hl7v2.message import Message, Segment
from medchain.fhir.hl7v2.observation import observation, trailing_notes
from medchain.fhir.hl7v2.patient import read_patient, read_visit
from medchain.fhir.hl7v2.tables import DIAGNOSTIC_SERVICE, REPORT_STATUSES


def _report(
    msg: Message,
    obr: Segment,
    subject: dict[str, Any],
    context: dict[str, Any],
    results: list[str],
) -> dict[str, Any]:
    """OBR -> DiagnosticReport: order numbers, service code, status, times, its results."""
    status_code = obr.code(25)
    if status_code and status_code not in REPORT_STATUSES:
        raise MappingError(obr.where(25), f"unknown result status {status_code!r}")
    code = coded_concept(msg, obr.rep(4), obr.where(4))
    if code is None:
        raise MappingError(obr.where(4), "universal service identifier is empty")
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": msg.rid("DiagnosticReport", obr),
    }
    ids = [ei_identifier(msg, obr.rep(2), "PLAC"), ei_identifier(msg, obr.rep(3), "FILL")]
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
    issued = instant(msg, obr, 22)
    if issued:
        report["issued"] = issued
    if results:
        report["result"] = [{"reference": f"Observation/{r}"} for r in results]
    return validated(report)


def build_results(msg: Message) -> tuple[list[dict[str, Any]], SourcePatient]:
    """ORU^R01: a DiagnosticReport per OBR, an Observation per OBX under it."""
    patient, source = read_patient(msg)
    encounters, context = read_visit(msg, patient)
    subject = {"reference": f"Patient/{patient['id']}"}
    context["category"] = conversion.laboratory_category()
    groups: list[tuple[Segment, list[Segment]]] = []
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
        group = context | {"effective": datetime_fields(msg, obr, 7, "effectiveDateTime")}
        observations = [
            observation(msg, obx, subject, group, trailing_notes(msg, obx)) for obx in obxs
        ]
        report = _report(msg, obr, subject, group, [o["id"] for o in observations])
        resources += [report, *observations]
    return resources, source
