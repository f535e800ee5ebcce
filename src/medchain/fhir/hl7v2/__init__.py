"""HL7 v2 messages -> FHIR R4 resources.

ADT^A01/A04/A05/A08/A13/A14/A28/A31 (the ADT_A01/ADT_A05 structures)
become Patient + Encounter, ORU^R01 Patient + DiagnosticReport +
Observation, RDE^O11 Patient + MedicationRequest, ORM^O01 Patient +
ServiceRequest, OMI^O23 Patient + ServiceRequest + ImagingStudy (version 2). python-hl7 parses; the
modules here read fields by number through tables kept as data, and reject what
they cannot map with the segment and field (e.g. "OBX[3]-5") instead of
importing half a message: a hospital must be able to trust that what reached
the ledger is the whole message.

  tables       the code tables and the declared VERSION (hashed: the mapping's identity)
  versions     mapping hashes and the registry of every attested version
  message      bytes -> segments, fields, components (MSH-18 charset, escapes)
  datatypes    TS, CWE/CE, CX/EI/HD, XCN, XPN, XAD, XTN
  patient      PID/NK1 -> Patient, PV1/DG1 -> Encounter (every family)
  observation  OBX -> Observation (ORU and RDE)
  adt, oru, rde, orders  one module per message family (orders: ORM^O01, OMI^O23)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medchain.fhir.conversion import Conversion, MappingError, SourcePatient
from medchain.fhir.hl7v2 import tables
from medchain.fhir.hl7v2.adt import build_admission
from medchain.fhir.hl7v2.datatypes import parse_time
from medchain.fhir.hl7v2.message import Message, parse, split_messages
from medchain.fhir.hl7v2.orders import build_general_orders, build_imaging_orders
from medchain.fhir.hl7v2.oru import build_results
from medchain.fhir.hl7v2.rde import build_orders
from medchain.fhir.hl7v2.tables import VERSION
from medchain.fhir.hl7v2.versions import mapping_hash

__all__ = [
    "MAPPING_HASHES",
    "MESSAGE_TYPES",
    "RUNS",
    "VERSION",
    "MappingError",
    "convert_message",
    "split_messages",
]

Builder = Callable[[Message], tuple[list[dict[str, Any]], SourcePatient]]
_BUILDERS: dict[str, Builder] = {
    **{f"hl7v2-adt-{event.lower()}": build_admission for event in tables.ADT_A01_EVENTS},
    "hl7v2-oru-r01": build_results,
    "hl7v2-rde-o11": build_orders,
    "hl7v2-orm-o01": build_general_orders,
    "hl7v2-omi-o23": build_imaging_orders,
}
# The versions this release runs: the current one, and 1 so its records re-verify.
RUNS = (VERSION, "1")


def _message_type(written: str) -> tuple[str, str]:
    code, event = written.split("^")
    return code, event


def _types(version: str) -> dict[tuple[str, str], tuple[str, Builder]]:
    return {
        _message_type(written): (f"{mapping}/{version}", _BUILDERS[mapping])
        for written, mapping in tables.message_types_of(version).items()
    }


# version -> (MSH-9.1, MSH-9.2) -> (mapping id as records attest it, its builder)
_TYPES_BY_VERSION = {version: _types(version) for version in RUNS}
# (MSH-9.1, MSH-9.2) -> (mapping id as records attest it, its builder), this version
MESSAGE_TYPES = _TYPES_BY_VERSION[VERSION]
# mapping id as attested -> the mapping hash this release attests with it
MAPPING_HASHES: dict[str, bytes] = {
    f"{mapping}/{VERSION}": mapping_hash(mapping) for mapping in tables.MESSAGE_TYPES.values()
}
# every mapping id this release runs (current and older versions) -> its hash
_RUN_HASHES: dict[str, bytes] = {
    f"{mapping}/{version}": mapping_hash(mapping, version)
    for version in RUNS
    for mapping in tables.message_types_of(version).values()
}


def convert_message(raw: bytes, version: str = VERSION) -> Conversion:
    """One HL7 v2 message -> FHIR R4 resources, all validated, or a MappingError.

    `version` re-runs an older mapping version this release still runs (`RUNS`), as
    an auditor does for a record attested under it."""
    if version not in _TYPES_BY_VERSION:
        runs = ", ".join(RUNS)
        raise MappingError("version", f"mapping version {version!r} is not run here; runs: {runs}")
    types = _TYPES_BY_VERSION[version]
    segments = parse(raw)
    msh = segments[0]
    message_type = msh.rep(9)
    entry = types.get((message_type.code(1), message_type.code(2)))
    if entry is None:
        supported = ", ".join("^".join(k) for k in types)
        reason = f"message type {message_type.text()!r} is not supported; supported: {supported}"
        raise MappingError("MSH-9", reason)
    mapping_id, build = entry
    control_id = msh.get(10)
    if not control_id.strip():
        raise MappingError("MSH-10", "message control id is empty")
    facility = msh.get(4) or msh.get(3)
    if not facility.strip():
        raise MappingError("MSH-4", "sending facility and sending application are empty")
    offset = parse_time(msh.get(7), "MSH-7").offset if msh.code(7) else None
    msg = Message(segments, mapping_id, facility, (msh.get(3), msh.get(4), control_id), offset)
    resources, patient = build(msg)
    return Conversion(mapping_id, _RUN_HASHES[mapping_id], raw, patient, resources)
