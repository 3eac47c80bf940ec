"""The common base of every deformation: canonical asset, control points, time, rigid pivot, export.

A deformation is an ``nn.Module`` holding a frozen canonical `Gaussians` (as buffers) and its own
trainable motion parameters. ``deformation(frame)`` returns the deformed `Gaussians` of one frame;
the canonical tensors are never modified.

Frames and time
    A sequence has T = ``num_frames`` frames. ``forward`` takes either an ``int`` (or integer 0-dim
    tensor) frame index f in [0, T-1], or a time t in [0, 1] as a ``float`` or floating 0-dim tensor.
    They relate by t = f / (T - 1) (for T = 1 the only frame is f = 0 at t = 0). Per-frame
    parameterisations (direct, rigid) evaluated between frames interpolate linearly between the
    two neighbouring frames (quaternions: linear, then normalised by the skinning).

Composition
    local (per control point, skinned onto the Gaussians), then global (one rigid motion of the
    whole asset about its ``center``, the bounding-box centre of the canonical means, so that a
    rotation turns the asset in place instead of swinging it around the world origin):
        x'' = R_g (x' - center) + center + t_g,      q'' = q_g (x) q'
    Both are written as displacements (R - I) so that the identity is exact at initialisation.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Mapping, Sequence, Union

import torch
from torch import Tensor, nn

from spectral_tracking.deform.control_points import (
    SkinBinding,
    bind_to_control_points,
    control_point_radius,
    farthest_point_sampling,
    skin,
    skinning_weights,
    transposed_weights,
)
from spectral_tracking.gaussians import Gaussians, PathLike, quat_multiply, rotmat_to_quat, save_ply

FrameLike = Union[int, float, Tensor]

#: Parameter-group names a deformation may expose, and what each holds.
PARAM_GROUPS = {
    "deform": "non-rigid motion: the TimeNet MLP weights, or the direct per-frame offsets/rotations",
    "rigid": "the global rigid motion (rotation and translation)",
    "radius": "learnable per-control-point skinning radii (log scale)",
    "appearance": "an offset on the canonical colours (SH), see deform/appearance.py",
}


ROTATION_SOURCES = ("learned", "svd")
SVD_NEIGHBORS = 10  # control-point neighbours of the SVD rotations (as ARAP's)


class Deformation(nn.Module):
    """Base class. Subclasses implement `local_motion` and/or `global_motion` and `_param_groups`.

    canonical: the asset at rest (any device; stored as frozen buffers, never modified).
    num_frames: T >= 1.
    num_control_points: J, sampled from the canonical means by farthest point sampling (paper: 800).
    num_neighbors: K control points each Gaussian follows (4).
    learnable_radius: learn the per-control-point kernel radius (log scale, group "radius").
    skinning: False for deformations with no local motion (rigid): skips the Gaussian binding.
    check_finite: raise if a parameter holds NaN/inf when the deformation is evaluated.
    """

    def __init__(
        self,
        canonical: Gaussians,
        num_frames: int,
        num_control_points: int = 800,
        num_neighbors: int = 4,
        learnable_radius: bool = False,
        skinning: bool = True,
        check_finite: bool = True,
        rotation_source: str = "learned",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if rotation_source not in ROTATION_SOURCES:
            raise ValueError(f"{name}: rotation_source must be one of {', '.join(ROTATION_SOURCES)}, got {rotation_source!r}")
        if not isinstance(canonical, Gaussians):
            raise TypeError(f"{name}: canonical must be a Gaussians, got {type(canonical).__name__}")
        if canonical.num_gaussians == 0:
            raise ValueError(f"{name}: the canonical asset is empty (0 Gaussians); nothing to deform")
        canonical.check_finite(f"{name}: canonical Gaussians")
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"{name}: num_frames must be an int >= 1, got {num_frames!r}")
        if num_neighbors < 1:
            raise ValueError(f"{name}: num_neighbors must be >= 1, got {num_neighbors}")
        if num_control_points > canonical.num_gaussians:
            raise ValueError(
                f"{name}: num_control_points = {num_control_points} is larger than the number of Gaussians "
                f"({canonical.num_gaussians}); control points are sampled from the Gaussians' means"
            )
        if skinning and num_neighbors > num_control_points:
            raise ValueError(
                f"{name}: num_neighbors = {num_neighbors} exceeds num_control_points = {num_control_points}"
            )
        self.num_frames = num_frames
        self.num_control_points = num_control_points
        self.num_neighbors = num_neighbors
        self.check_finite = check_finite
        self.learnable_radius = learnable_radius and skinning
        self.skinning = skinning
        self.rotation_source = rotation_source

        g = canonical.detach()
        for field in ("means", "quats", "log_scales", "opacity_logits", "sh"):
            self.register_buffer(f"canonical_{field}", getattr(g, field).clone())
        center, radius = g.bounding_sphere()
        self.register_buffer("center", center.clone())  # [3] rigid pivot, MLP input origin
        self.asset_radius = max(radius, 1e-12)

        idx = farthest_point_sampling(g.means, num_control_points)
        self.register_buffer("control_point_index", idx)  # [J] which Gaussians became control points
        self.register_buffer("canonical_control_points", g.means[idx].clone())  # [J, 3]

        if skinning:
            binding, dist2 = bind_to_control_points(g.means, self.canonical_control_points, num_neighbors)
            for field in ("neighbor_index", "crow", "col", "crow_t", "col_t", "perm"):
                self.register_buffer(f"_bind_{field}", getattr(binding, field))
            self.register_buffer("neighbor_dist2", dist2)  # [N, K]
            log_r = control_point_radius(self.canonical_control_points).log()  # [J]
            if self.learnable_radius:
                self.log_radius = nn.Parameter(log_r)
            else:
                self.register_buffer("log_radius", log_r)
                self.register_buffer("_fixed_weights", self._weights())
                self.register_buffer("_fixed_weights_t", transposed_weights(self.binding, self._fixed_weights))
            if rotation_source == "svd":
                from spectral_tracking.losses.arap import canonical_neighbors

                k = min(SVD_NEIGHBORS, num_control_points - 1)
                if k < 2:
                    raise ValueError(f"{name}: rotation_source=svd needs at least 3 control points, got {num_control_points}")
                nb = canonical_neighbors(self.canonical_control_points, k)
                self.register_buffer("_svd_neighbors", nb)  # [J, k]
                self.register_buffer("_svd_rest_edges", self.canonical_control_points[:, None] - self.canonical_control_points[nb])

    # --- structure -----------------------------------------------------------------------------
    @property
    def canonical(self) -> Gaussians:
        """The canonical asset (buffers; do not modify in place)."""
        return Gaussians(
            means=self.canonical_means,
            quats=self.canonical_quats,
            log_scales=self.canonical_log_scales,
            opacity_logits=self.canonical_opacity_logits,
            sh=self.canonical_sh,
        )

    @property
    def binding(self) -> SkinBinding:
        if not self.skinning:
            raise RuntimeError(f"{type(self).__name__}: built with skinning=False, there is no Gaussian binding")
        return SkinBinding(
            self._bind_neighbor_index, self._bind_crow, self._bind_col, self._bind_crow_t, self._bind_col_t,
            self._bind_perm, self.num_control_points,
        )

    def _weights(self) -> Tensor:
        """[N, K] skinning weights from the current radii."""
        radius = self.log_radius.exp()[self._bind_neighbor_index]
        return skinning_weights(self.neighbor_dist2, radius)

    def skinning_weights(self) -> Tensor:
        """[N, K] skinning weights (rows sum to one) of the Gaussians to their bound control points."""
        return self._weights() if self.learnable_radius else self._fixed_weights

    # --- time ----------------------------------------------------------------------------------
    def resolve_time(self, frame: FrameLike) -> tuple[Tensor, float]:
        """(t as a 0-dim tensor in [0, 1], continuous frame position in [0, T-1]) of a frame or time.

        int / integer 0-dim tensor: a frame index in [0, T-1]. float / floating 0-dim tensor: a time
        t in [0, 1]. Anything else, or out of range, raises ``ValueError``.
        """
        name = type(self).__name__
        T = self.num_frames
        if isinstance(frame, bool):
            raise ValueError(f"{name}: frame must be an int frame index or a float time, got a bool")
        if isinstance(frame, Tensor):
            if frame.numel() != 1 or frame.dim() > 1:
                raise ValueError(f"{name}: frame tensor must be a scalar, got shape {list(frame.shape)}")
            is_int = not (frame.is_floating_point() or frame.is_complex())
            frame = int(frame.item()) if is_int else float(frame.item())
        if isinstance(frame, numbers.Integral):
            frame = int(frame)
            if not 0 <= frame < T:
                raise ValueError(f"{name}: frame index {frame} out of range [0, {T - 1}] (num_frames = {T})")
            t = frame / (T - 1) if T > 1 else 0.0
            position = float(frame)
        elif isinstance(frame, numbers.Real):
            frame = float(frame)
            if not (0.0 <= frame <= 1.0):  # also rejects NaN
                raise ValueError(f"{name}: time t = {frame} outside [0, 1]")
            t = frame
            position = frame * (T - 1)
        else:
            raise ValueError(f"{name}: frame must be an int index or a float time in [0, 1], got {type(frame).__name__}")
        return torch.tensor(t, dtype=self.canonical_means.dtype, device=self.canonical_means.device), position

    # --- motion (subclasses) -------------------------------------------------------------------
    def local_motion(self, t: Tensor, position: float) -> tuple[Tensor, Tensor] | None:
        """Per-control-point (translations [J, 3], rotations [J, 4] wxyz), or None for no local motion."""
        return None

    def global_motion(self, t: Tensor, position: float) -> tuple[Tensor, Tensor, Tensor] | None:
        """Whole-asset rigid motion about ``center``: (R - I [3, 3], q [4] wxyz, translation [3]), or None."""
        return None

    def copy_frame(self, src: int, dst: int) -> None:
        """Warm start of frame ``dst`` from frame ``src`` when it joins the tracker's progressive
        schedule (GSGD-style). Per-frame parameterisations (direct, rigid) override this; models
        whose parameters are shared over time (the TimeNet) have nothing to copy."""

    def set_trajectory(self, rotations: Tensor, translations: Tensor) -> None:
        """Start frame t from the rigid motion x -> R_t (x - center) + center + t_t of the whole asset
        (rotations [T, 3, 3], translations [T, 3]); only deformations with a per-frame rigid part
        (``rigid``, ``rigid_mlp`` with ``rigid_per_frame``) can hold one."""
        rigid = getattr(self, "rigid", None)
        if rigid is None or not rigid.per_frame:
            raise ValueError(f"{type(self).__name__} has no per-frame rigid part to start from a trajectory; "
                             f"use deform=rigid_mlp_frames (rigid_mlp with one rigid motion per frame), or deform=rigid")
        rigid.set_trajectory(rotations, translations)

    def _param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Group name (a key of PARAM_GROUPS) -> parameters; subclasses extend."""
        groups: dict[str, list[nn.Parameter]] = {}
        if self.learnable_radius:
            groups["radius"] = [self.log_radius]
        return groups

    # --- evaluation ----------------------------------------------------------------------------
    def _check_parameters(self) -> None:
        params = list(self.named_parameters())
        if not params or not self.check_finite:
            return
        ok = torch.stack([torch.isfinite(p).all() for _, p in params]).all()
        if not bool(ok):
            bad = [f"{n} ({int((~torch.isfinite(p)).sum())} values)" for n, p in params if not torch.isfinite(p).all()]
            raise ValueError(f"{type(self).__name__}: non-finite (NaN/inf) parameters: {', '.join(bad)}")

    def _apply_global(self, points: Tensor, quats: Tensor | None, motion) -> tuple[Tensor, Tensor | None]:
        M, q, trans = motion
        points = points + (points - self.center) @ M.T + trans
        if quats is not None:
            quats = quat_multiply(q.expand_as(quats), quats)
        return points, quats

    def forward(self, frame: FrameLike) -> Gaussians:
        """The deformed asset at ``frame`` (int index) or time (float in [0, 1]); see module docstring."""
        self._check_parameters()
        t, position = self.resolve_time(frame)
        return self._deformed(t, position, self.local_motion(t, position))

    def control_point_positions(self, frame: FrameLike) -> Tensor:
        """[J, 3] deformed control points at ``frame`` (for ARAP and visualisation); differentiable."""
        self._check_parameters()
        t, position = self.resolve_time(frame)
        return self._deformed_control_points(t, position, self.local_motion(t, position))

    def local_motions(self, times: list[tuple[Tensor, float]]) -> list[tuple[Tensor, Tensor] | None]:
        """`local_motion` of several (t, position) pairs from `resolve_time`; the TimeNet overrides
        this with one batched pass."""
        return [self.local_motion(t, position) for t, position in times]

    def frame_and_control_points(
        self, frame: FrameLike, control_frames: Sequence[FrameLike]
    ) -> tuple[Gaussians, Tensor | None]:
        """What a training step needs: the deformed asset at ``frame`` and the deformed control
        points [F, J, 3] at each of ``control_frames`` (ARAP's frames; None if there are none).

        The same values as ``self(frame)`` and ``stack([self.control_point_positions(f) for f in
        control_frames])``, but the local motion is evaluated once per distinct frame, all of them
        in one call of `local_motions` (one TimeNet pass instead of 1 + F).
        """
        self._check_parameters()
        resolved = [self.resolve_time(f) for f in (frame, *control_frames)]
        positions: list[float] = []
        slot = []  # resolved[i] uses motions[slot[i]]
        for _, position in resolved:
            if position not in positions:
                positions.append(position)
            slot.append(positions.index(position))
        motions = self.local_motions([resolved[slot.index(k)] for k in range(len(positions))])
        gaussians = self._deformed(*resolved[0], motions[slot[0]])
        if len(resolved) == 1:
            return gaussians, None
        points = [self._deformed_control_points(*resolved[i], motions[slot[i]]) for i in range(1, len(resolved))]
        return gaussians, torch.stack(points)

    def _deformed(self, t: Tensor, position: float, local: tuple[Tensor, Tensor] | None) -> Gaussians:
        means, quats = self.canonical_means, self.canonical_quats
        if local is not None:
            translations, rotations = local
            if self.rotation_source == "svd":
                rotations = self.svd_rotations(translations)
            means, quats = skin(
                means, quats, self.canonical_control_points, self.binding, self.skinning_weights(),
                translations, rotations, weights_t=None if self.learnable_radius else self._fixed_weights_t,
            )
        glob = self.global_motion(t, position)
        if glob is not None:
            means, quats = self._apply_global(means, quats, glob)
        return Gaussians(
            means=means,
            quats=quats,
            log_scales=self.canonical_log_scales,
            opacity_logits=self.canonical_opacity_logits,
            sh=self.canonical_sh,
        )

    def svd_rotations(self, translations: Tensor) -> Tensor:
        """Control-point rotations [J, 4] (wxyz) fitted to each one's canonical neighbourhood after
        moving by ``translations`` [J, 3] (Kabsch, no gradient): GSGD's
        ``override_deformation_rotation``, used with ``rotation_source=svd``."""
        from spectral_tracking.losses.arap import best_fit_rotations

        with torch.no_grad():
            points = self.canonical_control_points + translations
            edges = points[:, None] - points[self._svd_neighbors]
            R = best_fit_rotations(self._svd_rest_edges, edges)
            return rotmat_to_quat(R).to(translations.dtype)

    def _deformed_control_points(self, t: Tensor, position: float, local: tuple[Tensor, Tensor] | None) -> Tensor:
        points = self.canonical_control_points
        if local is not None:
            points = points + local[0]
        glob = self.global_motion(t, position)
        if glob is not None:
            points, _ = self._apply_global(points, None, glob)
        return points

    def param_groups(self, lr: Mapping[str, float]) -> list[dict]:
        """Adam parameter groups ``[{"name", "params", "lr"}]``, one per group this model has.

        lr: group name -> learning rate, e.g. ``{"deform": 2e-4, "rigid": 1e-3, "radius": 1e-4}``.
        Keys for groups this model does not have are allowed (one config serves several models);
        unknown names and missing rates for groups it has raise ``ValueError``.
        """
        unknown = sorted(set(lr) - set(PARAM_GROUPS))
        if unknown:
            raise ValueError(f"{type(self).__name__}.param_groups: unknown group(s) {unknown}; known: {sorted(PARAM_GROUPS)}")
        out = []
        for name, params in self._param_groups().items():
            if name not in lr:
                raise ValueError(
                    f"{type(self).__name__}.param_groups: no learning rate for group '{name}' "
                    f"({PARAM_GROUPS[name]}); got rates for {sorted(lr)}"
                )
            out.append({"name": name, "params": list(params), "lr": float(lr[name])})
        return out


