"""``run(cfg) -> metrics``: one fit as configured by ``conf/fit.yaml`` (fit.py at the repository root
is a thin ``@hydra.main`` shell around it)."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from spectral_tracking.fit.init import init_from_ply, init_random
from spectral_tracking.fit.inputs import FitInputError, load_frame, source_of
from spectral_tracking.fit.loop import DEFAULT_LR, STRATEGIES, FitSettings, build_strategy, fit
from spectral_tracking.gaussians import save_ply
from spectral_tracking.run.atomic import atomic_write_text

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


# Errors whose message says what to change (bad input, bad setting, bad PLY): fit.py prints them as
# one line and exits 2, without a trace. Anything else is a bug and keeps its trace.

# What a finished fit leaves in its folder; one of these in ``out`` means there is work to lose.
_FIT_OUTPUTS = ("canonical.ply", "metrics.json")


def _is_input_folder(folder: Path) -> str | None:
    """Why ``folder`` is a dataset's own folder (the reason, in words), or None."""
    if (folder / "cameras.json").is_file():
        return "it holds cameras.json"
    if any(folder.glob("transforms_*.json")):
        return "it holds transforms_*.json"
    if (folder / "frames").is_dir():
        return "it holds frames/"
    meta = folder / "meta.json"
    if meta.is_file():
        try:
            if "num_frames" in json.loads(meta.read_text()):
                return "its meta.json describes a sequence"
        except (ValueError, OSError, TypeError):
            pass
    if any(re.fullmatch(r"\d+\.png", q.name) for q in folder.glob("*.png")):
        return "it holds numbered frames 0.png, 1.png, ..."
    return None


