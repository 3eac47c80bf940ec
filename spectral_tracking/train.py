"""`run(cfg) -> metrics`: one tracking run, from a composed Hydra config.

    data -> targets -> shifted start -> deformation -> module -> trainer -> evaluate -> outputs

train.py at the repository root is a thin `@hydra.main` shell around this function, so tests and
scripts call it directly with a composed config. The pieces live where a reader looks for them:
`spectral_tracking.data` (datasets), `module` / `objective` (the step and its loss),
`evaluation`, `outputs`, `run_folder` (finish / resume) and `loggers`.
"""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from spectral_tracking.callbacks import PeriodicEvalCallback, ProgressionCallback, progression_interval
from spectral_tracking.config import ConfigError, validate
from spectral_tracking.data.sequence import SequenceFormatError
from spectral_tracking.evaluation import evaluate
from spectral_tracking.atomic import CorruptCheckpointError, atomic_write_text
from spectral_tracking.loggers import build_logger, finish_wandb, new_wandb_id
from spectral_tracking.module import Targets, TrackingModule
from spectral_tracking.objective import LossSettings
from spectral_tracking.outputs import log_final, print_summary, save_result, write_outputs
from spectral_tracking.run_folder import RunLock, RunRefused, config_fingerprint, finished_result, read_meta, resume_checkpoint
from spectral_tracking.session import ElapsedTime, RunInterrupted, build_trainer, train
from spectral_tracking.sweep import record_refused

log = logging.getLogger(__name__)

# Errors whose message tells the user what to change (bad config, missing or malformed data):
# the entry point prints them without a stack trace.
UserError = (ConfigError, FileNotFoundError, SequenceFormatError, CorruptCheckpointError)


def build_sequence(ds: DictConfig, resolution: int):
    """The `Sequence` named by a ``dataset`` config group (generated and cached where synthetic)."""
    from spectral_tracking import data
    from spectral_tracking.gaussians import load_ply

    kind = ds.type
    if kind == "synthetic":
        if ds.preset not in data.PRESETS:
            raise ConfigError(f"dataset.preset: unknown preset {ds.preset!r}; presets: {sorted(data.PRESETS)}")
        folder = data.generate(preset=ds.preset, setting=ds.setting, frames=int(ds.frames), resolution=resolution,
                               seed=int(ds.get("seed", 0)), root=ds.root)
        return data.load_sequence(folder)
    if kind == "donut":
        asset = Path(ds.asset)
        if not asset.is_file():
            raise FileNotFoundError(f"dataset=donut: the donut asset is not at {asset} (set dataset.asset=PATH "
                                    f"to the 3DGS point_cloud.ply)")
        folder = data.generate(preset=f"donut_{ds.motion}", frames=int(ds.frames), resolution=resolution,
                               root=ds.root, donut_ply=asset)
        return data.load_sequence(folder)
    if kind == "consistent4d":
        canonical = Path(ds.canonical)
        asset = load_ply(canonical) if canonical.is_file() else None
        seq = data.load_consistent4d(ds.path, resolution=resolution, canonical=asset)
        if asset is None:
            raise FileNotFoundError(
                f"dataset=consistent4d: no canonical asset at {canonical}. Fit one from frame 0 first: "
                f"python experiments/fit_consistent4d.py --name {ds.name} (see README, 'Step one: a canonical asset')"
            )
        return seq
    if kind == "sc4d":
        return data.load_sc4d(ds.path, resolution=resolution)
    if kind == "gart":
        return data.load_gart(ds.path, canonical=ds.canonical, resolution=resolution)
    if kind == "folder":
        seq = _normalized(data.load_sequence(ds.path))
        if (seq.height, seq.width) != (resolution, resolution):
            raise ConfigError(
                f"dataset.path={ds.path}: frames are {seq.width}x{seq.height} but resolution={resolution}; "
                f"set resolution={seq.width} (the folder format is used at its own size)"
            )
        return seq
    raise ConfigError(f"dataset.type: unknown dataset type {kind!r} (synthetic, donut, consistent4d, sc4d, gart, folder)")


def _normalized(seq):
    """The sequence with its asset in the standard frame (bounding radius 0.5, cameras moved with it,
    so the images are unchanged): shift radii and 3D errors are in those units."""
    from dataclasses import replace

    from spectral_tracking.data import normalize_scene

    radius = seq.canonical.bounding_sphere()[1]
    if abs(radius - 0.5) < 1e-3:
        return seq
    canonical, cameras, record = normalize_scene(seq.canonical, seq.cameras)
    gt = seq.gt_means
    if gt is not None:
        gt = (gt - torch.tensor(record["center"], dtype=gt.dtype)) * record["scale"]
    log.info("normalised the asset of %s (bounding radius %.4g -> 0.5)", seq.meta.get("folder"), radius)
    return replace(seq, canonical=canonical, cameras=cameras, gt_means=gt, meta={**seq.meta, "normalization": record})


