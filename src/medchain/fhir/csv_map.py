"""CSV exports from a HIS (lab results, prescriptions) -> FHIR R4 resources.

Every hospital names its columns differently, so the column-to-field mapping
is data: a JSON mapping file (see docs/his-mapping.md; defaults ship in
`medchain/fhir/mappings/`). A lab row becomes Patient + Observation, a
prescription row Patient + MedicationRequest. A file is all or nothing: every
row is checked before any result is returned, so a bad row cannot leave half
an export on the ledger.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources as package_files
from pathlib import Path
from typing import Any

from medchain.crypto import sm3
from medchain.fhir import conversion as conv
from medchain.fhir.conversion import (
    UCUM,
    Conversion,
    MappingError,
    SourcePatient,
    code_system,
    coding,
    identifier_type,
    integer_value,
    interpretation,
    quantity,
    reference_range,
    resource_id,
    unit_fields,
    urn_part,
    validated,
)
from medchain.fhir.validate import canonical_json

BUNDLED = ("lab-result", "prescription")
KINDS = ("lab-result", "prescription")
# field -> required?  (the columns a mapping file may name, per kind)
PATIENT_FIELDS = {
    "patient_id": True,
    "patient_name": False,
    "family_name": False,
    "given_name": False,
    "sex": False,
    "birth_date": False,
}
KIND_FIELDS: dict[str, dict[str, bool]] = {
    "lab-result": PATIENT_FIELDS
    | {
        "report_id": False,
        "value_type": False,
        "result": True,
        "unit": False,
        "reference_range": False,
        "flag": False,
        "status": False,
        "collected": False,
        "reported": False,
    },
    "prescription": PATIENT_FIELDS
    | {
        "prescription_id": True,
        "line_no": False,
        "authored": False,
        "prescriber_id": False,
        "prescriber": False,
        "strength": False,
        "dose": False,
        "dose_unit": False,
        "route": False,
        "frequency": False,
        "days": False,
        "quantity": False,
        "quantity_unit": False,
        "instructions": False,
        "status": False,
    },
}
# Fields whose cells are looked up in `values`, and what the lookup may yield.
VALUE_TARGETS: dict[str, dict[str, frozenset[str]]] = {
    "lab-result": {
        "sex": conv.GENDERS,
        "value_type": frozenset({"NM", "ST", "CWE"}),
        "flag": frozenset(conv.INTERPRETATIONS),
        "status": conv.OBSERVATION_STATUSES,
    },
    "prescription": {
        "sex": conv.GENDERS,
        "frequency": frozenset(conv.FREQUENCIES) | {"PRN", "ONCE"},
        "status": conv.MEDICATION_REQUEST_STATUSES,
    },
}
# Fields whose cells are looked up in `coded_values` (text -> coding).
CODED_FIELDS = {"lab-result": ("result",), "prescription": ("route",)}
MAPPING_KEYS = frozenset(
    {"mapping_id", "kind", "description", "facility", "encoding", "delimiter", "timezone"}
    | {"date_formats", "datetime_formats", "patient_id_system", "columns", "codes"}
    | {"values", "coded_values", "defaults"}
)
_OFFSET = re.compile(r"[+-](0\d|1[0-4]):[0-5]\d|Z")
_COMPARED = re.compile(r"\s*(<=|>=|<|>|≤|≥|＜|＞)\s*(\S+)\s*")
_COMPARATORS = {"<": "<", ">": ">", "<=": "<=", ">=": ">=", "≤": "<=", "≥": ">=", "＜": "<"}
_COMPARATORS |= {"＞": ">"}
_RATIO = re.compile(r"\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*")


@dataclass(frozen=True)
class CodeColumns:
    """One coding per row: the code column, its display column and its code system."""

    code: str
    display: str | None
    system: str  # a coding-system name ("LN"), a URI, or "local:<name>"


@dataclass(frozen=True)
class CsvMapping:
    """A loaded, checked mapping file. `definition` is the JSON it came from."""

    mapping_id: str
    kind: str
    facility: str
    encoding: str
    delimiter: str
    timezone: str
    date_formats: tuple[str, ...]
    datetime_formats: tuple[str, ...]
    patient_id_system: str
    columns: Mapping[str, str]
    codes: tuple[CodeColumns, ...]
    values: Mapping[str, Mapping[str, str]]
    coded_values: Mapping[str, Mapping[str, dict[str, Any]]]
    defaults: Mapping[str, str]
    definition: Mapping[str, Any]
    mapping_hash: bytes

    def with_facility(self, facility: str) -> CsvMapping:
        """The same mapping for another hospital (local code systems are per facility)."""
        return parse_mapping({**self.definition, "facility": facility}, self.mapping_id)


# ---- loading ----------------------------------------------------------------------


def load_mapping(path_or_name: str | Path) -> CsvMapping:
    """A mapping file by path, or a bundled default by name ("lab-result", "prescription")."""
    if isinstance(path_or_name, str) and path_or_name in BUNDLED:
        return _bundled(path_or_name)
    path = Path(path_or_name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        bundled = ", ".join(BUNDLED)
        reason = f"cannot be read ({e}); bundled mappings: {bundled}"
        raise MappingError(f"mapping {path}", reason) from None
    return _parse_text(text, str(path))


@cache
def _bundled(name: str) -> CsvMapping:
    text = (package_files.files("medchain.fhir") / "mappings" / f"{name}.json").read_text("utf-8")
    return _parse_text(text, name)


def _parse_text(text: str, source: str) -> CsvMapping:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise MappingError(f"mapping {source}", f"not JSON: {e}") from None
    return parse_mapping(data, source)


def _need(ok: bool, source: str, key: str, reason: str) -> None:
    if not ok:
        raise MappingError(f"mapping {source}, {key}", reason)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def parse_mapping(data: Any, source: str = "<mapping>") -> CsvMapping:
    """Check a mapping definition (the parsed JSON) and make a CsvMapping of it."""
    _need(isinstance(data, dict), source, "(top)", "a mapping file is a JSON object")
    unknown = sorted(set(data) - MAPPING_KEYS)
    _need(not unknown, source, ", ".join(unknown), "unknown key(s)")
    for key in ("mapping_id", "kind", "facility", "encoding", "timezone"):
        _need(isinstance(data.get(key), str) and bool(data[key]), source, key, "required string")
    kind = data["kind"]
    _need(kind in KINDS, source, "kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    try:
        codecs.lookup(data["encoding"])
    except LookupError:
        _need(False, source, "encoding", f"unknown encoding {data['encoding']!r}")
    delimiter = data.get("delimiter", ",")
    _need(isinstance(delimiter, str) and len(delimiter) == 1, source, "delimiter", "one char")
    _need(bool(_OFFSET.fullmatch(data["timezone"])), source, "timezone", "like '+08:00'")
    for key in ("date_formats", "datetime_formats"):
        _need(_strings(data.get(key)), source, key, "a non-empty list of strptime formats")
    columns = data.get("columns")
    _need(_string_map(columns), source, "columns", "an object: field -> column header")
    fields = KIND_FIELDS[kind]
    for name, header in columns.items():
        _need(name in fields, source, f"columns.{name}", f"not a {kind} field")
        _need(bool(header.strip()), source, f"columns.{name}", "empty column header")
    for name, required in fields.items():
        _need(not required or name in columns, source, f"columns.{name}", "required field")
    codes = data.get("codes")
    _need(isinstance(codes, list) and bool(codes), source, "codes", "a non-empty list")
    code_columns = []
    for i, entry in enumerate(codes):
        ok = isinstance(entry, dict) and _string_map(entry) and "code" in entry
        _need(ok and "system" in entry, source, f"codes[{i}]", "needs 'code' and 'system'")
        _need(set(entry) <= {"code", "display", "system"}, source, f"codes[{i}]", "unknown key")
        code_columns.append(CodeColumns(entry["code"], entry.get("display"), entry["system"]))
    values = _check_values(data, kind, columns, source)
    coded = _check_coded_values(data, kind, columns, source)
    defaults = data.get("defaults", {})
    _need(_string_map(defaults), source, "defaults", "an object: field -> value")
    for name, value in defaults.items():
        targets = VALUE_TARGETS[kind].get(name)
        _need(name == "status" and targets is not None, source, f"defaults.{name}", "only status")
        _need(value in (targets or ()), source, f"defaults.{name}", f"{value!r} is not allowed")
    _need("status" in defaults or "status" in columns, source, "defaults.status", "required")
    facility = data["facility"]
    id_system = data.get("patient_id_system") or f"urn:medchain:mrn:{urn_part(facility)}"
    _need(isinstance(id_system, str), source, "patient_id_system", "a URI string")
    return CsvMapping(
        mapping_id=data["mapping_id"],
        kind=kind,
        facility=facility,
        encoding=data["encoding"],
        delimiter=delimiter,
        timezone=data["timezone"],
        date_formats=tuple(data["date_formats"]),
        datetime_formats=tuple(data["datetime_formats"]),
        patient_id_system=id_system,
        columns=dict(columns),
        codes=tuple(code_columns),
        values=values,
        coded_values=coded,
        defaults=dict(defaults),
        definition=data,
        mapping_hash=sm3(canonical_json(data)),
    )


def _check_values(
    data: dict[str, Any], kind: str, columns: dict[str, str], source: str
) -> dict[str, dict[str, str]]:
    values = data.get("values", {})
    _need(isinstance(values, dict), source, "values", "an object: field -> {text: code}")
    for name, table in values.items():
        targets = VALUE_TARGETS[kind].get(name)
        _need(targets is not None, source, f"values.{name}", f"{kind} has no coded field {name}")
        _need(_string_map(table), source, f"values.{name}", "an object: text -> code")
        for text, target in table.items():
            where = f"values.{name}.{text}"
            _need(target in (targets or ()), source, where, f"{target!r} is not allowed")
    for name in VALUE_TARGETS[kind]:
        needed = name in columns and name not in values
        _need(not needed, source, f"values.{name}", f"columns.{name} needs a values table")
    return {name: dict(table) for name, table in values.items()}


def _check_coded_values(
    data: dict[str, Any], kind: str, columns: dict[str, str], source: str
) -> dict[str, dict[str, dict[str, Any]]]:
    coded = data.get("coded_values", {})
    _need(isinstance(coded, dict), source, "coded_values", "an object: field -> {text: coding}")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, table in coded.items():
        where = f"coded_values.{name}"
        _need(name in CODED_FIELDS[kind], source, where, f"{kind} has no coded field {name}")
        _need(isinstance(table, dict), source, where, "an object: text -> coding")
        out[name] = {}
        for text, entry in table.items():
            ok = isinstance(entry, dict) and _string_map(entry) and {"system", "code"} <= set(entry)
            _need(ok, source, f"{where}.{text}", "needs 'system' and 'code'")
            system = code_system(entry["system"], data["facility"])
            out[name][text] = coding(
                entry["code"], entry.get("display", ""), system, f"mapping {source}, {where}"
            )
    if "route" in CODED_FIELDS[kind] and "route" in columns:
        _need("route" in out, source, "coded_values.route", "columns.route needs this table")
    return out


# ---- rows -------------------------------------------------------------------------


class _Row:
    """One data row, read through the mapping's field names."""

    def __init__(self, mapping: CsvMapping, cells: dict[str, str], number: int) -> None:
        self.mapping = mapping
        self.cells = cells
        self.number = number

    def where(self, field_name: str) -> str:
        header = self.mapping.columns.get(field_name)
        place = f"column {header!r}" if header else f"field {field_name}"
        return f"row {self.number}, {place}"

    def get(self, field_name: str) -> str:
        header = self.mapping.columns.get(field_name)
        return self.cells[header] if header else ""

    def required(self, field_name: str) -> str:
        value = self.get(field_name)
        if not value:
            raise MappingError(self.where(field_name), f"{field_name} is empty")
        return value

    def coded(self, field_name: str) -> str:
        """The cell looked up in the mapping's `values` table ('' when empty)."""
        text = self.get(field_name)
        if not text:
            return ""
        table = self.mapping.values[field_name]
        if text not in table:
            known = ", ".join(table)
            reason = f"{text!r} is not in the mapping's {field_name} values ({known})"
            raise MappingError(self.where(field_name), reason)
        return table[text]

    def date(self, field_name: str) -> str | None:
        text = self.get(field_name)
        if not text:
            return None
        return self._parse(field_name, text, self.mapping.date_formats, "date").date().isoformat()

    def date_time(self, field_name: str) -> str | None:
        """A FHIR dateTime (seconds and the mapping's UTC offset; valid as an instant too)."""
        text = self.get(field_name)
        if not text:
            return None
        formats = self.mapping.datetime_formats
        moment = self._parse(field_name, text, formats, "date/time")
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + self.mapping.timezone

    def _parse(self, field_name: str, text: str, formats: tuple[str, ...], what: str) -> datetime:
        for fmt in formats:
            try:
                return datetime.strptime(text, fmt)
            except ValueError:
                continue
        reason = f"{text!r} is not a {what} (formats: {', '.join(formats)})"
        raise MappingError(self.where(field_name), reason)


