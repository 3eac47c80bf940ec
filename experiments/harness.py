"""What every experiment script shares: cases -> runs (skipping finished ones, in parallel jobs) ->
one CSV row per run -> tables of means with their spread, success rates, plots.

A *case* is one tracking run: a name (its folder under ``<out>/runs/``), Hydra overrides of
``conf/train.yaml`` and labels (the columns that say what it is: creature, loss, shift, ...). Runs
go through the real entry point, `spectral_tracking.run.track.run`, so an interrupted run resumes;
a failed run is reported and the others go on. ``jobs`` runs go at once, each process with
``cores / jobs`` threads (``OMP_NUM_THREADS`` is set before it imports torch), so two jobs on two
cores do not spin against each other.

**A result is reused only for the config that made it.** Every case is composed before anything
runs and its config fingerprint (`spectral_tracking.run.folder.config_fingerprint`: every setting
that changes what a run computes) goes into its ``results.csv`` row. A row, or a run folder's
``metrics.json``, whose fingerprint differs from the case now asked for (a changed default, a
changed override) is run again, never reused; one recorded before a setting was added that does not
apply to the case (`spectral_tracking.run.folder.ADDED_SETTINGS`) still names it.

The scripts share their arguments (`common_args`): ``--scale cpu|paper`` picks the settings'
experiment config (`SCALES`), ``--variant`` adds named variants (`experiments.variants`) to every
case, ``--quick`` turns every script into a handful of tiny runs (`QUICK`, applied by `prepare`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
import traceback
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable, Sequence

from experiments.variants import VARIANTS, overrides_of

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"

# Image and 3D metrics every table reports (metrics.json keys; spectral_end: the step at which the
# spectral phase ended, 0 for Pixel); a missing one is left empty.
METRICS = ["train_psnr", "train_ssim", "train_lpips", "train_mask_iou", "train_last_mask_iou", "novel_psnr", "novel_ssim",
           "novel_lpips", "novel_mask_iou", "3d_mean_error", "3d_last_error", "3d_size_ratio", "3d_rotation_error",
           "3d_depth_error", "initial_iou", "spectral_end", "steps", "seconds", "start_seconds", "run_seconds"]

LOSS_NAMES = {"spectral": "Ours", "pixel": "Pixel"}  # the `loss` config as the tables and figures name it

# The benchmark settings at each scale: cpu (500 steps, 96 px, 150 control points, 6 bands: the
# paper's Table 6 ratios) and paper (Table 6 itself: 10k steps, 512 px, 800 control points, on a GPU).
SCALES = {
    "clean": {"cpu": ["experiment=sc4d_mlp_cpu"], "paper": ["experiment=sc4d_mlp", "dataset=synthetic", "trainer=gpu"]},
    "clean_direct": {"cpu": ["experiment=sc4d_direct_cpu"],
                     "paper": ["experiment=sc4d_direct", "dataset=synthetic", "trainer=gpu"]},
    "realistic": {"cpu": ["experiment=gart_cpu"], "paper": ["experiment=gart", "dataset=synthetic_realistic", "trainer=gpu"]},
    "real": {"cpu": ["experiment=gart_cpu"], "paper": ["experiment=gart", "trainer=gpu"]},  # the dataset is the case's own
}

# Overrides for --quick: tiny runs that exercise the whole pipeline in seconds.
QUICK = ["resolution=32", "max_steps=20", "num_control_points=16", "dataset.frames=4", "loss.num_bands=3",
         "eval.lpips=none", "eval.progression_frames=0", "trainer=debug"]


@dataclass
class Case:
    name: str
    overrides: list[str]
    labels: dict = field(default_factory=dict)


PRESETS = ["quadruped_walk", "humanoid_wave", "hopper_jump", "flower_twist"]
# Creature/motion pairs outside the presets, generated with benchmark seed 1 (another creature
# build and colouring) so that nothing is tuned on the presets alone.
PAIRS = ["quadruped_jump", "quadruped_twist", "humanoid_walk", "humanoid_jump", "humanoid_twist", "hopper_twist"]
PAIRS_SEED = 1


def creatures(presets: Sequence[str], pairs: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
    """(label, dataset overrides) of the presets (benchmark seed 0) and the pairs (``<pair>@1``)."""
    return ([(p, [f"dataset.preset={p}"]) for p in presets]
            + [(f"{p}@{PAIRS_SEED}", [f"dataset.preset={p}", f"dataset.seed={PAIRS_SEED}"]) for p in pairs])


def grid(base: Sequence[str], variants: dict[str, list[str]], presets: Sequence[str], seeds: Sequence[int],
         shifts: Sequence[float], extra: Sequence[str] = (), variant_key: str = "variant", pairs: Sequence[str] = ()) -> list[Case]:
    """Every variant (name -> overrides) x creature (the presets, and ``pairs`` at benchmark seed 1)
    x direction (seed) x shift, on top of ``base``."""
    out = []
    for variant, overrides in variants.items():
        for creature, data in creatures(presets, pairs):
            for seed in seeds:
                for shift in shifts:
                    out.append(Case(
                        name=f"{variant}_{creature.replace('@', '_s')}_shift{shift:g}_seed{seed}",
                        overrides=[*base, *overrides, *data, f"shift={shift}", f"seed={seed}", *extra],
                        labels={variant_key: variant, "creature": creature, "shift": shift, "seed": seed},
                    ))
    return out


def add_pairs_argument(ap, default: bool) -> None:
    """``--pairs [PAIR ...]`` (bare: all six `PAIRS`) and ``--no-pairs`` (the presets only) on ``ap``;
    ``default``: whether the six pairs run when neither is given. A name that is no creature/motion pair
    of the generator is an error when the arguments are parsed."""
    import argparse

    from spectral_tracking.data.synthetic import pair_names

    known = pair_names()

    class Pairs(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            unknown = [v for v in values if v not in known]
            if unknown:
                parser.error(f"--pairs: unknown creature/motion {', '.join(unknown)}; expected some of {', '.join(known)} "
                             f"(bare --pairs: the six {' '.join(PAIRS)}; --no-pairs: the presets only)")
            setattr(namespace, self.dest, list(values) or list(PAIRS))

    group = ap.add_mutually_exclusive_group()
    group.add_argument("--pairs", nargs="*", action=Pairs, metavar="PAIR",
                       help=f"creature/motion pairs outside the presets (benchmark seed 1) measured beside them; bare: "
                            f"the six {' '.join(PAIRS)} (default: {'those six' if default else 'none'})")
    group.add_argument("--no-pairs", dest="pairs", action="store_const", const=[], help="the presets only")
    ap.set_defaults(pairs=list(PAIRS) if default else [])


def common_args(description: str, default_seeds=(0, 1), default_variants=("paper",)):
    """The arguments every experiment script takes. ``default_variants``: the named variants
    (`experiments.variants`) applied to every case unless ``--variant`` says otherwise; the paper's
    tables default to ``paper`` (the paper's start and fixed switch), ``--variant defaults`` runs
    the tracker's defaults."""
    import argparse

    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=["cpu", "paper"], default="cpu",
                    help="cpu: the *_cpu experiment configs; paper: Table 6 at 512 px, 10k steps (GPU)")
    ap.add_argument("--quick", action="store_true", help="a handful of tiny runs (used by the tests)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(default_seeds), help="shift directions per creature")
    ap.add_argument("--presets", nargs="+", default=PRESETS)
    ap.add_argument("--variant", nargs="+", default=list(default_variants),
                    help=f"named variants applied to every case, composed with '+' ({', '.join(VARIANTS)}; experiments/variants.py)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (each gets cores / jobs threads)")
    ap.add_argument("--launcher", choices=LAUNCHERS, default="processes",
                    help="processes: worker processes here; local_processes: submitit jobs here (a cluster run's "
                         "dry run); slurm: one SLURM job per run through submitit, --jobs at once")
    ap.add_argument("--slurm", nargs="+", default=[], metavar="KEY=VALUE",
                    help="submitit's SLURM parameters, e.g. partition=gpu timeout_min=240 gpus_per_node=1 "
                         "cpus_per_task=8 account=myproject (the slurm_ prefix is added where submitit wants it)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override for every run")
    ap.add_argument("--collect", action="store_true",
                    help="start no run: write results.csv and table.md from the runs finished so far (a long sweep's "
                         "partial results, to commit; the same command without it runs the rest)")
    return ap


def prepare(args) -> list[str]:
    """The overrides every case of a script gets after its own: ``--variant``, ``--quick``'s
    (trimming presets and seeds to the first), then ``--override``. Call once after parsing."""
    try:
        extra = overrides_of(args.variant)
    except ValueError as e:
        raise SystemExit(f"error: --variant: {e}") from None
    if args.quick:
        args.presets, args.seeds = args.presets[:1], args.seeds[:1]
        extra += QUICK
    return [*extra, *args.override]


def finish(name: str, args, todo: list[Case], table_fn, caption: str, plot_fn=None) -> int:
    """Run the cases, write results.csv and table.md (``table_fn(rows) -> markdown``), print the table;
    with ``plot_fn(rows, path)``, also ``<name>.png``."""
    out = args.out or RESULTS / (name + ("_quick" if args.quick else "" if args.scale == "cpu" else f"_{args.scale}"))
    metrics = run_cases(todo, out, jobs=args.jobs, launcher=args.launcher, slurm=parse_slurm(args.slurm),
                        start=not getattr(args, "collect", False))
    rows = rows_of(todo, metrics)
    if not rows:
        print("no finished runs yet", file=sys.stderr)
        return 1
    write_csv(rows, out / "results.csv")
    variants = " ".join(getattr(args, "variant", [])) or "-"
    pairs = getattr(args, "pairs", None)
    beside = f"; pairs (benchmark seed {PAIRS_SEED}) {', '.join(pairs)}" if pairs and not args.quick else ""
    text = (f"{caption}\nScale: {args.scale}{' (quick)' if args.quick else ''}; variant: {variants}; presets "
            f"{', '.join(args.presets)}{beside}; directions (seeds) {list(args.seeds)} each; {len(rows)}/{len(todo)} runs "
            f"finished. "
            f"Metrics: per image, data range 1, mean over frames x views.\n\n{table_fn(rows)}")
    (out / "table.md").write_text(text)
    if plot_fn is not None:
        plot_fn(rows, out / f"{name}.png")
    print(text)
    print(f"wrote {out / 'results.csv'} and {out / 'table.md'}")
    return 0 if len(rows) == len(todo) else 1


def compose_case(case: Case, out_dir: str = "/tmp/unused"):
    """The resolved config of a case (without running it)."""
    from omegaconf import OmegaConf

    from spectral_tracking.run.config import compose

    cfg = compose(["eval.videos=false", *case.overrides, f"out_dir={out_dir}", "logger=csv"])
    OmegaConf.resolve(cfg)
    return cfg


def fingerprints(case: Case) -> list[str]:
    """The config fingerprint of a case (what its run records in ``run_meta.json``), then those that
    named the same run before settings that do not apply to it were added
    (`spectral_tracking.run.folder.config_fingerprints`)."""
    from spectral_tracking.run.folder import config_fingerprints

    return config_fingerprints(compose_case(case))


def _run_one(name: str, overrides: list[str], out_dir: str, fresh: bool) -> tuple[str, dict | None, str | None, float]:
    """Worker: compose the config and call the entry point (in a fresh process)."""
    start = time.time()
    try:
        from spectral_tracking.run.config import compose
        from spectral_tracking.run.track import run

        # Experiments need the metrics, not the per-run videos.
        cfg = compose(["eval.videos=false", *overrides, f"out_dir={out_dir}", "logger=csv",
                       *(["skip_finished=false"] if fresh else [])])
        return name, run(cfg)["metrics"], None, time.time() - start
    except Exception as e:  # one failed run must not stop the others
        return name, None, f"{type(e).__name__}: {e}\n{traceback.format_exc()}", time.time() - start


def _folder_fingerprint(folder: Path) -> str | None:
    meta = folder / "run_meta.json"
    try:
        return json.loads(meta.read_text()).get("config_fingerprint") if meta.exists() else None
    except json.JSONDecodeError:
        return None


LAUNCHERS = ("processes", "local_processes", "slurm")
SLURM_DEFAULTS = {"timeout_min": 120, "gpus_per_node": 1, "cpus_per_task": 8, "mem_gb": 32}
GENERIC_SLURM_KEYS = {"timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb", "nodes", "tasks_per_node", "name"}


def parse_slurm(items: Sequence[str]) -> dict:
    """``KEY=VALUE`` items of ``--slurm`` as submitit's AutoExecutor parameters (numbers parsed)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --slurm {item!r}: expected KEY=VALUE, e.g. partition=gpu")
        out[key] = int(value) if value.isdigit() else value
    return out


class _Submitted:
    """A run handed to submitit, with the `concurrent.futures` face `run_cases` reads."""

    def __init__(self, job, name: str) -> None:
        self.job, self.name = job, name

    def done(self) -> bool:
        return self.job.done()

    def result(self):
        try:
            return self.job.result()
        except Exception as e:  # the job itself died (time limit, node failure, out of memory)
            return self.name, None, f"submitit job {self.job.job_id}: {type(e).__name__}: {e}", 0.0


def _submitit_executor(launcher: str, folder: Path, threads: int, slurm: dict):
    import submitit

    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm" if launcher == "slurm" else "local")
    params = {**SLURM_DEFAULTS, **slurm} if launcher == "slurm" else {"timeout_min": 120, "cpus_per_task": threads}
    executor.update_parameters(**{k if k in GENERIC_SLURM_KEYS or k.startswith("slurm_") or launcher != "slurm"
                                  else f"slurm_{k}": v for k, v in params.items()})
    return executor


def _as_completed_within(submit, todo: list, jobs: int):
    """Submit ``todo`` (argument tuples) through ``submit``, at most ``jobs`` pending at once; yield
    each finished handle as it finishes (polled: submitit's jobs are files, not futures)."""
    pending, queue = [], list(todo)
    while queue or pending:
        while queue and len(pending) < jobs:
            pending.append(submit(*queue.pop(0)))
        finished = [p for p in pending if p.done()]
        if not finished:
            time.sleep(2.0)
            continue
        for p in finished:
            pending.remove(p)
            yield p


def run_cases(cases: Sequence[Case], out: Path, jobs: int = 1, cores: int | None = None, launcher: str = "processes",
              slurm: dict | None = None, start: bool = True) -> dict[str, dict]:
    """Run every case not finished yet into ``out/runs/<name>`` (``start=False``: none, only collect
    the finished ones); returns name -> metrics (with the
    case's fingerprint) of the finished ones. ``launcher``: ``processes`` (a pool of worker
    processes here), ``local_processes`` or ``slurm`` (one submitit job per run, here or on a SLURM
    cluster with the ``slurm`` parameters, `SLURM_DEFAULTS` otherwise; submitit's files go to
    ``out/.submitit``); ``jobs`` runs at once in every case. A case is finished when its run folder's
    ``metrics.json``, or its row of a committed ``results.csv`` (the run folders stay on the
    machine that made them; the CSV travels with the repo), carries the case's fingerprint; a
    folder or row made by another config is run again. Prints one line per run, and the failed
    runs at the end (their traceback goes to ``out/runs/<name>/failed.txt``)."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"run_cases: launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError("run_cases: case names must be unique")
    recorded = {r["name"]: r for r in read_csv(out / "results.csv")} if (out / "results.csv").exists() else {}
    done, todo, stale, resuming = {}, [], 0, 0
    accepted = {}
    for c in cases:
        fps = accepted[c.name] = fingerprints(c)
        fp = fps[0]
        folder = runs / c.name
        row = recorded.get(c.name)
        folder_fp = _folder_fingerprint(folder)  # None without the folder or its run_meta.json
        if (folder / "metrics.json").exists() and folder_fp in fps:
            done[c.name] = {**json.loads((folder / "metrics.json").read_text())["metrics"], "fingerprint": fp}
        elif row is not None and row.get("fingerprint") in fps:
            done[c.name] = {**{k: v for k, v in row.items() if k not in c.labels and k != "name"}, "fingerprint": fp}
        else:
            resuming += folder_fp in fps  # an interrupted run of this config: it resumes
            stale += folder_fp not in fps and (row is not None or folder.exists())
            todo.append((c, folder.exists() and folder_fp not in (None, *fps)))  # a folder of another config: started over
    if not start:
        print(f"{len(cases)} runs: {len(done)} finished, {len(todo)} not run (--collect: none started)", flush=True)
        return done
    print(f"{len(cases)} runs: {len(done)} finished, {len(todo)} to run ({stale} of them made by another config, "
          f"{resuming} resuming), {jobs} at a time", flush=True)
    cores = cores or os.cpu_count() or 1
    threads = max(1, cores // max(1, jobs))
    if launcher == "slurm":  # each job has its own allocation
        threads = int({**SLURM_DEFAULTS, **(slurm or {})}["cpus_per_task"])
    failed = []
    env_before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by the workers (and the jobs) before torch loads
    args = [(c.name, c.overrides, str(runs / c.name), restart) for c, restart in todo]
    env_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *([env_path] if env_path else [])])  # the jobs import experiments/
    try:
        with ExitStack() as stack:
            if launcher == "processes":
                pool = stack.enter_context(ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=get_context("spawn")))
                finished = as_completed([pool.submit(_run_one, *a) for a in args])
            else:
                executor = _submitit_executor(launcher, out / ".submitit", threads, slurm or {})
                finished = _as_completed_within(lambda *a: _Submitted(executor.submit(_run_one, *a), a[0]), args,
                                                max(1, jobs))
            for i, fut in enumerate(finished, 1):
                name, metrics, error, seconds = fut.result()
                if metrics is None:
                    failed.append(name)
                    (runs / name).mkdir(parents=True, exist_ok=True)
                    (runs / name / "failed.txt").write_text(error or "failed")
                    print(f"[{i}/{len(todo)}] {name}: FAILED ({error.splitlines()[0] if error else ''})", flush=True)
                else:
                    done[name] = {**metrics, "fingerprint": accepted[name][0]}
                    print(f"[{i}/{len(todo)}] {name}: train PSNR {metrics.get('train_psnr', float('nan')):.2f} "
                          f"({seconds:.0f} s)", flush=True)
    finally:
        for key, value in (("OMP_NUM_THREADS", env_before), ("PYTHONPATH", env_path)):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)} (see their failed.txt)", file=sys.stderr, flush=True)
    return done


def rows_of(cases: Iterable[Case], metrics: dict[str, dict]) -> list[dict]:
    """One row per finished case: its name, labels and every metric of `METRICS`."""
    rows = []
    for c in cases:
        if c.name in metrics:
            m = metrics[c.name]
            per_view = {k: v for k, v in m.items() if k.startswith("view_")}  # with eval.per_view=true
            rows.append({"name": c.name, **c.labels, **{k: m.get(k) for k in METRICS}, **per_view,
                         "fingerprint": m.get("fingerprint")})
    return rows


def write_csv(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict]:
    """Rows of a results.csv with numbers parsed (empty cells become None)."""
    def parse(v: str):
        if v == "":
            return None
        try:
            return float(v)
        except ValueError:
            return v

    with open(path, newline="") as f:
        return [{k: parse(v) for k, v in r.items()} for r in csv.DictReader(f)]


# ------------------------------------------------------------------------------------------------
# Aggregation
# ------------------------------------------------------------------------------------------------
def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]


def summarize(rows: list[dict], by: Sequence[str], metric: str, spread_over: str | None = None) -> dict[tuple, dict]:
    """Per group of ``by`` values: mean of ``metric`` over its rows, n, and the spread: min and max
    over the rows, or, with ``spread_over`` (e.g. "creature"), min and max of the per-``spread_over``
    means (as Fig. 13 draws the per-creature range)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in by)].append(r)
    out = {}
    for key, members in groups.items():
        values = _finite(r.get(metric) for r in members)
        if not values:
            continue
        if spread_over:
            sub: dict = defaultdict(list)
            for r in members:
                sub[r[spread_over]].append(r.get(metric))
            means = [sum(v) / len(v) for v in (_finite(x) for x in sub.values()) if v]
        else:
            means = values
        out[key] = {"mean": sum(values) / len(values), "n": len(values), "min": min(means), "max": max(means)}
    return out


