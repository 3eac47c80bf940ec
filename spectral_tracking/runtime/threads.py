"""How many threads a run uses, and how long its idle threads spin.

Two settings, because they take effect at different times:

- **Spinning** (`limit_spinning`): torch's OpenMP runtime (GNU libgomp in the Linux pip wheel,
  shared by the C++ kernels, see `spectral_tracking.runtime.native`) reads its environment once, when it
  is loaded, i.e. on ``import torch``. By default an idle worker spins about 300,000 times before
  it sleeps; on a machine whose cores are all busy (two runs at once, or one run beside another
  program) a spinning worker holds the core that the thread it waits for needs, and every parallel
  region stalls: two default runs on 2 cores were 27x slower each. ``GOMP_SPINCOUNT=1000`` bounds
  the spin to a few microseconds. Measured on the 2-core machine (300-step default runs, training
  seconds): alone 6.0 s spinning by default, 6.2 s with 1000 spins, 8.0-8.5 s with
  ``OMP_WAIT_POLICY=PASSIVE`` (no spin: every parallel region pays a futex wake-up) and 8.1 s with
  one thread; beside a busy process 24.2 s by default, 10.6 s with 1000 spins; two at once 48 s each
  by default. So `limit_spinning` must run before anything imports torch; the entry points
  (train.py, the benchmarks) call it first. A wait policy or spin count already in the environment
  is kept, and ``KMP_BLOCKTIME`` (Intel's runtime, in ms; 200 by default) gets the same treatment.
- **Thread count** (`resolve` / `configure`): ``threads: auto`` in the config means the cores this
  process may use, divided by the jobs that run at once (Hydra's joblib launcher: its ``n_jobs``;
  a submitit launcher's ``cpus_per_task`` bounds it),
  and never more than ``OMP_NUM_THREADS`` when that is set (the experiment harness sets it per
  worker, and so does joblib's loky backend). `configure` applies it with
  ``torch.set_num_threads``, which also sets the kernels' thread count (they are passed
  ``torch.get_num_threads()``). It can change at any time.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["available_cores", "concurrent_jobs", "configure", "launcher_cpus", "limit_spinning", "resolve"]


SPIN_COUNT = 1000  # libgomp: spins of an idle worker before it sleeps (its default: 300,000)


def limit_spinning() -> bool:
    """Set ``GOMP_SPINCOUNT`` (and ``KMP_BLOCKTIME=1``) for this process and its children, unless
    the environment already sets a wait policy or spin count. Returns whether the setting reaches
    this process's OpenMP runtime, i.e. torch was not imported yet."""
    user_set = any(k in os.environ for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"))
    if not user_set:
        os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    os.environ.setdefault("KMP_BLOCKTIME", "1")
    # Too late for this process if torch is loaded (its runtime read the environment then);
    # children still inherit the setting.
    return not user_set and "torch" not in sys.modules


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which honours taskset and cgroup cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _sweep_launcher():
    """This sweep job's ``hydra.launcher`` config, or None outside a Hydra multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:
        return None
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc.launcher if hc.mode == RunMode.MULTIRUN else None


def concurrent_jobs() -> int:
    """Jobs of this Hydra sweep that run at the same time on this machine: the joblib launcher's
    ``n_jobs`` (joblib's convention: -1 = all cores, -2 = all but one, ...); 1 for a single run, the
    basic launcher and the submitit launchers (whose jobs get their cores from `launcher_cpus`)."""
    launcher = _sweep_launcher()
    if launcher is None or "joblib" not in str(launcher.get("_target_", "")):
        return 1
    n_jobs = launcher.get("n_jobs")
    if n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    if n_jobs < 0:
        n_jobs = available_cores() + 1 + n_jobs
    return max(1, n_jobs)


def launcher_cpus() -> int | None:
    """The cores a submitit launcher gives each job (``hydra.launcher.cpus_per_task``), or None. On
    SLURM the job's affinity says the same; ``submitit_local`` starts every job of the sweep at
    once on this machine, so there it is the only bound."""
    launcher = _sweep_launcher()
    if launcher is None or "submitit" not in str(launcher.get("_target_", "")):
        return None
    cpus = launcher.get("cpus_per_task")
    return int(cpus) if cpus else None


def resolve(setting: int | str, jobs: int = 1, cores: int | None = None, env: dict | None = None,
            cap: int | None = None) -> int:
    """Threads for one process. ``setting``: a positive int, or ``"auto"`` = ``cores // jobs`` (at
    least 1), capped by ``cap`` (a launcher's cores per job) and by ``OMP_NUM_THREADS`` when ``env``
    (default ``os.environ``) sets it."""
    if isinstance(setting, str) and setting.strip().lower() == "auto":
        cores = available_cores() if cores is None else int(cores)
        n = max(1, cores // max(1, int(jobs)))
        if cap is not None:
            n = min(n, max(1, int(cap)))
        cap = (os.environ if env is None else env).get("OMP_NUM_THREADS", "")
        if cap.strip().isdigit() and int(cap) >= 1:
            n = min(n, int(cap))
        return n
    if isinstance(setting, bool):
        raise ValueError(f"threads: expected a positive int or 'auto', got {setting!r}")
    try:
        n = int(setting)
    except (TypeError, ValueError):
        raise ValueError(f"threads: expected a positive int or 'auto', got {setting!r}") from None
    if n < 1 or str(setting).strip() not in (str(n), f"{n}.0"):
        raise ValueError(f"threads: expected a positive int or 'auto', got {setting!r}")
    return n


def configure(setting: int | str = "auto", jobs: int | None = None) -> int:
    """Resolve ``setting`` (see `resolve`; ``jobs`` defaults to `concurrent_jobs`, with a submitit
    launcher's `launcher_cpus` as the cap) and give torch and the C++ kernels that many threads.
    Returns the count."""
    import torch

    if jobs is None:  # the launcher says how many jobs share this machine, or how many cores each has
        n = resolve(setting, concurrent_jobs(), cap=launcher_cpus())
    else:
        n = resolve(setting, jobs)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "ACTIVE" and n > 1:
        warnings.warn(
            f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}: idle OpenMP threads spin, which stalls runs on a "
            "busy machine (unset it, or set PASSIVE)", RuntimeWarning, stacklevel=2,
        )
    return n
