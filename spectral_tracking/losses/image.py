"""Image losses as small objects with one signature, chosen by name from the config.

Each is called as ``loss(pred_rgb, pred_alpha, gt_rgb, gt_mask, band_weights)`` with images
[V, H, W, 3] and opacities / masks [V, H, W] in [0, 1] (the renderer's layout) and the step's band
weights [K] (used by the spectral loss only), and returns its named terms, with the value to
optimise under ``"image"``. A new image loss is a new class here (or in its own file) plus an entry
in `IMAGE_LOSSES`.

- ``spectral``: annealed spectral moments of the image and the mask (paper eq. 21-22).
- ``pixel``: MSE + masked MSE + BCE on the opacity (paper eq. 23).
- ``lpips``: LPIPS (paper: the late LPIPS phase), backbone ``alex`` or ``vgg``.
"""

from __future__ import annotations

from torch import Tensor, nn

from spectral_tracking.losses.photometric import pixel_loss
from spectral_tracking.losses.spectral import band_sizes, spectral_loss


class SpectralMomentLoss:
    """band_reduction: how eq. 22 combines the frequencies of a band. "mean" (default): the mean
    distance over the band's frequencies, so every band weighs alike whatever its size; "sum": the
    sum, eq. 22's sum over the band as printed, which weighs band k by its frequency count (9, 16, 56,
    ... 49,152 at k = 7), i.e. the per-band means times `band_sizes`. Either way the colour term is the
    mean over the 3 channels and the views (the L1 of an RGB moment read per channel; summing the
    channels would make it 3x larger against ``lambda_mask``'s mask term). lambda_rgb weighs the colour
    moments (1 in the paper; 0 keeps the masks' only, beyond the paper)."""

    REDUCTIONS = ("mean", "sum")

    def __init__(self, lambda_mask: float = 0.5, norm: str = "l1", band_reduction: str = "mean",
                 lambda_rgb: float = 1.0) -> None:
        if band_reduction not in self.REDUCTIONS:
            raise ValueError(f"loss.band_reduction must be mean or sum, got {band_reduction!r}")
        self.lambda_mask, self.norm, self.band_reduction = float(lambda_mask), norm, band_reduction
        self.lambda_rgb = float(lambda_rgb)

    def __call__(self, pred_rgb: Tensor, pred_alpha: Tensor, gt_rgb: Tensor, gt_mask: Tensor,
                 band_weights: Tensor) -> dict[str, Tensor]:
        if self.band_reduction == "sum":
            band_weights = band_weights * band_sizes(len(band_weights)).to(band_weights.dtype)
        value = spectral_loss(pred_rgb, gt_rgb, pred_alpha, gt_mask, band_weights,  # CPU weights: no device sync
                              lambda_mask=self.lambda_mask, norm=self.norm, lambda_rgb=self.lambda_rgb)
        return {"spectral": value, "image": value}


class PixelLoss:
    def __init__(self, lambda_bce: float = 0.3, lambda_masked: float = 1.0, bce_eps: float = 1e-3) -> None:
        self.lambda_bce, self.lambda_masked, self.bce_eps = float(lambda_bce), float(lambda_masked), float(bce_eps)

    def __call__(self, pred_rgb: Tensor, pred_alpha: Tensor, gt_rgb: Tensor, gt_mask: Tensor,
                 band_weights: Tensor) -> dict[str, Tensor]:
        terms = pixel_loss(pred_rgb, gt_rgb, pred_alpha, gt_mask, lambda_bce=self.lambda_bce, lambda_masked=self.lambda_masked,
                           bce_eps=self.bce_eps)
        return {**terms, "image": terms["total"]}


class LPIPSLoss:
    """The frozen network is loaded on first use, on the images' device, and kept out of checkpoints."""

    def __init__(self, net: str = "alex", weight: float = 1.0) -> None:
        self.net, self.weight = net, float(weight)
        self._model: nn.Module | None = None

    def __call__(self, pred_rgb: Tensor, pred_alpha: Tensor, gt_rgb: Tensor, gt_mask: Tensor,
                 band_weights: Tensor) -> dict[str, Tensor]:
        if self._model is None:
            from spectral_tracking.losses.lpips import load_lpips

            self._model = load_lpips(self.net)
        self._model = self._model.to(pred_rgb.device)
        value = self.weight * self._model(pred_rgb.permute(0, 3, 1, 2), gt_rgb.permute(0, 3, 1, 2)).mean()
        return {"lpips": value, "image": value}


IMAGE_LOSSES = {"spectral": SpectralMomentLoss, "pixel": PixelLoss, "lpips": LPIPSLoss}
