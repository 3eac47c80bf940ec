"""The rescue's term for a render that shows nothing (``loss.rescue_recentre``, beyond the paper).

The rescue (`spectral_tracking.tracking.objective`) gives a frame that lost its target the spectral
loss of the lowest bands. That loss is global only over what is rendered: where the deformation has
carried the whole asset out of the image (every Gaussian off-screen, seen in
`experiments/results/scale_curves_views1_rescue`: a jumping quadruped 40-115 pixels above a 96-pixel
image in every frame), the render is empty, its moments are those of the background, and no
Gaussian gets a gradient. This term has one wherever the asset is:

    R = (f / (L / 2)) * | d(c) - d(m) |

d(c) the unit viewing direction of the Gaussians' centroid c (camera coordinates), d(m) that of the
ray through the target mask's centroid m, f the focal length in pixels, L the longer image side. Near
the image centre R is the distance between where the centroid projects and m, in units of half the
image (the moments' normalised coordinates); far out it grows like the angle between the two
directions, so it stays bounded, and it points the asset back into view even where its centroid
is beside or behind the camera (a projection would divide by a depth near 0 there). It is the
silhouette's first moment, read from the Gaussians' positions instead of their pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spectral_tracking.cameras import Cameras


def mask_centroid(mask: Tensor) -> Tensor:
    """[2] (x, y) centroid of a mask [H, W] in pixel coordinates (pixel centres at +0.5); NaN where
    the mask is empty."""
    H, W = mask.shape
    m = mask.to(torch.float64)
    mass = m.sum()
    xs = torch.arange(W, dtype=torch.float64, device=m.device) + 0.5
    ys = torch.arange(H, dtype=torch.float64, device=m.device) + 0.5
    return torch.stack([(m.sum(0) * xs).sum(), (m.sum(1) * ys).sum()]) / mass


def recentre_loss(means: Tensor, camera: Cameras, mask: Tensor) -> Tensor:
    """R above for Gaussian centres ``means`` [N, 3] seen by one camera (a `Cameras` of length 1)
    against its target ``mask`` [H, W] or [1, H, W]: a scalar with a gradient for ``means``; 0
    (without one) where the mask is empty."""
    if len(camera) != 1:
        raise ValueError(f"recentre_loss: expected one camera, got {len(camera)}")
    mask = mask.reshape(mask.shape[-2:])
    target = mask_centroid(mask.detach())
    if not bool(torch.isfinite(target).all()):
        return means.new_zeros(())
    vm, K = camera.viewmats[0].to(means), camera.Ks[0].to(means)
    c = means.mean(0) @ vm[:3, :3].T + vm[:3, 3]  # the centroid in camera coordinates
    ray = torch.linalg.solve(K, torch.cat([target.to(means), means.new_ones(1)]))  # K^-1 (u, v, 1)
    d_c = c / c.norm().clamp_min(1e-12)
    d_m = ray / ray.norm()
    focal = 0.5 * (K[0, 0] + K[1, 1])
    return (d_c - d_m).norm() * focal / (0.5 * max(camera.width, camera.height))
