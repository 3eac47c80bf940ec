"""What a finished run leaves in its folder besides checkpoints and logs, and the printed summary.

    final_strip.png   the last frame: rows training view / first novel view, columns initial | target | result
    progression.gif   the optimisation progression (paper Fig. 1)
    tracked.mp4       every frame, target above tracked, for every training and novel view
    orbit.mp4         the tracked asset at a few frames from a full orbit
    curves.png        loss terms, active bands alpha(t), train PSNR over the steps
    tracked.npz       the tracked sequence for the viewer and the API (`spectral_tracking.export`)
    frames/           with ``eval.export_ply``: frame_XXXX.ply in the frame of the asset the user gave
                      (and frame_XXXX.splat with ``eval.export_splat``)
    metrics.json      metrics, these paths, the run record and the resolved config

Videos need imageio-ffmpeg (a dependency); without it they are written as GIFs with one warning.
"""

from __future__ import annotations

import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from spectral_tracking.evaluation import final_frame
from spectral_tracking.run.atomic import atomic_write_text
from spectral_tracking.run.loggers import is_wandb

log = logging.getLogger(__name__)


@torch.no_grad()
def strip_rows(module, initial: torch.Tensor) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(label, initial, target, result) [H, W, 3] of the last frame in the first training view and,
    where there is one, the first novel view. ``initial``: the first training view's start render."""
    tg = module.targets
    t = tg.num_frames - 1
    result, gt = final_frame(module)
    rows = [(f"train {tg.view_names[tg.train_views[0]]}", initial, gt, result)]
    if tg.eval_views:
        v = tg.eval_views[0]
        start = module.render_views(module.deformation.canonical, [v]).rgb[0].cpu().clamp(0, 1)
        tracked = module.render_views(module.gaussians_at(t), [v]).rgb[0].cpu().clamp(0, 1)
        rows.append((f"novel {tg.view_names[v]}", start, tg.images[v, t], tracked))
    return rows


def write_outputs(cfg: DictConfig, module, initial: torch.Tensor, progression, out_dir: Path,
                  normalization: dict | None = None) -> dict[str, str]:
    """Write the run's figures, videos and exports (module docstring); returns name -> path.
    ``normalization``: the sequence's ``meta["normalization"]`` record, for the PLY export."""
    from spectral_tracking.export import export_asset_frames, export_asset_splats, save_tracked
    from spectral_tracking.figures import save_curves, save_strip
    from spectral_tracking.video import ORBIT_FPS, TRACKED_FPS, orbit_frames, tracked_frames, write_video

    tg = module.targets
    seconds: dict[str, float] = {}

    def timed(name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds[name] = time.perf_counter() - start
        return out

    title = (f"frame {tg.num_frames}/{tg.num_frames} | {cfg.dataset.type} deform={cfg.deform.name} "
             f"loss={cfg.loss.image}->{cfg.loss.spatial} shift={cfg.shift}")
    figures = {"strip": str(timed("strip", save_strip, strip_rows(module, initial), out_dir / "final_strip.png", title))}
    gt_last = (tg.images[tg.train_views[0], -1].numpy() * 255).astype(np.uint8)
    gif = timed("progression", progression.save_gif, out_dir / "progression.gif", module, target=gt_last)
    if gif:
        figures["progression"] = str(gif)
    # The videos are encoded (ffmpeg, its own process) on a background thread while this one renders
    # the next frames and writes the curves and tracked.npz.
    encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="video") if cfg.eval.get("videos", True) else None
    try:
        if encoder is not None:
            # each frame is rendered on the encoder's thread as the encoder takes it (one frame in memory)
            videos = {"video": encoder.submit(write_video, partial(tracked_frames, module),
                                              out_dir / "tracked.mp4", fps=TRACKED_FPS)}
            videos["orbit"] = encoder.submit(write_video, partial(orbit_frames, module),
                                             out_dir / "orbit.mp4", fps=ORBIT_FPS)
            figures.update(dict.fromkeys(videos))  # their place in the summary, filled below
        # where the spatial phase began in this run: the overlap switch moves it before loss.spectral_end
        curves = timed("curves", save_curves, progression.history, out_dir / "curves.png",
                       spectral_end=int(module.objective.spectral_end) if cfg.loss.image == "spectral" else None)
        if curves:
            figures["curves"] = str(curves)
        figures["tracked"] = str(timed("tracked", save_tracked, module, out_dir / "tracked.npz", normalization))
        if encoder is not None:
            start = time.perf_counter()
            for name, future in videos.items():
                figures[name] = str(future.result())
            seconds["video encoding (waited)"] = time.perf_counter() - start
    finally:
        if encoder is not None:
            encoder.shutdown(wait=True)
    if cfg.eval.export_ply:
        timed("ply", export_asset_frames, module.deformation, out_dir / "frames", normalization)
        figures["ply"] = str(out_dir / "frames")
    if cfg.eval.get("export_splat", False):
        timed("splat", export_asset_splats, module.deformation, out_dir / "frames", normalization)
        figures["splat"] = str(out_dir / "frames")
    log.info("outputs written in %.1f s (%s)", sum(seconds.values()),
             ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))
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
            for key in ("video", "orbit"):
                if key in figures:
                    path = figures[key]
                    lg.experiment.log({f"eval/{key}": wandb.Video(path, format=Path(path).suffix.lstrip("."))})


def save_result(out_dir: Path, metrics: dict, figures: dict, run_meta: dict, config: dict,
                frames: dict | None = None) -> dict:
    """Write ``metrics.json`` (atomically, strict JSON: a non-finite metric is written as null, with
    a warning naming it) with the resolved config that produced it, and ``frames`` (the metrics frame by
    frame, `evaluation.evaluate`'s) where given."""
    clean = {}
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            log.warning("metric %s is %s (not a number); metrics.json records null", key, value)
            value = None
        clean[key] = value
    result = {"metrics": clean, "figures": figures, "run": run_meta, "config": config}
    if frames:
        result["frames"] = {}
        for key, values in frames.items():
            bad = [t for t, x in enumerate(values) if isinstance(x, float) and not math.isfinite(x)]
            if bad:
                log.warning("frames' %s is not a number in frame(s) %s; metrics.json records null there", key, bad)
            result["frames"][key] = [None if t in bad else x for t, x in enumerate(values)]
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
