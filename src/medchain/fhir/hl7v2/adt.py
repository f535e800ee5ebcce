"""ADT^A01 (admit) and ADT^A08 (update patient information) -> Patient + Encounter."""

from __future__ import annotations

from typing import Any

from medchain.fhir.conversion import SourcePatient
from medchain.fhir.hl7v2.message import Message
from medchain.fhir.hl7v2.patient import read_patient, read_visit


def build_admission(msg: Message) -> tuple[list[dict[str, Any]], SourcePatient]:
    """ADT^A01 / ADT^A08: the patient and the visit (PV1 is required)."""
    patient, source = read_patient(msg)
    msg.required("PV1")
    encounters, _ = read_visit(msg, patient)
    return [patient, *encounters], source
