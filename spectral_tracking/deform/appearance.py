"""`WithAppearance`: any deformation plus a learnable offset on the canonical colours (SH).

Off in the paper (its Table 6 optimises motion only); ``finetune_appearance=true`` turns it on.
Being part of the deformation, the offset is seen by everything that asks the deformation for a
frame: training, evaluation, the per-frame PLY export and the checkpoint. Parameter group
"appearance".
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from spectral_tracking.deform.base import Deformation, FrameLike
from spectral_tracking.gaussians import Gaussians


class WithAppearance(nn.Module):
    """``deformation`` with ``sh + offset`` for the colours of every frame (offset [N, S, 3], zero at start)."""

    def __init__(self, deformation: Deformation) -> None:
        super().__init__()
        self.motion = deformation
        self.appearance_offset = nn.Parameter(torch.zeros_like(deformation.canonical_sh))

    # The interface of `Deformation` that the tracker, ARAP and export use.
    @property
    def num_frames(self) -> int:
        return self.motion.num_frames

    @property
    def canonical_control_points(self) -> Tensor:
        return self.motion.canonical_control_points

    @property
    def canonical(self) -> Gaussians:
        return self.motion.canonical

    def forward(self, frame: FrameLike) -> Gaussians:
        g = self.motion(frame)
        return Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh + self.appearance_offset)

    def control_point_positions(self, frame: FrameLike) -> Tensor:
        return self.motion.control_point_positions(frame)

    def frame_and_control_points(self, frame: FrameLike, control_frames: Sequence[FrameLike]) -> tuple[Gaussians, Tensor | None]:
        g, points = self.motion.frame_and_control_points(frame, control_frames)
        return Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh + self.appearance_offset), points

    def copy_frame(self, src: int, dst: int) -> None:
        self.motion.copy_frame(src, dst)

    def param_groups(self, lr: Mapping[str, float]) -> list[dict]:
        if "appearance" not in lr:
            raise ValueError(f"WithAppearance.param_groups: no learning rate for group 'appearance'; got rates for {sorted(lr)}")
        motion_lr = {k: v for k, v in lr.items() if k != "appearance"}
        return [*self.motion.param_groups(motion_lr),
                {"name": "appearance", "params": [self.appearance_offset], "lr": float(lr["appearance"])}]
