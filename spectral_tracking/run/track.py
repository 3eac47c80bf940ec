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
import time
import traceback
from pathlib import Path

from spectral_tracking.runtime import paths as runtime_paths
from spectral_tracking.runtime import preload, threads

threads.limit_spinning()  # reaches this process only if this module brings in torch (scripts calling run())
preload.stack()  # torch and Lightning imported with the garbage collector paused (2.8 -> 2.0 s here)

import numpy as np  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch
from omegaconf import DictConfig, OmegaConf

from spectral_tracking.errors import ConfigError, RunInterrupted, RunRefused
from spectral_tracking.evaluation import evaluate
from spectral_tracking.run.atomic import atomic_write_text
from spectral_tracking.run.averaging import WeightAverage
from spectral_tracking.run.callbacks import PeriodicEvalCallback, ProgressionCallback, progression_interval
from spectral_tracking.run.config import validate
from spectral_tracking.run.folder import (RunLock, config_fingerprint, config_fingerprints, finished_result, read_meta,
                                         resume_checkpoint)
from spectral_tracking.run.loggers import build_logger, close_logger, new_wandb_id
from spectral_tracking.run.outputs import log_final, print_summary, save_result, write_outputs
from spectral_tracking.run.session import ElapsedTime, build_trainer, train
from spectral_tracking.run.sweep import current_sweep_dir, record_refused
from spectral_tracking.tracking.module import Targets, TrackingModule
from spectral_tracking.tracking.settings import LossSettings

log = logging.getLogger(__name__)



def build_targets(cfg: DictConfig, sequence=None):
    """The sequence named by ``cfg.dataset`` (through the data registry: normalised, with its ground
    truth; ``sequence`` itself for ``dataset=memory``), its training views chosen by ``cfg.views``,
    and the targets composited over the run's background. Returns (sequence, targets)."""
    from spectral_tracking.data import load_dataset, select_views

    seq = select_views(load_dataset(cfg.dataset, int(cfg.resolution), sequence), int(cfg.views))
    if not bool((seq.masks[seq.train_views] >= 128).any()):
        from spectral_tracking.errors import SequenceFormatError

        where = seq.meta.get("folder") or cfg.dataset.get("path") or f"dataset={cfg.dataset.type}"
        raise SequenceFormatError(
            f"{where}: every training view's mask is empty in every frame (views {[seq.view_names[v] for v in seq.train_views]}): "
            "there is nothing to track; check the masks (or the alpha channel of RGBA frames) and the training views")
    return seq, Targets.from_sequence(seq, torch.tensor(list(cfg.background), dtype=torch.float32))


def start_pose(cfg: DictConfig, seq, targets: Targets, device: torch.device):
    """The canonical displaced as ``cfg.shift`` / ``rotation`` / ``scale`` say (the benchmark's
    start), then placed by the start stage ``cfg.align``, and the run's record of it
    (``run_meta.json``)."""
    from spectral_tracking.tracking.start import displace, initial_overlap, place

    canonical, record = displace(seq.canonical, float(cfg.shift), int(cfg.seed), rotation=float(cfg.rotation),
                                 axis=str(cfg.rotation_axis), scale=float(cfg.scale))
    overlap = initial_overlap(canonical.to(device), seq, backend=cfg.backend)
    run_meta = {
        "config_fingerprint": config_fingerprint(cfg), **record,
        "initial_iou": overlap, "train_views": [targets.view_names[v] for v in targets.train_views],
        "eval_views": [targets.view_names[v] for v in targets.eval_views],
    }
    log.info("start: shift %.2f along (%s), rotation %g deg, scale %g; initial IoU per training view %s",
             cfg.shift, ", ".join(f"{x:.2f}" for x in run_meta["shift_direction"]), cfg.rotation, cfg.scale,
             [round(x, 3) for x in overlap])
    if cfg.align != "none":
        placing = time.perf_counter()
        try:
            canonical, placed, trajectory = place(
                str(cfg.align), canonical.to(device), targets, backend=cfg.backend, settings=cfg.search,
                background=torch.tensor(list(cfg.background), dtype=torch.float32),
                lambda_mask=float(cfg.loss.lambda_spec_mask), seed=int(cfg.seed))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        run_meta.update(placed, aligned_iou=initial_overlap(canonical, seq, backend=cfg.backend))
        log.info("align=%s (%.1f s): %s; IoU per training view now %s", cfg.align, time.perf_counter() - placing,
                 _describe_start(placed), [round(x, 3) for x in run_meta["aligned_iou"]])
    else:
        trajectory = None
    return canonical, run_meta, trajectory


