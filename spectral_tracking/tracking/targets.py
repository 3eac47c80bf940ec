"""The tracker's supervision, kept as the sequence's uint8 frames and made float one indexing at a time.

A run used to hold every view and frame as float32 targets composited over the background: 4 bytes
per colour channel and 4 per mask pixel, about 16 MB per (view, frame) at 512^2, so 0.1 GB per frame
with 8 cameras, before the copies the compositing made. `Targets.images` and `Targets.masks` are now
views over the uint8 arrays the `Sequence` already holds: indexing one converts that part only, with
the sequence's own conversion (`over_background`, `unit_float`), so the values are bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from spectral_tracking.cameras import Cameras
from spectral_tracking.data.sequence import over_background, unit_float

__all__ = ["MaskStack", "TargetImages", "Targets"]


class _Uint8Stack:
    """A stack over the uint8 tensor ``data``: its shape and length; subclasses say what indexing gives."""

    data: Tensor

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    def __len__(self) -> int:
        return len(self.data)


class MaskStack(_Uint8Stack):
    """[V, T, H, W] masks in [0, 1] over uint8 storage (255 = object); ``stack[index]`` is float32."""

    def __init__(self, masks: Tensor) -> None:
        if masks.dtype != torch.uint8 or masks.dim() != 4:
            raise TypeError(f"MaskStack: expected uint8 [V, T, H, W] masks, got {masks.dtype} {list(masks.shape)}")
        self.data = masks

    def __getitem__(self, index) -> Tensor:
        return unit_float(self.data[index])


class TargetImages(_Uint8Stack):
    """[V, T, H, W, 3] target colours in [0, 1]: the uint8 frames composited over ``background`` [3]
    with their masks (clutter outside the mask becomes the background, as in the paper's App. E.1).
    ``stack[index]`` indexes views, frames and pixels (not the colour channel) and returns float32."""

    def __init__(self, images: Tensor, masks: Tensor, background: Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 5 or images.shape[-1] != 3:
            raise TypeError(f"TargetImages: expected uint8 [V, T, H, W, 3] images, got {images.dtype} {list(images.shape)}")
        if masks.shape != images.shape[:-1]:
            raise ValueError(f"TargetImages: masks {list(masks.shape)} do not match images {list(images.shape)}")
        self.data, self.masks = images, masks
        self.background = torch.as_tensor(background, dtype=torch.float32).reshape(-1)

    def __getitem__(self, index) -> Tensor:
        if isinstance(index, tuple) and len(index) > 4:
            raise IndexError("TargetImages: index views, frames, rows and columns (at most 4 indices), not the colour channel")
        return over_background(self.data[index], self.masks[index], self.background)


@dataclass
class Targets:
    """Supervision for the tracker: every view of every frame."""

    cameras: Cameras  # V cameras
    images: TargetImages  # [V, T, H, W, 3] in [0, 1], composited over the run's background
    masks: MaskStack  # [V, T, H, W] in [0, 1]
    train_views: list[int]
    eval_views: list[int]  # novel views (never used for training)
    view_names: list[str]

    @property
    def num_frames(self) -> int:
        return self.images.shape[1]

    @classmethod
    def from_sequence(cls, seq, background: Tensor) -> "Targets":
        """Every view and frame of a `Sequence` (sharing its uint8 storage), composited over ``background`` [3]."""
        return cls(
            cameras=seq.cameras, images=TargetImages(seq.images, seq.masks, background), masks=MaskStack(seq.masks),
            train_views=list(seq.train_views), eval_views=list(seq.eval_views), view_names=list(seq.view_names),
        )
