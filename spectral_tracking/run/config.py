"""The run config: Hydra's schema, its resolvers, composition and validation.

The settings, their defaults and their allowed values are `spectral_tracking.tracking.settings`;
this module registers them with Hydra's ConfigStore (`register_configs`: ``conf/train.yaml`` starts
from the schema ``run_schema``), composes configs for the scripts and the API (`compose`), and
checks a composed config before any data is loaded or file written (`validate`): every field's
``choices`` and range from its metadata, then the checks that relate two settings.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from spectral_tracking.errors import ConfigError
from spectral_tracking.tracking.settings import RunConfig


def _job_dirname(overrides: str, max_len: int = 200) -> str:
    """A folder name for one sweep job from its overrides: stable across reruns (so finished jobs
    are found and skipped), no path separators, long names shortened with a hash."""
    import hashlib

    name = overrides.replace("/", "_").replace("\\", "_") or "default"
    if len(name) > max_len:
        name = name[: max_len - 9] + "-" + hashlib.sha1(overrides.encode()).hexdigest()[:8]
    return name


def register_configs() -> None:
    """The sweep folders' resolver ``job_dirname`` and the schema ``run_schema`` (`RunConfig`; the
    settings' own resolvers ``frac`` and ``mul`` are registered by `spectral_tracking.tracking.settings`)."""
    from hydra.core.config_store import ConfigStore

    if not OmegaConf.has_resolver("job_dirname"):
        OmegaConf.register_new_resolver("job_dirname", _job_dirname)
    ConfigStore.instance().store(name="run_schema", node=RunConfig)


register_configs()


def compose(overrides: Sequence[str] = (), config_name: str = "train", schema: type = RunConfig,
            return_hydra_config: bool = False) -> DictConfig:
    """The config ``python train.py <overrides>`` would run (``out_dir`` among the overrides: there
    is no Hydra run dir here; ``return_hydra_config``: with Hydra's own node, ``hydra``). An override
    Hydra cannot apply (an unknown key, a value of the wrong type, an unknown option of a group) is a
    one-line `ConfigError` that names it and, for a misspelt key, the setting meant."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from spectral_tracking.runtime.paths import config_dir

    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(explain_override_error(e, overrides, schema)) from None


def _home(schema: type) -> str:
    """Where a schema's settings are written, for error messages."""
    return schema.__module__.replace(".", "/") + ".py"


