"""CSV exports -> FHIR R4: a LIS lab export and a HIS prescription export, row by row."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from medchain.crypto import sm3
from medchain.fhir.conversion import (
    MappingError,
    decimal_fields,
    reference_range,
    ucum_code,
    validated,
)
from medchain.fhir.csv_map import CsvMapping, convert_csv, load_mapping
from medchain.fhir.validate import canonical_json

TESTS_DATA = Path(__file__).parent / "data"
MAPPINGS = Path(__file__).parents[1] / "src" / "medchain" / "fhir" / "mappings"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ATC = "http://www.whocc.no/atc"
V2_ROUTE = "http://terminology.hl7.org/CodeSystem/v2-0162"
GTS = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"
PRECISION = "http://hl7.org/fhir/StructureDefinition/quantity-precision"

# One line per data row of lis_lab_results.csv:
# (local code, LOINC, value, comparator, unit code, (low, high), range text, flag, status)
LAB_ROWS: list[tuple[str, str | None, str, str | None, str | None, Any, str, str | None, str]] = [
    ("GLU", "14749-6", "7.80", None, "mmol/L", ("3.9", "6.1"), "3.9-6.1", "H", "final"),
    ("HBA1C", "4548-4", "6.9", None, "%", ("4.0", "6.0"), "4.0-6.0", "H", "final"),
    ("ALT", "1742-6", "35", None, "U/L", ("9", "50"), "9-50", None, "final"),
    ("CREA", "14682-9", "88", None, "umol/L", ("57", "97"), "57-97", None, "final"),
    ("WBC", "6690-2", "11.62", None, "10^9/L", ("3.5", "9.5"), "3.5-9.5", "H", "final"),
    ("HGB", "718-7", "108", None, "g/L", ("115", "150"), "115-150", "L", "final"),
    ("PLT", "777-3", "210", None, "10^9/L", ("125", "350"), "125-350", None, "final"),
    ("CRP", "1988-5", "0.50", "<", "mg/L", ("0", "10"), "0-10", None, "final"),
    ("HBSAG", "5196-1", "阴性", None, None, None, "阴性", None, "preliminary"),
    ("TT", None, "16.2", None, "s", ("14", "21"), "14-21", None, "preliminary"),
    ("UCOL", "5778-6", "淡黄色", None, None, None, "", None, "preliminary"),
]
LAB_PATIENTS = [("MZ0012345", "王小明", "male", "1985-03-12")] * 4
LAB_PATIENTS += [("ZY0098765", "李秀英", "female", "1958-11-02")] * 4
LAB_PATIENTS += [("MZ0023456", "陈建国", "male", "1972-07-21")] * 3

# (prescription-line, local code, ATC, dose, dose unit (code or None), unit text, route,
#  frequency (GTS or None), quantity, quantity unit, days, status)
RX_ROWS: list[
    tuple[str, str, str | None, str, str | None, str, str, str | None, int, str, int, str]
]
RX_ROWS = [
    (
        "CF202403050001-1",
        "YP001234",
        "A10BA02",
        "0.5",
        "g",
        "g",
        "PO",
        "BID",
        2,
        "盒",
        14,
        "active",
    ),
    (
        "CF202403050001-2",
        "YP004521",
        "A10BH01",
        "100",
        "mg",
        "mg",
        "PO",
        "QD",
        2,
        "盒",
        14,
        "active",
    ),
    ("CF202403050002-1", "YP002210", "J01DD04", "2.0", "g", "g", "IV", "QD", 6, "支", 3, "active"),
    (
        "CF202403050002-2",
        "YP003318",
        "R05CB06",
        "10",
        "ml",
        "ml",
        "PO",
        "TID",
        1,
        "瓶",
        5,
        "active",
    ),
    (
        "CF202403050003-1",
        "YP005102",
        "M01AE01",
        "0.3",
        "g",
        "g",
        "PO",
        None,
        1,
        "盒",
        3,
        "cancelled",
    ),
    ("CF202403050003-2", "YP006001", None, "3", None, "片", "PO", "TID", 1, "瓶", 7, "active"),
]


def lab_file() -> bytes:
    return (TESTS_DATA / "lis_lab_results.csv").read_bytes()


def rx_file() -> bytes:
    return (TESTS_DATA / "his_prescriptions.csv").read_bytes()


def lines(raw: bytes, encoding: str) -> list[str]:
    return raw.decode(encoding).split("\r\n")


def rewrite(raw: bytes, encoding: str, row: int, column: str, value: str) -> bytes:
    """`raw` with one cell changed (row numbers as a spreadsheet shows them: header is 1)."""
    records = list(csv.reader(io.StringIO(raw.decode(encoding), newline="")))
    records[row - 1][records[0].index(column)] = value
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(records)
    return out.getvalue().encode(encoding)


def as_decimal(value: Any) -> Decimal:
    return Decimal(str(value))


# ---- lab results ------------------------------------------------------------------


def test_lab_export_gives_one_patient_and_observation_per_row() -> None:
    conversions = convert_csv(lab_file(), load_mapping("lab-result"))
    assert len(conversions) == len(LAB_ROWS)
    for conv, row, who in zip(conversions, LAB_ROWS, LAB_PATIENTS, strict=True):
        patient, obs = conv.resources
        local, loinc, value, comparator, unit, bounds, range_text, flag, status = row
        assert obs["subject"] == {"reference": f"Patient/{patient['id']}"}
        assert obs["code"]["coding"][0]["system"] == "urn:medchain:local:lis:lis-item"
        assert obs["code"]["coding"][0]["code"] == local
        if loinc:
            assert obs["code"]["coding"][1] == {"system": LOINC, "code": loinc}
        else:
            assert len(obs["code"]["coding"]) == 1
        assert obs["status"] == status
        if unit:
            quantity = obs["valueQuantity"]
            assert as_decimal(quantity["value"]) == Decimal(value)
            assert (quantity["system"], quantity["code"]) == (UCUM, unit)
            assert quantity.get("comparator") == comparator
        if bounds:
            ref = obs["referenceRange"][0]
            assert (as_decimal(ref["low"]["value"]), as_decimal(ref["high"]["value"])) == tuple(
                Decimal(b) for b in bounds
            )
        if range_text:
            assert obs["referenceRange"][0]["text"] == range_text
        flags = [c["coding"][0]["code"] for c in obs.get("interpretation", [])]
        assert flags == ([flag] if flag else [])
        identifier, name, gender, born = who
        assert patient["identifier"][0] == {
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                ]
            },
            "system": "urn:medchain:mrn:lis",
            "value": identifier,
        }
        assert patient["name"] == [{"text": name}]
        assert (patient["gender"], patient["birthDate"]) == (gender, born)
        assert (conv.patient.identifier, conv.patient.sex, conv.patient.birth_date) == (
            identifier,
            gender,
            born,
        )
        for resource in conv.resources:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_lab_values_keep_precision_units_and_qualitative_codes() -> None:
    conversions = convert_csv(lab_file(), load_mapping("lab-result"))
    glucose = conversions[0].resources[1]
    assert glucose["valueQuantity"]["value"] == 7.8
    assert glucose["valueQuantity"]["_value"]["extension"] == [
        {"url": PRECISION, "valueInteger": 2}  # written "7.80"
    ]
    assert glucose["effectiveDateTime"] == "2024-03-05T08:12:00+08:00"
    assert glucose["issued"] == "2024-03-05T10:40:12+08:00"
    assert glucose["identifier"][0]["value"] == "R20240305001"
    creatinine = conversions[3].resources[1]["valueQuantity"]
    assert (creatinine["unit"], creatinine["code"]) == ("μmol/L", "umol/L")  # as written / UCUM
    hbsag = conversions[8].resources[1]
    assert hbsag["valueCodeableConcept"] == {
        "coding": [
            {"system": "http://snomed.info/sct", "code": "260385009", "display": "Negative"}
        ],
        "text": "阴性",
    }
    assert conversions[10].resources[1]["valueString"] == "淡黄色"


def test_rows_of_one_patient_share_one_identical_patient_resource() -> None:
    conversions = convert_csv(lab_file(), load_mapping("lab-result"))
    patients = {json.dumps(c.resources[0], sort_keys=True) for c in conversions}
    assert len(patients) == 3
    assert len({c.resources[1]["id"] for c in conversions}) == len(conversions)


def test_each_conversion_keeps_the_header_and_its_row_as_source_bytes() -> None:
    raw = lab_file()
    text_lines = raw.removeprefix(b"\xef\xbb\xbf").split(b"\r\n")
    conversions = convert_csv(raw, load_mapping("lab-result"))
    for i, conv in enumerate(conversions, start=1):
        assert conv.input == text_lines[0] + b"\r\n" + text_lines[i] + b"\r\n"


def test_csv_conversion_is_deterministic_and_hashes_the_mapping_file() -> None:
    mapping = load_mapping("lab-result")
    assert convert_csv(lab_file(), mapping) == convert_csv(lab_file(), mapping)
    definition = json.loads((MAPPINGS / "lab-result.json").read_text(encoding="utf-8"))
    assert mapping.mapping_hash == sm3(canonical_json(definition))
    conv = convert_csv(lab_file(), mapping)[0]
    assert (conv.mapping_id, conv.mapping_hash) == ("csv-lab/1", mapping.mapping_hash)


# ---- prescriptions ----------------------------------------------------------------


def test_prescription_export_gives_medication_requests_with_codes_doses_and_routes() -> None:
    mapping = load_mapping("prescription")
    assert mapping.encoding == "gb18030"
    conversions = convert_csv(rx_file(), mapping)
    assert len(conversions) == len(RX_ROWS)
    for conv, row in zip(conversions, RX_ROWS, strict=True):
        (
            rx_line,
            local,
            atc,
            dose,
            unit,
            unit_text,
            route,
            gts,
            amount,
            amount_unit,
            days,
            status,
        ) = row
        patient, mr = conv.resources
        get_fhir_model_class("MedicationRequest").model_validate(mr)
        assert mr["subject"] == {"reference": f"Patient/{patient['id']}"}
        assert mr["identifier"][0]["value"] == rx_line
        assert mr["groupIdentifier"]["value"] == rx_line.rsplit("-", 1)[0]
        assert (mr["status"], mr["intent"]) == (status, "order")
        codings = mr["medicationCodeableConcept"]["coding"]
        assert codings[0]["system"] == "urn:medchain:local:his:drug"
        assert codings[0]["code"] == local
        assert codings[1:] == ([{"system": ATC, "code": atc}] if atc else [])
        dosage = mr["dosageInstruction"][0]
        quantity = dosage["doseAndRate"][0]["doseQuantity"]
        assert as_decimal(quantity["value"]) == Decimal(dose)
        assert quantity["unit"] == unit_text
        assert quantity.get("code") == unit
        assert dosage["route"]["coding"][0]["system"] == V2_ROUTE
        assert dosage["route"]["coding"][0]["code"] == route
        if gts:
            assert dosage["timing"]["code"]["coding"] == [{"system": GTS, "code": gts}]
        dispense = mr["dispenseRequest"]
        assert dispense["quantity"] == {"value": amount, "unit": amount_unit}
        assert dispense["expectedSupplyDuration"] == {
            "value": days,
            "unit": "d",
            "system": UCUM,
            "code": "d",
        }


def test_prescription_details_requester_timing_prn_and_multiline_instructions() -> None:
    conversions = convert_csv(rx_file(), load_mapping("prescription"))
    metformin = conversions[0].resources[1]
    assert metformin["requester"] == {
        "identifier": {"system": "urn:medchain:practitioner:his", "value": "D1024"},
        "display": "刘建华",
    }
    assert metformin["authoredOn"] == "2024-03-05T10:55:00+08:00"
    assert metformin["medicationCodeableConcept"]["text"] == "盐酸二甲双胍片 0.5g*20片"
    timing = metformin["dosageInstruction"][0]["timing"]
    assert timing["repeat"] == {"frequency": 2, "period": 1, "periodUnit": "d"}
    assert timing["code"]["text"] == "bid"
    ceftriaxone = conversions[2]
    instructions = ceftriaxone.resources[1]["dosageInstruction"][0]["text"]
    assert instructions == "皮试阴性后使用,\r\n用0.9%氯化钠注射液100ml溶解"  # quoted, two lines
    assert ceftriaxone.input.count(b"\r\n") == 3  # header + a record spanning two lines
    ibuprofen = conversions[4].resources[1]["dosageInstruction"][0]
    assert ibuprofen["asNeededBoolean"] is True
    assert "timing" not in ibuprofen
    assert conversions[4].input.decode("gb18030").endswith("已作废\r\n")


# ---- bad rows: the whole file is rejected, naming row and column ---------------------

LAB_COLUMN_ERRORS = [
    (3, "出生日期", "1985-13-40", "'1985-13-40' is not a date"),
    (2, "性别", "X", "'X' is not in the mapping's sex values"),
    (4, "结果标志", "??", "'??' is not in the mapping's flag values"),
    (5, "结果", "abc", "'abc' is not a number"),
    (10, "结果", "弱阳性", "'弱阳性' is not in the mapping's result codes"),
    (2, "病历号", "", "patient_id is empty"),
    (6, "采样时间", "2024-03-05 25:00:00", "is not a date/time"),
    (7, "审核状态", "已签发", "'已签发' is not in the mapping's status values"),
]


@pytest.mark.parametrize(("row", "column", "value", "reason"), LAB_COLUMN_ERRORS)
def test_bad_lab_cell_rejects_the_file_naming_row_and_column(
    row: int, column: str, value: str, reason: str
) -> None:
    raw = rewrite(lab_file(), "utf-8-sig", row, column, value)
    with pytest.raises(MappingError) as caught:
        convert_csv(raw, load_mapping("lab-result"))
    assert caught.value.where == f"row {row}, column {column!r}"
    assert reason in caught.value.reason


RX_COLUMN_ERRORS = [
    (3, "单次剂量", "abc", "'abc' is not a number"),
    (2, "给药途径", "鼻饲", "'鼻饲' is not in the mapping's routes"),
    (4, "用药天数", "3.5", "'3.5' is not a whole number"),
    (7, "频次", "每周五次", "'每周五次' is not in the mapping's frequency values"),
    (2, "处方号", "", "prescription_id is empty"),
]


@pytest.mark.parametrize(("row", "column", "value", "reason"), RX_COLUMN_ERRORS)
def test_bad_prescription_cell_rejects_the_file_naming_row_and_column(
    row: int, column: str, value: str, reason: str
) -> None:
    raw = rewrite(rx_file(), "gb18030", row, column, value)
    with pytest.raises(MappingError) as caught:
        convert_csv(raw, load_mapping("prescription"))
    assert caught.value.where == f"row {row}, column {column!r}"
    assert reason in caught.value.reason


def test_a_bad_last_row_means_no_result_at_all() -> None:
    """Only the last row is wrong: nothing comes back, the error points at that row."""
    last = len(LAB_ROWS) + 1
    raw = rewrite(lab_file(), "utf-8-sig", last, "出生日期", "昨天")
    result = None
    with pytest.raises(MappingError) as caught:
        result = convert_csv(raw, load_mapping("lab-result"))
    assert result is None
    assert caught.value.where == f"row {last}, column '出生日期'"


def test_row_without_any_code_is_rejected() -> None:
    raw = rewrite(lab_file(), "utf-8-sig", 2, "项目代码", "")
    raw = rewrite(raw, "utf-8-sig", 2, "LOINC", "")
    with pytest.raises(MappingError, match=r"^row 2, column '项目代码': the row has no code$"):
        convert_csv(raw, load_mapping("lab-result"))


def test_malformed_files_are_rejected() -> None:
    mapping = load_mapping("lab-result")
    rows = lines(lab_file(), "utf-8-sig")
    short_row = [*rows[:5], rows[5].rsplit(",", 1)[0], *rows[6:]]
    cases = [
        ("\r\n".join(short_row).encode("utf-8"), "row 6", "has 17 cells, the header has 18"),
        ("\r\n".join([rows[0].replace("结果,", "值,"), *rows[1:]]).encode(), "row 1", "'结果'"),
        (b"", "row 1", "the file is empty"),
        (rx_file(), "row 1", "not valid utf-8-sig"),  # a GB 18030 file read as UTF-8
    ]
    for raw, where, reason in cases:
        with pytest.raises(MappingError) as caught:
            convert_csv(raw, mapping)
        assert caught.value.where == where
        assert reason in caught.value.reason


def test_blank_lines_are_skipped_and_counted_as_rows() -> None:
    rows = lines(lab_file(), "utf-8-sig")
    raw = "\r\n".join([*rows[:2], "", *rows[2:]]).encode("utf-8")
    assert len(convert_csv(raw, load_mapping("lab-result"))) == len(LAB_ROWS)
    bad = rewrite(raw, "utf-8", 4, "性别", "X")  # row 3 is the blank line
    with pytest.raises(MappingError, match=r"^row 4, column '性别'"):
        convert_csv(bad, load_mapping("lab-result"))


# ---- mapping files ----------------------------------------------------------------


def write_mapping(tmp_path: Path, definition: dict[str, Any]) -> Path:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(definition, ensure_ascii=False), encoding="utf-8")
    return path


def test_a_hospital_mapping_file_with_its_own_headers(tmp_path: Path) -> None:
    """Another LIS: English headers, semicolons, slashes in dates, one coding column."""
    mapping = load_mapping(
        write_mapping(
            tmp_path,
            {
                "mapping_id": "csv-lab-westlis/2",
                "kind": "lab-result",
                "facility": "SZ-PH2",
                "encoding": "utf-8",
                "delimiter": ";",
                "timezone": "+08:00",
                "date_formats": ["%Y/%m/%d"],
                "datetime_formats": ["%Y/%m/%d %H:%M"],
                "patient_id_system": "urn:oid:2.16.156.10011.1.99",
                "columns": {
                    "patient_id": "MRN",
                    "family_name": "Surname",
                    "given_name": "Given",
                    "result": "Value",
                    "unit": "Unit",
                    "collected": "Drawn",
                },
                "codes": [{"code": "Test", "display": "Name", "system": "LN"}],
                "defaults": {"status": "final"},
            },
        )
    )
    raw = "MRN;Surname;Given;Test;Name;Value;Unit;Drawn\n"
    raw += "A-17;Zhou;Min;2345-7;Glucose;105;mg/dL;2024/3/5 7:05\n"
    (conv,) = convert_csv(raw.encode(), mapping)
    patient, obs = conv.resources
    assert patient["identifier"][0]["system"] == "urn:oid:2.16.156.10011.1.99"
    assert patient["name"] == [{"family": "Zhou", "given": ["Min"]}]
    assert (conv.patient.family, conv.patient.given) == ("Zhou", "Min")
    assert obs["code"] == {
        "coding": [{"system": LOINC, "code": "2345-7", "display": "Glucose"}],
        "text": "Glucose",
    }
    assert obs["valueQuantity"] == {"value": 105, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}
    assert obs["effectiveDateTime"] == "2024-03-05T07:05:00+08:00"
    assert conv.mapping_id == "csv-lab-westlis/2"


def test_with_facility_moves_local_codes_and_changes_the_hash() -> None:
    default = load_mapping("lab-result")
    pumch = default.with_facility("PUMCH-LIS")
    assert isinstance(pumch, CsvMapping)
    assert pumch.mapping_hash != default.mapping_hash
    obs = convert_csv(lab_file(), pumch)[0].resources[1]
    assert obs["code"]["coding"][0]["system"] == "urn:medchain:local:PUMCH-LIS:lis-item"
    assert load_mapping("lab-result") is default  # bundled files are read once


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"colour": "blue"}, "colour"),
        ({"kind": "radiology"}, "kind"),
        ({"timezone": "Asia/Shanghai"}, "timezone"),
        ({"encoding": "utf-9"}, "encoding"),
        ({"columns": {"patient_id": "病历号"}}, "columns.result"),
        (
            {"columns": {"patient_id": "病历号", "result": "结果", "nonsense": "x"}},
            "columns.nonsense",
        ),
        ({"values": {"sex": {"男": "man"}}}, "values.sex.男"),
        ({"values": {"flag": {"↑": "HIGH"}}}, "values.flag.↑"),
        ({"defaults": {"status": "done"}}, "defaults.status"),
        ({"codes": []}, "codes"),
    ],
)
def test_invalid_mapping_file_is_rejected_naming_the_key(
    tmp_path: Path, change: dict[str, Any], where: str
) -> None:
    definition = json.loads((MAPPINGS / "lab-result.json").read_text(encoding="utf-8"))
    definition.update(change)
    path = write_mapping(tmp_path, definition)
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert caught.value.where == f"mapping {path}, {where}"


def test_unknown_mapping_name_or_path_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot be read"):
        load_mapping("radiology")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(MappingError, match="not JSON"):
        load_mapping(tmp_path / "broken.json")


# ---- the shared building blocks ---------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "code"),
    [
        ("mmol/L", "mmol/L"),
        ("mg/dl", "mg/dl"),
        ("10*6/uL", "10*6/uL"),
        ("10^9/L", "10^9/L"),
        ("{cells}/uL", "{cells}/uL"),
        ("mm[Hg]", "mm[Hg]"),
        ("%", "%"),
        ("μmol/L", "umol/L"),
        ("×10^12/L", "10^12/L"),
        ("IU/mL", "[IU]/mL"),
        ("mg/hr", None),
        ("beats/min", None),
        ("片", None),
        ("43", None),
        ("caps", None),
    ],
)
def test_units_that_are_or_plainly_spell_ucum(unit: str, code: str | None) -> None:
    assert ucum_code(unit) == code


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("3.5-5.5", 3.5, 5.5),
        ("70_105", 70, 105),
        ("4.3 to 6.2", 4.3, 6.2),
        ("3.9--6.1", 3.9, 6.1),
        ("0.5～1.2", 0.5, 1.2),
        ("<=40", None, 40),
        (">=1.0", 1.0, None),
        ("<5", None, None),
        ("阴性", None, None),
    ],
)
def test_reference_range_forms(text: str, low: float | None, high: float | None) -> None:
    ref = reference_range(text, {}, "here")
    assert ref is not None
    assert ref["text"] == text
    assert ref.get("low", {}).get("value") == low
    assert ref.get("high", {}).get("value") == high


@pytest.mark.parametrize(
    ("text", "value", "places"),
    [("5", 5, None), ("5.0", 5.0, None), ("7.80", 7.8, 2), ("+0.100", 0.1, 3), (".5", 0.5, None)],
)
def test_decimals_keep_their_written_precision(text: str, value: float, places: int | None) -> None:
    fields = decimal_fields(text, "here")
    assert fields["value"] == value
    if places is None:
        assert "_value" not in fields
    else:
        assert fields["_value"]["extension"] == [{"url": PRECISION, "valueInteger": places}]
    with pytest.raises(MappingError, match=r"^here: '1,5' is not a number$"):
        decimal_fields("1,5", "here")


def test_a_resource_the_r4_model_rejects_is_a_mapping_error_naming_the_field() -> None:
    with pytest.raises(MappingError) as caught:
        validated({"resourceType": "Observation", "id": "o-1", "status": "final"})
    assert caught.value.where == "Observation.code"
    assert "not valid FHIR R4" in caught.value.reason
