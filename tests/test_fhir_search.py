"""FHIR search as the R4 specification defines it, at a custodian's edge.

A conformance table (parameter x prefix x time zone -> ids) runs on resources
written for it, stored in a real vault (SQLite, SM4) and searched through its
index; the expected ids follow from the specification's rules (3.1.1.4.2 of the
R4 search page), worked out by hand in the comments. The rest runs end to end
against a solo node and the edge's HTTP API: paging through every page,
thousands of resources of one type listed in full, _include, read and search
giving the same bytes, _history and vread, every type of a Synthea import served,
and refusals as OperationOutcomes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from support.consortium import Consortium, running_consortium
from support.ledger import CHAIN_ID, DATA

from medchain import crypto
from medchain.contracts.consent.model import CLINICAL
from medchain.contracts.exchange.model import MAX_ACCESS_RECORDS
from medchain.edge import fhir_reads
from medchain.edge.requester import import_file
from medchain.edge.search_index import SearchIndex
from medchain.edge.vault import NewRecord, Vault
from medchain.fhir.search import index_entry
from medchain.fhir.search_params import (
    SERVED_TYPES,
    date_range,
    index_format,
    index_values,
    params_of,
)
from medchain.fhir.search_query import BadSearch, UnsupportedSearch, parse_search
from medchain.fhir.validate import validate_resource
from medchain.sdk.signing import send_signed

LOINC = "http://loinc.org"
ALICE, BOB = "did:medchain:alice", "did:medchain:bob"


def observation(
    record_id: str,
    when: dict[str, Any],
    code: str = "8867-4",
    subject: str = "Patient/pat-alice",
    status: str = "final",
) -> dict[str, Any]:
    resource = {
        "resourceType": "Observation",
        "id": record_id,
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": subject},
        **when,
    }
    validate_resource(resource)  # the table's resources are valid FHIR R4
    return resource


# Each Observation's effective[x], and the range [low, high) in UTC it covers.
TABLE_RESOURCES = [
    observation("day", {"effectiveDateTime": "2020-03-15"}),  # [15th 00:00, 16th 00:00)
    observation("month", {"effectiveDateTime": "2020-03"}),  # [1 Mar, 1 Apr)
    observation("year", {"effectiveDateTime": "2020"}),  # [2020, 2021)
    observation("noon", {"effectiveDateTime": "2020-03-15T12:00:00Z"}),  # that second
    observation("late", {"effectiveDateTime": "2020-03-16T07:00:00+08:00"}),  # 15th 23:00Z
    observation("early", {"effectiveDateTime": "2020-03-15T20:30:00-05:00"}),  # 16th 01:30Z
    observation(
        "period",  # [14th 00:00, 17th 00:00:01)
        {"effectivePeriod": {"start": "2020-03-14T00:00:00Z", "end": "2020-03-17T00:00:00Z"}},
    ),
    observation("open", {"effectivePeriod": {"start": "2020-03-15T10:00:00Z"}}),  # ongoing
    observation("ms", {"effectiveDateTime": "2020-03-15T12:00:00.267+00:00"}),  # that ms
    observation("bob-hr", {"effectiveDateTime": "2019-01-01"}, "8867-4", "Patient/pat-bob"),
    observation("alice-bp", {"effectiveDateTime": "2018-06-01"}, "85354-9", status="amended"),
]
UCUM = "http://unitsofmeasure.org"
QUANTITIES = {  # valueQuantity of three of them
    "noon": {"value": 5.4, "unit": "mmol/l", "system": UCUM, "code": "mmol/L"},
    "late": {"value": 5.45, "unit": "mmol/l", "system": UCUM, "code": "mmol/L"},
    "early": {"value": 100, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
}
for _resource in TABLE_RESOURCES:
    if _resource["id"] in QUANTITIES:
        _resource["valueQuantity"] = QUANTITIES[_resource["id"]]
        validate_resource(_resource)
ALL_DATED = {"day", "month", "year", "noon", "late", "early", "period", "open", "ms"}
BEFORE = {"bob-hr", "alice-bp"}  # 2019 and 2018: below every range above
PATIENTS = [
    {
        "resourceType": "Patient",
        "id": "pat-alice",
        "name": [{"family": "Müller", "given": ["Alice", "Marie"]}],
        "gender": "female",
        "birthDate": "1980-02-29",
    },
    {
        "resourceType": "Patient",
        "id": "pat-bob",
        "name": [{"family": "Smith", "given": ["Bob"]}],
        "gender": "male",
        "birthDate": "1975",
    },
]

CONFORMANCE: list[tuple[str, str, set[str]]] = [
    # (type, query, expected ids)
    # -- dates: prefix x precision x zone; the search value is a range too
    ("Observation", "date=2020-03-15", {"day", "noon", "late", "ms"}),  # eq: contains
    ("Observation", "date=eq2020-03-15", {"day", "noon", "late", "ms"}),
    ("Observation", "date=ne2020-03-15", {"month", "year", "early", "period", "open"} | BEFORE),
    # gt: the value's range reaches above the 15th (ends after 16th 00:00)
    ("Observation", "date=gt2020-03-15", {"month", "year", "early", "period", "open"}),
    # lt: the value's range starts before the 15th
    ("Observation", "date=lt2020-03-15", {"month", "year", "period"} | BEFORE),
    ("Observation", "date=ge2020-03-15", ALL_DATED),  # gt or eq
    (
        "Observation",
        "date=le2020-03-15",
        {"month", "year", "period", "day", "noon", "late", "ms"} | BEFORE,
    ),
    ("Observation", "date=sa2020-03-15", {"early"}),  # starts after the 15th ends
    ("Observation", "date=eb2020-03-15", BEFORE),  # ends before the 15th starts
    ("Observation", "date=eb2020-03-16", {"day", "noon", "late", "ms"} | BEFORE),
    # ap: overlaps the day widened by a day each side, [13th, 16th)
    ("Observation", "date=ap2020-03-14", ALL_DATED - {"early"}),
    # partial dates: a month, a year
    ("Observation", "date=2020-03", ALL_DATED - {"year", "open"}),
    ("Observation", "date=2020", ALL_DATED - {"open"}),
    ("Observation", "date=2019", {"bob-hr"}),
    # time zones: one instant written three ways is the "late" second
    ("Observation", "date=2020-03-16T07:00:00%2B08:00", {"late"}),
    ("Observation", "date=2020-03-15T23:00:00Z", {"late"}),
    ("Observation", "date=2020-03-15T18:00:00-05:00", {"late"}),
    # an unencoded + arrives as a space: read as the zone sign it was
    ("Observation", "date=2020-03-16T07:00:00+08:00", {"late"}),
    # gt an instant: 15th 23:00:01Z is below the end of the 15th, of March, of 2020...
    (
        "Observation",
        "date=gt2020-03-16T00:00:00%2B01:00",
        {"day", "month", "year", "early", "period", "open"},
    ),
    ("Observation", "date=2020-03-15T12:00", {"noon", "ms"}),  # a minute, no zone: UTC
    ("Observation", "date=2020-03-15T12:00:00.267Z", {"ms"}),
    ("Observation", "date=2020-03-15T12:00:00Z", {"ms", "noon"}),  # ms lies in that second
    # two values OR, two parameters AND
    ("Observation", "date=2019,sa2020-03-15", {"bob-hr", "early"}),
    # ge the 15th and lt the 16th: reaches into the 15th or later, starts before the 16th
    ("Observation", "date=ge2020-03-15&date=lt2020-03-16", ALL_DATED - {"early"}),
    # -- tokens
    ("Observation", f"code={LOINC}|85354-9", {"alice-bp"}),
    ("Observation", "code=85354-9", {"alice-bp"}),
    ("Observation", "code=|85354-9", set()),  # |code: only codes without a system
    ("Observation", f"code={LOINC}|", ALL_DATED | BEFORE),  # any LOINC code
    ("Observation", "code=http://snomed.info/sct|85354-9", set()),
    ("Observation", "status=amended", {"alice-bp"}),
    ("Observation", "status=final&code=85354-9", set()),
    ("Observation", "code:not=85354-9", ALL_DATED | {"bob-hr"}),
    ("Observation", "status:not=final,amended", set()),
    # :missing
    ("Observation", "value-concept:missing=true&code=85354-9", {"alice-bp"}),
    ("Observation", "value-concept:missing=false", set()),
    ("Patient", "birthdate:missing=false", {"pat-alice", "pat-bob"}),
    ("Observation", "encounter:missing=true&_id=noon", {"noon"}),
    ("Observation", "_total=accurate&_id=noon", {"noon"}),
    # -- references: Patient/<id>, a bare id, a typed modifier, an absolute URL
    ("Observation", "subject=Patient/pat-bob", {"bob-hr"}),
    ("Observation", "patient=pat-bob", {"bob-hr"}),
    ("Observation", "subject:Patient=pat-bob", {"bob-hr"}),
    # the ledger DID: the records the custodian holds for that patient
    ("Observation", f"patient={BOB}", {"bob-hr"}),
    ("Observation", f"patient=Patient/{BOB}", {"bob-hr"}),
    # -- quantities: a number's precision is its range for eq/ne ([5.35, 5.45) for 5.4);
    # the other prefixes compare with the number itself; ap is within 10%
    ("Observation", "value-quantity=5.4", {"noon"}),
    ("Observation", "value-quantity=5.40", {"noon"}),
    ("Observation", "value-quantity=5.5", {"late"}),  # [5.45, 5.55)
    ("Observation", "value-quantity=ne5.4", {"late", "early"}),
    ("Observation", "value-quantity=gt5.4", {"late", "early"}),
    ("Observation", "value-quantity=ge5.45", {"late", "early"}),
    ("Observation", "value-quantity=lt100", {"noon", "late"}),
    ("Observation", "value-quantity=le100", {"noon", "late", "early"}),
    ("Observation", "value-quantity=sa5.4", {"late", "early"}),
    ("Observation", "value-quantity=eb100", {"noon", "late"}),
    ("Observation", "value-quantity=ap95", {"early"}),  # [85.5, 104.5]
    ("Observation", "value-quantity=ap50", set()),
    ("Observation", "value-quantity=1e2", {"early"}),  # [50, 150)
    ("Observation", f"value-quantity=5.4|{UCUM}|mmol/L", {"noon"}),
    ("Observation", "value-quantity=5.4||mmol/l", {"noon"}),  # by the unit, any system
    ("Observation", f"value-quantity=100|{UCUM}|mmol/L", set()),
    ("Observation", f"value-quantity=gt1|{UCUM}|mg/dL", {"early"}),
    # -- _id
    ("Observation", "_id=noon,late", {"noon", "late"}),
    # -- strings: starts with, case and accents ignored; :exact; :contains
    ("Patient", "name=ali", {"pat-alice"}),
    ("Patient", "family=muller", {"pat-alice"}),
    ("Patient", "family:exact=Müller", {"pat-alice"}),
    ("Patient", "family:exact=muller", set()),
    ("Patient", "given:contains=ari", {"pat-alice"}),
    ("Patient", "name=smi", {"pat-bob"}),
    ("Patient", "gender=male", {"pat-bob"}),
    ("Patient", "birthdate=1980-02", {"pat-alice"}),
    ("Patient", "birthdate=lt1976", {"pat-bob"}),
]


def store_table(root: Path) -> tuple[Vault, SearchIndex]:
    vault = Vault(root, crypto.generate_keypair())
    owner = crypto.generate_keypair().public
    records = []
    for resource in [*PATIENTS, *TABLE_RESOURCES]:
        did = BOB if "bob" in resource["id"] else ALICE
        content = json.dumps(resource).encode()
        records.append(NewRecord(resource["id"], content, owner, did, index_entry(resource)))
    vault.store_many(records)
    return vault, SearchIndex(lambda: vault.index_db)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchIndex]:
    vault, index = store_table(tmp_path_factory.mktemp("vault"))
    yield index
    vault.close()


def items_of(query: str) -> list[tuple[str, str]]:
    """The (name, value) pairs Starlette gives a route for this raw query string."""
    return list(httpx.QueryParams(query).multi_items())


@pytest.mark.parametrize(("resource_type", "query", "expected"), CONFORMANCE)
def test_search_conformance_table(
    table: SearchIndex, resource_type: str, query: str, expected: set[str]
) -> None:
    found = [rid for rid, _ in table.matches(parse_search(resource_type, items_of(query)))]
    assert len(found) == len(set(found))
    assert set(found) == expected


def test_sort_orders_are_stable_and_follow_the_dates(table: SearchIndex) -> None:
    def ids(query: str) -> list[str]:
        return [r for r, _ in table.matches(parse_search("Observation", items_of(query)))]

    oldest_first = ids("_sort=date&_id=day,noon,late,early,ms,bob-hr")
    assert oldest_first == ["bob-hr", "day", "noon", "ms", "late", "early"]
    # -date: by where each range ends, latest first (noon's second ends after ms's ms)
    assert ids("_sort=-date&_id=day,noon,late,early,ms,bob-hr") == [
        "early",
        "day",
        "late",
        "noon",
        "ms",
        "bob-hr",
    ]
    assert ids("_sort=_id&_id=noon,late,day") == ["day", "late", "noon"]
    assert ids("_sort=-_id&_id=noon,late,day") == ["noon", "late", "day"]
    assert ids("_id=noon,late,day") == ids("_id=noon,late,day")  # stable


@pytest.mark.parametrize(
    ("query", "unsupported"),
    [
        ("colour=blue", True),  # not a parameter of Observation
        ("code:text=glucose", True),  # a modifier not supported here
        ("_summary=count", True),
        ("code:missing=maybe", False),
        ("_total=exact", False),
        ("value-quantity=five", False),
        ("value-quantity=5|mg", False),
        ("value-quantity=1e99999999", False),  # was a 500: the decimal context overflowed
        ("value-quantity=le1e-99999999", False),
        ("_sort=code", True),
        ("_include=Observation:encounter", True),
        ("_include=Patient:general-practitioner", True),
        ("date=2020-13-01", False),  # no 13th month
        ("date=yesterday", False),
        ("_count=0", False),
        ("_offset=-1", False),
        ("patient=did:medchain:a,did:medchain:b", False),
    ],
)
def test_bad_and_unsupported_parameters_are_refused(query: str, unsupported: bool) -> None:
    with pytest.raises(BadSearch) as refused:
        parse_search("Observation", items_of(query))
    assert isinstance(refused.value, UnsupportedSearch) == unsupported
    if unsupported:
        lenient = parse_search("Observation", [*items_of(query), ("code", "x")], lenient=True)
        assert lenient.ignored == [items_of(query)[0][0]] and lenient.kept == [("code", "x")]


def test_every_served_type_has_its_specification_parameters() -> None:
    assert set(SERVED_TYPES) == set(CLINICAL) - {"Bundle", "Binary"}
    for resource_type in SERVED_TYPES:
        params = params_of(resource_type)
        assert params, resource_type
        if resource_type != "Patient":
            assert params["patient"].type == "reference", resource_type
            assert "Patient" in params["patient"].target
    assert params_of("Condition")["onset-date"].type == "date"
    assert params_of("Immunization")["vaccine-code"].expression == "Immunization.vaccineCode"


def resources_of_every_type() -> list[dict[str, Any]]:
    """Resources written for the types the shared data has none of (plus Synthea's)."""
    pat = {"reference": "Patient/p1"}
    concept = {"coding": [{"system": "http://snomed.info/sct", "code": "123"}]}
    return [
        {
            "resourceType": "AllergyIntolerance",
            "patient": pat,
            "code": concept,
            "recordedDate": "2021-05-01",
            "criticality": "high",
        },
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": pat,
            "type": concept,
            "date": "2021-05-01T10:00:00Z",
            "content": [{"attachment": {"contentType": "text/plain"}}],
        },
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": pat,
            "code": concept,
            "authoredOn": "2021-05-01",
        },
        {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": pat,
            "period": {"start": "2021"},
        },
        {
            "resourceType": "Goal",
            "lifecycleStatus": "active",
            "description": {"text": "walk"},
            "subject": pat,
            "startDate": "2021-05-01",
            # R4's `(Goal.target.due as date)` over two targets: both dates, no error
            "target": [{"dueDate": "2021-06-01"}, {"dueDate": "2021-09-01"}],
        },
        {
            "resourceType": "MedicationAdministration",
            "status": "completed",
            "medicationCodeableConcept": concept,
            "subject": pat,
            "effectiveDateTime": "2021-05-01T08:00:00Z",
        },
    ]


