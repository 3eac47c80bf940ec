"""Image helpers shared by the readers: PNG in / out with errors naming the file, RGBA frames of
public layouts, mask-aware resizing, and the front camera of the orbit rig."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from spectral_tracking.cameras import Cameras, look_at, orbit_camera
from spectral_tracking.errors import SequenceFormatError


def read_png(path: Path) -> np.ndarray:
    """Read an image file to uint8 [H, W, C] with C in {1, 3, 4}; errors name the file."""
    from PIL import Image

    if not path.is_file():
        raise SequenceFormatError(f"{path}: missing image file")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("RGBA", "RGB", "L"):
                arr = np.asarray(im)
            elif mode in ("LA", "PA") or (mode == "P" and "transparency" in im.info):
                arr = np.asarray(im.convert("RGBA"))
            elif mode == "P":
                arr = np.asarray(im.convert("RGB"))
            elif mode == "1":
                arr = np.asarray(im.convert("L"))
            elif mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey: scaled to 0..255, not clipped
                wide = np.asarray(im, dtype=np.float64)
                if wide.min() < 0 or wide.max() > 65535:
                    raise SequenceFormatError(f"{path}: 32-bit grey values outside 0..65535; save it as an 8- or 16-bit PNG")
                arr = np.rint(wide * (255.0 / 65535.0)).astype(np.uint8)
            elif mode == "F":  # float grey: read as 0..1
                wide = np.asarray(im, dtype=np.float64)
                if not np.isfinite(wide).all() or wide.min() < 0 or wide.max() > 1:
                    raise SequenceFormatError(f"{path}: float grey values must lie in 0..1; save it as an 8- or 16-bit PNG")
                arr = np.rint(wide * 255.0).astype(np.uint8)
            else:
                raise SequenceFormatError(f"{path}: unsupported image mode {mode!r} (expected RGBA, RGB or greyscale)")
    except SequenceFormatError:
        raise
    except Exception as e:  # PIL raises many types for truncated / corrupt files
        raise SequenceFormatError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e
    if arr.ndim == 2:
        arr = arr[..., None]
    return np.ascontiguousarray(arr.astype(np.uint8))


def write_png(path: Path, array: np.ndarray) -> None:
    """Write uint8 [H, W] / [H, W, 3] / [H, W, 4] as PNG."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise TypeError(f"write_png({path}): expected uint8, got {arr.dtype}")
    Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr).save(path)


def to_uint8(x: Tensor | np.ndarray) -> np.ndarray:
    """Float in [0, 1] (any shape) to uint8, rounding to nearest."""
    a = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


def read_rgba_frame(path: Path, layout: str, size: tuple[int, int] | None, first: str) -> np.ndarray:
    """An RGBA frame [H, W, 4] of a public layout; ``size`` is the first frame's (H, W), named ``first``."""
    img = read_png(path)
    if img.shape[2] != 4:
        raise SequenceFormatError(f"{path}: {layout} frames must be RGBA (alpha = object mask), got {img.shape[2]} channel(s)")
    if size is not None and img.shape[:2] != size:
        raise SequenceFormatError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, but {first} is {size[1]}x{size[0]}")
    check_mask_range(img[..., 3], path, "alpha")
    return img


def check_mask_range(mask: np.ndarray, path: Path, what: str = "mask") -> None:
    """Refuse a mask (or alpha) [H, W] uint8 stored as 0..1 instead of 0..255 (``np.uint8(bool_mask)``): read
    as 0..255 it is an almost empty object, which would be tracked without a word. Such a mask's top value is 1
    over a body of pixels (here at least 0.1% of the image); an antialiased sliver of an object at the image's
    edge can top out at 1 over a few pixels, and is not refused."""
    top = int(mask.max()) if mask.size else 0
    if top == 1 and int((mask == 1).sum()) >= max(4, mask.size // 1000):
        raise SequenceFormatError(f"{path}: {what} values are 0..1; expected 0..255 (255 = object): multiply the "
                                  f"{what} by 255 when saving it")


def resize_square(rgb: np.ndarray, mask: np.ndarray, resolution: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """`resize_rgb_mask` to ``resolution`` x ``resolution`` for a reader whose frames must be square: a
    non-square frame would be squashed (its object distorted, its focal wrong along one axis), so it is
    refused, naming ``path``."""
    H, W = rgb.shape[:2]
    if H != W:
        raise SequenceFormatError(f"{path}: frames are {W}x{H}; tracking resizes them to {resolution}x{resolution} "
                                  f"(resolution is one side), and non-square frames are not supported: crop or pad them "
                                  f"to square")
    return resize_rgb_mask(rgb, mask, resolution)


def resize_rgb_mask(rgb: np.ndarray, mask: np.ndarray, size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize uint8 straight RGB [H, W, 3] and mask [H, W] to size (W, H) (antialiased, colours
    averaged with the mask as weight so the background does not bleed into the object's edge)."""
    from PIL import Image

    W, H = (size, size) if isinstance(size, int) else size
    if rgb.shape[:2] == (H, W):
        return rgb, mask
    a = mask.astype(np.float32) / 255
    x = rgb.astype(np.float32) / 255
    planes = [x[..., c] * a for c in range(3)] + [a] + [x[..., c] for c in range(3)]
    # PIL's float resampling is antialiased when shrinking (filter support scales with the factor).
    out = np.stack([np.asarray(Image.fromarray(p, mode="F").resize((W, H), Image.Resampling.BILINEAR)) for p in planes], -1)
    a2 = np.clip(out[..., 3:4], 0, 1)
    rgb2 = np.where(a2 > 1e-4, out[..., :3] / np.maximum(a2, 1e-4), out[..., 4:])
    return np.rint(np.clip(rgb2, 0, 1) * 255).astype(np.uint8), np.rint(a2[..., 0] * 255).astype(np.uint8)


def front_camera(width: int, height: int, focal: float | None = None, fovy_deg: float = 49.1, radius: float = 2.0) -> Cameras:
    """One camera of the orbit rig at azimuth 0 (on +z looking at the origin), focal in pixels or fovy."""
    if focal is None:
        return orbit_camera(0.0, 0.0, radius, fovy_deg, width, height)
    K = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    vm = look_at(torch.tensor([0.0, 0.0, radius]), torch.zeros(3))
    return Cameras(K[None], vm[None], width, height)
