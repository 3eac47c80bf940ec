"""A tracking run around the method: config and validation, the run folder (finish, resume, lock),
the Lightning session, loggers, sweeps, outputs and the command-line entry points.

- ``track.py``: `run(cfg)`, one tracking run from a composed config (``train.py`` and the API call it).
- ``config.py``: Hydra's schema (`spectral_tracking.tracking.settings`), `compose`, `validate`.
- ``folder.py``, ``atomic.py``, ``session.py``, ``callbacks.py``, ``loggers.py``, ``sweep.py``,
  ``outputs.py``: the plumbing, one concern a file (the console scripts: ``spectral_tracking/cli.py``).
"""
