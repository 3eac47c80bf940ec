"""Figures a person reads after a run: labelled image panels and grids, the final-frame strip
(`save_strip`) and the optimisation curves (`save_curves`).

Images are float tensors in [0, 1] ``[H, W, 3]`` or uint8 arrays ``[H, W, 3]``. Small renders are
enlarged by an integer factor with nearest-neighbour sampling (`upscale`), so every pixel of the run's
resolution stays visible as a square block and no interpolation invents detail.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

# Smallest side of a panel in a figure or a video, pixels (renders are enlarged to at least this).
MIN_PANEL = 256
CAPTION_HEIGHT = 22
_CAPTION_BG = (235, 235, 235)
_CAPTION_FG = (20, 20, 20)


def to_uint8(image) -> np.ndarray:
    """[H, W, 3] float tensor / array in [0, 1] or uint8 -> uint8 numpy array."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.dtype != torch.uint8:
            image = (image.float().clamp(0, 1) * 255).round().to(torch.uint8)
        return image.numpy()
    image = np.asarray(image)
    return image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def upscale_factor(height: int, width: int, min_side: int = MIN_PANEL) -> int:
    """The integer factor that brings the smaller side to at least ``min_side`` (1 if it already is)."""
    return max(1, math.ceil(min_side / max(1, min(height, width))))


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of [H, W, C] by an integer ``factor``."""
    return image if factor == 1 else np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _font(size: int = 14):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def caption(image: np.ndarray, text: str, height: int = CAPTION_HEIGHT) -> np.ndarray:
    """``image`` [H, W, 3] uint8 with a bar holding ``text`` above it: [H + height, W, 3]."""
    from PIL import Image, ImageDraw

    bar = Image.new("RGB", (image.shape[1], height), _CAPTION_BG)
    ImageDraw.Draw(bar).text((5, max(0, (height - 14) // 2 - 1)), text, fill=_CAPTION_FG, font=_font(14))
    return np.concatenate([np.asarray(bar), image], axis=0)


def grid(panels: list[list[np.ndarray]], pad: int = 2, fill: int = 255) -> np.ndarray:
    """Rows of equally sized [h, w, 3] uint8 panels -> one [H, W, 3] image, ``pad`` pixels apart."""
    h, w = panels[0][0].shape[:2]
    cols = max(len(r) for r in panels)
    out = np.full((len(panels) * (h + pad) - pad, cols * (w + pad) - pad, 3), fill, np.uint8)
    for i, row in enumerate(panels):
        for j, p in enumerate(row):
            out[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = p
    return out


def panel(image, text: str, factor: int) -> np.ndarray:
    """One captioned, enlarged panel."""
    return caption(upscale(to_uint8(image), factor), text)


# ----------------------------------------------------------------------------------------------
# The final-frame strip
# ----------------------------------------------------------------------------------------------
def save_strip(rows: list[tuple[str, object, object, object]], path: Path, title: str = "") -> Path:
    """The final frame as a figure: one row per view, columns initial | target | result.

    rows: (view label, initial, target, result), images [H, W, 3] in [0, 1] (or uint8).
    Panels are enlarged to at least `MIN_PANEL` pixels and captioned "<view>: initial" etc.
    """
    from PIL import Image

    h, w = to_uint8(rows[0][1]).shape[:2]
    k = upscale_factor(h, w)
    lines = [[panel(im, f"{label}: {what}", k) for what, im in zip(("initial", "target", "result"), ims)]
             for label, *ims in rows]
    image = grid(lines)
    if title:
        image = caption(image, title, height=CAPTION_HEIGHT + 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


# ----------------------------------------------------------------------------------------------
# Curves over the steps
# ----------------------------------------------------------------------------------------------
def save_curves(history: list[dict], path: Path, spectral_end: int | None = None) -> Path | None:
    """``curves.png``: the loss terms (log scale), the active band count alpha(t) and the training-view
    PSNR over the steps, from a run's step records (`ProgressionCallback.history`: dicts with
    ``step`` and the logged ``train/*``, ``schedule/*`` and ``progression/psnr`` values).
    ``spectral_end``: the step where the spatial phase starts, drawn as a dashed line. Returns None
    when there is nothing to draw."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[np.ndarray, np.ndarray]:
        pts = [(r["step"], r[key]) for r in history if key in r and r[key] is not None and math.isfinite(r[key])]
        return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) if pts else (np.array([]), np.array([]))

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=100)
    ax = axes[0]
    for key in sorted({k for r in history for k in r if k.startswith("train/") and k != "train/frame"}):
        s, v = series(key)
        if len(s) and (v > 0).any():
            ax.plot(s, np.where(v > 0, v, np.nan), label=key.split("/", 1)[1], lw=1)
    ax.set_yscale("log")
    ax.set_title("loss terms")
    ax.legend(fontsize=8)
    ax = axes[1]
    for key, label in (("schedule/alpha", "alpha(t)"), ("schedule/active_bands", "active bands")):
        s, v = series(key)
        if len(s):
            ax.plot(s, v, label=label, lw=1.2)
    ax.set_title("frequency annealing")
    ax.legend(fontsize=8)
    ax = axes[2]
    s, v = series("progression/psnr")
    if len(s):
        ax.plot(s, v, marker=".", lw=1)
    ax.set_title("train PSNR (last frame, first training view)")
    ax.set_ylabel("dB")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if spectral_end is not None:
            ax.axvline(spectral_end, color="grey", ls="--", lw=0.8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
