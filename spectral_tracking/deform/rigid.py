"""`rigid`: one SE(3) motion of the whole asset per frame (a baseline, and a building block).

The rotation turns the asset about its own centre (``Deformation.center``), not the world origin:
    x' = R (x - center) + center + t,     q' = q_R (x) q
Rotations are parameterised as an axis-angle vector [3] (default) or the continuous 6D
representation of Zhou et al. (CVPR 2019; two columns of R, Gram-Schmidt orthonormalised); both start
at the identity exactly. `RigidMotion` is the reusable piece (also used by ``rigid_mlp``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spectral_tracking.deform.base import Deformation, interpolate_frames
from spectral_tracking.gaussians import Gaussians, quat_to_rotmat, rotmat_to_quat

ROTATIONS = ("axis_angle", "6d")


def axis_angle_to_quat(v: Tensor) -> Tensor:
    """Axis-angle vectors [..., 3] (angle = norm, radians) to unit (w, x, y, z) quaternions [..., 4].

    Smooth and NaN-free at zero (a Taylor expansion of sin(theta/2)/theta below 1e-4 rad), and
    exactly (1, 0, 0, 0) for v = 0.
    """
    theta2 = v.square().sum(-1, keepdim=True)
    small = theta2 < 1e-8
    theta = theta2.clamp_min(1e-8).sqrt()
    half_sinc = torch.where(small, 0.5 - theta2 / 48.0, torch.sin(theta / 2) / theta)
    w = torch.where(small, 1.0 - theta2 / 8.0, torch.cos(theta / 2))
    return torch.cat([w, half_sinc * v], dim=-1)


def rotation_6d_to_rotmat(r: Tensor) -> Tensor:
    """6D rotations [..., 6] (the first two columns of R, not yet orthonormal) to matrices [..., 3, 3].

    (1, 0, 0, 0, 1, 0) is exactly the identity. Raises if a column is (near) zero or the two are
    parallel, where the representation is undefined.
    """
    a1, a2 = r[..., :3], r[..., 3:]
    n1 = a1.norm(dim=-1, keepdim=True)
    b1 = a1 / n1.clamp_min(1e-12)
    a2p = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    n2 = a2p.norm(dim=-1, keepdim=True)
    if bool((n1 < 1e-12).any()) or bool((n2 < 1e-12).any()):
        raise ValueError("rotation_6d_to_rotmat: degenerate 6D rotation (zero or parallel columns)")
    b2 = a2p / n2
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


class RigidMotion(nn.Module):
    """Global rigid motion parameters: rotation [T', 3 or 6] and translation [T', 3], identity at start.

    num_frames: T. per_frame: one motion per frame (T' = T) or one shared, time-independent motion
    (T' = 1). rotation: "axis_angle" or "6d".
    Calling it with a continuous frame position returns (R - I [3, 3], q [4] wxyz, translation [3]).
    """

    def __init__(self, num_frames: int, per_frame: bool = True, rotation: str = "axis_angle") -> None:
        super().__init__()
        if rotation not in ROTATIONS:
            raise ValueError(f"RigidMotion: rotation must be one of {ROTATIONS}, got {rotation!r}")
        self.per_frame = per_frame
        self.rotation_type = rotation
        rows = num_frames if per_frame else 1
        if rotation == "axis_angle":
            init = torch.zeros(rows, 3)
        else:
            init = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).repeat(rows, 1)
        self.rotation = nn.Parameter(init)  # [T', 3 | 6]
        self.translation = nn.Parameter(torch.zeros(rows, 3))  # [T', 3] world units
        self.from_trajectory = False  # set_trajectory: every frame has its own start (kept in checkpoints)

    def get_extra_state(self) -> dict:
        return {"from_trajectory": self.from_trajectory}

    def set_extra_state(self, state: dict) -> None:
        self.from_trajectory = bool(state.get("from_trajectory", False))

    @torch.no_grad()
    def copy_frame(self, src: int, dst: int) -> None:
        """Set frame ``dst``'s motion to frame ``src``'s (no-op for a shared motion, and for a motion
        whose frames were set from a trajectory: each frame keeps its own start)."""
        if self.per_frame and not self.from_trajectory:
            self.rotation[dst] = self.rotation[src]
            self.translation[dst] = self.translation[src]

    @torch.no_grad()
    def set_trajectory(self, rotations: Tensor, translations: Tensor) -> None:
        """Start every frame from a given motion: rotations [T, 3, 3], translations [T, 3] (the
        parameterisation's ``x' = R (x - center) + center + t``); frames joining the progressive
        schedule then keep their own start instead of copying the previous frame's."""
        if not self.per_frame or rotations.shape[0] != self.rotation.shape[0]:
            raise ValueError(f"RigidMotion.set_trajectory: needs a per-frame motion of {self.rotation.shape[0]} frames, "
                             f"got {tuple(rotations.shape)} (per_frame={self.per_frame})")
        R = rotations.to(self.rotation)
        if self.rotation_type == "axis_angle":
            q = rotmat_to_quat(R)
            q = q * torch.where(q[:, :1] < 0, -1.0, 1.0)
            v = q[:, 1:]
            n = v.norm(dim=-1, keepdim=True)
            angle = 2 * torch.atan2(n, q[:, :1])
            self.rotation.copy_(torch.where(n > 1e-12, v / n.clamp_min(1e-12) * angle, 2 * v))
        else:
            self.rotation.copy_(torch.cat([R[:, :, 0], R[:, :, 1]], dim=-1))
        self.translation.copy_(translations.to(self.translation))
        self.from_trajectory = True

    def forward(self, position: float) -> tuple[Tensor, Tensor, Tensor]:
        pos = position if self.per_frame else 0.0
        rot = interpolate_frames(self.rotation, pos)
        trans = interpolate_frames(self.translation, pos)
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        if self.rotation_type == "axis_angle":
            q = axis_angle_to_quat(rot)
            R = quat_to_rotmat(q)
        else:
            R = rotation_6d_to_rotmat(rot)
            q = rotmat_to_quat(R)
        return R - eye, q, trans


class RigidDeformation(Deformation):
    """``rigid``: per-frame (default) or shared SE(3) of the whole asset about its centre.

    Control points are still sampled (``control_point_positions`` serves ARAP and visualisation)
    but Gaussians are not bound to them: the motion is applied to every Gaussian directly.
    Parameter group: "rigid".
    """

    def __init__(
        self,
        canonical: Gaussians,
        num_frames: int,
        per_frame: bool = True,
        rotation: str = "axis_angle",
        num_control_points: int = 800,
        check_finite: bool = True,
    ) -> None:
        super().__init__(
            canonical, num_frames, num_control_points=num_control_points,
            skinning=False, check_finite=check_finite,
        )
        self.rigid = RigidMotion(num_frames, per_frame=per_frame, rotation=rotation).to(self.canonical_means)

    def global_motion(self, t: Tensor, position: float) -> tuple[Tensor, Tensor, Tensor]:
        return self.rigid(position)

    def copy_frame(self, src: int, dst: int) -> None:
        """Warm start of a frame joining the tracker's progressive schedule."""
        self.rigid.copy_frame(src, dst)

    def _param_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = super()._param_groups()
        groups["rigid"] = list(self.rigid.parameters())
        return groups
