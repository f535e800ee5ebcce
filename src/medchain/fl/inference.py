"""Run a registered model on one patient's panel, in pure Python (no numpy).

The main venv, where a clinician's `medchain models infer` runs, has no numpy. The
canonical model file (magic, a 4-byte big-endian header length, a sorted-key JSON
header, little-endian float64 weights then the bias) is defined here, with `struct`,
and fl/model.py (numpy, .venv-fl) writes and reads it through this module: one form,
anything else refused byte for byte, so the file whose SM3 the chain records is the
only thing that is ever run. The probability is the same logistic function over the same
scaled features (fl/features.py): a test checks it against fl/model.py to 1e-9.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable
from typing import Any

from medchain.exceptions import MedChainError
from medchain.fl.features import FEATURES, LABEL_CODE, LABEL_SYSTEM, patient_row

MAGIC = b"MEDCHAIN-FL-MODEL\n"
FORMAT = "logistic-regression/1"
_HEADER_AT = len(MAGIC) + 4


class InferenceError(MedChainError):
    """A model file not in canonical form, or a panel the model cannot read."""


def parse_model(data: bytes) -> list[float]:
    """The weights then the bias of a canonical model file; InferenceError otherwise.

    Checks: magic, JSON header of the one format, a
    body of exactly features + 1 float64s, and the bytes re-encoded are the bytes read
    (no extra header keys, whitespace or trailing bytes a hash would not show)."""
    if not data.startswith(MAGIC) or len(data) < _HEADER_AT:
        raise InferenceError("not a MedChain model file (bad magic)")
    (size,) = struct.unpack(">I", data[len(MAGIC) : _HEADER_AT])
    try:
        header = json.loads(data[_HEADER_AT : _HEADER_AT + size])
    except ValueError as e:
        raise InferenceError("the model file's header is not JSON") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InferenceError(f"the model file is not in the {FORMAT} format")
    body = data[_HEADER_AT + size :]
    features = header.get("features")
    if (
        not isinstance(features, int)
        or isinstance(features, bool)
        or features < 0
        or len(body) != 8 * (features + 1)
    ):
        raise InferenceError("the model file's length does not match its header")
    params = list(struct.unpack(f"<{features + 1}d", body))
    if model_bytes(params) != data:
        raise InferenceError("the model file is not in canonical form")
    return params


def model_bytes(params: list[float]) -> bytes:
    """The canonical model file of `params` (weights, then the bias); fl/model.py's
    model_bytes is this, so a model can be made without numpy too."""
    header = json.dumps(
        {"format": FORMAT, "features": len(params) - 1, "dtype": "<f8"},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return (
        MAGIC + struct.pack(">I", len(header)) + header + struct.pack(f"<{len(params)}d", *params)
    )


def predict(params: list[float], row: list[float]) -> float:
    """P(label = 1) for one scaled row: the logistic of w·x + b, z clipped to ±500 as
    fl/model.predict_proba does."""
    if len(params) != len(row) + 1:
        raise InferenceError(f"the model reads {len(params) - 1} features, the row has {len(row)}")
    z = math.fsum(w * x for w, x in zip(params[:-1], row, strict=True)) + params[-1]
    z = min(500.0, max(-500.0, z))
    return 1.0 / (1.0 + math.exp(-z))


def panel_resources(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources of one input record: a FHIR Bundle's entries (the panel a
    clinician reads: the Patient and their Observations), or the one resource."""
    if document.get("resourceType") != "Bundle":
        return [document]
    entries = document.get("entry")
    if not isinstance(entries, list):
        return []
    return [
        e["resource"]
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]


def feature_row(resources: Iterable[dict[str, Any]]) -> list[float]:
    """The patient's scaled feature row, read by the training path's own code.

    fl.features.patient_row also wants the training label (the outcome one year on),
    which is what a prediction is for and no record has yet: a placeholder label
    observation is added after the panel's resources (it wins over any label in
    them) and the label is dropped, so training and inference read the same FHIR
    facts the same way."""
    placeholder = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LABEL_SYSTEM, "code": LABEL_CODE}]},
        "valueBoolean": False,
    }
    found = patient_row([*resources, placeholder])
    if found is None:
        names = ", ".join(f.code or f.name for f in FEATURES)
        raise InferenceError(
            "the record lacks what the model reads: a Patient with birthDate and gender, "
            f"and final Observations of every one of {names}"
        )
    return found[0]
