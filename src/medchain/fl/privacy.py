"""Optional differential privacy at the hospital: clip the update, add Gaussian noise.

Each hospital clips its update (new parameters minus the round's global model) to
L2 norm C and adds N(0, (zC)²) noise before encrypting it, so even the aggregate the
hospitals decrypt says little about any one hospital's data. The unit protected is a
hospital's whole update in a round, replace-one (two data sets' clipped updates differ
by at most 2C). The noise is drawn from the OS's entropy, never from the run's seed:
noise anyone can replay could be subtracted again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medchain.fl import budget
from medchain.fl.data import Floats


@dataclass(frozen=True)
class DpParams:
    """Clipping norm C, noise multiplier z (noise std = zC) and the target δ."""

    clip_norm: float
    noise_multiplier: float
    delta: float


def clip_and_noise(update: Floats, dp: DpParams, rng: np.random.Generator) -> Floats:
    """The update scaled into the L2 ball of radius C, plus Gaussian noise of std zC."""
    norm = float(np.linalg.norm(update))
    clipped = update * min(1.0, dp.clip_norm / norm) if norm > 0 else update.copy()
    noise = rng.normal(0.0, dp.noise_multiplier * dp.clip_norm, size=update.shape)
    return np.asarray(clipped + noise, dtype=np.float64)


def noise_rng() -> np.random.Generator:
    """A generator seeded from the OS's entropy, for DP noise only."""
    return np.random.default_rng()


def gaussian_epsilon(dp: DpParams, rounds: int) -> float:
    """ε after `rounds` releases of the noised update (fl/budget.py says how)."""
    return budget.gaussian_epsilon(dp.noise_multiplier, dp.delta, rounds)
