"""Spectral moments and the spectral moment loss (SpectralSplats, Sec. 3.2 and Appendix C.1, eq. 21-22).

Definitions
-----------
Spectral moment of an image ``I`` at the integer frequency pair ``w = (kx, ky)`` (paper eq. 21)::

    M(w; I) = sum_p I(p) * exp(j * 0.5*pi * w^T p)

``p = (x, y)`` are the pixel centres in normalised coordinates. **Non-square images** keep square
pixels: the *longer* side spans [-1, 1] and the shorter one [-s, s] with ``s = short / long``, so
with ``L = max(H, W)`` the pixel pitch is ``2 / L`` on both axes and the centres are
``x_i = (2 i + 1 - W) / L`` (i = 0..W-1, x right) and ``y_i = (2 i + 1 - H) / L`` (y down, the image
row direction). A frequency therefore means the same wavelength in pixels along both axes, and the
phase-wrapping bound |0.5*pi * w^T d| < pi of Appendix A is isotropic, which matters for rotations.
With the 0.5*pi factor the phase of the lowest band (|kx|, |ky| <= 1) stays inside (-pi/2, pi/2)
along each axis over the whole image, so it never wraps.

Bands (logarithmic grid): band 0 holds |kx|, |ky| <= 1 (9 frequencies); band k >= 1 holds the
frequencies with ``max(|kx|, |ky|)`` in (2^(k-1), 2^k]. Bands 0..K-1 together are the full square
[-2^(K-1), 2^(K-1)]^2.

Resolution limit ("K too large"): the phase advances ``pi * k / L`` per pixel, so integer frequencies
are distinct on the pixel grid for |k| <= L (k = L is the alternating, Nyquist pattern; +L and -L
coincide there). ``num_bands`` is accepted while ``2^(K-1) <= max(H, W)``, i.e.
``K <= 1 + floor(log2(max(H, W)))`` (8 at 128 x 128, 10 at 512 x 512), and rejected otherwise.

Loss (paper eq. 22)::

    L = sum_k w_k * E_k(I_rend, I_gt) + lambda_mask * sum_k w_k * E_k(O_rend, O_gt)

with ``E_k`` the distance between the moments of band k, made resolution independent: moments are
divided by the pixel count ``H * W`` (so they approximate an area average) and ``E_k`` is the mean
over the band's frequencies (and over views and channels) of ``|dM|`` (``norm="l1"``, the complex
modulus, which is what makes unit-modulus phase factors cancel) or ``|dM|^2`` (``norm="l2"``).
By linearity only the moments of the difference ``I_rend - I_gt`` are computed.

The l1 modulus is smoothed, ``sqrt(|dM|^2 + eps^2) - eps`` with ``eps = L1_EPS = 1e-6`` (moments are
normalised, so |dM| is at most the image value range): |dM| has a kink wherever dM = 0, which for a
pure translation d happens on every frequency with w^T d = 0 (and for the DC term of two equal-mass
images). There the plain modulus's gradient is a unit phasor whose phase is set by rounding error,
so it differs between the FFT, DFT and direct-sum evaluations; the smoothed one is 0, and it differs
from |dM| by less than eps.

Computation
-----------
Every fast path computes exactly the needed square of frequencies for the highest *active* band
(bands with zero weight above it cost nothing), on the half plane kx >= 0 only: images are real, so
M(-w) = conj(M(w)) and |dM(-w)| = |dM(w)|; the kx > 0 columns count twice.

- ``"fft"``: along each axis a zero-padded FFT of length 2L returns every integer frequency of this
  grid up to a unit-modulus phase factor (x_i is affine in i), which cancels in |dM|.
- ``"dft"``: separable DFT matrices, ``Ey^T (D Ex)``, costing O(H W N) for max frequency N.
- ``"reference"``: the plain twin, a direct sum over pixels of the full symmetric frequency set
  (``spectral_moments_reference``); slow, for tests.
- ``"auto"``: on the CPU, ``"fft"`` (the C++ kernel below) whenever it applies: it was faster than the
  DFT at every size (128^2 to 512^2) and band count (K = 1 to 8) measured with
  ``benchmarks/spectral.py``. Otherwise (CUDA, or no C++ kernel) ``"dft"`` only while the top active
  frequency is tiny against the image (64 N <= L), else ``"fft"``.

``spectral_loss`` runs the FFT path as one autograd function:

- CPU, float32 / float64, 2L a product of 2, 3 and 5 (``_native_supported``): ``_NativeSpectralLoss``,
  one call of a C++ kernel (``csrc/spectral.cpp``, compiled on first use by ``spectral_tracking.native``)
  that computes the loss and, when a gradient is wanted, the gradient with respect to the images in
  the same pass. Colour channels and masks go in pairs, a + i b, through one complex 2D transform
  (its own mixed-radix Stockham FFT, vectorised across transforms), rows first and then only the
  2N + 1 kept kx columns; the two images' moments are separated by Hermitian symmetry, and the
  gradient of both comes back through one inverse transform. A pair stays in the core's cache from the
  image differences to the image gradients, which is what makes it several times faster than the torch
  ops after a render has evicted the cache. The backward pass scales the stored gradient.
- Otherwise ``_FFTSpectralLoss`` (torch ops: torch's FFTs and a hand-written backward with the
  adjoint transforms; ``_FFTWeightedModulus`` on stacked differences when the dtypes differ), which
  is also the C++ kernel's tested twin (``USE_NATIVE = False`` selects it on the CPU). Without a C++
  compiler it runs after one warning.

Both are tested against the autograd DFT path and the direct-sum reference, and check the images for
NaN / Inf only when the loss comes out non-finite.

Image layout: ``spectral_loss`` takes the renderer's layout, rgb ``[V, H, W, C]`` and opacity /
mask ``[V, H, W]``. ``spectral_moments`` and ``spectral_band_errors`` take channels-first
``[..., H, W]``.
"""

