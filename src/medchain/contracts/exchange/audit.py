"""Audit views over exchange sessions: who saw what, when, on which basis.

Pure functions over state, so any node (or a regulator replaying the chain)
answers the same. Each entry says what the requester asked for, why access
was allowed (a grant id, or break-glass), and how far the transfer went.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from medchain.contracts.exchange.handler import (
    by_patient_prefix,
    by_requester_prefix,
    session_key,
)

Get = Callable[[str], Any]
Scan = Callable[[str], Iterator[tuple[str, Any]]]

FIELDS = (
    "session_id",
    "record_id",
    "patient",
    "custodian",
    "requester",
    "purpose",
    "basis",
    "status",
    "opened_height",
    "opened_time_ms",
    "released_by",
    "released_height",
    "acked_height",
)


def _entries(get: Get, scan: Scan, prefix: str) -> list[dict[str, Any]]:
    out = []
    for _, entry in scan(prefix):
        session = get(session_key(entry["session_id"]))
        if session is not None:
            out.append({f: session.get(f) for f in FIELDS})
    return sorted(out, key=lambda e: (e["opened_height"], e["session_id"]))


def patient_access_log(get: Get, scan: Scan, patient: str) -> list[dict[str, Any]]:
    """Every access request to this patient's records, oldest first."""
    return _entries(get, scan, by_patient_prefix(patient))


def member_access_log(get: Get, scan: Scan, member: str) -> list[dict[str, Any]]:
    """Every access request made by this member (e.g. one doctor), oldest first."""
    return _entries(get, scan, by_requester_prefix(member))
