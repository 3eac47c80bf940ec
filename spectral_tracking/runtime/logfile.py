"""A command's own log file in its run folder (``train.log``, ``fit.log``).

Hydra's file log is off (conf/hydra/job_logging/run_folder.yaml): Hydra writes it in its output
folder before anything is validated, in outputs/ even for a call given ``out_dir=`` / ``out=``.
Instead the command opens its log once its folder is known to be its own.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


@contextlib.contextmanager
def file_log(path: str | Path):
    """Every log record while the context is open, appended to ``path`` (opened with the first
    record: a command that logs nothing leaves no file), from a root-logger handler removed on exit."""
    handler = logging.FileHandler(path, delay=True)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
