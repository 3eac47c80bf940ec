"""More training views (paper Fig. 11): 1, 2 and 4 views (azimuths 0 / 0,180 / 0,90,180,270)
versus the shift radius, Ours and Pixel, on every preset and several directions. Reports the front
view (0 deg, always trained on) and the side view (90 deg: novel for 1 and 2 views) and the 3D
error.

    python -m experiments.multiview --jobs 2 [--quick] [--scale paper] [--variant defaults]
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments.harness import LOSS_NAMES, SCALES, common_args, finish, fmt, grid, plot_curves, prepare, summarize

SHIFTS = [0.0, 0.4, 0.8]
VIEWS = [1, 2, 4]
FRONT, SIDE = "view_0.0_psnr", "view_90.0_psnr"


def variants(views) -> dict[str, list[str]]:
    return {f"{loss}-v{v}": [f"loss={loss}", f"views={v}"] for v in views for loss in ("spectral", "pixel")}


def render(rows: list[dict]) -> str:
    shifts = sorted({r["shift"] for r in rows})
    lines = ["| views | loss | " + " | ".join(f"front / side PSNR, 3D err @ {s:g}" for s in shifts) + " |",
             "|---|---|" + "---|" * len(shifts)]
    stats = {m: summarize(rows, ["variant", "shift"], m) for m in (FRONT, SIDE, "3d_mean_error")}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        loss, v = variant.split("-v")
        cells = []
        for sh in shifts:
            f, sd, e = (stats[m].get((variant, sh)) for m in (FRONT, SIDE, "3d_mean_error"))
            cells.append(" / ".join(fmt(x["mean"]) if x else "-" for x in (f, sd)) + f", {fmt(e['mean'], 3) if e else '-'}")
        side = "trained" if int(v) == 4 else "novel"
        lines.append(f"| {v} (side {side}) | {LOSS_NAMES[loss]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nMeans over creatures and directions.\n"


def plot(rows: list[dict], path: Path) -> Path:
    """Fig. 11: front and side PSNR and 3D error against the shift, a line per loss x view count."""
    return plot_curves(rows, path, "shift", ["loss", "views"], [(FRONT, "front view (0 deg) PSNR"), (SIDE, "side view (90 deg) PSNR"),
                       ("3d_mean_error", "3D error (radii)")], "shift radius",
                       label=lambda key: f"{LOSS_NAMES[key[0]]}, {key[1]} view(s)")


def main(argv=None) -> int:
    args = common_args(__doc__).parse_args(argv)
    extra, shifts, views = prepare(args), SHIFTS, VIEWS
    if args.quick:
        shifts, views = [0.8], [1, 2]
    todo = grid([*SCALES["clean"][args.scale], "eval.per_view=true"], variants(views), args.presets, args.seeds, shifts, extra)
    for case in todo:
        case.labels["loss"], case.labels["views"] = case.labels["variant"].split("-v")
    return finish("multiview", args, todo, render, "Views 1, 2, 4 versus shift (Fig. 11).", plot_fn=plot)


if __name__ == "__main__":
    sys.exit(main())