def test_specification_expressions_evaluate_on_real_and_written_data() -> None:
    """Every expression compiles and, on the Synthea and spec examples plus resources
    written for the types they lack, each served type yields its patient and a date."""
    seen: dict[str, set[str]] = {}
    files = sorted((DATA / "fhir").glob("*/*.json"))
    resources = resources_of_every_type()
    for path in files:
        data = json.loads(path.read_bytes())
        entries = (
            data.get("entry", []) if data["resourceType"] == "Bundle" else [{"resource": data}]
        )
        resources += [e["resource"] for e in entries if "resource" in e]
    for resource in resources:
        if resource["resourceType"] in SERVED_TYPES:
            found = {v.param for v in index_values(resource)}
            seen.setdefault(resource["resourceType"], set()).update(found)
    assert set(seen) == set(SERVED_TYPES)
    for resource_type in ("AllergyIntolerance", "DocumentReference", "ServiceRequest", "Goal"):
        assert "patient" in seen[resource_type], resource_type
    assert {"code", "date", "status", "category", "encounter"} <= seen["Observation"]
    assert {"vaccine-code", "date", "status"} <= seen["Immunization"]
    assert {"onset-date", "code", "clinical-status"} <= seen["Condition"]
    assert "target-date" in seen["Goal"] and "value-quantity" in seen["Observation"]
    goal = next(r for r in resources if r["resourceType"] == "Goal")
    assert len([v for v in index_values(goal) if v.param == "target-date"]) == 2
    bp = next(r for r in resources if r.get("component") and r["resourceType"] == "Observation")
    assert len([v for v in index_values(bp) if v.param == "component-value-quantity"]) >= 2


