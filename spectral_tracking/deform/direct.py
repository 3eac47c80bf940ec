"""`direct`: the direct morph field, per-frame per-control-point offsets and rotations.

Parameters: ``offsets`` [T, J, 3] (world units, zeros) and ``rotations`` [T, J, 4] ((w, x, y, z),
all (1, 0, 0, 0)), so the start is exactly the identity. Between frames (a float time) they are
interpolated linearly. No parameter ties one frame to the next: temporal coherence comes from ARAP
and from the tracker, which starts each frame where the previous one is when the frame joins the
progressive schedule (`copy_frame`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spectral_tracking.deform.base import Deformation, interpolate_frames
from spectral_tracking.gaussians import Gaussians


class DirectDeformation(Deformation):
    """``direct``: explicit per-frame control-point motion. Parameter groups: "deform" (+ "radius")."""

    def __init__(self, canonical: Gaussians, num_frames: int, **base) -> None:
        """base: the keyword arguments of `Deformation` (num_control_points, num_neighbors, ...)."""
        super().__init__(canonical, num_frames, **base)
        like = self.canonical_means
        J = self.num_control_points
        self.offsets = nn.Parameter(torch.zeros(num_frames, J, 3, dtype=like.dtype, device=like.device))
        identity = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=like.dtype, device=like.device)
        self.rotations = nn.Parameter(identity.repeat(num_frames, J, 1))

    @torch.no_grad()
    def copy_frame(self, src: int, dst: int) -> None:
        """Set frame ``dst``'s motion to frame ``src``'s (warm start of a frame joining the schedule)."""
        self.offsets[dst] = self.offsets[src]
        self.rotations[dst] = self.rotations[src]

    def local_motion(self, t: Tensor, position: float) -> tuple[Tensor, Tensor]:
        return interpolate_frames(self.offsets, position), interpolate_frames(self.rotations, position)

    def _param_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = super()._param_groups()
        groups["deform"] = [self.offsets, self.rotations]
        return groups
