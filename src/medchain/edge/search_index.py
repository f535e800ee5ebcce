"""The custodian's FHIR search index: SQL over the vault's search tables.

The tables live in vault.db (edge/vault.py writes them when a record is stored
and drops them with the record on erasure): `search` (record, owner DID, type),
`search_values` (each search parameter's values, fhir/search_params.py) and
`search_versions` (the record's place in its supersede chain and when the chain
registered it, filled from the chain the first time the record is served).

Every answer is in a stable order (the sort keys, then the record id), so
offsets page through the same list.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medchain.fhir.search import IndexEntry
from medchain.fhir.search_params import date_condition, params_of, quantity_condition
from medchain.fhir.search_query import Criterion, SearchQuery

MAX_MATCHES = 100_000  # ids a search considers; past this, narrow the search


@dataclass(frozen=True)
class Version:
    """A record's version of its resource: number (1 for the first) and registration."""

    record_id: str
    version: int
    updated_ms: int
    supersedes: str | None


def _criterion_sql(c: Criterion) -> tuple[str, list[Any]]:
    if c.modifier in ("missing", "present"):
        having = "SELECT v.record_id FROM search_values v WHERE v.param = ?"
        word = "NOT IN" if c.modifier == "missing" else "IN"
        return f"s.record_id {word} ({having})", [c.code]
    ors: list[str] = []
    args: list[Any] = []
    for system, code in c.tokens:
        if system is None:
            ors.append("v.value = ?")
            args.append(code)
        elif code == "":
            ors.append("v.system = ?")
            args.append(system)
        else:
            ors.append("(v.value = ? AND v.system = ?)")
            args.extend([code, system])
    for text in c.texts:
        if c.type == "reference":
            ors.append("v.value = ?")
            args.append(text)
        elif c.modifier == "exact":
            ors.append("v.system = ?")  # strings keep their text as written in `system`
            args.append(text)
        elif c.modifier == "contains":
            ors.append("instr(v.value, ?) > 0")
            args.append(text)
        else:
            ors.append("substr(v.value, 1, ?) = ?")
            args.extend([len(text), text])
    for prefix, low, high in c.dates:
        sql, more = date_condition(prefix, low, high)
        ors.append(sql)
        args.extend(more)
    for prefix, amount, low, high, system, unit in c.quantities:
        sql, bounds = quantity_condition(prefix, amount, low, high)
        args.extend(bounds)
        if system is not None:
            sql += " AND v.system = ?"
            args.append(system)
        if unit is not None:
            sql += " AND v.value = ?"
            args.append(unit)
        ors.append(f"({sql})")
    if c.type in ("token", "reference"):  # equality: let the (param, value) index drive
        word = "NOT IN" if c.modifier == "not" else "IN"
        sql = (
            f"s.record_id {word} (SELECT v.record_id FROM search_values v "
            f"WHERE v.param = ? AND ({' OR '.join(ors)}))"
        )
    else:
        sql = (
            "EXISTS (SELECT 1 FROM search_values v WHERE v.record_id = s.record_id "
            f"AND v.param = ? AND ({' OR '.join(ors)}))"
        )
    return sql, [c.code, *args]


def _sort_sql(key: str, descending: bool) -> str:
    if key == "_id":
        return f"s.record_id {'DESC' if descending else 'ASC'}"
    if key == "_lastUpdated":
        column = "(SELECT updated_ms FROM search_versions w WHERE w.record_id = s.record_id)"
        return f"{column} IS NULL, {column} {'DESC' if descending else 'ASC'}"
    pick = "max(v.high)" if descending else "min(v.low)"
    column = (
        f"(SELECT {pick} FROM search_values v WHERE v.record_id = s.record_id "
        f"AND v.param = '{key}')"  # key is a known parameter code (search_query._sort_key)
    )
    return f"{column} IS NULL, {column} {'DESC' if descending else 'ASC'}"


def default_sort(query: SearchQuery) -> list[tuple[str, bool]]:
    """Newest first by the type's `date` when it has one, else by id."""
    return [("date", True)] if "date" in params_of(query.resource_type) else [("_id", False)]