def test_date_ranges_by_precision_and_zone() -> None:
    second = 1_000_000
    low, high = date_range("2020-03-16T07:00:00+08:00")
    assert (low, high) == date_range("2020-03-15T23:00:00Z") and high - low == second
    assert date_range("2020-02")[1] - date_range("2020-02")[0] == 29 * 86_400 * second
    assert (
        date_range("2020-03-15T12:00:00.267Z")[1] - date_range("2020-03-15T12:00:00.267Z")[0]
        == 1000
    )


# -- end to end: a solo node, the edge's HTTP API, the chain deciding every hit ---------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def get(world: Consortium, who: str, target: str, **headers: str) -> httpx.Response:
    """A signed GET of `target` (a path with its query, or an absolute URL the edge gave)."""
    if target.startswith("http"):
        parts = urlsplit(target)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
    return send_signed(
        world.keys[who],
        CHAIN_ID,
        "GET",
        world.edge_url,
        target,
        headers={"X-MedChain-Purpose": "TREAT", **headers},
    )


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)


def accessed(world: Consortium, who: str) -> list[str]:
    rows = world.node.audit(actor=world.did(who), limit=1000)["events"]
    return [r["record_id"] for r in rows if r["kind"] == "exchange.accessed"]


def upload(world: Consortium, resource: dict[str, Any], **params: str) -> None:
    r = world.upload("admin_a", json.dumps(resource).encode(), world.did("patient"), **params)
    assert r.status_code == 201, r.text


