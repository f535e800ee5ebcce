"""Who may see what through the node's gateway, one function per kind of thing.

The patient (or their guardian) sees their own; staff see what their
organisation holds or did; a regulator sees everything for supervision; node
operators see everything. A caller outside those gets the answer a missing
thing gets (an empty list, the same 404), so a stranger cannot learn whether a
patient has records, grants or sessions by asking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from medchain.contracts.consent import decide
from medchain.contracts.consent import model as consent
from medchain.contracts.consent.model import guardian_key
from medchain.contracts.exchange import model as exchange
from medchain.contracts.exchange.proof import purpose_of_use
from medchain.contracts.htlc import model as htlc
from medchain.contracts.identity import model as identity
from medchain.contracts.records import model as records
from medchain.gateway.auth import Caller

Get = Callable[[str], Any]
Scan = Callable[[str], Iterator[tuple[str, Any]]]


def speaks_for(caller: Caller, get: Get, patient: str | None) -> bool:
    """The caller is this patient, or a guardian the patient named."""
    if not patient or not caller.did:
        return False
    return caller.did == patient or get(guardian_key(patient, caller.did)) is not None


def may_see_patient(caller: Caller, get: Get, patient: str) -> bool:
    """Everything about a patient: the patient, a guardian, a regulator, an operator."""
    return caller.supervises or speaks_for(caller, get, patient)


def is_staff_of(caller: Caller, org_id: str | None) -> bool:
    """Staff of an organisation see what it holds; None (no organisation) matches no one."""
    return org_id is not None and caller.org_id == org_id


def may_see_members(caller: Caller, org_id: str) -> bool:
    """An organisation's member list (names, roles, status): its own staff, who work
    with them, and the node's operators. Not regulators: who works where is the
    organisation's business, and each member's acts are already in the audit trail."""
    return caller.operator or is_staff_of(caller, org_id)


def may_see_record(caller: Caller, get: Get, scan: Scan, record: dict[str, Any], now: int) -> bool:
    """A record's registration: its patient's side, its custodian's staff, and a member
    the chain lets read it now for the purpose they signed."""
    if may_see_patient(caller, get, record["patient"]) or is_staff_of(caller, record["custodian"]):
        return True
    member = get(identity.did_key(caller.did)) if caller.did else None
    if member is None:
        return False
    return decide(get, scan, member, record, purpose_of_use(caller.purpose), now).allowed


def may_see_grant(caller: Caller, get: Get, grant: dict[str, Any]) -> bool:
    """A grant: its patient's side and the person or organisation it names."""
    if may_see_patient(caller, get, grant["patient"]):
        return True
    kind, grantee = grant["grantee_kind"], grant["grantee"]
    return (kind == "did" and grantee == caller.did) or (
        kind == "org" and is_staff_of(caller, grantee)
    )


def may_see_break_glass(caller: Caller, get: Get, request: dict[str, Any]) -> bool:
    """An emergency request: the patient's side, the doctor, the approver, and the clinical
    staff of the same organisation (who must see it to approve it)."""
    if may_see_patient(caller, get, request["patient"]):
        return True
    if caller.did in (request["doctor"], request.get("approver")):
        return True
    return is_staff_of(caller, request["org_id"]) and bool(caller.roles & identity.CLINICAL_ROLES)


def may_list_break_glass(caller: Caller, get: Get, request: dict[str, Any]) -> bool:
    """Which requests a list shows: narrower than may_see_break_glass, since a list finds
    what an id would not. The patient's side, the doctor, the approver, regulators, and
    of the requesting organisation only the staff in an approving role (who must find a
    request to approve it); other clinical staff still read one by its id."""
    if may_see_patient(caller, get, request["patient"]):
        return True
    if caller.did in (request["doctor"], request.get("approver")):
        return True
    rules = get(consent.BREAK_GLASS_POLICY_KEY) or {}
    approving = caller.roles & set(rules.get("approver_roles", ()))
    return is_staff_of(caller, request["org_id"]) and bool(approving)


def may_see_session(caller: Caller, get: Get, session: dict[str, Any]) -> bool:
    """An exchange session: the patient's side, the requester, the custodian's staff."""
    return (
        may_see_patient(caller, get, session["patient"])
        or session["requester"] == caller.did
        or is_staff_of(caller, session["custodian"])
    )


class AuditFilter:
    """Which audit rows a caller may see: their own acts, their patient side's events,
    events on records their organisation holds, and (for an org admin) the acts of
    their organisation's members. Member lookups are cached for one answer."""

    def __init__(self, caller: Caller, get: Get) -> None:
        self.caller, self.get = caller, get
        self._orgs: dict[str, str | None] = {}
        self._patients: dict[str, bool] = {}

    def org_of(self, did: str) -> str | None:
        """The organisation of an actor, looked up once per answer."""
        if did not in self._orgs:
            member = self.get(identity.did_key(did))
            self._orgs[did] = None if member is None else member.get("org_id")
        return self._orgs[did]

    def allows(self, row: dict[str, Any]) -> bool:
        """Whether this caller may see this audit row (see the class docstring)."""
        c = self.caller
        if c.supervises or (c.did and row["actor"] == c.did):
            return True
        patient = row.get("patient")
        if patient:
            if patient not in self._patients:
                self._patients[patient] = speaks_for(c, self.get, patient)
            if self._patients[patient]:
                return True
        if is_staff_of(c, row["attributes"].get("custodian")):
            return True
        return "org_admin" in c.roles and is_staff_of(c, self.org_of(row["actor"]))


def may_see_state(caller: Caller, get: Get, scan: Scan, key: str, value: Any, now: int) -> bool:
    """A single state value (e.g. to prove it): regulators and operators any key; others
    the records, grants, emergency requests and sessions they may see, and their own
    identity record. Anything else of the raw state is for operators."""
    if caller.supervises:
        return True
    if value is None:
        return False
    if key == identity.did_key(caller.did):
        return True
    if key.startswith(records.RECORD_PREFIX):
        return may_see_record(caller, get, scan, value, now)
    if key.startswith(records.BATCH_PREFIX):  # a batch's anchor: its patient's side, its custodian
        return may_see_patient(caller, get, value["patient"]) or is_staff_of(
            caller, value["custodian"]
        )
    if key.startswith(consent.GRANT_PREFIX):
        return may_see_grant(caller, get, value)
    if key.startswith(consent.BREAK_GLASS_PREFIX):
        return may_see_break_glass(caller, get, value)
    if key.startswith(exchange.SESSION_PREFIX):
        return may_see_session(caller, get, value)
    if key.startswith(htlc.lock_key("")):  # a swap's other party proves it to its chain
        return caller.did in (value["locker"], value["recipient"])
    return False