def _describe_start(placed: dict) -> str:
    """The start stage's record (``run_meta.json`` holds all of it) as a short phrase for the log."""
    parts = []
    if "search_rotation_deg" in placed:
        parts.append(f"turned {placed['search_rotation_deg']:.1f} deg")
    if "search_scale" in placed:
        parts.append(f"scale {placed['search_scale']:.2f}")
    moved = placed.get("search_translation", placed.get("align_offset"))
    if moved is not None:
        parts.append("moved by (" + ", ".join(f"{x:.2f}" for x in moved) + ")")
    if "search_runner_up_ratio" in placed:
        parts.append(f"runner-up loss {placed['search_runner_up_ratio']:.1f}x the winner's")
    if "search_turn_deg" in placed:  # the trajectory (search.frames=all)
        kept = "kept" if placed.get("search_turn_kept") else "under the gate: the centre track only"
        if "search_turn_fit" in placed:  # search.turn_fit: the turned poses' best pixel loss over the centre track's
            kept += f"; fit {placed['search_turn_fit']:.2f}"
        parts.append(f"trajectory turning up to {placed['search_turn_deg']:.0f} deg ({kept})")
    if placed.get("search_bridged_frames"):
        parts.append("frames " + ", ".join(map(str, placed["search_bridged_frames"])) + " bridged")
    if "search_depth_cue" in placed:
        parts.append(f"depths from the silhouettes' {placed['search_depth_cue']}")
    return ", ".join(parts) or "placed (see run_meta.json)"


def runtime_record(cfg: DictConfig, module: TrackingModule, device: torch.device, n_threads: int) -> dict:
    """What the run actually ran on: device, renderer, threads and the TimeNet's arithmetic (the
    settings say ``auto``; this says what ``auto`` chose), for run_meta.json and metrics.json."""
    from spectral_tracking.render.render import resolve_backend

    net = getattr(module.motion, "net", None)
    precision = "none" if net is None else "bf16" if net.uses_bf16(device.type) else "fp32"  # none: no TimeNet (direct, rigid)
    return {"device": str(device), "backend": resolve_backend(str(cfg.backend), device), "threads": int(n_threads),
            "precision": precision, "torch": torch.__version__}


