"""Consent vocabulary, state records and state keys.

The records are TypedDicts: they encode to exactly the CBOR maps the chain has
always stored, and the contract, the gateway and the edge read the same names.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict, get_args

NAMESPACE = "consent"

# HL7 v3 PurposeOfUse codes used by FHIR Consent.provision.purpose.
Purpose = Literal["TREAT", "ETREAT", "HRESEARCH", "HPAYMT", "HOPERAT", "PUBHLTH"]
PURPOSES: frozenset[str] = frozenset(get_args(Purpose))
# A "study" grantee is a research study (research contract): the grant puts the
# patient in its cohorts and never lets anyone read a record (policy.decide only
# looks for did, role and org grants).
GranteeKind = Literal["did", "org", "role", "study"]
GRANTEE_KINDS: frozenset[str] = frozenset(get_args(GranteeKind))

# The FHIR resource types a grant or a role policy may name.
ClinicalType = Literal[
    "Patient",
    "Encounter",
    "Observation",
    "DiagnosticReport",
    "MedicationRequest",
    "ImagingStudy",
    "Condition",
    "Procedure",
    "AllergyIntolerance",
    "Immunization",
    "DocumentReference",
    "Bundle",
    "Binary",
    # In the genesis role policy since issue 15: orders and care plans.
    "ServiceRequest",
    "CarePlan",
    "CareTeam",
    "Goal",
    "MedicationAdministration",
]
CLINICAL: tuple[str, ...] = get_args(ClinicalType)

# Status of a grant, and of a break-glass request.
ACTIVE, REVOKED = "active", "revoked"
PENDING, APPROVED = "pending", "approved"


class Grant(TypedDict):
    """A patient's consent (`consent/grant/<grant_id>`); revocation adds the revoked_* fields."""

    grant_id: str
    patient: str
    grantee_kind: str
    grantee: str
    purposes: list[str]
    scope_records: list[str]
    scope_types: list[str]
    expires_ms: int
    status: str
    granted_by: str
    granted_height: int
    granted_time_ms: int
    revoked_height: NotRequired[int]
    revoked_by: NotRequired[str]
    revoked_reason: NotRequired[str]  # only if the revocation gave one


class GrantRef(TypedDict):
    """An index entry (by patient, by grantee) pointing at a grant."""

    grant_id: str


class Guardianship(TypedDict):
    """A guardian the patient delegated to (`consent/guardian/<patient>/<guardian>`)."""

    since_height: int


class RolePolicy(TypedDict):
    """The resource types a role may ever see (`consent/role-policy/<role>`)."""

    resource_types: list[str]
    updated_height: int


class BreakGlassPolicy(TypedDict):
    """Which clinical roles may request and which may approve emergency access."""

    requester_roles: list[str]
    approver_roles: list[str]
    updated_height: int


class BreakGlassRequest(TypedDict):
    """An emergency access request (`consent/break-glass/<request_id>`), pending or approved."""

    request_id: str
    patient: str
    doctor: str
    org_id: str | None
    reason: str
    status: str
    requested_height: int
    approver: str | None
    expires_ms: int
    approved_height: NotRequired[int]


class BreakGlassRef(TypedDict):
    """An index entry (by doctor and patient) pointing at an approved request."""

    request_id: str


# What each role may ever see, whatever a patient grants (written at genesis,
# changed by a consortium admin's consent.set_role_policy).
DEFAULT_ROLE_POLICY: dict[str, tuple[str, ...]] = {
    "doctor": CLINICAL,
    "attending": CLINICAL,
    "department_head": CLINICAL,
    "nurse": (
        "Patient",
        "Encounter",
        "Observation",
        "MedicationRequest",
        "MedicationAdministration",
        "AllergyIntolerance",
        "Immunization",
        "Condition",
        "CarePlan",
        "CareTeam",
        "Goal",
        "ServiceRequest",
    ),
    "pharmacist": (
        "Patient",
        "MedicationRequest",
        "MedicationAdministration",
        "AllergyIntolerance",
    ),
    "lab_technician": ("Patient", "ServiceRequest", "Observation", "DiagnosticReport"),
    "researcher": ("Observation", "DiagnosticReport", "Condition", "ImagingStudy"),
    "regulator": (),
    "org_admin": (),
    "device": (),
}


GRANT_PREFIX = f"{NAMESPACE}/grant/"
BREAK_GLASS_PREFIX = f"{NAMESPACE}/break-glass/"


def grant_key(grant_id: str) -> str:
    """Where a grant lives."""
    return GRANT_PREFIX + grant_id


def by_patient_prefix(patient: str) -> str:
    """Scan this for every grant a patient (or their guardian) has made."""
    return f"{NAMESPACE}/by-patient/{patient}/"


def by_patient_key(patient: str, grant_id: str) -> str:
    """The index entry of one grant under its patient."""
    return by_patient_prefix(patient) + grant_id


def by_grantee_prefix(kind: str, grantee: str, patient: str) -> str:
    """Scan this for the grants one grantee holds from one patient."""
    return f"{NAMESPACE}/by-grantee/{kind}/{grantee}/{patient}/"


def grantee_prefix(kind: str, grantee: str) -> str:
    """Scan this for the grants one grantee holds from every patient (a study's joiners)."""
    return f"{NAMESPACE}/by-grantee/{kind}/{grantee}/"


def by_grantee_key(kind: str, grantee: str, patient: str, grant_id: str) -> str:
    """The index entry of one grant under its grantee and patient."""
    return by_grantee_prefix(kind, grantee, patient) + grant_id


class StudyJoins(TypedDict):
    """`consent/study-joins/<study_id>`: how many grants were ever made to a study,
    active or not (each stays in the study's grantee index, which a cohort rereads)."""

    count: int


def study_joins_key(study_id: str) -> str:
    """Where the number of grants ever made to a study lives."""
    return f"{NAMESPACE}/study-joins/{study_id}"


def guardian_key(patient: str, guardian: str) -> str:
    """Present while `guardian` may manage `patient`'s consent."""
    return f"{NAMESPACE}/guardian/{patient}/{guardian}"


# Emergency access: a treating doctor plus a second, senior clinician of the
# same hospital or clinic open a short, fixed window without prior consent.
# Which roles may ask and which may approve is governed state (written at
# genesis, changed by consent.set_break_glass_policy); both must be clinical
# roles (identity.CLINICAL_ROLES). An org admin does not approve by default: it
# can staff its own organisation, so approving would let it open any record.
BREAK_GLASS_WINDOW_MS = 4 * 3_600_000
BREAK_GLASS_POLICY_KEY = f"{NAMESPACE}/break-glass-policy"
DEFAULT_BREAK_GLASS_POLICY: dict[str, tuple[str, ...]] = {
    "requester_roles": ("attending", "department_head", "doctor"),
    "approver_roles": ("attending", "department_head"),
}


def break_glass_key(request_id: str) -> str:
    """Where a break-glass request lives."""
    return BREAK_GLASS_PREFIX + request_id


def break_glass_by_prefix(doctor: str, patient: str) -> str:
    """Scan this for the approved break-glass requests of one doctor for one patient."""
    return f"{NAMESPACE}/break-glass-by/{doctor}/{patient}/"


def break_glass_index_key(doctor: str, patient: str, request_id: str) -> str:
    """The index entry of one approved break-glass request."""
    return break_glass_by_prefix(doctor, patient) + request_id


def role_policy_key(role: str) -> str:
    """Where the resource types a role may see live."""
    return f"{NAMESPACE}/role-policy/{role}"
