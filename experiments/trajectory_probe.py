"""The trajectory search against the truth, without training (beyond the paper): for each turning
motion and its twin without the turn (experiments/turning.py's sequences), the start stage with
``search.frames=all`` only, and per frame the rotation it found against the Kabsch fit of the true
Gaussians (degrees) and the error of the asset's centre (asset radii). Seconds of search per
sequence, one thread. It reads what the start hands the deformation, before any tracking step.

    python -m experiments.trajectory_probe
    python -m experiments.trajectory_probe --override search.beam=2
    python -m experiments.trajectory_probe --sequences humanoid_twist@1 --frames
    python -m experiments.trajectory_probe --quick

Prints one line per sequence and the means over the turns and the twins (``--frames``: also the
found and true yaw of every frame).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from experiments.turning import BENCHMARK_SEEDS, TURNING


def _yaw(R) -> float:
    """Degrees about the vertical (the creatures' up, +y) of a rotation that turns about it."""
    return math.degrees(math.atan2(float(R[0, 2]), float(R[2, 2])))


def probe(preset: str, benchmark_seed: int, overrides: list[str], out: Path) -> dict:
    """One sequence: per frame, the found and true rotation (yaw and error) and the centre error."""
    import torch

    from spectral_tracking.gaussians import rotation_degrees
    from spectral_tracking.run.config import compose
    from spectral_tracking.run.track import build_targets, start_pose
    from spectral_tracking.tracking.search import rigid_fit

    cfg = compose(["experiment=sc4d_mlp_cpu", f"dataset.preset={preset}", f"dataset.seed={benchmark_seed}", "shift=0",
                   "align=search", "search.frames=all", "deform=rigid_mlp_frames", f"out_dir={out}", *overrides])
    seq, targets = build_targets(cfg)
    _, truth = seq.ground_truth()
    start = time.perf_counter()
    _, meta, (Rs, bs) = start_pose(cfg, seq, targets, torch.device("cpu"))
    seconds = time.perf_counter() - start
    g0 = truth[0].double()
    c = g0.mean(0)
    rows = []
    for t in range(truth.shape[0]):
        R, b = rigid_fit(g0, truth[t].double())
        rows.append({"rotation_error": rotation_degrees(Rs[t] @ R.T), "true_yaw": _yaw(R), "found_yaw": _yaw(Rs[t]),
                     "centre_error": float(((Rs[t] @ c + bs[t]) - (R @ c + b)).norm()) / 0.5})
    return {"frames": rows, "seconds": seconds, "turn_kept": meta.get("search_turn_kept")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--override", action="append", default=[], help="a config override (repeatable)")
    ap.add_argument("--frames", action="store_true", help="print every frame's found and true yaw")
    ap.add_argument("--sequences", nargs="+", default=None, metavar="PRESET@SEED",
                    help="other sequences (preset@benchmark seed, e.g. humanoid_twist@1; default: the turns and their twins)")
    ap.add_argument("--quick", action="store_true", help="one turn, 4 frames at 48 px (a smoke test)")
    ap.add_argument("--out", type=Path, default=Path("outputs/trajectory_probe"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    overrides = list(args.override)
    sequences = [(p, s) for turn, twin in TURNING.items() for p in (turn, twin) for s in BENCHMARK_SEEDS]
    if args.sequences:
        try:
            sequences = [(x.split("@")[0], int(x.split("@")[1])) for x in args.sequences]
        except (IndexError, ValueError):
            ap.error(f"--sequences: expected preset@benchmark_seed (e.g. humanoid_twist@1), got {' '.join(args.sequences)}")
    if args.quick:
        sequences = [("quadruped_turn", 0)]
        overrides = ["dataset.frames=4", "resolution=48", f"dataset.root={args.out / 'data'}", *overrides]
    means = {"turn": [], "twin": [], "other sequence": []}
    for preset, bseed in sequences:
        r = probe(preset, bseed, overrides, args.out / "run")
        rot = [f["rotation_error"] for f in r["frames"]]
        cen = [f["centre_error"] for f in r["frames"]]
        kind = "turn" if preset in TURNING else "twin" if preset in TURNING.values() else "other sequence"
        means[kind].append((sum(rot) / len(rot), sum(cen) / len(cen)))
        print(f"{preset}@{bseed}: rotation error mean {sum(rot) / len(rot):5.1f} max {max(rot):5.1f} degrees | centre error "
              f"mean {sum(cen) / len(cen):.3f} radii | true turn {max(abs(f['true_yaw']) for f in r['frames']):5.1f} | "
              f"rotations kept: {r['turn_kept']} | {r['seconds']:.1f} s", flush=True)
        if args.frames:
            print("  true yaw  " + " ".join(f"{f['true_yaw']:6.0f}" for f in r["frames"]))
            print("  found yaw " + " ".join(f"{f['found_yaw']:6.0f}" for f in r["frames"]))
    for kind, values in means.items():
        if values:
            print(f"mean over the {kind}s ({len(values)}): rotation error {sum(v[0] for v in values) / len(values):.1f} "
                  f"degrees, centre error {sum(v[1] for v in values) / len(values):.3f} radii")
    return 0


if __name__ == "__main__":
    sys.exit(main())
