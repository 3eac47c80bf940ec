"""spectral_tracking: tracking 3D Gaussian Splatting assets through video with Spectral Moment supervision."""

__version__ = "0.1.0"

__all__ = ["TrackResult", "load_ply", "save_ply", "track"]


def __getattr__(name: str):
    # The Python API (spectral_tracking/api.py), imported on first use so that `import spectral_tracking`
    # stays light for the submodules that do not need torch's whole stack.
    if name in ("track", "TrackResult"):
        from spectral_tracking import api

        return getattr(api, name)
    if name in ("load_ply", "save_ply"):
        from spectral_tracking import gaussians

        return getattr(gaussians, name)
    raise AttributeError(f"module 'spectral_tracking' has no attribute {name!r}")
