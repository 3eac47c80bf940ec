"""Spectral moments and the spectral moment loss (SpectralSplats, Sec. 3.2 and Appendix C.1, eq. 21-22).

Shaped like ``render/``: this file holds the public ``spectral_loss`` (validation and dispatch) and
``spectral_band_errors``; the rest is one file per part:

- ``moments.py``: the paper's maths, read top to bottom: pixel coordinates, the moments of eq. 21 (the
  direct sum and its separable twin), the distance and the loss of eq. 22 over an explicit frequency
  set. Start here to see the paper.
- ``bands.py``: the logarithmic bands, their resolution limit, and the band-averaging matrices the
  fast paths use.
- ``fft.py``: the torch paths, half-plane moments by FFT or DFT and the fused FFT loss with its
  hand-written backward and per-thread plan caches.
- ``cpu.py``: the C++ kernel (``csrc/spectral.cpp``), the fused FFT loss in one call, loaded through
  ``spectral_tracking.runtime.native``.
- ``validation.py``: the argument checks.

Methods (``method=``), all computing the same loss:

- ``"fft"``: zero-padded FFTs of length 2L (``fft.py``); on the CPU the C++ kernel (``cpu.py``) when it
  applies: float32 / float64, 2L a product of 2, 3 and 5, ``USE_NATIVE`` True, and the kernel built.
- ``"dft"``: separable DFT matrices, O(H W N) for max frequency N.
- ``"reference"``: the direct sum over pixels of the full symmetric frequency set (``moments.py``);
  slow, for tests.
- ``"auto"``: on the CPU, ``"fft"`` (the C++ kernel) whenever it applies: it was faster than the DFT
  at every size (128^2 to 512^2) and band count (K = 1 to 8) measured with ``benchmarks/spectral.py``.
  Otherwise (CUDA, or no C++ kernel) ``"dft"`` only while the top active frequency is tiny against the
  image (64 N <= L), else ``"fft"``.

The C++ kernel is always an implicit choice (``"auto"`` or ``"fft"``), so when it cannot be built the
torch FFT twin runs after one ``RuntimeWarning`` (``spectral_tracking.runtime.native``'s failure policy).
Both are tested against the autograd DFT path and the direct-sum reference, and check the images for
NaN / Inf only when the loss comes out non-finite.

Image layout: ``spectral_loss`` takes the renderer's layout, rgb ``[V, H, W, C]`` and opacity /
mask ``[V, H, W]``. ``spectral_moments`` and ``spectral_band_errors`` take channels-first
``[..., H, W]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spectral_tracking.runtime import native

from .bands import (
    _band_matrix,
    _band_offsets,
    _check_resolution,
    _fft_cells,
    band_sizes,
    frequency_band,
    frequency_grid,
    full_frequency_grid,
    max_frequency,
    max_num_bands,
)
from .cpu import _native_supported, _NativeSpectralLoss, native_kernels
from .fft import _FFTSpectralLoss, _FFTWeightedModulus, _half_plane_power
from .moments import (
    L1_EPS,
    PHASE_SCALE,
    moment_distance,
    moment_loss,
    pixel_coordinates,
    spectral_moments,
    spectral_moments_reference,
)
from .validation import (
    METHODS,
    NORMS,
    BandWeights,
    _check_band_weights,
    _check_finite,
    _check_method,
    _check_norm,
    _check_pair,
)

__all__ = [
    "L1_EPS",
    "METHODS",
    "NORMS",
    "PHASE_SCALE",
    "USE_NATIVE",
    "band_sizes",
    "frequency_band",
    "frequency_grid",
    "full_frequency_grid",
    "max_frequency",
    "max_num_bands",
    "moment_distance",
    "moment_loss",
    "pixel_coordinates",
    "spectral_band_errors",
    "spectral_loss",
    "spectral_moments",
    "spectral_moments_reference",
]

USE_NATIVE = True
"""Use the C++ kernel on the CPU (False: its torch-op twin, e.g. to compare them)."""


def spectral_loss(
    pred_rgb: Tensor,
    gt_rgb: Tensor,
    pred_mask: Tensor | None,
    gt_mask: Tensor | None,
    band_weights: BandWeights,
    *,
    lambda_mask: float,
    norm: str = "l1",
    method: str = "auto",
    lambda_rgb: float = 1.0,
) -> Tensor:
    """Spectral moment loss, paper eq. 22 (renderer layout).

    ``lambda_rgb * sum_k w_k E_k(rgb) + lambda_mask * sum_k w_k E_k(mask)`` (lambda_rgb = 1: the paper), E_k from ``spectral_band_errors``
    averaged over views and channels. Bands above the highest non-zero weight are not computed.

    Args:
        pred_rgb: [V, H, W, C] rendered colours.
        gt_rgb: [V, H, W, C] target colours.
        pred_mask: [V, H, W] rendered opacity, or None (then gt_mask must be None and lambda_mask 0).
        gt_mask: [V, H, W] target mask, or None.
        band_weights: [K] w_k(t) in [0, inf), e.g. ``schedule.band_weights``; K = num_bands, which
            must satisfy 2^(K-1) <= max(H, W).
        lambda_mask: weight of the mask term (paper Table 6: 0.5 / 0.2 / 0.3).
        norm: "l1" (paper) or "l2".
        method: "auto" | "fft" | "dft" | "reference".
        lambda_rgb: weight of the colour term (1 in the paper; 0 leaves the masks' moments only).
    Returns:
        scalar (0 with a graph when every weight is 0).
    """
    where = "spectral_loss"
    # Validation without the finiteness pass over the images (one reduction and device sync per
    # image): on the fused FFT path a non-finite image makes the loss non-finite, and only then are
    # the images checked. Any other error re-runs the full validation first, so the error raised is
    # exactly the one full validation raises first.
    try:
        weights = _validate_spectral_loss(pred_rgb, gt_rgb, pred_mask, gt_mask, band_weights, lambda_mask, norm,
                                          method, finite=False, lambda_rgb=lambda_rgb)
    except (ValueError, TypeError):
        _validate_spectral_loss(pred_rgb, gt_rgb, pred_mask, gt_mask, band_weights, lambda_mask, norm, method,
                                finite=True, lambda_rgb=lambda_rgb)
        raise
    views, height, width, _ = pred_rgb.shape

    def check_finite() -> None:
        _check_finite(pred_rgb, where, "pred_rgb")
        _check_finite(gt_rgb, where, "gt_rgb")
        if pred_mask is not None:
            _check_finite(pred_mask, where, "pred_mask")
            _check_finite(gt_mask, where, "gt_mask")

    active = [k for k, value in enumerate(weights.tolist()) if value > 0]
    if not active:
        check_finite()
        zero = pred_rgb.sum() * 0
        return zero if pred_mask is None else zero + pred_mask.sum() * 0
    top = active[-1] + 1  # evaluate bands 0..top-1 only

    channels = pred_rgb.shape[-1]
    # the C++ kernel serves "auto" and "fft" (checked, and built on first use, only for those)
    use_native = (method in ("auto", "fft") and pred_rgb.device.type == "cpu" and pred_rgb.dtype in native.SUFFIXES
                  and _native_supported(height, width) and _native_kernels() is not None)
    if method == "auto":
        # the C++ kernel is faster than the DFT at every size and band count measured (benchmarks/spectral.py)
        method = "fft" if use_native else _auto_method(top, height, width)
    if method == "fft" and (pred_mask is None or pred_mask.dtype == gt_mask.dtype == pred_rgb.dtype) \
            and gt_rgb.dtype == pred_rgb.dtype:
        # Fused path: differences, transforms, weighting and the channel / view average in one
        # autograd function (the generic path below builds the same sum from separate ops).
        eps = L1_EPS * height * width if norm == "l1" else 0.0
        coeff_rgb = lambda_rgb / (views * channels)
        coeff_mask = lambda_mask / views if pred_mask is not None else 0.0
        # the l1 smoothing offset, sum_k w_k offset_k per image, summed with the image coefficients
        offset = 0.0
        if norm == "l1":
            images = views * channels * coeff_rgb + (views * coeff_mask if pred_mask is not None else 0.0)
            offset = images * sum(o * v for o, v in zip(_band_offsets(top, height, width), weights[:top].tolist()))
        function = _NativeSpectralLoss if use_native else _FFTSpectralLoss
        loss = function.apply(pred_rgb, gt_rgb, pred_mask, gt_mask, weights, (norm, eps, coeff_rgb, coeff_mask, offset, top))
        if not math.isfinite(float(loss.detach())):
            check_finite()
        return loss
    check_finite()
    diff = (pred_rgb - gt_rgb).permute(0, 3, 1, 2)  # [V, C, H, W]
    # per-channel factor: mean over views and colour channels, lambda_mask / V for the mask
    coeff = [lambda_rgb / (views * channels)] * channels
    if pred_mask is not None:
        diff = torch.cat([diff, (pred_mask - gt_mask)[:, None].to(diff.dtype)], dim=1)  # one transform for both
        coeff.append(lambda_mask / views)
    diff = diff.reshape(-1, height, width)  # [V * (C+1), H, W]
    coeff_t = torch.tensor(coeff, dtype=diff.dtype).repeat(views).to(diff.device)
    w = weights[:top].to(dtype=diff.dtype, device=diff.device)
    if method == "reference":
        return coeff_t @ _band_errors(diff, top, norm, method) @ w
    # sum_k w_k E_k = power . (matrix w) - offset . w: one weight per spectrum cell
    matrix, offset = _band_matrix(top, method, height, width, norm, diff.dtype, diff.device)
    if method == "fft":
        cells = _fft_cells(top, height, width, norm, diff.dtype, diff.device)
        eps = L1_EPS * height * width if norm == "l1" else 0.0
        n = max_frequency(top)
        per_image = _FFTWeightedModulus.apply(diff, (cells.factor * w.index_select(0, cells.band)).reshape(n + 1, -1),
                                              eps)
    else:
        per_image = _half_plane_power(diff, top, norm, method) @ (matrix @ w)
    return coeff_t @ per_image - coeff_t.sum() * (offset @ w)


def _validate_spectral_loss(pred_rgb, gt_rgb, pred_mask, gt_mask, band_weights, lambda_mask, norm, method,
                            finite: bool, lambda_rgb: float = 1.0) -> Tensor:
    """The argument checks of ``spectral_loss`` in order; returns the band weights ([K] CPU tensor)."""
    where = "spectral_loss"
    if pred_rgb.ndim != 4:
        raise ValueError(f"{where}: pred_rgb must be [V, H, W, C] (renderer layout), got {tuple(pred_rgb.shape)}")
    _check_pair(pred_rgb, gt_rgb, where, "pred_rgb", "gt_rgb", finite)
    _check_norm(norm, where)
    _check_method(method, where)
    views, height, width, _ = pred_rgb.shape
    if (pred_mask is None) != (gt_mask is None):
        raise ValueError(f"{where}: pass both pred_mask and gt_mask or neither "
                         f"(got pred_mask={'None' if pred_mask is None else 'tensor'}, "
                         f"gt_mask={'None' if gt_mask is None else 'tensor'})")
    if not math.isfinite(lambda_mask) or lambda_mask < 0:
        raise ValueError(f"{where}: lambda_mask must be finite and >= 0, got {lambda_mask}")
    if not math.isfinite(lambda_rgb) or lambda_rgb < 0:
        raise ValueError(f"{where}: lambda_rgb must be finite and >= 0, got {lambda_rgb}")
    if pred_mask is None and lambda_mask != 0:
        raise ValueError(f"{where}: lambda_mask={lambda_mask} but no masks were given")
    if pred_mask is not None:
        if pred_mask.shape != (views, height, width):
            raise ValueError(f"{where}: pred_mask must be [V, H, W]={[views, height, width]} to match pred_rgb, "
                             f"got {tuple(pred_mask.shape)}")
        _check_pair(pred_mask, gt_mask, where, "pred_mask", "gt_mask", finite)
    weights = _check_band_weights(band_weights, where)  # on the CPU: no device sync to find `top`
    num_bands = weights.shape[0]
    _check_resolution(num_bands, height, width, where)
    return weights


def spectral_band_errors(pred: Tensor, gt: Tensor, num_bands: int, norm: str = "l1", method: str = "auto") -> Tensor:
    """Per-band mean moment distance E_k between two image stacks.

    Args:
        pred, gt: [..., H, W] real, same shape.
        num_bands: K; bands 0..K-1 are evaluated (requires 2^(K-1) <= max(H, W)).
        norm: "l1" (mean smoothed |dM|) or "l2" (mean |dM|^2), dM = (M(pred) - M(gt)) / (H W).
        method: "auto" | "fft" | "dft" | "reference" (see module docstring).
    Returns:
        [..., K]: E_k averaged over the band's frequencies (full symmetric set).
    """
    _check_pair(pred, gt, "spectral_band_errors", "pred", "gt")
    _check_norm(norm, "spectral_band_errors")
    _check_method(method, "spectral_band_errors")
    height, width = pred.shape[-2:]
    _check_resolution(num_bands, height, width, "spectral_band_errors")
    lead = pred.shape[:-2]
    errors = _band_errors((pred - gt).reshape(-1, height, width), num_bands, norm, method)
    return errors.reshape(*lead, num_bands)


def _band_errors(diff: Tensor, num_bands: int, norm: str, method: str) -> Tensor:
    """Unchecked core of ``spectral_band_errors``: diff [B, H, W] -> [B, K]."""
    height, width = diff.shape[-2:]
    if method == "auto":
        method = _auto_method(num_bands, height, width)
    if method == "reference":
        freqs, band = frequency_grid(num_bands, device=diff.device)
        dm = spectral_moments_reference(diff, freqs) / (height * width)  # [B, F]
        onehot = torch.nn.functional.one_hot(band, num_bands).to(diff.dtype)  # [F, K]
        return (moment_distance(dm, norm) @ onehot) / onehot.sum(0)
    power = _half_plane_power(diff, num_bands, norm, method)  # [B, cells]
    matrix, offset = _band_matrix(num_bands, method, height, width, norm, diff.dtype, diff.device)
    return power @ matrix - offset


def _auto_method(num_bands: int, height: int, width: int) -> str:
    return "dft" if 64 * max_frequency(num_bands) <= max(height, width) else "fft"


def _native_kernels():
    """The C++ kernel (``cpu.native_kernels``), or None if switched off (``USE_NATIVE``) or if it
    cannot be built (then after one warning)."""
    return native_kernels() if USE_NATIVE else None
