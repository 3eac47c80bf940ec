"""Step one of the workflow: fit a canonical 3DGS asset to posed RGBA images (``python fit.py ...``).

    posed images (cameras + RGB + masks) -> random init in the common view volume (or a point cloud)
    -> L1 + 0.2 D-SSIM with gsplat's DefaultStrategy or the Spectral-GS SpectralStrategy
    -> canonical.ply (standard 3DGS layout, what train.py consumes) + fit_views.png + metrics.json

Inputs (``load_frame``): one frame of a `Sequence` read through the data layer's registry
(``spectral_tracking.data.read_dataset``), so the cameras are the ones the tracker uses:
- a sequence folder in this project's format (``cameras.json``, ``frames/<view>/<t>.png``; one frame,
  default 0, of the training views), e.g. the synthetic benchmark;
- a Consistent4D video folder (``0.png .. 31.png``, one front view; frame 0);
- a NeRF-synthetic folder (``transforms_<split>.json``, see ``data/nerf_synthetic.py``).

The fit runs in the input's world frame (no normalisation) so the asset lines up with the cameras
the tracker will use. Each step renders one random training view (``views_per_step``), composites
target and render over the same background (a random colour per step by default, which makes the
alpha match the masks), and follows gsplat's loop order: backward, optimizer step, then the
strategy's ``step_post_backward`` (which reads ``meta["means2d"].grad``).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from spectral_tracking.cameras import Cameras
from spectral_tracking.data import DataError, Sequence, detect_type, read_dataset
from spectral_tracking.gaussians import SH_C0, Gaussians, save_ply
from spectral_tracking.strategy import SpectralStrategy, needle_stats

log = logging.getLogger(__name__)
PathLike = Union[str, Path]
DATA_TYPES = ("auto", "folder", "sequence", "nerf_synthetic", "consistent4d")
_TYPE_ALIASES = {"sequence": "folder"}  # fit.py's earlier name of the folder format
STRATEGIES = ("default", "spectral")


class FitInputError(DataError, ValueError):
    """The images or settings given to the fit cannot work; the message says what and where.

    Part of the data layer's `DataError` family (problems the data layer finds while reading are
    re-raised as this, with the same message)."""


# ----------------------------------------------------------------------------------------------
# One frame of a sequence
# ----------------------------------------------------------------------------------------------
def _pick_views(names: list[str], views, default: list[int], source: str) -> list[int]:
    if views is None:
        return list(default)
    out = []
    for v in views:
        if isinstance(v, int) and not isinstance(v, bool):
            if not 0 <= v < len(names):
                raise FitInputError(f"{source}: view index {v} out of range for {len(names)} views")
            out.append(v)
        elif str(v) in names:
            out.append(names.index(str(v)))
        else:
            raise FitInputError(f"{source}: no view named {v!r}; views are {names}")
    if not out:
        raise FitInputError(f"{source}: data.views is empty; no images to fit")
    return out


def pick_frame(seq: Sequence, frame: int = 0, views=None) -> Sequence:
    """Frame ``frame`` of ``seq`` for ``views`` (names or indices; default its training views) as a
    static one-frame `Sequence`: the posed images a canonical asset is fitted to."""
    source = str(seq.meta.get("folder", "sequence"))
    if not 0 <= frame < seq.num_frames:
        raise FitInputError(f"{source}: frame {frame} out of range (the sequence has {seq.num_frames} frames)")
    return seq.still(frame, _pick_views(seq.view_names, views, seq.train_views, source))


def source_of(data: Sequence) -> str:
    """Where a fit's images come from, for logs and metrics.json: the folder and frame (or split)."""
    folder = data.meta.get("folder", "sequence")
    if data.meta.get("dataset") == "nerf_synthetic":
        return f"{folder} ({data.meta.get('split', 'train')})"
    return f"{folder} (frame {data.meta.get('frame', 0)})"


