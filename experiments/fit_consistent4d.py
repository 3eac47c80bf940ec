"""Canonical assets for the Consistent4D videos: fit frame 0 of each video with fit.py's run().

    python -m experiments.fit_consistent4d                       # every video in ../shared/data/consistent4d
    python -m experiments.fit_consistent4d --names blooming_rose --steps 3000 --resolution 256
    python -m experiments.fit_consistent4d --overrides strategy=default sh_degree=0

Each video gets ``data/consistent4d/<name>/canonical.ply`` (plus fit_views.png, fit_log.csv,
metrics.json), the path ``conf/dataset/consistent4d.yaml`` reads. A video whose metrics.json exists
is skipped (``--force`` refits). The videos are monocular (one front camera of the orbit rig), so
the asset is what one view supports: right from the front, depth guessed (about as deep as wide).
A summary table is written to ``data/consistent4d/fit_summary.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPECTRAL_TRACKING_SHARED", REPO.parent / "shared"))
DATA = Path(os.environ.get("SPECTRAL_TRACKING_DATA", REPO / "data"))


def videos(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and any(re.fullmatch(r"\d+\.png", f.name) for f in p.iterdir()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=SHARED / "data" / "consistent4d", help="folder of Consistent4D videos")
    ap.add_argument("--out", type=Path, default=DATA / "consistent4d", help="canonical assets go to <out>/<name>/")
    ap.add_argument("--names", nargs="*", default=None, help="videos to fit (default: all under --root)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--strategy", default="spectral_gs", choices=["default", "spectral_gs"])
    ap.add_argument("--force", action="store_true", help="refit videos that already have metrics.json")
    ap.add_argument("--overrides", nargs="*", default=[], help="extra conf/fit.yaml overrides, key=value")
    args = ap.parse_args(argv)

    from spectral_tracking.fit import run
    from spectral_tracking.fit.settings import FitConfig
    from spectral_tracking.run.config import compose

    if not args.root.is_dir():
        raise SystemExit(f"{args.root}: no Consistent4D folder (expected <root>/<name>/0.png, 1.png, ...)")
    folders = videos(args.root)
    if args.names:
        missing = sorted(set(args.names) - {f.name for f in folders})
        if missing:
            raise SystemExit(f"{args.root}: no videos named {missing}; found {[f.name for f in folders]}")
        folders = [f for f in folders if f.name in args.names]
    rows = []
    for folder in folders:
        out = args.out / folder.name
        if (out / "metrics.json").is_file() and (out / "canonical.ply").is_file() and not args.force:
            print(f"{folder.name}: done already ({out}), skipping (--force refits)")
            metrics = json.loads((out / "metrics.json").read_text())
        else:
            overrides = [f"data.path={folder}", "data.type=consistent4d", "data.frame=0", f"out={out}",
                         f"steps={args.steps}", f"resolution={args.resolution}", f"strategy={args.strategy}",
                         *(["overwrite=true"] if args.force else []), *args.overrides]
            cfg = compose(overrides, config_name="fit", schema=FitConfig)
            print(f"{folder.name}: fitting frame 0 -> {out}")
            metrics = run(cfg)
        rows.append({"name": folder.name, "psnr": round(metrics["psnr"], 2), "num_gaussians": metrics["num_gaussians"],
                     "mean_entropy": round(metrics["mean_entropy"], 3), "needle_fraction": round(metrics["needle_fraction"], 3),
                     "seconds": round(metrics["seconds"], 1), "ply": str(out / "canonical.ply")})
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "fit_summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]) if rows else ["name"])
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(" | ".join(f"{k} {v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
