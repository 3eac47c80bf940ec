"""Sweeps (``python train.py -m ...``): the end-of-sweep summary, and a sweep that fails when a job did.

`SweepSummary` is a Hydra callback (registered in conf/train.yaml), run by the process that
launched the sweep whatever the launcher (basic, joblib, submitit on this machine or SLURM): at the
end of a multirun it writes ``<sweep dir>/summary.csv``, one row per finished job of the sweep
folder (its folder, the overrides that name it, its metrics), lists the jobs of this sweep that
failed (their ``failed.txt``) or were refused (another run's finished folder, recorded in
``<sweep dir>/refused.txt``), and exits with status 1 if there were any, so a script or scheduler
sees the failure.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def current_sweep_dir() -> Path | None:
    """The sweep folder when this process runs a job of a Hydra multirun (any launcher), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir)
    return None


def record_refused(sweep_dir: Path, job_dir: Path, message: str) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / "refused.txt", "a") as f:
        f.write(f"{time.time():.3f}\t{job_dir}\t{message}\n")


def failed_jobs(sweep_dir: Path, since: float) -> list[tuple[Path, str]]:
    """(job folder, first line of the reason) of the jobs that failed or were refused since ``since``."""
    out = []
    for failed in sorted(sweep_dir.glob("*/failed.txt")):
        if failed.stat().st_mtime >= since:
            lines = failed.read_text().strip().splitlines()
            out.append((failed.parent, lines[-1] if lines else "failed"))
    refused = sweep_dir / "refused.txt"
    if refused.exists():
        for line in refused.read_text().splitlines():
            stamp, job, message = line.split("\t", 2)
            if float(stamp) >= since:
                out.append((Path(job), f"refused: {message}"))
    return out


SUMMARY_METRICS = ("train_psnr", "train_mask_iou", "train_last_mask_iou", "novel_psnr", "3d_mean_error", "3d_last_error",
                   "seconds")


def write_summary(sweep_dir: Path) -> tuple[Path, int]:
    """``<sweep dir>/summary.csv``: per job folder holding a ``metrics.json`` (finished now or
    earlier, e.g. skipped on a rerun), its name and `SUMMARY_METRICS`. Returns (path, rows)."""
    rows = []
    for metrics in sorted(sweep_dir.glob("*/metrics.json")):
        try:
            values = json.loads(metrics.read_text())["metrics"]
        except (OSError, ValueError, KeyError) as e:  # written atomically: unreadable means damaged
            print(f"sweep summary: {metrics} is unreadable ({type(e).__name__}: {e}); left out of summary.csv",
                  file=sys.stderr, flush=True)
            continue
        rows.append({"job": metrics.parent.name, **{k: values.get(k) for k in SUMMARY_METRICS}})
    path = sweep_dir / "summary.csv"
    if rows:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["job", *SUMMARY_METRICS])
            writer.writeheader()
            writer.writerows(rows)
    return path, len(rows)


class SweepSummary(Callback):
    def __init__(self) -> None:
        self.start = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.start = time.time() - 1.0  # file times may be rounded down

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        failed = failed_jobs(sweep_dir, self.start)
        summary, finished = write_summary(sweep_dir) if sweep_dir.is_dir() else (None, 0)
        if finished:
            print(f"{finished} finished run(s) in {sweep_dir}; their metrics: {summary}", flush=True)
        if not failed:
            print(f"sweep finished: every job succeeded ({sweep_dir})", flush=True)
            return
        lines = [f"sweep finished with {len(failed)} failed job(s) ({sweep_dir}):"]
        lines += [f"  {job}: {reason}" for job, reason in failed]
        print("\n".join(lines), file=sys.stderr, flush=True)
        sys.exit(1)
