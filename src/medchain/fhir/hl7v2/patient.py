"""The resources every message family starts with: the Patient (PID, NK1) and the
visit's Encounter (PV1, DG1)."""

from __future__ import annotations

from typing import Any

from medchain.fhir.conversion import MappingError, SourcePatient, validated
from medchain.fhir.hl7v2.datatypes import (
    coded_concepts,
    contact_point,
    cx_identifier,
    datetime_fields,
    human_name,
    parse_time,
    postal_address,
    practitioner,
)
from medchain.fhir.hl7v2.message import Message, Segment
from medchain.fhir.hl7v2.tables import (
    BIRTH_TIME,
    GENDERS,
    PARTICIPANTS,
    PARTICIPATION_TYPE,
    PATIENT_CLASSES,
)


def read_patient(msg: Message) -> tuple[dict[str, Any], SourcePatient]:
    """PID (+ NK1) -> Patient, and the source identity a later step maps to a DID."""
    pids = msg.by_name.get("PID", [])
    if len(pids) > 1:
        raise MappingError("PID", "a message may describe one patient; found several PID")
    pid = msg.required("PID")
    ids = [cx_identifier(msg, r, "urn:medchain:mrn", pid.where(3)) for r in pid.reps(3)]
    if not ids:
        raise MappingError(pid.where(3), "patient identifier list is empty")
    patient: dict[str, Any] = {"resourceType": "Patient", "id": msg.rid("Patient", pid)}
    patient["identifier"] = ids
    names = [n for n in (human_name(r, pid.where(5)) for r in pid.reps(5)) if n]
    if names:
        patient["name"] = names
    telecom = [contact_point(r, "home", pid.where(13)) for r in pid.reps(13)]
    telecom += [contact_point(r, "work", pid.where(14)) for r in pid.reps(14)]
    if any(telecom):
        patient["telecom"] = [t for t in telecom if t]
    gender = None
    if pid.code(8):
        gender = GENDERS.get(pid.code(8).upper())
        if gender is None:
            known = ", ".join(GENDERS)
            raise MappingError(pid.where(8), f"unknown sex code {pid.code(8)!r}; known: {known}")
        patient["gender"] = gender
    birth_date = None
    if pid.code(7):
        born = parse_time(pid.get(7), pid.where(7), "date")
        birth_date = born.date
        patient["birthDate"] = born.date
        exact = datetime_fields(msg, pid, 7, "valueDateTime")
        if born.time and "_valueDateTime" not in exact:
            patient["_birthDate"] = {"extension": [{"url": BIRTH_TIME, **exact}]}
    patient |= datetime_fields(msg, pid, 29, "deceasedDateTime")
    addresses = [a for a in (postal_address(r, pid.where(11)) for r in pid.reps(11)) if a]
    if addresses:
        patient["address"] = addresses
    contacts = [c for c in (_contact(msg, nk1) for nk1 in msg.by_name.get("NK1", [])) if c]
    if contacts:
        patient["contact"] = contacts
    first_name = pid.rep(5)
    source = SourcePatient(
        identifier=ids[0]["value"],
        system=ids[0]["system"],
        family=first_name.get(1) or None,
        given=first_name.get(2) or None,
        birth_date=birth_date if birth_date and len(birth_date) == 10 else None,
        sex=gender,
    )
    return validated(patient), source


def _contact(msg: Message, nk1: Segment) -> dict[str, Any]:
    """NK1 -> Patient.contact: name, relationship (table 0063), address, phone."""
    contact: dict[str, Any] = {}
    relationship = coded_concepts(msg, nk1, 3, "HL70063")
    if relationship:
        contact["relationship"] = relationship
    name = human_name(nk1.rep(2), nk1.where(2))
    if name:
        contact["name"] = name
    phones = [contact_point(r, "home", nk1.where(5)) for r in nk1.reps(5)]
    if any(phones):
        contact["telecom"] = [p for p in phones if p]
    address = postal_address(nk1.rep(4), nk1.where(4))
    if address:
        contact["address"] = address
    return contact


def _encounter(msg: Message, pv1: Segment, patient_ref: str) -> dict[str, Any]:
    """PV1 (+ DG1) -> Encounter: class, visit number, admit/discharge times, location, staff."""
    class_code = pv1.code(2)
    if not class_code:
        raise MappingError(pv1.where(2), "patient class is empty")
    if class_code not in PATIENT_CLASSES:
        known = ", ".join(PATIENT_CLASSES)
        raise MappingError(pv1.where(2), f"unknown patient class {class_code!r}; known: {known}")
    system, code, display = PATIENT_CLASSES[class_code]
    discharged = bool(pv1.code(45))
    status = "finished" if discharged else "planned" if code == "PRENC" else "in-progress"
    encounter: dict[str, Any] = {"resourceType": "Encounter", "id": msg.rid("Encounter", pv1)}
    visit = pv1.rep(19)
    if not visit.empty():
        encounter["identifier"] = [cx_identifier(msg, visit, "urn:medchain:visit", pv1.where(19))]
    encounter["status"] = status
    encounter["class"] = {"system": system, "code": code, "display": display}
    encounter["subject"] = {"reference": patient_ref}
    participants = [
        {
            "type": [{"coding": [{"system": PARTICIPATION_TYPE, "code": kind, "display": text}]}],
            "individual": who,
        }
        for field_no, kind, text in PARTICIPANTS
        for who in (practitioner(msg, rep) for rep in pv1.reps(field_no))
        if who
    ]
    if participants:
        encounter["participant"] = participants
    period = datetime_fields(msg, pv1, 44, "start") | datetime_fields(msg, pv1, 45, "end")
    if period:
        encounter["period"] = period
    reasons = [
        c for dg1 in msg.by_name.get("DG1", []) for c in coded_concepts(msg, dg1, 3, dg1.code(2))
    ]
    if reasons:
        encounter["reasonCode"] = reasons
    location = pv1.rep(3)
    place = ", ".join(p for p in (location.get(1), location.get(2), location.get(3)) if p)
    if place:
        encounter["location"] = [{"location": {"display": place}}]
    return validated(encounter)


def read_visit(
    msg: Message, patient: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The Encounter of a PV1 if the message has one, and the context that refers to it."""
    pv1 = msg.first("PV1")
    if pv1 is None:
        return [], {}
    encounter = _encounter(msg, pv1, f"Patient/{patient['id']}")
    return [encounter], {"encounter": {"reference": f"Encounter/{encounter['id']}"}}
