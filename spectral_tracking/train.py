"""`run(cfg) -> metrics`: one tracking run, from a composed Hydra config.

train.py at the repository root is a thin `@hydra.main` shell around this function, so tests and
scripts call it directly with a composed config.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from spectral_tracking.callbacks import (
    LossScheduleCallback, PeriodicEvalCallback, ProgressionCallback, progression_interval,
)
from spectral_tracking.config import ConfigError, validate
from spectral_tracking.data.sequence import SequenceFormatError
from spectral_tracking.module import LossSettings, Targets, TrackingModule

log = logging.getLogger(__name__)

# Errors whose message tells the user what to change (bad config, missing or malformed data):
# the entry point prints them without a stack trace.
UserError = (ConfigError, FileNotFoundError, SequenceFormatError)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
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


def evaluate(module: TrackingModule, truth: tuple[torch.Tensor, torch.Tensor] | None = None,
             lpips_net: str | None = "alex") -> dict:
    """Image metrics on training and novel views over every frame; 3D error where truth exists."""
    from spectral_tracking.metrics import gaussian_3d_error, image_metrics

    tg = module.targets
    out: dict = {}
    for split, views in (("train", tg.train_views), ("novel", tg.eval_views)):
        if not views:
            continue
        rgb, _ = module.render_all(views)
        pred = rgb.reshape(-1, *rgb.shape[2:])
        gt = tg.images[views].reshape(-1, *tg.images.shape[2:])
        m = image_metrics(pred.clamp(0, 1), gt, lpips_net=lpips_net)
        out.update({f"{split}_{k}": float(v) for k, v in m.items() if v is not None})
    if truth is not None:
        index, gt_means = truth
        tracked = module.tracked_means()[:, index]
        e = gaussian_3d_error(tracked, gt_means, radius=0.5)  # every dataset is normalised to radius 0.5
        out.update({f"3d_{k}": float(v) for k, v in e.items()})
    return out


def save_strip(module: TrackingModule, initial: torch.Tensor, path: Path) -> Path:
    """Final frame, first training view: initial (shifted canonical) | ground truth | result."""
    from PIL import Image

    t = module.targets.num_frames - 1
    v = module.targets.train_views[0]
    with torch.no_grad():
        result = module.render_views(module.gaussians_at(t), [v]).rgb[0].cpu()
    gt = module.targets.images[v, t]
    row = torch.cat([initial, gt, result.clamp(0, 1)], dim=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((row.numpy() * 255).astype(np.uint8)).save(path)
    return path


# --------------------------------------------------------------------------------------------
# loggers and trainer
# --------------------------------------------------------------------------------------------
def build_logger(cfg: DictConfig, out_dir: Path):
    name = cfg.logger.name
    if name == "none":
        return False
    if name == "csv":
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(save_dir=str(out_dir), name="csv", version="")
    if name == "tensorboard":
        from pytorch_lightning.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=str(out_dir), name="tensorboard", version="")
    if name == "wandb":
        from pytorch_lightning.loggers import WandbLogger

        run_name = f"{cfg.task_name}-{out_dir.name}"
        return WandbLogger(
            project=cfg.logger.project, entity=cfg.logger.entity, name=run_name, save_dir=str(out_dir),
            offline=bool(cfg.logger.offline), tags=list(cfg.logger.tags), id=None,
            config=OmegaConf.to_container(cfg, resolve=True),
        )
    raise ValueError(f"logger.name: unknown logger {name!r}")


def _finish_wandb(logger) -> None:
    if logger and type(logger).__name__ == "WandbLogger":
        import wandb

        if wandb.run is not None:
            wandb.finish()


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------
# Keys that do not change what a run computes: they may differ between a run and its resumption.
_NOT_IN_FINGERPRINT = ("logger", "trainer", "skip_finished", "ckpt_path", "out_dir", "task_name", "eval", "hydra")


def config_fingerprint(cfg: DictConfig) -> str:
    """Hash of the resolved settings that determine a run's result (see ``_NOT_IN_FINGERPRINT``)."""
    import hashlib

    container = OmegaConf.to_container(cfg, resolve=True)
    kept = {k: v for k, v in container.items() if k not in _NOT_IN_FINGERPRINT}
    return hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_same_run(out_dir: Path, fingerprint: str, what: str) -> None:
    meta = out_dir / "run_meta.json"
    if not meta.exists():
        return
    old = json.loads(meta.read_text()).get("config_fingerprint")
    if old is not None and old != fingerprint:
        raise ConfigError(
            f"{out_dir} holds {what} of a run with different settings (config fingerprint {old}, now "
            f"{fingerprint}); use another out_dir, or skip_finished=false to start this folder over"
        )


