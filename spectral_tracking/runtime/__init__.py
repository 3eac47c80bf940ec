"""The process: threads, the C++ kernels' build and load, paths, and the start-up / exit tuning.

- ``threads.py``: threads per process and the OpenMP spin policy (before torch loads).
- ``native.py``: the one boundary to the package's C++ kernels (build on first use, load, fall back).
- ``paths.py``: where the project reads and writes outside a run folder.
- ``preload.py``, ``exit.py``: the measured start-up and exit savings, the only uses of interpreter internals.
"""