from __future__ import annotations

import ctypes
import math
import threading
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..native import build

PHASE_SCALE = 0.5 * math.pi
"""The 0.5*pi factor of eq. 21: phase = PHASE_SCALE * (kx * x + ky * y)."""

NORMS = ("l1", "l2")
L1_EPS = 1e-6
"""Smoothing of the l1 modulus, sqrt(|dM|^2 + eps^2) - eps (see module docstring)."""
METHODS = ("auto", "fft", "dft", "reference")

BandWeights = Union[Tensor, Sequence[float]]


# --------------------------------------------------------------------------------------------------
# Frequency grid
# --------------------------------------------------------------------------------------------------


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


def pixel_coordinates(height: int, width: int, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Normalised pixel-centre coordinates (longer side spans [-1, 1], square pixels).

    Returns:
        x: [W], x_i = (2 i + 1 - W) / L;  y: [H], y_i = (2 i + 1 - H) / L;  L = max(H, W).
    """
    longest = max(height, width)
    x = (2 * torch.arange(width, dtype=torch.float64, device=device) + 1 - width) / longest
    y = (2 * torch.arange(height, dtype=torch.float64, device=device) + 1 - height) / longest
    return x.to(dtype), y.to(dtype)


# --------------------------------------------------------------------------------------------------
# Moments
# --------------------------------------------------------------------------------------------------


def spectral_moments(images: Tensor, freqs: Tensor) -> Tensor:
    """Spectral moments, paper eq. 21, exactly (no normalisation): sum_p I(p) exp(j 0.5 pi w^T p).

    Separable evaluation over the distinct kx and ky values of ``freqs``.

    Args:
        images: [..., H, W] real (any leading batch dims: views, frames, channels).
        freqs: [F, 2] integer (kx, ky).
    Returns:
        [..., F] complex (complex64 for float32 input, complex128 for float64).
    """
    _check_images(images, "spectral_moments", "images")
    _check_freqs(freqs, "spectral_moments")
    height, width = images.shape[-2:]
    x, y = pixel_coordinates(height, width, torch.float64, images.device)
    kx_unique, kx_inverse = torch.unique(freqs[:, 0], return_inverse=True)
    ky_unique, ky_inverse = torch.unique(freqs[:, 1], return_inverse=True)
    cdtype = _complex_dtype(images.dtype)
    # Phases in float64 before casting: 0.5*pi*k*x reaches hundreds of radians at high k.
    ex = torch.exp(1j * PHASE_SCALE * x[:, None] * kx_unique.to(torch.float64)[None, :]).to(cdtype)  # [W, Ux]
    ey = torch.exp(1j * PHASE_SCALE * y[:, None] * ky_unique.to(torch.float64)[None, :]).to(cdtype)  # [H, Uy]
    partial = images.to(cdtype) @ ex  # [..., H, Ux]
    full = ey.transpose(0, 1) @ partial  # [..., Uy, Ux]
    return full[..., ky_inverse, kx_inverse]


def spectral_moments_reference(images: Tensor, freqs: Tensor) -> Tensor:
    """Plain twin of ``spectral_moments``: the direct sum over all pixels of eq. 21.

    Memory is O(H W F); meant for tests and small images.

    Args:
        images: [..., H, W] real.
        freqs: [F, 2] integer (kx, ky).
    Returns:
        [..., F] complex.
    """
    _check_images(images, "spectral_moments_reference", "images")
    _check_freqs(freqs, "spectral_moments_reference")
    height, width = images.shape[-2:]
    x, y = pixel_coordinates(height, width, torch.float64, images.device)
    yy, xx = torch.meshgrid(y, x, indexing="ij")  # [H, W]
    k = freqs.to(torch.float64)
    phase = PHASE_SCALE * (xx.reshape(-1, 1) * k[None, :, 0] + yy.reshape(-1, 1) * k[None, :, 1])  # [HW, F]
    basis = torch.exp(1j * phase).to(_complex_dtype(images.dtype))
    flat = images.reshape(*images.shape[:-2], height * width).to(basis.dtype)
    return flat @ basis


# --------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------


def moment_loss(pred: Tensor, gt: Tensor, freqs: Tensor, weights: Tensor, norm: str = "l1") -> Tensor:
    """General weighted moment distance over an explicit frequency set (reference path).

    ``mean_over_leading( sum_f weights_f * d(dM_f) )`` with ``dM = M(pred - gt) / (H W)`` and
    ``d`` from ``moment_distance`` (smoothed modulus for l1, squared modulus for l2). With
    ``full_frequency_grid`` and weight 1 each, the l2 form equals ``4 L^2 / (H W)`` times the pixel
    MSE (Parseval).

    Args:
        pred, gt: [..., H, W] real, same shape.
        freqs: [F, 2] integer (kx, ky).
        weights: [F] non-negative.
    Returns:
        scalar.
    """
    _check_pair(pred, gt, "moment_loss", "pred", "gt")
    _check_freqs(freqs, "moment_loss")
    _check_norm(norm, "moment_loss")
    if weights.shape != (freqs.shape[0],):
        raise ValueError(f"moment_loss: weights must be [F]={freqs.shape[0]}, got {tuple(weights.shape)}")
    height, width = pred.shape[-2:]
    dm = spectral_moments_reference(pred - gt, freqs) / (height * width)  # [..., F]
    dist = moment_distance(dm, norm)
    return (dist * weights.to(dist.dtype)).sum(-1).mean()


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


def _half_plane_power(diff: Tensor, num_bands: int, norm: str, method: str) -> Tensor:
    """|X|^2 (l2) or sqrt(|X|^2 + (eps H W)^2) (l1) of the half-plane moments X, flattened: [B, cells].

    The 1/(H W) normalisation, the smoothing constant of the l1 modulus and the band averaging are
    folded into ``_band_matrix`` (no extra passes over the spectrum).
    """
    height, width = diff.shape[-2:]
    moments = _half_plane_moments(diff, num_bands, method)  # [B, rows, N+1], not normalised
    eps = L1_EPS * height * width if norm == "l1" else 0.0
    return _Modulus.apply(moments, eps).flatten(1)


class _Modulus(torch.autograd.Function):
    """sqrt(|z|^2 + eps^2) (eps > 0, smoothed l1) or |z|^2 (eps == 0, l2) of a complex tensor.

    One fused op forward and backward. Written out because autograd through ``z.real.square() +
    z.imag.square()`` materialises two complex zero-filled gradients per pass (measured 30% of the loss
    at 128 x 128). Gradient in PyTorch's convention for real functions of complex inputs (the one that
    gives ``z / |z|`` for ``z.abs()``): ``g z / S`` (l1), ``2 g z`` (l2). Checked against autograd in
    tests/test_spectral.py.
    """

    @staticmethod
    def forward(ctx, z: Tensor, eps: float) -> Tensor:
        power = (z * z.conj()).real  # |z|^2; measured several times faster than z.abs() (hypot) on CPU
        out = (power + eps * eps).sqrt_() if eps > 0 else power.contiguous()
        ctx.eps = eps
        ctx.save_for_backward(z, out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, out = ctx.saved_tensors
        scale = grad / out if ctx.eps > 0 else 2 * grad
        return z * scale, None


def _validate_spectral_loss(pred_rgb, gt_rgb, pred_mask, gt_mask, band_weights, lambda_mask, norm, method,
                            finite: bool) -> Tensor:
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
) -> Tensor:
    """Spectral moment loss, paper eq. 22 (renderer layout).

    ``sum_k w_k E_k(rgb) + lambda_mask * sum_k w_k E_k(mask)``, E_k from ``spectral_band_errors``
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
                                          method, finite=False)
    except (ValueError, TypeError):
        _validate_spectral_loss(pred_rgb, gt_rgb, pred_mask, gt_mask, band_weights, lambda_mask, norm, method,
                                finite=True)
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
    native = (method in ("auto", "fft") and pred_rgb.device.type == "cpu" and pred_rgb.dtype in _SUFFIX
              and _native_supported(height, width) and _native_kernels() is not None)
    if method == "auto":
        # the C++ kernel is faster than the DFT at every size and band count measured (benchmarks/spectral.py)
        method = "fft" if native else _auto_method(top, height, width)
    if method == "fft" and (pred_mask is None or pred_mask.dtype == gt_mask.dtype == pred_rgb.dtype) \
            and gt_rgb.dtype == pred_rgb.dtype:
        # Fused path: differences, transforms, weighting and the channel / view average in one
        # autograd function (the generic path below builds the same sum from separate ops).
        eps = L1_EPS * height * width if norm == "l1" else 0.0
        coeff_rgb = 1.0 / (views * channels)
        coeff_mask = lambda_mask / views if pred_mask is not None else 0.0
        # the l1 smoothing offset, sum_k w_k offset_k per image, summed with the image coefficients
        offset = 0.0
        if norm == "l1":
            images = views * channels * coeff_rgb + (views * coeff_mask if pred_mask is not None else 0.0)
            offset = images * sum(o * v for o, v in zip(_band_offsets(top, height, width), weights[:top].tolist()))
        function = _NativeSpectralLoss if native else _FFTSpectralLoss
        loss = function.apply(pred_rgb, gt_rgb, pred_mask, gt_mask, weights, (norm, eps, coeff_rgb, coeff_mask, offset, top))
        if not math.isfinite(float(loss.detach())):
            check_finite()
        return loss
    check_finite()
    diff = (pred_rgb - gt_rgb).permute(0, 3, 1, 2)  # [V, C, H, W]
    # per-channel factor: mean over views and colour channels, lambda_mask / V for the mask
    coeff = [1.0 / (views * channels)] * channels
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