def build_module(cfg: DictConfig, canonical, targets: Targets, trajectory=None) -> TrackingModule:
    """The deformation named by ``cfg.deform`` (wrapped with an appearance offset when
    ``finetune_appearance``) inside a `TrackingModule` with the ``cfg.loss`` objective."""
    from spectral_tracking.deform import build_deformation
    from spectral_tracking.deform.appearance import WithAppearance

    kwargs = OmegaConf.to_container(cfg.deform.kwargs, resolve=True)
    for key in ("precision", "pos_freqs"):
        if key in kwargs:
            raise ConfigError(f"deform.kwargs.{key}: this is a setting of its own; set deform.{key} instead")
    try:
        deformation = build_deformation(
            cfg.deform.name, canonical, targets.num_frames, num_control_points=int(cfg.num_control_points),
            check_finite=False,  # the module checks the loss every step instead (one check, not one per tensor)
            precision=str(cfg.deform.precision), pos_freqs=int(cfg.deform.pos_freqs), **kwargs,
        )
    except ValueError as e:  # a setting that does not fit this asset (control points, neighbours, kwargs)
        raise ConfigError(f"deform={cfg.deform.name}: {e}; adjust num_control_points or deform.kwargs") from None
    if trajectory is not None:  # the start stage's rigid motion per frame, x -> R_t x + b_t: about the deformation's centre
        Rs, bs = trajectory
        C = deformation.center.detach().double().cpu()
        try:
            deformation.set_trajectory(Rs, bs - C + Rs @ C)
        except ValueError as e:
            raise ConfigError(f"search.frames=all: {e}") from None
    lr = {"deform": float(cfg.deform.lr_init), "rigid": float(cfg.deform.rigid_lr), "radius": float(cfg.deform.radius_lr)}
    if cfg.finetune_appearance:
        deformation = WithAppearance(deformation)
        lr["appearance"] = float(cfg.appearance_lr)
    try:
        return TrackingModule(
            deformation=deformation, targets=targets, loss=LossSettings(**OmegaConf.to_container(cfg.loss, resolve=True)),
            max_steps=int(cfg.max_steps), lr=lr, lr_final_ratio=float(cfg.deform.lr_final) / float(cfg.deform.lr_init),
            background=torch.tensor(list(cfg.background)), seed=int(cfg.seed), backend=cfg.backend,
            progressive_frames=float(cfg.progressive_frames), arap_frames=int(cfg.arap_frames),
            arap_sampling=str(cfg.arap_sampling),
            lr_decay=float(cfg.lr_decay), rigid_first=float(cfg.deform.rigid_first),
            pos_anneal=float(cfg.deform.pos_anneal), adam_eps=float(cfg.deform.adam_eps),
        )
    except ValueError as e:  # a deform setting the chosen deformation cannot follow (rigid_first, pos_anneal)
        raise ConfigError(str(e)) from None


def run(cfg: DictConfig, sequence=None) -> dict:
    """Train one tracking run and return its result ``{"metrics", "figures", "run", "config"}``
    (also written to ``out_dir/metrics.json``). A folder holding this run finished is returned as is
    (``skip_finished``); one holding an interrupted run resumes from its last checkpoint. The folder
    is locked for the whole run. ``sequence``: the Python API's sequence in memory (``dataset=memory``,
    whose ``fingerprint`` names it in the settings)."""
    validate(cfg)
    try:
        n_threads = threads.configure(cfg.trainer.get("threads", "auto"))
    except ValueError as e:
        raise ConfigError(f"trainer.{e}") from None
    log.info("%d thread(s) for torch and the C++ kernels (trainer.threads=%s)", n_threads, cfg.trainer.get("threads", "auto"))
    out_dir = Path(cfg.out_dir)
    fresh = not out_dir.exists() or runtime_paths.made_for_this_run(out_dir)
    try:
        with RunLock(out_dir):
            finished = finished_result(cfg, config_fingerprints(cfg))
            if finished is not None:
                return finished
            with run_log(out_dir):
                return _run(cfg, out_dir, sequence, n_threads)
    except Exception:
        runtime_paths.remove_if_untouched(out_dir, fresh)
        raise


def run_log(out_dir: Path):
    """``out_dir/train.log``: every log record of the run (appended on a resume; `runtime.logfile`)."""
    from spectral_tracking.runtime.logfile import file_log

    return file_log(out_dir / "train.log")


