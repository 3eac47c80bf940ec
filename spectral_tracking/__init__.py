"""spectral_tracking: tracking 3D Gaussian Splatting assets through video with Spectral Moment supervision."""

__version__ = "0.1.0"
