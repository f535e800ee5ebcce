"""The HL7 v2 -> FHIR code tables, as plain data, and the mapping version they belong to.

These dicts are hashed (with the mapping id and `VERSION`) into the mapping hash
each converted record attests on chain, so an auditor can tell which mapping
made a record without trusting the converter's source text. Change a table and
you make a new version of the mapping: bump `VERSION` and add the new hashes to
`versions.KNOWN` (a test refuses an edit that does neither).
Only plain str/int/bool/None, lists, tuples and dicts here: they must encode the
same way as JSON on every machine.
"""

from __future__ import annotations

VERSION = "2"

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"

GENDERS = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other", "N": "other"}
# XPN-7 name type (table 0200) -> HumanName.use, as FHIR's v2 name-use map pairs them;
# the other table 0200 codes have no FHIR use, so the name is kept without one.
NAME_USES: dict[str, str | None] = {
    "L": "official",
    "D": "usual",
    "M": "maiden",
    "N": "nickname",
    "S": "anonymous",
    "TEMP": "temp",
    "NOUSE": "old",
    "BAD": "old",
}
NAME_USES |= {code: None for code in ("A", "B", "C", "I", "K", "P", "R", "T", "U")}
# XAD-7 address type -> (Address.use, Address.type)
ADDRESS_TYPES: dict[str, tuple[str | None, str | None]] = {
    "H": ("home", None),
    "P": ("home", None),
    "B": ("work", None),
    "O": ("work", None),
    "C": ("temp", None),
    "V": ("temp", None),
    "BA": ("old", None),
    "M": (None, "postal"),
    "L": (None, None),
    "N": (None, None),
    "F": (None, None),
    "BDL": (None, None),
    "BR": (None, None),
}
# XTN-3 equipment type -> (ContactPoint.system, use implied by the device)
TELECOM_EQUIPMENT: dict[str, tuple[str, str | None]] = {
    "PH": ("phone", None),
    "CP": ("phone", "mobile"),
    "FX": ("fax", None),
    "BP": ("pager", None),
    "INTERNET": ("email", None),
    "X.400": ("email", None),
    "TDD": ("other", None),
    "TTY": ("other", None),
    "MD": ("other", None),
    "SAT": ("other", None),
}
TELECOM_USES: dict[str, str | None] = {
    "PRN": "home",
    "ORN": "home",
    "VHN": "temp",
    "WPN": "work",
    "PRS": "mobile",
    "ASN": None,
    "EMR": None,
    "NET": None,
    "BPN": None,
}
# PV1-2 patient class -> Encounter.class
PATIENT_CLASSES: dict[str, tuple[str, str, str]] = {
    "I": (ACT_CODE, "IMP", "inpatient encounter"),
    "B": (ACT_CODE, "IMP", "inpatient encounter"),
    "O": (ACT_CODE, "AMB", "ambulatory"),
    "R": (ACT_CODE, "AMB", "ambulatory"),
    "E": (ACT_CODE, "EMER", "emergency"),
    "P": (ACT_CODE, "PRENC", "pre-admission"),
    "U": (NULL_FLAVOR, "UNK", "unknown"),
    "N": (NULL_FLAVOR, "NA", "not applicable"),
}
# PV1 field -> Encounter.participant type (v3 ParticipationType)
PARTICIPANTS = (
    (7, "ATND", "attender"),
    (8, "REF", "referrer"),
    (9, "CON", "consultant"),
    (17, "ADM", "admitter"),
)
# OBX-11 (table 0085) -> Observation.status
OBSERVATION_STATUSES = {
    "F": "final",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "C": "corrected",
    "A": "amended",
    "I": "registered",
    "X": "cancelled",
    "N": "cancelled",
    "D": "entered-in-error",
    "W": "entered-in-error",
    "U": "final",
}
# OBR-25 (table 0123) -> DiagnosticReport.status
REPORT_STATUSES = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "A": "partial",
    "P": "preliminary",
    "R": "preliminary",
    "F": "final",
    "C": "corrected",
    "X": "cancelled",
}
# ORC-5 (table 0038) and, when it is empty, ORC-1 (table 0119) -> MedicationRequest.status
ORDER_STATUSES = {
    "A": "active",
    "IP": "active",
    "SC": "active",
    "CM": "completed",
    "CA": "cancelled",
    "DC": "stopped",
    "RP": "stopped",
    "HD": "on-hold",
    "ER": "entered-in-error",
}
ORDER_CONTROLS = {code: "active" for code in ("NW", "OK", "SN", "XO", "XX", "RL", "SC")}
ORDER_CONTROLS |= {"CA": "cancelled", "CR": "cancelled", "OC": "cancelled"}
ORDER_CONTROLS |= {"DC": "stopped", "OD": "stopped", "DR": "stopped", "HD": "on-hold"}
ORDER_CONTROLS |= {"OH": "on-hold"}
# Version 2, ORM^O01/OMI^O23 -> ServiceRequest.status, as the HL7 v2-to-FHIR concept
# maps pair them: ORC-5 order status (table 0038) when given, else what ORC-1 order
# control (table 0119) implies. A request that was cancelled or discontinued is
# "revoked" (ServiceRequest has no "cancelled"/"stopped"). Any other code is refused.
SERVICE_ORDER_STATUSES = {
    "A": "active",
    "IP": "active",
    "SC": "active",
    "CM": "completed",
    "CA": "revoked",
    "DC": "revoked",
    "RP": "revoked",
    "HD": "on-hold",
    "ER": "entered-in-error",
}
SERVICE_ORDER_CONTROLS = {code: "active" for code in ("NW", "OK", "SN", "XO", "XX", "RL", "SC")}
SERVICE_ORDER_CONTROLS |= {code: "revoked" for code in ("CA", "CR", "OC", "DC", "OD", "DR")}
SERVICE_ORDER_CONTROLS |= {"HD": "on-hold", "OH": "on-hold"}
# OMI^O23 IPC: the study it schedules. IPC-5 modality codes are DICOM (CID 29).
STUDY_STATUS = "registered"
STUDY_UID_SYSTEM = "urn:dicom:uid"
ACCESSION_TYPE = "ACSN"
MODALITY_SYSTEMS = {"DCM": "http://dicom.nema.org/resources/ontology/DCM"}
IMAGING = {
    "study_status": STUDY_STATUS,
    "study_uid_system": STUDY_UID_SYSTEM,
    "accession_type": ACCESSION_TYPE,
    "modality_systems": MODALITY_SYSTEMS,
}
PRIORITIES = {"S": "stat", "A": "asap", "R": "routine", "T": "urgent"}
SUBSTITUTIONS = {"N": False, "G": True, "T": True}
SN_COMPARATORS: dict[str, str | None] = {"": None, "=": None, "<": "<", ">": ">", "<=": "<="}
SN_COMPARATORS |= {">=": ">="}
TEXT_TYPES = ("FT", "ST", "TX")
# OBX-2 value type -> the kind of Observation.value[x] it becomes (see observation.py)
VALUE_TYPES = {
    "NM": "numeric",
    "SN": "structured-numeric",
    "ST": "string",
    "TX": "string",
    "FT": "string",
    "CWE": "coded",
    "CE": "coded",
    "CNE": "coded",
    "DT": "date-time",
    "DTM": "date-time",
    "TS": "date-time",
}
# Where RXO (as requested) and RXE (as encoded by pharmacy) keep the same facts.
RX_FIELDS: dict[str, dict[str, int | None]] = {
    "RXO": {
        "code": 1,
        "amount_min": 2,
        "amount_max": 3,
        "units": 4,
        "instructions": 7,
        "dispense_amount": 11,
        "dispense_units": 12,
        "refills": 13,
        "substitution": 9,
        "rate_amount": None,
        "rate_units": None,
        "prescription_number": None,
    },
    "RXE": {
        "code": 2,
        "amount_min": 3,
        "amount_max": 4,
        "units": 5,
        "instructions": 7,
        "dispense_amount": 10,
        "dispense_units": 11,
        "refills": 12,
        "substitution": None,
        "rate_amount": 23,
        "rate_units": 24,
        "prescription_number": 15,
    },
}
CHARSETS = {
    "": "utf-8",
    "ASCII": "ascii",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
    "GB 18030-2000": "gb18030",
    "GB18030": "gb18030",
    "GBK": "gb18030",
    "GB2312": "gb18030",
    "BIG-5": "big5",
    "KS X 1001": "euc-kr",
}
CHARSETS |= {f"8859/{n}": f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15)}
UNIQUE_SEGMENTS = ("EVN", "MSH", "PD1", "PID", "PV1", "PV2", "SFT")
TEXT_ESCAPES = {".br": "\n", ".sp": "\n", ".ce": "\n"}
# MSH-9 message type -> the mapping that converts it (its id, before "/<VERSION>").
# Version 1 took these four; version 2 adds the ADT events whose HL7 v2.5 message
# structure (table 0354) is ADT_A01 (A01, A04, A08, A13) or ADT_A05 (A05, A14, A28,
# A31). ADT_A05 is ADT_A01 without its last optional segment (PDA): the segments the
# mapping reads (MSH, EVN, PID, PD1, NK1, PV1, PV2, DG1) sit in the same places.
MESSAGE_TYPES_V1 = {
    "ADT^A01": "hl7v2-adt-a01",
    "ADT^A08": "hl7v2-adt-a08",
    "ORU^R01": "hl7v2-oru-r01",
    "RDE^O11": "hl7v2-rde-o11",
}
ADT_A01_EVENTS = ("A01", "A04", "A05", "A08", "A13", "A14", "A28", "A31")
MESSAGE_TYPES = {f"ADT^{e}": f"hl7v2-adt-{e.lower()}" for e in ADT_A01_EVENTS}
MESSAGE_TYPES |= {"ORU^R01": "hl7v2-oru-r01", "RDE^O11": "hl7v2-rde-o11"}
# Version 2 also maps general orders (ORM^O01, v2.3-2.5) and imaging orders (OMI^O23).
MESSAGE_TYPES |= {"ORM^O01": "hl7v2-orm-o01", "OMI^O23": "hl7v2-omi-o23"}