def interpolate_frames(table: Tensor, position: float) -> Tensor:
    """Row ``position`` of a per-frame table [T, ...], linear between the two nearest frames.

    An integral position returns that row exactly (no arithmetic), so frames are reproduced bit for bit.
    """
    T = table.shape[0]
    if not 0.0 <= position <= T - 1:
        raise ValueError(f"interpolate_frames: position {position} outside [0, {T - 1}]")
    i0 = int(position)
    a = position - i0
    if a == 0.0:
        return table[i0]
    return torch.lerp(table[i0], table[i0 + 1], a)


def export_frames(
    deformation: Deformation,
    out_dir: PathLike,
    frames: Sequence[int] | None = None,
) -> list[Path]:
    """Write the deformed asset of each frame as ``out_dir/frame_XXXX.ply`` (standard 3DGS layout).

    frames: frame indices (default: all T). Returns the written paths, in ``frames`` order.
    """
    out_dir = Path(out_dir)
    frames = list(range(deformation.num_frames)) if frames is None else list(frames)
    if not frames:
        raise ValueError("export_frames: no frames to export")
    paths = []
    with torch.no_grad():
        for f in frames:
            if isinstance(f, bool) or not isinstance(f, numbers.Integral):
                raise ValueError(f"export_frames: frames must be int indices, got {f!r}")
            f = int(f)
            paths.append(save_ply(deformation(f), out_dir / f"frame_{f:04d}.ply"))
    return paths