def _patient(row: _Row, checked: set[str]) -> tuple[dict[str, Any], SourcePatient]:
    """The row's Patient, validated once per file: its id covers all of its content."""
    m = row.mapping
    value = row.required("patient_id")
    name: dict[str, Any] = {}
    if row.get("patient_name"):
        name["text"] = row.get("patient_name")
    if row.get("family_name"):
        name["family"] = row.get("family_name")
    if row.get("given_name"):
        name["given"] = [row.get("given_name")]
    gender = row.coded("sex") or None
    birth_date = row.date("birth_date")
    names = [row.get(f) for f in ("patient_name", "family_name", "given_name")]
    identity = [m.patient_id_system, value, *names, gender or "", birth_date or ""]
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        # The same patient on many rows is one identical resource.
        "id": resource_id(m.mapping_id, m.facility, "Patient", *identity),
        "identifier": [
            {"type": identifier_type("MR"), "system": m.patient_id_system, "value": value}
        ],
    }
    if name:
        patient["name"] = [name]
    if gender:
        patient["gender"] = gender
    if birth_date:
        patient["birthDate"] = birth_date
    source = SourcePatient(
        identifier=value,
        system=m.patient_id_system,
        family=row.get("family_name") or None,
        given=row.get("given_name") or None,
        birth_date=birth_date,
        sex=gender,
    )
    if patient["id"] not in checked:
        validated(patient)
        checked.add(patient["id"])
    return patient, source


