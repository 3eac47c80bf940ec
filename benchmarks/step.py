"""Timing of one whole training step against the sum of its kernels, measured in the same run.

    python benchmarks/step.py                       # CPU scale and paper scale, both phases
    python benchmarks/step.py --scale cpu --steps 150
    python benchmarks/step.py --scale donut         # the donut asset (45,624 Gaussians) at 512^2
    python benchmarks/step.py --device cuda         # on a GPU (backend auto = gsplat)
    python benchmarks/step.py --precision fp32 bf16 # the TimeNet in float32 and under bf16 autocast, side by side

Scales (Hydra overrides of conf/train.yaml):
    cpu    the README's main job: 96^2, the synthetic benchmark (3,000 Gaussians), 150 control points
    paper  experiment=sc4d_mlp dataset=synthetic: 512^2, 800 control points, the same 3,000 Gaussians
    donut  experiment=sc4d_mlp dataset=donut: 512^2, 800 control points, 45,624 Gaussians

Phases: ``spectral`` (annealed spectral moments, the bands opening over the measured steps, plus
ARAP) and ``pixel`` (the spatial loss, plus ARAP), each a short real run of ``--steps`` steps.

For each (scale, phase) three measurements, in this order, in one process:
1. ``lightning``: the real `Trainer.fit` of `spectral_tracking.run.session.build_trainer` (CSV logger,
   checkpoints; no progress bar, and no progression renders, which a real run makes every
   ``max_steps / 50`` steps but these short runs would make every step or two), timed from one
   ``on_train_batch_end`` to the next: everything a step costs in a run. The median over the steps after a warm-up gives the
   it/s; the mean also counts the checkpoints, written every ``max_steps / 10`` steps, which in
   these short runs is far more often than in a real one.
2. ``breakdown``: the same step written out by hand from the module's pieces, each segment timed
   (data, deformation, render, image loss, ARAP, backward, optimizer). Its sum is the step without
   the framework; ``framework`` = lightning median - breakdown sum.
3. ``kernels``: each kernel alone, forward + backward, on the step's shapes: render, image loss,
   TimeNet (all the step's frames in one pass) and skinning. The bar compares the Lightning step
   with their sum; ARAP and Adam are printed beside them.

Wall-clock medians in ms. On a shared machine compare the ratios, which are measured minutes apart
at most, and rerun: absolute numbers move with the load (``--threads 1`` is steadier).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spectral_tracking.runtime.threads import limit_spinning  # noqa: E402

limit_spinning()  # before torch loads its OpenMP runtime

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

SCALES = {
    "cpu": [],
    "paper": ["experiment=sc4d_mlp", "dataset=synthetic"],
    "donut": ["experiment=sc4d_mlp", "dataset=donut"],
}


def phase_overrides(phase: str, steps: int) -> list[str]:
    if phase == "spectral":  # the bands open over the measured steps; ARAP from the start
        return [f"max_steps={steps}", f"loss.spectral_end={steps}", "loss.warmup=0", "loss.arap_start_iter=0"]
    return [f"max_steps={steps}", "loss=pixel", "loss.arap_start_iter=0"]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import spectral_tracking.run.config  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples) if samples else float("nan")


def build(cfg, device: torch.device):
    from spectral_tracking.run import track as entry

    seq, targets = entry.build_targets(cfg)
    canonical, _, trajectory = entry.start_pose(cfg, seq, targets, device)
    return entry.build_module(cfg, canonical, targets, trajectory).to(device)


def lightning_step(cfg, device: torch.device, warmup: int) -> tuple[list[float], float, int]:
    """(per-step seconds after ``warmup`` steps, mean seconds per step over the whole fit, Gaussians)."""
    import pytorch_lightning as pl

    from spectral_tracking.run.callbacks import ProgressionCallback, progression_interval
    from spectral_tracking.run.loggers import build_logger
    from spectral_tracking.run.session import build_trainer

    module = build(cfg, device)
    out = Path(cfg.out_dir)

    class StepClock(pl.Callback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            sync(device)
            self.ends.append(time.perf_counter())

    clock = StepClock()
    steps = int(cfg.max_steps)
    every = progression_interval(steps, int(cfg.eval.progression_frames))
    progression = ProgressionCallback(frame=module.targets.num_frames - 1, view=module.targets.train_views[0], every=every)
    trainer = build_trainer(cfg, build_logger(cfg, out), [progression, clock])
    start = time.perf_counter()
    trainer.fit(module)
    total = time.perf_counter() - start
    gaps = [b - a for a, b in zip(clock.ends, clock.ends[1:])][warmup:]
    return gaps, total / steps, int(module.deformation.canonical_means.shape[0])


def breakdown(cfg, device: torch.device, steps: int, warmup: int) -> dict[str, float]:
    """Medians (ms) of the step's segments, run by hand from the module's own pieces."""
    module = build(cfg, device)
    module.train()
    opt_cfg = module.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]

    seg: dict[str, list[float]] = {k: [] for k in ("data", "deformation", "render", "image loss", "ARAP", "backward", "optimizer")}
    for step in range(steps):
        t = [time.perf_counter()]

        def mark() -> None:
            sync(device)
            t.append(time.perf_counter())

        objective = module.objective.at(step)
        for f in range(module.active_frames(step - 1) if step > 0 else 1, module.active_frames(step)):
            module.deformation.copy_frame(f - 1, f)
        frame, view = module.sample(step)
        arap_frames = module.control_frames(step, frame) if objective.lambda_arap > 0 else []
        gt_rgb = module.targets.images[view, frame][None].to(device)
        gt_mask = module.targets.masks[view, frame][None].to(device)
        mark()
        gaussians, control_points = module.deformation.frame_and_control_points(frame, arap_frames)
        mark()
        out = module.render_views(gaussians, [view])
        mark()
        terms = objective.image_loss(out.rgb, out.alpha, gt_rgb, gt_mask, objective.band_weights)
        loss = objective.lambda_image * terms["image"]
        mark()
        if arap_frames:
            loss = loss + objective.lambda_arap * module.arap(control_points)
        mark()
        loss.backward()
        mark()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        mark()
        if step >= warmup:
            for key, a, b in zip(seg, t, t[1:]):
                seg[key].append(b - a)
    return {k: median_ms(v) for k, v in seg.items()}


def kernels(cfg, device: torch.device, repeats: int, module=None) -> dict[str, float]:
    """Medians (ms) of each kernel alone, forward + backward, on the step's shapes (of ``module``,
    built from ``cfg`` when not given; its deformation's network is perturbed)."""
    from spectral_tracking.deform.control_points import skin
    from spectral_tracking.render import render

    module = build(cfg, device) if module is None else module
    d = module.deformation
    view = module.targets.train_views[0]
    cams = module.targets.cameras[[view]].to(device)
    # the rendered frame and ARAP's frames (with arap_sampling=rendered, the rendered one is among them)
    frames = list(range(min(module.arap_frames + (module.arap_sampling != "rendered"), module.targets.num_frames)))
    times = torch.stack([d.resolve_time(f)[0] for f in frames])
    with torch.no_grad():
        for p in d.net.parameters():  # a trained-looking network, not the zero-initialised identity
            p.add_(torch.randn_like(p) * 1e-3)
        translations, rotations = d.net(d._net_points, times[0])
        gaussians = d(1).detach()
    gt_rgb = module.targets.images[view, 1][None].to(device)
    gt_mask = module.targets.masks[view, 1][None].to(device)
    objective = module.objective.at(int(cfg.max_steps) - 1)  # all bands open (spectral) / spatial
    rendered = render(gaussians, cams, background=module.background, backend=module.backend)

    def k_render() -> None:
        g = gaussians.detach()
        means = g.means.clone().requires_grad_(True)
        from spectral_tracking.gaussians import Gaussians

        out = render(Gaussians(means, g.quats, g.log_scales, g.opacity_logits, g.sh), cams,
                     background=module.background, backend=module.backend)
        (out.rgb.sum() + out.alpha.sum()).backward()

    def k_image_loss() -> None:
        rgb = rendered.rgb.detach().clone().requires_grad_(True)
        alpha = rendered.alpha.detach().clone().requires_grad_(True)
        objective.image_loss(rgb, alpha, gt_rgb, gt_mask, objective.band_weights)["image"].backward()

    def k_timenet() -> None:
        dxyz, rot = d.net(d._net_points, times)
        (dxyz.sum() + rot.sum()).backward()

    def k_skinning() -> None:
        tr = translations.detach().clone().requires_grad_(True)
        ro = rotations.detach().clone().requires_grad_(True)
        means, quats = skin(d.canonical_means, d.canonical_quats, d.canonical_control_points, d.binding,
                            d.skinning_weights(), tr, ro, weights_t=d._fixed_weights_t)
        (means.sum() + quats.sum()).backward()

    with torch.no_grad():
        arap_points = torch.stack([d.control_point_positions(f) for f in frames[-module.arap_frames:]])

    def k_arap() -> None:
        module.arap(arap_points.clone().requires_grad_(True)).backward()

    opt = module.configure_optimizers()["optimizer"]
    for p in d.parameters():
        p.grad = torch.zeros_like(p)

    def k_adam() -> None:
        opt.step()

    out = {}
    for name, fn in (("render", k_render), ("image loss", k_image_loss), ("TimeNet", k_timenet),
                     ("skinning", k_skinning), ("ARAP", k_arap), ("Adam", k_adam)):
        samples = []
        for i in range(repeats + 3):
            sync(device)
            a = time.perf_counter()
            fn()
            sync(device)
            if i >= 3:
                samples.append(time.perf_counter() - a)
        out[name] = median_ms(samples)
    d.zero_grad(set_to_none=True)
    return out


