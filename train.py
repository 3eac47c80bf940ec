"""Track a 3DGS asset through video with Spectral Moment supervision.

    python train.py                                   # built-in synthetic benchmark, CPU scale
    python train.py dataset=gart deform=mlp shift=0.6
    python train.py -m shift=0,0.2,0.4,0.6,0.8        # a sweep; finished jobs are skipped on rerun
"""

from spectral_tracking.runtime.threads import limit_spinning

limit_spinning()  # before anything imports torch: its OpenMP runtime reads its settings once, on load

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

import spectral_tracking.run.config  # noqa: F401,E402  (registers the ${frac:...} resolver)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig):
    from spectral_tracking.cli import track_job

    return track_job(cfg)


if __name__ == "__main__":
    from spectral_tracking.cli import precheck

    precheck()  # a misspelt or mistyped setting: one line, exit 2 (before Hydra's multi-line error)
    main()
    from spectral_tracking.runtime.exit import exit_now

    exit_now(0)  # skips the interpreter's 0.9 s teardown of torch / Lightning (see exit_now)
