"""Fit a canonical 3DGS asset (canonical.ply) to posed RGBA images: step one of the workflow.

    python fit.py data.path=data/synthetic/<sequence>                  # frame 0 of its training views
    python fit.py data.path=../shared/data/consistent4d/blooming_rose data.type=consistent4d out=data/consistent4d/blooming_rose
    python fit.py data.path=<nerf_synthetic>/lego strategy=default sh_degree=3
    python fit.py -m strategy=default,spectral_gs data.path=...           # compare the two strategies

An `out` folder holding an earlier fit is refused unless overwrite=true; a dataset's own folder always.
Bad input is one line on stderr and exit status 2.
"""


import hydra
from omegaconf import DictConfig

import spectral_tracking.run.config  # noqa: F401  (registers the ${frac:...} resolver)


@hydra.main(version_base="1.3", config_path="conf", config_name="fit")
def main(cfg: DictConfig):
    from spectral_tracking.cli import fit_job

    return fit_job(cfg)


if __name__ == "__main__":
    from spectral_tracking.cli import precheck

    precheck(config_name="fit")  # a misspelt or mistyped setting: one line, exit 2 (before Hydra's multi-line error)
    import spectral_tracking.fit.settings  # noqa: F401  (registers fit_schema, conf/fit.yaml's schema; after precheck,
    #                                         which sets the threads' spinning before torch loads)
    main()
    from spectral_tracking.runtime.exit import exit_now

    exit_now(0)  # skips the interpreter's 0.9 s teardown of torch / Lightning (see exit_now)
