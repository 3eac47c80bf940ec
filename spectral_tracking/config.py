"""Config helpers: OmegaConf resolvers and validation with messages that say what to change."""

from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf

from spectral_tracking.errors import ConfigError  # noqa: F401  (re-exported: raised by every layer)


def _frac(total, fraction) -> int:
    """``${frac:${max_steps},0.6}`` -> round(0.6 * max_steps): schedule steps that follow max_steps."""
    return int(round(float(total) * float(fraction)))


def _mul(a, b) -> float:
    """``${mul:${.lr_init},0.1}`` -> 0.1 * lr_init: a setting that follows another one."""
    return float(a) * float(b)


def _job_dirname(overrides: str, max_len: int = 200) -> str:
    """A folder name for one sweep job from its overrides: stable across reruns (so finished jobs
    are found and skipped), no path separators, long names shortened with a hash."""
    import hashlib

    name = overrides.replace("/", "_").replace("\\", "_") or "default"
    if len(name) > max_len:
        name = name[: max_len - 9] + "-" + hashlib.sha1(overrides.encode()).hexdigest()[:8]
    return name


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("frac"):
        OmegaConf.register_new_resolver("frac", _frac)
    if not OmegaConf.has_resolver("mul"):
        OmegaConf.register_new_resolver("mul", _mul)
    if not OmegaConf.has_resolver("job_dirname"):
        OmegaConf.register_new_resolver("job_dirname", _job_dirname)


register_resolvers()




def max_band_for_resolution(resolution: int) -> int:
    """Number of bands K a square image of ``resolution`` pixels supports (see losses/spectral/bands.py)."""
    from spectral_tracking.losses.spectral import max_num_bands

    return max_num_bands(resolution, resolution)


