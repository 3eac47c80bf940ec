"""The tracker's objective at step t, and the one object that decides when the spectral phase ends.

    loss(t) = lambda_image * image_loss_t(render, target; w(t)) + lambda_arap(t) * ARAP(control points)
              [+ lambda_scale * S(control points), off by default: losses/scale.py]

- Ours (``loss.image=spectral``): spectral moments with the annealed band weights w(t) of
  `spectral_tracking.tracking.schedule` (paper eq. 7) until `Objective.spectral_end`, then the
  spatial loss (``spatial=pixel``: eq. 23, or ``spatial=lpips``).
- Pixel baseline (``loss.image=pixel``): the spatial loss from step 0, everything else equal.
- ARAP from ``arap_start_iter`` on.

**When the spectral phase ends.** The paper ends it at a fixed step (``loss.spectral_end``, Table
6's "add pixel loss": 60-70% of the run). The moments are there for a render that does not overlap
its target, where a pixel loss has no gradient; from a start that already overlaps, those steps
are spent on a coarse loss the start has made unnecessary. With ``loss.switch_iou=tau`` (beyond
the paper, the default 0.5) the spatial phase starts at the first step at which the running mean
(weight ``beta`` on the past, about the last 5 steps) of the training render's mask IoU (opacity >
0.5 against mask > 0.5) reaches tau, or at ``loss.spectral_end``, whichever comes first (the default
``loss.switch_from=start``: at any step, so that a start that already overlaps skips the warm-up too;
``warmup``: only after the warm-up); ``switch_iou=null`` is the paper's fixed step. The running mean
starts at 0 (``loss.switch_prior=zero``), or at the start's own IoU (``start``, `Objective.prime`):
then a start that already overlaps goes to the spatial phase before step 0, the same run as the Pixel
baseline until a rescue fires (below; the Pixel baseline has none). The step is `Objective.spectral_end`
(also ``metrics.json``'s ``spectral_end``); it and the running mean are the module's extra state,
saved in checkpoints, so a resumed run switches where the uninterrupted one would.

**The rescue** (``loss.rescue_iou``, beyond the paper; the default 0.1, null = off). In the spatial
phase a frame can lose its target: as frames join a turning or fast motion, the deformation can carry
the asset out of the frame, and there a pixel loss (MSE, BCE on the opacity) has no gradient that would
bring it back; the run then ends with the asset out of view (mask IoU 0). So a spatial step whose
render overlaps its target below ``rescue_iou`` (`Objective.rescues`) takes the spectral loss of the
lowest ``rescue_bands`` bands instead, the global basin the spectral phase starts in, for that step's
frame only. A run that never loses its target is not changed by a bit. The count of such steps is
``metrics.json``'s ``rescue_steps`` (extra state, like the switch's). The Pixel baseline never rescues.
Where the render of a rescue step holds almost no opacity (below `EMPTY_BELOW` of its target mask's),
the asset is wholly out of the image and the moments have no gradient either: the step then also
takes ``loss.rescue_recentre`` times (with ``lambda_image``) the gap between the viewing directions
of the Gaussians' centroid and of the mask's centroid (`spectral_tracking.losses.recentre`), counted
in ``recentre_steps``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from spectral_tracking.losses.arap import arap_weight
from spectral_tracking.losses.image import IMAGE_LOSSES
from spectral_tracking.metrics import mask_iou
from spectral_tracking.tracking import schedule
from spectral_tracking.tracking.settings import LossSettings

__all__ = ["LossSettings", "Objective", "StepObjective"]

EMPTY_BELOW = 0.01
"""A rescue step's render is empty where its opacity sums to less than this fraction of its target mask's."""

ImageLoss = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], "dict[str, Tensor]"]


class StepObjective(NamedTuple):
    phase: str  # "spectral" | "spatial"
    alpha: float  # active bandwidth (0 in the Pixel baseline)
    band_weights: Tensor  # [K], CPU
    image_loss: ImageLoss
    lambda_image: float
    lambda_arap: float  # 0 before arap_start_iter
    lambda_scale: float = 0.0
    recentre: float = 0.0  # the weight (times lambda_image) of losses/recentre.py's term: a rescue step with an empty render


class Objective(nn.Module):
    """The loss settings, the band schedule and the switch: `at(step)` is step ``step``'s objective,
    `observe` feeds the switch the step's render, `spectral_end` is where the spectral phase ends.
    beta: weight of the past in the running mean of the IoU (0.8: about the last 5 steps)."""

    def __init__(self, settings: LossSettings, max_steps: int, beta: float = 0.8) -> None:
        super().__init__()
        s = self.settings = settings.resolved(max_steps)
        self.schedule = None
        if s.image == "spectral":
            self.schedule = schedule.SpectralSchedule(
                max_steps=int(max_steps), num_bands=int(s.num_bands), warmup=float(s.warmup),
                spectral_end=int(s.spectral_end), mode=s.expansion,
            )
        self.spectral = IMAGE_LOSSES["spectral"](lambda_mask=s.lambda_spec_mask, norm=s.norm,
                                                 band_reduction=s.band_reduction, lambda_rgb=s.lambda_spec_rgb)
        spatial_kwargs = {"pixel": dict(lambda_bce=s.lambda_bce, lambda_masked=s.lambda_masked_mse, bce_eps=s.bce_eps),
                          "lpips": dict(net=s.lpips_net, weight=s.lambda_late_lpips)}
        self.spatial = IMAGE_LOSSES[s.spatial](**spatial_kwargs[s.spatial])
        if s.switch_iou is not None and not 0 < float(s.switch_iou) <= 1:
            raise ValueError(f"loss.switch_iou must be in (0, 1] or null, got {s.switch_iou}")
        if not 0 <= beta < 1:
            raise ValueError(f"Objective: beta must be in [0, 1), got {beta}")
        self.threshold = None if s.switch_iou is None or self.schedule is None else float(s.switch_iou)
        self.warmup_end = schedule.warmup_end(int(max_steps), float(s.warmup))
        self.switch_after = 0.0 if s.switch_from == "start" else self.warmup_end  # the first step the switch may end it
        self.beta = float(beta)
        # the switch's state (plain numbers on the host: no device sync while it is off)
        self.running_iou, self.spectral_end = 0.0, s.latest_spectral_end
        # the rescue: off for the Pixel baseline (no spectral loss in it) and with rescue_iou null
        self.rescue_iou = None if s.rescue_iou is None or self.schedule is None else float(s.rescue_iou)
        self.rescue_weights = (torch.arange(int(s.num_bands)) < int(s.rescue_bands)).float()
        self.rescue_steps = 0
        self.recentre = float(s.rescue_recentre)
        self.recentre_steps = 0

    def get_extra_state(self) -> dict:
        return {"running_iou": self.running_iou, "spectral_end": self.spectral_end, "rescue_steps": self.rescue_steps,
                "recentre_steps": self.recentre_steps}

    def set_extra_state(self, state: dict) -> None:
        self.running_iou, self.spectral_end = float(state["running_iou"]), int(state["spectral_end"])
        self.rescue_steps = int(state.get("rescue_steps", 0))  # checkpoints from before the rescue have none
        self.recentre_steps = int(state.get("recentre_steps", 0))

    def phase(self, step: int) -> str:
        """Step ``step``'s image loss, given the switch's state: "spectral" or "spatial" (the Pixel
        baseline: spatial from the first step)."""
        return schedule.SPATIAL if self.schedule is None else schedule.phase(step, self.spectral_end)

    def at(self, step: int) -> StepObjective:
        """The objective of step ``step`` (given the switch's state)."""
        s = self.settings
        arap = arap_weight(step, s.lambda_arap, s.arap_start_iter)
        if self.schedule is None:  # the Pixel baseline: spatial from the first step, no bands
            return StepObjective(schedule.SPATIAL, 0.0, torch.zeros(s.num_bands), self.spatial, s.lambda_image, arap,
                                 s.lambda_scale)
        a = self.schedule.alpha(step)
        phase = self.phase(step)
        loss = self.spectral if phase == schedule.SPECTRAL else self.spatial
        return StepObjective(phase, a, schedule.band_weights(a, s.num_bands), loss, s.lambda_image, arap, s.lambda_scale)

    def prime(self, iou: float) -> None:
        """With ``loss.switch_prior=start``, seed the running mean with the start's own IoU (frame 0,
        mean over the training views, as the start stage measured it): a start that already reaches the
        threshold, where the switch may act from the start, has no spectral step (its steps are then the
        Pixel baseline's until a rescue fires, `rescues`). A no-op with the prior
        at zero or the switch off. Call it before training: a resumed run's checkpoint restores the
        switch's state over it."""
        if self.threshold is None or self.settings.switch_prior != "start":
            return
        self.running_iou = float(iou)
        if self.switch_after <= 0 and self.running_iou >= self.threshold:
            self.spectral_end = 0

    @torch.no_grad()
    def rescues(self, step_objective: StepObjective, alpha: Tensor, mask: Tensor) -> StepObjective:
        """``step_objective``, or, for a spatial step whose render (opacity [V, H, W]) overlaps the
        target ``mask`` below ``rescue_iou``, the spectral loss on the rescue's bands (counted in
        ``rescue_steps``), and where the render is empty the recentring term's weight (counted in
        ``recentre_steps``). Call it with the step's render before its loss."""
        if self.rescue_iou is None or step_objective.phase != schedule.SPATIAL:
            return step_objective
        if mask_iou(alpha, mask) >= self.rescue_iou:
            return step_objective
        self.rescue_steps += 1
        recentre = 0.0
        if self.recentre > 0 and float(alpha.sum()) < EMPTY_BELOW * float(mask.sum()):
            self.recentre_steps += 1
            recentre = self.recentre
        return step_objective._replace(image_loss=self.spectral, band_weights=self.rescue_weights, recentre=recentre)

    @torch.no_grad()
    def observe(self, step: int, alpha: Tensor, mask: Tensor) -> None:
        """Fold step ``step``'s IoU (rendered opacity [V, H, W] against the target masks, mean over
        the views) into the running mean and end the spectral phase when it reaches the threshold.
        A no-op when the switch is off or the phase has ended."""
        if self.threshold is None or step >= self.spectral_end:
            return
        iou = mask_iou(alpha, mask)  # the metric's IoU: thresholds 0.5, both empty counts as 1
        self.running_iou = self.beta * self.running_iou + (1 - self.beta) * iou
        if step + 1 >= self.switch_after and self.running_iou >= self.threshold:
            self.spectral_end = step + 1
