"""The optimisation: render a random training view, L1 + D-SSIM against the target composited over
the same background, backward, Adam step, then the densification strategy (gsplat's loop order:
``step_post_backward`` reads ``meta["means2d"].grad``)."""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spectral_tracking.cameras import Cameras, scene_scale
from spectral_tracking.data import Sequence
from spectral_tracking.fit.inputs import FitInputError
from spectral_tracking.fit.settings import DEFAULT_LR, STRATEGIES, FitConfig
from spectral_tracking.fit.strategy import SpectralGSStrategy, needle_stats
from spectral_tracking.gaussians import Gaussians
from spectral_tracking.metrics import psnr

log = logging.getLogger(__name__)


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
    return float(psnr(a.reshape(1, -1, 1, 3), b.reshape(1, -1, 1, 3))[0])


def build_strategy(name: str, densify: dict | None = None, spectral: dict | None = None):
    """gsplat ``DefaultStrategy`` ("default") or ``SpectralGSStrategy`` ("spectral_gs") from config dicts."""
    from gsplat.strategy import DefaultStrategy

    densify = dict(densify or {})
    if name == "default":
        return DefaultStrategy(**densify)
    if name == "spectral_gs":
        return SpectralGSStrategy(**densify, **dict(spectral or {}))
    raise FitInputError(f"strategy must be one of {STRATEGIES}, got {name!r}")


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------
@dataclass
class FitSettings:
    """What the loop needs of a fit's settings; the defaults are `FitConfig`'s (the one home of them)."""

    steps: int = FitConfig.steps
    views_per_step: int = FitConfig.views_per_step
    background: Any = FitConfig.background  # "random" or [r, g, b]
    ssim_weight: float = FitConfig.ssim_weight
    lr: dict = field(default_factory=dict)
    means_lr_final_ratio: float = FitConfig.means_lr_final_ratio  # exponential decay of the means' lr to this fraction
    scene_scale: float | None = FitConfig.scene_scale  # None: from the cameras (spectral_tracking.cameras.scene_scale)
    max_gaussians: int = FitConfig.max_gaussians  # 0 = no cap; else prune the least opaque after a refine step
    log_every: int = FitConfig.log_every
    backend: str = FitConfig.backend
    seed: int = FitConfig.seed
    progress: bool = FitConfig.progress
    device: str = "cpu"  # a torch device (the config's "auto" is resolved by fit.run)


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
    gsplat DefaultStrategy or SpectralGSStrategy.

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
    scale = settings.scene_scale if settings.scene_scale is not None else scene_scale(cameras)
    optimizers = make_optimizers(params, settings.lr, scale)
    gamma = settings.means_lr_final_ratio ** (1.0 / settings.steps)
    sched = torch.optim.lr_scheduler.ExponentialLR(optimizers["means"], gamma=gamma)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=scale)
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