def test_paging_every_page_with_included_patient_each_page_audited_when_served(
    world: Consortium,
) -> None:
    upload(world, PATIENTS[0], record_id="pat-alice")
    for i in range(7):
        obs = observation(f"obs-{i}", {"effectiveDateTime": f"2021-01-0{i + 1}"})
        upload(world, obs, record_id=f"obs-{i}")
    world.grant("doctor_b", ["Observation", "Patient"])
    patient = world.did("patient")
    first = get(
        world,
        "doctor_b",
        f"/fhir/Observation?patient={patient}&_count=3&_include=Observation:patient&_sort=date",
    )
    assert first.status_code == 200, first.text
    page = first.json()
    # only the page asked for is decided and audited, with the patient it includes
    assert sorted(accessed(world, "doctor_b")) == ["obs-0", "obs-1", "obs-2", "pat-alice"]
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        assert page["total"] == 7
        matches = [e for e in page["entry"] if e["search"]["mode"] == "match"]
        included = [e for e in page["entry"] if e["search"]["mode"] == "include"]
        assert [e["resource"]["id"] for e in included] == ["pat-alice"]
        for entry in page["entry"]:
            resource = entry["resource"]
            assert entry["fullUrl"] == (
                f"{world.edge_url}/fhir/{resource['resourceType']}/{resource['id']}"
            )
        seen += [e["resource"]["id"] for e in matches]
        assert link(page, "self") is not None and "_include" in str(link(page, "self"))
        if pages > 1:
            assert link(page, "previous") is not None
        following = link(page, "next")
        if following is None:
            break
        answer = get(world, "doctor_b", following)
        assert answer.status_code == 200, answer.text
        page = answer.json()
    assert pages == 3 and seen == [f"obs-{i}" for i in range(7)]  # oldest first, each once
    assert sorted(set(accessed(world, "doctor_b"))) == sorted(
        [f"obs-{i}" for i in range(7)] + ["pat-alice"]
    )
    # the previous link of the last page leads back to the second
    back = get(world, "doctor_b", str(link(page, "previous"))).json()
    assert [e["resource"]["id"] for e in back["entry"] if e["search"]["mode"] == "match"] == [
        "obs-3",
        "obs-4",
        "obs-5",
    ]


