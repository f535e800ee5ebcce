"""FHIR R4 required bindings checked before a record is stored: data, not code.

Each entry names an element by its specification path and the value set the
specification binds it to with strength *required* (FHIR R4 4.0.1, the URL of
each value set is its page in the specification). `code` elements must hold one
of the codes; CodeableConcept elements must carry at least one coding from the
code system. Codes are case-sensitive: "FINAL" is not "final".

Paths that start with a data type (Quantity.comparator) apply wherever that data
type (or a profile of it, such as Age or Duration) is used. The list covers the
resource types the importer stores or reads in Synthea bundles; an element
missing here is simply not binding-checked.
"""

from __future__ import annotations

from dataclasses import dataclass

SPEC = "http://hl7.org/fhir/R4/"
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"


@dataclass(frozen=True)
class ValueSet:
    """A required value set: its canonical URL, its spec page, its code system
    (for CodeableConcept bindings) and its codes."""

    url: str
    page: str
    codes: frozenset[str]
    system: str | None = None


def _vs(name: str, codes: str, system: str | None = None) -> ValueSet:
    return ValueSet(
        f"http://hl7.org/fhir/ValueSet/{name}",
        f"{SPEC}valueset-{name}.html",
        frozenset(codes.split()),
        system,
    )


ADMINISTRATIVE_GENDER = _vs("administrative-gender", "male female other unknown")
OBSERVATION_STATUS = _vs(
    "observation-status",
    "registered preliminary final amended corrected cancelled entered-in-error unknown",
)
DIAGNOSTIC_REPORT_STATUS = _vs(
    "diagnostic-report-status",
    "registered partial preliminary final amended corrected appended cancelled "
    "entered-in-error unknown",
)
ENCOUNTER_STATUS = _vs(
    "encounter-status",
    "planned arrived triaged in-progress onleave finished cancelled entered-in-error unknown",
)
EVENT_STATUS = _vs(
    "event-status",
    "preparation in-progress not-done on-hold stopped completed entered-in-error unknown",
)
REQUEST_STATUS = _vs(
    "request-status", "draft active on-hold revoked completed entered-in-error unknown"
)
FM_STATUS = _vs("fm-status", "active cancelled draft entered-in-error")
CLAIM_USE = _vs("claim-use", "claim preauthorization predetermination")

# element path -> the value set it is bound to (strength: required)
REQUIRED_BINDINGS: dict[str, ValueSet] = {
    # data types, wherever they are used
    "Quantity.comparator": _vs("quantity-comparator", "< <= >= >"),
    "Identifier.use": _vs("identifier-use", "usual official temp secondary old"),
    "HumanName.use": _vs("name-use", "usual official temp nickname anonymous old maiden"),
    "ContactPoint.system": _vs("contact-point-system", "phone fax email pager url sms other"),
    "ContactPoint.use": _vs("contact-point-use", "home work temp old mobile"),
    "Address.use": _vs("address-use", "home work temp old billing"),
    "Address.type": _vs("address-type", "postal physical both"),
    "Narrative.status": _vs("narrative-status", "generated extensions additional empty"),
    "Timing.repeat.periodUnit": _vs("units-of-time", "s min h d wk mo a"),
    "Timing.repeat.durationUnit": _vs("units-of-time", "s min h d wk mo a"),
    "Timing.repeat.dayOfWeek": _vs("days-of-week", "mon tue wed thu fri sat sun"),
    # resources
    "Patient.gender": ADMINISTRATIVE_GENDER,
    "Patient.contact.gender": ADMINISTRATIVE_GENDER,
    "Patient.link.type": _vs("link-type", "replaced-by replaces refer seealso"),
    "Observation.status": OBSERVATION_STATUS,
    "DiagnosticReport.status": DIAGNOSTIC_REPORT_STATUS,
    "Encounter.status": ENCOUNTER_STATUS,
    "Encounter.statusHistory.status": ENCOUNTER_STATUS,
    "Encounter.location.status": _vs(
        "encounter-location-status", "planned active reserved completed"
    ),
    "MedicationRequest.status": _vs(
        "medicationrequest-status",
        "active on-hold cancelled completed entered-in-error stopped draft unknown",
    ),
    "MedicationRequest.intent": _vs(
        "medicationrequest-intent",
        "proposal plan order original-order reflex-order filler-order instance-order option",
    ),
    "MedicationRequest.priority": _vs("request-priority", "routine urgent asap stat"),
    "ImagingStudy.status": _vs(
        "imagingstudy-status", "registered available cancelled entered-in-error unknown"
    ),
    "Condition.clinicalStatus": _vs(
        "condition-clinical",
        "active recurrence relapse inactive remission resolved",
        TERMINOLOGY + "condition-clinical",
    ),
    "Condition.verificationStatus": _vs(
        "condition-ver-status",
        "unconfirmed provisional differential confirmed refuted entered-in-error",
        TERMINOLOGY + "condition-ver-status",
    ),
    "Procedure.status": EVENT_STATUS,
    "AllergyIntolerance.clinicalStatus": _vs(
        "allergyintolerance-clinical",
        "active inactive resolved",
        TERMINOLOGY + "allergyintolerance-clinical",
    ),
    "AllergyIntolerance.verificationStatus": _vs(
        "allergyintolerance-verification",
        "unconfirmed confirmed refuted entered-in-error",
        TERMINOLOGY + "allergyintolerance-verification",
    ),
    "AllergyIntolerance.type": _vs("allergy-intolerance-type", "allergy intolerance"),
    "AllergyIntolerance.category": _vs(
        "allergy-intolerance-category", "food medication environment biologic"
    ),
    "AllergyIntolerance.criticality": _vs(
        "allergy-intolerance-criticality", "low high unable-to-assess"
    ),
    "AllergyIntolerance.reaction.severity": _vs("reaction-event-severity", "mild moderate severe"),
    "Immunization.status": _vs("immunization-status", "completed entered-in-error not-done"),
    "DocumentReference.status": _vs(
        "document-reference-status", "current superseded entered-in-error"
    ),
    "DocumentReference.docStatus": _vs(
        "composition-status", "preliminary final amended entered-in-error"
    ),
    "DocumentReference.relatesTo.code": _vs(
        "document-relationship-type", "replaces transforms signs appends"
    ),
    "CarePlan.status": REQUEST_STATUS,
    "CarePlan.intent": _vs("care-plan-intent", "proposal plan order option"),
    "Claim.status": FM_STATUS,
    "Claim.use": CLAIM_USE,
    "ExplanationOfBenefit.status": _vs(
        "explanationofbenefit-status", "active cancelled draft entered-in-error"
    ),
    "ExplanationOfBenefit.use": CLAIM_USE,
    "ExplanationOfBenefit.outcome": _vs("remittance-outcome", "queued complete error partial"),
    "Bundle.type": _vs(
        "bundle-type",
        "document message transaction transaction-response batch batch-response "
        "history searchset collection",
    ),
    "Bundle.entry.request.method": _vs("http-verb", "GET HEAD POST PUT DELETE PATCH"),
    "Bundle.entry.search.mode": _vs("search-entry-mode", "match include outcome"),
}
