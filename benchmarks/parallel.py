"""Runs side by side: do two runs on one machine share it, or stall each other?

    python benchmarks/parallel.py                 # 200-step default runs, every case once
    python benchmarks/parallel.py --steps 100 --repeats 2
    python benchmarks/parallel.py --old           # also the old behaviour (spinning OpenMP waits): slow

Every run is the README's main job (`python train.py`, 96^2, 150 control points) shortened to
``--steps`` steps, without LPIPS, figures or logger, in a fresh process. Cases:

    alone       one run (threads auto: all cores)
    sequential  two runs, one after the other
    joblib      two runs at once through Hydra's joblib launcher (n_jobs=2: auto gives each
                cores / 2 threads)
    together    two independent `python train.py` started at once (each auto: all cores, idle
                OpenMP workers spinning at most GOMP_SPINCOUNT=1000 times), as a user with two
                terminals gets
    alone-old   [--old] `alone` with libgomp's default spin (about 300,000 times, then sleep)
    old         [--old] `together` with the default spin, as before
    busy-old    [--old] `busy` with the default spin
    busy        one run beside a CPU-bound process (a Python busy loop)

Each line gives the wall time of the case (start of the first process to the end of the last) and
the training seconds of each run (``metrics.json``: the fit only, no imports or evaluation), and
the ratios the bars are about: ``together / sequential`` and ``joblib / sequential`` (total wall;
<= 1.1), ``busy / alone`` (training seconds; <= 2.5). The machine must be otherwise quiet; on a
shared machine the ratios are still indicative, not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_args(steps: int, out: Path) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), f"max_steps={steps}", "logger=none", "eval.lpips=none",
            "eval.progression_frames=0", "trainer.enable_progress_bar=false", f"out_dir={out}"]


def env_for(wait_policy: str | None) -> dict:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"):
        env.pop(key, None)
    if wait_policy is not None:
        env["OMP_WAIT_POLICY"] = wait_policy  # "": libgomp's default spin; limit_spinning() then keeps it
    return env


def train_seconds(out: Path) -> float:
    return float(json.loads((out / "metrics.json").read_text())["metrics"]["seconds"])


def launch(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_all(procs: list[subprocess.Popen], logs: list[Path]) -> None:
    for p, log in zip(procs, logs):
        if p.wait() != 0:
            raise RuntimeError(f"a run failed (exit {p.returncode}); its output:\n{log.read_text()[-3000:]}")


def case_runs(name: str, steps: int, tmp: Path, count: int, at_once: bool, wait_policy: str | None = None) -> tuple[float, list[float]]:
    """(wall seconds of the case, training seconds of each run)."""
    outs = [tmp / f"{name}_{i}" for i in range(count)]
    logs = [tmp / f"{name}_{i}.log" for i in range(count)]
    env = env_for(wait_policy)
    start = time.perf_counter()
    if at_once:
        wait_all([launch(run_args(steps, o), env, log) for o, log in zip(outs, logs)], logs)
    else:
        for o, log in zip(outs, logs):
            wait_all([launch(run_args(steps, o), env, log)], [log])
    return time.perf_counter() - start, [train_seconds(o) for o in outs]


def case_joblib(steps: int, tmp: Path) -> tuple[float, list[float]]:
    sweep = tmp / "joblib"
    base = run_args(steps, sweep)
    args = [*base[:2], "-m", *base[2:-1], "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep}", "seed=0,1"]  # out_dir: the job's own folder
    log = tmp / "joblib.log"
    start = time.perf_counter()
    wait_all([launch(args, env_for(None), log)], [log])
    wall = time.perf_counter() - start
    return wall, [train_seconds(p.parent) for p in sorted(sweep.rglob("metrics.json"))]


def case_busy(name: str, steps: int, tmp: Path, wait_policy: str | None = None) -> tuple[float, list[float]]:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        return case_runs(name, steps, tmp, 1, at_once=True, wait_policy=wait_policy)
    finally:
        busy.kill()
        busy.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=1, help="repeat every case (medians, and the spread)")
    ap.add_argument("--old", action="store_true", help="also time two runs with the old spinning wait (can take minutes)")
    args = ap.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"# {cores} cores, {args.steps}-step default runs, load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="parallel_bench_"))
    # Build the data and the C++ kernels once, so that no case pays for them.
    subprocess.run(run_args(2, tmp / "warmup"), cwd=REPO, env=env_for(None), check=True, capture_output=True)
    cases = {
        "alone": lambda r: case_runs(f"alone{r}", args.steps, tmp, 1, at_once=True),
        "sequential": lambda r: case_runs(f"seq{r}", args.steps, tmp, 2, at_once=False),
        "joblib": lambda r: (shutil.rmtree(tmp / "joblib", ignore_errors=True), case_joblib(args.steps, tmp))[1],
        "together": lambda r: case_runs(f"together{r}", args.steps, tmp, 2, at_once=True),
        "busy": lambda r: case_busy(f"busy{r}", args.steps, tmp),
    }
    if args.old:
        cases["alone-old"] = lambda r: case_runs(f"aloneold{r}", args.steps, tmp, 1, at_once=True, wait_policy="")
        cases["old"] = lambda r: case_runs(f"old{r}", args.steps, tmp, 2, at_once=True, wait_policy="")
        cases["busy-old"] = lambda r: case_busy(f"busyold{r}", args.steps, tmp, wait_policy="")
    walls: dict[str, list[float]] = {k: [] for k in cases}
    trains: dict[str, list[float]] = {k: [] for k in cases}
    try:
        for r in range(args.repeats):
            for name, fn in cases.items():
                wall, seconds = fn(r)
                walls[name].append(wall)
                trains[name].append(statistics.mean(seconds))
                print(f"{name:10s} wall {wall:7.1f} s | training seconds per run: "
                      + ", ".join(f"{s:.1f}" for s in seconds), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def ratio(a: str, b: str, table: dict[str, list[float]]) -> str:
        values = [x / y for x, y in zip(table[a], table[b])]
        spread = f" (runs: {', '.join(f'{v:.2f}' for v in values)})" if len(values) > 1 else ""
        return f"{statistics.median(values):.2f}x{spread}"

    print(f"together / sequential, total wall: {ratio('together', 'sequential', walls)}   [bar <= 1.1]")
    print(f"joblib   / sequential, total wall: {ratio('joblib', 'sequential', walls)}   [bar <= 1.1]")
    print(f"busy     / alone, training seconds: {ratio('busy', 'alone', trains)}   [bar <= 2.5]")
    if args.old:
        print(f"alone-old / alone, training seconds: {ratio('alone-old', 'alone', trains)}   (what the spin limit costs a run alone)")
        print(f"old      / sequential, total wall: {ratio('old', 'sequential', walls)}   (the spinning wait, for reference)")
        print(f"busy-old / alone, training seconds: {ratio('busy-old', 'alone', trains)}   (the spinning wait, for reference)")


if __name__ == "__main__":
    main()