def test_thousands_of_one_type_are_listed_in_full(world: Consortium) -> None:
    """A patient's 1,200 Observations, stored and registered through the edge's own
    commit (one upload per record would take a block each), then listed through the
    HTTP API page by page, every one decided on chain."""
    patient = world.did("patient")
    count = 1200
    prepared = [
        world.edge.prepare_resource(
            observation(
                f"bulk-{i:04d}", {"effectiveDateTime": f"2020-01-01T00:{i // 60:02d}:{i % 60:02d}Z"}
            ),
            f"bulk-{i:04d}",
        )
        for i in range(count)
    ]
    intake = world.edge.commit(patient, prepared)
    assert len(intake.imported) == count and not intake.rejected
    world.grant("doctor_b", ["Observation"])
    target: str | None = f"/fhir/Observation?patient={patient}&_count=100&_sort=-date"
    seen: list[str] = []
    while target is not None:
        answer = get(world, "doctor_b", target)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert page["total"] == count
        seen += [e["resource"]["id"] for e in page["entry"]]
        target = link(page, "next")
    assert seen == [f"bulk-{i:04d}" for i in reversed(range(count))]


def test_read_and_search_give_the_same_bytes_with_version_and_etag(world: Consortium) -> None:
    resource = observation("obs-ms", {"effectiveDateTime": "2020-03-15T12:00:00.267+00:00"})
    resource["issued"] = "2020-03-15T12:45:45.267+00:00"
    upload(world, resource, record_id="obs-ms")
    world.grant("doctor_b", ["Observation"])
    read = get(world, "doctor_b", "/fhir/Observation/obs-ms")
    assert read.status_code == 200 and read.headers["etag"] == 'W/"1"'
    served = read.json()
    assert served["issued"] == "2020-03-15T12:45:45.267+00:00"  # as stored, not rewritten
    assert served["meta"]["versionId"] == "1" and served["meta"]["lastUpdated"]
    modified = parsedate_to_datetime(read.headers["last-modified"])
    assert modified.timestamp() == world.node.record("obs-ms")["created_time_ms"] // 1000
    found = get(world, "doctor_b", "/fhir/Observation?_id=obs-ms")
    assert read.content in found.content  # the very bytes, inside the searchset
    assert found.json()["entry"][0]["search"]["mode"] == "match"
    Bundle.model_validate(found.json())  # a valid FHIR R4 searchset


