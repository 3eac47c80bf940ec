"""Cost of the spectral moment loss next to a render, forward + backward (issue 3 bar: < 10% at 128x128).

    python benchmarks/spectral.py [--sizes 128 512] [--repeats 21] [--threads 1]

For each image size: the spectral loss on RGB + mask (one view, K = 8 bands, l1), once with all 8
bands active and once early in the schedule (bands 0-2 active, the rest weight 0, which
``spectral_loss`` skips), by three methods: ``auto`` (what training uses: on the CPU the C++ kernel),
``fft, torch ops`` (the C++ kernel's twin built from torch's FFTs, the reference for its speed-up) and
``dft``; beside a render of 2,000 random Gaussians (``spectral_tracking.render.render``, backend
"auto": gsplat on CUDA, the CPU rasteriser otherwise) at the same size. Every loss is timed right after
a render, as in a training step, over ``--repeats`` rounds after one warm-up call each, and compared
with the render just before it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spectral_tracking.cameras import orbit_camera
from spectral_tracking.gaussians import random_gaussians
from spectral_tracking.losses import spectral
from spectral_tracking.losses.spectral import spectral_loss

NUM_BANDS = 8
NUM_GAUSSIANS = 2000


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(fn, device: torch.device) -> tuple[float, float]:
    """(wall, process CPU) seconds of one fn() call (forward + backward).

    The process CPU time is the steadier number on a shared machine (it does not count time spent
    waiting for a core); on CUDA only the wall time means anything.
    """
    _sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - start_cpu


def time_after_render(render, losses: dict, repeats: int, device: torch.device) -> tuple[tuple, dict]:
    """Each case timed right after a render, as in a training step.

    Every round runs, for each loss case, a render (forward + backward) and then the loss, and times
    both: the loss meets the caches as the render leaves them (a loss timed alone, back to back, finds
    its buffers warm and measured 30-60% faster here), and a slow spell of a shared machine hits the
    render and the loss of the same round alike.

    Returns:
        (median render wall, median render CPU), and per case (median wall, median CPU, median over
        rounds of loss time / render time of the same round; CPU times, wall times on CUDA).
    """
    render()
    for fn in losses.values():  # warm-up: plans, caches, compiled kernels
        fn()
    column = 0 if device.type == "cuda" else 1
    render_samples, samples = [], {name: [] for name in losses}
    for _ in range(repeats):
        for name, fn in losses.items():
            before = measure(render, device)
            after = measure(fn, device)
            render_samples.append(before)
            samples[name].append((*after, after[column] / before[column]))
    results = {name: tuple(statistics.median(v[i] for v in values) for i in range(3)) for name, values in samples.items()}
    return (statistics.median(v[0] for v in render_samples), statistics.median(v[1] for v in render_samples)), results


def loss_timer(size: int, weights: list[float], method: str, device: torch.device, native: bool = True):
    """fn() running spectral_loss forward + backward; native=False selects the torch-op twin of the C++
    kernel (``spectral.USE_NATIVE``) for that call."""
    gen = torch.Generator().manual_seed(0)
    pred_rgb = torch.rand(1, size, size, 3, generator=gen).to(device).requires_grad_()
    pred_mask = torch.rand(1, size, size, generator=gen).to(device).requires_grad_()
    gt_rgb = torch.rand(1, size, size, 3, generator=gen).to(device)
    gt_mask = torch.rand(1, size, size, generator=gen).to(device)

    def run():
        spectral.USE_NATIVE = native
        try:
            loss = spectral_loss(pred_rgb, gt_rgb, pred_mask, gt_mask, weights, lambda_mask=0.5, method=method)
            loss.backward()
        finally:
            spectral.USE_NATIVE = True

    return run


def render_timer(size: int, device: torch.device):
    try:
        from spectral_tracking.render import render
    except ImportError as err:  # the renderer is a separate module; say so instead of failing obscurely
        raise SystemExit(f"benchmarks/spectral.py: spectral_tracking.render is not available ({err}); "
                         "the render comparison needs it") from err
    gaussians = random_gaussians(NUM_GAUSSIANS, sh_degree=0, extent=0.5, seed=0, device=device)
    params = [gaussians.means, gaussians.quats, gaussians.log_scales, gaussians.opacity_logits, gaussians.sh]
    for p in params:
        p.requires_grad_()
    cameras = orbit_camera(0.0, width=size, height=size).to(device)

    def run():
        out = render(gaussians, cameras)
        (out.rgb.sum() + out.alpha.sum()).backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=21, help="rounds (each times every case once)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads, 0 for torch's default. 1 by default: on a small or shared machine OpenMP "
             "threads spin-wait for each other and the timings become noise (on 2 busy cores both the loss "
             "and the render measured 5-100x slower with 2 threads)",
    )
    args = parser.parse_args()
    too_small = [s for s in args.sizes if s < 2 ** (NUM_BANDS - 1)]
    if too_small:
        parser.error(f"--sizes {too_small}: K = {NUM_BANDS} bands need images of at least {2 ** (NUM_BANDS - 1)} pixels")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"K = {NUM_BANDS}, RGB + mask, 1 view, median of {args.repeats}")
    all_bands = [1.0] * NUM_BANDS
    early = [1.0, 1.0, 0.5] + [0.0] * (NUM_BANDS - 3)
    print("each loss timed right after a render; times: median wall ms / median process-CPU ms; % of the render: "
          "median over rounds of the loss time over the time of the render just before it (CPU times; wall "
          "times on CUDA)")
    cases = [("auto", "auto", True), ("fft", "fft, torch ops", False), ("dft", "dft", True)]
    for size in args.sizes:
        losses = {}
        for label, weights in (("all 8 bands", all_bands), ("bands 0-2 only", early)):
            for method, name, native in cases:
                losses[(label, name)] = loss_timer(size, weights, method, device, native)
        (wall, cpu), results = time_after_render(render_timer(size, device), losses, args.repeats, device)
        render_ref = wall if device.type == "cuda" else cpu
        print(f"\n{size}x{size}: render fwd+bwd ({NUM_GAUSSIANS} Gaussians) {wall * 1e3:8.2f} / {cpu * 1e3:8.2f} ms")
        for (label, name), (wall, cpu, ratio) in results.items():
            print(f"{size}x{size}: spectral loss fwd+bwd {label:15s} {name:15s} "
                  f"{wall * 1e3:8.2f} / {cpu * 1e3:8.2f} ms = {100 * ratio:6.2f}% of the render")
        # the same loss back to back, its buffers warm: what a loss-only micro-benchmark would show
        alone = losses[("all 8 bands", "auto")]
        walls, cpus = zip(*(measure(alone, device) for _ in range(args.repeats)))
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        reference = wall if device.type == "cuda" else cpu
        print(f"{size}x{size}: spectral loss fwd+bwd {'all 8 bands':15s} {'auto, alone':15s} "
              f"{wall * 1e3:8.2f} / {cpu * 1e3:8.2f} ms = {100 * reference / render_ref:6.2f}% of the median render "
              "(timed back to back, not after a render)")


if __name__ == "__main__":
    main()
