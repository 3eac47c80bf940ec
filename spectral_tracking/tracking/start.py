"""Initial spatial misalignment: move the canonical by a radius in a random direction (paper Sec. 4).

Units: world units of the normalised asset (bounding-sphere radius 0.5, orbit cameras at radius 2,
fovy 49.1 degrees), so ``shift_radius = 0.5`` moves the asset by its own radius.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spectral_tracking.gaussians import Gaussians
from spectral_tracking.metrics import mask_iou  # re-exported: spectral_tracking.data.mask_iou


def random_direction(seed: int) -> Tensor:
    """A unit vector [3] uniform on the sphere, a pure function of ``seed`` (normalised Gaussian draw)."""
    gen = torch.Generator().manual_seed(int(seed))
    while True:
        d = torch.randn(3, generator=gen, dtype=torch.float64)
        n = d.norm()
        if n > 1e-6:
            return (d / n).float()


def shift_canonical(gaussians: Gaussians, radius: float, seed: int) -> tuple[Gaussians, Tensor]:
    """Translate every Gaussian by ``radius * direction``; returns (shifted, direction [3]).

    The direction is drawn from ``seed`` even when radius is 0, so a sweep over radii with one seed
    moves the asset along one line.
    """
    if radius < 0:
        raise ValueError(f"shift_canonical: radius must be >= 0, got {radius}")
    direction = random_direction(seed)
    return gaussians.translate(direction.to(gaussians.means) * float(radius)), direction


def initial_overlap(shifted: Gaussians, sequence, views: list[int] | None = None, frame: int = 0,
                    backend: str = "auto") -> list[float]:
    """IoU between the rendered silhouette of ``shifted`` and the mask of ``frame`` in each view.

    views: indices into ``sequence.cameras`` (default: ``sequence.train_views``). Returns one IoU per
    view, in that order. Needs the renderer.
    """
    from spectral_tracking.render import render

    views = list(sequence.train_views if views is None else views)
    with torch.no_grad():
        out = render(shifted.detach(), sequence.cameras[views].to(shifted.device), backend=backend)
    return [mask_iou(out.alpha[i].cpu(), sequence.mask(v, frame)) for i, v in enumerate(views)]