def test_history_never_serves_a_version_erased_on_chain_but_not_yet_purged(
    world: Consortium, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the edge's follow thread has not purged an erased old version
    yet (it would within its interval); _history must not serve it meanwhile."""
    world.grant("doctor_b", ["Observation"])
    first = observation("e1", {"effectiveDateTime": "2020-01-01"})
    upload(world, first, record_id="e1")
    upload(world, {**first, "status": "amended"}, record_id="e2", supersedes="e1")
    monkeypatch.setattr(world.edge, "sync", lambda: 0)  # the purge is late
    world.ok("patient", "records", "erase", {"record_id": "e1", "reason": "my right"})
    assert world.edge.vault.has("e1")  # still on disk, erased on chain
    history = get(world, "doctor_b", "/fhir/Observation/e2/_history").json()
    assert [e["resource"]["id"] for e in history["entry"]] == ["e2"]
    assert get(world, "doctor_b", "/fhir/Observation/e2/_history/1").status_code == 404


def test_history_lists_superseded_versions_and_vread_serves_each(world: Consortium) -> None:
    world.grant("doctor_b", ["Observation"])
    first = observation("v1", {"effectiveDateTime": "2020-01-01"})
    upload(world, first, record_id="v1")
    second = {**first, "status": "amended"}
    upload(world, second, record_id="v2", supersedes="v1")
    read = get(world, "doctor_b", "/fhir/Observation/v2")
    assert read.headers["etag"] == 'W/"2"' and read.json()["status"] == "amended"
    history = get(world, "doctor_b", "/fhir/Observation/v2/_history").json()
    assert history["type"] == "history" and history["total"] == 2
    Bundle.model_validate(history)
    versions = [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in history["entry"]]
    assert versions == [("v2", "2"), ("v1", "1")]
    assert history["entry"][1]["request"]["method"] == "POST"
    old = get(world, "doctor_b", "/fhir/Observation/v2/_history/1")
    assert old.status_code == 200 and old.headers["etag"] == 'W/"1"'
    assert old.json()["status"] == "final"
    superseded = get(world, "doctor_b", "/fhir/Observation/v1")
    assert superseded.status_code == 404
    assert "superseded by Observation/v2" in superseded.json()["issue"][0]["diagnostics"]
    same = get(world, "doctor_b", "/fhir/Observation/v1/_history")  # from the old id too
    assert [e["resource"]["id"] for e in same.json()["entry"]] == ["v2", "v1"]
    missing = get(world, "doctor_b", "/fhir/Observation/v2/_history/3")
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    # search finds only the current version
    found = get(world, "doctor_b", f"/fhir/Observation?patient={world.did('patient')}")
    assert [e["resource"]["id"] for e in found.json()["entry"]] == ["v2"]
    # a stranger learns nothing, in the same words as for a resource never held
    stranger, _ = world.new_patient()
    for path in ("/fhir/Observation/{}/_history", "/fhir/Observation/{}"):
        r = send_signed(stranger, CHAIN_ID, "GET", world.edge_url, path.format("v1"))
        never = send_signed(stranger, CHAIN_ID, "GET", world.edge_url, path.format("zz"))
        assert r.status_code == never.status_code == 404
        assert r.content.replace(b"v1", b"ID") == never.content.replace(b"zz", b"ID")


def test_unsupported_parameters_are_400_or_left_out_under_lenient_handling(
    world: Consortium,
) -> None:
    world.grant("doctor_b", ["DiagnosticReport"])
    refused = get(world, "doctor_b", "/fhir/DiagnosticReport?colour=blue")
    assert refused.status_code == 400
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome" and "colour" in json.dumps(outcome)
    bad_date = get(world, "doctor_b", "/fhir/DiagnosticReport?date=2020-02-30")
    assert bad_date.status_code == 400 and "date" in bad_date.json()["issue"][0]["diagnostics"]
    lenient = get(
        world,
        "doctor_b",
        "/fhir/DiagnosticReport?colour=blue&status=final",
        Prefer="handling=lenient",
    )
    assert lenient.status_code == 200, lenient.text
    self_link = str(link(lenient.json(), "self"))
    assert "colour" not in self_link and "status=final" in self_link
    assert [e["resource"]["id"] for e in lenient.json()["entry"]] == ["report-1"]


def test_last_updated_search_and_sort_use_the_block_time(world: Consortium) -> None:
    world.grant("doctor_b", ["DiagnosticReport", "MedicationRequest", "Observation"])
    upload(world, observation("later", {"effectiveDateTime": "2020-01-01"}), record_id="later")
    read = get(world, "doctor_b", "/fhir/Observation/later").json()
    stamp = read["meta"]["lastUpdated"]
    registered = world.node.record("later")["created_time_ms"]
    assert date_range(stamp)[0] == registered * 1000
    same = get(world, "doctor_b", f"/fhir/Observation?_lastUpdated={stamp.replace('+', '%2B')}")
    assert [e["resource"]["id"] for e in same.json()["entry"]] == ["later"]
    before = get(world, "doctor_b", f"/fhir/Observation?_lastUpdated=lt{stamp.replace('+', '%2B')}")
    assert before.json()["total"] == 0
    newest = get(world, "doctor_b", "/fhir/DiagnosticReport?_sort=-_lastUpdated")
    assert newest.status_code == 200 and newest.json()["total"] == 1


def test_every_type_of_a_synthea_import_is_served(world: Consortium) -> None:
    path = sorted((DATA / "fhir" / "synthea").glob("Liz_Conn*.json"))[0]
    patient_key, did = world.new_patient()
    r = import_file(world.keys["admin_a"], CHAIN_ID, world.edge_url, "fhir", path.read_bytes(), did)
    assert r.status_code == 200, r.text
    records = world.node.patient_records(did)
    types = sorted({rec["resource_type"] for rec in records})
    assert {"CarePlan", "Condition", "Immunization", "Procedure"} <= set(types)
    grant = {
        "patient": did,
        "grantee_kind": "did",
        "grantee": world.did("doctor_b"),
        "purposes": ["TREAT"],
        "scope_types": types,
        "expires_ms": world.block_time_ms() + 86_400_000,
    }
    assert world.node.send(patient_key, "consent", "grant", grant)["code_name"] == "OK"
    by_type: dict[str, list[str]] = {}
    for rec in records:
        by_type.setdefault(rec["resource_type"], []).append(rec["record_id"])
    for resource_type, ids in by_type.items():
        by = f"_id={','.join(ids)}" if resource_type == "Patient" else f"patient={did}"
        found = get(world, "doctor_b", f"/fhir/{resource_type}?{by}&_count=100")
        assert found.status_code == 200, found.text
        assert found.json()["total"] == len(ids), resource_type
        assert sorted(e["resource"]["id"] for e in found.json()["entry"]) == sorted(ids)
        for record_id in ids:
            read = get(world, "doctor_b", f"/fhir/{resource_type}/{record_id}")
            assert read.status_code == 200, (resource_type, read.text)
            assert read.content in found.content
            assert b"urn:uuid:" not in read.content  # no reference left dangling
            assert b"?identifier=" not in read.content
    # the patient compartment by reference as well as by DID
    patient_id = by_type["Patient"][0]
    by_ref = get(world, "doctor_b", f"/fhir/Observation?subject=Patient/{patient_id}&_count=1")
    assert by_ref.json()["total"] == len(by_type["Observation"])
    encounter = get(world, "doctor_b", f"/fhir/Encounter/{by_type['Encounter'][0]}").json()
    provider = encounter["serviceProvider"]
    assert "reference" not in provider and provider["identifier"]["value"]
    assert provider["type"] == "Organization"


def test_a_search_across_many_patients_shows_each_caller_only_their_own(
    world: Consortium, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past BROAD_SEARCH_PATIENTS distinct patients the edge lists the caller's
    possible standing from the chain instead of asking patient by patient: staff of
    the custodian see every match, a doctor with one patient's grant that patient's,
    a stranger nothing. (The threshold is lowered so the test stays quick.)"""
    monkeypatch.setattr(fhir_reads, "BROAD_SEARCH_PATIENTS", 3)
    patients = [world.new_patient() for _ in range(8)]
    for n, (_, did) in enumerate(patients):
        obs = observation(f"many-{n}", {"effectiveDateTime": "2022-02-02"}, code="2339-0")
        prepared = world.edge.prepare_resource(obs, f"many-{n}")
        assert not world.edge.commit(did, [prepared]).rejected
    key, did = patients[7]
    grant = {
        "patient": did,
        "grantee_kind": "did",
        "grantee": world.did("doctor_b"),
        "purposes": ["TREAT"],
        "scope_types": ["Observation"],
        "expires_ms": world.block_time_ms() + 86_400_000,
    }
    assert world.node.send(key, "consent", "grant", grant)["code_name"] == "OK"
    query = "/fhir/Observation?code=2339-0&_count=100"
    staff = get(world, "doctor_a", query).json()
    assert staff["total"] == len(patients)
    granted = get(world, "doctor_b", query).json()
    assert granted["total"] == 1 and granted["entry"][0]["resource"]["id"] == "many-7"
    stranger, _ = world.new_patient()
    nobody = send_signed(stranger, CHAIN_ID, "GET", world.edge_url, query).json()
    assert nobody["total"] == 0 and "entry" not in nobody


def test_a_vault_indexed_before_every_type_was_served_is_reindexed_once(
    world: Consortium,
) -> None:
    """Records stored by the older index (6 types, no parameters, no versions) are
    indexed on the first FHIR request: a Condition the old index left out is read and
    found, an Observation gets its parameters, a superseded one its history."""
    world.grant("doctor_b", ["Condition", "Observation"])
    condition = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
        "onsetDateTime": "2019-05-05",
    }
    upload(world, condition, record_id="cond-old")
    upload(world, observation("obs-old", {"effectiveDateTime": "2019-05-05"}), record_id="obs-old")
    upload(
        world,
        observation("obs-new", {"effectiveDateTime": "2019-05-06"}),
        record_id="obs-new",
        supersedes="obs-old",
    )
    db = world.edge.vault.index_db
    with db:  # what an older edge left: no values, no versions, no row for a Condition
        db.execute("DELETE FROM search_values")
        db.execute("DELETE FROM search_versions")
        db.execute("DELETE FROM search WHERE resource_type NOT IN ('Observation', 'Patient')")
    world.edge.vault.set_meta(fhir_reads.INDEX_FORMAT, 0)
    read = get(world, "doctor_b", "/fhir/Condition/cond-old")
    assert read.status_code == 200, read.text
    assert world.edge.vault.get_meta(fhir_reads.INDEX_FORMAT) == index_format()
    found = get(world, "doctor_b", "/fhir/Condition?onset-date=2019-05&code=44054006").json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["cond-old"]
    obs = get(world, "doctor_b", "/fhir/Observation?date=2019-05-06").json()
    assert [e["resource"]["id"] for e in obs["entry"]] == ["obs-new"]
    history = get(world, "doctor_b", "/fhir/Observation/obs-new/_history").json()
    assert [e["resource"]["id"] for e in history["entry"]] == ["obs-new", "obs-old"]


