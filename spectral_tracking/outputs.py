"""What a finished run leaves in its folder besides checkpoints and logs: the final-frame strip,
the optimisation-progression GIF, optional per-frame PLYs, ``metrics.json``, and a printed summary."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from spectral_tracking.atomic import atomic_write_text
from spectral_tracking.evaluation import final_frame
from spectral_tracking.loggers import is_wandb

log = logging.getLogger(__name__)


def save_strip(module, initial: torch.Tensor, path: Path) -> Path:
    """Final frame, first training view: initial (shifted canonical) | ground truth | result."""
    from PIL import Image

    result, gt = final_frame(module)
    row = torch.cat([initial, gt, result], dim=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((row.numpy() * 255).astype(np.uint8)).save(path)
    return path


def write_outputs(cfg: DictConfig, module, initial: torch.Tensor, progression, out_dir: Path) -> dict[str, str]:
    """Write the run's figures (and PLYs with ``eval.export_ply``); returns name -> path."""
    figures = {"strip": str(save_strip(module, initial, out_dir / "final_strip.png"))}
    tg = module.targets
    gt_last = (tg.images[tg.train_views[0], -1].numpy() * 255).astype(np.uint8)
    gif = progression.save_gif(out_dir / "progression.gif", module, target=gt_last)
    if gif:
        figures["progression"] = str(gif)
    if cfg.eval.export_ply:
        from spectral_tracking.deform import export_frames

        export_frames(module.deformation, out_dir / "ply")
        figures["ply"] = str(out_dir / "ply")
    return figures


def log_final(loggers, metrics: dict, figures: dict, step: int) -> None:
    """The final metrics (``eval/*``) and, for wandb, the strip and the GIF."""
    for lg in loggers:
        lg.log_metrics({f"eval/{k}": v for k, v in metrics.items()}, step=step)
        if is_wandb(lg):
            import wandb

            lg.experiment.log({"eval/final_strip": wandb.Image(figures["strip"])})
            if "progression" in figures:
                lg.experiment.log({"eval/progression": wandb.Video(figures["progression"], format="gif")})


def save_result(out_dir: Path, metrics: dict, figures: dict, run_meta: dict, config: dict) -> dict:
    """Write ``metrics.json`` (atomically, strict JSON: a non-finite metric is written as null, with
    a warning naming it) with the resolved config that produced it."""
    clean = {}
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            log.warning("metric %s is %s (not a number); metrics.json records null", key, value)
            value = None
        clean[key] = value
    result = {"metrics": clean, "figures": figures, "run": run_meta, "config": config}
    atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=2, allow_nan=False))
    return result


def print_summary(cfg: DictConfig, metrics: dict, figures: dict, out_dir: Path) -> None:
    lines = [
        "=" * 72,
        f"spectral_tracking | dataset={cfg.dataset.type} deform={cfg.deform.name} loss={cfg.loss.image}"
        f"->{cfg.loss.spatial} shift={cfg.shift} views={cfg.views} steps={metrics.get('steps')}",
        "-" * 72,
    ]
    keys = sorted(k for k in metrics if isinstance(metrics[k], float))
    for i in range(0, len(keys), 3):
        lines.append("   ".join(f"{k:>16s} {metrics[k]:9.4f}" for k in keys[i:i + 3]))
    lines += ["-" * 72, f"output:  {out_dir}"]
    lines += [f"{k + ':':8s} {v}" for k, v in figures.items()]
    lines.append("=" * 72)
    print("\n".join(lines), flush=True)
