"""FHIR resources as people read them: an Observation as a value with its unit and
reference range, a MedicationRequest as a prescription, anything else as a short
list of its main facts. The pages never show raw JSON to a patient or a clinician."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ResourceView:
    """What a page shows of one resource: a title and labelled lines (label keys are
    message ids of the catalogue, so the labels are translated)."""

    resource_type: str
    title: str
    lines: list[tuple[str, str]] = field(default_factory=list)
    flag: str = ""  # e.g. "H" for a value above its reference range


def concept_text(concept: Any) -> str:
    """A CodeableConcept as words: its text, else its first coding's display or code."""
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return ""


def quantity_text(q: Any) -> str:
    """A Quantity as `6.3 mmol/l` (a comparator such as `<` kept in front)."""
    if not isinstance(q, dict) or q.get("value") is None:
        return ""
    unit = q.get("unit") or q.get("code") or ""
    return f"{q.get('comparator', '')}{q['value']} {unit}".strip()


def range_text(ranges: Any) -> str:
    """The first reference range as `3.1 – 6.2 mmol/l` (or its text)."""
    if not isinstance(ranges, list) or not ranges or not isinstance(ranges[0], dict):
        return ""
    r = ranges[0]
    low, high = r.get("low") or {}, r.get("high") or {}
    if low.get("value") is not None and high.get("value") is not None:
        unit = high.get("unit") or high.get("code") or ""
        return f"{low['value']} – {high['value']} {unit}".strip()
    if low or high:
        return (f"≥ {quantity_text(low)}" if low else f"≤ {quantity_text(high)}").strip()
    return str(r.get("text", ""))


def observation_view(res: dict[str, Any]) -> ResourceView:
    """Value, unit, reference range and interpretation: what a clinician reads first."""
    value = quantity_text(res.get("valueQuantity")) or concept_text(res.get("valueCodeableConcept"))
    if not value and res.get("valueString") is not None:
        value = str(res["valueString"])
    interpretation = [concept_text(c) for c in res.get("interpretation") or []]
    codes = [
        str(c.get("code", ""))
        for i in res.get("interpretation") or []
        if isinstance(i, dict)
        for c in i.get("coding") or []
        if isinstance(c, dict)
    ]
    when = res.get("effectiveDateTime") or (res.get("effectivePeriod") or {}).get("start")
    lines = [
        ("fhir.value", value),
        ("fhir.range", range_text(res.get("referenceRange"))),
        ("fhir.interpretation", ", ".join(t for t in interpretation if t)),
        ("fhir.status", str(res.get("status", ""))),
        ("fhir.effective", str(when or res.get("issued") or "")),
    ]
    flag = next((c for c in codes if c in ("H", "HH", "L", "LL", "A", "AA")), "")
    return ResourceView(
        "Observation", concept_text(res.get("code")), [(k, v) for k, v in lines if v], flag
    )


def _medication_name(res: dict[str, Any]) -> str:
    """The medicine: medicationCodeableConcept, or the contained Medication referenced."""
    name = concept_text(res.get("medicationCodeableConcept"))
    ref = (res.get("medicationReference") or {}).get("reference", "")
    if not name and isinstance(ref, str) and ref.startswith("#"):
        for c in res.get("contained") or []:
            if isinstance(c, dict) and c.get("id") == ref[1:]:
                name = concept_text(c.get("code"))
    return name or str((res.get("medicationReference") or {}).get("display", ""))


def _dosage_text(dosage: Any) -> str:
    """Each dosage instruction's text, or its dose and timing as written."""
    parts = []
    for d in dosage if isinstance(dosage, list) else []:
        if not isinstance(d, dict):
            continue
        text = d.get("text") or d.get("patientInstruction")
        if not text:
            doses = [
                quantity_text(x.get("doseQuantity"))
                for x in d.get("doseAndRate") or []
                if isinstance(x, dict)
            ]
            text = " ".join(t for t in (*doses, concept_text(d.get("route"))) if t)
        if text:
            parts.append(str(text))
    return "; ".join(parts)


def prescription_view(res: dict[str, Any]) -> ResourceView:
    """A MedicationRequest as a prescription: medicine, dosage, quantity, repeats, who
    prescribed it and why."""
    dispense = res.get("dispenseRequest") or {}
    notes = "; ".join(str(n.get("text", "")) for n in res.get("note") or [] if isinstance(n, dict))
    reasons = ", ".join(concept_text(c) for c in res.get("reasonCode") or [])
    lines = [
        ("fhir.medication", _medication_name(res)),
        ("fhir.dosage", _dosage_text(res.get("dosageInstruction"))),
        ("fhir.quantity", quantity_text(dispense.get("quantity"))),
        ("fhir.repeats", str(dispense.get("numberOfRepeatsAllowed", ""))),
        ("fhir.supply", quantity_text(dispense.get("expectedSupplyDuration"))),
        ("fhir.reason", reasons),
        ("fhir.note", notes),
        ("fhir.prescriber", str((res.get("requester") or {}).get("display", ""))),
        ("fhir.authored", str(res.get("authoredOn", ""))),
        ("fhir.status", f"{res.get('status', '')} / {res.get('intent', '')}".strip(" /")),
    ]
    return ResourceView("MedicationRequest", _medication_name(res), [(k, v) for k, v in lines if v])


def generic_view(res: dict[str, Any]) -> ResourceView:
    """Any other resource: its code or type as the title, status, date and conclusion."""
    title = (
        concept_text(res.get("code"))
        or concept_text(res.get("type"))
        or str(res.get("resourceType", ""))
    )
    when = res.get("effectiveDateTime") or res.get("issued") or res.get("date") or ""
    lines = [
        ("fhir.status", str(res.get("status", ""))),
        ("fhir.effective", str(when)),
        ("fhir.conclusion", str(res.get("conclusion", ""))),
    ]
    return ResourceView(str(res.get("resourceType", "")), title, [(k, v) for k, v in lines if v])


def resource_view(res: dict[str, Any]) -> ResourceView:
    """The view for a resource, by its type."""
    kind = res.get("resourceType")
    if kind == "Observation":
        return observation_view(res)
    if kind == "MedicationRequest":
        return prescription_view(res)
    return generic_view(res)