def run(cfg: DictConfig) -> dict:
    """Train one tracking run and return its metrics (also written to ``out_dir/metrics.json``).

    An ``out_dir`` that holds a finished run of the same settings is returned as is
    (``skip_finished``); one that holds an interrupted run resumes from ``checkpoints/last.ckpt``;
    with ``skip_finished=false`` the folder starts over (unless ``ckpt_path`` names a checkpoint).
    """
    validate(cfg)
    out_dir = Path(cfg.out_dir)
    metrics_path = out_dir / "metrics.json"
    fingerprint = config_fingerprint(cfg)
    if cfg.skip_finished:
        if metrics_path.exists():
            _check_same_run(out_dir, fingerprint, "the results")
            log.info("%s exists: this run is finished, skipping (skip_finished=false to run again)", metrics_path)
            return json.loads(metrics_path.read_text())
        _check_same_run(out_dir, fingerprint, "a checkpoint")
    else:
        for stale in (metrics_path, out_dir / "checkpoints"):
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "failed.txt").unlink(missing_ok=True)
    t_start = time.time()
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)

    seq, targets = build_targets(cfg)
    truth = ground_truth_means(seq, seq.canonical.num_gaussians)
    from spectral_tracking.data import initial_overlap, shift_canonical
    from spectral_tracking.deform import build_deformation

    canonical, direction = shift_canonical(seq.canonical, float(cfg.shift), int(cfg.seed))
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")
    overlap = initial_overlap(canonical.to(device), seq, backend=cfg.backend)
    run_meta = {
        "config_fingerprint": fingerprint,
        "shift_radius": float(cfg.shift), "shift_direction": [float(x) for x in direction],
        "initial_iou": overlap, "train_views": [targets.view_names[v] for v in targets.train_views],
        "eval_views": [targets.view_names[v] for v in targets.eval_views],
    }
    (out_dir / "run_meta.json").write_text(json.dumps(run_meta, indent=2))
    log.info("shift %.2f along %s, initial IoU per training view %s", cfg.shift, run_meta["shift_direction"], overlap)

    deformation = build_deformation(
        cfg.deform.name, canonical, targets.num_frames, num_control_points=int(cfg.num_control_points),
        check_finite=False,  # the module checks the loss every step instead (one check, not one per tensor)
        **OmegaConf.to_container(cfg.deform.kwargs, resolve=True),
    )
    lr_init = float(cfg.deform.lr_init)
    lr = {"deform": lr_init, "rigid": float(cfg.deform.rigid_lr), "radius": 0.1 * lr_init}
    loss = LossSettings(**OmegaConf.to_container(cfg.loss, resolve=True))
    module = TrackingModule(
        canonical=canonical, deformation=deformation, targets=targets, loss=loss, max_steps=int(cfg.max_steps),
        lr=lr, lr_final_ratio=float(cfg.deform.lr_final) / lr_init,
        background=torch.tensor(list(cfg.background)), seed=int(cfg.seed), backend=cfg.backend,
        progressive_frames=float(cfg.progressive_frames), arap_frames=int(cfg.arap_frames),
        finetune_appearance=bool(cfg.finetune_appearance), lpips_net=loss.lpips_net,
    ).to(device)
    with torch.no_grad():
        initial = module.render_views(canonical.to(device), [targets.train_views[0]]).rgb[0].cpu().clamp(0, 1)

    schedule_cb = LossScheduleCallback(
        loss.num_bands, loss.warmup, loss.switch_step, int(cfg.max_steps), loss.expansion
    )
    progression = ProgressionCallback(frame=targets.num_frames - 1, view=targets.train_views[0], every=progression_interval(int(cfg.max_steps), int(cfg.eval.progression_frames)))
    lpips_net = None if cfg.eval.lpips == "none" else str(cfg.eval.lpips)
    callbacks = [
        schedule_cb,
        progression,
        pl.callbacks.ModelCheckpoint(
            dirpath=str(out_dir / "checkpoints"), save_last=True, save_top_k=0,
            every_n_train_steps=max(1, int(cfg.max_steps) // 10),
        ),
    ]
    if int(cfg.eval.every_n_steps) > 0:
        callbacks.append(PeriodicEvalCallback(lambda m: evaluate(m, truth, lpips_net=None), int(cfg.eval.every_n_steps)))

    logger = build_logger(cfg, out_dir)
    ckpt_path = cfg.ckpt_path
    last = out_dir / "checkpoints" / "last.ckpt"
    if ckpt_path is None and last.exists():
        ckpt_path = str(last)
        log.info("resuming from %s", last)
    try:
        trainer = pl.Trainer(
            max_steps=int(cfg.max_steps), accelerator=cfg.trainer.accelerator, devices=1,
            precision=cfg.trainer.precision, logger=logger, callbacks=callbacks,
            enable_progress_bar=bool(cfg.trainer.enable_progress_bar), enable_model_summary=False,
            log_every_n_steps=int(cfg.trainer.log_every_n_steps), num_sanity_val_steps=0,
            limit_val_batches=0, default_root_dir=str(out_dir), deterministic=False,
        )
        trainer.fit(module, ckpt_path=ckpt_path)
        module.to(device).eval()  # Lightning's teardown moves the module to the CPU
        metrics = evaluate(module, truth, lpips_net=lpips_net)
        metrics["initial_iou"] = float(np.mean(overlap))
        metrics["steps"] = int(trainer.global_step)
        metrics["seconds"] = round(time.time() - t_start, 1)
        figures = {
            "strip": str(save_strip(module, initial, out_dir / "final_strip.png")),
        }
        gt_last = (targets.images[targets.train_views[0], -1].numpy() * 255).astype(np.uint8)
        gif = progression.save_gif(out_dir / "progression.gif", target=gt_last)
        if gif:
            figures["progression"] = str(gif)
        if cfg.eval.export_ply:
            from spectral_tracking.deform import export_frames

            export_frames(module.deformation, out_dir / "ply")
            figures["ply"] = str(out_dir / "ply")
        for lg in trainer.loggers:
            lg.log_metrics({f"eval/{k}": v for k, v in metrics.items()}, step=int(trainer.global_step))
            if type(lg).__name__ == "WandbLogger":
                import wandb

                lg.experiment.log({"eval/final_strip": wandb.Image(figures["strip"])})
                if gif:
                    lg.experiment.log({"eval/progression": wandb.Video(str(gif), format="gif")})
        metrics_path.write_text(json.dumps({"metrics": metrics, "figures": figures, "run": run_meta}, indent=2))
    finally:
        _finish_wandb(logger)
    print_summary(cfg, metrics, figures, out_dir)
    return {"metrics": metrics, "figures": figures, "run": run_meta}


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


def run_job(cfg: DictConfig) -> dict | None:
    """Entry used by train.py: in a multirun a failing job writes ``failed.txt`` in its own folder
    and the sweep goes on; a single run raises."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return run(cfg)
    except Exception:
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            out = Path(cfg.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / "failed.txt").write_text(traceback.format_exc())
            log.error("job failed, traceback in %s; the sweep goes on", out / "failed.txt")
            return None
        raise