def curves_figure(rows: list[dict], x: str, series: Sequence[str], metrics: Sequence[tuple[str, str]], xlabel: str,
                  label=lambda key: " ".join(map(str, key)), logx: bool = False, title: str | None = None):
    """A matplotlib figure, one panel per ``(metric, title)``: each series (the rows grouped by the
    ``series`` columns) as its mean over creatures and directions against column ``x``, with a band
    from the lowest to the highest per-creature mean (as Fig. 13 draws it). ``label(key)`` names a
    series in the legend."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, (metric, panel_title) in zip(axes[0], metrics):
        curves: dict[tuple, list] = defaultdict(list)
        for key, s in summarize(rows, [*series, x], metric, spread_over="creature").items():
            curves[key[:-1]].append((float(key[-1]), s))
        for key, points in curves.items():
            points.sort(key=lambda p: p[0])
            xs = [p[0] for p in points]
            ax.plot(xs, [p[1]["mean"] for p in points], marker="o", label=label(key))
            ax.fill_between(xs, [p[1]["min"] for p in points], [p[1]["max"] for p in points], alpha=0.15)
        if logx:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_title(panel_title)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(rows: list[dict], path: Path, *args, **kwargs) -> Path:
    """`curves_figure` written to ``path`` (PNG, off-screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = curves_figure(rows, *args, **kwargs)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def success(row: dict, reference: dict, psnr_tolerance: float | None = 1.0, error_tolerance: float = 0.1) -> bool:
    """A shifted run succeeded if its final train-view PSNR is within ``psnr_tolerance`` dB of the
    same case's unshifted run and its 3D error is at most that run's + ``error_tolerance`` radii
    (where either run has no 3D truth, the PSNR condition alone decides). ``psnr_tolerance=None``:
    the pose alone (the 3D error), where there is 3D truth."""
    if psnr_tolerance is None:
        e, e0 = row.get("3d_mean_error"), reference.get("3d_mean_error")
        return e is not None and e0 is not None and e <= e0 + error_tolerance
    if row.get("train_psnr") is None or reference.get("train_psnr") is None:
        return False
    ok = row["train_psnr"] >= reference["train_psnr"] - psnr_tolerance
    e, e0 = row.get("3d_mean_error"), reference.get("3d_mean_error")
    if e is not None and e0 is not None:
        ok = ok and e <= e0 + error_tolerance
    return ok


def success_rates(rows: list[dict], case_keys: Sequence[str], by: Sequence[str], shift_key: str = "shift",
                  reference: float = 0.0, psnr_tolerance: float | None = 1.0) -> dict[tuple, dict]:
    """Success rate (`success`) per group of ``by`` (e.g. loss, shift): each row is compared with the
    row at the reference (``shift_key`` equal to ``reference``: shift 0, rotation 0, scale 1) that
    has the same ``case_keys`` (e.g. creature, seed, loss)."""
    refs = {tuple(r[k] for k in case_keys): r for r in rows if r[shift_key] == reference}
    groups: dict[tuple, list[bool]] = defaultdict(list)
    for r in rows:
        ref = refs.get(tuple(r[k] for k in case_keys))
        if ref is None or r[shift_key] == reference:
            continue
        groups[tuple(r[k] for k in by)].append(success(r, ref, psnr_tolerance))
    return {k: {"rate": sum(v) / len(v), "n": len(v)} for k, v in groups.items()}


def fmt(x, digits: int = 2) -> str:
    return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def demo_main(doc: str, name: str, default_steps: int, run_fn, plot_fn, summary_fn, argv=None) -> None:
    """The command line of the paper's demos (demo_1d, demo_2d): run, plot to ``<out>/<name>.png``,
    print the summary lines (each ending PASS or FAIL) and the figure's path."""
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/demos"))
    parser.add_argument("--steps", type=int, default=default_steps)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: thread start-up costs more than it saves
    results = run_fn(steps=args.steps)
    path = plot_fn(results, args.out / f"{name}.png")
    for line in summary_fn(results):
        print(line)
    print(f"figure: {path}")
