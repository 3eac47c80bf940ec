"""Paper Fig. 8: the frequency annealing schedule, alpha(t) and the band weights w_k(t).

    python -m experiments.schedule_plot --out outputs/demos [--preset sc4d_mlp] [--mode log]

Draws alpha(t) and w_k(t) (eq. 7) for one of the paper's presets (Table 6) with the warm-up and the
switch to the spatial phase (spectral_end) marked, for each annealed expansion mode side by side, and
prints the schedule at a few steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from spectral_tracking.run.config import PAPER_PRESETS, experiment_schedule
from spectral_tracking.tracking.schedule import ANNEALED_MODES as MODES
from spectral_tracking.tracking.schedule import SpectralSchedule


def schedule_table(schedule: SpectralSchedule, steps: list[int]) -> list[str]:
    lines = []
    for step in steps:
        w = schedule.band_weights(step)
        weights = " ".join(f"{v:.2f}" for v in w.tolist())
        lines.append(f"step {step:6d}  phase {schedule.phase(step):8s}  alpha {schedule.alpha(step):5.2f}  w_k [{weights}]")
    return lines


def plot_schedule(preset: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(MODES), figsize=(5.5 * len(MODES), 5.5), sharex=True, squeeze=False)
    for col, mode in enumerate(MODES):
        schedule = experiment_schedule(preset, mode=mode)
        t = torch.arange(schedule.max_steps)
        alphas = torch.tensor([schedule.alpha(int(s)) for s in t])
        weights = torch.stack([schedule.band_weights(int(s)) for s in t])  # [T, K]
        ax_a, ax_w = axes[0, col], axes[1, col]
        ax_a.plot(t, alphas, color="black")
        ax_a.set_ylabel("alpha(t)")
        ax_a.set_title(f"{preset}, mode={mode}")
        cmap = plt.get_cmap("viridis")
        for k in range(schedule.num_bands):
            ax_w.plot(t, weights[:, k], color=cmap(k / max(schedule.num_bands - 1, 1)), label=f"w_{k}")
        ax_w.set_ylabel("w_k(t)")
        ax_w.set_xlabel("step t")
        for ax in (ax_a, ax_w):
            ax.axvline(schedule.warmup_end, color="gray", ls="--", lw=1)
            ax.axvline(schedule.spectral_end, color="tab:red", ls=":", lw=1)
            ax.axvspan(schedule.spectral_end, schedule.max_steps, color="tab:red", alpha=0.06)
        ax_a.text(schedule.warmup_end, 1.0, " end of warm-up", color="gray", fontsize=8, va="bottom")
        ax_a.text(schedule.spectral_end, 1.0, " spatial phase", color="tab:red", fontsize=8, va="bottom")
        ax_w.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/demos"))
    parser.add_argument("--preset", choices=sorted(PAPER_PRESETS), default="sc4d_mlp")
    args = parser.parse_args()
    path = plot_schedule(args.preset, args.out / f"schedule_{args.preset}.png")
    for mode in MODES:
        schedule = experiment_schedule(args.preset, mode=mode)
        print(f"schedule {args.preset} mode={mode}: {schedule}")
        probe = [0, int(schedule.warmup_end) - 1, int(schedule.warmup_end), 4000, 5000, schedule.spectral_end - 1,
                 schedule.spectral_end]
        for line in schedule_table(schedule, sorted(set(probe))):
            print("  " + line)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
