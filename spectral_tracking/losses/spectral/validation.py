"""Argument checks shared by the spectral functions; each error names the function and the argument."""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import Tensor

NORMS = ("l1", "l2")
METHODS = ("auto", "fft", "dft", "reference")

BandWeights = Union[Tensor, Sequence[float]]


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