def _number(cfg: DictConfig, key: str, kind=float, low=None, high=None, low_open=False, what: str = ""):
    """``cfg[key]`` as ``kind`` (finite, within [low, high] or (low, high]), else a ConfigError naming the key."""
    value = OmegaConf.select(cfg, key)
    try:
        number = kind(value)
        ok = math.isfinite(number) and (kind is not int or float(value) == number)
    except (TypeError, ValueError):
        ok = False
    if ok and low is not None:
        ok = number > low if low_open else number >= low
    if ok and high is not None:
        ok = number <= high
    if not ok:
        bound = "" if low is None else (f" > {low}" if low_open else f" >= {low}")
        bound += "" if high is None else f" and <= {high}"
        raise ConfigError(f"{key} must be a finite {'integer' if kind is int else 'number'}{bound}{what}, got {value!r}")
    return number


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for settings that cannot run, before any data is loaded or file written.

    Every check names the key, what is expected and the value it got.
    """
    from spectral_tracking.data import check_dataset_config

    check_dataset_config(cfg.dataset)  # mandatory dataset keys (e.g. dataset.path) before anything else
    steps = _number(cfg, "max_steps", int, 1)
    resolution = _number(cfg, "resolution", int, 8, what=" (square images, pixels)")
    _number(cfg, "shift", float, 0, what=" (a radius in units of the normalised asset)")
    _number(cfg, "seed", int, 0)
    _number(cfg, "num_control_points", int, 1)
    _number(cfg, "arap_frames", int, 1, what=" (frames sampled per step for ARAP)")
    _number(cfg, "progressive_frames", float, 0, 1, what=" (a fraction of max_steps)")
    _number(cfg, "lr_decay", float, 0, 1, low_open=True, what=" (a fraction of max_steps)")
    _number(cfg, "deform.lr_init", float, 0, low_open=True)
    _number(cfg, "deform.lr_final", float, 0, low_open=True)
    background = cfg.background
    if not OmegaConf.is_list(background) or len(background) != 3:
        raise ConfigError(f"background must be an RGB list of 3 numbers in [0, 1], e.g. [1.0, 1.0, 1.0], got {background!r}")
    for i in range(3):
        _number(cfg, f"background.{i}", float, 0, 1)
    if cfg.dataset.type in ("synthetic", "donut"):
        if resolution < 16:
            raise ConfigError(f"resolution={resolution} is too small for dataset={cfg.dataset.type}: the generator needs at least 16")
        _number(cfg, "dataset.frames", int, 2, what=" (tracking needs motion)")
    loss = cfg.loss
    if loss.image not in ("spectral", "pixel"):
        raise ConfigError(f"loss.image must be spectral or pixel, got {loss.image!r}")
    if loss.norm not in ("l1", "l2"):
        raise ConfigError(f"loss.norm must be l1 or l2, got {loss.norm!r}")
    if loss.image == "spectral":
        from spectral_tracking.schedule import MODES

        if loss.expansion not in MODES:
            raise ConfigError(f"loss.expansion must be one of {', '.join(MODES)}, got {loss.expansion!r}")
        _number(cfg, "loss.num_bands", int, 1)
        apl = int(loss.add_pixel_loss)
        if apl > steps:
            raise ConfigError(
                f"loss.add_pixel_loss={apl} is after max_steps={steps}: the spatial phase would never start "
                f"(set loss.add_pixel_loss <= max_steps, e.g. loss.add_pixel_loss=${{frac:${{max_steps}},0.6}})"
            )
        if not 0 <= float(loss.warmup) < 1:
            raise ConfigError(f"loss.warmup is a fraction of max_steps in [0, 1), got {loss.warmup}")
        if float(loss.warmup) * steps > apl:
            raise ConfigError(
                f"loss.warmup={loss.warmup} ends at step {math.ceil(float(loss.warmup) * steps)}, after "
                f"loss.add_pixel_loss={apl}: the bands could never grow"
            )
        kmax = max_band_for_resolution(resolution)
        if int(loss.num_bands) > kmax:
            raise ConfigError(
                f"loss.num_bands={loss.num_bands} is not supported at resolution={cfg.resolution}: "
                f"at most {kmax} bands fit (band k needs frequencies up to 2^(k-1)); lower num_bands or raise resolution"
            )
    from spectral_tracking.align import METHODS as ALIGN_METHODS

    if cfg.align not in ALIGN_METHODS:
        raise ConfigError(f"align must be one of {', '.join(ALIGN_METHODS)}, got {cfg.align!r}")
    if int(cfg.views) not in (1, 2, 4):
        raise ConfigError(f"views must be 1, 2 or 4 (azimuths 0 / 0,180 / 0,90,180,270), got {cfg.views}")
    if cfg.deform.name not in ("mlp", "direct", "rigid", "rigid_mlp"):
        raise ConfigError(f"deform.name must be one of mlp, direct, rigid, rigid_mlp, got {cfg.deform.name!r}")
    if loss.spatial not in ("pixel", "lpips"):
        raise ConfigError(f"loss.spatial must be pixel or lpips, got {loss.spatial!r}")
    if loss.spatial == "lpips" and loss.lpips_net not in ("alex", "vgg"):
        raise ConfigError(f"loss.lpips_net must be alex or vgg (the LPIPS loss backbone), got {loss.lpips_net!r}")
    if cfg.eval.get("protocol", "ours") not in ("ours", "gsgd"):
        raise ConfigError(f"eval.protocol must be ours or gsgd, got {cfg.eval.protocol!r}")
    if cfg.eval.lpips not in ("alex", "vgg", "none"):
        raise ConfigError(f"eval.lpips must be alex, vgg or none, got {cfg.eval.lpips!r}")
    if cfg.logger.name not in ("csv", "wandb", "tensorboard", "none"):
        raise ConfigError(f"logger.name must be one of csv, wandb, tensorboard, none, got {cfg.logger.name!r}")
    _check_device(cfg)


def _check_device(cfg: DictConfig) -> None:
    import torch

    wants_cuda = cfg.trainer.accelerator in ("gpu", "cuda") or cfg.backend == "gsplat"
    if wants_cuda and not torch.cuda.is_available():
        key = "backend=gsplat" if cfg.backend == "gsplat" else f"trainer={cfg.trainer.accelerator}"
        raise ConfigError(f"{key} needs a CUDA GPU and torch sees none; use trainer=cpu backend=auto on this machine")
    if cfg.backend not in ("auto", "cpu", "torch", "gsplat"):
        raise ConfigError(f"backend must be one of auto, cpu, torch, gsplat, got {cfg.backend!r}")


PAPER_PRESETS = ("sc4d_mlp", "sc4d_direct", "gart")  # the rows of Table 6, in conf/experiment/


def experiment_schedule(name: str, mode: str | None = None):
    """The annealing schedule (`SpectralSchedule`) of ``conf/experiment/<name>.yaml``: the paper's
    Table 6 lives in those files only. ``mode`` overrides the file's ``loss.expansion``."""
    from spectral_tracking.paths import config_dir
    from spectral_tracking.schedule import SpectralSchedule

    conf = config_dir()
    path = conf / "experiment" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"unknown preset {name!r}: no {path}; presets: {known}")
    cfg = OmegaConf.load(path)
    defaults = OmegaConf.load(conf / "loss" / "spectral.yaml")
    loss = OmegaConf.merge(defaults, cfg.get("loss", {}))
    cfg.loss = loss
    return SpectralSchedule(
        max_steps=int(cfg.max_steps), num_bands=int(cfg.loss.num_bands), warmup=float(cfg.loss.warmup),
        add_pixel_loss=int(cfg.loss.add_pixel_loss), mode=mode or str(cfg.loss.expansion),
    )
