"""Table 3 of the paper: the terms of the spatial loss (eq. 23), MSE / MSE + masked MSE / MSE + BCE /
all, for Pixel and Ours, in the realistic (GART-like) setting at shift 0.6, on every preset and
several directions. Train-view PSNR, ours beside the paper's (GART dogs, 10k steps).

    python -m experiments.ablation_pixel_loss --jobs 2 [--quick] [--scale paper]
"""

from __future__ import annotations

import sys

from experiments.harness import SCALES, common_args, finish, fmt, grid, prepare, summarize

SHIFT = 0.6
TERMS = {  # the paper's column -> overrides of the spatial loss
    "MSE": ["loss.lambda_masked_mse=0", "loss.lambda_bce=0"],
    "MSE + Masked MSE": ["loss.lambda_bce=0"],
    "MSE + BCE": ["loss.lambda_masked_mse=0"],
    "All": [],
}
PAPER = {"spectral": (20.651, 20.206, 20.553, 22.058), "pixel": (16.448, 16.139, 20.003, 20.152)}


def variants() -> dict[str, list[str]]:
    return {f"{loss}|{term}": [f"loss={loss}", *overrides] for loss in ("spectral", "pixel") for term, overrides in TERMS.items()}


def render(rows: list[dict]) -> str:
    stats = summarize(rows, ["variant"], "train_psnr", spread_over="creature")
    lines = ["| method | " + " | ".join(TERMS) + " |", "|---|" + "---|" * len(TERMS)]
    for loss, label in (("spectral", "MLP+Ours"), ("pixel", "MLP+Pixel")):
        cells = []
        for term, ref in zip(TERMS, PAPER[loss]):
            s = stats.get((f"{loss}|{term}",))
            cells.append(f"{fmt(s['mean'])} [{fmt(s['min'])}, {fmt(s['max'])}] ({fmt(ref)})" if s else f"- ({fmt(ref)})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + ("\n\nTrain-view PSNR: mean [per-creature min, max] (the paper's, on the GART dogs).\n")


def main(argv=None) -> int:
    args = common_args(__doc__).parse_args(argv)
    extra, chosen = prepare(args), variants()
    if args.quick:
        chosen = {k: v for k, v in chosen.items() if k.endswith(("|MSE", "|All")) and k.startswith("spectral")}
    todo = grid(SCALES["realistic"][args.scale], chosen, args.presets, args.seeds, [SHIFT], extra)
    for case in todo:  # labels a table can group by
        case.labels["loss"], case.labels["terms"] = case.labels["variant"].split("|")
        case.name = case.name.replace("|", "-").replace(" + ", "+").replace(" ", "_")
    return finish("ablation_pixel_loss", args, todo, render, f"Spatial-loss ablation (Table 3), realistic setting, shift {SHIFT}.")


if __name__ == "__main__":
    sys.exit(main())
