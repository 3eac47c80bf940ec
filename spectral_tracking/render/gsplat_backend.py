"""The CUDA backend: the one place in the project that calls ``gsplat.rasterization``.

Settings are pinned to the maths of the ``torch`` and ``cpu`` backends: pinhole camera, classic
(non anti-aliased) rasterisation, eps2d 0.3, near plane 0.01, 16 px tiles, SH colours with the
+0.5 offset and clamp at 0, depth rendered as the alpha-normalised expected camera z ("RGB+ED").
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cameras import Cameras
from ..gaussians import Gaussians
from .projection import EPS2D, NEAR_PLANE, TILE_SIZE


def render_gsplat(gaussians: Gaussians, cameras: Cameras, background: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
    """gaussians on CUDA; background [V, 3]. Returns rgb [V, H, W, 3], alpha [V, H, W],
    depth [V, H, W] and gsplat's meta dict (means2d [V, N, 2], radii [V, N, 2], ...)."""
    from gsplat import rasterization  # imported lazily: only this backend needs gsplat's CUDA code

    if gaussians.device.type != "cuda":
        raise ValueError(f"render backend 'gsplat': Gaussians must be on a CUDA device, got {gaussians.device}")
    if gaussians.means.dtype != torch.float32:
        raise ValueError(f"render backend 'gsplat': gsplat's kernels take float32, got {gaussians.means.dtype}")
    renders, alphas, meta = rasterization(
        means=gaussians.means,
        quats=gaussians.quats,  # normalised inside gsplat
        scales=torch.exp(gaussians.log_scales),
        opacities=torch.sigmoid(gaussians.opacity_logits),
        colors=gaussians.sh,  # [N, K, 3] SH coefficients
        viewmats=cameras.viewmats.to(gaussians.means),
        Ks=cameras.Ks.to(gaussians.means),
        width=cameras.width,
        height=cameras.height,
        near_plane=NEAR_PLANE,
        eps2d=EPS2D,
        sh_degree=gaussians.sh_degree,
        packed=False,
        tile_size=TILE_SIZE,
        backgrounds=background,
        render_mode="RGB+ED",
        rasterize_mode="classic",
        camera_model="pinhole",
    )
    if meta["means2d"].requires_grad:
        meta["means2d"].retain_grad()  # as the other backends: densification reads means2d.grad
    return renders[..., :3], alphas[..., 0], renders[..., 3], meta