def known_keys(schema: type = RunConfig, prefix: str = "") -> list[str]:
    """Every setting's dotted key (the typed sections; dataset and logger keys are each reader's own)."""
    out = []
    for f in dataclasses.fields(schema):
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(sub := f.default_factory()):
            out += known_keys(type(sub), f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


def did_you_mean(key: str, schema: type = RunConfig) -> str:
    import difflib

    keys = known_keys(schema)
    close = difflib.get_close_matches(key.lstrip("+~"), keys, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def explain_override_error(error: Exception, overrides: Sequence[str], schema: type = RunConfig) -> str:
    """One line for a Hydra composition error: which override, what is wrong, what to do."""
    import re

    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    m = re.search(r"Could not override '([^']+)'", text)
    if m:
        where = "; a dataset's keys: conf/dataset/" if schema is RunConfig else ""
        return f"{m.group(1)}: no such setting{did_you_mean(m.group(1), schema)} (every setting: {_home(schema)}{where})"
    m = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
    if m:
        options = re.findall(r"^\t(\S+)$", text, flags=re.M)
        return f"{m.group(1)}={m.group(2)}: no such option" + (f"; choose one of {', '.join(options)}" if options else "")
    m = re.search(r"Error merging override (\S+)", text)
    if m:
        cause = getattr(error, "__cause__", None)
        detail = str(cause).strip().splitlines()[0] if cause else first
        return f"{m.group(1)}: {detail}"
    return f"the settings {' '.join(overrides)} cannot be composed: {first}"


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------
def check_number(cfg: DictConfig, key: str, kind=float, low=None, high=None, low_open=False, what: str = ""):
    """``cfg[key]`` as ``kind`` (finite, within [low, high] or (low, high]), else a ConfigError naming the key."""
    value = OmegaConf.select(cfg, key)
    try:
        number = kind(value)
        ok = not isinstance(value, bool) and math.isfinite(number) and (kind is not int or float(value) == number)
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


def check_fields(cfg: DictConfig, schema: type = RunConfig, prefix: str = "") -> None:
    """Every field of ``schema`` (recursively) against its metadata (`tracking.settings.setting`)."""
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(sub := f.default_factory()):
            check_fields(cfg, type(sub), f"{key}.")
            continue
        md = f.metadata
        if not md:
            continue
        value = OmegaConf.select(cfg, key)
        if value is None and "Optional" in str(f.type):
            continue
        if "choices" in md:
            choices = md["choices"]() if callable(md["choices"]) else md["choices"]
            if value not in choices:
                raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}")
        if any(k in md for k in ("low", "high", "integer")):
            check_number(cfg, key, int if md.get("integer") else float, md.get("low"), md.get("high"),
                    md.get("low_open", False), md.get("what", ""))


def check_unknown_keys(cfg: DictConfig, schema: type = RunConfig) -> None:
    """A key added with ``+key=value`` that no setting has (a typo: ``+loss.swtich_iou=0.5``) is refused."""
    known = set(known_keys(schema))
    top = {k.split(".")[0] for k in known}
    for key in cfg:  # a top-level typo (+shfit=0.3) would otherwise be kept and ignored
        if key not in top:
            raise ConfigError(f"{key}: no such setting{did_you_mean(str(key), schema)} (every setting: {_home(schema)})")
    sections = {k.split(".")[0] for k in known if "." in k}
    for section in sorted(sections):
        for key in OmegaConf.select(cfg, section, default={}) or {}:
            full = f"{section}.{key}"
            if full not in known and not full.startswith("deform.kwargs"):
                raise ConfigError(f"{full}: no such setting{did_you_mean(full, schema)} (every setting: {_home(schema)})")


def max_band_for_resolution(resolution: int) -> int:
    """Number of bands K a square image of ``resolution`` pixels supports (see losses/spectral/bands.py)."""
    from spectral_tracking.losses.spectral import max_num_bands

    return max_num_bands(resolution, resolution)


def _check_bands(cfg: DictConfig, key: str, lower: str) -> None:
    """The band count at ``key`` (null: none) against what a square image of ``cfg.resolution`` supports;
    ``lower``: the name the message asks to lower."""
    value, kmax = OmegaConf.select(cfg, key), max_band_for_resolution(int(cfg.resolution))
    if value is not None and int(value) > kmax:
        raise ConfigError(f"{key}={value} is not supported at resolution={cfg.resolution}: at most {kmax} bands fit "
                          f"(band k needs frequencies up to 2^(k-1)); lower {lower} or raise resolution")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for settings that cannot run, before any data is loaded or file written.

    Every check names the key, what is expected and the value it got.
    """
    from spectral_tracking.data import check_dataset_config

    check_dataset_config(cfg.dataset)  # mandatory dataset keys (e.g. dataset.path) before anything else
    check_unknown_keys(cfg)
    check_fields(cfg)
    steps, resolution = int(cfg.max_steps), int(cfg.resolution)
    background = cfg.background
    if not OmegaConf.is_list(background) or len(background) != 3:
        raise ConfigError(f"background must be an RGB list of 3 numbers in [0, 1], e.g. [1.0, 1.0, 1.0], got {background!r}")
    for i in range(3):
        check_number(cfg, f"background.{i}", float, 0, 1)
    if cfg.dataset.type in ("synthetic", "donut"):
        if resolution < 16:
            raise ConfigError(f"resolution={resolution} is too small for dataset={cfg.dataset.type}: the generator needs at least 16")
        check_number(cfg, "dataset.frames", int, 2, what=" (tracking needs motion)")
    loss = cfg.loss
    if loss.image == "spectral":
        end = int(loss.spectral_end)
        if end > steps:
            raise ConfigError(
                f"loss.spectral_end={end} is after max_steps={steps}: the spatial phase would never start "
                f"(set loss.spectral_end <= max_steps, e.g. loss.spectral_end=${{frac:${{max_steps}},0.6}})"
            )
        if float(loss.warmup) >= 1:
            raise ConfigError(f"loss.warmup is a fraction of max_steps in [0, 1), got {loss.warmup}")
        if float(loss.warmup) * steps > end:
            raise ConfigError(
                f"loss.warmup={loss.warmup} ends at step {math.ceil(float(loss.warmup) * steps)}, after "
                f"loss.spectral_end={end}: the bands could never grow"
            )
        _check_bands(cfg, "loss.num_bands", lower="num_bands")
    if cfg.align == "search":  # the search compares the lowest bands of images at the run's resolution
        for key in ["search.bands"] + (["search.frame_bands"] if cfg.search.frames == "all" else []):
            _check_bands(cfg, key, lower=key)
    if cfg.align == "search" and cfg.search.frames == "all":
        kwargs = cfg.deform.get("kwargs") or {}
        if not (cfg.deform.name == "rigid" or (cfg.deform.name == "rigid_mlp" and kwargs.get("rigid_per_frame"))):
            raise ConfigError(f"search.frames=all starts a per-frame rigid part, which deform={cfg.deform.name} has "
                              "not: use deform=rigid_mlp_frames (rigid_mlp with one rigid motion per frame), or deform=rigid")
    if cfg.logger.name not in ("csv", "wandb", "tensorboard", "none"):
        raise ConfigError(f"logger.name must be one of csv, wandb, tensorboard, none, got {cfg.logger.name!r}")
    _check_device(cfg)


def _check_device(cfg: DictConfig) -> None:
    import torch

    wants_cuda = cfg.trainer.accelerator in ("gpu", "cuda") or cfg.backend == "gsplat"
    if wants_cuda and not torch.cuda.is_available():
        key = "backend=gsplat" if cfg.backend == "gsplat" else f"trainer={cfg.trainer.accelerator}"
        raise ConfigError(f"{key} needs a CUDA GPU and torch sees none; use trainer=cpu backend=auto on this machine")


PAPER_PRESETS = ("sc4d_mlp", "sc4d_direct", "gart")  # the rows of Table 6, in conf/experiment/


def experiment_schedule(name: str, mode: str | None = None):
    """The annealing schedule (`SpectralSchedule`) of ``experiment=<name>``: the paper's Table 6
    lives in ``conf/experiment/`` only. ``mode`` overrides its ``loss.expansion``."""
    from spectral_tracking.runtime.paths import config_dir
    from spectral_tracking.tracking.schedule import SpectralSchedule

    if not (config_dir() / "experiment" / f"{name}.yaml").is_file():
        known = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
        raise ValueError(f"unknown preset {name!r}: no experiment/{name}.yaml; presets: {known}")
    cfg = compose([f"experiment={name}", "out_dir=/unused"])
    return SpectralSchedule(
        max_steps=int(cfg.max_steps), num_bands=int(cfg.loss.num_bands), warmup=float(cfg.loss.warmup),
        spectral_end=int(cfg.loss.spectral_end), mode=mode or str(cfg.loss.expansion),
    )
