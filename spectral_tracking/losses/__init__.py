"""Losses: spectral moments (eq. 21-22), photometric (pixel phase, eq. 23), LPIPS and ARAP."""

from .arap import ARAP, arap_on_frames, arap_weight, best_fit_rotations, canonical_neighbors, sample_frames
from .lpips import LPIPS, LPIPSWeightsMissing, load_lpips
from .photometric import pixel_loss
from .spectral import (
    frequency_band,
    frequency_grid,
    full_frequency_grid,
    max_frequency,
    max_num_bands,
    moment_loss,
    pixel_coordinates,
    spectral_band_errors,
    spectral_loss,
    spectral_moments,
    spectral_moments_reference,
)

__all__ = [
    "ARAP",
    "LPIPS",
    "LPIPSWeightsMissing",
    "arap_on_frames",
    "arap_weight",
    "best_fit_rotations",
    "canonical_neighbors",
    "frequency_band",
    "frequency_grid",
    "full_frequency_grid",
    "load_lpips",
    "max_frequency",
    "max_num_bands",
    "moment_loss",
    "pixel_coordinates",
    "pixel_loss",
    "sample_frames",
    "spectral_band_errors",
    "spectral_loss",
    "spectral_moments",
    "spectral_moments_reference",
]
