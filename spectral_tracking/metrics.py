"""Evaluation metrics: PSNR, SSIM, LPIPS on rendered vs target frames, and the 3D tracking error.

Image functions take channels-last batches as the renderer produces them (``RenderOutput.rgb``):
``pred: [B, H, W, 3]``, ``gt: [B, H, W, 3]``, RGB in [0, 1], and return one value per image,
``[B]``. PSNR and SSIM are torchmetrics' with ``data_range=1`` (SSIM: Gaussian window 11, sigma 1.5,
k1 0.01, k2 0.03). LPIPS is :class:`spectral_tracking.losses.lpips.LPIPS` (AlexNet by default, as
in the tracking literature); it needs the weights built by ``python -m spectral_tracking.weights``,
and without them :func:`lpips` returns ``None`` and logs one warning per net, so PSNR and SSIM
still run.

Image metrics alone can hide a stretched or misplaced asset, so where ground-truth Gaussians exist
:func:`gaussian_3d_error` compares tracked and true Gaussian centres directly.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path

import torch
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from spectral_tracking.losses.lpips import LPIPS, LPIPSWeightsMissing
from spectral_tracking.losses.arap import best_fit_rotations
from spectral_tracking.losses.scale import spread
from spectral_tracking.weights import lpips_weights_path

log = logging.getLogger(__name__)
_warned_missing_lpips: set[str] = set()


def _check_pair(pred: Tensor, gt: Tensor) -> None:
    if pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(f"expected images [B, H, W, 3] (channels last), got pred {tuple(pred.shape)}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ in shape")
    if not (pred.is_floating_point() and gt.is_floating_point()):
        raise TypeError(f"expected float images in [0, 1], got {pred.dtype} and {gt.dtype}")


def _channels_first(images: Tensor) -> Tensor:
    return images.permute(0, 3, 1, 2).contiguous()  # [B, H, W, 3] -> [B, 3, H, W]


def psnr(pred: Tensor, gt: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB per image (data range 1); ``inf`` for identical images.

    pred: [B, H, W, 3], gt: [B, H, W, 3] in [0, 1] -> [B].
    """
    _check_pair(pred, gt)
    return peak_signal_noise_ratio(pred, gt, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(pred: Tensor, gt: Tensor) -> Tensor:
    """Structural similarity per image (data range 1, Gaussian window 11, sigma 1.5); 1 for identical images.

    pred: [B, H, W, 3], gt: [B, H, W, 3] in [0, 1] -> [B].
    """
    _check_pair(pred, gt)
    return structural_similarity_index_measure(
        _channels_first(pred), _channels_first(gt), data_range=1.0, reduction="none"
    )


@functools.lru_cache(maxsize=4)
def _lpips_model(net: str, device: str, weights_path: str) -> LPIPS:
    # Keyed on the weight file too, so pointing SPECTRAL_TRACKING_CACHE elsewhere takes effect.
    return LPIPS(net, weights_path=Path(weights_path)).to(device)


def lpips(pred: Tensor, gt: Tensor, net: str = "alex") -> Tensor | None:
    """LPIPS distance per image, or ``None`` (with one logged warning per net) if the weights are not built.

    pred: [B, H, W, 3], gt: [B, H, W, 3] in [0, 1] -> [B] (no gradient; for a loss use
    :class:`spectral_tracking.losses.lpips.LPIPS` directly).
    """
    _check_pair(pred, gt)
    try:
        model = _lpips_model(net, str(pred.device), str(lpips_weights_path(net)))
    except LPIPSWeightsMissing as err:
        if net not in _warned_missing_lpips:
            _warned_missing_lpips.add(net)
            log.warning("LPIPS is not computed: %s", err)
        return None
    with torch.no_grad():
        return model(_channels_first(pred.float()), _channels_first(gt.float()))


def mask_iou_values(alpha: Tensor, masks: Tensor, threshold: float = 0.5) -> Tensor:
    """IoU(alpha > threshold, masks > threshold) per image: alpha, masks [..., H, W] of the same shape,
    values in [0, 1] -> [B] (B the product of the leading sizes). An image where both are empty
    counts as 1 (nothing to miss)."""
    if alpha.shape != masks.shape:
        raise ValueError(f"mask_iou: shapes differ {list(alpha.shape)} vs {list(masks.shape)}")
    a = alpha.reshape(-1, *alpha.shape[-2:]) > threshold
    m = masks.reshape(-1, *masks.shape[-2:]).float() > threshold
    inter, union = (a & m).sum((1, 2)).float(), (a | m).sum((1, 2)).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def mask_iou(alpha: Tensor, masks: Tensor, threshold: float = 0.5) -> float:
    """Mean over images of `mask_iou_values`."""
    return float(mask_iou_values(alpha, masks, threshold).mean())


EVAL_CHUNK_PIXELS = 2**18
"""Pixels per chunk of `per_image` (1 image at 512^2): its values are per image, so the chunk
changes the memory held, not the numbers."""


def per_image(metric, pred: Tensor, gt: Tensor) -> Tensor | None:
    """``metric(pred, gt) -> [b]`` (or None) over chunks of about `EVAL_CHUNK_PIXELS` pixels,
    concatenated to [B]: SSIM's filtered stacks and LPIPS's features hold tens of copies of their
    batch, so a whole 12-frame 512^2 video at once peaked near 9 GB."""
    chunk = max(1, EVAL_CHUNK_PIXELS // (pred.shape[1] * pred.shape[2]))
    parts = []
    for start in range(0, pred.shape[0], chunk):
        value = metric(pred[start:start + chunk], gt[start:start + chunk])
        if value is None:
            return None
        parts.append(value.reshape(-1))
    return torch.cat(parts)


def image_metric_values(pred: Tensor, gt: Tensor, lpips_net: str | None = "alex") -> dict[str, Tensor]:
    """PSNR, SSIM and LPIPS of every image: ``{"psnr": [B], "ssim": [B], "lpips": [B]}`` (``"lpips"``
    absent when ``lpips_net`` is None or its weights are not built), computed in chunks
    (`per_image`). ``pred`` is clamped to [0, 1]; ``gt`` must lie in [0, 1] (else ValueError)."""
    _check_pair(pred, gt)
    with torch.no_grad():
        lo, hi = float(gt.min()), float(gt.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"gt images must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
        pred, gt = pred.detach().clamp(0.0, 1.0), gt.detach()
        out = {"psnr": psnr(pred, gt), "ssim": per_image(ssim, pred, gt)}
        dist = None if lpips_net is None else per_image(lambda p, g: lpips(p, g, net=lpips_net), pred, gt)
        if dist is not None:
            out["lpips"] = dist
    return out


def image_metrics(pred: Tensor, gt: Tensor, lpips_net: str | None = "alex") -> dict[str, float]:
    """Batch means of PSNR, SSIM and LPIPS for rendered vs target frames.

    Args:
        pred: [B, H, W, 3] rendered RGB; clamped to [0, 1] first (renders can overshoot slightly).
        gt: [B, H, W, 3] target RGB, must already lie in [0, 1].
        lpips_net: backbone for LPIPS ("alex" or "vgg"), or None to skip LPIPS.

    Returns:
        ``{"psnr": dB, "ssim": ..., "lpips": ...}``, each the mean of the per-image values
        (`image_metric_values`). The ``"lpips"`` key is absent when the LPIPS weights are not built
        (a warning says so once).

    Raises:
        ValueError: shapes differ / are not [B, H, W, 3], or ``gt`` leaves [0, 1].
    """
    return {name: float(v.mean()) for name, v in image_metric_values(pred, gt, lpips_net).items()}


def gaussian_3d_error(pred_means: Tensor, gt_means: Tensor, radius: float) -> dict[str, float]:
    """3D tracking error of Gaussian centres, where the true Gaussians are known.

    Args:
        pred_means: [T, N, 3] tracked Gaussian means per frame (world units).
        gt_means: [T, N, 3] true means of the same Gaussians (same order) per frame.
        radius: the asset's bounding radius (world units, > 0), e.g. ``Gaussians.bounding_sphere``.

    Returns:
        ``mean_error``: mean over frames and Gaussians of ``||pred - gt||``, divided by ``radius``
        (0.1 = off by a tenth of the asset's radius on average).
        ``size_ratio``: per frame, RMS distance of the predicted means from their centroid divided
        by the same for the true means, averaged over frames (1 = right size; 1.2 = 20% too large;
        translation- and rotation-invariant, so it isolates stretching/shrinking).
    """
    if pred_means.ndim != 3 or pred_means.shape[-1] != 3:
        raise ValueError(f"pred_means must be [T, N, 3], got {tuple(pred_means.shape)}")
    if pred_means.shape != gt_means.shape:
        raise ValueError(f"pred_means {tuple(pred_means.shape)} and gt_means {tuple(gt_means.shape)} differ in shape")
    if pred_means.shape[0] < 1 or pred_means.shape[1] < 2:
        raise ValueError(f"need at least 1 frame and 2 Gaussians, got {tuple(pred_means.shape)}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    with torch.no_grad():
        pred, gt = pred_means.detach().double(), gt_means.detach().to(pred_means.device).double()
        mean_error = (pred - gt).norm(dim=-1).mean() / radius
        gt_spread = spread(gt)  # [T]
        if bool((gt_spread <= 0).any()):
            raise ValueError("gt_means collapse to a single point in some frame; size_ratio is undefined")
        size_ratio = (spread(pred) / gt_spread).mean()
    return {"mean_error": float(mean_error), "size_ratio": float(size_ratio)}


def pose_errors(pred_means: Tensor, gt_means: Tensor, axis: Tensor, radius: float) -> dict[str, list[float]]:
    """Where a 3D error comes from, frame by frame: the whole asset's turn and its depth.

    Args:
        pred_means, gt_means: [T, N, 3] as in `gaussian_3d_error`.
        axis: [3] a camera's viewing direction in world coordinates (the third row of its
            world-to-camera rotation), along which one view sees depth only as apparent size.
        radius: the asset's bounding radius (world units, > 0).

    Returns:
        ``rotation``: per frame, the angle (degrees) of the rotation that best maps the true means,
        centred, onto the predicted ones, centred (Kabsch): how far the tracked body is turned.
        ``depth``: per frame, the predicted centroid minus the true one along ``axis``, in radii
        (positive: farther from the camera).
    """
    if pred_means.shape != gt_means.shape or pred_means.ndim != 3 or pred_means.shape[-1] != 3:
        raise ValueError(f"pred_means {tuple(pred_means.shape)} and gt_means {tuple(gt_means.shape)}: expected two [T, N, 3]")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    with torch.no_grad():
        pred, gt = pred_means.detach().double(), gt_means.detach().to(pred_means.device).double()
        cp, cg = pred.mean(1, keepdim=True), gt.mean(1, keepdim=True)
        R = best_fit_rotations(gt - cg, pred - cp)  # [T, 3, 3] Kabsch: gt (centred) onto pred (centred), per frame
        cos = ((R.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
        a = axis.detach().to(pred).reshape(3)
        depth = ((cp - cg)[:, 0] @ (a / a.norm())) / radius
    return {"rotation": torch.rad2deg(torch.arccos(cos)).tolist(), "depth": depth.tolist()}


def gsgd_view_metrics(pred: Tensor, gt: Tensor, size: int | None = 800, max_frames: int = 14,
                      with_lpips: bool = True) -> dict[str, float]:
    """The image metrics of one view as GSGD's ``evaluate_output.py`` computes them (the code the
    paper builds on), so our numbers can be set beside the paper's:

    - the first ``max_frames`` (14) frames, resized to ``size`` x ``size`` (800; bilinear);
    - PSNR pooled over the frames: one MSE over every pixel, with the data range of the target
      (max - min over the view's frames, torchmetrics' default when no range is given);
    - LPIPS (AlexNet) per frame on the [0, 1] images *without* rescaling to [-1, 1], averaged;
    - SSIM is not in that script: ours (per image, data range 1), averaged.

    pred, gt: [T, H, W, 3] in [0, 1] (one view). Returns {"psnr", "ssim", "lpips"?}.
    """
    import torch.nn.functional as F

    _check_pair(pred, gt)
    with torch.no_grad():
        pred, gt = pred[:max_frames].detach().clamp(0, 1).float(), gt[:max_frames].float()
        if size is not None and (pred.shape[1], pred.shape[2]) != (size, size):
            pred, gt = (F.interpolate(_channels_first(x), size=(size, size), mode="bilinear", align_corners=False)
                        .permute(0, 2, 3, 1).contiguous() for x in (pred, gt))
        data_range = float(gt.max() - gt.min())
        mse = float((pred - gt).square().mean())
        out = {"psnr": float("inf") if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse),
               "ssim": float(per_image(ssim, pred, gt).mean())}
        # GSGD passes [0, 1] images to an LPIPS that expects [-1, 1]; ours scales [0, 1] -> [-1, 1],
        # so give it (x + 1) / 2 to reproduce the unscaled input.
        dist = per_image(lambda p, g: lpips(p, g, net="alex"), (pred + 1) / 2, (gt + 1) / 2) if with_lpips else None
        if dist is not None:
            out["lpips"] = float(dist.mean())
    return out
