"""The rescue's term for a render that shows nothing (``loss.rescue_recentre``, beyond the paper).

The rescue (`spectral_tracking.tracking.objective`) gives a frame that lost its target the spectral
loss of the lowest bands. That loss is global only over what is rendered: where the deformation has
carried the whole asset out of the image (every Gaussian off-screen, seen in
`experiments/results/scale_curves_views1_rescue`: a jumping quadruped 40-115 pixels above a 96-pixel
image in every frame), the render is empty, its moments are those of the background, and no
Gaussian gets a gradient. This term has one wherever the asset is in front of the camera:

    R = | c_render - c_target |,   in the moments' normalised image coordinates (pixel / (L / 2), L the
                                   longer image side: the image spans about [-1, 1])

c_render the mean of the Gaussians' projected centres, c_target the centroid of the target mask. It is
the first moment of the silhouette, taken from the Gaussians' positions instead of from their pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spectral_tracking.cameras import Cameras

NEAR = 0.01
"""Gaussians nearer the camera than this (or behind it) are left out of c_render (the renderer's
near plane)."""


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
    against its target ``mask`` [H, W] or [1, H, W]: a scalar with a gradient for ``means``, 0
    (without one) where the mask is empty or no Gaussian is in front of the camera."""
    if len(camera) != 1:
        raise ValueError(f"recentre_loss: expected one camera, got {len(camera)}")
    mask = mask.reshape(mask.shape[-2:])
    target = mask_centroid(mask.detach())
    vm, K = camera.viewmats[0].to(means), camera.Ks[0].to(means)
    p = means @ vm[:3, :3].T + vm[:3, 3]  # [N, 3] camera coordinates
    front = p[:, 2] > NEAR
    if not bool(front.any()) or not bool(torch.isfinite(target).all()):
        return means.new_zeros(())
    q = p[front]
    uv = (q @ K.T)[:, :2] / q[:, 2:3]  # [M, 2] pixel coordinates
    half = 0.5 * max(camera.width, camera.height)
    offset = (uv.mean(0) - target.to(uv)) / half
    return offset.square().sum().add(1e-12).sqrt()
