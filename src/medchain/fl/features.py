"""The study's feature vocabulary: which FHIR facts make a patient's row, and how scaled.

Pure Python (no numpy), so both venvs share it: the synthetic-patient generator
(.venv-fl) writes FHIR resources with these codes, and the hospital's side of
`medchain fl prepare-round` (main venv) reads them back from its own vault.

A row is age and sex from the Patient resource, then eight Observations by LOINC
code; the label is an Observation under a local code system (it is not a clinical
fact LOINC names: scikit-learn's diabetes progression score one year on, above the
data set's median). Every hospital scales a feature by the same fixed centre and
scale, written here as part of the protocol (rounded summary statistics of the
public data set), so no hospital's data shapes another's inputs and the chain side
needs no pooled statistics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

LOINC = "http://loinc.org"
LABEL_SYSTEM = "urn:medchain:synth:diabetes"
LABEL_CODE = "progression-above-median"
# Ages become birth dates at this date and back (the data set gives whole years).
REFERENCE_YEAR = 2026
# The data set codes sex 1 or 2 without saying which is which: 1 is read as female,
# 2 as male (a stated, arbitrary choice; the model only needs it to be consistent).
SEX_CODES = {1: "female", 2: "male"}


@dataclass(frozen=True)
class Feature:
    """One input of the model: where it comes from, its unit, and its fixed scaling."""

    name: str
    code: str  # LOINC code, or "" for a Patient attribute
    display: str
    unit: str
    centre: float
    scale: float
    log: bool = False  # the model reads ln(value) (triglycerides, as the data set does)

    def scaled(self, value: float) -> float:
        """The value as the model reads it: (x - centre) / scale, after ln if `log`."""
        x = math.log(value) if self.log else value
        return (x - self.centre) / self.scale


FEATURES: tuple[Feature, ...] = (
    Feature("age", "", "Age at the reference date", "a", 48.5, 13.1),
    Feature("sex", "", "Administrative gender (male = 1)", "", 0.47, 0.5),
    Feature("bmi", "39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 26.4, 4.4),
    Feature("map", "8478-0", "Mean blood pressure", "mm[Hg]", 94.6, 13.8),
    Feature("tc", "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 189.1, 34.6),
    Feature(
        "ldl", "2089-1", "Cholesterol in LDL [Mass/volume] in Serum or Plasma", "mg/dL", 115.4, 30.4
    ),
    Feature(
        "hdl", "2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", 49.8, 12.9
    ),
    Feature(
        "tc_hdl",
        "9830-1",
        "Cholesterol.total/Cholesterol in HDL [Mass Ratio]",
        "{ratio}",
        4.07,
        1.29,
    ),
    Feature(
        "tg",
        "2571-8",
        "Triglyceride [Mass/volume] in Serum or Plasma",
        "mg/dL",
        4.64,
        0.52,
        log=True,
    ),
    Feature("glucose", "2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 91.3, 11.5),
)
FEATURE_NAMES = tuple(f.name for f in FEATURES)
# How a study names them in research.create_study's `features`: LOINC codes, and names
# for the Patient's own attributes.
STUDY_FEATURES = tuple(f.code or f.name for f in FEATURES)
BY_CODE = {f.code: f for f in FEATURES if f.code}


def patient_row(resources: Iterable[dict[str, Any]]) -> tuple[list[float], int] | None:
    """A patient's scaled feature row and 0/1 label from their FHIR resources at one
    hospital, or None when anything the model needs is missing (the patient is then in
    the cohort but cannot train: the caller counts them)."""
    values: dict[str, float] = {}
    label: int | None = None
    for resource in resources:
        kind = resource.get("resourceType")
        if kind == "Patient":
            year = _birth_year(resource.get("birthDate"))
            if year is not None:
                values["age"] = float(REFERENCE_YEAR - year)
            if resource.get("gender") in ("female", "male"):
                values["sex"] = 1.0 if resource["gender"] == "male" else 0.0
        elif kind == "Observation" and resource.get("status") in ("final", "amended"):
            for coding in resource.get("code", {}).get("coding", []):
                if coding.get("system") == LOINC and coding.get("code") in BY_CODE:
                    quantity = resource.get("valueQuantity", {}).get("value")
                    if isinstance(quantity, int | float) and not isinstance(quantity, bool):
                        values[BY_CODE[coding["code"]].name] = float(quantity)
                elif (
                    coding.get("system") == LABEL_SYSTEM
                    and coding.get("code") == LABEL_CODE
                    and isinstance(resource.get("valueBoolean"), bool)
                ):
                    label = int(resource["valueBoolean"])
    if label is None or any(name not in values for name in FEATURE_NAMES):
        return None
    row = []
    for f in FEATURES:
        if f.log and values[f.name] <= 0:
            return None
        row.append(f.scaled(values[f.name]))
    return row, label


def _birth_year(value: Any) -> int | None:
    if isinstance(value, str) and len(value) >= 4 and value[:4].isdigit():
        return int(value[:4])
    return None
