"""The tracker's objective at step t: which image loss, with which band weights, and ARAP's weight.

    loss(t) = lambda_image * image_loss_t(render, target; w(t)) + lambda_arap(t) * ARAP(control points)
              [+ lambda_scale * S(control points), off by default: losses/scale.py]

- Ours (``image=spectral``): spectral moments with the annealed band weights w(t) of
  `spectral_tracking.schedule` (paper eq. 7) until ``add_pixel_loss``, then the spatial loss
  (``spatial=pixel``: eq. 23, or ``spatial=lpips``).
- Pixel baseline (``image=pixel``): the spatial loss from step 0, everything else equal.
- ARAP from ``arap_start_iter`` on.

`Objective.at(step)` is a pure function of the step, so a resumed run needs nothing but the step.
With ``switch_iou`` set (`spectral_tracking.switch`, beyond the paper), the spectral phase may end
before ``add_pixel_loss``: the module passes the step at which it ended, ``at(step, spectral_end)``,
and checkpoints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from spectral_tracking import schedule
from spectral_tracking.losses.arap import arap_weight
from spectral_tracking.losses.image import IMAGE_LOSSES


@dataclass
class LossSettings:
    """The ``loss`` config group (conf/loss/*.yaml; paper Table 6)."""

    image: str = "spectral"  # spectral | pixel: the image loss before add_pixel_loss
    spatial: str = "pixel"  # pixel | lpips: the image loss after add_pixel_loss (and throughout for image=pixel)
    num_bands: int = 6
    warmup: float = 0.2
    expansion: str = "log"
    add_pixel_loss: int = 300
    norm: str = "l1"
    band_reduction: str = "mean"  # mean | sum (eq. 22 as printed): see losses/image.py
    lambda_image: float = 5000.0
    lambda_spec_mask: float = 0.5
    lambda_spec_rgb: float = 1.0  # weight of the colour moments (the paper: 1; beyond it: 0 = masks only)
    lambda_bce: float = 0.3
    lambda_masked_mse: float = 1.0
    bce_eps: float = 1e-3  # the BCE's opacity clamp (see losses/photometric.py)
    lambda_late_lpips: float = 1.0
    lpips_net: str = "alex"  # backbone of the LPIPS loss (spatial=lpips): alex | vgg
    lambda_arap: float = 1.0
    arap_start_iter: int = 50
    lambda_scale: float = 0.0  # the scale-preserving term on the control points (losses/scale.py), from step 0
    switch_iou: float | None = None  # end the spectral phase once the mask IoU reaches this (switch.py); None: at add_pixel_loss

    def __post_init__(self) -> None:
        if self.image not in ("spectral", "pixel"):
            raise ValueError(f"loss.image: expected 'spectral' or 'pixel', got {self.image!r}")
        if self.spatial not in ("pixel", "lpips"):
            raise ValueError(f"loss.spatial: expected 'pixel' or 'lpips', got {self.spatial!r}")
        if self.lpips_net not in ("alex", "vgg"):
            raise ValueError(f"loss.lpips_net: expected 'alex' or 'vgg', got {self.lpips_net!r}")

    @property
    def switch_step(self) -> int:
        """Step at which the spatial phase starts (0 for the Pixel baseline)."""
        return 0 if self.image == "pixel" else int(self.add_pixel_loss)


ImageLoss = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], "dict[str, Tensor]"]


class StepObjective(NamedTuple):
    phase: str  # "spectral" | "spatial"
    alpha: float  # active bandwidth (0 in the Pixel baseline)
    band_weights: Tensor  # [K], CPU
    image_loss: ImageLoss
    lambda_image: float
    lambda_arap: float  # 0 before arap_start_iter
    lambda_scale: float = 0.0


class Objective:
    """Builds the image losses once and answers `at(step)`."""

    def __init__(self, settings: LossSettings, max_steps: int) -> None:
        s = self.settings = settings
        self.schedule = None
        if s.image == "spectral":
            self.schedule = schedule.SpectralSchedule(
                max_steps=int(max_steps), num_bands=int(s.num_bands), warmup=float(s.warmup),
                add_pixel_loss=int(s.add_pixel_loss), mode=s.expansion,
            )
        self.spectral = IMAGE_LOSSES["spectral"](lambda_mask=s.lambda_spec_mask, norm=s.norm,
                                                 band_reduction=s.band_reduction, lambda_rgb=s.lambda_spec_rgb)
        spatial_kwargs = {"pixel": dict(lambda_bce=s.lambda_bce, lambda_masked=s.lambda_masked_mse, bce_eps=s.bce_eps), "lpips": dict(net=s.lpips_net, weight=s.lambda_late_lpips)}
        self.spatial = IMAGE_LOSSES[s.spatial](**spatial_kwargs[s.spatial])

    def at(self, step: int, spectral_end: int | None = None) -> StepObjective:
        """The objective of step ``step``; ``spectral_end``: the step at which an `OverlapSwitch`
        ended the spectral phase early (None: ``add_pixel_loss``)."""
        s = self.settings
        arap = arap_weight(step, s.lambda_arap, s.arap_start_iter)
        if self.schedule is None:  # the Pixel baseline: spatial from the first step, no bands
            return StepObjective(schedule.SPATIAL, 0.0, torch.zeros(s.num_bands), self.spatial, s.lambda_image, arap,
                                 s.lambda_scale)
        a = self.schedule.alpha(step)
        phase = self.schedule.phase(step)
        if spectral_end is not None and step >= spectral_end:
            phase = schedule.SPATIAL
        loss = self.spectral if phase == schedule.SPECTRAL else self.spatial
        return StepObjective(phase, a, schedule.band_weights(a, s.num_bands), loss, s.lambda_image, arap, s.lambda_scale)
