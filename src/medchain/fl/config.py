"""The run configuration (one JSON file), checked whole before any process starts.

Keys: rounds, hospitals (a count or a list of org names), seed, iid, alpha (Dirichlet
label skew when iid is false), mode ("ckks" or "plain"), dp (null or clip_norm,
noise_multiplier, delta), dataset, local training (epochs, learning_rate,
batch_size), and the chain's hooks before_round / after_round ("module:function",
called with (workdir, round)). A study's rounds may span several runs: first_round
and initial_model (the previous round's model file) continue it, and data "hooks"
says the before-round hook writes every hospital's files (nothing is split from a
public data set). A wrong key is refused with what to write instead.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medchain.exceptions import MedChainError
from medchain.fl.ckks import MODES
from medchain.fl.data import DATASETS
from medchain.fl.model import TrainingPlan
from medchain.fl.privacy import DpParams

KNOWN_KEYS = frozenset(
    {
        "rounds",
        "hospitals",
        "seed",
        "iid",
        "alpha",
        "mode",
        "dp",
        "dataset",
        "epochs",
        "learning_rate",
        "batch_size",
        "before_round",
        "after_round",
        "first_round",
        "initial_model",
        "data",
    }
)
DATA_SOURCES = ("dataset", "hooks")


class FlConfigError(MedChainError):
    """A run configuration that cannot be run; the message says what to change."""


@dataclass(frozen=True)
class FlConfig:
    """One federated run: who takes part, how they train, how updates are aggregated."""

    rounds: int = 3
    hospitals: tuple[str, ...] = ("hospital-1", "hospital-2", "hospital-3")
    seed: int = 0
    iid: bool = True
    alpha: float = 0.5
    mode: str = "ckks"
    dp: DpParams | None = None
    dataset: str = "breast_cancer"
    plan: TrainingPlan = field(default_factory=TrainingPlan)
    before_round: str | None = None
    after_round: str | None = None
    first_round: int = 1
    initial_model: str | None = None  # a model file (relative to W, or absolute)
    data: str = "dataset"

    @property
    def round_numbers(self) -> range:
        """The study's round numbers this run trains."""
        return range(self.first_round, self.first_round + self.rounds)

    @property
    def publisher(self) -> str:
        """The hospital that hands the decrypted model back for publication (the first)."""
        return self.hospitals[0]

    def to_json(self) -> dict[str, Any]:
        """The configuration as the JSON `load_config` reads back."""
        return {
            "rounds": self.rounds,
            "hospitals": list(self.hospitals),
            "seed": self.seed,
            "iid": self.iid,
            "alpha": self.alpha,
            "mode": self.mode,
            "dp": None if self.dp is None else asdict(self.dp),
            "dataset": self.dataset,
            "epochs": self.plan.epochs,
            "learning_rate": self.plan.learning_rate,
            "batch_size": self.plan.batch_size,
            "before_round": self.before_round,
            "after_round": self.after_round,
            "first_round": self.first_round,
            "initial_model": self.initial_model,
            "data": self.data,
        }


def parse_config(raw: Any) -> FlConfig:
    """A checked FlConfig from decoded JSON."""
    if not isinstance(raw, dict):
        raise FlConfigError("the configuration must be a JSON object")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise FlConfigError(f"unknown keys {unknown}: use only {sorted(KNOWN_KEYS)}")
    d = FlConfig()
    hospitals = raw.get("hospitals", len(d.hospitals))
    if isinstance(hospitals, int) and not isinstance(hospitals, bool):
        if not 2 <= hospitals <= 10:
            raise FlConfigError("hospitals: between 2 and 10")
        names = tuple(f"hospital-{i}" for i in range(1, hospitals + 1))
    elif isinstance(hospitals, list) and all(isinstance(h, str) and h for h in hospitals):
        names = tuple(hospitals)
    else:
        raise FlConfigError("hospitals: a count, or a list of org names")
    if not 2 <= len(names) <= 10 or len(set(names)) != len(names):
        raise FlConfigError("hospitals: 2 to 10 distinct names")
    if any("/" in n or n.startswith(".") for n in names):
        raise FlConfigError("hospitals: a name is a directory under W/data: no '/' or leading '.'")
    plan = TrainingPlan(
        epochs=_int(raw, "epochs", d.plan.epochs, 1, 1000),
        learning_rate=_number(raw, "learning_rate", d.plan.learning_rate),
        batch_size=_int(raw, "batch_size", d.plan.batch_size, 1, 100_000),
    )
    mode = raw.get("mode", d.mode)
    if mode not in MODES:
        raise FlConfigError(f"mode: one of {list(MODES)}")
    dataset = raw.get("dataset", d.dataset)
    if dataset not in DATASETS:
        raise FlConfigError(f"dataset: one of {list(DATASETS)}")
    iid = raw.get("iid", d.iid)
    if not isinstance(iid, bool):
        raise FlConfigError("iid: true or false")
    data = raw.get("data", d.data)
    if data not in DATA_SOURCES:
        raise FlConfigError(f"data: one of {list(DATA_SOURCES)}")
    initial_model = raw.get("initial_model")
    if initial_model is not None and not (isinstance(initial_model, str) and initial_model):
        raise FlConfigError("initial_model: the path of a model file, or absent")
    if data == "hooks" and initial_model is None:
        raise FlConfigError('data "hooks": give initial_model (no data set to size a model from)')
    return FlConfig(
        rounds=_int(raw, "rounds", d.rounds, 1, 1000),
        hospitals=names,
        seed=_int(raw, "seed", d.seed, 0, 2**32 - 1),
        iid=iid,
        alpha=_number(raw, "alpha", d.alpha),
        mode=mode,
        dp=_dp(raw.get("dp")),
        dataset=dataset,
        plan=plan,
        before_round=_hook(raw, "before_round"),
        after_round=_hook(raw, "after_round"),
        first_round=_int(raw, "first_round", d.first_round, 1, 1000),
        initial_model=initial_model,
        data=data,
    )


def load_config(path: Path) -> FlConfig:
    """The configuration in a JSON file."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise FlConfigError(f"{path}: cannot read the configuration as JSON ({e})") from e
    return parse_config(raw)


def _int(raw: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise FlConfigError(f"{key}: an integer from {low} to {high}")
    return value


def _number(raw: dict[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise FlConfigError(f"{key}: a number above 0")
    return float(value)


def _dp(raw: Any) -> DpParams | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"clip_norm", "noise_multiplier", "delta"}:
        raise FlConfigError("dp: null, or {clip_norm, noise_multiplier, delta}")
    delta = _number(raw, "delta", 0.0)
    if delta >= 1:
        raise FlConfigError("dp.delta: below 1 (1e-5 is usual)")
    return DpParams(_number(raw, "clip_norm", 0.0), _number(raw, "noise_multiplier", 0.0), delta)


def _hook(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value.count(":") != 1 or not all(value.split(":")):
        raise FlConfigError(f'{key}: "module:function", or absent')
    return value