def load_frame(path: PathLike, type: str = "auto", split: str = "train", frame: int = 0, views=None,
               resolution: int | None = None) -> Sequence:
    """One frame of a sequence folder, a Consistent4D video or a NeRF-synthetic scene, read through the
    data layer's registry, as a static `Sequence` with its longer side at ``resolution`` (None: as
    stored).

    type: auto (`detect_type`) or a registry name read from a folder (``folder`` (alias
    ``sequence``), ``nerf_synthetic``, ``consistent4d``). split: the NeRF-synthetic split
    (``transforms_<split>.json``). frame: which frame of a video. views: names or indices of the
    views to use (default: the sequence's training views; every NeRF-synthetic view).
    """
    if type not in DATA_TYPES:
        raise FitInputError(f"data.type must be one of {DATA_TYPES}, got {type!r}")
    try:
        kind = detect_type(path) if type == "auto" else _TYPE_ALIASES.get(type, type)
        seq = read_dataset({"type": kind, "path": str(path), "split": split}, None, require_canonical=False)
    except DataError as e:
        raise FitInputError(str(e)) from e
    return pick_frame(seq, int(frame), views).resized(resolution)


# ----------------------------------------------------------------------------------------------
# Initialisation
# ----------------------------------------------------------------------------------------------
def _forward_axes(cameras: Cameras) -> Tensor:
    """[V, 3] viewing directions (camera +z) in world coordinates."""
    return cameras.viewmats[:, 2, :3]


def view_volume(cameras: Cameras) -> tuple[Tensor, float]:
    """Centre [3] and radius of the region every camera looks at.

    The centre is the least-squares meeting point of the optical axes (for one camera, or parallel
    axes: the point on the axis closest to the world origin); the radius is the half-width of the
    narrowest view at that point, so a ball of that radius around the centre is seen by every camera.
    """
    C = cameras.centers.double()  # [V, 3]
    d = _forward_axes(cameras).double()
    d = d / d.norm(dim=-1, keepdim=True)
    P = torch.eye(3, dtype=torch.float64) - d[:, :, None] * d[:, None, :]  # [V, 3, 3] projectors
    A = P.sum(0)
    center = None
    if len(cameras) > 1 and torch.linalg.cond(A) < 1e6:
        center = torch.linalg.solve(A, (P @ C[..., None]).sum(0))[:, 0]
    if center is None or ((center - C) * d).sum(-1).min() <= 0:
        depth = (-(C[0]) * d[0]).sum()  # along the first camera's axis, closest to the origin
        if depth <= 0:
            depth = C[0].norm().clamp_min(1.0)
        center = C[0] + depth * d[0]
    depth = ((center - C) * d).sum(-1)  # [V]
    if (depth <= 0).any():
        raise FitInputError("the cameras have no common view volume (the meeting point of their axes is behind a camera)")
    K = cameras.Ks.double()
    half = torch.minimum(
        torch.minimum(K[:, 0, 2], cameras.width - K[:, 0, 2]) / K[:, 0, 0],
        torch.minimum(K[:, 1, 2], cameras.height - K[:, 1, 2]) / K[:, 1, 1],
    )  # tan of the narrowest half-angle [V]
    radius = float((depth * half / torch.sqrt(1 + half**2)).min())
    return center.float(), radius


