"""What the regulator's pages compute from the regulator chain: each relayed stream's
progress and gaps, and the counts behind the charts.

Everything here comes from the regulator's own signed reads of its chain
(`/v1/supervision/streams`, `/v1/supervision/digests/{source}`), which the node
answers to regulators and operators only; nothing is read from a business chain
except, when the portal is told where one is, its public status (its height).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from medchain.sdk.client import NO_RETRY, Client, ClientError

PAGE = 500  # heights per digests read (the gateway's limit)
WINDOW = 5000  # newest heights per source the charts count
RECENT = 25  # events the stream page lists

ACCESS_EVENTS = ("exchange.opened", "exchange.accessed")
RECOGNITION_OUTCOMES = ("recognition.accepted", "recognition.declined")


@dataclass(frozen=True)
class Table:
    """One chart's data: stable column names (the exports' keys) and rows."""

    name: str
    columns: tuple[str, ...]
    rows: list[tuple[str | int, ...]]


@dataclass
class StreamView:
    """One relayed source as the stream page shows it."""

    source: str
    relayed: int  # the last business height whose every part is relayed
    first_height: int
    digests: int
    block_time_ms: int
    relayed_at_ms: int
    partial: str  # "3/5" when a block's parts are still arriving
    head: int | None  # the source's height, if the portal knows where it is
    missing: list[tuple[int, int]] = field(default_factory=list)  # (from, to) ranges

    @property
    def missing_count(self) -> int:
        """How many heights are missing in all."""
        return sum(b - a + 1 for a, b in self.missing)


def day_of(time_ms: int) -> str:
    """A block time's UTC date, the charts' unit."""
    return datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y-%m-%d")


def complete_height(stream: dict[str, Any]) -> int:
    """The last height whose every part is relayed (as the supervision contract says)."""
    done = int(stream["part"]) + 1 == int(stream["parts"])
    return int(stream["height"]) if done else int(stream["height"]) - 1


def readable_source(source: str) -> bool:
    """A source name that can stand in a URL path as itself."""
    return source not in ("", ".", "..")


def relayed_digests(node: Client, source: str, first: int, last: int) -> list[dict[str, Any]]:
    """The digests (every part) of heights first..last, in order; a refusal is raised."""
    out: list[dict[str, Any]] = []
    height = first
    while height <= last:
        limit = min(PAGE, last - height + 1)
        page = node.get(
            f"/v1/supervision/digests/{quote(source, safe='')}", from_height=height, limit=limit
        )
        if not page:
            break  # the chain holds no more (a gap shows on the stream page)
        top = max(int(d["height"]) for d in page)
        if top < height:  # a page that does not move forward would loop for ever
            break
        out += page
        height = top + 1  # the node may stop early
    return out


def source_head(url: str | None) -> int | None:
    """The height a business chain's node reports publicly, or None if unknown."""
    if not url:
        return None
    client = Client(url, timeout=3.0, retry=NO_RETRY)
    try:
        return int(client.status()["height"])
    except (ClientError, httpx.HTTPError, KeyError, ValueError):
        return None
    finally:
        client.close()


def missing_ranges(present: Iterable[int], first: int, last: int) -> list[tuple[int, int]]:
    """The heights of first..last not in `present`, as (from, to) ranges."""
    have, out = set(present), []
    start: int | None = None
    for h in range(first, last + 1):
        if h not in have and start is None:
            start = h
        elif h in have and start is not None:
            out.append((start, h - 1))
            start = None
    if start is not None:
        out.append((start, last))
    return out


def stream_view(
    stream: dict[str, Any], digests: list[dict[str, Any]], window_from: int, head: int | None
) -> StreamView:
    """A stream with its gaps: heights in the read window the chain holds no digest
    for (the contract refuses them, so this should stay empty), and the heights the
    source has committed beyond the last relayed one."""
    relayed = complete_height(stream)
    present = {int(d["height"]) for d in digests if int(d["part"]) == 0}
    missing = missing_ranges(present, window_from, relayed)
    if head is not None and head > relayed:
        missing.append((relayed + 1, head))
    parts = int(stream["parts"])
    partial = f"{int(stream['part']) + 1}/{parts}" if int(stream["part"]) + 1 < parts else ""
    return StreamView(
        source=str(stream["source"]),
        relayed=relayed,
        first_height=int(stream["first_height"]),
        digests=int(stream["digests"]),
        block_time_ms=int(stream["block_time_ms"]),
        relayed_at_ms=int(stream["relayed_at_ms"]),
        partial=partial,
        head=head,
        missing=missing,
    )


