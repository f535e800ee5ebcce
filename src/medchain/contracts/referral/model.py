"""Referral vocabulary, state records, keys, and the timeline of one referral.

A referral is one doctor's request that another hospital see a patient, with the
records that go along (the package). The chain keeps its status and every step
with the block's time; the records stay at their custodians' edges and move only
through the exchange contract, under the consent grant the patient's approval
issued. So the timeline is the referral's own steps, the exchange sessions that
used its grant, and the grant's revocation, all read from committed state.

Everything here is a pure function of state (or of what the caller read from
it), used by the handler, the gateway and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NotRequired, TypedDict

NAMESPACE = "referral"

# Who may refer, accept and report: physicians of a hospital or clinic (a nurse
# or pharmacist may not hand a patient over to another hospital).
PHYSICIAN_ROLES = frozenset({"doctor", "attending", "department_head"})
# FHIR ServiceRequest.priority.
URGENCIES = ("routine", "urgent", "asap", "stat")
# What a consultation report may be (FHIR types the consent policy governs).
REPORT_TYPES = frozenset({"DiagnosticReport", "DocumentReference"})
# How many records one package may carry, and the longest a referral may stay open.
MAX_PACKAGE = 50
MAX_REFERRAL_MS = 90 * 86_400_000
# How long the referring doctor may read the consultation report once it is in.
REPORT_ACCESS_MS = 30 * 86_400_000
MAX_REASON = 500

REQUESTED, APPROVED, DECLINED = "requested", "approved", "declined"
ACCEPTED, COMPLETED, CANCELLED = "accepted", "completed", "cancelled"
# A referral in one of these may still be cancelled.
OPEN_STATUSES = frozenset({REQUESTED, APPROVED, ACCEPTED})

Get = Callable[[str], Any]


class Step(TypedDict):
    """One step of a referral as the chain recorded it: what, who, when."""

    step: str
    actor: str
    height: int
    time_ms: int


class Referral(TypedDict):
    """`referral/referral/<referral_id>`: the request, its package and where it stands."""

    referral_id: str
    patient: str
    from_org: str
    from_doctor: str
    to_org: str
    to_doctor: NotRequired[str]  # absent: anyone of to_org's physicians may accept
    reason_code: str
    urgency: str
    record_ids: list[str]  # the package, sorted, the ServiceRequest not included
    service_request_id: str
    service_request_sm3: bytes  # the registered ServiceRequest's salted SM3
    expires_ms: int
    status: str
    steps: list[Step]
    grant_id: NotRequired[str]  # issued by approve: the receiving side's access
    accepted_by: NotRequired[str]
    report_record_id: NotRequired[str]
    report_grant_id: NotRequired[str]  # issued by report: the referring doctor's access
    reason: NotRequired[str]  # a decline's or cancellation's, if one was given


class ReferralRef(TypedDict):
    """An index entry (by patient, by organisation) pointing at a referral."""

    referral_id: str


def referral_key(referral_id: str) -> str:
    """Where a referral lives."""
    return f"{NAMESPACE}/referral/{referral_id}"


def by_patient_prefix(patient: str) -> str:
    """Every referral of one patient."""
    return f"{NAMESPACE}/by-patient/{patient}/"


def by_patient_key(patient: str, referral_id: str) -> str:
    """A patient's index entry for one referral."""
    return by_patient_prefix(patient) + referral_id


def by_org_prefix(org_id: str) -> str:
    """Every referral an organisation sent or received."""
    return f"{NAMESPACE}/by-org/{org_id}/"


def by_org_key(org_id: str, referral_id: str) -> str:
    """An organisation's index entry for one referral."""
    return by_org_prefix(org_id) + referral_id


def package_scope(referral: Referral) -> list[str]:
    """The record ids the approval's grant scopes: the package and the ServiceRequest,
    so the receiving side reads why it was asked as well as what it was sent."""
    return sorted({*referral["record_ids"], referral["service_request_id"]})


def receiving_grantee(referral: Referral) -> tuple[str, str]:
    """(grantee kind, grantee) of the approval's grant: the named doctor, else the
    receiving organisation (decide then lets any of its members whose role covers
    the package's types read it: naming the doctor is the narrow choice)."""
    if "to_doctor" in referral:
        return "did", referral["to_doctor"]
    return "org", referral["to_org"]


def involved(referral: Referral, did: str | None, org_id: str | None, roles: Iterable[str]) -> bool:
    """The staff a referral concerns: the doctors it names or that acted on it, and the
    physicians and org admins of the two hospitals (who must see it to accept it, or
    to follow up their own doctor's referral)."""
    if did is not None and did in (
        referral["from_doctor"],
        referral.get("to_doctor"),
        referral.get("accepted_by"),
    ):
        return True
    if org_id is None or org_id not in (referral["from_org"], referral["to_org"]):
        return False
    return bool((PHYSICIAN_ROLES | {"org_admin"}) & set(roles))


def effective_status(referral: Referral, grant: dict[str, Any] | None, now_ms: int) -> str:
    """The status a reader should act on: a referral whose grant the patient revoked
    (consent.revoke, outside this contract) or that ran out is over, whatever its
    last recorded step."""
    if referral["status"] in (DECLINED, CANCELLED, COMPLETED):
        return referral["status"]
    if grant is not None and grant["status"] != "active":
        return "revoked"
    if now_ms >= referral["expires_ms"]:
        return "expired"
    return referral["status"]


def timeline(
    referral: Referral,
    grant: dict[str, Any] | None,
    sessions: Iterable[dict[str, Any]],
    time_of_height: Callable[[int], int | None],
) -> list[dict[str, Any]]:
    """Every step with its block time, oldest first: the referral's own steps, each
    exchange session opened under its grant ("fetched", with release and ack), and
    the grant's revocation. `time_of_height` gives a committed block's time (steps
    outside this contract record only their height); None if the node lacks it."""
    entries: list[dict[str, Any]] = [dict(s) for s in referral["steps"]]
    for s in sessions:
        entry: dict[str, Any] = {
            "step": "fetched",
            "actor": s["requester"],
            "height": s["opened_height"],
            "time_ms": s["opened_time_ms"],
            "session_id": s["session_id"],
            "record_id": s["record_id"],
            "session_status": s["status"],
        }
        if "released_height" in s:
            entry["released_height"] = s["released_height"]
            entry["released_time_ms"] = time_of_height(s["released_height"])
        if "acked_height" in s:
            entry["acked_height"] = s["acked_height"]
            entry["acked_time_ms"] = time_of_height(s["acked_height"])
        entries.append(entry)
    if grant is not None and "revoked_height" in grant:
        entries.append(
            {
                "step": "revoked",
                "actor": grant["revoked_by"],
                "height": grant["revoked_height"],
                "time_ms": time_of_height(grant["revoked_height"]),
                "grant_id": grant["grant_id"],
            }
        )
    # A cancellation revokes in the same block: "cancelled" stays after "revoked".
    order = {"revoked": 0, "cancelled": 1}
    return sorted(entries, key=lambda e: (e["height"], order.get(e["step"], 0)))