def test_a_page_with_included_patients_stays_within_one_chain_decision(
    world: Consortium,
) -> None:
    """exchange.access decides at most MAX_ACCESS_RECORDS ids: a page of 100
    Observations that bring 100 different patients ends early, and its next link
    carries on where it stopped, so every match is still listed once."""
    patient = world.did("patient")
    prepared = []
    for i in range(60):
        person = {"resourceType": "Patient", "id": f"who-{i:02d}", "gender": "other"}
        obs = observation(f"inc-{i:02d}", {"effectiveDateTime": "2021-01-01"})
        obs["subject"] = {"reference": f"Patient/who-{i:02d}"}
        prepared.append(world.edge.prepare_resource(person, f"who-{i:02d}"))
        prepared.append(world.edge.prepare_resource(obs, f"inc-{i:02d}"))
    assert not world.edge.commit(patient, prepared).rejected
    world.grant("doctor_b", ["Observation", "Patient"])
    target: str | None = (
        f"/fhir/Observation?patient={patient}&_count=100&_include=Observation:patient&_sort=_id"
    )
    matches: list[str] = []
    included: list[str] = []
    pages = 0
    while target is not None:
        answer = get(world, "doctor_b", target)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        pages += 1
        assert page["total"] == 60
        entries = page["entry"]
        assert not [e for e in entries if e["search"]["mode"] == "outcome"]  # none withheld
        assert len(entries) <= MAX_ACCESS_RECORDS
        matches += [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"]
        included += [e["resource"]["id"] for e in entries if e["search"]["mode"] == "include"]
        target = link(page, "next")
    assert pages == 2
    assert matches == [f"inc-{i:02d}" for i in range(60)]
    assert sorted(included) == [f"who-{i:02d}" for i in range(60)]


def test_references_to_what_the_import_skipped_become_logical() -> None:
    """Newer Synthea writes conditional references (`Practitioner?identifier=...`),
    older ones urn:uuid references to the Organization in the bundle: neither resolves
    on this edge, so both become logical references (type, identifier, display)."""
    from medchain.fhir import bundle

    org = {
        "resourceType": "Organization",
        "id": "org-1",
        "identifier": [{"system": "https://example.org/orgs", "value": "ORG-1"}],
        "name": "General Hospital",
    }
    patient = {"resourceType": "Patient", "id": "pat-1"}
    encounter = {
        "resourceType": "Encounter",
        "id": "enc-1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "urn:uuid:pat-1"},
        "serviceProvider": {"reference": "urn:uuid:org-1"},
        "participant": [
            {
                "individual": {
                    "reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|999",
                    "display": "Dr. Who",
                }
            }
        ],
    }
    items = [(org, "urn:uuid:org-1"), (patient, "urn:uuid:pat-1"), (encounter, "urn:uuid:enc-1")]
    read = bundle.group_by_patient(items)
    [group] = read.groups
    rewritten = dict(bundle.assign_ids(group, read.aliases, lambda r: f"rec-{r['id']}"))
    enc = rewritten["rec-enc-1"]
    assert enc["subject"] == {"reference": "Patient/rec-pat-1"}
    assert enc["serviceProvider"] == {
        "type": "Organization",
        "identifier": {"system": "https://example.org/orgs", "value": "ORG-1"},
        "display": "General Hospital",
    }
    assert enc["participant"][0]["individual"] == {
        "type": "Practitioner",
        "identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "999"},
        "display": "Dr. Who",
    }
    validate_resource(enc)


def test_a_reindex_after_an_erasure_brings_nothing_of_the_record_back(tmp_path: Path) -> None:
    """A reindex reads a record, then adds its index rows: should the record be erased
    in between, the add must write nothing (no id, type or patient DID left behind)."""
    vault, index = store_table(tmp_path)
    resource = next(r for r in TABLE_RESOURCES if r["id"] == "noon")
    entry = index_entry(resource)
    assert entry is not None
    vault.discard("noon")  # erased after the reindex read it
    index.add("noon", ALICE, entry, current=True, listed=False)
    db = vault.index_db
    for table in ("search", "search_values", "search_versions"):
        rows = db.execute(f"SELECT 1 FROM {table} WHERE record_id = 'noon'").fetchall()
        assert rows == [], table
    vault.close()
