"""Leave a finished command without the interpreter's teardown (0.9-1.2 s after ``import
pytorch_lightning``, measured by ``benchmarks/main_job.py``).

This and `spectral_tracking.runtime.preload` are the package's only uses of interpreter internals
(``threading._shutdown``, ``atexit._run_exitfuncs``); ``tests/test_startup.py`` fails loudly if
either disappears from the running Python.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

INTERNALS = ((threading, "_shutdown"), (atexit, "_run_exitfuncs"))  # checked by tests/test_startup.py


def exit_now(code: int = 0) -> None:
    """End a finished command without the interpreter's teardown.

    After ``import pytorch_lightning`` (torch, ``torch._dynamo``, sympy, torchmetrics: some 3,000
    modules) Python's own exit spends about 0.9 s here clearing every module's namespace and
    collecting the objects, work with no effect on disk. This does what that exit does that matters,
    in its order: ``threading._shutdown`` (the thread-level exit hooks, e.g. joblib's and
    concurrent.futures' workers told to stop, then a wait for every non-daemon thread, e.g. a video
    still encoding), the ``atexit`` handlers (logging's flush and close, wandb), a flush of the
    standard streams; then ``os._exit(code)``. Called by ``train.py`` / ``fit.py`` and the console
    scripts once Hydra has returned; an error still leaves through the normal exit (``sys.exit``
    raises past this).
    """
    shutdown = getattr(threading, "_shutdown", None)  # CPython's own first step of the exit
    if shutdown is not None:
        shutdown()
    else:  # pragma: no cover - other interpreters: wait for the threads as that step does
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed stream or a reader that went away
            pass
    os._exit(code)
