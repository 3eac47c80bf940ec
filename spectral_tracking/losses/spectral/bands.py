"""The logarithmic frequency bands, their resolution limit, and the band-averaging matrices of the fast paths.

Bands (logarithmic grid): band 0 holds |kx|, |ky| <= 1 (9 frequencies); band k >= 1 holds the
frequencies with ``max(|kx|, |ky|)`` in (2^(k-1), 2^k]. Bands 0..K-1 together are the full square
[-2^(K-1), 2^(K-1)]^2.

Resolution limit ("K too large"): the phase advances ``pi * k / L`` per pixel, so integer frequencies
are distinct on the pixel grid for |k| <= L (k = L is the alternating, Nyquist pattern; +L and -L
coincide there). ``num_bands`` is accepted while ``2^(K-1) <= max(H, W)``, i.e.
``K <= 1 + floor(log2(max(H, W)))`` (8 at 128 x 128, 10 at 512 x 512), and rejected otherwise.

Band matrices: the fast paths compute moments on the half plane kx >= 0 only (images are real, so
M(-w) = conj(M(w))), in one of two row layouts (``fft.py``: ``_half_plane_moments``).
``_band_matrix`` turns the per-cell distances of such a layout into the per-band means E_k of the
full symmetric set, folding in the 1 / (H W) normalisation and the l1 smoothing constant;
``_fft_cells`` is the same weighting per cell, in the kx-major layout of the fused FFT paths (torch
and C++).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .moments import L1_EPS
from .validation import _check_num_bands


def max_frequency(num_bands: int) -> int:
    """Largest |kx| or |ky| in bands 0..num_bands-1: 2^(num_bands-1)."""
    _check_num_bands(num_bands, "max_frequency")
    return 2 ** (num_bands - 1)


def max_num_bands(height: int, width: int) -> int:
    """Largest K whose top frequency 2^(K-1) is resolvable on an H x W image (2^(K-1) <= max(H, W))."""
    longest = max(int(height), int(width))
    if longest < 1:
        raise ValueError(f"max_num_bands: image size must be positive, got {height}x{width}")
    return longest.bit_length()  # 1 + floor(log2(longest))


def frequency_band(freqs: Tensor) -> Tensor:
    """Band index of each frequency.

    Args:
        freqs: [F, 2] integer (kx, ky).
    Returns:
        [F] int64: 0 where max(|kx|, |ky|) <= 1, else k with max(|kx|, |ky|) in (2^(k-1), 2^k].
    """
    if freqs.ndim != 2 or freqs.shape[-1] != 2:
        raise ValueError(f"frequency_band: freqs must be [F, 2] (kx, ky), got {tuple(freqs.shape)}")
    m = freqs.abs().amax(dim=-1).long()
    band = torch.zeros_like(m)
    # Count the thresholds 2^0, 2^1, ... that m exceeds; integer-exact, unlike ceil(log2(m)).
    threshold = 1
    while bool((m > threshold).any()):
        band += (m > threshold).long()
        threshold *= 2
    return band


def frequency_grid(num_bands: int, ndim: int = 2, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """All integer frequencies of bands 0..num_bands-1, ordered by band.

    Args:
        num_bands: K >= 1.
        ndim: 2 for (kx, ky) pairs on the square [-N, N]^2, N = 2^(K-1); 1 for the 1D grid
            kx in [-N, N] with ky = 0 (used by the 1D demo on [1, W] "images").
    Returns:
        freqs: [F, 2] int64 (kx, ky), F = (2N+1)^2 (ndim=2) or 2N+1 (ndim=1).
        band_index: [F] int64, non-decreasing.
    """
    n = max_frequency(num_bands)
    k = torch.arange(-n, n + 1, device=device)
    if ndim == 2:
        ky, kx = torch.meshgrid(k, k, indexing="ij")
        freqs = torch.stack([kx.reshape(-1), ky.reshape(-1)], dim=-1)
    elif ndim == 1:
        freqs = torch.stack([k, torch.zeros_like(k)], dim=-1)
    else:
        raise ValueError(f"frequency_grid: ndim must be 1 or 2, got {ndim}")
    band = frequency_band(freqs)
    order = torch.argsort(band, stable=True)
    return freqs[order], band[order]


def band_sizes(num_bands: int) -> Tensor:
    """[K] float64: how many frequencies each band holds on the full square grid (9, 16, 56, ...):
    the factor between eq. 22's sum over a band's frequencies and the per-band mean used by default
    (``band_reduction``)."""
    _, band = frequency_grid(num_bands)
    return torch.bincount(band, minlength=num_bands).double()


def full_frequency_grid(height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """Every distinct integer frequency of an H x W image: (kx, ky) in (-L, L]^2, L = max(H, W).

    These (2L)^2 frequencies are the bins of a 2L x 2L DFT of the zero-padded image, an orthogonal
    basis: used by the Parseval identity (``moment_loss`` with weight 1 each and ``norm="l2"``
    equals ``4 L^2 / (H W)`` times the pixel MSE).

    Returns:
        [(2L)^2, 2] int64 (kx, ky).
    """
    longest = max(int(height), int(width))
    k = torch.arange(-longest + 1, longest + 1, device=device)
    ky, kx = torch.meshgrid(k, k, indexing="ij")
    return torch.stack([kx.reshape(-1), ky.reshape(-1)], dim=-1)


def _check_resolution(num_bands: int, height: int, width: int, where: str) -> None:
    _check_num_bands(num_bands, where)
    limit = max_num_bands(height, width)
    if num_bands > limit:
        raise ValueError(
            f"{where}: num_bands={num_bands} needs frequencies up to 2^{num_bands - 1}={2 ** (num_bands - 1)}, "
            f"but a {height}x{width} image resolves integer frequencies only up to max(H, W)={max(height, width)} "
            f"(pixel pitch 2/max(H, W) with the 0.5*pi phase scale); use num_bands <= {limit} or a larger image"
        )


_BAND_MATRIX_CACHE: dict = {}


def _band_offsets(num_bands: int, height: int, width: int) -> list[float]:
    """The l1 ``offset`` of ``_band_matrix`` (float64) as Python floats: eps per band."""
    key = ("offsets", num_bands, height, width)
    if key not in _BAND_MATRIX_CACHE:
        _, offset = _band_matrix(num_bands, "fft", height, width, "l1", torch.float64, torch.device("cpu"))
        _BAND_MATRIX_CACHE[key] = offset.tolist()
    return _BAND_MATRIX_CACHE[key]


def _band_matrix(num_bands: int, method: str, height: int, width: int, norm: str, dtype: torch.dtype,
                 device: torch.device) -> tuple[Tensor, Tensor]:
    """Band averaging over the half-plane grid of ``_half_plane_moments``.

    Returns ``matrix`` [rows * (N+1), K] and ``offset`` [K] with
    ``E = (|X|^2 or sqrt(|X|^2 + (eps H W)^2)) @ matrix - offset`` equal to the per-band mean of
    ``|X / (H W)|^2`` or of ``sqrt(|X / (H W)|^2 + eps^2) - eps``. Each cell weighs
    (number of frequencies of the full set [-N, N]^2 it stands for) / (band size): kx > 0 stands for
    +-kx as well; in the FFT layout row L stands for ky = +L and -L when N = L, and rows with
    |ky| > N stand for none.
    """
    key = (num_bands, method, height, width, norm, dtype, str(device))
    if key in _BAND_MATRIX_CACHE:
        return _BAND_MATRIX_CACHE[key]
    n = max_frequency(num_bands)
    if method == "fft":
        size = 2 * max(height, width)
        row_count = torch.zeros(size, dtype=torch.float64)
        row_ky = torch.zeros(size, dtype=torch.int64)
        for ky in range(-n, n + 1):
            row_count[ky % size] += 1
            row_ky[ky % size] = abs(ky)
    else:
        row_count = torch.ones(2 * n + 1, dtype=torch.float64)
        row_ky = torch.arange(-n, n + 1).abs()
    kx = torch.arange(0, n + 1)
    ky_grid, kx_grid = torch.meshgrid(row_ky, kx, indexing="ij")
    band = frequency_band(torch.stack([kx_grid.reshape(-1), ky_grid.reshape(-1)], dim=-1))
    count = (row_count[:, None] * torch.where(kx > 0, 2.0, 1.0).double()[None, :]).reshape(-1)
    _, full_band = frequency_grid(num_bands)
    band_size = torch.bincount(full_band, minlength=num_bands).double()
    matrix = torch.nn.functional.one_hot(band, num_bands).double() * (count / band_size[band])[:, None]
    pixels = float(height * width)
    if norm == "l2":
        matrix = matrix / pixels**2
        offset = torch.zeros(num_bands, dtype=torch.float64)
    else:
        matrix = matrix / pixels
        offset = L1_EPS * matrix.sum(0) * pixels  # each band's weights sum to 1 / (H W)
    result = (matrix.to(dtype=dtype, device=device), offset.to(dtype=dtype, device=device))
    _BAND_MATRIX_CACHE[key] = result
    return result


class _Cells(NamedTuple):
    """Per-cell constants of the fused FFT path in the kx-major [N+1, 2L] layout (see ``_fft_cells``)."""

    band: Tensor  # [cells] int64 band index (cells without weight: any band)
    band32: Tensor  # the same, int32, on the CPU (for the C++ kernels)
    factor: Tensor  # [cells]: the cell weight is factor * w[band]
    row_scale: Tensor  # [N+1]: 1 on kx = 0 (and kx = L when N = L), 0.5 on the columns irfft doubles


def _fft_cells(num_bands: int, height: int, width: int, norm: str, dtype: torch.dtype,
               device: torch.device) -> _Cells:
    """``_band_matrix`` for the fused FFT path, per cell in the kx-major [N+1, 2L] layout of
    ``_FFTWeightedModulus``: cell weight = factor * w[band] (a gather instead of a [cells, K] matrix
    product). The backward's inverse real FFT doubles the columns kx = 1..L-1 (it assumes Hermitian
    symmetry), hence ``row_scale``."""
    key = ("cells", num_bands, height, width, norm, dtype, str(device))
    if key not in _BAND_MATRIX_CACHE:
        matrix, _ = _band_matrix(num_bands, "fft", height, width, norm, dtype, device)
        n = max_frequency(num_bands)
        band = matrix.argmax(dim=1).reshape(-1, n + 1).t().reshape(-1).contiguous()
        factor = matrix.sum(dim=1).reshape(-1, n + 1).t().reshape(-1).contiguous()
        row_scale = torch.full((n + 1,), 0.5, dtype=dtype, device=device)
        row_scale[0] = 1.0
        if n == max(height, width):
            row_scale[n] = 1.0
        _BAND_MATRIX_CACHE[key] = _Cells(band, band.to(device="cpu", dtype=torch.int32), factor, row_scale)
    return _BAND_MATRIX_CACHE[key]