# --------------------------------------------------------------------------------------------------
# Fast paths
# --------------------------------------------------------------------------------------------------


def _auto_method(num_bands: int, height: int, width: int) -> str:
    return "dft" if 64 * max_frequency(num_bands) <= max(height, width) else "fft"


def _half_plane_moments(diff: Tensor, num_bands: int, method: str) -> Tensor:
    """Moments of diff [B, H, W] for kx in [0, N], up to a unit-modulus factor per frequency.

    Returns (not normalised), N = 2^(K-1):
        "fft": [B, 2L, N+1] complex, row r holding ky = r (mod 2L), r = 0..2L-1;
        "dft": [B, 2N+1, N+1] complex, rows ky = -N..N.
    """
    height, width = diff.shape[-2:]
    n = max_frequency(num_bands)
    if method == "fft":
        size = 2 * max(height, width)
        # x_i = (2i + 1 - W) / L makes the phase pi*k*i/L + const(k): the length-2L DFT bin -k
        # (conjugated, and |.| ignores the conjugation of a difference of real-image moments).
        # Two 1D stages rather than rfft2(s=(2L, 2L)): the x stage skips the 2L - H zero rows, the y
        # stage skips the columns kx > N, and the backward passes shrink the same way (measured 1.5x).
        along_x = torch.fft.rfft(diff, n=size, dim=-1)[..., : n + 1]  # [B, H, N+1]
        return torch.fft.fft(along_x, n=size, dim=-2)  # [B, 2L, N+1]
    if method == "dft":
        x, y = pixel_coordinates(height, width, torch.float64, diff.device)
        kx = torch.arange(0, n + 1, device=diff.device, dtype=torch.float64)
        ky = torch.arange(-n, n + 1, device=diff.device, dtype=torch.float64)
        ex = torch.exp(1j * PHASE_SCALE * x[:, None] * kx[None, :])  # [W, N+1]
        ey = torch.exp(1j * PHASE_SCALE * y[None, :] * ky[:, None])  # [2N+1, H]
        # Real x complex as two real matmuls: half the work of a complex matmul.
        along_x = torch.complex(diff @ ex.real.to(diff.dtype), diff @ ex.imag.to(diff.dtype))  # [B, H, N+1]
        return ey.to(_complex_dtype(diff.dtype)) @ along_x  # [B, 2N+1, N+1]
    raise ValueError(f"_half_plane_moments: unknown method {method!r}")


