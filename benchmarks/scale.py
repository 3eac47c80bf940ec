"""Cost and memory of tracking against the asset's size N, the resolution and the number of frames.

    python benchmarks/scale.py                                   # the three sweeps below, at the paper's settings
    python benchmarks/scale.py --sweep gaussians --gaussians 3000 300000 1000000
    python benchmarks/scale.py --sweep frames --frames 12 100 --no-run
    python benchmarks/scale.py --device cuda                     # on a GPU (gsplat; CUDA max allocated)
    python benchmarks/scale.py --quick                           # tiny sizes, every column (tests)
    python benchmarks/scale.py --gaussians 3000 300000 --no-run --override arap_sampling=rendered

Sweeps (each row states its own settings; ``experiment=sc4d_mlp``: 800 control points, 8 bands):
    gaussians  N = 3k, 30k, 100k, 300k, 1M at 512^2, 4 frames
    frames     T = 4, 12, 48, 100 at 512^2, N = 3k
    resolution 256^2, 512^2, 1024^2 at N = 3k, 4 frames

Every row is a generated quadruped (``quadruped_walk``, cached under ``--root`` like the benchmark's
own sequences, generated before anything is measured) with 4 supervision and 2 novel views, measured
in two fresh processes so that each peak is its own:

- ``step``: the module is built (start ``align=none``, no shift: the start stage is not a step), the
  resident memory is read (``held``: the process with its targets and model, before the first step),
  then ``--steps`` training steps are run by hand (`TrackingModule.step_loss`, backward, Adam) in
  the spectral phase with every band open, and their median is the step. ``breakdown``: each stage
  alone, forward + backward, on the step's shapes (``benchmarks/step.py``'s kernels: render,
  spectral loss, TimeNet, skinning, ARAP, Adam).
- ``run``: the whole ``train.py`` run a user starts (the default start, ``--run-steps`` steps,
  evaluation, videos, exports), and its peak resident set (``os.wait4``: this process alone).

The ratios on the right compare each row with the first row of its sweep, measured in the same
invocation: compare those, not the absolute numbers, across machines and loads. Peak memory is
the resident set size (CPU) or ``torch.cuda.max_memory_allocated`` (CUDA, beside the CPU peak).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spectral_tracking.runtime.threads import limit_spinning  # noqa: E402

limit_spinning()  # before torch loads its OpenMP runtime

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PRESET = "quadruped_walk"
SWEEPS = {  # name -> (gaussians, resolutions, frames): one list varies, the others hold one value
    "gaussians": ([3_000, 30_000, 100_000, 300_000, 1_000_000], [512], [4]),
    "frames": ([3_000], [512], [4, 12, 48, 100]),
    "resolution": ([3_000], [256, 512, 1024], [4]),
}
QUICK = {"gaussians": ([400, 1_600], [64], [3]), "frames": ([400], [64], [3, 5]), "resolution": ([400], [32, 64], [3])}
STAGES = ("render", "image loss", "TimeNet", "skinning", "ARAP", "Adam")


def rss_gb() -> float:
    """The resident set of this process now, in GB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def sequence_folder(root: Path, gaussians: int, resolution: int, frames: int) -> Path:
    """The generated sequence's folder, made (or found in the cache) by the generator in its own
    process: this one stays without torch, so the children it starts do not inherit a large resident
    set (a forked child's peak counts the pages it shares with its parent until it execs)."""
    code = ("import sys; from spectral_tracking.data.synthetic import generate; "
            f"print(generate({PRESET!r}, frames={frames}, resolution={resolution}, num_gaussians={gaussians}, "
            f"root={str(root)!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"scale: generating N={gaussians} {resolution}^2 T={frames} failed:\n{out.stderr[-2000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def common_overrides(folder: Path, resolution: int, quick: bool, device: str) -> list[str]:
    out = ["experiment=sc4d_mlp", "dataset=folder", f"dataset.path={folder}", f"resolution={resolution}", "logger=none",
           "trainer.enable_progress_bar=false"]
    if quick:
        out += ["num_control_points=40", "loss.num_bands=4"]
    if device == "cuda":
        out += ["trainer=gpu"]
    return out


def measure_step(args) -> dict:
    """In the child: build, read the memory held, time the steps and the stages."""
    import statistics

    import torch

    from benchmarks.step import build, compose, kernels, phase_overrides, sync
    from spectral_tracking.runtime import threads

    threads.configure(args.threads, jobs=1)
    device = torch.device(args.device)
    base = rss_gb()
    out_dir = tempfile.mkdtemp(prefix="scale_step_")
    cfg = compose([*common_overrides(Path(args.folder), args.resolution, args.quick, args.device),
                   *phase_overrides("spectral", args.steps), "align=none", "shift=0", "loss.switch_iou=null",
                   *args.override, f"out_dir={out_dir}"])
    module = build(cfg, device)
    module.train()
    sync(device)
    held = rss_gb()
    opt = module.configure_optimizers()["optimizer"]
    times = []
    for step in range(args.steps):
        sync(device)
        start = time.perf_counter()
        loss = module.step_loss(step)[0]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - start)
    warm = max(2, args.steps // 5)
    step_ms = 1e3 * statistics.median(times[warm:])
    stages = kernels(cfg, device, repeats=max(3, args.steps // 4), module=module)
    result = {"N": int(module.deformation.canonical_means.shape[0]), "base_gb": base, "held_gb": held,
              "step_ms": step_ms, "stages": {k: stages[k] for k in STAGES}, "step_peak_gb": None}
    if device.type == "cuda":
        result["cuda_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
    shutil.rmtree(out_dir, ignore_errors=True)
    return result


def child(argv: list[str], log: Path) -> tuple[int, float, float]:
    """Run ``argv`` (stdout and stderr to ``log``); (exit status, its own peak resident GB, seconds)."""
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1e6, time.perf_counter() - start  # ru_maxrss is in kB on Linux


def failed(what: str, label: str, code: int, log: Path) -> SystemExit:
    """The one exit of a failed child: what failed, its status, and its log's last lines."""
    return SystemExit(f"scale: the {what} of {label} failed (exit {code}); see {log}:\n"
                      + "\n".join(log.read_text().splitlines()[-15:]))


def measure(folder: Path, args, tmp: Path, label: str) -> dict:
    """One row: the step child, then (``args.run``) the whole run's child, on ``folder`` at ``args.resolution``."""
    step_log, run_log = tmp / f"{label}_step.log", tmp / f"{label}_run.log"
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--folder", str(folder),
            "--steps", str(args.steps), "--resolution", str(args.resolution), "--threads", str(args.threads),
            "--device", args.device, *(f"--override={o}" for o in args.override),
            *(["--quick"] if args.quick else [])]
    code, peak, _ = child(argv, step_log)
    lines = [line for line in step_log.read_text().splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        raise failed("step measurement", label, code, step_log)
    row = json.loads(lines[-1])
    row["step_peak_gb"] = peak
    if args.run:
        run_dir = tmp / f"{label}_run"
        argv = [sys.executable, "train.py", *common_overrides(folder, args.resolution, args.quick, args.device),
                f"max_steps={args.run_steps}", f"trainer.threads={args.threads}", *args.override, f"out_dir={run_dir}"]
        code, peak, seconds = child(argv, run_log)
        if code != 0:
            raise failed("run", label, code, run_log)
        row.update(run_peak_gb=peak, run_seconds=seconds)
        shutil.rmtree(run_dir, ignore_errors=True)
    return row


def fmt_row(sweep: str, n: int, res: int, frames: int, row: dict, ref: dict | None) -> str:
    it_s = 1e3 / row["step_ms"]
    ten_k = row["step_ms"] * 10_000 / 60e3
    text = (f"{sweep:10s} N={n:>9,} {res:>4}^2 T={frames:<3} | step {row['step_ms']:8.1f} ms {it_s:6.1f} it/s "
            f"(10k steps {ten_k:6.1f} min) | held {row['held_gb']:5.2f} GB (imports {row['base_gb']:.2f}), "
            f"step peak {row['step_peak_gb']:5.2f} GB")
    if "run_peak_gb" in row:
        text += f", run peak {row['run_peak_gb']:5.2f} GB ({row['run_seconds']:.0f} s)"
    if "cuda_peak_gb" in row:
        text += f", CUDA peak {row['cuda_peak_gb']:.2f} GB"
    if ref is not None and ref is not row:
        text += f" | x first row: step {row['step_ms'] / ref['step_ms']:.2f}"
        if "run_peak_gb" in row:
            text += f", run peak {row['run_peak_gb'] / ref['run_peak_gb']:.2f}"
    text += "\n" + " " * 11 + "breakdown (fwd+bwd ms): " + ", ".join(f"{k} {v:.1f}" for k, v in row["stages"].items())
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", nargs="+", choices=list(SWEEPS), default=list(SWEEPS))
    ap.add_argument("--gaussians", type=int, nargs="+", help="replace the gaussians sweep's N values")
    ap.add_argument("--frames", type=int, nargs="+", help="replace the frames sweep's T values")
    ap.add_argument("--resolutions", type=int, nargs="+", help="replace the resolution sweep's values")
    ap.add_argument("--steps", type=int, default=20, help="hand-timed training steps per row (median after a fifth)")
    ap.add_argument("--run-steps", type=int, default=10, help="steps of the whole train.py run whose peak is read")
    ap.add_argument("--no-run", dest="run", action="store_false", help="skip the whole-run peak (the slow column)")
    ap.add_argument("--threads", default="auto")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--root", default=str(REPO / "data" / "synthetic"), help="where the generated sequences are cached")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: every column in seconds (tests)")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for every row, after the benchmark's own (repeatable), e.g. arap_sampling=rendered")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--resolution", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure_step(args)), flush=True)
        return
    if args.quick:
        args.steps, args.run_steps = min(args.steps, 6), min(args.run_steps, 3)
    table = QUICK if args.quick else SWEEPS
    given = {"gaussians": args.gaussians, "frames": args.frames, "resolution": args.resolutions}
    plan = []
    for sweep in args.sweep:
        ns, rs, ts = table[sweep]
        index = {"gaussians": 0, "resolution": 1, "frames": 2}[sweep]
        values = [list(x) for x in (ns, rs, ts)]
        if given[sweep]:
            values[index] = given[sweep]
        plan += [(sweep, n, r, t) for n in values[0] for r in values[1] for t in values[2]]
    print(f"# benchmarks/scale.py: {len(plan)} rows, device {args.device}, threads {args.threads}, "
          f"overrides {' '.join(args.override) or 'none'}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    root = Path(args.root)
    folders = {}
    for _, n, r, t in plan:  # generation first: it is not what is measured
        if (n, r, t) not in folders:
            start = time.perf_counter()
            folders[n, r, t] = sequence_folder(root, n, r, t)
            print(f"# sequence N={n} {r}^2 T={t}: {folders[n, r, t]} ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"# this process: {rss_gb():.3f} GB resident (its children's peaks start from about this)", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="scale_bench_"))
    first: dict[str, dict] = {}
    try:
        for sweep, n, r, t in plan:
            args.resolution = r
            row = measure(folders[n, r, t], args, tmp, f"{sweep}_{n}_{r}_{t}")
            first.setdefault(sweep, row)
            print(fmt_row(sweep, n, r, t, row, first[sweep]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
