"""`OverlapSwitch`: end the spectral phase once the render overlaps the target (beyond the paper).

The spectral moments are there for starts whose render does not overlap the target, where a pixel
loss has no gradient. The paper switches to the spatial loss at a fixed step (``add_pixel_loss``,
Table 6: 60-70% of the run). From a start that already overlaps (the moment alignment,
``align=moments``, or a small shift) those steps are spent on a coarse loss that the start has made
unnecessary. With ``loss.switch_iou=tau`` the spatial phase starts at the first step after the
warm-up at which the running mean (an exponential moving average, weight ``beta`` on the past) of
the training render's mask IoU (opacity > 0.5 against mask > 0.5) is at least ``tau``, or at
``add_pixel_loss``, whichever comes first. ``switch_iou=null`` is the paper's fixed switch.

The running mean and the switch step are the module's extra state (plain numbers, kept on the host:
no device sync when the switch is off), so they are saved in checkpoints and a resumed run switches
where the uninterrupted one would.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spectral_tracking.metrics import mask_iou


class OverlapSwitch(nn.Module):
    """threshold: tau in (0, 1], or None (off: the spectral phase ends at ``latest``).
    warmup_end: first step at which the switch may happen. latest: ``add_pixel_loss``.
    beta: weight of the past in the running mean (0.8: about the last 5 steps)."""

    def __init__(self, threshold: float | None, warmup_end: float, latest: int, beta: float = 0.8) -> None:
        super().__init__()
        if threshold is not None and not 0 < float(threshold) <= 1:
            raise ValueError(f"loss.switch_iou must be in (0, 1] or null, got {threshold}")
        if not 0 <= beta < 1:
            raise ValueError(f"OverlapSwitch: beta must be in [0, 1), got {beta}")
        self.threshold = None if threshold is None else float(threshold)
        self.warmup_end, self.beta = float(warmup_end), float(beta)
        self.running_iou, self.end = 0.0, int(latest)  # self.end: the step at which the spatial phase starts

    def get_extra_state(self) -> dict:
        return {"running_iou": self.running_iou, "spectral_end": self.end}

    def set_extra_state(self, state: dict) -> None:
        self.running_iou, self.end = float(state["running_iou"]), int(state["spectral_end"])

    @torch.no_grad()
    def update(self, step: int, alpha: Tensor, mask: Tensor) -> None:
        """Fold step ``step``'s IoU (rendered opacity [V, H, W] against the target masks, mean over
        the views) into the running mean and switch when it reaches the threshold. A no-op when off
        or already switched."""
        if self.threshold is None or step >= self.end:
            return
        iou = mask_iou(alpha, mask)  # the metric's IoU: thresholds 0.5, both empty counts as 1
        self.running_iou = self.beta * self.running_iou + (1 - self.beta) * iou
        if step + 1 >= self.warmup_end and self.running_iou >= self.threshold:
            self.end = step + 1
