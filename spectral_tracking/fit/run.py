"""``run(cfg) -> metrics``: one fit as configured by ``conf/fit.yaml`` (fit.py at the repository root
is a thin ``@hydra.main`` shell around it)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from spectral_tracking.fit.init import init_from_ply, init_random
from spectral_tracking.fit.inputs import FitInputError, load_frame, source_of
from spectral_tracking.fit.loop import FitSettings, build_strategy, fit
from spectral_tracking.fit.settings import DEFAULT_LR, FitConfig
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


def check_settings(c: dict) -> None:
    """Every setting of conf/fit.yaml that would crash the fit later, refused with the key named
    before any data is read or file written: each field against its metadata in `FitConfig`, then
    the checks that relate settings (the lr groups, the device for a renderer)."""
    from omegaconf import OmegaConf

    from spectral_tracking.errors import ConfigError
    from spectral_tracking.run.config import check_fields, check_number, check_unknown_keys

    cfg = OmegaConf.create(c)
    try:
        check_unknown_keys(cfg, FitConfig)
        check_fields(cfg, FitConfig)
        for name in c.get("lr") or {}:
            if name not in DEFAULT_LR:
                raise ConfigError(f"lr.{name}: no such parameter group; the groups are {', '.join(sorted(DEFAULT_LR))}")
            check_number(cfg, f"lr.{name}", float, 0, low_open=True)
        check_number(cfg, "densify.refine_stop_iter", int, 0)
    except ConfigError as e:
        raise FitInputError(str(e)) from None
    device, backend = c["device"], c["backend"]
    if (device == "cuda" or backend == "gsplat") and not torch.cuda.is_available():
        key = "device=cuda" if device == "cuda" else "backend=gsplat"
        raise FitInputError(f"{key} needs a CUDA GPU and none is available here; use device=auto backend=auto")
    if backend == "gsplat" and device == "cpu":
        raise FitInputError("backend=gsplat renders on CUDA only; with device=cpu use backend=auto, cpu or torch")


def _data_path(data_cfg: dict) -> Path:
    path = data_cfg.get("path")
    if path in (None, "", "???"):
        raise FitInputError("data.path is required (it is not set): add data.path=<folder> (a sequence folder, a "
                            "NeRF-synthetic folder, or a Consistent4D video with data.type=consistent4d)")
    return Path(str(path))


def run(cfg) -> dict:
    """Fit a canonical asset as configured by ``conf/fit.yaml``; returns the final metrics.

    Writes ``canonical.ply``, ``fit_views.png``, ``fit_log.csv`` and ``metrics.json`` (last, atomically)
    into ``out``, with ``fit.log``; an ``out`` made for a fit refused on its data is removed again. An
    ``out`` holding an earlier fit is refused unless ``overwrite=true``; a dataset's folder always
    (`check_out_folder`). ``metrics.json`` holds the resolved settings (``config``).
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = OmegaConf.merge(OmegaConf.structured(FitConfig), cfg)  # a dict from Python gets the defaults too
        c = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:  # e.g. steps=abc inside densify.refine_stop_iter's ${frac:...}
        msg = str(getattr(e, "msg", e)).strip().splitlines()[0]
        raise FitInputError(f"{getattr(e, 'full_key', None) or 'config'}: cannot be resolved ({msg})") from e
    check_settings(c)
    data_path = _data_path(c["data"])
    out = _out_dir(cfg)
    check_out_folder(out, data_path, bool(c["overwrite"]))
    from spectral_tracking.runtime import paths
    from spectral_tracking.runtime.logfile import file_log

    paths.claim_run_dir(out, "out")  # (already made by fit.py's precheck; called from Python, made here)
    fresh = paths.made_for_this_run(out)
    try:
        with file_log(out / "fit.log"):
            return _fit(c, data_path, out)
    except BaseException:
        paths.remove_if_untouched(out, fresh)  # a fit refused on its data leaves nothing behind
        raise


def _fit(c: dict, data_path: Path, out: Path) -> dict:
    sh_degree = int(c["sh_degree"])
    data_cfg = c["data"]
    seed = int(c["seed"])
    torch.manual_seed(seed)
    device = _device(str(c["device"]))

    data = load_frame(data_path, data_cfg["type"], data_cfg["split"], int(data_cfg["frame"]), data_cfg["views"], c["resolution"])
    if c["init"] == "random":
        g0 = init_random(data, int(c["num_points"]), sh_degree, bool(c["init_use_masks"]), float(c["init_opacity"]), seed)
    else:
        g0 = init_from_ply(c["init"], sh_degree, float(c["init_opacity"]))
    strategy = build_strategy(c["strategy"], c["densify"], c["spectral_gs"])
    settings = FitSettings(
        steps=int(c["steps"]), views_per_step=int(c["views_per_step"]), background=c["background"],
        ssim_weight=float(c["ssim_weight"]), lr=dict(c["lr"] or {}), means_lr_final_ratio=float(c["means_lr_final_ratio"]),
        scene_scale=c["scene_scale"], max_gaussians=int(c["max_gaussians"]), log_every=int(c["log_every"]),
        backend=str(c["backend"]), seed=seed, progress=bool(c["progress"]), device=str(device),
    )
    log.info("fitting %d views of %s (%dx%d) with %s from %d Gaussians, %d steps -> %s", data.num_views, source_of(data),
             data.cameras.width, data.cameras.height, c["strategy"], len(g0), settings.steps, out)
    result = fit(data, g0, strategy, settings, log_path=out / "fit_log.csv")
    ply = save_ply(result.gaussians, out / "canonical.ply")
    png = save_views_png(result.renders, result.targets, out / "fit_views.png", data.view_names)
    metrics = {**result.metrics, "source": source_of(data), "resolution": [data.cameras.width, data.cameras.height],
               "ply": str(ply), "views_png": str(png), "sh_degree": sh_degree, "config": c}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    log.info("psnr %.2f dB, %d Gaussians, mean entropy %.3f, needles %.1f%% -> %s", metrics["psnr"], metrics["num_gaussians"],
             metrics["mean_entropy"], 100 * metrics["needle_fraction"], ply)
    return metrics