def _code(row: _Row) -> dict[str, Any]:
    """The row's codings (local, LOINC, ATC...) from the mapping's `codes` columns."""
    m = row.mapping
    codings = []
    text = ""
    for columns in m.codes:
        code = row.cells[columns.code]
        display = row.cells[columns.display] if columns.display else ""
        text = text or display
        if not code:
            continue
        name = columns.system
        if name.startswith("local:"):
            system = conv.local_system(m.facility, name.removeprefix("local:"))
        else:
            system = code_system(name, m.facility)
        where = f"row {row.number}, column {columns.code!r}"
        codings.append(coding(code, display, system, where))
    if not codings:
        first = m.codes[0].code
        raise MappingError(f"row {row.number}, column {first!r}", "the row has no code")
    concept: dict[str, Any] = {"coding": codings}
    if text:
        concept["text"] = text
    return concept


def _unit(row: _Row, field_name: str) -> dict[str, Any]:
    """Quantity unit fields for a unit cell (UCUM when it is or plainly spells UCUM)."""
    text = row.get(field_name)
    if not text:
        return {}
    return unit_fields(text, text, "", row.mapping.facility, row.where(field_name))


def _lab_value(row: _Row, unit: dict[str, Any]) -> dict[str, Any]:
    """The result cell as a quantity (with comparator), ratio, coded answer or text."""
    text = row.required("result")
    where = row.where("result")
    value_type = row.coded("value_type")
    coded = row.mapping.coded_values.get("result", {}).get(text)
    if coded and value_type in ("", "CWE"):
        return {"valueCodeableConcept": {"coding": [coded], "text": text}}
    if value_type == "CWE":
        known = ", ".join(row.mapping.coded_values.get("result", {}))
        raise MappingError(where, f"{text!r} is not in the mapping's result codes ({known})")
    compared = _COMPARED.fullmatch(text)
    if value_type in ("", "NM") and compared and conv.is_number(compared.group(2)):
        value = quantity(compared.group(2), unit, where)
        return {"valueQuantity": {**value, "comparator": _COMPARATORS[compared.group(1)]}}
    if value_type in ("", "NM") and conv.is_number(text):
        return {"valueQuantity": quantity(text, unit, where)}
    ratio = _RATIO.fullmatch(text)
    if value_type in ("", "NM") and ratio:
        parts = [quantity(ratio.group(i), {}, where) for i in (1, 2)]
        return {"valueRatio": {"numerator": parts[0], "denominator": parts[1]}}
    if value_type == "NM":
        raise MappingError(where, f"{text!r} is not a number")
    return {"valueString": text}


