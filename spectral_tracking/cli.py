"""Console scripts ``spectral-track`` and ``spectral-fit`` (the same as ``python train.py`` and
``python fit.py`` at the repository root, runnable from any folder after ``pip install .``), and
`config_dir`, where the Hydra configs are found.

    spectral-track shift=0.6 deform=rigid_mlp        # outputs/track/<time>/ under the current folder
    spectral-fit data.path=data/synthetic/<sequence>
"""

from __future__ import annotations

import sys

from spectral_tracking.runtime.paths import config_dir  # noqa: F401  (re-exported)


def precheck(argv: list[str] | None = None, config_name: str = "train") -> None:
    """Compose a tracking run's (or a fit's) config from the command line before Hydra does, so that a setting
    Hydra cannot apply (a misspelt key, a value of the wrong type, an unknown option) is one line
    and exit status 2 instead of Hydra's multi-line error, and a refused setting writes nothing (not
    even Hydra's log in outputs/). Sweeps and Hydra's own flags go straight to Hydra."""
    from spectral_tracking.errors import USER_ERRORS

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a.startswith("-") for a in args) or any("," in a.split("=", 1)[-1] for a in args if "=" in a):
        return
    from spectral_tracking.runtime import preload, threads

    threads.limit_spinning()  # before torch loads (the checks bring it in)
    preload.stack()  # torch and Lightning with the collector paused, as the run would import them
    if config_name == "fit":
        from omegaconf import OmegaConf

        from spectral_tracking.fit.run import check_settings
        from spectral_tracking.fit.settings import FitConfig as schema

        def check(cfg):
            check_settings(OmegaConf.to_container(cfg, resolve=True))
    else:
        from spectral_tracking.run.config import validate as check
        from spectral_tracking.tracking.settings import RunConfig as schema
    from omegaconf import open_dict

    from spectral_tracking.run.config import compose

    settings = [a for a in args if not a.startswith(("hydra.", "hydra/"))]
    try:
        cfg = compose(settings, config_name, schema, return_hydra_config=True)
        default_run_dir = str(cfg.hydra.run.dir)  # Hydra's run folder for these settings, its time stamp taken now
        with open_dict(cfg):
            del cfg["hydra"]
        check(cfg)
        if argv is not None or any(a.startswith("hydra.run.dir=") for a in args):
            return  # (a caller checking settings: nothing is made)
        # The run folder is made here, not by Hydra: one that cannot be made is one line, and one made for a
        # command refused later is removed again (runtime/paths.py). Given as out_dir= (out= for a fit), it is
        # also Hydra's run folder: nothing in outputs/ beside it.
        from spectral_tracking.runtime.paths import claim_run_dir

        key = "out" if config_name == "fit" else "out_dir"
        given = [a.split("=", 1)[1] for a in settings if a.startswith(f"{key}=")]
        run_dir = given[-1] if given and given[-1] else default_run_dir
        claim_run_dir(run_dir, key)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.argv.append(f"hydra.run.dir={run_dir}")


def _hydra_main(config_name: str, body, job_name: str) -> None:
    import hydra

    import spectral_tracking.run.config  # registers the ${frac:...} resolver and the schemas

    precheck(config_name=config_name)
    if config_name == "fit":
        import spectral_tracking.fit.settings  # noqa: F401  (registers fit_schema, conf/fit.yaml's schema)
    # Hydra names the job (and its log file) after the calling script: keep train.py's / fit.py's names.
    sys.argv.append(f"hydra.job.name={job_name}")
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=config_name)(body)()
    from spectral_tracking.runtime.exit import exit_now

    exit_now(0)


def track_job(cfg):
    """The body of ``python train.py`` and ``spectral-track``: a run (or a sweep job); a user error
    is one line and exit status 2, an interrupted run exits 143 / 130 after saving a checkpoint."""
    from spectral_tracking.errors import USER_ERRORS, RunInterrupted
    from spectral_tracking.run.track import run_job

    try:
        result = run_job(cfg)
    except USER_ERRORS as e:  # bad config or missing data: the message says what to do, no stack trace
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a read-only or full disk: one line; anything else keeps its trace
        _exit_on_write_failure(e)
        raise
    except RunInterrupted as e:  # SIGTERM / SIGINT: checkpoint saved, non-zero exit for the scheduler
        print(str(e), file=sys.stderr)
        sys.exit(e.exit_code)
    return None if result is None else result["metrics"]


def fit_job(cfg):
    """The body of ``python fit.py`` and ``spectral-fit``: a user error is one line and exit status 2."""
    from spectral_tracking.errors import USER_ERRORS
    from spectral_tracking.fit.run import run

    try:
        return run(cfg)
    except USER_ERRORS as e:  # bad input or setting: the message names the file or key and what to do
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a read-only or full disk: one line; anything else keeps its trace
        _exit_on_write_failure(e)
        raise


def _exit_on_write_failure(error: BaseException) -> None:
    from spectral_tracking.errors import write_failure

    line = write_failure(error)
    if line is not None:
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2)


def track_main() -> None:
    """``spectral-track [group=option ...] [key=value ...]``: a tracking run (see ``train.py``)."""
    _hydra_main("train", track_job, "train")


def fit_main() -> None:
    """``spectral-fit data.path=... [key=value ...]``: fit a canonical asset (see ``fit.py``)."""
    _hydra_main("fit", fit_job, "fit")
