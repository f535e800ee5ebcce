"""The public tabular data sets of the bench, split across hospitals the way a study would be.

scikit-learn ships both sets (no download): breast cancer (569 patients, 30 features,
malignant or not) and diabetes (442 patients, 10 features; its disease-progression
target is binarised at the median). A fixed global validation set is cut first; the
rest is shared out to hospitals IID or with label skew (Dirichlet α per class), each
hospital keeping a held-out part of its own. Features are standardised with
statistics of the hospitals' training parts only, so nothing of the validation set or
the held-out parts leaks into training. Every draw comes from one seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_breast_cancer, load_diabetes

from medchain.exceptions import MedChainError

# Aliases stated as such: the main venv's mypy sees numpy as Any (it is not installed there).
Floats: TypeAlias = npt.NDArray[np.float64]
Labels: TypeAlias = npt.NDArray[np.int64]

DATASETS = ("breast_cancer", "diabetes")
MIN_HOSPITAL_SAMPLES = 20  # a Dirichlet draw leaving a hospital fewer rows than this is redrawn


class DataError(MedChainError):
    """A data set, split or hospital data file that cannot be used."""


@dataclass(frozen=True)
class Part:
    """Rows of one data part: features, 0/1 labels and pseudonymous sample ids."""

    X: Floats
    y: Labels
    sample_ids: npt.NDArray[np.str_]

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class HospitalData:
    """What one hospital holds: a part to train on and a held-out part to report on."""

    org: str
    train: Part
    heldout: Part


@dataclass(frozen=True)
class FederatedSplit:
    """A data set shared out to hospitals, with the validation set nobody trains on."""

    dataset: str
    hospitals: tuple[HospitalData, ...]
    validation: Part

    def pooled_train(self) -> Part:
        """The hospitals' training parts in one: what centralised training would see."""
        parts = [h.train for h in self.hospitals]
        return Part(
            np.concatenate([p.X for p in parts]),
            np.concatenate([p.y for p in parts]),
            np.concatenate([p.sample_ids for p in parts]),
        )


def load_dataset(name: str) -> tuple[Floats, Labels]:
    """Raw features and 0/1 labels of a named data set (diabetes: above the median is 1)."""
    if name == "breast_cancer":
        bunch = load_breast_cancer()
        return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, np.int64)
    if name == "diabetes":
        bunch = load_diabetes(scaled=False)
        target = np.asarray(bunch.target, dtype=np.float64)
        labels = (target > np.median(target)).astype(np.int64)
        return np.asarray(bunch.data, dtype=np.float64), labels
    raise DataError(f"unknown data set {name!r}: use one of {', '.join(DATASETS)}")


def split_dataset(
    name: str,
    orgs: list[str],
    seed: int,
    iid: bool,
    alpha: float = 0.5,
    validation_fraction: float = 0.2,
    heldout_fraction: float = 0.2,
) -> FederatedSplit:
    """Share a data set out to `orgs`: the same seed always gives the same split."""
    if not 2 <= len(orgs) <= 10 or len(set(orgs)) != len(orgs):
        raise DataError("name 2 to 10 distinct hospitals")
    features, y = load_dataset(name)
    ids = np.array([f"{name}-{i:05d}" for i in range(len(y))])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_val = round(len(y) * validation_fraction)
    val_rows, pool_rows = order[:n_val], order[n_val:]
    shares = (
        _iid_shares(pool_rows, len(orgs), rng)
        if iid
        else _dirichlet_shares(pool_rows, y, len(orgs), alpha, rng)
    )
    raw: list[tuple[str, npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
    for org, rows in zip(orgs, shares, strict=True):
        rows = rng.permutation(rows)
        n_held = max(1, round(len(rows) * heldout_fraction))
        raw.append((org, rows[n_held:], rows[:n_held]))
    train_rows = np.concatenate([r[1] for r in raw])
    mean = features[train_rows].mean(axis=0)
    std = features[train_rows].std(axis=0)
    std[std == 0] = 1.0

    def part(rows: npt.NDArray[np.int64]) -> Part:
        return Part((features[rows] - mean) / std, y[rows], ids[rows])

    hospitals = tuple(HospitalData(org, part(tr), part(ho)) for org, tr, ho in raw)
    return FederatedSplit(name, hospitals, part(val_rows))


def _iid_shares(
    rows: npt.NDArray[np.int64], k: int, rng: np.random.Generator
) -> list[npt.NDArray[np.int64]]:
    """Equal random shares: every hospital sees the same label mix, up to chance."""
    return [np.asarray(s, np.int64) for s in np.array_split(rng.permutation(rows), k)]


def _dirichlet_shares(
    rows: npt.NDArray[np.int64],
    y: Labels,
    k: int,
    alpha: float,
    rng: np.random.Generator,
) -> list[npt.NDArray[np.int64]]:
    """Label skew: each class is cut among hospitals by proportions drawn from Dir(α).

    Small α gives hospitals very different label mixes (the non-IID case real
    consortia have); a draw leaving a hospital too few rows to train and report on is
    drawn again from the same generator, so the split stays a function of the seed.
    """
    if alpha <= 0:
        raise DataError("the Dirichlet alpha must be above 0 (0.5 is a common skew)")
    for _ in range(1000):
        shares: list[list[int]] = [[] for _ in range(k)]
        for label in np.unique(y[rows]):
            members = rng.permutation(rows[y[rows] == label])
            cuts = (np.cumsum(rng.dirichlet([alpha] * k))[:-1] * len(members)).astype(int)
            for i, chunk in enumerate(np.split(members, cuts)):
                shares[i].extend(int(r) for r in chunk)
        if min(len(s) for s in shares) >= MIN_HOSPITAL_SAMPLES:
            return [np.array(sorted(s), dtype=np.int64) for s in shares]
    raise DataError(f"no Dirichlet split with α={alpha} gives every hospital enough rows")


def write_part(path: Path, part: Part) -> None:
    """One part as the .npz file a hospital's client reads (X, y, sample_ids)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        np.savez(f, X=part.X, y=part.y, sample_ids=part.sample_ids)


def read_part(path: Path) -> Part:
    """A part from its .npz file, refusing pickled objects (the file may come from outside)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            x = np.asarray(f["X"], dtype=np.float64)
            y = np.asarray(f["y"], dtype=np.int64)
            ids = np.asarray(f["sample_ids"]).astype(np.str_)
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: not a data file with X, y and sample_ids ({e})") from e
    if x.ndim != 2 or y.shape != (x.shape[0],) or ids.shape != y.shape:
        raise DataError(f"{path}: X must be rows × features with one y and sample id per row")
    if not np.isin(y, (0, 1)).all():
        raise DataError(f"{path}: labels must be 0 or 1")
    return Part(x, y, ids)


def write_split(workdir: Path, split: FederatedSplit) -> None:
    """Lay a split out as the files the clients read: W/data/<org>/{train,heldout}.npz."""
    for h in split.hospitals:
        write_part(workdir / "data" / h.org / "train.npz", h.train)
        write_part(workdir / "data" / h.org / "heldout.npz", h.heldout)
    write_part(workdir / "data" / "validation.npz", split.validation)