def build_targets(cfg: DictConfig):
    """Load / generate the sequence named by ``cfg.dataset``, pick the views, composite the frames
    over the run's background. Returns (sequence, targets)."""
    from spectral_tracking.data import select_views

    seq = build_sequence(cfg.dataset, int(cfg.resolution))
    if seq.canonical is None:
        raise FileNotFoundError(f"dataset={cfg.dataset.type}: the sequence has no canonical asset")
    seq = select_views(seq, int(cfg.views))
    bg = torch.tensor(list(cfg.background), dtype=torch.float32)
    every = (slice(None), slice(None))  # all views, all frames
    composite = seq.target(*every, background=bg)  # [V, T, H, W, 3]
    masks = seq.mask(*every)  # [V, T, H, W]
    targets = Targets(
        cameras=seq.cameras, images=composite, masks=masks, train_views=list(seq.train_views),
        eval_views=list(seq.eval_views), view_names=list(seq.view_names),
    )
    return seq, targets


def ground_truth_means(seq, num_canonical: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(canonical indices, true means [T, M, 3]) of the Gaussians whose truth is known, or None.

    Where the canonical is the true asset (clean setting, donut) every Gaussian is matched; in the
    realistic setting ``gt/canonical_index.npy`` maps each canonical Gaussian to its true index
    (-1 for the extra ones, which have no truth, and dropped true Gaussians are simply absent).
    """
    if seq.gt_means is None:
        return None
    gt_info = seq.meta.get("gt", {})
    if gt_info.get("canonical_index") is None:
        if seq.gt_means.shape[1] != num_canonical:
            raise SequenceFormatError(
                f"{seq.meta.get('folder', 'sequence')}: gt/ holds {seq.gt_means.shape[1]} Gaussians per frame but "
                f"the canonical has {num_canonical}, and meta.json gives no canonical_index"
            )
        return torch.arange(num_canonical), seq.gt_means
    index_file = Path(seq.meta["folder"]) / gt_info["canonical_index"]
    index = torch.from_numpy(np.load(index_file)).long()
    if index.shape != (num_canonical,):
        raise SequenceFormatError(f"{index_file}: expected {num_canonical} entries (one per canonical Gaussian), got {list(index.shape)}")
    known = torch.nonzero(index >= 0).squeeze(1)
    return known, seq.gt_means[:, index[known]]


def start_pose(cfg: DictConfig, seq, targets: Targets, device: torch.device):
    """The canonical shifted by ``cfg.shift`` in a direction drawn from ``cfg.seed``, and the run's
    record of it (``run_meta.json``)."""
    from spectral_tracking.data import initial_overlap, shift_canonical

    canonical, direction = shift_canonical(seq.canonical, float(cfg.shift), int(cfg.seed))
    overlap = initial_overlap(canonical.to(device), seq, backend=cfg.backend)
    run_meta = {
        "config_fingerprint": config_fingerprint(cfg),
        "shift_radius": float(cfg.shift), "shift_direction": [float(x) for x in direction],
        "initial_iou": overlap, "train_views": [targets.view_names[v] for v in targets.train_views],
        "eval_views": [targets.view_names[v] for v in targets.eval_views],
    }
    log.info("shift %.2f along %s, initial IoU per training view %s", cfg.shift, run_meta["shift_direction"], overlap)
    return canonical, run_meta


def build_module(cfg: DictConfig, canonical, targets: Targets) -> TrackingModule:
    """The deformation named by ``cfg.deform`` (wrapped with an appearance offset when
    ``finetune_appearance``) inside a `TrackingModule` with the ``cfg.loss`` objective."""
    from spectral_tracking.deform import build_deformation
    from spectral_tracking.deform.appearance import WithAppearance

    deformation = build_deformation(
        cfg.deform.name, canonical, targets.num_frames, num_control_points=int(cfg.num_control_points),
        check_finite=False,  # the module checks the loss every step instead (one check, not one per tensor)
        **OmegaConf.to_container(cfg.deform.kwargs, resolve=True),
    )
    lr = {"deform": float(cfg.deform.lr_init), "rigid": float(cfg.deform.rigid_lr), "radius": float(cfg.deform.radius_lr)}
    if cfg.finetune_appearance:
        deformation = WithAppearance(deformation)
        lr["appearance"] = float(cfg.appearance_lr)
    return TrackingModule(
        deformation=deformation, targets=targets, loss=LossSettings(**OmegaConf.to_container(cfg.loss, resolve=True)),
        max_steps=int(cfg.max_steps), lr=lr, lr_final_ratio=float(cfg.deform.lr_final) / float(cfg.deform.lr_init),
        background=torch.tensor(list(cfg.background)), seed=int(cfg.seed), backend=cfg.backend,
        progressive_frames=float(cfg.progressive_frames), arap_frames=int(cfg.arap_frames),
    )


def run(cfg: DictConfig) -> dict:
    """Train one tracking run and return its result ``{"metrics", "figures", "run", "config"}``
    (also written to ``out_dir/metrics.json``). A folder holding this run finished is returned as is
    (``skip_finished``); one holding an interrupted run resumes from its last checkpoint. The folder
    is locked for the whole run."""
    validate(cfg)
    out_dir = Path(cfg.out_dir)
    with RunLock(out_dir):
        finished = finished_result(cfg, config_fingerprint(cfg))
        return finished if finished is not None else _run(cfg, out_dir)


def _run(cfg: DictConfig, out_dir: Path) -> dict:
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")
    ckpt_path, resume_step = resume_checkpoint(cfg)

    seq, targets = build_targets(cfg)
    truth = ground_truth_means(seq, seq.canonical.num_gaussians)
    canonical, run_meta = start_pose(cfg, seq, targets, device)
    run_meta["wandb_id"] = read_meta(out_dir).get("wandb_id") or (new_wandb_id() if cfg.logger.name == "wandb" else None)
    atomic_write_text(out_dir / "run_meta.json", json.dumps(run_meta, indent=2))
    module = build_module(cfg, canonical, targets).to(device)
    with torch.no_grad():
        initial = module.render_views(canonical.to(device), [targets.train_views[0]]).rgb[0].cpu().clamp(0, 1)

    every = progression_interval(int(cfg.max_steps), int(cfg.eval.progression_frames))
    progression = ProgressionCallback(frame=targets.num_frames - 1, view=targets.train_views[0], every=every)
    clock = ElapsedTime()
    callbacks = [progression, clock]
    if int(cfg.eval.every_n_steps) > 0:
        callbacks.append(PeriodicEvalCallback(truth, int(cfg.eval.every_n_steps)))
    logger = build_logger(cfg, out_dir, resume_step=resume_step, wandb_id=run_meta["wandb_id"])
    try:
        trainer = build_trainer(cfg, logger, callbacks)
        train(trainer, module, ckpt_path, out_dir)
        module.to(device).eval()  # Lightning's teardown moves the module to the CPU
        metrics = evaluate(module, truth, lpips_net=None if cfg.eval.lpips == "none" else str(cfg.eval.lpips))
        metrics.update(initial_iou=float(np.mean(run_meta["initial_iou"])), steps=int(trainer.global_step),
                       seconds=round(clock.seconds, 1))
        figures = write_outputs(cfg, module, initial, progression, out_dir)
        log_final(trainer.loggers, metrics, figures, int(trainer.global_step))
        result = save_result(out_dir, metrics, figures, run_meta, OmegaConf.to_container(cfg, resolve=True))
    finally:
        finish_wandb(logger)
    print_summary(cfg, metrics, figures, out_dir)
    return result


def run_job(cfg: DictConfig) -> dict | None:
    """Entry used by train.py. In a multirun a failing job writes ``failed.txt`` in its own folder
    and the sweep goes on (`spectral_tracking.sweep.SweepSummary` reports it and fails the sweep at
    the end); a refused rerun into another run's finished folder leaves that folder untouched; an
    interrupted job stops the sweep. A single run raises."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return run(cfg)
    except RunInterrupted as e:
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            atomic_write_text(Path(cfg.out_dir) / "failed.txt", f"{e}\n")
        raise
    except Exception as e:
        if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
            raise
        out = Path(cfg.out_dir)
        if isinstance(e, RunRefused):  # another run's folder: record nothing in it
            log.error("job refused: %s", e)
            record_refused(Path(HydraConfig.get().sweep.dir), out, str(e))
            return None
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "failed.txt", traceback.format_exc())
        log.error("job failed, traceback in %s; the sweep goes on", out / "failed.txt")
        return None
