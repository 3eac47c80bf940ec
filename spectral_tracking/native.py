"""Build and load the package's plain C++ kernels (``render/csrc``, ``losses/csrc``) with ctypes.

Each source ships inside the package and is compiled on first use with the system C++ compiler
(``$CXX`` or ``g++``, C++20, OpenMP: the library binds to the libgomp torch has loaded, sharing its
threads) into a per-user cache, ``$SPECTRAL_TRACKING_CACHE`` or ``~/.cache/spectral_tracking``. The
library's file name carries a hash of the source, the compiler command and the machine (CPU model and
flags: it is built with -march=native, 17% faster for the renderer here), so an edited source or
another machine rebuilds. It is compiled under a unique temporary name and atomically renamed into
place, so processes building at the same time never see a half-written library. The sources are
plain C++ (no torch headers), so a build takes seconds, not the minute of a torch extension, and does
not depend on the installed torch version.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ("-O3", "-march=native", "-std=c++20", "-shared", "-fPIC", "-fno-math-errno", "-fopenmp")


def cpu_id() -> str:
    """The CPU model and feature flags: part of the cache key, because -march=native code built on
    one CPU may not run on another that shares the home directory."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        keep = [line for line in info.splitlines() if line.startswith(("model name", "flags"))][:2]
        return "\n".join(keep)
    except OSError:
        return platform.processor()


def cache_dir() -> Path:
    root = os.environ.get("SPECTRAL_TRACKING_CACHE") or Path.home() / ".cache" / "spectral_tracking"
    return Path(root) / "ext"


def compiler(what: str) -> str:
    """The C++ compiler; ``what`` names the feature that needs it in the error."""
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if not cxx:
        raise RuntimeError(f"{what}: no C++ compiler found (set $CXX or install g++)")
    return cxx


def build(source: Path, what: str) -> ctypes.CDLL:
    """Compile ``source`` (once per user, source version and machine) and load it.

    Args:
        source: the .cpp file.
        what: the feature it serves, named in errors (e.g. "render backend 'cpu'").
    Raises:
        RuntimeError: no compiler, or compilation failed (with the compiler's message).
    """
    cxx = compiler(what)
    code = source.read_bytes()
    key = " ".join([cxx, *FLAGS, platform.machine(), platform.platform(), cpu_id()])
    tag = hashlib.sha256(code + key.encode()).hexdigest()[:16]
    out = cache_dir() / f"{source.stem}_{tag}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=out.stem + ".", suffix=".so.tmp", dir=out.parent)
        os.close(fd)
        try:
            # fall back to portable code, then to one thread, for compilers lacking those options
            for drop in ((), ("-march=native",), ("-march=native", "-fopenmp")):
                cmd = [cxx, *[f for f in FLAGS if f not in drop], str(source), "-o", tmp]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode == 0:
                    break
            if res.returncode != 0:
                raise RuntimeError(f"{what}: compiling {source} with {cxx} failed:\n{res.stderr}")
            os.replace(tmp, out)  # atomic: concurrent builders each install a complete library
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return ctypes.CDLL(str(out))
