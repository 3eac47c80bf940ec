"""Which ingredient of the method matters: named variants (experiments/variants.py, composed with
'+') at a shift and unshifted, on every preset and several directions, with success rates.

    python -m experiments.ablation_method --jobs 2 [--quick] [--scale paper]
    python -m experiments.ablation_method --variants defaults pixel paper pixel+paper --shifts 0.8 1.2
    python -m experiments.ablation_method --variants paper paper+band_sum paper+svd_rot --seeds 0 1

The default list is the paper's method with one ingredient removed at a time, beside Pixel:
paper, paper+no_annealing, paper+no_mask, paper+no_warmup, paper+no_arap, paper+rigid_mlp,
pixel+paper, and the tracker's defaults beside Pixel from the same start (defaults, pixel).
"""

from __future__ import annotations

import sys

from experiments.harness import SCALES, add_pairs_argument, common_args, finish, fmt, grid, prepare, success_rates, summarize
from experiments.variants import overrides_of

SHIFT = 0.8
DEFAULT_VARIANTS = ["paper", "paper+no_annealing", "paper+no_mask", "paper+no_warmup", "paper+no_arap", "paper+rigid_mlp",
                    "pixel+paper", "defaults", "pixel"]


def render(rows: list[dict]) -> str:
    metrics = [("train_psnr", "train PSNR"), ("novel_psnr", "novel PSNR"), ("train_mask_iou", "mask IoU"),
               ("3d_mean_error", "3D error"), ("3d_size_ratio", "size ratio")]
    stats = {m: summarize(rows, ["variant", "shift"], m, spread_over="creature") for m, _ in metrics}
    rates = success_rates(rows, ["creature", "seed", "variant"], ["variant", "shift"])
    lines = ["| variant | shift | " + " | ".join(t for _, t in metrics) + " | success |", "|---|---|" + "---|" * (len(metrics) + 1)]
    shifts = sorted({r["shift"] for r in rows})
    for variant, shift in ((v, x) for v in dict.fromkeys(r["variant"] for r in rows) for x in shifts):
        cells = []
        for m, _ in metrics:
            s = stats[m].get((variant, shift))
            cells.append(f"{fmt(s['mean'])} [{fmt(s['min'])}, {fmt(s['max'])}]" if s else "-")
        r = rates.get((variant, shift))
        lines.append(f"| {variant} | {shift:g} | " + " | ".join(cells) + f" | {format(r['rate'], '.0%') if r else '-'} |")
    return "\n".join(lines) + ("\n\nMeans over creatures and directions, [min, max] of the per-creature means; success: "
                               "within 1 dB of the same variant's unshifted run and 3D error <= its + 0.1.\n")


def main(argv=None) -> int:
    ap = common_args(__doc__, default_variants=())
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, help="the compared variants (rows), '+' composes")
    ap.add_argument("--shifts", type=float, nargs="+", default=[SHIFT], help="shifted radii (0 is always run too)")
    ap.add_argument("--setting", choices=sorted(SCALES), default="clean", help="the benchmark setting")
    add_pairs_argument(ap, default=False)
    args = ap.parse_args(argv)
    extra = prepare(args)
    names = args.variants[:2] if args.quick else args.variants
    try:
        variants = {name: overrides_of([name]) for name in names}
    except ValueError as e:
        raise SystemExit(f"error: --variants: {e}") from None
    shifts = [0.0, *sorted(set(args.shifts) - {0.0})]
    pairs = [] if args.quick else args.pairs
    todo = grid(SCALES[args.setting][args.scale], variants, args.presets, args.seeds, shifts, extra, pairs=pairs)
    caption = (f"Method ablation ({args.setting} setting) at shift {', '.join(f'{x:g}' for x in shifts[1:])} "
               f"(unshifted runs for the success rate)." if len(shifts) > 1 else
               f"Method ablation ({args.setting} setting), unshifted.")
    return finish("ablation_method", args, todo, render, caption)


if __name__ == "__main__":
    sys.exit(main())
