"""`rigid_mlp`: a global rigid motion composed with the TimeNet (`mlp`). Beyond the paper.

Why: with per-point motion only, a large offset along the viewing axis is cheaper to explain by
shrinking the asset than by moving it back (a small one-view prototype ended 0.16-0.25 world units
off in depth, the asset shrunk to compensate; one shared translation cut that to about 0.07). A
global term absorbs the bulk offset while the MLP keeps to non-rigid motion.

Choice: by default the rigid part is *shared* (one time-independent rotation + translation, as in
the prototype): it models a misplaced initialisation, and leaves the motion through time to the
MLP. ``rigid_per_frame=True`` gives one SE(3) per frame instead. The rigid part is applied after
the MLP-driven skinning, about the asset's centre (see `spectral_tracking.deform.base`).
Parameter groups: "deform" (the MLP), "rigid" (+ "radius").
"""

from __future__ import annotations

from torch import Tensor, nn

from spectral_tracking.deform.mlp import MLPDeformation
from spectral_tracking.deform.rigid import RigidMotion
from spectral_tracking.gaussians import Gaussians


class RigidMLPDeformation(MLPDeformation):
    """``rigid_mlp``: `RigidMotion` (shared by default) after `MLPDeformation`.

    Keyword arguments: those of `MLPDeformation`, plus rigid_per_frame (False) and rotation
    ("axis_angle" or "6d").
    """

    def __init__(
        self,
        canonical: Gaussians,
        num_frames: int,
        rigid_per_frame: bool = False,
        rotation: str = "axis_angle",
        **mlp_kwargs,
    ) -> None:
        super().__init__(canonical, num_frames, **mlp_kwargs)
        self.rigid = RigidMotion(num_frames, per_frame=rigid_per_frame, rotation=rotation).to(self.canonical_means)

    def global_motion(self, t: Tensor, position: float) -> tuple[Tensor, Tensor, Tensor]:
        return self.rigid(position)

    def copy_frame(self, src: int, dst: int) -> None:
        """Warm start of a frame joining the progressive schedule (the per-frame rigid part, if any;
        the MLP is shared over time)."""
        self.rigid.copy_frame(src, dst)

    def _param_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = super()._param_groups()
        groups["rigid"] = list(self.rigid.parameters())
        return groups
