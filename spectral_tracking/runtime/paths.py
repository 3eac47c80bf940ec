"""Where the project reads and writes outside a run folder: defined once, here.

- ``REPO``: the checkout this package lives in (the package's parent folder).
- ``data_root()``: generated and downloaded data, ``$SPECTRAL_TRACKING_DATA`` or ``<REPO>/data``
  (the configs use the same variable: ``${oc.env:SPECTRAL_TRACKING_DATA,data}``).
- ``shared_root()``: the project's shared real data and papers, ``$SPECTRAL_TRACKING_SHARED`` or
  ``<REPO>/../shared`` (absent on a user's machine; tests that need it skip).
- ``config_dir()``: the Hydra configs (``train.yaml``, ``fit.yaml``): ``spectral_tracking/conf``
  inside an installed wheel (setup.py ships the repository's ``conf/`` there), else ``<REPO>/conf``.
- ``cache_dir()``: the per-user cache (LPIPS weights, compiled C++ kernels),
  ``$SPECTRAL_TRACKING_CACHE``, else ``$XDG_CACHE_HOME/spectral_tracking``, else
  ``~/.cache/spectral_tracking``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE_ENV_VAR = "SPECTRAL_TRACKING_CACHE"
DATA_ENV_VAR = "SPECTRAL_TRACKING_DATA"
SHARED_ENV_VAR = "SPECTRAL_TRACKING_SHARED"


def data_root() -> Path:
    """Root of generated / downloaded data sets (``data/`` of the checkout by default)."""
    override = os.environ.get(DATA_ENV_VAR)
    return Path(override).expanduser() if override else REPO / "data"


def shared_root() -> Path:
    """Root of the project's shared data (``../shared`` beside the checkout by default)."""
    override = os.environ.get(SHARED_ENV_VAR)
    return Path(override).expanduser() if override else REPO.parent / "shared"


def cache_dir() -> Path:
    """Root of this project's user cache (LPIPS weights in ``lpips/``, native kernels in ``ext/``)."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "spectral_tracking"


def config_dir() -> Path:
    """The folder holding ``train.yaml`` and ``fit.yaml`` (see the module docstring)."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no Hydra configs (train.yaml) in {package / 'conf'} or {package.parent / 'conf'}; "
                            f"reinstall the package (pip install .)")


_NEW_RUN_DIR_ENV = "SPECTRAL_TRACKING_NEW_RUN_DIR"
_NEW_RUN_TOP_ENV = "SPECTRAL_TRACKING_NEW_RUN_TOP"


def note_new_run_dir(path: str | Path) -> None:
    """Record, before Hydra creates it as its run folder, that ``path`` did not exist: a run refused
    on bad data may then remove it again (`made_for_this_run`). Only a path that does not exist yet
    is recorded."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        os.environ[_NEW_RUN_DIR_ENV] = str(path)


def made_for_this_run(path: str | Path) -> bool:
    """Whether ``path`` is the folder `note_new_run_dir` recorded as not existing before this command."""
    return os.environ.get(_NEW_RUN_DIR_ENV) == str(Path(path).expanduser().resolve())


def claim_run_dir(path: str | Path, key: str = "out_dir") -> None:
    """Make ``path``, a command's run folder (the setting ``key``), before Hydra or the run would, so
    that a folder that cannot be made is one line (`ConfigError`) and not a traceback; one made here is
    noted (`note_new_run_dir`) so that a command refused on bad input removes it again
    (`remove_if_untouched`). An existing folder is used as it is."""
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        return
    top = path
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    note_new_run_dir(path)
    os.environ[_NEW_RUN_TOP_ENV] = str(top)  # the first folder made: an empty outputs/track/ goes too
    try:
        path.mkdir(parents=True)
    except OSError as e:
        from spectral_tracking.errors import ConfigError

        raise ConfigError(f"{key}={path}: cannot make this folder ({e.strerror}: {e.filename}); choose another one") from None


RUN_LOGS = (".lock", "train.log", "fit.log")


def remove_if_untouched(path: str | Path, fresh: bool) -> None:
    """Remove ``path`` when this command made it (``fresh``) and it holds nothing but its lock and
    its log (the command stopped on bad data or settings before writing anything)."""
    path = Path(path)
    if fresh and path.is_dir() and {p.name for p in path.iterdir()} <= set(RUN_LOGS):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        top = os.environ.get(_NEW_RUN_TOP_ENV)
        if made_for_this_run(path) and top and path.resolve().is_relative_to(top):
            for parent in path.resolve().parents:  # the folders made with it, while empty
                if not parent.is_relative_to(top):
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break
