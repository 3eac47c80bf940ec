"""Robustness to a rescaled start (beyond the paper): the canonical scaled by 0.6 to 1.5 about its
centre, on every preset and six creature/motion pairs outside them (benchmark seed 1), several
seeds, Ours and Pixel. One view cannot tell a larger asset from a nearer one, so run it with two or
more views (``--override views=2``) for the scale itself; with one view it measures the mask IoU and
whether the size drifts during tracking (``3d_size_ratio``).

    python -m experiments.scale_curves --variant defaults --override views=2 --jobs 2
    python -m experiments.scale_curves --variant defaults --jobs 2       # one view
    python -m experiments.scale_curves --quick

Success (per rescaled run): final train-view PSNR within 1 dB of the same creature/seed/loss at
scale 1, and 3D error at most that run's + 0.1 asset radii.
"""

from __future__ import annotations

import sys

from experiments import curves

SCALES = [0.6, 0.7, 0.85, 1.0, 1.2, 1.4, 1.5]


def main(argv=None) -> int:
    return curves.main("scale_curves", "scale", SCALES, 1.0, __doc__,
                       "Scale curves: Ours vs Pixel versus the start's scale.", "scale of the start", argv,
                       quick_values=[1.0, 0.7], default_pairs=True)


if __name__ == "__main__":
    sys.exit(main())
