from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DONUT_PLY = SHARED / "data" / "donut" / "point_cloud.ply"
CONSISTENT4D = SHARED / "data" / "consistent4d"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared is absent on this machine)")
    return path


@pytest.fixture
def donut_ply() -> Path:
    return _require(DONUT_PLY)


@pytest.fixture
def consistent4d_dir() -> Path:
    return _require(CONSISTENT4D)


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (gsplat renders only on CUDA)")


@pytest.fixture
def no_compiler(monkeypatch):
    """Every C++ kernel fails to build (no compiler), as on a machine without g++: the library's
    memory of built and failed kernels and of its warnings starts empty and is restored afterwards.
    Yields the list of sources whose build was attempted."""
    from spectral_tracking.runtime import native

    attempts = []

    def build(source, what, flags=()):
        attempts.append(source)
        raise native.NativeBuildError(f"{what}: no C++ compiler found (set $CXX or install g++)")

    monkeypatch.setattr(native, "build", build)
    monkeypatch.setattr(native, "_LOADED", {})
    monkeypatch.setattr(native, "_WARNED", set())
    return attempts