# Version 2: a unit is tagged UCUM (system http://unitsofmeasure.org + code) only when
# its code parses under the UCUM grammar (https://ucum.org/ucum, section 2.1 and the
# BNF) with known atoms and prefixes (conversion.ucum_code), and no term after a
# solidus carries a negative exponent: `g/l-1` parses as UCUM but means g.l, a double
# inversion no laboratory unit is, so it is a mistyped g/l and not tagged. Anything
# else keeps its text in Quantity.unit, without system and code (also when OBX-6.3
# claims UCUM for a code that is not).
UCUM_TAGGING = {
    "spec": "https://ucum.org/ucum",
    "only_valid_codes": True,
    "no_negative_exponent_after_solidus": True,
}

# Everything above that decides what the mapping writes: hashed into its identity.
TABLES: dict[str, object] = {
    "ACT_CODE": ACT_CODE,
    "NULL_FLAVOR": NULL_FLAVOR,
    "PARTICIPATION_TYPE": PARTICIPATION_TYPE,
    "BIRTH_TIME": BIRTH_TIME,
    "DIAGNOSTIC_SERVICE": DIAGNOSTIC_SERVICE,
    "GENDERS": GENDERS,
    "NAME_USES": NAME_USES,
    "ADDRESS_TYPES": ADDRESS_TYPES,
    "TELECOM_EQUIPMENT": TELECOM_EQUIPMENT,
    "TELECOM_USES": TELECOM_USES,
    "PATIENT_CLASSES": PATIENT_CLASSES,
    "PARTICIPANTS": PARTICIPANTS,
    "OBSERVATION_STATUSES": OBSERVATION_STATUSES,
    "REPORT_STATUSES": REPORT_STATUSES,
    "ORDER_STATUSES": ORDER_STATUSES,
    "ORDER_CONTROLS": ORDER_CONTROLS,
    "PRIORITIES": PRIORITIES,
    "SUBSTITUTIONS": SUBSTITUTIONS,
    "SN_COMPARATORS": SN_COMPARATORS,
    "TEXT_TYPES": TEXT_TYPES,
    "VALUE_TYPES": VALUE_TYPES,
    "RX_FIELDS": RX_FIELDS,
    "CHARSETS": CHARSETS,
    "UNIQUE_SEGMENTS": UNIQUE_SEGMENTS,
    "TEXT_ESCAPES": TEXT_ESCAPES,
    "MESSAGE_TYPES": MESSAGE_TYPES,
    "UCUM_TAGGING": UCUM_TAGGING,
    "SERVICE_ORDER_STATUSES": SERVICE_ORDER_STATUSES,
    "SERVICE_ORDER_CONTROLS": SERVICE_ORDER_CONTROLS,
    "IMAGING": IMAGING,
}
# Tables version 2 added; version 1 is hashed without them.
ADDED_IN_2 = ("UCUM_TAGGING", "SERVICE_ORDER_STATUSES", "SERVICE_ORDER_CONTROLS", "IMAGING")


def tables_of(version: str) -> dict[str, object]:
    """The tables of a version this release still runs (`VERSION` or "1"), as hashed."""
    if version == VERSION:
        return TABLES
    if version == "1":
        version_1 = {name: table for name, table in TABLES.items() if name not in ADDED_IN_2}
        return version_1 | {"MESSAGE_TYPES": MESSAGE_TYPES_V1}
    raise ValueError(f"mapping version {version!r} is not run by this release")


def message_types_of(version: str) -> dict[str, str]:
    """MSH-9 -> mapping (without the version) for a version this release still runs."""
    tables_of(version)  # refuses a version this release does not run
    return MESSAGE_TYPES_V1 if version == "1" else MESSAGE_TYPES