def _observation(row: _Row, subject: dict[str, Any], row_key: str) -> dict[str, Any]:
    """A lab-result row -> Observation."""
    m = row.mapping
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id(m.mapping_id, m.facility, row_key, "Observation"),
    }
    if row.get("report_id"):
        system = f"urn:medchain:lab-report:{urn_part(m.facility)}"
        obs["identifier"] = [
            {"type": identifier_type("FILL"), "system": system, "value": row.get("report_id")}
        ]
    obs["status"] = row.coded("status") or m.defaults["status"]
    obs["category"] = [conv.laboratory_category()]
    obs["code"] = _code(row)
    obs["subject"] = subject
    collected = row.date_time("collected")
    if collected:
        obs["effectiveDateTime"] = collected
    reported = row.date_time("reported")
    if reported:
        obs["issued"] = reported
    unit = _unit(row, "unit")
    obs |= _lab_value(row, unit)
    flag = row.coded("flag")
    if flag:
        obs["interpretation"] = [interpretation(flag, row.where("flag"))]
    ref_range = reference_range(row.get("reference_range"), unit, row.where("reference_range"))
    if ref_range:
        obs["referenceRange"] = [ref_range]
    return validated(obs)


def _dosage(row: _Row) -> dict[str, Any]:
    """Instructions, frequency, route and dose of a prescription row -> Dosage."""
    dosage: dict[str, Any] = {}
    if row.get("instructions"):
        dosage["text"] = row.get("instructions")
    frequency = row.coded("frequency")
    if frequency == "PRN":
        dosage["asNeededBoolean"] = True
    elif frequency == "ONCE":
        dosage["timing"] = {"repeat": {"count": 1}}
    elif frequency:
        known = conv.FREQUENCIES[frequency]
        timing: dict[str, Any] = {"repeat": conv.timing_repeat(known)}
        code = {"system": conv.GTS_ABBREVIATION, "code": known.gts} if known.gts else None
        timing["code"] = {"text": row.get("frequency")} | ({"coding": [code]} if code else {})
        dosage["timing"] = timing
    route_text = row.get("route")
    if route_text:
        route = row.mapping.coded_values["route"].get(route_text)
        if route is None:
            known_routes = ", ".join(row.mapping.coded_values["route"])
            reason = f"{route_text!r} is not in the mapping's routes ({known_routes})"
            raise MappingError(row.where("route"), reason)
        dosage["route"] = {"coding": [route], "text": route_text}
    if row.get("dose"):
        dose = quantity(row.get("dose"), _unit(row, "dose_unit"), row.where("dose"))
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
    return dosage


