"""Threads per process and how long idle OpenMP workers spin (spectral_tracking/runtime/threads.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import spectral_tracking.run.config  # noqa: F401  (resolvers)
from spectral_tracking.runtime import threads
from spectral_tracking.run.config import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_auto_is_cores_over_jobs_capped_by_omp_num_threads():
    assert threads.resolve("auto", jobs=1, cores=8, env={}) == 8
    assert threads.resolve("auto", jobs=2, cores=8, env={}) == 4
    assert threads.resolve("auto", jobs=3, cores=2, env={}) == 1  # never 0
    assert threads.resolve("AUTO", jobs=1, cores=8, env={"OMP_NUM_THREADS": "2"}) == 2
    assert threads.resolve("auto", jobs=4, cores=8, env={"OMP_NUM_THREADS": "6"}) == 2  # the smaller
    assert threads.resolve("auto", jobs=1, cores=4, env={"OMP_NUM_THREADS": "junk"}) == 4  # ignored


def test_explicit_counts_and_bad_values():
    assert threads.resolve(3) == 3
    assert threads.resolve("2") == 2
    for bad in (0, -1, "zero", 1.5, True, None, ""):
        with pytest.raises(ValueError, match="threads: expected a positive int or 'auto'"):
            threads.resolve(bad)


def test_configure_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        assert threads.configure(1, jobs=1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_concurrent_jobs_outside_a_sweep_is_one():
    assert threads.concurrent_jobs() == 1


def _as_a_sweep_job(n_jobs: int) -> None:
    """Make this process look like a job of `python train.py -m hydra/launcher=joblib ...`."""
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"],
                      return_hydra_config=True)
    cfg.hydra.mode = "MULTIRUN"
    HydraConfig.instance().set_config(cfg)


def test_concurrent_jobs_reads_the_joblib_launcher():
    from hydra.core.hydra_config import HydraConfig

    try:
        _as_a_sweep_job(2)
        assert threads.concurrent_jobs() == 2
        _as_a_sweep_job(-1)  # joblib: every core
        assert threads.concurrent_jobs() == threads.available_cores()
        assert threads.resolve("auto", threads.concurrent_jobs(), cores=threads.available_cores(), env={}) == 1
    finally:
        HydraConfig.instance().cfg = None


def test_bad_trainer_threads_is_a_config_error(tmp_path):
    from spectral_tracking.run.track import run

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["trainer.threads=lots", f"out_dir={tmp_path / 'run'}", "logger=none"])
    with pytest.raises(ConfigError, match="trainer.threads"):
        run(cfg)
    assert not (tmp_path / "run").exists()


def _python(code: str, env_extra: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "OMP_DISPLAY_ENV", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_the_entry_point_limits_spinning_in_torch_openmp_runtime():
    """train.py sets the spin count before torch loads, and torch's runtime (which the C++ kernels
    share) really reads it: libgomp prints its settings at start-up with OMP_DISPLAY_ENV."""
    code = (
        "import importlib.util, os, sys\n"
        "spec = importlib.util.spec_from_file_location('entry', 'train.py')\n"
        "entry = importlib.util.module_from_spec(spec); spec.loader.exec_module(entry)\n"
        "print('spin', os.environ.get('GOMP_SPINCOUNT'), 'torch loaded', 'torch' in sys.modules)\n"
        "import torch; torch.ones(100_000).sum()\n"
    )
    res = _python(code, {"OMP_DISPLAY_ENV": "VERBOSE"})
    assert res.returncode == 0, res.stderr
    assert f"spin {threads.SPIN_COUNT} torch loaded False" in res.stdout
    if "OPENMP DISPLAY ENVIRONMENT" not in res.stderr:
        pytest.skip("this torch's OpenMP runtime does not print its settings (not GNU libgomp)")
    assert f"GOMP_SPINCOUNT = '{threads.SPIN_COUNT}'" in res.stderr


def test_limit_spinning_keeps_what_the_user_set_and_is_too_late_after_torch():
    res = _python("from spectral_tracking.runtime import threads; import os; "
                  "print(threads.limit_spinning(), os.environ['OMP_WAIT_POLICY'], os.environ.get('GOMP_SPINCOUNT'))",
                  {"OMP_WAIT_POLICY": "PASSIVE"})
    assert res.stdout.split() == ["False", "PASSIVE", "None"], res.stderr
    res = _python("from spectral_tracking.runtime import threads; import os; print(threads.limit_spinning(), os.environ['GOMP_SPINCOUNT'])",
                  {"GOMP_SPINCOUNT": "50"})
    assert res.stdout.split() == ["False", "50"], res.stderr
    res = _python("import torch; from spectral_tracking.runtime import threads; print(threads.limit_spinning())", {})
    assert res.stdout.split() == ["False"], res.stderr


def test_a_submitit_job_gets_its_launcher_cpus_and_a_wandb_group():
    """hydra/launcher=slurm or local_processes: each job is one process with cpus_per_task threads
    (submitit_local starts every job at once, so `auto` must not take every core), and a wandb run
    of the sweep is grouped by the sweep's folder."""
    from hydra.core.hydra_config import HydraConfig

    from spectral_tracking.run.loggers import wandb_group

    try:
        for launcher, cpus in (("local_processes", 1), ("slurm", 8)):
            with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
                cfg = compose("train", overrides=[f"hydra/launcher={launcher}", "hydra.sweep.dir=/tmp/sweep_x", "logger=wandb"],
                              return_hydra_config=True)
            cfg.hydra.mode = "MULTIRUN"
            HydraConfig.instance().set_config(cfg)
            assert threads.concurrent_jobs() == 1 and threads.launcher_cpus() == cpus
            before = torch.get_num_threads()
            try:
                assert threads.configure("auto") == min(cpus, threads.resolve("auto"))
                assert threads.configure(3) == 3  # an explicit count is the user's
            finally:
                torch.set_num_threads(before)
            assert wandb_group(cfg) == "/tmp/sweep_x"
            cfg.logger.group = "paper-table-2"
            assert wandb_group(cfg) == "paper-table-2"
    finally:
        HydraConfig.instance().cfg = None
    assert threads.launcher_cpus() is None
