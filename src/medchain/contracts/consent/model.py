"""Consent vocabulary and state keys."""

from __future__ import annotations

NAMESPACE = "consent"

# HL7 v3 PurposeOfUse codes used by FHIR Consent.provision.purpose.
PURPOSES = frozenset({"TREAT", "ETREAT", "HRESEARCH", "HPAYMT", "HOPERAT", "PUBHLTH"})
GRANTEE_KINDS = frozenset({"did", "org", "role"})

CLINICAL = (
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
)

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
        "AllergyIntolerance",
        "Immunization",
        "Condition",
    ),
    "pharmacist": ("Patient", "MedicationRequest", "AllergyIntolerance"),
    "lab_technician": ("Patient", "Observation", "DiagnosticReport"),
    "researcher": ("Observation", "DiagnosticReport", "Condition", "ImagingStudy"),
    "regulator": (),
    "org_admin": (),
    "device": (),
}


def grant_key(grant_id: str) -> str:
    return f"{NAMESPACE}/grant/{grant_id}"


def by_patient_key(patient: str, grant_id: str) -> str:
    return f"{NAMESPACE}/by-patient/{patient}/{grant_id}"


def by_grantee_prefix(kind: str, grantee: str, patient: str) -> str:
    return f"{NAMESPACE}/by-grantee/{kind}/{grantee}/{patient}/"


def by_grantee_key(kind: str, grantee: str, patient: str, grant_id: str) -> str:
    return by_grantee_prefix(kind, grantee, patient) + grant_id


def guardian_key(patient: str, guardian: str) -> str:
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
    return f"{NAMESPACE}/break-glass/{request_id}"


def break_glass_index_key(doctor: str, patient: str, request_id: str) -> str:
    return f"{NAMESPACE}/break-glass-by/{doctor}/{patient}/{request_id}"


def role_policy_key(role: str) -> str:
    return f"{NAMESPACE}/role-policy/{role}"
