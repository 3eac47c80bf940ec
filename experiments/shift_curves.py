"""Robustness to the initial shift, over every creature (paper Fig. 4 and Fig. 13).

For every preset of the synthetic benchmark, several shift directions (the run's seed) and the
shift radii {0, 0.2, ..., 1.2} (1.0 and 1.2 are beyond the paper), Ours (annealed spectral moments,
then the spatial loss) and Pixel (the spatial loss from step 0, everything else equal) track the
sequence from the shifted start. Writes ``experiments/results/shift_curves[_<scale>]/``:
``results.csv`` (one row per run), ``table.md`` (means over creatures and directions, with the
per-creature min/max, the gain Ours - Pixel and the success rate) and ``shift_curves.png``.

    python -m experiments.shift_curves --jobs 2                    # CPU scale, the paper's protocol
    python -m experiments.shift_curves --variant defaults --jobs 2 # the tracker's defaults
    python -m experiments.shift_curves --scale paper --jobs 1      # Table 6 at 512 px, 10k steps (GPU)
    python -m experiments.shift_curves --quick                     # a handful of tiny runs (the tests)

Rerunning skips finished runs, so an interrupted sweep continues where it stopped.
Success (per shifted run): final train-view PSNR within 1 dB of the same creature/direction/loss
run at shift 0, and 3D error at most that run's + 0.1 asset radii.
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments.harness import LOSS_NAMES, SCALES, Case, common_args, finish, fmt, plot_curves, prepare, success_rates, summarize

SHIFTS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2]
LOSSES = LOSS_NAMES  # Ours first: the tables' gain column is Ours - Pixel


# (column, title, digits): the PSNR / SSIM / LPIPS on training and novel views, 3D error and size ratio
METRICS = [("train_psnr", "train PSNR", 2), ("train_ssim", "train SSIM", 4), ("train_lpips", "train LPIPS", 4),
           ("novel_psnr", "novel PSNR", 2), ("novel_ssim", "novel SSIM", 4), ("novel_lpips", "novel LPIPS", 4),
           ("3d_mean_error", "3D error (radii)", 3), ("3d_size_ratio", "size ratio", 3)]


def cases(scale: str, presets, shifts, seeds, extra=()) -> list[Case]:
    out = []
    for preset in presets:
        for seed in seeds:
            for shift in shifts:
                for loss in LOSSES:
                    out.append(Case(
                        name=f"{preset}_{loss}_shift{shift:g}_seed{seed}",
                        overrides=[*SCALES["clean"][scale], f"dataset.preset={preset}", f"loss={loss}", f"shift={shift}",
                                   f"seed={seed}", *extra],
                        labels={"creature": preset, "loss": loss, "shift": shift, "seed": seed},
                    ))
    return out


def table(rows: list[dict]) -> str:
    shifts = sorted({r["shift"] for r in rows})
    lines = []
    for metric, title, digits in METRICS:
        s = summarize(rows, ["loss", "shift"], metric, spread_over="creature")
        if not s:
            continue
        lines += [f"\n**{title}** (mean over creatures and directions; [min, max] of the per-creature means)\n",
                  "| shift | " + " | ".join(LOSSES.values()) + " | Ours - Pixel |", "|---" * (len(LOSSES) + 2) + "|"]
        for sh in shifts:
            cells = [s.get((loss, sh)) for loss in LOSSES]
            text = [f"{fmt(c['mean'], digits)} [{fmt(c['min'], digits)}, {fmt(c['max'], digits)}]" if c else "" for c in cells]
            gain = fmt(cells[0]["mean"] - cells[1]["mean"], digits) if all(cells) else ""
            lines.append(f"| {sh:g} | " + " | ".join(text) + f" | {gain} |")
    rates = success_rates(rows, ["creature", "seed", "loss"], ["loss", "shift"])
    if rates:
        lines += ["\n**Success rate** (within 1 dB of the unshifted run and 3D error <= its + 0.1)\n",
                  "| shift | " + " | ".join(LOSSES.values()) + " |", "|---" * (len(LOSSES) + 1) + "|"]
        for sh in shifts[1:]:
            cells = [rates.get((loss, sh)) for loss in LOSSES]
            lines.append(f"| {sh:g} | " + " | ".join(f"{c['rate']:.0%} ({c['n']})" if c else "" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> Path:
    return plot_curves(rows, path, "shift", ["loss"], [("train_psnr", "train PSNR (dB)"), ("novel_psnr", "novel PSNR (dB)"),
                       ("3d_mean_error", "3D error (radii)")], "shift radius", label=lambda key: LOSSES[key[0]])


def main(argv=None) -> int:
    ap = common_args(__doc__, default_seeds=(0, 1, 2, 3))
    ap.add_argument("--shifts", type=float, nargs="+", default=SHIFTS)
    args = ap.parse_args(argv)
    extra = prepare(args)
    if args.quick:
        args.shifts = [0.0, 0.8]
    todo = cases(args.scale, args.presets, args.shifts, args.seeds, extra)
    return finish("shift_curves", args, todo, table, "Shift curves (Fig. 4 / 13): Ours vs Pixel versus the shift radius.",
                  plot_fn=plot)


if __name__ == "__main__":
    sys.exit(main())