def project_points(points: Tensor, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """Pixel coordinates [V, P, 2] and depths [V, P] of world points [P, 3]."""
    R, t = cameras.viewmats[:, :3, :3], cameras.viewmats[:, :3, 3]
    cam = torch.einsum("vij,pj->vpi", R, points) + t[:, None]
    z = cam[..., 2]
    uv = torch.einsum("vij,vpj->vpi", cameras.Ks, cam)[..., :2] / z.clamp_min(1e-8)[..., None]
    return uv, z


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


def knn_scale(points: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:
    """[P] mean distance of each point to its k nearest neighbours (gsplat's initial scale)."""
    k = min(k, points.shape[0] - 1)
    if k <= 0:
        return torch.full(points.shape[:1], 0.01, device=points.device)
    out = []
    for i in range(0, points.shape[0], chunk):
        d = torch.cdist(points[i:i + chunk], points)
        out.append(d.topk(k + 1, largest=False).values[:, 1:].mean(-1))
    return torch.cat(out)


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
    center, radius = view_volume(cams)
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


def init_from_ply(path: PathLike, sh_degree: int, init_opacity: float = 0.1) -> Gaussians:
    """Gaussians from a 3DGS PLY (kept as they are, SH degree adapted) or a plain point cloud PLY.

    A point cloud needs ``x y z`` and may have ``red green blue`` (0-255) colours; its Gaussians get
    kNN scales, identity rotations and opacity ``init_opacity``.
    """
    from plyfile import PlyData

    from spectral_tracking.gaussians import load_ply

    path = Path(path)
    if not path.is_file():
        raise FitInputError(f"{path}: init PLY does not exist (init is 'random' or a PLY path)")
    ply = PlyData.read(str(path))
    names = [p.name for p in ply["vertex"].properties] if "vertex" in [e.name for e in ply.elements] else []
    if {"opacity", "scale_0", "rot_0", "f_dc_0"} <= set(names):
        g = load_ply(path)
        k = (sh_degree + 1) ** 2
        sh = g.sh[:, :k] if g.sh.shape[1] >= k else torch.cat([g.sh, torch.zeros(len(g), k - g.sh.shape[1], 3)], 1)
        return Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, sh.contiguous())
    if not {"x", "y", "z"} <= set(names):
        raise FitInputError(f"{path}: a point cloud PLY needs vertex properties x, y, z (got {names})")
    v = ply["vertex"].data
    pts = torch.from_numpy(np.stack([np.asarray(v[c], np.float32) for c in "xyz"], -1))
    if len(pts) == 0:
        raise FitInputError(f"{path}: the point cloud has no points")
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


def scene_scale_of(cameras: Cameras) -> float:
    """gsplat's scene scale for object-centric captures: 1.1 x the largest camera-to-centre distance."""
    center, _ = view_volume(cameras)
    return 1.1 * float((cameras.centers - center).norm(dim=-1).max())


# ----------------------------------------------------------------------------------------------
# Parameters, loss, strategy
# ----------------------------------------------------------------------------------------------
def gaussians_to_params(g: Gaussians) -> torch.nn.ParameterDict:
    """gsplat-style trainable dict: means, quats, scales (log), opacities (logits), sh0 [N,1,3], shN [N,K,3]."""
    p = {
        "means": g.means, "quats": g.quats, "scales": g.log_scales, "opacities": g.opacity_logits,
        "sh0": g.sh[:, :1],
    }
    if g.sh.shape[1] > 1:
        p["shN"] = g.sh[:, 1:]
    return torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone().contiguous()) for k, v in p.items()})


def params_to_gaussians(params) -> Gaussians:
    sh = params["sh0"] if "shN" not in params else torch.cat([params["sh0"], params["shN"]], 1)
    return Gaussians(params["means"], params["quats"], params["scales"], params["opacities"], sh)


DEFAULT_LR = {"means": 1.6e-4, "quats": 1e-3, "scales": 5e-3, "opacities": 5e-2, "sh0": 2.5e-3, "shN": 2.5e-3 / 20}


def make_optimizers(params, lr: dict | None = None, scene_scale: float = 1.0) -> dict[str, torch.optim.Adam]:
    """One Adam per parameter (gsplat convention, needed by strategy.ops); the means' lr scales with the scene."""
    lr = {**DEFAULT_LR, **(lr or {})}
    return {
        k: torch.optim.Adam([p], lr=lr[k] * (scene_scale if k == "means" else 1.0), eps=1e-15)
        for k, p in params.items()
    }