def _medication_request(row: _Row, subject: dict[str, Any], row_key: str) -> dict[str, Any]:
    """A prescription row -> MedicationRequest; the prescription number groups its lines."""
    m = row.mapping
    rx = row.required("prescription_id")
    line = row.get("line_no")
    system = f"urn:medchain:prescription:{urn_part(m.facility)}"
    mr: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": resource_id(m.mapping_id, m.facility, row_key, "MedicationRequest"),
        "identifier": [
            {
                "type": identifier_type("PLAC"),
                "system": system,
                "value": f"{rx}-{line}" if line else rx,
            }
        ],
        "status": row.coded("status") or m.defaults["status"],
        "intent": "order",
    }
    medication = _code(row)
    if row.get("strength"):
        name = medication.get("text", "")
        medication["text"] = f"{name} {row.get('strength')}".strip()
    mr["medicationCodeableConcept"] = medication
    mr["subject"] = subject
    authored = row.date_time("authored")
    if authored:
        mr["authoredOn"] = authored
    requester: dict[str, Any] = {}
    if row.get("prescriber_id"):
        practitioner = f"urn:medchain:practitioner:{urn_part(m.facility)}"
        requester["identifier"] = {"system": practitioner, "value": row.get("prescriber_id")}
    if row.get("prescriber"):
        requester["display"] = row.get("prescriber")
    if requester:
        mr["requester"] = requester
    mr["groupIdentifier"] = {"system": system, "value": rx}
    dosage = _dosage(row)
    if dosage:
        mr["dosageInstruction"] = [dosage]
    dispense: dict[str, Any] = {}
    if row.get("quantity"):
        unit = _unit(row, "quantity_unit")
        dispense["quantity"] = quantity(row.get("quantity"), unit, row.where("quantity"))
    if row.get("days"):
        days = integer_value(row.get("days"), row.where("days"))
        dispense["expectedSupplyDuration"] = {
            "value": days,
            "unit": "d",
            "system": UCUM,
            "code": "d",
        }
    if dispense:
        mr["dispenseRequest"] = dispense
    return validated(mr)


