"""Synthetic patients for the end-to-end path: scikit-learn's diabetes rows as FHIR R4.

`python -m medchain.fl.synth --out DIR --hospitals hosp-a,hosp-b,hosp-c --patients 30`
writes DIR/<org>.ndjson (each line one FHIR resource) and DIR/patients.json (which
HIS identifier each hospital holds). Each row of the data set (`scaled=False`: real
units) is one patient: a Patient (gender, a birth date from the age at
features.REFERENCE_YEAR), one Observation per LOINC-coded measurement, and the
label "progression above the median" as an Observation under a local code system
(features.py says why). The hospitals import these files into their edge vaults
with the existing `medchain import fhir` path, after linking each identifier to the
patient's ledger DID; training later reads them back from the vaults only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_diabetes

from medchain.fl.features import (
    FEATURES,
    LABEL_CODE,
    LABEL_SYSTEM,
    LOINC,
    REFERENCE_YEAR,
    SEX_CODES,
)

PATIENT_SYSTEM = "urn:medchain:synth:diabetes:patient"
UCUM = "http://unitsofmeasure.org"
EFFECTIVE = f"{REFERENCE_YEAR - 1}-06-01"


def patient_resources(index: int, row: list[float], label: int) -> list[dict[str, Any]]:
    """One data set row as FHIR R4 resources: Patient, measurements, label."""
    pid = f"synth-{index:05d}"
    age, sex = int(row[0]), int(row[1])
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [{"system": PATIENT_SYSTEM, "value": pid}],
            "gender": SEX_CODES[sex],
            "birthDate": f"{REFERENCE_YEAR - age}-01-01",
        }
    ]
    for feature, value in zip(FEATURES[2:], row[2:], strict=True):
        quantity = math.exp(value) if feature.log else value
        resources.append(
            _observation(
                f"{pid}-{feature.code}",
                pid,
                {"system": LOINC, "code": feature.code, "display": feature.display},
                {
                    "valueQuantity": {
                        "value": round(quantity, 4),
                        "unit": feature.unit,
                        "system": UCUM,
                        "code": feature.unit,
                    }
                },
            )
        )
    resources.append(
        _observation(
            f"{pid}-label",
            pid,
            {"system": LABEL_SYSTEM, "code": LABEL_CODE, "display": "Progression above median"},
            {"valueBoolean": bool(label)},
        )
    )
    return resources


def _observation(
    oid: str, pid: str, coding: dict[str, str], value: dict[str, Any]
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [coding]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": EFFECTIVE,
        **value,
    }


def write_hospital_files(
    out: Path, orgs: list[str], per_hospital: int, seed: int
) -> dict[str, Any]:
    """Share `per_hospital` patients to each org (a seeded shuffle, IID) and write
    out/<org>.ndjson and out/patients.json; returns what patients.json holds."""
    bunch = load_diabetes(scaled=False)
    target = np.asarray(bunch.target, dtype=np.float64)
    labels = (target > np.median(target)).astype(int)
    order = np.random.default_rng(seed).permutation(len(labels))
    if per_hospital * len(orgs) > len(order):
        raise SystemExit(f"the data set has {len(order)} patients: ask for fewer")
    out.mkdir(parents=True, exist_ok=True)
    held: dict[str, list[str]] = {}
    for k, org in enumerate(orgs):
        rows = order[k * per_hospital : (k + 1) * per_hospital]
        lines = []
        for i in sorted(int(r) for r in rows):
            lines += [
                json.dumps(r, sort_keys=True)
                for r in patient_resources(i, [float(v) for v in bunch.data[i]], int(labels[i]))
            ]
            held.setdefault(org, []).append(f"synth-{i:05d}")
        (out / f"{org}.ndjson").write_text("\n".join(lines) + "\n")
    manifest = {"system": PATIENT_SYSTEM, "hospitals": held}
    (out / "patients.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Write the hospitals' synthetic FHIR files."""
    parser = argparse.ArgumentParser(prog="python -m medchain.fl.synth", description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hospitals", required=True, help="org ids, comma separated")
    parser.add_argument("--patients", type=int, default=30, help="per hospital")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    orgs = [o for o in args.hospitals.split(",") if o]
    manifest = write_hospital_files(args.out, orgs, args.patients, args.seed)
    print(json.dumps({org: len(ids) for org, ids in manifest["hospitals"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
