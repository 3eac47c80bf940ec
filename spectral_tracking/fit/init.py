"""Where the fit starts: random Gaussians in the cameras' common view volume (carved by the masks),
or a PLY (a 3DGS asset kept as it is, or a point cloud)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from spectral_tracking.cameras import project_points, view_volume
from spectral_tracking.data import Sequence
from spectral_tracking.fit.inputs import FitInputError, PathLike, source_of
from spectral_tracking.gaussians import SH_C0, Gaussians
from spectral_tracking.knn import knn


def _sample_image(img: Tensor, uv: Tensor) -> Tensor:
    """Bilinear lookup of img [V, H, W, C] at pixel coords uv [V, P, 2] -> [V, P, C]."""
    V, H, W, _ = img.shape
    grid = torch.stack([uv[..., 0] / W * 2 - 1, uv[..., 1] / H * 2 - 1], -1)[:, :, None]  # [V, P, 1, 2]
    out = F.grid_sample(img.permute(0, 3, 1, 2), grid, align_corners=False, padding_mode="border")
    return out[..., 0].permute(0, 2, 1)


def _single_view_box(data: Sequence, center: Tensor) -> tuple[Tensor, float]:
    """One masked view: a cube around the mask's back-projection at the view-volume depth.

    Depth is unobservable from one view; the cube makes the object about as deep as it is wide
    (the mask's larger side), centred where the mask is, instead of filling the whole view cone.
    """
    cams, mask = data.cameras, data.mask(0, 0) > 0.5
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(xs) == 0:
        raise FitInputError(f"{source_of(data)}: the mask of view {data.view_names[0]!r} is empty; nothing to fit")
    K, vm = cams.Ks[0], cams.viewmats[0]
    depth = float((vm[:3, :3] @ center + vm[:3, 3])[2])
    u = torch.stack([(xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2]).float()
    half_px = float(max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)) / 2
    cam_pt = torch.stack([(u[0] - K[0, 2]) / K[0, 0] * depth, (u[1] - K[1, 2]) / K[1, 1] * depth, torch.tensor(depth)])
    world = vm[:3, :3].T @ (cam_pt - vm[:3, 3])
    return world.float(), half_px / float(K[0, 0]) * depth


def knn_scale(points: Tensor, k: int = 3) -> Tensor:
    """[P] mean distance of each point to its k nearest others (gsplat's initial scale); 0.01 for a
    lone point."""
    k = min(k, points.shape[0] - 1)
    if k <= 0:
        return torch.full(points.shape[:1], 0.01, device=points.device)
    return knn(points, points, k, exclude_self=True)[0].sqrt().mean(-1)


def init_random(data: Sequence, num_points: int, sh_degree: int, use_masks: bool = True, init_opacity: float = 0.1,
                seed: int = 0) -> Gaussians:
    """``num_points`` Gaussians uniformly in the common view volume (carved by the masks) of the
    views of a one-frame sequence (`pick_frame`).

    Points are kept when they project inside every image (and, with ``use_masks``, onto the object
    in every mask: the visual hull; a single view leaves a cone whose depth is the view volume's
    diameter). Colours start as the mean image colour under each point; scales from the 3 nearest
    neighbours; rotations identity.
    """
    if num_points <= 0:
        raise FitInputError(f"init: num_points must be positive, got {num_points}")
    cams = data.cameras
    images, masks = data.image(slice(None), 0), data.mask(slice(None), 0)  # [V, H, W, 3], [V, H, W]
    try:
        center, radius = view_volume(cams)
    except ValueError as e:
        raise FitInputError(f"{source_of(data)}: {e}") from e
    gen = torch.Generator().manual_seed(seed)
    carve = use_masks and bool((masks < 0.5).any())
    if carve and len(cams) == 1:
        center, radius = _single_view_box(data, center)
    kept, tries = [], 0
    while sum(len(k) for k in kept) < num_points:
        tries += 1
        if tries > 200:
            got = sum(len(k) for k in kept)
            raise FitInputError(
                f"init: found only {got} of {num_points} points inside every view{' and mask' if carve else ''} after "
                f"{tries - 1} rounds; check that the cameras look at the object (or set init_use_masks=false)")
        pts = center + (torch.rand(16384, 3, generator=gen) * 2 - 1) * radius
        uv, z = project_points(pts, cams)
        ok = (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < cams.width) & (uv[..., 1] >= 0) & (uv[..., 1] < cams.height)
        if carve:
            ok &= _sample_image(masks[..., None], uv)[..., 0] > 0.5
        kept.append(pts[ok.all(0)])
    pts = torch.cat(kept)[:num_points]
    uv, _ = project_points(pts, cams)
    rgb = _sample_image(images, uv).mean(0).clamp(0.02, 0.98)  # [P, 3]
    n = pts.shape[0]
    sh = torch.zeros(n, (sh_degree + 1) ** 2, 3)
    sh[:, 0] = (rgb - 0.5) / SH_C0
    scale = knn_scale(pts).clamp_min(1e-4 * radius)
    return Gaussians(
        means=pts,
        quats=torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(n, 4).clone(),
        log_scales=scale.log()[:, None].expand(n, 3).clone(),
        opacity_logits=torch.full((n,), math.log(init_opacity / (1 - init_opacity))),
        sh=sh,
    )


def _check_extent(means: Tensor, path: Path) -> None:
    """A start where every point is the same point cannot be fitted (each Gaussian gets the same
    gradient, and kNN scales are zero): say so, naming the PLY."""
    from spectral_tracking.gaussians import PLYFormatError

    if len(means) > 1 and bool((means == means[0]).all()):
        where = ", ".join(f"{float(c):.4g}" for c in means[0])
        raise PLYFormatError(f"{path}: all {len(means)} points sit at one position ({where}); an init PLY needs extent "
                             "(or use init=random)")


def init_from_ply(path: PathLike, sh_degree: int, init_opacity: float = 0.1) -> Gaussians:
    """Gaussians from a 3DGS PLY (kept as they are, SH degree adapted) or a plain point cloud PLY.

    A point cloud needs ``x y z`` and may have ``red green blue`` (0-255) colours; its Gaussians get
    kNN scales, identity rotations and opacity ``init_opacity``. A file that is neither raises
    `PLYFormatError` naming it.
    """
    from spectral_tracking.gaussians import PLYFormatError, load_ply, read_ply

    path = Path(path)
    if not path.is_file():
        raise FitInputError(f"{path}: init PLY does not exist (init is 'random' or a PLY path)")
    ply = read_ply(path)
    names = [p.name for p in ply["vertex"].properties] if "vertex" in [e.name for e in ply.elements] else []
    if {"opacity", "scale_0", "rot_0", "f_dc_0"} & set(names):  # a 3DGS asset (load_ply names what it lacks)
        g = load_ply(path)
        _check_extent(g.means, path)
        k = (sh_degree + 1) ** 2
        sh = g.sh[:, :k] if g.sh.shape[1] >= k else torch.cat([g.sh, torch.zeros(len(g), k - g.sh.shape[1], 3)], 1)
        return Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, sh.contiguous())
    if not {"x", "y", "z"} <= set(names):
        raise PLYFormatError(f"{path}: an init PLY is a 3DGS asset (x y z, f_dc_*, opacity, scale_*, rot_*) or a point cloud "
                             f"(x y z, optional red green blue); its vertex properties are {names}")
    v = ply["vertex"].data
    pts = torch.from_numpy(np.stack([np.asarray(v[c], np.float32) for c in "xyz"], -1))
    if len(pts) == 0:
        raise PLYFormatError(f"{path}: the point cloud has no points")
    if not torch.isfinite(pts).all():
        raise PLYFormatError(f"{path}: {int((~torch.isfinite(pts)).any(-1).sum())} points hold NaN or inf coordinates")
    _check_extent(pts, path)
    if {"red", "green", "blue"} <= set(names):
        rgb = torch.from_numpy(np.stack([np.asarray(v[c], np.float32) for c in ("red", "green", "blue")], -1)) / 255.0
    else:
        rgb = torch.full_like(pts, 0.5)
    n = len(pts)
    sh = torch.zeros(n, (sh_degree + 1) ** 2, 3)
    sh[:, 0] = (rgb.clamp(0.02, 0.98) - 0.5) / SH_C0
    scale = knn_scale(pts).clamp_min(1e-6)
    return Gaussians(pts, torch.tensor([1.0, 0, 0, 0]).expand(n, 4).clone(), scale.log()[:, None].expand(n, 3).clone(),
                     torch.full((n,), math.log(init_opacity / (1 - init_opacity))), sh)