def check_out_folder(out: Path, data_path: Path, overwrite: bool) -> None:
    """Refuse an ``out`` whose files a fit would destroy, before anything is read or written.

    A dataset's folder (the input itself or any sequence) is refused even with ``overwrite=true``: a
    sequence's canonical.ply is the asset the tracker is given and its ground truth is indexed by,
    never a fit output. So is a tracking run's folder (``run_meta.json``). A folder holding an earlier fit (canonical.ply, metrics.json) or a
    meta.json is refused unless ``overwrite=true``.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise FitInputError(f"out={out}: exists and is not a folder; choose another out=")
    if out.resolve() == data_path.resolve():
        raise FitInputError(f"out={out} is the folder being fitted (data.path); a fit never writes into its input: "
                            f"choose another out=, e.g. out={out}_fit")
    if (out / "run_meta.json").is_file():
        raise FitInputError(f"out={out} holds a tracking run (run_meta.json); a fit never writes into it, even with "
                            "overwrite=true: choose another out=")
    why = _is_input_folder(out)
    if why is not None:
        raise FitInputError(
            f"out={out} is a dataset folder ({why}); a sequence's canonical.ply is the asset the tracker is given, never "
            f"a fit output, even with overwrite=true: write to another folder (e.g. out={out}_fit) and copy canonical.ply "
            "in by hand if you mean to replace it")
    held = [name for name in (*_FIT_OUTPUTS, "meta.json") if (out / name).exists()]
    if held and not overwrite:
        raise FitInputError(f"out={out} already holds {' and '.join(held)}; refusing to overwrite: choose another out= "
                            "or add overwrite=true")


def _number(c: dict, key: str, kind=int, low=None, high=None, open_low=False, open_high=False, none_ok=False, prefix=""):
    """``c[key]`` as ``kind`` inside the bounds, or a one-line `FitInputError` naming the key
    (``prefix + key``)."""
    value = c.get(key)
    if value is None and none_ok:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and (kind is float or float(value).is_integer())
    ok = ok and math.isfinite(float(value))
    if ok and low is not None:
        ok = value > low if open_low else value >= low
    if ok and high is not None:
        ok = value < high if open_high else value <= high
    if not ok:
        lo = "" if low is None else f"{'>' if open_low else '>='} {low}"
        hi = "" if high is None else f"{'<' if open_high else '<='} {high}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        raise FitInputError(f"{prefix}{key} must be {'an integer' if kind is int else 'a number'}{' ' + bounds if bounds else ''}"
                            f"{' or null' if none_ok else ''}, got {value!r}")
    return kind(value)


def check_settings(c: dict) -> None:
    """Every setting of conf/fit.yaml that would crash the fit later, refused with the key named
    before any data is read or file written."""
    if c.get("strategy") not in STRATEGIES:
        raise FitInputError(f"strategy must be one of {STRATEGIES}, got {c.get('strategy')!r}")
    if c.get("sh_degree") not in (0, 1, 2, 3):
        raise FitInputError(f"sh_degree must be 0..3, got {c.get('sh_degree')!r}")
    _number(c, "steps", int, 1)
    _number(c, "resolution", int, 8, none_ok=True)
    _number(c, "views_per_step", int, 1)
    _number(c, "num_points", int, 1)
    _number(c, "init_opacity", float, 0, 1, open_low=True, open_high=True)
    _number(c, "ssim_weight", float, 0, 1)
    _number(c, "max_gaussians", int, 0)
    _number(c, "log_every", int, 1)
    _number(c, "seed", int, 0)
    _number(c, "scene_scale", float, 0, open_low=True, none_ok=True)
    lr = c.get("lr") or {}
    unknown = sorted(set(lr) - set(DEFAULT_LR))
    if unknown:
        raise FitInputError(f"lr: unknown parameter group(s) {unknown}; the groups are {sorted(DEFAULT_LR)}")
    for name in lr:
        _number(lr, name, float, 0, open_low=True, prefix="lr.")
    device, backend = str(c.get("device", "auto")), str(c.get("backend", "auto"))
    if device not in ("auto", "cpu", "cuda"):
        raise FitInputError(f"device must be auto, cpu or cuda, got {device!r}")
    if backend not in ("auto", "cpu", "torch", "gsplat"):
        raise FitInputError(f"backend must be auto, cpu, torch or gsplat, got {backend!r}")
    if (device == "cuda" or backend == "gsplat") and not torch.cuda.is_available():
        key = "device=cuda" if device == "cuda" else "backend=gsplat"
        raise FitInputError(f"{key} needs a CUDA GPU and none is available here; use device=auto backend=auto")
    if backend == "gsplat" and device == "cpu":
        raise FitInputError("backend=gsplat renders on CUDA only; with device=cpu use backend=auto, cpu or torch")
    data = c.get("data") or {}
    _number(data, "frame", int, 0, prefix="data.")


def _data_path(data_cfg: dict) -> Path:
    path = data_cfg.get("path")
    if path in (None, "", "???"):
        raise FitInputError("data.path is required (it is not set): add data.path=<folder> (a sequence folder, a "
                            "NeRF-synthetic folder, or a Consistent4D video with data.type=consistent4d)")
    return Path(str(path))


def run(cfg) -> dict:
    """Fit a canonical asset as configured by ``conf/fit.yaml``; returns the final metrics.

    Writes ``canonical.ply``, ``fit_views.png``, ``fit_log.csv`` and ``metrics.json`` (last, atomically)
    into ``out``, which is created only once the inputs have been read. An ``out`` holding an
    earlier fit is refused unless ``overwrite=true``; a dataset's folder always (`check_out_folder`).
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        c = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg
    except OmegaConfBaseException as e:  # e.g. steps=abc inside densify.refine_stop_iter's ${frac:...}
        msg = str(getattr(e, "msg", e)).strip().splitlines()[0]
        raise FitInputError(f"{getattr(e, 'full_key', None) or 'config'}: cannot be resolved ({msg})") from e
    check_settings(c)
    sh_degree = int(c.get("sh_degree", 0))
    data_cfg = c.get("data") or {}
    data_path = _data_path(data_cfg)
    out = _out_dir(cfg if not isinstance(cfg, dict) else OmegaConf.create(cfg))
    check_out_folder(out, data_path, bool(c.get("overwrite", False)))
    seed = int(c.get("seed", 0))
    torch.manual_seed(seed)
    device = _device(str(c.get("device", "auto")))

    data = load_frame(data_path, data_cfg.get("type", "auto"), data_cfg.get("split", "train"),
                      int(data_cfg.get("frame", 0)), data_cfg.get("views"), c.get("resolution"))
    init = c.get("init", "random")
    if init == "random":
        g0 = init_random(data, int(c.get("num_points", 5000)), sh_degree, bool(c.get("init_use_masks", True)),
                         float(c.get("init_opacity", 0.1)), seed)
    else:
        g0 = init_from_ply(init, sh_degree, float(c.get("init_opacity", 0.1)))
    strategy = build_strategy(c["strategy"], c.get("densify"), c.get("spectral_gs"))
    settings = FitSettings(
        steps=int(c.get("steps", 3000)), views_per_step=int(c.get("views_per_step", 1)),
        background=c.get("background", "random"), ssim_weight=float(c.get("ssim_weight", 0.2)), lr=dict(c.get("lr") or {}),
        scene_scale=c.get("scene_scale"), max_gaussians=int(c.get("max_gaussians", 0)), log_every=int(c.get("log_every", 100)),
        backend=str(c.get("backend", "auto")), seed=seed, progress=bool(c.get("progress", True)), device=str(device),
    )
    out.mkdir(parents=True, exist_ok=True)
    log.info("fitting %d views of %s (%dx%d) with %s from %d Gaussians, %d steps -> %s", data.num_views, source_of(data),
             data.cameras.width, data.cameras.height, c["strategy"], len(g0), settings.steps, out)
    result = fit(data, g0, strategy, settings, log_path=out / "fit_log.csv")
    ply = save_ply(result.gaussians, out / "canonical.ply")
    png = save_views_png(result.renders, result.targets, out / "fit_views.png", data.view_names)
    metrics = {**result.metrics, "source": source_of(data), "resolution": [data.cameras.width, data.cameras.height],
               "ply": str(ply), "views_png": str(png), "sh_degree": sh_degree}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    log.info("psnr %.2f dB, %d Gaussians, mean entropy %.3f, needles %.1f%% -> %s", metrics["psnr"], metrics["num_gaussians"],
             metrics["mean_entropy"], 100 * metrics["needle_fraction"], ply)
    return metrics
