"""Robustness to the initial shift, over every creature (paper Fig. 4 and Fig. 13).

For every preset of the synthetic benchmark, several shift directions (the run's seed) and the
shift radii {0, 0.2, ..., 1.2} (1.0 and 1.2 are beyond the paper), Ours (annealed spectral moments,
then the spatial loss) and Pixel (the spatial loss from step 0, everything else equal) track the
sequence from the shifted start. Writes ``experiments/results/shift_curves[_<scale>]/``:
``results.csv`` (one row per run), ``table.md`` (means over creatures and directions, with the
per-creature min/max, the gain Ours - Pixel and the success rate) and ``shift_curves.png``.

    python -m experiments.shift_curves --jobs 2                    # CPU scale, the paper's protocol
    python -m experiments.shift_curves --variant defaults --jobs 2 # the tracker's defaults
    python -m experiments.shift_curves --pairs --jobs 2            # and six pairs outside the presets
    python -m experiments.shift_curves --scale paper --jobs 1      # Table 6 at 512 px, 10k steps (GPU)
    python -m experiments.shift_curves --quick                     # a handful of tiny runs (the tests)

Rerunning skips finished runs, so an interrupted sweep continues where it stopped.
Success (per shifted run): final train-view PSNR within 1 dB of the same creature/direction/loss
run at shift 0, and 3D error at most that run's + 0.1 asset radii.
"""

from __future__ import annotations

import sys

from experiments import curves

SHIFTS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2]


def main(argv=None) -> int:
    return curves.main("shift_curves", "shift", SHIFTS, 0.0, __doc__,
                       "Shift curves (Fig. 4 / 13): Ours vs Pixel versus the shift radius.", "shift radius", argv,
                       quick_values=[0.0, 0.8])


if __name__ == "__main__":
    sys.exit(main())
