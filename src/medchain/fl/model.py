"""Logistic regression in numpy, and the canonical model file whose SM3 goes on chain.

The model is one float64 vector (feature weights, then the bias), so one vector is
what a hospital encrypts and what the aggregator adds. Training is mini-batch
gradient descent with a seeded generator, so a hospital, a round and a seed always
give the same update. The model file is deterministic bytes (magic, a canonical JSON
header, little-endian float64s): the same parameters always hash to the same SM3, and
`load_model` refuses a file whose hash is not the one published.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score

from medchain.crypto import sm3
from medchain.exceptions import MedChainError
from medchain.fl import inference
from medchain.fl.data import Floats, Part

MICRO = 1_000_000  # metrics and parameters in reports are integers in millionths


class ModelFileError(MedChainError):
    """A model file that is malformed, or whose bytes are not the ones published."""


@dataclass(frozen=True)
class TrainingPlan:
    """How a hospital trains locally each round (and the central baseline, in total)."""

    epochs: int = 5
    learning_rate: float = 0.1
    batch_size: int = 16


@dataclass(frozen=True)
class Metrics:
    """Accuracy and AUC on a part; AUC is None where the part holds one class only."""

    n: int
    accuracy: float
    auc: float | None

    def as_report(self) -> dict[str, int | None]:
        """Integers for a round report (millionths), the form the chain can hold."""
        return {
            "n": self.n,
            "accuracy_micro": round(self.accuracy * MICRO),
            "auc_micro": None if self.auc is None else round(self.auc * MICRO),
        }


def initial_params(features: int) -> Floats:
    """Round 1 starts every hospital from zeros: no party chooses the starting point."""
    return np.zeros(features + 1, dtype=np.float64)


def predict_proba(params: Floats, rows: Floats) -> Floats:
    """P(label = 1) for each row."""
    z = rows @ params[:-1] + params[-1]
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -500, 500))), dtype=np.float64)


def train(params: Floats, part: Part, plan: TrainingPlan, rng: np.random.Generator) -> Floats:
    """A few epochs of mini-batch gradient descent on log loss, from `params`."""
    w = params.copy()
    n = len(part)
    for _ in range(plan.epochs):
        order = rng.permutation(n)
        for start in range(0, n, plan.batch_size):
            batch = order[start : start + plan.batch_size]
            x, y = part.X[batch], part.y[batch]
            error = predict_proba(w, x) - y
            w[:-1] -= plan.learning_rate * (x.T @ error) / len(batch)
            w[-1] -= plan.learning_rate * float(error.mean())
    return w


def train_central(pooled: Part, plan: TrainingPlan, rounds: int, seed: int) -> Floats:
    """The baseline: the same model and plan on the pooled data, rounds × epochs in all."""
    rng = np.random.default_rng([seed, 0])
    total = TrainingPlan(plan.epochs * rounds, plan.learning_rate, plan.batch_size)
    return train(initial_params(pooled.X.shape[1]), pooled, total, rng)


def evaluate(params: Floats, part: Part) -> Metrics:
    """Accuracy at the 0.5 threshold and ROC AUC of the model on a part."""
    proba = predict_proba(params, part.X)
    accuracy = float(((proba >= 0.5).astype(np.int64) == part.y).mean())
    auc = float(roc_auc_score(part.y, proba)) if len(np.unique(part.y)) == 2 else None
    return Metrics(len(part), accuracy, auc)


def model_bytes(params: Floats) -> bytes:
    """The canonical model file: magic, header length, sorted-key JSON header, float64 LE
    (one definition of the form, fl/inference.py's, which the main venv reads too)."""
    return inference.model_bytes([float(x) for x in as_vector(params)])


def model_sm3(data: bytes) -> str:
    """The hex SM3 of a model file: the hash the chain records for the model."""
    return sm3(data).hex()


def parse_model(data: bytes) -> Floats:
    """The parameters in a model file, refusing anything not in the canonical form."""
    try:
        params = inference.parse_model(data)
    except inference.InferenceError as e:
        raise ModelFileError(str(e)) from e
    return np.asarray(params, dtype=np.float64)


def write_model(path: Path, params: Floats) -> str:
    """Write a model file; returns its SM3 hex."""
    data = model_bytes(params)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return model_sm3(data)


def load_model(path: Path, expected_sm3: str) -> Floats:
    """The parameters of a published model file, only if its SM3 is the published one.

    An altered file (one flipped bit of a weight) has another hash: it is refused,
    so a clinician's tool never runs a model other than the one the chain records.
    """
    data = path.read_bytes()
    actual = model_sm3(data)
    if actual != expected_sm3.lower():
        raise ModelFileError(
            f"{path}: SM3 {actual} is not the published {expected_sm3}; "
            "fetch the model file again from its publisher"
        )
    return parse_model(data)


def as_vector(values: npt.ArrayLike) -> Floats:
    """Any array-like as a contiguous float64 vector."""
    return np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