def l1_dssim_loss(render: Tensor, target: Tensor, ssim_weight: float = 0.2) -> Tensor:
    """3DGS loss (1 - w) L1 + w (1 - SSIM) on [B, H, W, 3] images in [0, 1].

    SSIM is torchmetrics' (differentiable; Gaussian window 11, sigma 1.5, data range 1), the same
    definition ``spectral_tracking.metrics.ssim`` reports.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    l1 = (render - target).abs().mean()
    if ssim_weight == 0:
        return l1
    s = structural_similarity_index_measure(render.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2), data_range=1.0)
    return (1 - ssim_weight) * l1 + ssim_weight * (1 - s)


def pooled_psnr(a: Tensor, b: Tensor) -> float:
    """`spectral_tracking.metrics.psnr` of all pixels of ``a`` and ``b`` ([..., 3]) pooled into one image."""
    from spectral_tracking.metrics import psnr

    return float(psnr(a.reshape(1, -1, 1, 3), b.reshape(1, -1, 1, 3))[0])


def build_strategy(name: str, densify: dict | None = None, spectral: dict | None = None):
    """gsplat ``DefaultStrategy`` ("default") or ``SpectralStrategy`` ("spectral") from config dicts."""
    from gsplat.strategy import DefaultStrategy

    densify = dict(densify or {})
    if name == "default":
        return DefaultStrategy(**densify)
    if name == "spectral":
        return SpectralStrategy(**densify, **dict(spectral or {}))
    raise FitInputError(f"strategy must be one of {STRATEGIES}, got {name!r}")


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------
@dataclass
class FitSettings:
    steps: int = 3000
    views_per_step: int = 1
    background: Any = "random"  # "random" or [r, g, b]
    ssim_weight: float = 0.2
    lr: dict = field(default_factory=dict)
    means_lr_final_ratio: float = 0.01  # exponential decay of the means' lr to this fraction
    scene_scale: float | None = None  # None: from the cameras (scene_scale_of)
    max_gaussians: int = 0  # 0 = no cap; else prune the least opaque after a refine step
    log_every: int = 100
    backend: str = "auto"
    seed: int = 0
    progress: bool = True
    device: str = "cpu"


@dataclass
class FitResult:
    gaussians: Gaussians
    metrics: dict
    history: list[dict]
    renders: Tensor  # [V, H, W, 3] final renders over the evaluation background
    targets: Tensor  # [V, H, W, 3]


def _background(setting, gen: torch.Generator, device, dtype) -> Tensor:
    if isinstance(setting, str):
        if setting != "random":
            raise FitInputError(f"background must be 'random' or [r, g, b], got {setting!r}")
        return torch.rand(3, generator=gen).to(device, dtype)
    bg = torch.as_tensor(list(setting), dtype=dtype, device=device)
    if bg.shape != (3,):
        raise FitInputError(f"background must be 'random' or [r, g, b], got {setting!r}")
    return bg


@torch.no_grad()
def render_views(gaussians: Gaussians, cameras: Cameras, background: Tensor, backend: str = "auto", chunk: int = 4) -> Tensor:
    from spectral_tracking.render import render

    outs = [render(gaussians, cameras[i:i + chunk], background, backend).rgb for i in range(0, len(cameras), chunk)]
    return torch.cat(outs).clamp(0, 1)


def fit(data: Sequence, init: Gaussians, strategy, settings: FitSettings, log_path: Path | None = None) -> FitResult:
    """Optimise ``init`` to reproduce the one-frame sequence ``data`` (`pick_frame`); ``strategy`` is a
    gsplat DefaultStrategy or SpectralStrategy.

    Returns the fitted Gaussians (detached), final metrics (train PSNR over all views, Gaussian
    count, mean spectral entropy, needle fraction, seconds) and the per-``log_every`` history.
    """
    from spectral_tracking.render import render

    if settings.steps <= 0:
        raise FitInputError(f"steps must be positive, got {settings.steps}")
    device, dtype = torch.device(settings.device), torch.float32
    cameras = data.cameras.to(device)
    images, masks = data.image(slice(None), 0).to(device), data.mask(slice(None), 0).to(device)  # [V, H, W, 3], [V, H, W]

    def target(idx: Tensor, bg: Tensor) -> Tensor:  # the views idx composited over bg [3]: [B, H, W, 3]
        m = masks[idx][..., None]
        return images[idx] * m + bg * (1 - m)

    gen = torch.Generator().manual_seed(settings.seed)
    params = gaussians_to_params(init.to(device, dtype))
    scene_scale = settings.scene_scale if settings.scene_scale is not None else scene_scale_of(cameras)
    optimizers = make_optimizers(params, settings.lr, scene_scale)
    gamma = settings.means_lr_final_ratio ** (1.0 / settings.steps)
    sched = torch.optim.lr_scheduler.ExponentialLR(optimizers["means"], gamma=gamma)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=scene_scale)
    V = data.num_views
    bpv = max(1, min(settings.views_per_step, V))
    history, window, t0 = [], [], time.perf_counter()
    spectral_threshold = getattr(strategy, "spectral_threshold", 0.5)
    normalized = getattr(strategy, "normalized_entropy", False)

    bar = None
    if settings.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.steps, desc=f"fit {type(strategy).__name__}", dynamic_ncols=True, leave=False)
    log_file = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "w", newline="")
        writer = csv.DictWriter(log_file, ["step", "psnr", "loss", "num_gaussians", "mean_entropy", "needle_fraction", "seconds"])
        writer.writeheader()
    try:
        for step in range(settings.steps):
            idx = torch.randperm(V, generator=gen)[:bpv]
            bg = _background(settings.background, gen, device, dtype)
            out = render(params_to_gaussians(params), cameras[idx.tolist()] if bpv > 1 else cameras[int(idx[0])],
                         bg, settings.backend)
            tgt = target(idx.to(device), bg)
            strategy.step_pre_backward(params, optimizers, state, step, out.meta)
            loss = l1_dssim_loss(out.rgb, tgt, settings.ssim_weight)
            loss.backward()
            for opt in optimizers.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
            sched.step()
            strategy.step_post_backward(params, optimizers, state, step, out.meta, packed=False)
            if settings.max_gaussians and len(params["means"]) > settings.max_gaussians:
                _cap(params, optimizers, state, settings.max_gaussians)
            window.append((float(loss.detach()), pooled_psnr(out.rgb.detach().clamp(0, 1), tgt)))
            if bar is not None:
                bar.update(1)
            if (step + 1) % settings.log_every == 0 or step + 1 == settings.steps:
                stats = needle_stats(params["scales"], spectral_threshold, normalized)
                rec = {
                    "step": step + 1,
                    "psnr": float(np.mean([w[1] for w in window])),
                    "loss": float(np.mean([w[0] for w in window])),
                    "num_gaussians": len(params["means"]),
                    **stats,
                    "seconds": time.perf_counter() - t0,
                }
                window = []
                history.append(rec)
                if log_file is not None:
                    writer.writerow(rec)
                    log_file.flush()
                msg = (f"step {rec['step']:6d}  psnr {rec['psnr']:6.2f}  loss {rec['loss']:.4f}  gaussians {rec['num_gaussians']:7d}  "
                       f"entropy {rec['mean_entropy']:.3f}  needles {100 * rec['needle_fraction']:5.1f}%")
                if bar is not None:
                    bar.set_postfix(psnr=f"{rec['psnr']:.2f}", n=rec["num_gaussians"], H=f"{rec['mean_entropy']:.3f}")
                    bar.write(msg)
                else:
                    log.info(msg)
    finally:
        if bar is not None:
            bar.close()
        if log_file is not None:
            log_file.close()

    final = params_to_gaussians(params).detach()
    eval_bg = (torch.zeros(3, device=device, dtype=dtype) if isinstance(settings.background, str)
               else _background(settings.background, gen, device, dtype))
    renders = render_views(final, cameras, eval_bg, settings.backend).cpu()
    targets = target(torch.arange(V, device=device), eval_bg).cpu()
    per_view = [pooled_psnr(renders[i], targets[i]) for i in range(V)]
    # the (easy) background dominates whole-image PSNR of small objects; this one is on the object only
    on_object = (masks > 0.5).cpu()  # [V, H, W]
    obj = [pooled_psnr(renders[i][on_object[i]], targets[i][on_object[i]]) for i in range(V) if on_object[i].any()]
    psnr_object = float(np.mean(obj)) if obj else float("nan")
    stats = needle_stats(final.log_scales, spectral_threshold, normalized)
    metrics = {
        "psnr": float(np.mean(per_view)),
        "psnr_per_view": dict(zip(data.view_names, per_view)),
        "psnr_object": psnr_object,
        "num_gaussians": len(final),
        **stats,
        "needle_threshold": spectral_threshold,
        "entropy": "normalised H / ln 3" if normalized else "raw H (max ln 3)",
        "initial_gaussians": len(init),
        "steps": settings.steps,
        "seconds": time.perf_counter() - t0,
        "strategy": type(strategy).__name__,
        "spectral_splits": int(state.get("n_spectral_split", 0)),
    }
    return FitResult(final.to("cpu"), metrics, history, renders, targets)


@torch.no_grad()
def _cap(params, optimizers, state, max_gaussians: int) -> None:
    """Prune the least opaque Gaussians down to ``max_gaussians`` (optimizer and state kept aligned)."""
    from gsplat.strategy.ops import remove

    n = len(params["means"])
    order = torch.argsort(params["opacities"].flatten())
    mask = torch.zeros(n, dtype=torch.bool, device=order.device)
    mask[order[: n - max_gaussians]] = True
    remove(params, optimizers, state, mask)


def save_views_png(renders: Tensor, targets: Tensor, path: Path, names: list[str] | None = None, max_views: int = 8) -> Path:
    """A grid: targets on the top row, fitted renders below ([V, H, W, 3] each, at most ``max_views``)."""
    from PIL import Image

    v = min(len(renders), max_views)
    top = torch.cat(list(targets[:v]), dim=1)
    bottom = torch.cat(list(renders[:v]), dim=1)
    grid = torch.cat([top, bottom], dim=0).clamp(0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((grid.numpy() * 255 + 0.5).astype(np.uint8)).save(path)
    return path


# ----------------------------------------------------------------------------------------------
# Hydra entry
# ----------------------------------------------------------------------------------------------
def _out_dir(cfg) -> Path:
    if cfg.get("out"):
        return Path(str(cfg.out))
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception as e:  # not under @hydra.main
        raise FitInputError("fit: set out=<folder> (where canonical.ply and fit_views.png go); no Hydra run dir to default to") from e


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run(cfg) -> dict:
    """Fit a canonical asset as configured by ``conf/fit.yaml``; returns the final metrics.

    Writes ``canonical.ply``, ``fit_views.png``, ``fit_log.csv`` and ``metrics.json`` into ``out``.
    """
    from omegaconf import OmegaConf

    c = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg
    if c.get("strategy") not in STRATEGIES:
        raise FitInputError(f"strategy must be one of {STRATEGIES}, got {c.get('strategy')!r}")
    sh_degree = int(c.get("sh_degree", 0))
    if sh_degree not in (0, 1, 2, 3):
        raise FitInputError(f"sh_degree must be 0..3, got {sh_degree}")
    data_cfg = c.get("data") or {}
    if not data_cfg.get("path"):
        raise FitInputError("data.path is required: a sequence folder, a Consistent4D video folder or a NeRF-synthetic folder")
    out = _out_dir(cfg if not isinstance(cfg, dict) else OmegaConf.create(cfg))
    out.mkdir(parents=True, exist_ok=True)
    seed = int(c.get("seed", 0))
    torch.manual_seed(seed)
    device = _device(str(c.get("device", "auto")))

    data = load_frame(data_cfg["path"], data_cfg.get("type", "auto"), data_cfg.get("split", "train"),
                      int(data_cfg.get("frame", 0)), data_cfg.get("views"), c.get("resolution"))
    init = c.get("init", "random")
    if init == "random":
        g0 = init_random(data, int(c.get("num_points", 5000)), sh_degree, bool(c.get("init_use_masks", True)),
                         float(c.get("init_opacity", 0.1)), seed)
    else:
        g0 = init_from_ply(init, sh_degree, float(c.get("init_opacity", 0.1)))
    strategy = build_strategy(c["strategy"], c.get("densify"), c.get("spectral"))
    settings = FitSettings(
        steps=int(c.get("steps", 3000)), views_per_step=int(c.get("views_per_step", 1)),
        background=c.get("background", "random"), ssim_weight=float(c.get("ssim_weight", 0.2)), lr=dict(c.get("lr") or {}),
        scene_scale=c.get("scene_scale"), max_gaussians=int(c.get("max_gaussians", 0)), log_every=int(c.get("log_every", 100)),
        backend=str(c.get("backend", "auto")), seed=seed, progress=bool(c.get("progress", True)), device=str(device),
    )
    log.info("fitting %d views of %s (%dx%d) with %s from %d Gaussians, %d steps -> %s", data.num_views, source_of(data),
             data.cameras.width, data.cameras.height, c["strategy"], len(g0), settings.steps, out)
    result = fit(data, g0, strategy, settings, log_path=out / "fit_log.csv")
    ply = save_ply(result.gaussians, out / "canonical.ply")
    png = save_views_png(result.renders, result.targets, out / "fit_views.png", data.view_names)
    metrics = {**result.metrics, "source": source_of(data), "resolution": [data.cameras.width, data.cameras.height],
               "ply": str(ply), "views_png": str(png), "sh_degree": sh_degree}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    log.info("psnr %.2f dB, %d Gaussians, mean entropy %.3f, needles %.1f%% -> %s", metrics["psnr"], metrics["num_gaussians"],
             metrics["mean_entropy"], 100 * metrics["needle_fraction"], ply)
    return metrics
