"""Is the CPU scale converged? Ours and Pixel at shift 0 and 0.8 with the step budget doubled and
doubled again (500 / 1000 / 2000 steps, every schedule step scaling with max_steps as in Table 6's
ratios), on every preset and several directions. The CPU-scale configs should use a budget at which
doubling the steps moves the unshifted and the shift-0.8 means by < 0.5 dB (the experiments issue).

    python -m experiments.budget --jobs 2 [--steps 500 1000 2000] [--quick] [--variant defaults]
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments.harness import LOSS_NAMES, SCALES, common_args, finish, fmt, grid, plot_curves, prepare, summarize

SHIFTS = [0.0, 0.8]


def render(rows: list[dict]) -> str:
    stats = {m: summarize(rows, ["variant", "shift"], m, spread_over="creature") for m in ("train_psnr", "3d_mean_error")}
    steps = sorted({int(r["steps_budget"]) for r in rows})
    lines = ["| loss | shift | " + " | ".join(f"train PSNR @ {s}" for s in steps) + " | change per doubling (dB) | "
             + " | ".join(f"3D err @ {s}" for s in steps) + " |", "|---|---|" + "---|" * (2 * len(steps) + 1)]
    for loss in ("spectral", "pixel"):
        for shift in sorted({r["shift"] for r in rows}):
            ps = [stats["train_psnr"].get((f"{loss}-{s}", shift)) for s in steps]
            es = [stats["3d_mean_error"].get((f"{loss}-{s}", shift)) for s in steps]
            deltas = [fmt(b["mean"] - a["mean"]) if a and b else "-" for a, b in zip(ps, ps[1:])]
            lines.append(f"| {LOSS_NAMES[loss]} | {shift:g} | "
                         + " | ".join(f"{fmt(p['mean'])} [{fmt(p['min'])}, {fmt(p['max'])}]" if p else "-" for p in ps)
                         + f" | {', '.join(deltas)} | " + " | ".join(fmt(e["mean"], 3) if e else "-" for e in es) + " |")
    return "\n".join(lines) + "\n\nMeans over creatures and directions, [min, max] of the per-creature means.\n"


def plot(rows: list[dict], path: Path) -> Path:
    """Train PSNR and 3D error against the step budget (log scale), a line per loss x shift."""
    return plot_curves(rows, path, "steps_budget", ["loss", "shift"], [("train_psnr", "train PSNR (dB)"),
                       ("3d_mean_error", "3D error (radii)")], "steps", logx=True,
                       label=lambda key: f"{LOSS_NAMES[key[0]]}, shift {float(key[1]):g}")


def main(argv=None) -> int:
    ap = common_args(__doc__)
    ap.add_argument("--steps", type=int, nargs="+", default=[500, 1000, 2000])
    args = ap.parse_args(argv)
    extra = prepare(args)
    if args.quick:
        args.steps = [10, 20]
    variants = {f"{loss}-{s}": [f"loss={loss}", f"max_steps={s}"] for s in args.steps for loss in ("spectral", "pixel")}
    todo = grid(SCALES["clean"][args.scale], variants, args.presets, args.seeds, SHIFTS, extra)
    for case in todo:
        case.labels["loss"], case.labels["steps_budget"] = case.labels["variant"].split("-")
        if args.quick:  # QUICK's max_steps=20 must not override the budget: put the budget last
            case.overrides = [o for o in case.overrides if not o.startswith("max_steps")] + [f"max_steps={case.labels['steps_budget']}"]
    return finish("budget", args, todo, render, "Step budget at CPU scale: does doubling the steps still move the means?", plot_fn=plot)


if __name__ == "__main__":
    sys.exit(main())
