"""ADT events of the ADT_A01/ADT_A05 structures (A01 admit, A04 register, A05
pre-admit, A08 update, A13 cancel discharge, A14 pending admit, A28 add person,
A31 update person) -> Patient + Encounter."""

from __future__ import annotations

from typing import Any

from medchain.fhir.conversion import SourcePatient
from medchain.fhir.hl7v2.message import Message
from medchain.fhir.hl7v2.patient import read_patient, read_visit


def build_admission(msg: Message) -> tuple[list[dict[str, Any]], SourcePatient]:
    """ADT^A01 and the events sharing its structure: the patient and the visit (PV1 is
    required)."""
    patient, source = read_patient(msg)
    msg.required("PV1")
    encounters, _ = read_visit(msg, patient)
    return [patient, *encounters], source
