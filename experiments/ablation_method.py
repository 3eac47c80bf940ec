"""Which ingredient of the method matters (beyond the paper): at shift 0.8, Ours with one ingredient
removed at a time, on every preset and several directions, with Pixel and full Ours beside them.

    full          annealed spectral moments (image + mask), warm-up, ARAP, then the spatial loss
    no_annealing  every band from step 0 (loss.expansion=none)
    no_mask       no mask moments (loss.lambda_spec_mask=0)
    no_warmup     bands start growing at step 0 (loss.warmup=0)
    no_arap       loss.lambda_arap=0
    rigid_mlp     deform=rigid_mlp (a shared rigid term composed with the MLP) instead of mlp
    pixel         the Pixel baseline (spatial loss from step 0)

    python experiments/ablation_method.py --jobs 2 [--quick] [--scale paper]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import QUICK, common_args, finish, fmt, grid, success_rates, summarize  # noqa: E402

SHIFT = 0.8
VARIANTS = {
    "full": [], "no_annealing": ["loss.expansion=none"], "no_mask": ["loss.lambda_spec_mask=0"],
    "no_warmup": ["loss.warmup=0"], "no_arap": ["loss.lambda_arap=0"], "rigid_mlp": ["deform=rigid_mlp"],
    "pixel": ["loss=pixel"],
}
BASE = {"cpu": ["experiment=sc4d_mlp_cpu"], "paper": ["experiment=sc4d_mlp", "dataset=synthetic", "trainer=gpu"]}


def render(rows: list[dict]) -> str:
    metrics = [("train_psnr", "train PSNR"), ("novel_psnr", "novel PSNR"), ("3d_mean_error", "3D error"),
               ("3d_size_ratio", "size ratio")]
    stats = {m: summarize(rows, ["variant", "shift"], m, spread_over="creature") for m, _ in metrics}
    rates = success_rates(rows, ["creature", "seed", "variant"], ["variant", "shift"])
    lines = ["| variant | " + " | ".join(t for _, t in metrics) + " | success |", "|---|" + "---|" * (len(metrics) + 1)]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        cells = []
        for m, _ in metrics:
            s = stats[m].get((variant, SHIFT))
            cells.append(f"{fmt(s['mean'])} [{fmt(s['min'])}, {fmt(s['max'])}]" if s else "-")
        r = rates.get((variant, SHIFT))
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {format(r['rate'], '.0%') if r else '-'} |")
    return "\n".join(lines) + ("\n\nMeans over creatures and directions, [min, max] of the per-creature means; success: "
                               "within 1 dB of the same variant's unshifted run and 3D error <= its + 0.1.\n")


def main(argv=None) -> int:
    args = common_args(__doc__).parse_args(argv)
    extra, variants = list(args.override), dict(VARIANTS)
    if args.quick:
        args.presets, args.seeds = args.presets[:1], args.seeds[:1]
        variants = {k: VARIANTS[k] for k in ("full", "no_annealing")}
        extra = [*QUICK, *extra]
    todo = grid(BASE[args.scale], variants, args.presets, args.seeds, [0.0, SHIFT], extra)
    return finish("ablation_method", args, todo, render, f"Method ablation at shift {SHIFT} (unshifted runs for the success rate).")


if __name__ == "__main__":
    sys.exit(main())
