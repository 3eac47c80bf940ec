"""Reader of the GART dog videos (Lei et al., CVPR 2024; the videos of the paper's GART experiment).

Layout::

    <folder>/
      images/NNNN.png     frames (512x512 RGB with background)
      images/NNNN.npy     object mask as a COCO RLE dict {"size": [h, w], "counts": ...}, pickled
      pred/NNNN.npz       BITE pose prediction; only ``pred_focal`` is read (the focal length for a
                          256-pixel image, scaled to the frame width here; principal point at the
                          image centre, as GART does)
      point_cloud.ply     the rest-pose 3DGS asset (or pass ``canonical=``)

The reader normalises the asset to bounding radius 0.5 (the camera looks at the origin from the
front), so shift radii mean the same thing on every dataset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from spectral_tracking.data.frames import front_camera, read_png, resize_square
from spectral_tracking.data.rle import decode_coco_rle
from spectral_tracking.data.sequence import Sequence, load_asset
from spectral_tracking.errors import DataNotFoundError, SequenceFormatError

GART_LAYOUT = """\
expected GART dog layout:
  <folder>/images/NNNN.png   frames
  <folder>/images/NNNN.npy   COCO RLE mask of each frame
  <folder>/pred/NNNN.npz     pose prediction with pred_focal
  <folder>/point_cloud.ply   rest-pose 3DGS asset (or pass canonical=...)
