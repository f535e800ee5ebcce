"""HL7 v2 mapping versions (issue 13 point 5): a record names its mapping by a
declared version and the tables as data, so reformatting or splitting the code
leaves old records verifiable, while a changed table cannot pass as the old
version. The fixture was made by the converter before the split (its legacy
source-bytes hash): those records must still verify, and the converter must
still write byte-identical output for them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.ledger import DATA

from medchain.crypto import sm3
from medchain.edge.importer import verify_derivation
from medchain.fhir import conversion
from medchain.fhir.conversion import MappingError
from medchain.fhir.hl7v2 import MAPPING_HASHES, VERSION, convert_message, tables
from medchain.fhir.hl7v2.versions import (
    KNOWN,
    LEGACY_SOURCE_HASH,
    known_version,
    mapping_hash,
    same_mapping,
)

FIXTURE = json.loads((DATA / "attestations" / "hl7v2-source-hash-v1.json").read_text())
MESSAGES = FIXTURE["messages"]
ADT_A01 = (DATA / "hl7v2" / "ADT01-23.hl7").read_bytes()


def message_bytes(entry: dict[str, Any]) -> bytes:
    raw = (DATA / entry["input_file"]).read_bytes()
    if "input_replace" in entry:
        old, new = entry["input_replace"]
        raw = raw.replace(old.encode(), new.encode())
    assert sm3(raw).hex() == entry["input_sm3"]
    return raw


def label(entry: dict[str, Any]) -> str:
    return entry["mapping_id"] + ":" + entry["input_file"]


@pytest.mark.parametrize("entry", MESSAGES, ids=label)
def test_converter_output_is_byte_identical_to_the_legacy_attested_code(
    entry: dict[str, Any],
) -> None:
    converted = convert_message(message_bytes(entry), version="1")
    output = json.dumps(converted.resources, ensure_ascii=False, separators=(",", ":"))
    assert converted.mapping_id == entry["mapping_id"]
    assert sm3(output.encode()).hex() == entry["fhir_output_sm3"]


@pytest.mark.parametrize("entry", MESSAGES, ids=label)
def test_records_attested_before_the_split_still_verify(entry: dict[str, Any]) -> None:
    converted = convert_message(message_bytes(entry), version="1")
    assert converted.mapping_hash != LEGACY_SOURCE_HASH  # the identity is now the version
    for item in entry["records"]:
        record, salt = item["record"], bytes.fromhex(item["salt"])
        assert record["derived_from"]["mapping_hash"] == FIXTURE["legacy_mapping_hash"]
        assert verify_derivation(record, salt, converted) == []


def test_the_legacy_hash_is_an_alias_of_version_1_only() -> None:
    assert LEGACY_SOURCE_HASH.hex() == FIXTURE["legacy_mapping_hash"]
    oru = known_version("hl7v2-oru-r01/1", LEGACY_SOURCE_HASH)
    assert oru is not None and oru.mapping_hash == mapping_hash("hl7v2-oru-r01", "1")
    assert known_version("hl7v2-oru-r01/2", LEGACY_SOURCE_HASH) is None
    assert not same_mapping("hl7v2-oru-r01/1", LEGACY_SOURCE_HASH, bytes(32))
    assert not same_mapping("csv-lab/1", LEGACY_SOURCE_HASH, oru.mapping_hash)
    # Version 2 is a new identity; version 1 stays registered under its own hash.
    oru_2 = MAPPING_HASHES["hl7v2-oru-r01/2"]
    assert oru_2 != oru.mapping_hash
    assert not same_mapping("hl7v2-oru-r01/2", LEGACY_SOURCE_HASH, oru_2)


def test_every_mapping_this_release_attests_is_registered() -> None:
    """Edit a table without bumping tables.VERSION and adding its hashes to KNOWN,
    and this fails: a changed mapping must not carry an old version's name."""
    registered = {v.mapping_id: v.mapping_hash for v in KNOWN}
    for mapping_id, produced in MAPPING_HASHES.items():
        assert mapping_id.endswith(f"/{VERSION}")
        assert registered.get(mapping_id) == produced, f"{mapping_id}: bump tables.VERSION"


def test_the_hash_covers_id_version_and_tables_not_source_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    oru = mapping_hash("hl7v2-oru-r01")
    assert oru == MAPPING_HASHES[f"hl7v2-oru-r01/{VERSION}"]
    assert mapping_hash("hl7v2-oru-r01", "1") != oru
    assert mapping_hash("hl7v2-adt-a01") != oru
    monkeypatch.setitem(tables.TABLES, "GENDERS", tables.GENDERS | {"X": "other"})
    assert mapping_hash("hl7v2-oru-r01") != oru
    monkeypatch.undo()
    monkeypatch.setitem(conversion.CODE_SYSTEMS, "MYLAB", "urn:example")  # shared table
    assert mapping_hash("hl7v2-oru-r01") != oru


def test_a_changed_mapping_does_not_verify_an_old_record() -> None:
    entry = MESSAGES[0]
    converted = convert_message(message_bytes(entry), version="1")
    item = entry["records"][0]
    record = json.loads(json.dumps(item["record"]))
    record["derived_from"]["mapping_hash"] = sm3(b"some other mapping").hex()
    problems = verify_derivation(record, bytes.fromhex(item["salt"]), converted)
    assert problems == ["a different version of the mapping made this record"]


def test_version_2_adds_the_adt_events_sharing_a01s_structure() -> None:
    """Version 2 (issue 15.5) maps ADT^A04 and the other ADT_A01/ADT_A05 events; version 1
    still runs unchanged, refuses them, and keeps its registered hashes."""
    v1 = {v.mapping_id: v.mapping_hash for v in KNOWN if v.mapping_id.endswith("/1")}
    assert len(v1) == 4 and all(v1[m] == mapping_hash(m[:-2], "1") for m in v1)
    for mapping_id in v1:
        assert MAPPING_HASHES[mapping_id[:-1] + "2"] != v1[mapping_id]
    a04 = ADT_A01.replace(b"ADT^A01", b"ADT^A04")
    assert convert_message(a04).mapping_id == "hl7v2-adt-a04/2"
    with pytest.raises(MappingError, match="ADT\\^A04' is not supported"):
        convert_message(a04, version="1")
    with pytest.raises(MappingError, match="not run here"):
        convert_message(a04, version="9")


def test_version_2_adds_the_orders_and_leaves_version_1_alone() -> None:
    """ORM^O01 and OMI^O23 (issue 15.5) are version 2 rows; the tables they added are
    not in version 1's hash, so every version 1 record keeps verifying."""
    registered = {v.mapping_id: v.mapping_hash for v in KNOWN}
    for mapping in ("hl7v2-orm-o01", "hl7v2-omi-o23"):
        assert registered[f"{mapping}/2"] == mapping_hash(mapping, "2")
        assert f"{mapping}/1" not in registered
    version_1 = tables.tables_of("1")
    assert not {"SERVICE_ORDER_STATUSES", "SERVICE_ORDER_CONTROLS", "IMAGING"} & set(version_1)
    assert "ORM^O01" not in tables.message_types_of("1")
    orm = (DATA / "hl7v2" / "ORM-O01-medchain.hl7").read_bytes()
    assert convert_message(orm).mapping_hash == registered["hl7v2-orm-o01/2"]
