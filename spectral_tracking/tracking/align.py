"""A closed-form start: translate the canonical to where the target's lowest moments put it.

Beyond the paper (``align=moments``; the paper starts the optimiser from the shifted asset). The two
lowest spectral moments of a mask m say where an object is and how far: its mass M(0; m) = sum_p m(p)
(the silhouette's area, which falls as 1/depth^2 under a pinhole camera) and, through the phase
slope of M(w; m) at w = 0, its centroid c = sum_p m(p) p / sum_p m(p). So, per training view:

1. render the canonical placed on the camera's optical axis at a reference depth z_ref (where it
   fits in the frame whatever the start): its mass A_ref and its centroid's offset d from the
   projection of its centre X (the silhouette is not symmetric about X);
2. the target's depth is z = z_ref * sqrt(A_ref / A_target) and its centre projects to
   c_target - d * z_ref / z (the offset shrinks with depth);
3. back-project that pixel to depth z.

The views' estimates are averaged and the canonical is translated there (a rigid move: its shape
and orientation are kept). Later passes (3 in all) take the asset where the previous pass put it as
the reference (a fixed point once its render has the target's mass and centroid), which removes
the first pass's error from seeing a 3D asset on the axis rather than where it is (0.2 radii on
flower_twist in one pass, 0.003 after three). The masks are those of one frame (the tracker
passes frame 0, the frame the progressive schedule fits first). This finds depth from size, which
is what one view offers; it assumes the canonical's size is right (true for a tracked asset) and that the frame's
pose has about the canonical's silhouette area.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor

from spectral_tracking.cameras import Cameras
from spectral_tracking.gaussians import Gaussians
from spectral_tracking.losses.recentre import mask_centroid

METHODS = ("none", "moments", "search")  # the start stages: tracking/start.py `place`
log = logging.getLogger(__name__)


def mask_moments(mask: Tensor) -> tuple[float, Tensor]:
    """(mass, centroid [2] in pixel coordinates x, y, pixel centres at +0.5; float64 on the CPU) of a
    mask [H, W] (`spectral_tracking.losses.recentre.mask_centroid`; zeros where it is empty)."""
    mass = float(mask.double().sum())
    if mass <= 0:
        return 0.0, torch.zeros(2, dtype=torch.float64)
    return mass, mask_centroid(mask).cpu()


def _camera_frame(cameras: Cameras, v: int) -> tuple[Tensor, Tensor, Tensor]:
    """(R [3, 3] world-to-camera, t [3], K [3, 3]) of view v, float64 on the CPU."""
    vm = cameras.viewmats[v].detach().double().cpu()
    return vm[:3, :3], vm[:3, 3], cameras.Ks[v].detach().double().cpu()


def _backproject(uv: Tensor, z: float, R: Tensor, t: Tensor, K: Tensor) -> Tensor:
    """World point [3] whose projection is pixel uv [2] at camera depth z."""
    ray = torch.linalg.solve(K, torch.cat([uv, uv.new_ones(1)]))  # camera coords with z = 1
    cam = ray * z
    return R.T @ (cam - t)


def _touches_border(alpha: Tensor, threshold: float = 0.05) -> bool:
    return bool(torch.cat([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]]).max() > threshold)


def estimate_center(gaussians: Gaussians, cameras: Cameras, v: int, target_mask: Tensor, backend: str = "auto",
                    in_place: bool = False) -> Tensor:
    """World position [3] of the asset's centre (mean of its means) implied by view v's target mask.

    The reference render is the asset moved onto the optical axis at the depth where its bounding
    sphere spans half the image height (robust from any start), or, with ``in_place``, the asset
    where it is (exact near the target: a fixed point when its render already matches the mask's
    moments; used when that render is not cut by the image border)."""
    from spectral_tracking.render import render

    R, t, K = _camera_frame(cameras, v)
    A_t, c_t = mask_moments(target_mask.detach().cpu())
    if A_t <= 0:
        raise ValueError(f"align: the target mask of view {v} is empty in the aligned frame (every training view's is); "
                         f"nothing to align to (use align=none)")
    X = gaussians.means.detach().double().cpu().mean(0)
    camera = cameras[v].to(gaussians.device)
    with torch.no_grad():
        alpha = render(gaussians.detach(), camera, backend=backend).alpha[0].cpu() if in_place else None
        if alpha is not None and mask_moments(alpha)[0] > 0 and not _touches_border(alpha):
            X_ref, z_ref = X, float((R @ X + t)[2])
        else:
            _, radius = gaussians.bounding_sphere()
            z_ref = 4.0 * radius * float(K[1, 1]) / cameras.height
            X_ref = R.T @ (torch.tensor([0.0, 0.0, z_ref], dtype=torch.float64) - t)  # on the optical axis
            moved = gaussians.detach().translate((X_ref - X).to(gaussians.means))
            alpha = render(moved, camera, backend=backend).alpha[0].cpu()
    A_r, c_r = mask_moments(alpha)
    if A_r <= 0:
        raise ValueError(f"align=moments: the canonical renders empty in view {v} (all opacities ~0?)")
    uv_ref = (K @ (R @ X_ref + t))
    offset = c_r - uv_ref[:2] / uv_ref[2]
    z = z_ref * math.sqrt(A_r / A_t)
    uv = c_t - offset * (z_ref / z)
    return _backproject(uv, z, R, t, K)


def align_to_targets(gaussians: Gaussians, cameras: Cameras, masks: Tensor, views: list[int], backend: str = "auto",
                     passes: int = 3, warn: bool = True) -> tuple[Gaussians, Tensor]:
    """Translate ``gaussians`` to the centre the masks' moments imply (mean over ``views``).

    masks: [V, H, W] (one frame, every camera of ``cameras``). Returns (translated, offset [3]).
    A view whose mask is empty (the body out of that view) is left out, with a warning, where another
    view sees it; every view empty is an error. A view whose mask touches the image border is left
    out (its area and centroid are cut); when that leaves none, the asset keeps its depth and moves
    onto the visible part's centroid (`visible_centroid_offset`), with a warning (``warn=False``:
    none, the caller says it once)."""
    if not views:
        raise ValueError("align_to_targets: no views given")
    empty = [v for v in views if not float(masks[v].sum()) > 0]
    if empty and len(empty) < len(views):
        if warn:
            log.warning("align=moments: views %s left out, their target masks are empty in the aligned frame", empty)
        views = [v for v in views if v not in empty]
    cut = [v for v in views if _touches_border(masks[v], threshold=0.5)]
    kept = [v for v in views if v not in cut]
    if not kept:  # every mask cut by the frame: its area says nothing of depth, its centroid only of the visible part
        offset = visible_centroid_offset(gaussians, cameras, masks, views)
        if warn:
            log.warning("align=moments: the target mask touches the image border in every training view (%s), so its area "
                        "and centroid are cut; the asset keeps its depth and is moved onto the visible part's centroid", cut)
        return gaussians.translate(offset.to(gaussians.means)), offset.float()
    if cut and warn:
        log.warning("align=moments: views %s left out, their target masks touch the image border", cut)
    views = kept
    offset = torch.zeros(3, dtype=torch.float64)
    current = gaussians
    for k in range(max(1, int(passes))):
        X = current.means.detach().double().cpu().mean(0)
        estimates = [estimate_center(current, cameras, v, masks[v], backend=backend, in_place=k > 0) for v in views]
        step = torch.stack(estimates).mean(0) - X
        offset = offset + step
        current = current.translate(step.to(current.means))
    return current, offset.float()


def visible_centroid_offset(gaussians: Gaussians, cameras: Cameras, masks: Tensor, views: list[int]) -> Tensor:
    """Translation [3] putting the asset's centre on the ray through each view's mask centroid at
    its current depth (mean over the views): what a mask cut by the image border still says."""
    X = gaussians.means.detach().double().cpu().mean(0)
    points = []
    for v in views:
        R, t, K = _camera_frame(cameras, v)
        mass, c = mask_moments(masks[v].detach().cpu())
        if mass <= 0:
            continue
        z = float((R @ X + t)[2])
        points.append(_backproject(c, max(z, 1e-3), R, t, K))
    if not points:
        raise ValueError(f"the target masks of views {list(views)} are empty in the aligned frame; nothing to align to "
                         f"(use align=none)")
    return torch.stack(points).mean(0) - X
