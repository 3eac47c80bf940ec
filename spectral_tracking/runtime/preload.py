"""Import torch and Lightning with Python's cyclic garbage collector paused, then freeze what they built.

``import pytorch_lightning`` leaves some 580,000 objects behind (torch, ``torch._dynamo``, sympy,
torchmetrics, matplotlib). While they are created, the collector's full (generation 2) collections
keep firing, each walking every object made so far: measured here, six of them spent 0.6 s of a
2.8 s import. Paused, the import takes 2.0 s; ``gc.freeze()`` then moves those objects into the
permanent generation, so that no later collection walks them again (they are module-level objects
that live as long as the process anyway; the few cycles the imports leave behind are kept too).

`stack` is called by `spectral_tracking.run.track`, the module that brings in Lightning for a
tracking run (fitting does not use Lightning); after the first call it does nothing. ``gc.freeze``
is public API (Python 3.7+); the only interpreter internals the package uses are in ``exit.py``.
"""

from __future__ import annotations

import gc
import sys


def stack() -> None:
    """Import torch and pytorch_lightning (if not yet imported) with the collector paused, then freeze."""
    if "pytorch_lightning" in sys.modules:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        import pytorch_lightning  # noqa: F401
        import torch  # noqa: F401
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
