"""Robustness curves: Ours and Pixel over every creature and several seeds, against one quantity
of the start (the shift radius, the rotation, the scale), with success rates against the same
case at the sweep's reference value (shift 0, rotation 0, scale 1).

`main` is the body of ``shift_curves``, ``rotation_curves`` and ``scale_curves``; each names its
swept setting (a key of conf/train.yaml's schema), its values and its reference. A case's labels:
creature (a preset, or ``<pair>@<seed>``, a creature/motion pair outside the presets generated
with benchmark seed 1, with ``--pairs``), loss, the swept value, seed. Success (per swept run):
final train-view PSNR within 1 dB of the same creature/seed/loss at the reference, and 3D error
at most that run's + 0.1 asset radii.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from experiments.harness import (LOSS_NAMES, SCALES, Case, add_pairs_argument, common_args, creatures, finish, fmt, plot_curves, prepare,
                                 success_rates, summarize)

LOSSES = LOSS_NAMES  # Ours first: the tables' gain column is Ours - Pixel

# (column, title, digits): PSNR / SSIM / LPIPS on training and novel views, mask IoU (every frame, the
# last frame), 3D error (every frame, the last frame) and size ratio
METRICS = [("train_psnr", "train PSNR", 2), ("train_ssim", "train SSIM", 4), ("train_lpips", "train LPIPS", 4),
           ("train_mask_iou", "train mask IoU", 3), ("train_last_mask_iou", "train mask IoU, last frame", 3),
           ("novel_psnr", "novel PSNR", 2), ("novel_ssim", "novel SSIM", 4), ("novel_lpips", "novel LPIPS", 4),
           ("3d_mean_error", "3D error (radii)", 3), ("3d_last_error", "3D error, last frame (radii)", 3),
           ("3d_size_ratio", "size ratio", 3)]


def cases(key: str, scale: str, presets: Sequence[str], values: Sequence[float], seeds: Sequence[int], extra=(),
          pairs: Sequence[str] = ()) -> list[Case]:
    out = []
    for creature, data in creatures(presets, pairs):
        for seed in seeds:
            for value in values:
                for loss in LOSSES:
                    out.append(Case(
                        name=f"{creature.replace('@', '_s')}_{loss}_{key}{value:g}_seed{seed}",
                        overrides=[*SCALES["clean"][scale], *data, f"loss={loss}", f"{key}={value}", f"seed={seed}", *extra],
                        labels={"creature": creature, "loss": loss, key: value, "seed": seed},
                    ))
    return out


def table(key: str, reference: float, what: str):
    def render(rows: list[dict]) -> str:
        values = sorted({r[key] for r in rows})
        lines = []
        for metric, title, digits in METRICS:
            s = summarize(rows, ["loss", key], metric, spread_over="creature")
            if not s:
                continue
            lines += [f"\n**{title}** (mean over creatures and seeds; [min, max] of the per-creature means)\n",
                      f"| {key} | " + " | ".join(LOSSES.values()) + " | Ours - Pixel |", "|---" * (len(LOSSES) + 2) + "|"]
            for v in values:
                cells = [s.get((loss, v)) for loss in LOSSES]
                text = [f"{fmt(c['mean'], digits)} [{fmt(c['min'], digits)}, {fmt(c['max'], digits)}]" if c else "" for c in cells]
                gain = fmt(cells[0]["mean"] - cells[1]["mean"], digits) if all(cells) else ""
                lines.append(f"| {v:g} | " + " | ".join(text) + f" | {gain} |")
        rates = success_rates(rows, ["creature", "seed", "loss"], ["loss", key], shift_key=key, reference=reference)
        poses = success_rates(rows, ["creature", "seed", "loss"], ["loss", key], shift_key=key, reference=reference,
                              psnr_tolerance=None)
        if rates:
            lines += [f"\n**Success rate** (within 1 dB of the same case {what} and 3D error <= its + 0.1; "
                      f"beside it, the pose alone: 3D error <= its + 0.1)\n",
                      f"| {key} | " + " | ".join(f"{n} | {n}, pose" for n in LOSSES.values()) + " |",
                      "|---" * (2 * len(LOSSES) + 1) + "|"]
            for v in values:
                if v == reference:
                    continue
                cells = []
                for loss in LOSSES:
                    c, pose = rates.get((loss, v)), poses.get((loss, v))
                    cells += [f"{c['rate']:.0%} ({c['n']})" if c else "", f"{pose['rate']:.0%}" if pose else ""]
                lines.append(f"| {v:g} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
    return render


def main(name: str, key: str, values: Sequence[float], reference: float, doc: str, caption: str, xlabel: str,
         argv=None, quick_values: Sequence[float] = (), default_pairs: bool = False) -> int:
    ap = common_args(doc, default_seeds=(0, 1, 2, 3))
    ap.add_argument(f"--{key.replace('_', '-')}s", dest="values", type=float, nargs="+", default=list(values))
    add_pairs_argument(ap, default=default_pairs)
    args = ap.parse_args(argv)
    extra = prepare(args)
    if args.quick:
        args.values, args.pairs = list(quick_values) or args.values[:2], []
    if reference not in args.values:
        args.values = [reference, *args.values]
    todo = cases(key, args.scale, args.presets, args.values, args.seeds, extra, args.pairs)

    def plot(rows: list[dict], path: Path) -> Path:
        return plot_curves(rows, path, key, ["loss"], [("train_psnr", "train PSNR (dB)"), ("train_last_mask_iou", "last-frame mask IoU"),
                           ("3d_mean_error", "3D error (radii)")], xlabel, label=lambda k: LOSSES[k[0]])

    return finish(name, args, todo, table(key, reference, f"at {key} {reference:g}"), caption, plot_fn=plot)
