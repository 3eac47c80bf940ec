"""The paper's maths: spectral moments (SpectralSplats eq. 21) and the moment loss (eq. 22), by direct sums.

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

Loss (paper eq. 22; the bands k and their limits are defined in ``bands.py``)::

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

This file evaluates all of it literally, over an explicit frequency set: ``spectral_moments_reference``
is the direct sum of eq. 21, ``spectral_moments`` the same sum done separably, ``moment_loss`` the
weighted distance of eq. 22. The fast paths (``fft.py``, ``cpu.py``) are tested against these.
Images are channels-first ``[..., H, W]`` here.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .validation import _check_freqs, _check_images, _check_norm, _check_pair

PHASE_SCALE = 0.5 * math.pi
"""The 0.5*pi factor of eq. 21: phase = PHASE_SCALE * (kx * x + ky * y)."""

L1_EPS = 1e-6
"""Smoothing of the l1 modulus, sqrt(|dM|^2 + eps^2) - eps (see module docstring)."""


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


def spectral_moments_reference(images: Tensor, freqs: Tensor) -> Tensor:
    """Eq. 21 as written: the direct sum over all pixels, sum_p I(p) exp(j 0.5 pi w^T p).

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


def spectral_moments(images: Tensor, freqs: Tensor) -> Tensor:
    """Spectral moments, paper eq. 21, exactly (no normalisation): sum_p I(p) exp(j 0.5 pi w^T p).

    The same sum as ``spectral_moments_reference``, evaluated separably over the distinct kx and ky
    values of ``freqs`` (the phase is kx x + ky y, so the sum over x and then y factorises).

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


def moment_distance(dm: Tensor, norm: str) -> Tensor:
    """Per-frequency distance of normalised moment differences dm (complex, any shape).

    "l1": sqrt(|dm|^2 + L1_EPS^2) - L1_EPS (smoothed modulus); "l2": |dm|^2.
    """
    _check_norm(norm, "moment_distance")
    if norm == "l2":
        return _abs2(dm)
    return torch.sqrt(_abs2(dm) + L1_EPS**2) - L1_EPS


def moment_loss(pred: Tensor, gt: Tensor, freqs: Tensor, weights: Tensor, norm: str = "l1") -> Tensor:
    """General weighted moment distance over an explicit frequency set (eq. 22, reference path).

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


def _abs2(z: Tensor) -> Tensor:
    return z.real.square() + z.imag.square()


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64
