"""Config helpers: OmegaConf resolvers and validation with messages that say what to change."""

from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf


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


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what is expected."""


def max_band_for_resolution(resolution: int) -> int:
    """Number of bands K a square image of ``resolution`` pixels supports (see losses/spectral.py)."""
    from spectral_tracking.losses.spectral import max_num_bands

    return max_num_bands(resolution, resolution)


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for settings that cannot run, before any data is touched."""
    steps = int(cfg.max_steps)
    if steps <= 0:
        raise ConfigError(f"max_steps must be positive, got {steps}")
    loss = cfg.loss
    if loss.image == "spectral":
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
        kmax = max_band_for_resolution(int(cfg.resolution))
        if int(loss.num_bands) > kmax:
            raise ConfigError(
                f"loss.num_bands={loss.num_bands} is not supported at resolution={cfg.resolution}: "
                f"at most {kmax} bands fit (band k needs frequencies up to 2^(k-1)); lower num_bands or raise resolution"
            )
    if int(cfg.views) not in (1, 2, 4):
        raise ConfigError(f"views must be 1, 2 or 4 (azimuths 0 / 0,180 / 0,90,180,270), got {cfg.views}")
    if float(cfg.shift) < 0:
        raise ConfigError(f"shift is a radius and must be >= 0, got {cfg.shift}")
    if int(cfg.resolution) < 8:
        raise ConfigError(f"resolution must be at least 8 pixels, got {cfg.resolution}")
    if cfg.deform.name not in ("mlp", "direct", "rigid", "rigid_mlp"):
        raise ConfigError(f"deform.name must be one of mlp, direct, rigid, rigid_mlp, got {cfg.deform.name!r}")
    if loss.spatial not in ("pixel", "lpips"):
        raise ConfigError(f"loss.spatial must be pixel or lpips, got {loss.spatial!r}")
    if loss.spatial == "lpips" and loss.lpips_net not in ("alex", "vgg"):
        raise ConfigError(f"loss.lpips_net must be alex or vgg (the LPIPS loss backbone), got {loss.lpips_net!r}")
    if cfg.eval.lpips not in ("alex", "vgg", "none"):
        raise ConfigError(f"eval.lpips must be alex, vgg or none, got {cfg.eval.lpips!r}")
    if cfg.logger.name not in ("csv", "wandb", "tensorboard", "none"):
        raise ConfigError(f"logger.name must be one of csv, wandb, tensorboard, none, got {cfg.logger.name!r}")


PAPER_PRESETS = ("sc4d_mlp", "sc4d_direct", "gart")  # the rows of Table 6, in conf/experiment/


def experiment_schedule(name: str, mode: str | None = None):
    """The annealing schedule (`SpectralSchedule`) of ``conf/experiment/<name>.yaml``: the paper's
    Table 6 lives in those files only. ``mode`` overrides the file's ``loss.expansion``."""
    from spectral_tracking.paths import REPO
    from spectral_tracking.schedule import SpectralSchedule

    path = REPO / "conf" / "experiment" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"unknown preset {name!r}: no {path}; presets: {known}")
    cfg = OmegaConf.load(path)
    defaults = OmegaConf.load(REPO / "conf" / "loss" / "spectral.yaml")
    loss = OmegaConf.merge(defaults, cfg.get("loss", {}))
    cfg.loss = loss
    return SpectralSchedule(
        max_steps=int(cfg.max_steps), num_bands=int(cfg.loss.num_bands), warmup=float(cfg.loss.warmup),
        add_pixel_loss=int(cfg.loss.add_pixel_loss), mode=mode or str(cfg.loss.expansion),
    )
