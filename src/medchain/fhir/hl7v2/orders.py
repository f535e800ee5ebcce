"""ORM^O01 (general order, v2.3-2.5) and OMI^O23 (imaging order) -> Patient,
Encounter, a ServiceRequest per ORC/OBR order, and for OMI an ImagingStudy per
study its IPC segments schedule (status "registered": nothing acquired yet).

Only what the segments say is written: status from ORC-5 or ORC-1
(tables.SERVICE_ORDER_STATUSES / SERVICE_ORDER_CONTROLS, an unknown code is
refused), code from OBR-4, authoredOn from ORC-9, requester from ORC-12 (else
OBR-16), placer/filler numbers from ORC-2/ORC-3 (else OBR-2/OBR-3). Order detail
segments other than OBR (RXO, ...) are refused, not skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from medchain.fhir import conversion
from medchain.fhir.conversion import MappingError, SourcePatient, code_system, coding, validated
from medchain.fhir.hl7v2.datatypes import (
    coded_concept,
    datetime_fields,
    ei_identifier,
    order_status,
    practitioner,
)
from medchain.fhir.hl7v2.message import Message, Segment
from medchain.fhir.hl7v2.patient import read_patient, read_visit
from medchain.fhir.hl7v2.tables import (
    ACCESSION_TYPE,
    MODALITY_SYSTEMS,
    PRIORITIES,
    SERVICE_ORDER_CONTROLS,
    SERVICE_ORDER_STATUSES,
    STUDY_STATUS,
    STUDY_UID_SYSTEM,
)

# A DICOM UID (PS3.5 9.1): numeric components separated by dots, at most 64 characters.
_DICOM_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")
_ORDER_PARTS = ("OBR", "TQ1", "IPC")
_OTHER_DETAILS = ("RXO", "RQD", "RQ1", "ODS", "ODT")


@dataclass
class _Order:
    """One ORC and the segments up to the next ORC."""

    orc: Segment
    parts: list[Segment] = field(default_factory=list)

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.parts if s.name == name), None)


def _orders(msg: Message, imaging: bool) -> list[_Order]:
    """The ORC groups, each with exactly one OBR (and, for OMI, at least one IPC)."""
    orders: list[_Order] = []
    for seg in msg.segments:
        if seg.name == "ORC":
            orders.append(_Order(seg))
        elif seg.name in _OTHER_DETAILS:
            raise MappingError(seg.label, f"{seg.name} order detail is not mapped (only OBR)")
        elif not orders:
            if seg.name in _ORDER_PARTS:
                raise MappingError("ORC", f"{seg.label} comes before any ORC segment")
        else:
            orders[-1].parts.append(seg)
    if not orders:
        raise MappingError("ORC", "required segment ORC is missing")
    for order in orders:
        obrs = [s for s in order.parts if s.name == "OBR"]
        if not obrs:
            raise MappingError("OBR", f"order group {order.orc.label} has no OBR segment")
        if len(obrs) > 1:
            raise MappingError(obrs[1].label, f"a second OBR in order group {order.orc.label}")
        if imaging and order.first("IPC") is None:
            raise MappingError("IPC", f"imaging order group {order.orc.label} has no IPC segment")
    return orders


def _priority(order: _Order, obr: Segment) -> str | None:
    """TQ1-9, else the priority component of ORC-7 / OBR-27 (TQ-6), when FHIR has it."""
    tq1 = order.first("TQ1")
    written = (tq1.code(9) if tq1 else "") or order.orc.get(7, 6) or obr.get(27, 6)
    return PRIORITIES.get(written.strip())


def _service_request(
    msg: Message, order: _Order, obr: Segment, context: dict[str, Any]
) -> dict[str, Any]:
    """ORC + OBR (+ TQ1) -> ServiceRequest."""
    orc = order.orc
    code = coded_concept(msg, obr.rep(4), obr.where(4))
    if code is None:
        raise MappingError(obr.where(4), "universal service identifier is empty")
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": msg.rid("ServiceRequest", obr),
    }
    placer = orc.rep(2) if orc.reps(2) else obr.rep(2)
    filler = orc.rep(3) if orc.reps(3) else obr.rep(3)
    ids = [ei_identifier(msg, placer, "PLAC"), ei_identifier(msg, filler, "FILL")]
    if any(ids):
        request["identifier"] = [i for i in ids if i]
    request["status"] = order_status(orc, SERVICE_ORDER_CONTROLS, SERVICE_ORDER_STATUSES)
    request["intent"] = "order"
    priority = _priority(order, obr)
    if priority:
        request["priority"] = priority
    request["code"] = code
    request["subject"] = context["subject"]
    if "encounter" in context:
        request["encounter"] = context["encounter"]
    tq1 = order.first("TQ1")
    if tq1:
        period = datetime_fields(msg, tq1, 7, "start") | datetime_fields(msg, tq1, 8, "end")
        if period:
            request["occurrencePeriod"] = period
    request |= datetime_fields(msg, orc, 9, "authoredOn")
    ordering = orc.rep(12) if orc.reps(12) else obr.rep(16)
    requester = practitioner(msg, ordering) if not ordering.empty() else None
    if requester:
        request["requester"] = requester
    return validated(request)


def _study_uid(ipc: Segment) -> dict[str, Any] | None:
    """IPC-3 study instance UID -> Identifier urn:dicom:uid / urn:oid:<uid>."""
    uid = ipc.get(3).strip()
    if not uid:
        return None
    if len(uid) > 64 or not _DICOM_UID.fullmatch(uid):
        raise MappingError(ipc.where(3), f"study instance UID {uid!r} is not a DICOM UID")
    return {"system": STUDY_UID_SYSTEM, "value": f"urn:oid:{uid}"}


def _modality(msg: Message, ipc: Segment) -> dict[str, Any] | None:
    """IPC-5 modality -> Coding (DICOM when IPC-5.3 names DCM)."""
    rep = ipc.rep(5)
    code = rep.code(1)
    if not code:
        return None
    name = rep.get(3).strip()
    system = MODALITY_SYSTEMS.get(name.upper()) or (
        code_system(name, msg.facility) if name else conversion.local_system(msg.facility, "IPC-5")
    )
    return coding(code, rep.get(2), system, ipc.where(5))


def _imaging_studies(
    msg: Message, order: _Order, request: dict[str, Any], context: dict[str, Any]
) -> list[dict[str, Any]]:
    """IPC segments -> one ImagingStudy per (accession, study UID) they schedule."""
    studies: dict[tuple[str, str], dict[str, Any]] = {}
    for ipc in (s for s in order.parts if s.name == "IPC"):
        accession = ei_identifier(msg, ipc.rep(1), ACCESSION_TYPE)
        uid = _study_uid(ipc)
        if accession is None and uid is None:
            continue
        key = (ipc.get(1), ipc.get(3).strip())
        study = studies.get(key)
        if study is None:
            study = {"resourceType": "ImagingStudy", "id": msg.rid("ImagingStudy", ipc)}
            study["identifier"] = [i for i in (uid, accession) if i]
            study["status"] = STUDY_STATUS
            studies[key] = study
        modality = _modality(msg, ipc)
        if modality and modality not in study.get("modality", []):
            study.setdefault("modality", []).append(modality)
    out = []
    for study in studies.values():
        study["subject"] = context["subject"]
        if "encounter" in context:
            study["encounter"] = context["encounter"]
        study["basedOn"] = [{"reference": f"ServiceRequest/{request['id']}"}]
        out.append(validated(study))
    return out


def _build(msg: Message, imaging: bool) -> tuple[list[dict[str, Any]], SourcePatient]:
    patient, source = read_patient(msg)
    encounters, context = read_visit(msg, patient)
    context["subject"] = {"reference": f"Patient/{patient['id']}"}
    resources = [patient, *encounters]
    for order in _orders(msg, imaging):
        obr = next(s for s in order.parts if s.name == "OBR")  # _orders insists on one
        request = _service_request(msg, order, obr, context)
        resources.append(request)
        if imaging:
            resources += _imaging_studies(msg, order, request, context)
    return resources, source


def build_general_orders(msg: Message) -> tuple[list[dict[str, Any]], SourcePatient]:
    """ORM^O01: a ServiceRequest per ORC/OBR order (PID is required)."""
    return _build(msg, imaging=False)


def build_imaging_orders(msg: Message) -> tuple[list[dict[str, Any]], SourcePatient]:
    """OMI^O23: a ServiceRequest per ORC/OBR order and a registered ImagingStudy per
    study its IPC segments name by accession number or study instance UID."""
    return _build(msg, imaging=True)
