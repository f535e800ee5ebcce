"""Optional differential privacy at the hospital: clip the update, add Gaussian noise.

Each hospital clips its update (new parameters minus the round's global model) to
L2 norm C and adds N(0, (zC)²) noise before encrypting it, so even the aggregate the
hospitals decrypt says little about any one hospital's data. The unit protected is a
hospital's whole update in a round, replace-one (two data sets' clipped updates differ
by at most 2C). The noise is drawn from the OS's entropy, never from the run's seed:
noise anyone can replay could be subtracted again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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
    """ε after `rounds` releases of the noised update, by Rényi DP (Mironov 2017).

    One release with sensitivity 2C and noise std zC is (α, 2α/z²)-RDP; rounds add
    up; RDP (α, ρ) gives (ρ + ln(1/δ)/(α-1), δ)-DP. With a = 2·rounds/z² and
    b = ln(1/δ) the best α is 1 + √(b/a), giving ε = a + 2√(ab).
    """
    if dp.noise_multiplier <= 0 or not 0 < dp.delta < 1 or rounds < 1:
        raise ValueError("noise multiplier above 0, delta in (0, 1), at least one round")
    a = 2.0 * rounds / dp.noise_multiplier**2
    b = math.log(1.0 / dp.delta)
    return a + 2.0 * math.sqrt(a * b)