# ---- files ------------------------------------------------------------------------


class _LineTap:
    """Feeds csv.reader line by line and keeps the lines of the current record."""

    def __init__(self, text: str) -> None:
        self._lines = iter(io.StringIO(text, newline=""))
        self.taken: list[str] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        return line

    def pop(self) -> str:
        text, self.taken = "".join(self.taken), []
        return text


def _decode(raw: bytes, mapping: CsvMapping) -> str:
    try:
        return raw.decode(mapping.encoding)
    except UnicodeDecodeError as e:
        row = raw[: e.start].count(b"\n") + 1
        reason = f"not valid {mapping.encoding} (byte {e.start}); check the mapping's encoding"
        raise MappingError(f"row {row}", reason) from None


def convert_csv(raw: bytes, mapping: CsvMapping) -> list[Conversion]:
    """One Conversion per data row; any bad row rejects the whole file (no partial result)."""
    text = _decode(raw, mapping)
    codec = codecs.lookup(mapping.encoding).name
    out_codec = "utf-8" if codec == "utf-8-sig" else codec
    tap = _LineTap(text)
    reader = csv.reader(tap, delimiter=mapping.delimiter, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise MappingError("row 1", "the file is empty (no header row)") from None
    except csv.Error as e:
        raise MappingError("row 1", f"not CSV: {e}") from None
    header_text = tap.pop()
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise MappingError("row 1", f"column(s) {', '.join(duplicates)} appear more than once")
    needed = {h: f for f, h in mapping.columns.items()}
    needed |= {c.code: "code" for c in mapping.codes}
    needed |= {c.display: "display" for c in mapping.codes if c.display}
    for column, name in needed.items():
        if column not in header:
            raise MappingError("row 1", f"column {column!r} ({name}) is missing")
    conversions = []
    checked: set[str] = set()
    number = 1
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise MappingError(f"row {number}", f"not CSV: {e}") from None
        row_text = tap.pop()
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            reason = f"has {len(cells)} cells, the header has {len(header)}"
            raise MappingError(f"row {number}", reason)
        row = _Row(mapping, {h: c.strip() for h, c in zip(header, cells, strict=True)}, number)
        source = (header_text + row_text).encode(out_codec)
        conversions.append(_convert_row(row, source, checked))
    return conversions


def _convert_row(row: _Row, source: bytes, checked: set[str]) -> Conversion:
    patient, source_patient = _patient(row, checked)
    subject = {"reference": f"Patient/{patient['id']}"}
    row_key = sm3(source).hex()
    m = row.mapping
    if m.kind == "lab-result":
        resource = _observation(row, subject, row_key)
    else:
        resource = _medication_request(row, subject, row_key)
    return Conversion(m.mapping_id, m.mapping_hash, source, source_patient, [patient, resource])
