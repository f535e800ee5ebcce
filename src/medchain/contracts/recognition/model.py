"""Exam mutual recognition: vocabulary, state keys and the pure eligibility rule.

A hospital treating a patient can accept an exam another hospital already
did (a CT, a lab panel) instead of repeating it, when the consortium's rule
for that exam allows: the result is young enough and the hospital that
performed it holds a high enough accreditation. Rules and accreditations are
state, changed by governance; every acceptance and every repeat despite an
eligible prior exam is recorded, so recognition rates can be reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypedDict

NAMESPACE = "recognition"
DAY_MS = 86_400_000
MAX_AGE_DAYS = 3650
MIN_REASON, MAX_REASON = 5, 500  # a decline's reason, in characters
# Chinese hospital grades, lowest to highest (一级 ... 三级甲等).
LEVELS = ("1", "2C", "2B", "2A", "3C", "3B", "3A")
ACCEPTED, DECLINED = "accepted", "declined"

Get = Callable[[str], Any]
Scan = Callable[[str], Iterator[tuple[str, Any]]]


class Rule(TypedDict):
    """`rule/<exam code>`: how old a result may be, and from which performers."""

    exam_code: str
    max_age_days: int
    min_level: str
    set_by: str
    set_height: int


class Accreditation(TypedDict):
    """`accreditation/<org id>`: an organisation's level until `expires_ms`."""

    org_id: str
    level: str
    expires_ms: int
    by: str


class Decision(TypedDict):
    """`decision/<id>`: one accept or decline, as the recognition report counts it."""

    decision_id: str
    outcome: str
    record_id: str
    exam_code: str
    patient: str
    performing_org: str
    requesting_org: str
    doctor: str
    reason: str
    time_ms: int
    height: int


def rule_prefix() -> str:
    """Every recognition rule."""
    return f"{NAMESPACE}/rule/"


def rule_key(exam_code: str) -> str:
    """The rule for one exam code."""
    return f"{rule_prefix()}{exam_code}"


def accreditation_prefix() -> str:
    """Every accreditation."""
    return f"{NAMESPACE}/accreditation/"


def accreditation_key(org_id: str) -> str:
    """An organisation's accreditation."""
    return f"{accreditation_prefix()}{org_id}"


def decision_prefix() -> str:
    """Every accept and decline."""
    return f"{NAMESPACE}/decision/"


def decision_key(decision_id: str) -> str:
    """One accept or decline."""
    return f"{decision_prefix()}{decision_id}"


@dataclass(frozen=True)
class Eligibility:
    """Whether a prior exam may be recognised now, and why (or why not)."""

    eligible: bool
    reason: str


def eligibility(get: Get, record: dict[str, Any], requesting_org: str, now_ms: int) -> Eligibility:
    """May `requesting_org` accept this prior exam instead of repeating it, now?"""
    if record.get("status") != "active":
        return Eligibility(False, f"record is {record.get('status')}")
    if "exam_code" not in record:
        return Eligibility(False, "record is not a registered exam")
    if record["custodian"] == requesting_org:
        return Eligibility(False, "an exam of the same hospital needs no recognition")
    rule = get(rule_key(record["exam_code"]))
    if rule is None:
        return Eligibility(False, f"no recognition rule for {record['exam_code']}")
    age_ms = now_ms - record["performed_ms"]
    if age_ms > rule["max_age_days"] * DAY_MS:
        return Eligibility(
            False, f"result is {age_ms // DAY_MS} days old; the rule allows {rule['max_age_days']}"
        )
    accreditation = get(accreditation_key(record["custodian"]))
    if accreditation is None or accreditation["expires_ms"] <= now_ms:
        return Eligibility(False, f"{record['custodian']} holds no valid accreditation")
    if LEVELS.index(accreditation["level"]) < LEVELS.index(rule["min_level"]):
        return Eligibility(
            False,
            f"{record['custodian']} is level {accreditation['level']}; "
            f"the rule needs {rule['min_level']}",
        )
    return Eligibility(True, f"meets rule {record['exam_code']}")


def report(scan: Scan, from_ms: int, to_ms: int) -> list[dict[str, Any]]:
    """Per requesting hospital over [from_ms, to_ms): prior exams accepted (exams
    avoided), repeated despite an eligible prior exam, and the recognition rate."""
    by_org: dict[str, dict[str, int]] = {}
    for _, decision in scan(decision_prefix()):
        if not from_ms <= decision["time_ms"] < to_ms:
            continue
        counts = by_org.setdefault(decision["requesting_org"], {ACCEPTED: 0, DECLINED: 0})
        counts[decision["outcome"]] += 1
    rows = []
    for org, counts in sorted(by_org.items()):
        total = counts[ACCEPTED] + counts[DECLINED]
        rows.append(
            {
                "org_id": org,
                "exams_avoided": counts[ACCEPTED],
                "repeated": counts[DECLINED],
                "recognition_rate": round(counts[ACCEPTED] / total, 4) if total else None,
            }
        )
    return rows