class SearchIndex:
    """Queries over a vault's search tables (through `connect`, the vault's
    per-thread connection) and the versions it learns from the chain."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect

    def matches(self, query: SearchQuery) -> list[tuple[str, str]]:
        """(record id, owner DID) of every searchable record the query matches, in its
        sort order (then by id); at most MAX_MATCHES."""
        sql = ["SELECT s.record_id, s.patient FROM search s WHERE s.resource_type = ?"]
        args: list[Any] = [query.resource_type]
        for owner in query.owners:
            sql.append("AND s.patient = ?")
            args.append(owner)
        for ids in query.ids:
            sql.append(f"AND s.record_id IN ({', '.join('?' for _ in ids)})")
            args.extend(ids)
        for criterion in query.criteria:
            clause, more = _criterion_sql(criterion)
            sql.append(f"AND {clause}")
            args.extend(more)
        for ranges in query.last_updated:
            ors = []
            for prefix, low, high in ranges:
                cond, more = date_condition(prefix, low, high)
                ors.append(cond)
                args.extend(more)
            # _lastUpdated is an instant to the millisecond: a range [t, t + 1 ms) in µs
            sql.append(
                "AND EXISTS (SELECT 1 FROM (SELECT updated_ms * 1000 AS low, "
                "updated_ms * 1000 + 1000 AS high FROM search_versions "
                f"WHERE record_id = s.record_id AND updated_ms IS NOT NULL) v "
                f"WHERE {' OR '.join(ors)})"
            )
        order = [_sort_sql(k, d) for k, d in (query.sort or default_sort(query))]
        sql.append(f"ORDER BY {', '.join([*order, 's.record_id'])} LIMIT ?")
        args.append(MAX_MATCHES)
        rows = self._connect().execute(" ".join(sql), args).fetchall()
        return [(str(r), str(p)) for r, p in rows]

    def held_records(self) -> list[tuple[str, str | None, bool | None]]:
        """(record id, owner DID, whether it is the current version) of every record
        the vault holds, as far as the search tables know (None where they do not:
        stored before this index described every type)."""
        rows = (
            self._connect()
            .execute(
                "SELECT r.record_id, coalesce(s.patient, w.patient), s.record_id IS NOT NULL, "
                "w.record_id IS NOT NULL FROM records r "
                "LEFT JOIN search s ON s.record_id = r.record_id "
                "LEFT JOIN search_versions w ON w.record_id = r.record_id "
                "ORDER BY r.record_id"
            )
            .fetchall()
        )
        return [
            (str(r), None if p is None else str(p), True if live else (False if known else None))
            for r, p, live, known in rows
        ]

    def add(
        self, record_id: str, patient: str, entry: IndexEntry, current: bool, listed: bool
    ) -> None:
        """(Re)index a record: its values replaced if it is the `current` version (and
        dropped if not), and in search_versions either way (for _history). A record
        `listed` as current by the search table stays searchable only while it still is
        (an import may supersede it meanwhile); one the chain says is current is listed."""
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            if (
                db.execute("SELECT 1 FROM records WHERE record_id = ?", (record_id,)).fetchone()
                is None
            ):
                return  # erased since it was read (a reindex): nothing of it may come back
            db.execute("DELETE FROM search_values WHERE record_id = ?", (record_id,))
            if current and not listed:
                db.execute(
                    "INSERT OR IGNORE INTO search VALUES (?, ?, ?, ?)",
                    (record_id, patient, entry.resource_type, entry.date),
                )
            still = db.execute("SELECT 1 FROM search WHERE record_id = ?", (record_id,)).fetchone()
            if current and still is not None:
                db.executemany(
                    "INSERT INTO search_values VALUES (?, ?, ?, ?, ?, ?)",
                    [(record_id, v.param, v.system, v.value, v.low, v.high) for v in entry.values],
                )
            db.execute(
                "INSERT OR IGNORE INTO search_versions (record_id, resource_type, patient) "
                "VALUES (?, ?, ?)",
                (record_id, entry.resource_type, patient),
            )

    def values(self, record_id: str, param: str) -> list[str]:
        """The indexed values of one parameter of a record (e.g. its patient reference)."""
        rows = (
            self._connect()
            .execute(
                "SELECT value FROM search_values WHERE record_id = ? AND param = ? ORDER BY value",
                (record_id, param),
            )
            .fetchall()
        )
        return [str(r[0]) for r in rows]

    def held(self, record_id: str) -> tuple[str, str] | None:
        """(resource type, owner DID) of a record held here in any version, or None."""
        row = (
            self._connect()
            .execute(
                "SELECT resource_type, patient FROM search_versions WHERE record_id = ?",
                (record_id,),
            )
            .fetchone()
        )
        return None if row is None else (str(row[0]), str(row[1]))

    def without_version(self, record_ids: list[str]) -> list[str]:
        """Those of the records whose version the index has not learnt yet."""
        out: list[str] = []
        for start in range(0, len(record_ids), 500):  # under SQLite's host-parameter limit
            chunk = record_ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = (
                self._connect()
                .execute(
                    "SELECT record_id FROM search_versions "
                    f"WHERE version IS NULL AND record_id IN ({marks})",
                    chunk,
                )
                .fetchall()
            )
            out += [str(r[0]) for r in rows]
        return out

    def learn(self, registrations: list[dict[str, Any]]) -> None:
        """Keep the versions of records from their registrations on chain (a patient's,
        as the node lists them): a record's version counts the supersede chain back to
        its first, which a patient's list holds whole."""
        by_id = {str(r["record_id"]): r for r in registrations}
        numbers: dict[str, int | None] = {}

        def number(record_id: str) -> int | None:
            if record_id not in numbers:
                record = by_id.get(record_id)
                earlier = None if record is None else record.get("supersedes")
                if record is None:
                    numbers[record_id] = None
                elif earlier is None:
                    numbers[record_id] = 1
                else:
                    before = number(str(earlier))
                    numbers[record_id] = None if before is None else before + 1
            return numbers[record_id]

        rows = [
            (n, int(r["created_time_ms"]), r.get("supersedes"), record_id)
            for record_id, r in by_id.items()
            if (n := number(record_id)) is not None
        ]
        db = self._connect()
        with db:
            db.executemany(
                "UPDATE search_versions SET version = ?, updated_ms = ?, supersedes = ? "
                "WHERE record_id = ? AND version IS NULL",
                rows,
            )

    def version(self, record_id: str, chain: Callable[[str], dict[str, Any]]) -> Version:
        """The record's version, learnt once from its registration on chain (`chain`
        gives a record by id: status, supersedes, created_time_ms) and kept here."""
        db = self._connect()
        row = db.execute(
            "SELECT version, updated_ms, supersedes FROM search_versions WHERE record_id = ?",
            (record_id,),
        ).fetchone()
        if row is not None and row[0] is not None:
            return Version(record_id, int(row[0]), int(row[1]), row[2])
        record = chain(record_id)
        supersedes = record.get("supersedes")
        number = 1 if supersedes is None else self.version(supersedes, chain).version + 1
        updated = int(record["created_time_ms"])
        with db:
            db.execute(
                "UPDATE search_versions SET version = ?, updated_ms = ?, supersedes = ? "
                "WHERE record_id = ?",
                (number, updated, supersedes, record_id),
            )
        return Version(record_id, number, updated, supersedes)
