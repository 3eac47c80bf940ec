"""Runs frame by frame, from the ``"frames"`` of their ``metrics.json`` (`evaluation.evaluate`).

Two uses:

    python -m experiments.frames RUN_DIR [RUN_DIR ...]                     # each run's frames, one row a run
    python -m experiments.frames --pairs experiments/results/rotation_null_lite --key rotation

``--pairs``: a harness results folder (``results.csv`` and ``runs/``). Each run whose ``--key`` is not
the folder's lowest value is paired with the run of the same case at the lowest value (the same
creature, seed and loss), and the pair is read frame by frame: where the two differ in train PSNR,
is it one frame or every frame? Per pair: the difference in train PSNR (the run at the other value
minus the reference), in how many frames the better run of the two is better, the first frame's
difference (the canonical pose on the synthetic benchmark), the largest difference of a frame, and
the difference of the PSNR of the frames' mean squared error ("pooled": one number per run, which a
few near-perfect frames cannot swing the way they swing a mean of per-frame PSNRs). Below: the same
over the pairs that differ by more than ``--over`` dB, and the spread of both differences.

Standard library only (reads JSON and CSV).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from pathlib import Path
from typing import NamedTuple

KEYS = ("train_psnr", "train_mask_iou", "3d_error")


def frames_of(run: Path) -> dict[str, list[float | None]]:
    path = run / "metrics.json"
    if not path.is_file():
        raise SystemExit(f"{path}: no metrics.json (is {run} a finished run's folder?)")
    frames = json.loads(path.read_text()).get("frames")
    if not frames:
        raise SystemExit(f"{path}: no \"frames\" (a run made before 2026-12-07 has none; run it again into a new folder)")
    return frames


def train_psnr(run: Path) -> list[float]:
    """The run's train PSNR frame by frame; an error naming the file where it has none or a frame's is null."""
    path = run / "metrics.json"
    values = frames_of(run).get("train_psnr")
    if values is None:
        raise SystemExit(f"{path}: \"frames\" has no train_psnr (eval.protocol=gsgd keeps only the mask IoU per frame)")
    if any(v is None for v in values):
        raise SystemExit(f"{path}: train_psnr is null (not a number) in frame(s) "
                         f"{[t for t, v in enumerate(values) if v is None]}; those frames cannot be compared")
    return values


def show_runs(runs: list[Path]) -> None:
    read = {run.name: frames_of(run) for run in runs}
    for key in KEYS:
        rows = [(name, frames.get(key)) for name, frames in read.items()]
        rows = [(n, v) for n, v in rows if v and all(x is not None for x in v)]
        if not rows:
            continue
        digits = 2 if key.endswith("psnr") else 3
        print(f"{key} by frame (mean | frames 0..T-1)")
        width = max(len(n) for n, _ in rows)
        for name, values in rows:
            print(f"  {name:<{width}}  {statistics.fmean(values):.{digits}f} | " + " ".join(f"{x:.{digits}f}" for x in values))


def pairs(folder: Path, key: str) -> list[tuple[str, str, float]]:
    """(reference run, other run, the other's key value) of every case in ``folder``'s results.csv."""
    path = folder / "results.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: no results.csv (is {folder} a harness results folder?)")
    rows = list(csv.DictReader(path.open()))
    if not rows or key not in rows[0]:
        raise SystemExit(f"{path}: no column {key!r} (columns: {', '.join(rows[0]) if rows else 'none'})")
    header = list(rows[0])
    if "train_psnr" not in header:
        raise SystemExit(f"{path}: no column train_psnr (is it a harness results.csv?)")
    # a case: every label column (between the name and the first metric) but the key
    case = [c for c in header[1:header.index("train_psnr")] if c != key]
    values = {}
    for i, r in enumerate(rows, 2):
        try:
            values[r["name"]] = float(r[key])
        except ValueError:
            raise SystemExit(f"{path}, line {i}: {key} is {r[key]!r}, not a number") from None
    reference = min(values.values())
    refs: dict[tuple, str] = {}
    for r in rows:
        if values[r["name"]] == reference:
            label = tuple(r[c] for c in case)
            if label in refs:
                raise SystemExit(f"{path}: {refs[label]} and {r['name']} are both the reference of one case "
                                 f"({', '.join(case)}); give --key the column that tells them apart")
            refs[label] = r["name"]
    out = []
    for r in rows:
        ref = refs.get(tuple(r[c] for c in case))
        if values[r["name"]] != reference and ref is not None:
            out.append((ref, r["name"], values[r["name"]]))
    return out


def pooled(psnrs: list[float]) -> float:
    """The PSNR of the mean squared error over frames (data range 1)."""
    return -10 * math.log10(statistics.fmean(10 ** (-p / 10) for p in psnrs))


class Pair(NamedTuple):
    """One pair read frame by frame (differences: the other run minus the reference, dB)."""
    name: str  # the other run
    mean: float  # train PSNR
    better: int  # frames where the better run of the two is better
    frames: int
    first: float  # the first frame's
    largest: float  # the largest of a frame
    pooled: float  # the PSNR of the frames' mean squared error

    def others(self) -> float:
        """The other frames' mean difference."""
        return (self.mean * self.frames - self.first) / (self.frames - 1)


def show_pairs(folder: Path, key: str, over: float) -> None:
    runs = folder / "runs"
    read: list[Pair] = []
    for ref, other, _ in pairs(folder, key):
        a, b = train_psnr(runs / ref), train_psnr(runs / other)
        if len(a) != len(b) or len(a) < 2:
            raise SystemExit(f"{runs / ref} and {runs / other}: {len(a)} and {len(b)} frames; a pair needs the same "
                             f"number of frames, at least 2")
        d = [y - x for x, y in zip(a, b)]
        mean = statistics.fmean(b) - statistics.fmean(a)
        better = sum(1 for x in d if (x > 0) == (mean > 0))
        read.append(Pair(other, mean, better, len(d), d[0], max(d, key=abs), pooled(b) - pooled(a)))
    print(f"{len(read)} pairs in {folder} ({key} against the lowest value): train PSNR by frame")
    print("| run | difference (dB) | frames where the better run is better | first frame | largest frame | pooled |")
    print("|---|---|---|---|---|---|")
    for p in sorted(read, key=lambda p: -abs(p.mean)):
        print(f"| {p.name} | {p.mean:+.2f} | {p.better} of {p.frames} | {p.first:+.2f} | {p.largest:+.2f} | {p.pooled:+.2f} |")
    if len(read) > 1:
        print(f"\nthe differences' standard deviation: {statistics.pstdev(p.mean for p in read):.2f} dB (mean of the "
              f"frames' PSNRs, the benchmark's metric), {statistics.pstdev(p.pooled for p in read):.2f} dB pooled; "
              f"beyond 1 dB: {sum(abs(p.mean) > 1 for p in read)} and {sum(abs(p.pooled) > 1 for p in read)} of {len(read)}")
    big = [p for p in read if abs(p.mean) > over]
    if big:
        print(f"the {len(big)} pairs more than {over:g} dB apart: the better run better in "
              f"{statistics.fmean(p.better / p.frames for p in big):.0%} of the frames on average; the first frame "
              f"{statistics.fmean(abs(p.first) for p in big):.2f} dB apart, the other frames "
              f"{statistics.fmean(abs(p.others()) for p in big):.2f} dB (the other frames' mean "
              f"difference, its absolute value averaged over the pairs)")
    small = [p for p in read if abs(p.mean) <= over]
    if small:
        print(f"the {len(small)} others: better in {statistics.fmean(p.better / p.frames for p in small):.0%} of the frames")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", type=Path, help="run folders (each with a metrics.json)")
    ap.add_argument("--pairs", type=Path, help="a harness results folder: pair each case with its reference")
    ap.add_argument("--key", default="rotation", help="the column whose lowest value is the reference (--pairs)")
    ap.add_argument("--over", type=float, default=1.0, help="the pairs further apart than this (dB) are summed apart")
    args = ap.parse_args(argv)
    if bool(args.runs) == bool(args.pairs):
        ap.error("give run folders or --pairs FOLDER (one of the two)")
    if args.pairs:
        show_pairs(args.pairs, args.key, args.over)
    else:
        show_runs(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
