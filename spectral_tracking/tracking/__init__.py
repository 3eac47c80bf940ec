"""The method: SpectralSplats tracking of a canonical 3DGS asset (read in this order).

- ``settings.py``: every setting, its default and its allowed values (Hydra's schema).
- ``start.py``: the benchmark's displaced start (shift) and the initial overlap.
- ``search.py``: the default start (``align=search``): rotation hypotheses fitted on the lowest bands.
- ``refine.py``: the trajectory's poses (``search.frames=all``) refined on pixels, and bridged.
- ``depth.py``: with one view, the trajectory's depths from its silhouettes at its final poses.
- ``align.py``: the closed-form start from the targets' mask moments (``align=moments``).
- ``schedule.py``: the frequency-annealing schedule of eq. 7 (pure functions of the step).
- ``objective.py``: the loss of each step and the one object that decides when the spectral phase ends.
- ``targets.py``: what a step is compared with: the sequence's uint8 frames, float when indexed.
- ``module.py``: the LightningModule: deform -> render -> image loss + ARAP.

The spectral moments themselves are ``spectral_tracking/losses/spectral/``; the run around the
method (folders, resume, loggers, outputs) is ``spectral_tracking/run/``.
"""
