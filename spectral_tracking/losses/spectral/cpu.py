"""The C++ path of the spectral loss on the CPU: ``csrc/spectral.cpp`` behind a ``torch.autograd.Function``.

``_NativeSpectralLoss`` is ``fft._FFTSpectralLoss`` (its tested twin) as one call of the C++ kernel
``st_spectral_fused``, for CPU float32 / float64 images whose transform length 2 max(H, W) is a
product of 2, 3 and 5 (``_native_supported``). The kernel computes the loss and, when a gradient is
wanted, the gradient with respect to the images in the same pass. Colour channels and masks go in
pairs, a + i b, through one complex 2D transform (its own mixed-radix Stockham FFT, vectorised across
transforms), rows first and then only the 2N + 1 kept kx columns; the two images' moments are
separated by Hermitian symmetry, and the gradient of both comes back through one inverse transform.
A pair stays in the core's cache from the image differences to the image gradients, which is what
makes it several times faster than the torch ops after a render has evicted the cache. The backward
pass scales the stored gradient.

The kernel is built, loaded and called through ``spectral_tracking.runtime.native`` (its prototype table,
checked pointers, one failure policy). ``spectral_loss`` chooses this path implicitly, so a kernel
that cannot be built means one warning and the torch twin (``native_kernels``).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from spectral_tracking.runtime import native

from .bands import _fft_cells, max_frequency
from .fft import _cached_plan

FALLBACK = "spectral_loss falls back to torch ops for its fused FFT path (slower, same result)"


def native_kernels() -> native.NativeLibrary | None:
    """The spectral C++ kernel, compiled on first use; None (after one warning) if it cannot be built."""
    return native.load_or_warn("spectral", FALLBACK)


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
            if grad_out:
                grad_mask = torch.empty_like(pred_mask)
        total = plan.fused(V=views, H=height, W=width, C=channels, pred_rgb=pred_rgb, gt_rgb=gt_rgb,
                           pred_mask=pred_mask, gt_mask=gt_mask, N=plan.n, factor=plan.cells.factor,
                           band=plan.cells.band32, w=weights.to(torch.float64).contiguous(), coeff=plan.coeff64,
                           eps=eps, grad_rgb=grad_rgb, grad_mask=grad_mask, n_threads=torch.get_num_threads(),
                           status=plan.status)
        if plan.status.item() != 0:  # not expected: spectral_loss checks _native_supported first
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
        self.fused = native.load("spectral").function("st_spectral_fused", dtype)
        self.cells = _fft_cells(top, height, width, norm, dtype, torch.device("cpu"))
        self.n = max_frequency(top)
        self.coeff64 = torch.tensor(([coeff_rgb] * channels + [coeff_mask] * int(with_mask)) * views,
                                    dtype=torch.float64)
        self.status = torch.zeros(1, dtype=torch.int32)  # written by every call


def _native_plan(key: tuple) -> _NativePlan:
    return _cached_plan(_NativePlan, key)


def _native_supported(height: int, width: int) -> bool:
    """The C++ kernel's FFT handles lengths 2 max(H, W) whose prime factors are 2, 3 and 5."""
    rest = 2 * max(height, width)
    for factor in (2, 3, 5):
        while rest % factor == 0:
            rest //= factor
    return rest == 1