class _FFTWeightedModulus(torch.autograd.Function):
    """Fused FFT path of ``spectral_loss``: diff [B, H, W] -> [B] sum over cells of weight * d(X).

    ``weights`` [N+1, 2L] are per cell, kx-major (``_fft_cells``); ``X`` are the half-plane moments
    of ``_half_plane_moments(..., "fft")`` (transposed to [B, N+1, 2L]) and
    ``d(X) = sqrt(|X|^2 + eps^2)`` (eps > 0, l1) or ``|X|^2`` (eps == 0, l2). The backward pass is
    written out as the adjoint transforms (an inverse FFT along y, then an inverse real FFT along x):
    with D real and X = F(D), d/dD sum w d(X) = Re(F^H G), G = w X / S (l1) or 2 w X (l2). Autograd
    through the same ops spends most of its time allocating and zero-filling intermediate gradients
    (measured about 2x slower at 128 x 128). Tested against the autograd "dft" and "reference" paths.
    """

    @staticmethod
    def forward(ctx, diff: Tensor, weights: Tensor, eps: float) -> Tensor:
        height, width = diff.shape[-2:]
        size = 2 * max(height, width)
        n = weights.shape[0] - 1
        # Work in the [B, N+1, 2L] (kx-major) layout the y-stage FFT actually produces: element-wise
        # ops on its transposed [B, 2L, N+1] view take strided slow paths (measured 3x slower).
        along_x = torch.fft.rfft(diff, n=size, dim=-1)[..., : n + 1].transpose(-1, -2)  # [B, N+1, H]
        moments = torch.fft.fft(along_x, n=size, dim=-1)  # [B, N+1, 2L], contiguous
        value = (moments * moments.conj()).real  # |X|^2, a strided view
        if eps > 0:
            value = (value + eps * eps).sqrt_()
        else:
            value = value.contiguous()
        ctx.save_for_backward(moments, value if eps > 0 else None, weights)
        ctx.eps, ctx.shape = eps, (height, width, size, n)
        return value.reshape(value.shape[0], -1) @ weights.reshape(-1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        moments, value, weights = ctx.saved_tensors  # [B, N+1, 2L], [B, N+1, 2L], [N+1, 2L]
        height, width, size, n = ctx.shape
        # irfft below doubles the columns kx = 1..L-1 (it assumes Hermitian symmetry): halve them first.
        column = torch.full((n + 1, 1), 0.5, dtype=weights.dtype, device=weights.device)
        column[0] = 1.0
        if n == size // 2:
            column[n] = 1.0
        scale = weights * column if ctx.eps > 0 else weights * (2 * column)  # [N+1, 2L]
        if ctx.eps > 0:  # value is not needed again: reuse its memory
            scale = value.reciprocal_().mul_(scale).mul_(grad[:, None, None])  # [B, N+1, 2L]
        else:
            scale = scale * grad[:, None, None]
        # G = X * scale in place (the saved moments are not needed again). Casting scale to complex
        # first is several times faster on CPU than mixed complex * real or a broadcast on the real view.
        moments.mul_(scale.to(moments.dtype))
        along_y = torch.fft.ifft(moments, dim=-1, norm="forward")[..., :height]  # [B, N+1, H]
        grad_diff = torch.fft.irfft(along_y.transpose(-1, -2), n=size, dim=-1, norm="forward")[..., :width]
        return grad_diff, None, None


class _FFTSpectralLoss(torch.autograd.Function):
    """The whole FFT path of ``spectral_loss`` for the renderer layout, forward and backward.

    ``coeff_rgb * sum_{v,c} P(rgb_v,c) + coeff_mask * sum_v P(mask_v)`` with ``P(D) = sum over cells
    of weight * d(X)``, ``X`` the half-plane moments of D (layout and ``d`` as in
    ``_FFTWeightedModulus``, whose maths this is), ``weight = factor * band_weight``. Differences
    from the separate-op version, all layout / memory traffic: the differences are written straight
    into the zero-padded transform input (no permute, cat or padding copies), the gradient leaves in
    the renderer layout with the per-image coefficient applied in the same pass, and the backward's
    transposed copy between the two inverse transforms goes through a buffer whose row stride is not
    a power of two (the direct [.., 2L]-strided transposed read was about 3x slower).
    """

    @staticmethod
    def forward(ctx, pred_rgb, gt_rgb, pred_mask, gt_mask, weights, config):
        norm, eps, coeff_rgb, coeff_mask, offset, top = config
        views, height, width, channels = pred_rgb.shape
        dtype, device = pred_rgb.dtype, pred_rgb.device
        plan_key = (views, channels, pred_mask is not None, height, width, max_frequency(top), coeff_rgb, coeff_mask,
                    dtype, device)
        plan = _fft_plan(*plan_key)
        cells = _fft_cells(top, height, width, norm, dtype, device)
        # The differences go straight into the zero-padded transform input (padding written once).
        torch.sub(pred_rgb, gt_rgb, out=plan.rgb_out)
        if pred_mask is not None:
            torch.sub(pred_mask, gt_mask, out=plan.mask_out)
        along_x = torch.fft.rfft(plan.padded_flat, dim=-1)  # [B, H, L+1]
        plan.along_x_in.copy_(along_x[..., : plan.n + 1].transpose(-1, -2))
        moments = torch.fft.fft(plan.along_x_padded, dim=-1)  # [B, N+1, 2L]
        cell_weight = cells.factor * weights[:top].to(dtype=dtype, device=device).index_select(0, cells.band)
        # |X|^2 = re^2 + im^2 on the real view: squares in one contiguous pass, then one add of the
        # interleaved halves (measured faster than X * conj(X) and its strided real part).
        moments_real = torch.view_as_real(moments)
        squares = torch.mul(moments_real, moments_real, out=plan.square_real)
        value = torch.add(squares[..., 0], squares[..., 1], out=plan.value)  # not saved: scratch
        inv_value = None
        if eps > 0:  # value = sqrt(|X|^2 + eps^2) as p / sqrt(p): the backward needs 1 / sqrt(p) too
            inv_value = value.add_(eps * eps).rsqrt()
            value = value.mul_(inv_value)
        loss = plan.coeff @ (value.view(plan.batch, -1) @ cell_weight)
        if offset:
            loss = loss - offset
        ctx.save_for_backward(moments, inv_value, cell_weight)
        ctx.plan_key, ctx.eps = plan_key, eps
        ctx.row_scale = cells.row_scale
        return loss

    @staticmethod
    def backward(ctx, grad):
        moments, inv_value, cell_weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if not any(needs[:4]):
            return (None,) * 6
        plan = _fft_plan(*ctx.plan_key)  # this thread's scratch buffers (backward may run on another thread)
        coeff_rgb, coeff_mask = plan.coeffs
        scale = cell_weight.view(moments.shape[1:]) * ctx.row_scale[:, None]
        # G = X * scale (scale = weight / d(X) for l1, 2 weight for l2), the real scale written
        # straight into a complex buffer (a complex * complex product is several times faster on the
        # CPU than a mixed one), then in place on the saved X, which is not needed again.
        if ctx.eps > 0:
            torch.mul(inv_value, scale, out=plan.square)
        else:
            plan.square.copy_(scale * 2)
        moments.mul_(plan.square)
        along_y = torch.fft.ifft(moments, dim=-1, norm="forward")  # [B, N+1, 2L]
        # Through a buffer with rows of H + 1 entries: irfft's transposed read of it is then not at a
        # power-of-two stride (reading along_y transposed directly measured about 3x slower).
        plan.rows.copy_(along_y[..., : plan.height])
        grad_padded = torch.fft.irfft(plan.rows_t, n=plan.size, dim=-1, norm="forward")  # [B, H, 2L]
        grad_padded = grad_padded.view(plan.grad_shape)[..., : plan.width]  # [V, C(+1), H, W]
        channels = plan.channels
        grad_rgb = grad_gt_rgb = grad_mask = grad_gt_mask = None
        if needs[0] or needs[1]:
            grad_rgb = grad_padded.new_empty(plan.rgb_shape)
            torch.mul(grad_padded[:, :channels], grad * coeff_rgb, out=grad_rgb.permute(0, 3, 1, 2))
            if needs[1]:
                grad_gt_rgb = -grad_rgb
            if not needs[0]:
                grad_rgb = None
        if plan.with_mask and (needs[2] or needs[3]):
            grad_mask = grad_padded[:, channels] * (grad * coeff_mask)
            if needs[3]:
                grad_gt_mask = -grad_mask
            if not needs[2]:
                grad_mask = None
        return grad_rgb, grad_gt_rgb, grad_mask, grad_gt_mask, None, None


class _NativeSpectralLoss(torch.autograd.Function):
    """``_FFTSpectralLoss`` on the CPU as one C++ call (csrc/spectral.cpp, ``st_spectral_fused``).

    The C++ kernel computes the loss and, when a gradient is wanted, the gradient with respect to the
    images in the same call: colour channels and masks in pairs, each pair as one complex 2D transform
    (its own mixed-radix FFT), kept in the core's cache from the image differences to the image
    gradients. The backward pass only scales the stored gradient by the upstream gradient, a scalar.
    Tested against ``_FFTSpectralLoss`` (``USE_NATIVE = False``), the DFT path and the direct sum.
    """

    @staticmethod
    def forward(ctx, pred_rgb, gt_rgb, pred_mask, gt_mask, weights, config):
        norm, eps, coeff_rgb, coeff_mask, offset, top = config
        views, height, width, channels = pred_rgb.shape
        plan = _native_plan((views, channels, pred_mask is not None, height, width, top, norm, coeff_rgb, coeff_mask,
                             pred_rgb.dtype))
        pred_rgb, gt_rgb = pred_rgb.contiguous(), gt_rgb.contiguous()
        grad_out = any(ctx.needs_input_grad[:4])
        grad_rgb = torch.empty_like(pred_rgb) if grad_out else None
        grad_mask = None
        if pred_mask is not None:
            pred_mask, gt_mask = pred_mask.contiguous(), gt_mask.contiguous()
            masks = (pred_mask.data_ptr(), gt_mask.data_ptr())
            if grad_out:
                grad_mask = torch.empty_like(pred_mask)
        else:
            masks = (None, None)
        weights = weights.to(torch.float64).contiguous()
        status = ctypes.c_int(0)
        total = plan.fused(views, height, width, channels, pred_rgb.data_ptr(), gt_rgb.data_ptr(), *masks,
                           plan.n, plan.cells.factor.data_ptr(), plan.cells.band32.data_ptr(), weights.data_ptr(),
                           plan.coeff64.data_ptr(), eps, None if grad_rgb is None else grad_rgb.data_ptr(),
                           None if grad_mask is None else grad_mask.data_ptr(), torch.get_num_threads(),
                           ctypes.byref(status))
        if status.value != 0:  # not expected: spectral_loss checks _native_supported first
            raise RuntimeError(f"spectral_loss: the C++ kernel cannot transform length {2 * max(height, width)}")
        if grad_out:
            ctx.save_for_backward(grad_rgb, grad_mask)
        return torch.full((), total - offset, dtype=pred_rgb.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        needs = ctx.needs_input_grad
        grad_rgb, grad_mask = ctx.saved_tensors
        grad_rgb = grad_rgb * grad
        grad_mask = grad_mask * grad if grad_mask is not None else None
        return (grad_rgb if needs[0] else None, -grad_rgb if needs[1] else None,
                grad_mask if needs[2] else None, -grad_mask if grad_mask is not None and needs[3] else None,
                None, None)


class _NativePlan:
    """Kernel entry point and per-cell constants of ``_NativeSpectralLoss`` at one configuration."""

    def __init__(self, views, channels, with_mask, height, width, top, norm, coeff_rgb, coeff_mask, dtype):
        self.fused = getattr(_native_kernels(), f"st_spectral_fused_{_SUFFIX[dtype]}")
        self.cells = _fft_cells(top, height, width, norm, dtype, torch.device("cpu"))
        self.n = max_frequency(top)
        self.coeff64 = torch.tensor(([coeff_rgb] * channels + [coeff_mask] * int(with_mask)) * views,
                                    dtype=torch.float64)


def _native_supported(height: int, width: int) -> bool:
    """The C++ kernel's FFT handles lengths 2 max(H, W) whose prime factors are 2, 3 and 5."""
    rest = 2 * max(height, width)
    for factor in (2, 3, 5):
        while rest % factor == 0:
            rest //= factor
    return rest == 1


_WORKSPACES = threading.local()


def _cached_plan(kind: type, key: tuple):
    """This thread's ``kind(*key)``, built on first use; a few configurations at a time (e.g. the
    training and evaluation sizes)."""
    plans = getattr(_WORKSPACES, kind.__name__, None)
    if plans is None:
        plans = {}
        setattr(_WORKSPACES, kind.__name__, plans)
    plan = plans.get(key)
    if plan is None:
        if len(plans) >= 8:
            plans.clear()
        plan = plans[key] = kind(*key)
    return plan


def _native_plan(key: tuple) -> _NativePlan:
    return _cached_plan(_NativePlan, key)


class _FFTPlan:
    """Scratch buffers and their views for ``_FFTSpectralLoss`` at one configuration.

    The buffers' contents are only used within one forward or one backward pass, never saved, so one
    plan per thread and configuration is reused across calls: no reallocation (on the CPU, about a
    megabyte of fresh, page-faulting memory per buffer per call), the zero padding is written once, and
    the views are built once (indexing from Python costs microseconds per view).
    """

    def __init__(self, views, channels, with_mask, height, width, n, coeff_rgb, coeff_mask, dtype, device):
        size = 2 * max(height, width)
        images = channels + int(with_mask)
        batch = views * images
        cdtype = _complex_dtype(dtype)
        self.height, self.width, self.size, self.channels, self.with_mask = height, width, size, channels, with_mask
        self.batch, self.coeffs, self.n = batch, (coeff_rgb, coeff_mask), n
        self.grad_shape, self.rgb_shape = (views, images, height, size), (views, height, width, channels)
        padded = torch.zeros(views, images, height, size, dtype=dtype, device=device)
        self.padded_flat = padded.view(batch, height, size)
        self.rgb_out = padded[:, :channels, :, :width].permute(0, 2, 3, 1)  # [V, H, W, C] view
        self.mask_out = padded[:, channels, :, :width] if with_mask else None
        self.along_x_padded = torch.zeros(batch, n + 1, size, dtype=cdtype, device=device)
        self.along_x_in = self.along_x_padded[..., :height]
        self.square = torch.empty(batch, n + 1, size, dtype=cdtype, device=device)
        self.square_real = torch.view_as_real(self.square)
        self.value = torch.empty(batch, n + 1, size, dtype=dtype, device=device)
        self.rows = torch.empty(batch, n + 1, height + 1, dtype=cdtype, device=device)[..., :height]
        self.rows_t = self.rows.transpose(-1, -2)
        coeff = torch.tensor(([coeff_rgb] * channels + [coeff_mask] * int(with_mask)) * views, dtype=dtype)
        self.coeff = coeff.to(device)


def _fft_plan(*key) -> _FFTPlan:
    """key: (views, channels, with_mask, height, width, n, coeff_rgb, coeff_mask, dtype, device)."""
    return _cached_plan(_FFTPlan, key)


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


# --------------------------------------------------------------------------------------------------
# C++ kernels (csrc/spectral.cpp)
# --------------------------------------------------------------------------------------------------

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
NATIVE_SOURCE = Path(__file__).resolve().parent / "csrc" / "spectral.cpp"
_native: list = []  # [] before the first attempt, then [CDLL or None]
USE_NATIVE = True
"""Use the C++ element-wise kernels on the CPU (False: the torch-op twin, e.g. to compare them)."""


def _native_kernels():
    """The C++ kernels of the fused FFT path, compiled on first use; None if switched off (``USE_NATIVE``)
    or if they cannot be built (no compiler: the torch-op twin runs instead, with one warning)."""
    if not USE_NATIVE:
        return None
    if not _native:
        try:
            lib = build(NATIVE_SOURCE, "spectral loss C++ kernels")
        except (RuntimeError, OSError) as err:
            warnings.warn(f"{err}\nspectral_loss falls back to torch ops for its element-wise passes (slower, "
                          "same result)", RuntimeWarning, stacklevel=3)
            lib = None
        if lib is not None:
            c_int, ptr, c_double = ctypes.c_int, ctypes.c_void_p, ctypes.c_double
            for suffix in _SUFFIX.values():
                function = getattr(lib, f"st_spectral_fused_{suffix}")
                function.argtypes = [c_int] * 4 + [ptr] * 4 + [c_int] + [ptr] * 4 + [c_double, ptr, ptr, c_int, ptr]
                function.restype = c_double
        _native.append(lib)
    return _native[0]


# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------


def moment_distance(dm: Tensor, norm: str) -> Tensor:
    """Per-frequency distance of normalised moment differences dm (complex, any shape).

    "l1": sqrt(|dm|^2 + L1_EPS^2) - L1_EPS (smoothed modulus); "l2": |dm|^2.
    """
    _check_norm(norm, "moment_distance")
    if norm == "l2":
        return _abs2(dm)
    return torch.sqrt(_abs2(dm) + L1_EPS**2) - L1_EPS


def _abs2(z: Tensor) -> Tensor:
    return z.real.square() + z.imag.square()


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _check_num_bands(num_bands: int, where: str) -> None:
    if isinstance(num_bands, bool) or not isinstance(num_bands, int) or num_bands < 1:
        raise ValueError(f"{where}: num_bands must be an integer >= 1, got {num_bands!r}")


def _check_images(images: Tensor, where: str, name: str, finite: bool = True) -> None:
    if not isinstance(images, Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim < 2:
        raise ValueError(f"{where}: {name} must be [..., H, W], got shape {tuple(images.shape)}")
    if not images.dtype.is_floating_point:
        raise TypeError(f"{where}: {name} must be a real floating tensor, got dtype {images.dtype}")
    if images.shape[-1] < 1 or images.shape[-2] < 1:
        raise ValueError(f"{where}: {name} has an empty image, shape {tuple(images.shape)}")
    if finite:
        _check_finite(images, where, name)


def _check_finite(images: Tensor, where: str, name: str) -> None:
    # One reduction instead of an element-wise isfinite pass: NaN / Inf propagate into the sum; only
    # if the sum is not finite (or overflowed) are the elements counted.
    if not math.isfinite(float(images.detach().sum())):
        bad = int((~torch.isfinite(images)).sum())
        if bad:
            raise ValueError(f"{where}: {name} has {bad} non-finite values (NaN or Inf)")


def _check_pair(pred: Tensor, gt: Tensor, where: str, pred_name: str, gt_name: str, finite: bool = True) -> None:
    if not isinstance(gt, Tensor):
        raise TypeError(f"{where}: {gt_name} must be a torch.Tensor, got {type(gt).__name__}")
    if pred.shape != gt.shape:
        raise ValueError(f"{where}: {pred_name} {tuple(pred.shape)} and {gt_name} {tuple(gt.shape)} must have the same shape")
    if pred.device != gt.device:
        raise ValueError(f"{where}: {pred_name} is on {pred.device} but {gt_name} is on {gt.device}")
    _check_images(pred, where, pred_name, finite)
    _check_images(gt, where, gt_name, finite)


def _check_freqs(freqs: Tensor, where: str) -> None:
    if freqs.ndim != 2 or freqs.shape[-1] != 2:
        raise ValueError(f"{where}: freqs must be [F, 2] integer (kx, ky), got shape {tuple(freqs.shape)}")
    if freqs.dtype.is_floating_point or freqs.dtype.is_complex:
        raise TypeError(f"{where}: freqs must be an integer tensor (integer frequency pairs), got {freqs.dtype}")


def _check_norm(norm: str, where: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"{where}: norm must be one of {NORMS}, got {norm!r}")


def _check_method(method: str, where: str) -> None:
    if method not in METHODS:
        raise ValueError(f"{where}: method must be one of {METHODS}, got {method!r}")


def _check_resolution(num_bands: int, height: int, width: int, where: str) -> None:
    _check_num_bands(num_bands, where)
    limit = max_num_bands(height, width)
    if num_bands > limit:
        raise ValueError(
            f"{where}: num_bands={num_bands} needs frequencies up to 2^{num_bands - 1}={2 ** (num_bands - 1)}, "
            f"but a {height}x{width} image resolves integer frequencies only up to max(H, W)={max(height, width)} "
            f"(pixel pitch 2/max(H, W) with the 0.5*pi phase scale); use num_bands <= {limit} or a larger image"
        )


def _check_band_weights(band_weights: BandWeights, where: str) -> Tensor:
    """band_weights as a detached [K] CPU tensor (the weights are few and come from the schedule)."""
    weights = torch.as_tensor(band_weights).detach().cpu()
    if weights.ndim != 1 or weights.shape[0] < 1:
        raise ValueError(f"{where}: band_weights must be a non-empty 1D [K] sequence, got shape {tuple(weights.shape)}")
    if not weights.dtype.is_floating_point:
        weights = weights.double()
    values = weights.tolist()  # checked in Python: K values, cheaper than two tensor reductions
    if not all(math.isfinite(value) and value >= 0 for value in values):
        raise ValueError(f"{where}: band_weights must be finite and >= 0, got {values}")
    return weights.detach()
