"""``run(cfg) -> metrics``: one fit as configured by ``conf/fit.yaml`` (fit.py at the repository root
is a thin ``@hydra.main`` shell around it)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from spectral_tracking.fit.init import init_from_ply, init_random
from spectral_tracking.fit.inputs import FitInputError, load_frame, source_of
from spectral_tracking.fit.loop import STRATEGIES, FitSettings, build_strategy, fit
from spectral_tracking.gaussians import save_ply

log = logging.getLogger(__name__)


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