KERNELS = ("render", "image loss", "TimeNet", "skinning")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=[*SCALES, "all"], default="all", help="all = cpu and paper")
    ap.add_argument("--phase", choices=["spectral", "pixel", "both"], default="both")
    ap.add_argument("--steps", type=int, default=None, help="steps per measured run (default 200 at cpu scale, 60 otherwise)")
    ap.add_argument("--threads", default="auto", help="torch / kernel threads (default: auto, see spectral_tracking/runtime/threads.py)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", nargs="+", choices=["fp32", "bf16", "auto"], default=["auto"],
                    help="the TimeNet's precision (deform.precision); several are measured one after the other")
    args = ap.parse_args()

    from spectral_tracking.runtime import threads

    n_threads = threads.configure(args.threads, jobs=1)
    device = torch.device(args.device)
    scales = ["cpu", "paper"] if args.scale == "all" else [args.scale]
    phases = ["spectral", "pixel"] if args.phase == "both" else [args.phase]
    hardware = ["trainer=gpu"] if device.type == "cuda" else []
    data_root = Path(os.environ.get("SPECTRAL_TRACKING_DATA", REPO / "data"))
    print(f"# {n_threads} thread(s), device {device}, torch {torch.__version__}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="step_bench_"))
    try:
        for scale, phase, precision in ((s, p, x) for s in scales for p in phases for x in args.precision):
            steps = args.steps or (200 if scale == "cpu" else 60)
            warmup = max(5, steps // 10)
            overrides = [*SCALES[scale], *phase_overrides(phase, steps), *hardware,
                         "trainer.enable_progress_bar=false", f"trainer.threads={n_threads}", "logger=csv",
                         "eval.progression_frames=0",
                         f"dataset.root={data_root / ('donut' if scale == 'donut' else 'synthetic')}",
                         f"deform.precision={precision}"]
            cfg = compose([*overrides, f"out_dir={tmp / f'{scale}_{phase}_{precision}'}"])
            gaps, mean_s, n_gauss = lightning_step(cfg, device, warmup)
            parts = breakdown(cfg, device, min(steps, 80), warmup)
            ks = kernels(cfg, device, repeats=20 if scale == "cpu" else 8)
            step_ms = median_ms(gaps)
            kernel_sum = sum(ks[k] for k in KERNELS)
            hand = sum(parts.values())
            label = f"{scale:5s} {phase:8s} {precision} {int(cfg.resolution)}^2 N={n_gauss} J={int(cfg.num_control_points)}"
            print(f"{label} | lightning step {step_ms:7.2f} ms median = {1e3 / step_ms:6.1f} it/s "
                  f"(mean {1e3 * mean_s:.2f} ms) | kernels {kernel_sum:7.2f} ms | step / kernels {step_ms / kernel_sum:5.2f}x", flush=True)
            print(f"{label} |   breakdown: " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
                  + f" = {hand:.2f} ms; framework {step_ms - hand:.2f} ms", flush=True)
            print(f"{label} |   kernels (fwd+bwd): " + ", ".join(f"{k} {ks[k]:.2f}" for k in KERNELS)
                  + f" = {kernel_sum:.2f} ms; beside them: ARAP {ks['ARAP']:.2f}, Adam {ks['Adam']:.2f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
