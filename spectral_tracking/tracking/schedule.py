"""Frequency annealing schedule (SpectralSplats Sec. 3.3, eq. 7, Fig. 8, Table 6): pure functions of the step.

Band weights, paper eq. 7 (the BARF / Nerfies cosine window)::

    w_k(t) = (1 - cos(pi * clamp(alpha(t) - k, 0, 1))) / 2,     k = 0..K-1

Band k is fully on once alpha >= k + 1 and off while alpha <= k.

Warm-up. The paper says only the lowest band is active during warm-up (Fig. 8, Table 5: "warmup:
percentage of training iterations during which only the first frequency band is active"), but eq. 7
taken literally with alpha(0) = 0 switches band 0 off as well (w_0 = 0 gives no loss at all). We read
it so that band 0 is fully on: **alpha(t) = 1 during the warm-up** (the first ``warmup * max_steps``
steps), then alpha grows to K at ``spectral_end``, the step at which the image loss switches to the
spatial (pixel) phase. From there on alpha stays K; the spectral loss is no longer used.

Expansion modes between the end of warm-up t_w and t_p = spectral_end (s = (t - t_w) / (t_p - t_w)):

- ``"log"`` (default): alpha = 1 + (K - 1) s. The band index grows linearly, so the top active
  frequency 2^(alpha-1) grows exponentially. This is the schedule derived in Appendix A (eq. 20:
  exponential decay of the error allows exponential growth of the safe frequency) and the one drawn
  in Fig. 8 ("alpha(t) increases linearly").
- ``"linear"``: the top active frequency itself grows linearly, f = 1 + (2^(K-1) - 1) s, and
  alpha = 1 + log2(f) (the paper's "conservative expansion", Sec. 3.3). Note: with both modes pinned
  to the same end points (band 0 at t_w, all K bands at t_p) the linear frequency ramp lies *above*
  the exponential one at every step in between, so it opens the high bands earlier; it is only the
  more conservative choice when the ramp is started at the exponential's initial rate, which would
  never reach band K-1 before the switch. That is why ``"log"`` is the default here.

- ``"linear_slow"``: the top active frequency grows linearly at the *initial rate* of the ``"log"``
  ramp, f = 1 + ln(2) (K - 1) s, alpha = 1 + log2(f). A line tangent to the convex 2^(alpha-1) at
  its start stays below it everywhere, so this is the paper's "linear growth bounded well below
  exponential growth" (Sec. 3.3) taken literally: never ahead of ``"log"``, it reaches only
  f = 1 + ln(2) (K - 1) by the switch (alpha 3.16 of K = 6), so the top bands never open.

- ``"none"``: no annealing, every band from step 0 (alpha = K throughout, no warm-up): an
  ablation, the tracking analogue of the static-k demo of Fig. 2.

The paper's presets (Table 6, 10k iterations) live in ``conf/experiment/*.yaml`` only;
``spectral_tracking.run.config.experiment_schedule(name)`` reads one into a `SpectralSchedule`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

ANNEALED_MODES = ("log", "linear", "linear_slow")
MODES = (*ANNEALED_MODES, "none")
SPECTRAL = "spectral"
SPATIAL = "spatial"

def warmup_end(max_steps: int, warmup: float) -> float:
    """First step after the warm-up: warmup * max_steps (steps t < this are warm-up).

    Rounded to 1e-9 so that e.g. 0.3 * 10 is 3, not 3.0000000000000004.
    """
    return round(warmup * max_steps, 9)


def alpha(step: float, max_steps: int, warmup: float, spectral_end: int, num_bands: int, mode: str = "log") -> float:
    """Active bandwidth alpha(t) in [1, K] (see module docstring).

    Args:
        step: t >= 0 (training iteration, may be fractional for plotting).
        max_steps: total iterations (> 0).
        warmup: fraction of max_steps in [0, 1) with alpha = 1 (band 0 only).
        spectral_end: step at which alpha reaches K and the loss becomes spatial;
            >= warmup * max_steps (may exceed max_steps: then the run stays spectral).
        num_bands: K >= 1.
        mode: "log" (alpha linear in t), "linear" (top frequency linear in t, reaching 2^(K-1)),
            "linear_slow" (top frequency linear at the log ramp's initial rate) or "none".
    Returns:
        alpha(t) as a float.
    """
    _check(max_steps, warmup, spectral_end, num_bands, mode)
    if step < 0 or not math.isfinite(step):
        raise ValueError(f"alpha: step must be finite and >= 0, got {step}")
    if mode == "none":  # no annealing (an ablation): every band from step 0
        return float(num_bands)
    start = warmup_end(max_steps, warmup)
    if step < start:
        return 1.0
    if step >= spectral_end:
        return float(num_bands)
    s = (step - start) / (spectral_end - start)  # in [0, 1); spectral_end > start here
    if mode == "log":
        return 1.0 + (num_bands - 1) * s
    if mode == "linear":
        top_frequency = 1.0 + (2.0 ** (num_bands - 1) - 1.0) * s
    else:  # linear_slow: the tangent of the log ramp's 2^((K-1) s) at s = 0
        top_frequency = 1.0 + math.log(2.0) * (num_bands - 1) * s
    return 1.0 + math.log2(top_frequency)


def band_weights(alpha_value: float, num_bands: int) -> Tensor:
    """Eq. 7: w_k = (1 - cos(pi * clamp(alpha - k, 0, 1))) / 2 for k = 0..K-1.

    Returns:
        [K] float32 in [0, 1]; exactly 1 for k <= alpha - 1 and exactly 0 for k >= alpha.
    """
    if isinstance(num_bands, bool) or not isinstance(num_bands, int) or num_bands < 1:
        raise ValueError(f"band_weights: num_bands must be an integer >= 1, got {num_bands!r}")
    if not math.isfinite(alpha_value):
        raise ValueError(f"band_weights: alpha must be finite, got {alpha_value}")
    k = torch.arange(num_bands, dtype=torch.float64)
    ramp = (alpha_value - k).clamp(0.0, 1.0)
    weights = (1.0 - torch.cos(math.pi * ramp)) / 2.0
    # cos(pi) is -1 exactly in float64, cos(0) = 1: fully-on / off bands are exactly 1 / 0.
    return weights.float()


def phase(step: float, spectral_end: int) -> str:
    """Which image loss is active: "spectral" for step < spectral_end, else "spatial"."""
    return SPECTRAL if step < spectral_end else SPATIAL


@dataclass(frozen=True)
class SpectralSchedule:
    """The annealing hyperparameters (paper Table 5) with pure step -> value methods."""

    max_steps: int
    num_bands: int
    warmup: float
    spectral_end: int
    mode: str = "log"

    def __post_init__(self) -> None:
        _check(self.max_steps, self.warmup, self.spectral_end, self.num_bands, self.mode)

    @property
    def warmup_end(self) -> float:
        return warmup_end(self.max_steps, self.warmup)

    def alpha(self, step: float) -> float:
        return alpha(step, self.max_steps, self.warmup, self.spectral_end, self.num_bands, self.mode)

    def band_weights(self, step: float) -> Tensor:
        """[K] w_k(step)."""
        return band_weights(self.alpha(step), self.num_bands)

    def phase(self, step: float) -> str:
        return phase(step, self.spectral_end)

    def is_spectral(self, step: float) -> bool:
        return self.phase(step) == SPECTRAL


def _check(max_steps: int, warmup: float, spectral_end: int, num_bands: int, mode: str) -> None:
    where = "spectral schedule"
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"{where}: max_steps must be an integer >= 1, got {max_steps!r}")
    if not (isinstance(warmup, (int, float)) and 0.0 <= warmup < 1.0):
        raise ValueError(f"{where}: warmup is a fraction of max_steps in [0, 1), got {warmup!r}")
    if isinstance(num_bands, bool) or not isinstance(num_bands, int) or num_bands < 1:
        raise ValueError(f"{where}: num_bands must be an integer >= 1, got {num_bands!r}")
    if isinstance(spectral_end, bool) or not isinstance(spectral_end, int) or spectral_end < 0:
        raise ValueError(f"{where}: spectral_end must be an integer step >= 0, got {spectral_end!r}")
    if spectral_end < warmup_end(max_steps, warmup):
        raise ValueError(f"{where}: spectral_end={spectral_end} comes before the end of the warm-up "
                         f"(warmup={warmup} * max_steps={max_steps} = {warmup * max_steps})")
    if mode not in MODES:
        raise ValueError(f"{where}: mode must be one of {MODES}, got {mode!r}")
