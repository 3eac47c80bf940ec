"""The torch paths of the spectral loss: half-plane moments by FFT (or separable DFT), and the fused FFT loss.

Every fast path computes exactly the needed square of frequencies for the highest *active* band
(bands with zero weight above it cost nothing), on the half plane kx >= 0 only: images are real, so
M(-w) = conj(M(w)) and |dM(-w)| = |dM(w)|; the kx > 0 columns count twice (``bands.py``).

- ``"fft"``: along each axis a zero-padded FFT of length 2L returns every integer frequency of this
  grid up to a unit-modulus phase factor (x_i is affine in i), which cancels in |dM|.
- ``"dft"``: separable DFT matrices, ``Ey^T (D Ex)``, costing O(H W N) for max frequency N.

``_FFTSpectralLoss`` is the whole FFT path of ``spectral_loss`` as one autograd function with a
hand-written backward (the adjoint transforms), working in per-thread scratch buffers (``_FFTPlan``,
cached by ``_cached_plan``); it is the C++ kernel's tested twin (``cpu.py``). ``_FFTWeightedModulus``
serves the stacked differences when the dtypes differ, ``_Modulus`` / ``_half_plane_power`` the DFT
path and ``spectral_band_errors``.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

from .bands import _fft_cells, max_frequency
from .moments import L1_EPS, PHASE_SCALE, _complex_dtype, pixel_coordinates


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
