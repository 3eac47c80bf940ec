"""As-rigid-as-possible (ARAP) regularisation of control points (Sorkine & Alexa 2007; as in GSGD).

Neighbourhoods are fixed in the canonical pose: each control point i is linked to its K = 10
nearest other control points j. For a deformed pose p^t the energy is

    E(p^t) = sum_i sum_j || (p_i^t - p_j^t) - R_i (p_i^0 - p_j^0) ||^2

where R_i is the best-fitting rotation of i's neighbourhood (Kabsch: SVD of the 3x3 edge
covariance, reflection-corrected), computed without gradient, as in the usual local/global ARAP
solvers. Several frames [F, J, 3] are averaged (mean over F). E is zero for any rigid motion of the
whole set, grows with stretching, and its gradient moves points back toward a rigid pose.

Degenerate neighbourhoods (coincident control points, zero-length edges) are fine: the covariance is
zero, SVD still returns an orthogonal basis, the rotation is arbitrary and the zero-length rest edge
makes it irrelevant; nothing divides by a length.

On the CPU (float32 / float64) the energy and its gradient come from a C++ twin
(``csrc/arap.cpp``: the rotation by Horn's quaternion method instead of the SVD, the same
maximiser of tr(R S); 1 ms a step less at 150 control points, about 4 at 800); elsewhere, or where
the kernel cannot be built (after one warning), from the torch code below.

Schedule: `arap_weight(step, lambda_arap, arap_start_iter)` is lambda_arap from ``arap_start_iter``
on and 0 before (paper: arap_start_iter = 1000, lambda_arap 1-3).
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spectral_tracking.knn import knn
from spectral_tracking.runtime.native import SUFFIXES, load_or_warn

REDUCTIONS = ("sum", "mean")


def canonical_neighbors(points: Tensor, k: int = 10, chunk_size: int = 4096) -> Tensor:
    """Indices [J, k] of each point's k nearest *other* points (self excluded even if duplicated).

    points: [J, 3]. Ties (coincident points) break toward the lower index (`spectral_tracking.knn`).
    """
    J = points.shape[0]
    if not 1 <= k <= J - 1:
        raise ValueError(f"ARAP: k = {k} neighbours needs at least k + 1 control points, got {J}")
    return knn(points, points, k, exclude_self=True, chunk_size=chunk_size)[1]


def _det3(M: Tensor) -> Tensor:
    """Determinants [...] of 3x3 matrices [..., 3, 3] (closed form; batched LU is slow on CPU)."""
    return (torch.linalg.cross(M[..., 0, :], M[..., 1, :], dim=-1) * M[..., 2, :]).sum(-1)


def best_fit_rotations(rest_edges: Tensor, edges: Tensor) -> Tensor:
    """Rotations R_i [..., J, 3, 3] minimising sum_j ||edges_ij - R_i rest_edges_ij||^2 (no gradient).

    rest_edges: [J, K, 3] canonical edges p_i^0 - p_j^0; edges: [..., J, K, 3] deformed edges.
    Kabsch: S = sum_j rest_edges_ij edges_ij^T = U diag(s) V^T, R = V diag(1, 1, det(V U^T)) U^T.
    """
    with torch.no_grad():
        S = rest_edges.to(edges.dtype).transpose(-1, -2) @ edges  # [..., J, 3, 3]
        U, _, Vh = torch.linalg.svd(S)
        V = Vh.transpose(-1, -2)
        d = _det3(V) * _det3(U)  # det(V U^T): +1 rotation, -1 reflection
        V = torch.cat([V[..., :2], V[..., 2:] * d[..., None, None]], dim=-1)
        return V @ U.transpose(-1, -2)


class ARAP:
    """ARAP energy on control points with neighbourhoods fixed in the canonical pose.

    canonical_points: [J, 3] (e.g. ``deformation.canonical_control_points``).
    k: neighbours per point (10). reduction: "sum" over points and neighbours (the formula above,
    GSGD's scale; the default) or "mean" over them. Either way the result is averaged over frames.
    """

    def __init__(self, canonical_points: Tensor, k: int = 10, reduction: str = "sum") -> None:
        if canonical_points.dim() != 2 or canonical_points.shape[1] != 3:
            raise ValueError(f"ARAP: canonical_points must have shape [J, 3], got {list(canonical_points.shape)}")
        if not torch.isfinite(canonical_points).all():
            raise ValueError("ARAP: canonical_points hold non-finite values (NaN or inf)")
        if reduction not in REDUCTIONS:
            raise ValueError(f"ARAP: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.k = k
        self.reduction = reduction
        self.canonical_points = canonical_points.detach().clone()
        self.neighbors = canonical_neighbors(self.canonical_points, k)  # [J, k]
        self.rest_edges = self.canonical_points[:, None, :] - self.canonical_points[self.neighbors]  # [J, k, 3]

    @property
    def num_points(self) -> int:
        return self.canonical_points.shape[0]

    def to(self, device=None, dtype=None) -> "ARAP":
        self.canonical_points = self.canonical_points.to(device=device, dtype=dtype)
        self.neighbors = self.neighbors.to(device=device)
        self.rest_edges = self.rest_edges.to(device=device, dtype=dtype)
        return self

    def edges(self, points: Tensor) -> Tensor:
        """Deformed edges p_i - p_j [F, J, k, 3] of points [F, J, 3]."""
        F, J, _ = points.shape
        nb = points.index_select(1, self.neighbors.to(points.device).reshape(-1)).reshape(F, J, self.k, 3)
        return points[:, :, None, :] - nb

    def __call__(self, deformed_points: Tensor, native: bool = True) -> Tensor:
        """Scalar energy of deformed control points [J, 3] or [F, J, 3] (mean over F).
        ``native=False`` uses the torch code where the C++ twin would run (the tests compare them)."""
        pts = deformed_points
        if pts.dim() == 2:
            pts = pts[None]
        if pts.dim() != 3 or pts.shape[1:] != (self.num_points, 3):
            raise ValueError(
                f"ARAP: deformed points must have shape [{self.num_points}, 3] or [F, {self.num_points}, 3], "
                f"got {list(deformed_points.shape)}"
            )
        if not bool(torch.isfinite(pts).all()):
            raise ValueError("ARAP: deformed points hold non-finite values (NaN or inf)")
        rest = self.rest_edges.to(device=pts.device, dtype=pts.dtype)
        if native and pts.device.type == "cpu" and pts.dtype in SUFFIXES and _kernel() is not None:
            scale = 1.0 / pts.shape[0] / (1 if self.reduction == "sum" else self.num_points * self.k)
            return _ARAPCPU.apply(pts, self.neighbors.cpu(), rest, scale)
        e = self.edges(pts)  # [F, J, k, 3]
        R = best_fit_rotations(rest, e)  # [F, J, 3, 3]
        fitted = rest @ R.transpose(-1, -2)  # [F, J, k, 3]: R_i applied to each rest edge
        residual = (e - fitted).square().sum(-1)  # [F, J, k]
        per_frame = residual.sum((1, 2)) if self.reduction == "sum" else residual.mean((1, 2))
        return per_frame.mean()


FALLBACK = "ARAP falls back to its torch code (slower, same energy)"


def _kernel():
    return load_or_warn("arap", FALLBACK)


class _ARAPCPU(torch.autograd.Function):
    """scale * (the ARAP energy summed over frames, points and neighbours) of points [F, J, 3]."""

    @staticmethod
    def forward(ctx, points, neighbors, rest, scale):
        pts = points.detach().contiguous()
        nb, rest = neighbors.to(torch.int64).contiguous(), rest.contiguous()
        F, J, _ = pts.shape
        K = nb.shape[1]
        rotations = torch.empty(F, J, 9, dtype=pts.dtype)
        energy = _kernel().function("st_arap_fwd", pts.dtype)(
            F=F, J=J, K=K, points=pts, neighbors=nb, rest_edges=rest, rotations=rotations)
        ctx.save_for_backward(pts, nb, rest, rotations)
        ctx.scale = scale
        return torch.tensor(energy * scale, dtype=pts.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        pts, nb, rest, rotations = ctx.saved_tensors
        F, J, _ = pts.shape
        grad_points = torch.empty_like(pts)
        _kernel().function("st_arap_bwd", pts.dtype)(
            F=F, J=J, K=nb.shape[1], points=pts, neighbors=nb, rest_edges=rest, rotations=rotations,
            scale=float(grad) * ctx.scale, grad_points=grad_points)
        return grad_points, None, None, None


class HasControlPoints(Protocol):
    num_frames: int

    def control_point_positions(self, frame: int) -> Tensor: ...


def arap_on_frames(arap: ARAP, deformation: HasControlPoints, frames: Sequence[int]) -> Tensor:
    """ARAP of a deformation's control points, averaged over ``frames`` (the trainer samples a few)."""
    if len(frames) == 0:
        raise ValueError("arap_on_frames: no frames given")
    return arap(torch.stack([deformation.control_point_positions(f) for f in frames]))


def sample_frames(num_frames: int, count: int, generator: torch.Generator | None = None,
                  include: int | None = None) -> list[int]:
    """``count`` distinct frame indices drawn uniformly from [0, num_frames) (all of them if fewer), sorted.
    ``include``: that frame is one of them, the other ``count - 1`` drawn from the rest."""
    if num_frames < 1 or count < 1:
        raise ValueError(f"sample_frames: need num_frames >= 1 and count >= 1, got {num_frames}, {count}")
    if include is None:
        perm = torch.randperm(num_frames, generator=generator)[: min(count, num_frames)]
        return sorted(int(i) for i in perm)
    if not 0 <= include < num_frames:
        raise ValueError(f"sample_frames: include must be a frame in [0, {num_frames}), got {include}")
    rest = [f for f in range(num_frames) if f != include]
    perm = torch.randperm(len(rest), generator=generator)[: min(count - 1, len(rest))]
    return sorted([include, *(rest[int(i)] for i in perm)])


def arap_weight(step: int, lambda_arap: float, arap_start_iter: int) -> float:
    """Weight of the ARAP term at optimisation ``step``: 0 before ``arap_start_iter``, then lambda_arap."""
    if lambda_arap < 0:
        raise ValueError(f"arap_weight: lambda_arap must be >= 0, got {lambda_arap}")
    return float(lambda_arap) if step >= arap_start_iter else 0.0