(download the GART dog data and the GART reconstruction of the dog, see https://github.com/JiahuiLei/GART)"""


def require_dir(folder: Path, layout: str, what: str) -> Path:
    """``folder`` if it is a directory, else a `DataNotFoundError` naming ``what`` and the layout."""
    if not folder.is_dir():
        raise DataNotFoundError(f"{what}: no folder at {folder}\n{layout}")
    return folder


_GART_ID = re.compile(r"^(\d+)\.png$")


def load_gart_mask(path: Path) -> np.ndarray:
    """A GART ``images/NNNN.npy`` (pickled COCO RLE dict, or a plain array) -> uint8 mask {0, 255}."""
    if not path.is_file():
        raise SequenceFormatError(f"{path}: missing mask (GART stores a COCO RLE per frame next to its image)")
    try:
        obj = np.load(path, allow_pickle=True)
    except Exception as e:
        raise SequenceFormatError(f"{path}: not a readable .npy file ({type(e).__name__}: {e})") from e
    try:
        if obj.dtype == object and obj.shape == ():
            m = decode_coco_rle(obj.item())
        elif obj.ndim == 2:
            m = (obj > 0).astype(np.uint8)
        else:
            raise ValueError(f"expected a pickled COCO RLE dict or an [H, W] array, got {obj.dtype} {list(obj.shape)}")
    except ValueError as e:
        raise SequenceFormatError(f"{path}: {e}") from e
    return (m > 0).astype(np.uint8) * 255


def load_gart(folder: str | Path, canonical: str | Path | None = None, frame_ids: list[int] | None = None,
              resolution: int | None = None, fps: float = 30.0) -> Sequence:
    """Read a GART dog video into a `Sequence` with one front camera (azimuth 0, radius 2).

    frame_ids: the NNNN frames to use, in order (GART trains on hand-picked ranges where the mask
    is good); default every ``images/NNNN.png``, in which case a frame missing its mask or pose is
    an error (nothing is silently skipped). resolution: resize frames to this square size.
    The focal length is the median of the frames' ``pred_focal`` (scaled from 256 pixels to the
    frame width); per-frame values are kept in ``meta["per_frame_focal"]``. The asset is normalised
    to bounding radius 0.5; the paper's GART setting starts from the rest pose with no camera pose,
    so the camera looks at the asset from the front (+z): orient the asset with ``canonical``
    transforms beforehand if its front is elsewhere.
    """
    folder = require_dir(Path(folder), GART_LAYOUT, "GART dog data")
    images = require_dir(folder / "images", GART_LAYOUT, "GART dog data")
    pred = require_dir(folder / "pred", GART_LAYOUT, "GART dog data")
    ply = Path(canonical) if canonical is not None else folder / "point_cloud.ply"
    if not ply.is_file():
        raise DataNotFoundError(f"GART rest-pose asset: no PLY at {ply}\n{GART_LAYOUT}")
    if frame_ids is None:
        frame_ids = sorted(int(m.group(1)) for p in images.iterdir() if (m := _GART_ID.match(p.name)))
        if not frame_ids:
            raise SequenceFormatError(f"{images}: no NNNN.png frames\n{GART_LAYOUT}")
        lacking = [i for i in frame_ids if not (images / f"{i:04d}.npy").is_file() or not (pred / f"{i:04d}.npz").is_file()]
        if lacking:
            raise SequenceFormatError(
                f"{folder}: frames {lacking[:10]}{' ...' if len(lacking) > 10 else ''} lack images/NNNN.npy masks or "
                f"pred/NNNN.npz poses; pass frame_ids=[...] with the frames to use (e.g. GART's training ranges)")
    if len(frame_ids) < 2:
        raise SequenceFormatError(f"{folder}: {len(frame_ids)} frame(s) selected; tracking needs at least 2")
    rgbs, masks, focals, size = [], [], [], None
    for i in frame_ids:
        ip = images / f"{i:04d}.png"
        img = read_png(ip)
        if img.shape[2] == 1:
            img = np.repeat(img, 3, 2)
        img = img[..., :3]
        if size is None:
            size = img.shape[:2]
        elif img.shape[:2] != size:
            raise SequenceFormatError(f"{ip}: image is {img.shape[1]}x{img.shape[0]}, but the first frame is {size[1]}x{size[0]}")
        m = load_gart_mask(images / f"{i:04d}.npy")
        if m.shape != size:
            raise SequenceFormatError(f"{images / f'{i:04d}.npy'}: mask is {m.shape[1]}x{m.shape[0]}, its image {ip.name} is {size[1]}x{size[0]}")
        pp = pred / f"{i:04d}.npz"
        if not pp.is_file():
            raise SequenceFormatError(f"{pp}: missing pose prediction (needs pred_focal)")
        try:
            with np.load(pp, allow_pickle=True) as z:
                if "pred_focal" not in z.files:
                    raise SequenceFormatError(f"{pp}: no 'pred_focal' (has {z.files})")
                f = float(np.asarray(z["pred_focal"]).reshape(-1)[0])
        except SequenceFormatError:
            raise
        except Exception as e:
            raise SequenceFormatError(f"{pp}: not a readable .npz ({type(e).__name__}: {e})") from e
        if not (np.isfinite(f) and f > 0):
            raise SequenceFormatError(f"{pp}: pred_focal = {f} is not a positive number")
        focals.append(f * size[1] / 256.0)  # BITE predicts for 256-pixel crops; GART doubles it for 512
        if resolution is not None:
            img, m = resize_square(img, m, resolution, ip)
        rgbs.append(img)
        masks.append(m)
    H, W = rgbs[0].shape[:2]
    focal = float(np.median(focals)) * W / size[1]
    g, tf = load_asset(ply).normalize(0.5)
    cams = front_camera(W, H, focal=focal)
    return Sequence(
        canonical=g, cameras=cams, view_names=["0.0"], azimuths=[0.0],
        images=torch.from_numpy(np.stack(rgbs)[None]), masks=torch.from_numpy(np.stack(masks)[None]),
        supervision_views=[0], novel_views=[], fps=fps,
        meta={"dataset": "gart", "folder": str(folder), "source_frame_ids": list(map(int, frame_ids)),
              "per_frame_focal": focals, "focal_px": focal, "canonical_ply": str(ply),
              "normalization": {"bounding_radius": 0.5, "center": tf.center.tolist(), "scale": tf.scale},
              "provenance": "GART dog layout (images + COCO RLE masks + BITE pred_focal)"},
    )



def from_config(ds: Mapping, resolution: int | None, require_canonical: bool = True) -> Sequence:
    """The ``dataset=gart`` entry: ``ds.path`` (the dog's folder), ``ds.canonical`` (the rest-pose PLY)."""
    return load_gart(ds["path"], canonical=ds.get("canonical"), resolution=resolution)