def _run(cfg: DictConfig, out_dir: Path, sequence=None, n_threads: int = 1) -> dict:
    began = time.perf_counter()
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")
    ckpt_path, resume_step = resume_checkpoint(cfg)

    seq, targets = build_targets(cfg, sequence)
    n = seq.canonical.num_gaussians
    if n < int(cfg.num_control_points):
        raise ConfigError(f"the canonical asset has {n} Gaussian{'s' if n != 1 else ''}, fewer than num_control_points="
                          f"{cfg.num_control_points}: give a denser asset, or num_control_points={max(1, n)} or fewer")
    from spectral_tracking.run.memory import check_fits, estimate_for

    memory = estimate_for(seq)
    if cfg.check_memory:
        check_fits(memory, seq, device)
    truth = seq.ground_truth()
    start_began = time.perf_counter()
    canonical, run_meta, trajectory = start_pose(cfg, seq, targets, device)
    start_seconds = time.perf_counter() - start_began
    module = build_module(cfg, canonical, targets, trajectory).to(device)  # before anything is written: it checks the settings
    # loss.switch_prior=start: the IoU of the start the module begins from (the deformation is the identity at first)
    module.objective.prime(float(np.mean(run_meta.get("aligned_iou", run_meta["initial_iou"]))))
    run_meta["wandb_id"] = read_meta(out_dir).get("wandb_id") or (new_wandb_id() if cfg.logger.name == "wandb" else None)
    run_meta["runtime"] = runtime_record(cfg, module, device, n_threads)
    run_meta["memory_estimate_gb"] = {k: round(v / 1e9, 3) for k, v in memory.items()}  # run/memory.py
    atomic_write_text(out_dir / "run_meta.json", json.dumps(run_meta, indent=2))
    with torch.no_grad():
        initial = module.render_views(canonical.to(device), [targets.train_views[0]]).rgb[0].cpu().clamp(0, 1)

    every = progression_interval(int(cfg.max_steps), int(cfg.eval.progression_frames))
    progression = ProgressionCallback(frame=targets.num_frames - 1, view=targets.train_views[0], every=every)
    clock = ElapsedTime()
    callbacks = [progression, clock]
    if int(cfg.eval.every_n_steps) > 0:
        callbacks.append(PeriodicEvalCallback(truth, int(cfg.eval.every_n_steps)))
    average = WeightAverage(cfg.average, int(cfg.max_steps)) if float(cfg.average.decay) > 0 else None
    if average is not None:
        callbacks.append(average)
    logger = build_logger(cfg, out_dir, resume_step=resume_step, wandb_id=run_meta["wandb_id"])
    try:
        trainer = build_trainer(cfg, logger, callbacks)
        train(trainer, module, ckpt_path, out_dir)
        module.to(device).eval()  # Lightning's teardown moves the module to the CPU
        frames: dict = {}
        metrics = evaluate(module, truth, lpips_net=None if cfg.eval.lpips == "none" else str(cfg.eval.lpips),
                           per_view=bool(cfg.eval.per_view), protocol=str(cfg.eval.protocol), frames=frames)
        metrics.update(initial_iou=float(np.mean(run_meta["initial_iou"])), steps=int(trainer.global_step),
                       spectral_end=module.objective.spectral_end, seconds=round(clock.seconds, 1),
                       start_seconds=round(start_seconds, 2), run_seconds=round(time.perf_counter() - began, 1))
        if module.objective.rescue_iou is not None:
            metrics["rescue_steps"] = int(module.objective.rescue_steps)
            metrics["recentre_steps"] = int(module.objective.recentre_steps)
        if average is not None and average.since is not None:  # the result is the average of the steps from this one
            metrics["average_from"] = int(average.since)
        figures = write_outputs(cfg, module, initial, progression, out_dir,
                                normalization=seq.meta.get("normalization"))  # PLYs go back to the asset's frame
        log_final(trainer.loggers, metrics, figures, int(trainer.global_step))
        result = save_result(out_dir, metrics, figures, run_meta, OmegaConf.to_container(cfg, resolve=True), frames)
    finally:
        close_logger(logger)
    print_summary(cfg, metrics, figures, out_dir)
    return result


def run_job(cfg: DictConfig) -> dict | None:
    """Entry used by train.py. In a multirun a failing job writes ``failed.txt`` in its own folder
    and the sweep goes on (`spectral_tracking.run.sweep.SweepSummary` reports it and fails the sweep at
    the end); a refused rerun into another run's finished folder leaves that folder untouched; an
    interrupted job stops the sweep. A single run raises."""
    try:
        return run(cfg)
    except RunInterrupted as e:
        if current_sweep_dir() is not None:
            atomic_write_text(Path(cfg.out_dir) / "failed.txt", f"{e}\n")
        raise
    except Exception as e:
        sweep = current_sweep_dir()
        if sweep is None:
            raise
        out = Path(cfg.out_dir)
        if isinstance(e, RunRefused):  # another run's folder: record nothing in it
            log.error("job refused: %s", e)
            record_refused(sweep, out, str(e))
            return None
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "failed.txt", traceback.format_exc())
        log.error("job failed, traceback in %s; the sweep goes on", out / "failed.txt")
        return None