def recent_events(by_source: dict[str, list[dict[str, Any]]], count: int = RECENT) -> list[Any]:
    """The newest relayed audit events of every source, newest first."""
    rows = [
        (int(d["time_ms"]), source, int(d["height"]), e["type"], e["attributes"])
        for source, digests in by_source.items()
        for d in digests
        for e in d["events"]
    ]
    rows.sort(key=lambda r: (r[0], r[2]), reverse=True)
    return [
        {
            "time_ms": t,
            "source": s,
            "height": h,
            "type": kind,
            "actor": str(attrs.get("actor", "")),
            "subject": str(attrs.get("record_id") or attrs.get("shipment") or ""),
        }
        for t, s, h, kind, attrs in rows[:count]
    ]


def chart_tables(digests: Iterable[dict[str, Any]]) -> dict[str, Table]:
    """The charts' data from relayed digests: accesses to each custodian's records per
    day, refused accesses per custodian per day, break-glass openings per day, cold-chain
    excursions per day, and prior-exam recognition per requesting organisation."""
    accesses: Counter[tuple[str, str]] = Counter()
    refusals: Counter[tuple[str, str]] = Counter()
    glass: Counter[str] = Counter()
    cold: Counter[str] = Counter()
    cold_units: Counter[str] = Counter()
    recognition: Counter[tuple[str, str]] = Counter()
    for digest in digests:
        day = day_of(int(digest["time_ms"]))
        for event in digest["events"]:
            kind, attrs = event["type"], event["attributes"]
            if kind in ACCESS_EVENTS:
                accesses[(day, str(attrs.get("custodian", "")))] += 1
            elif kind == "exchange.refused":
                refusals[(day, str(attrs.get("custodian", "")))] += 1
            elif kind == "consent.break_glass_opened":
                glass[day] += 1
            elif kind == "supply.cold_chain_violation":
                cold[day] += 1
                units = str(attrs.get("units", "0"))
                cold_units[day] += int(units) if units.isdigit() and len(units) < 10 else 0
            elif kind in RECOGNITION_OUTCOMES:
                recognition[(str(attrs.get("requesting_org", "")), kind.split(".")[1])] += 1
    orgs = sorted({org for org, _ in recognition})
    rates: list[tuple[str | int, ...]] = []
    for org in orgs:
        yes, no = recognition[(org, "accepted")], recognition[(org, "declined")]
        rates.append((org, yes, no, round(100 * yes / (yes + no))))
    return {
        "accesses": Table("accesses", ("day", "organisation", "count"), _day_rows(accesses)),
        "refusals": Table("refusals", ("day", "organisation", "count"), _day_rows(refusals)),
        "break_glass": Table("break_glass", ("day", "count"), sorted(glass.items())),
        "cold_chain": Table(
            "cold_chain",
            ("day", "excursions", "units"),
            [(day, n, cold_units[day]) for day, n in sorted(cold.items())],
        ),
        "recognition": Table(
            "recognition", ("organisation", "accepted", "declined", "rate_percent"), rates
        ),
    }


def _day_rows(counts: Counter[tuple[str, str]]) -> list[tuple[str | int, ...]]:
    return [(day, org, n) for (day, org), n in sorted(counts.items())]


def chart_series(table: Table) -> tuple[list[str], dict[str, list[float]], bool]:
    """A table as a chart's categories and series (and whether values are percents)."""
    if table.name == "recognition":
        return [str(r[0]) for r in table.rows], {"%": [float(r[3]) for r in table.rows]}, True
    days = sorted({str(r[0]) for r in table.rows})
    if len(table.columns) == 3 and table.columns[1] == "organisation":
        series: dict[str, list[float]] = {}
        for day, org, n in table.rows:
            series.setdefault(str(org), [0.0] * len(days))[days.index(str(day))] = float(n)
        return days, series, False
    return days, {table.columns[1]: [float(r[1]) for r in table.rows]}, False
