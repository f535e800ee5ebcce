"""A study's privacy budget as clipping and noise, and back (pure Python).

Both venvs import this: the hospitals' side (.venv-fl, fl/privacy.py) adds the
noise and reports the ε spent after each round; `medchain fl run` (main venv)
turns the ε a study sets on chain into the noise multiplier that spends exactly
that budget over the study's planned rounds.

One round releases each hospital's clipped, noised update: sensitivity 2C
(replace-one), noise std zC, so (α, 2α/z²)-RDP; R rounds add up to (α, 2Rα/z²);
RDP (α, ρ) gives (ρ + ln(1/δ)/(α-1), δ)-DP (Mironov 2017). With a = 2R/z² and
b = ln(1/δ) the best α is 1 + √(b/a), so ε = a + 2√(ab) = (√a + √b)² - b.
"""

from __future__ import annotations

import math

# δ of every study (the usual 1e-5; far below 1/hospital count) and the clipping
# norm C of an update (the logistic model's updates are of that order: see
# docs/federated.md); the study's ε sets the noise multiplier.
STUDY_DELTA = 1e-5
STUDY_CLIP_NORM = 1.0


def gaussian_epsilon(noise_multiplier: float, delta: float, rounds: int) -> float:
    """ε after `rounds` releases with noise multiplier z at this δ."""
    if noise_multiplier <= 0 or not 0 < delta < 1 or rounds < 1:
        raise ValueError("noise multiplier above 0, delta in (0, 1), at least one round")
    a = 2.0 * rounds / noise_multiplier**2
    b = math.log(1.0 / delta)
    return a + 2.0 * math.sqrt(a * b)


def noise_multiplier_for(epsilon: float, delta: float, rounds: int) -> float:
    """The noise multiplier z whose `rounds` releases spend exactly ε at this δ:
    from ε = (√a + √b)² - b, √a = √(ε + b) - √b and z = √(2R/a)."""
    if epsilon <= 0 or not 0 < delta < 1 or rounds < 1:
        raise ValueError("epsilon above 0, delta in (0, 1), at least one round")
    b = math.log(1.0 / delta)
    root_a = math.sqrt(epsilon + b) - math.sqrt(b)
    return math.sqrt(2.0 * rounds) / root_a
