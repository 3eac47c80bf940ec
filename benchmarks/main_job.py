"""The README's main job, start to metrics, and where its wall time goes.

    python benchmarks/main_job.py                  # 3 main jobs and 3 imports of each module
    python benchmarks/main_job.py --runs 1 --imports 1 -- max_steps=200

Each main job is ``python train.py`` as the README runs it (the only change: ``out_dir`` is a
temporary folder), in a fresh process, after one uncounted warm-up run (data generation, file
cache). Its wall time is split into

    imports    ``import spectral_tracking.run.track`` timed inside a fresh interpreter (perf_counter around it)
    training   ``metrics.json``'s ``seconds`` (the fit)
    outputs    the run's "outputs written in X s" log line (figures, videos, tracked.npz)
    the rest   Hydra, data, building the module, evaluation, the summary, the exit

Printed beside the imports: the interpreter's teardown after them (that process's wall time minus the
bare interpreter's and the imports'); ``train.py`` skips most of it (``spectral_tracking.runtime.exit.exit_now``).

and the imports into the modules that a run cannot avoid, each timed in a fresh interpreter:
``torch``, ``pytorch_lightning`` (which imports ``torch._dynamo`` and ``torchmetrics``), both
imported plainly, and ``spectral_tracking.run.track`` (which imports them with the garbage collector
paused, `spectral_tracking.runtime.preload`, then ours). The bars (the performance issue): main job <= 12 s,
imports <= 2.5 s, on an idle machine; compare ratios on a busy one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BAR_MAIN_JOB_S = 12.0
BAR_IMPORTS_S = 2.5
MODULES = ("torch", "pytorch_lightning", "spectral_tracking.run.track")
OUTPUTS_LINE = re.compile(r"outputs written in ([0-9.]+) s")


def wall(cmd: list[str], cwd: Path = REPO) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"main_job: {' '.join(cmd)} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return seconds, proc


def import_seconds(module: str | None, repeats: int) -> tuple[float, float]:
    """Medians over fresh interpreters of (the import of ``module`` timed inside the process, the
    process's wall time); None: the bare interpreter, (0, its wall time)."""
    if module is None:
        return 0.0, statistics.median(wall([sys.executable, "-c", "pass"])[0] for _ in range(repeats))
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = [wall([sys.executable, "-c", code]) for _ in range(repeats)]
    return (statistics.median(float(proc.stdout.split()[-1]) for _, proc in runs),
            statistics.median(seconds for seconds, _ in runs))


def main_job(overrides: list[str]) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix="main_job_"))
    try:
        seconds, proc = wall([sys.executable, "train.py", f"out_dir={out}", *overrides])
        metrics = json.loads((out / "metrics.json").read_text())["metrics"]
        found = OUTPUTS_LINE.search(proc.stdout + proc.stderr)
        return {"wall": seconds, "training": float(metrics["seconds"]), "outputs": float(found.group(1)) if found else 0.0,
                "train_psnr": float(metrics["train_psnr"])}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="main jobs timed (after one warm-up)")
    ap.add_argument("--imports", type=int, default=3, help="fresh interpreters per module timed")
    ap.add_argument("overrides", nargs="*", help="extra train.py overrides (after --), e.g. max_steps=200")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.imports < 1:
        ap.error("--runs and --imports must be at least 1")

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"# {os.cpu_count()} cores, python {sys.version.split()[0]}, load average {' '.join(f'{x:.2f}' for x in load)}", flush=True)
    main_job(args.overrides)  # warm-up: generates the data on a fresh checkout, fills the file cache
    bare = import_seconds(None, args.imports)[1]
    timed = {m: import_seconds(m, args.imports) for m in MODULES}
    imports = {m: inside for m, (inside, _) in timed.items()}
    ours = imports["spectral_tracking.run.track"]
    exit_s = max(0.0, timed["spectral_tracking.run.track"][1] - bare - ours)
    print(f"interpreter {bare:.2f} s | imports: " + ", ".join(f"{m} {s:.2f} s" for m, s in imports.items())
          + " (torch and pytorch_lightning imported plainly; spectral_tracking.run.track imports them with the garbage "
          f"collector paused, spectral_tracking.runtime.preload) | the interpreter's exit after them {exit_s:.2f} s", flush=True)
    print(f"imports (spectral_tracking.run.track) {ours:.2f} s / bar {BAR_IMPORTS_S} s = {ours / BAR_IMPORTS_S:.2f}x", flush=True)

    jobs = []
    for i in range(args.runs):
        job = main_job(args.overrides)
        jobs.append(job)
        rest = job["wall"] - bare - ours - job["training"] - job["outputs"]
        print(f"main job {i + 1}: wall {job['wall']:.2f} s = interpreter {bare:.2f} + imports {ours:.2f} + training "
              f"{job['training']:.2f} + outputs {job['outputs']:.2f} + the rest {rest:.2f} (Hydra, data, build, evaluation, exit) "
              f"| train PSNR {job['train_psnr']:.2f}", flush=True)
    median = statistics.median(j["wall"] for j in jobs)
    print(f"main job median wall {median:.2f} s / bar {BAR_MAIN_JOB_S} s = {median / BAR_MAIN_JOB_S:.2f}x; "
          f"training is {statistics.median(j['training'] for j in jobs) / median:.0%} of it, imports {ours / median:.0%}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
