"""A scale-preserving term on the control points (beyond the paper; ``loss.lambda_scale``).

With one view, an asset at the wrong depth can match its target's silhouette by growing or
shrinking instead of moving (``3d_size_ratio`` up to 1.2 at shift 0.8 with the defaults): per unit
of control-point motion, scaling changes the apparent size several times faster than a move in
depth does, so gradient descent prefers it. ARAP penalises scaling too, but only through the edges
of each small neighbourhood. This term penalises it directly, per frame:

    S(p^t) = ( log( spread(p^t) / spread(p^0) ) )^2,   spread(p) = RMS distance of p from its centroid

zero for any rigid motion, and (log s)^2 for a uniform scaling by s. Averaged over the frames given.
"""

from __future__ import annotations

import torch
from torch import Tensor


def spread(points: Tensor) -> Tensor:
    """[..., J, 3] -> [...]: RMS distance of the points from their centroid (also the spread that
    the ``3d_size_ratio`` metric compares, `spectral_tracking.metrics.gaussian_3d_error`)."""
    centred = points - points.mean(dim=-2, keepdim=True)
    return centred.square().sum(-1).mean(-1).sqrt()


class ScalePrior:
    """S above, against the canonical control points [J, 3]."""

    def __init__(self, canonical_points: Tensor) -> None:
        if canonical_points.dim() != 2 or canonical_points.shape[1] != 3 or canonical_points.shape[0] < 2:
            raise ValueError(f"ScalePrior: canonical_points must have shape [J >= 2, 3], got {list(canonical_points.shape)}")
        self.rest_spread = float(spread(canonical_points.detach()))
        if not self.rest_spread > 0:
            raise ValueError("ScalePrior: the canonical control points coincide (zero spread)")

    def __call__(self, points: Tensor) -> Tensor:
        """Scalar: mean over frames of S for control points [J, 3] or [F, J, 3]."""
        pts = points[None] if points.dim() == 2 else points
        return torch.log(spread(pts) / self.rest_spread).square().mean()
