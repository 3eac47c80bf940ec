"""Readers for public layouts, loading into the in-memory `Sequence` (write them out with
`spectral_tracking.data.sequence.write_sequence` to convert to the project's format).

GART dog layout (Lei et al., CVPR 2024; the videos of the paper's GART experiment)::

    <folder>/
      images/NNNN.png     frames (512x512 RGB with background)
      images/NNNN.npy     object mask as a COCO RLE dict {"size": [h, w], "counts": ...}, pickled
      pred/NNNN.npz       BITE pose prediction; only ``pred_focal`` is read (the focal length for a
                          256-pixel image, scaled to the frame width here; principal point at the
                          image centre, as GART does)
      point_cloud.ply     the rest-pose 3DGS asset (or pass ``canonical=``)

SC4D / GSGD layout (the paper's SC4D experiment: renders of a dynamic 3DGS)::

    <folder>/
      point_cloud.ply     the canonical 3DGS asset
      point_cloud_c.ply   optional control points: x, y, z (and c_radius)
      <azimuth>/0.png, 1.png, ...   RGBA supervision views, one folder per azimuth ("0.0", "90.0", ...),
                          rendered with the orbit rig (radius 2, fovy 49.1 degrees, elevation 0)

Both readers normalise the asset to bounding radius 0.5 and move the cameras with it (images
unchanged), so shift radii mean the same thing on every dataset.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from spectral_tracking.cameras import Cameras, look_at, orbit_camera
from spectral_tracking.data.sequence import (
    DataNotFoundError, Sequence, SequenceFormatError, normalize_scene, read_png,
)
from spectral_tracking.gaussians import load_ply

GART_LAYOUT = """\
expected GART dog layout:
  <folder>/images/NNNN.png   frames
  <folder>/images/NNNN.npy   COCO RLE mask of each frame
  <folder>/pred/NNNN.npz     pose prediction with pred_focal
  <folder>/point_cloud.ply   rest-pose 3DGS asset (or pass canonical=...)
(download the GART dog data and the GART reconstruction of the dog, see https://github.com/JiahuiLei/GART)"""

SC4D_LAYOUT = """\
expected SC4D / GSGD layout:
  <folder>/point_cloud.ply            canonical 3DGS asset
  <folder>/point_cloud_c.ply          optional control points (x, y, z, c_radius)
  <folder>/<azimuth>/0.png, 1.png ... RGBA frames per view folder named by azimuth ("0.0", "90.0", ...)"""


# ----------------------------------------------------------------------------------------------
# COCO run-length encoding (no pycocotools needed)
# ----------------------------------------------------------------------------------------------
def rle_string_to_counts(s: str | bytes) -> list[int]:
    """Decode pycocotools' compressed RLE string into run lengths.

    Each run is a variable-length integer of 5-bit groups (char - 48), least significant first;
    0x20 marks "more groups follow", and 0x10 in the last group is the sign. From the fourth run on,
    the value is stored as the difference to the run two places earlier.
    """
    data = s.encode("ascii") if isinstance(s, str) else bytes(s)
    counts: list[int] = []
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise ValueError("COCO RLE string ends in the middle of a number")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"COCO RLE string has an invalid character {chr(data[p])!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def counts_to_rle_string(counts: list[int]) -> str:
    """Inverse of `rle_string_to_counts` (pycocotools' ``rleToString``)."""
    out = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def decode_coco_rle(rle: dict) -> np.ndarray:
    """A COCO RLE dict {"size": [h, w], "counts": str | bytes | list[int]} -> uint8 mask [h, w] in {0, 1}.

    Runs alternate 0, 1, 0, ... starting with zeros, over the pixels in column-major order.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"COCO RLE must be a dict with 'size' and 'counts', got {type(rle).__name__}"
                         + (f" with keys {sorted(rle)}" if isinstance(rle, dict) else ""))
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    counts = rle_string_to_counts(counts) if isinstance(counts, (str, bytes)) else [int(c) for c in counts]
    if any(c < 0 for c in counts):
        raise ValueError("COCO RLE has negative run lengths")
    if sum(counts) != h * w:
        raise ValueError(f"COCO RLE runs cover {sum(counts)} pixels, but size {h}x{w} has {h * w}")
    values = np.arange(len(counts)) % 2
    flat = np.repeat(values.astype(np.uint8), counts)
    return np.ascontiguousarray(flat.reshape(w, h).T)


def encode_coco_rle(mask: np.ndarray) -> dict:
    """uint8/bool mask [h, w] -> compressed COCO RLE dict (what pycocotools.mask.encode writes)."""
    m = np.asarray(mask).astype(bool)
    h, w = m.shape
    flat = m.T.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [h, w], "counts": counts_to_rle_string(counts).encode("ascii")}


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------
def read_rgba_frame(path: Path, layout: str, size: tuple[int, int] | None, first: str) -> np.ndarray:
    """An RGBA frame [H, W, 4] of a public layout; ``size`` is the first frame's (H, W), named ``first``."""
    img = read_png(path)
    if img.shape[2] != 4:
        raise SequenceFormatError(f"{path}: {layout} frames must be RGBA (alpha = object mask), got {img.shape[2]} channel(s)")
    if size is not None and img.shape[:2] != size:
        raise SequenceFormatError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, but {first} is {size[1]}x{size[0]}")
    return img


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


def _require_dir(folder: Path, layout: str, what: str) -> Path:
    if not folder.is_dir():
        raise DataNotFoundError(f"{what}: no folder at {folder}\n{layout}")
    return folder


# ----------------------------------------------------------------------------------------------
# GART
# ----------------------------------------------------------------------------------------------
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
    folder = _require_dir(Path(folder), GART_LAYOUT, "GART dog data")
    images = _require_dir(folder / "images", GART_LAYOUT, "GART dog data")
    pred = _require_dir(folder / "pred", GART_LAYOUT, "GART dog data")
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
            img, m = resize_rgb_mask(img, m, resolution)
        rgbs.append(img)
        masks.append(m)
    H, W = rgbs[0].shape[:2]
    focal = float(np.median(focals)) * W / size[1]
    g, tf = load_ply(ply).normalize(0.5)
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


# ----------------------------------------------------------------------------------------------
# SC4D / GSGD
# ----------------------------------------------------------------------------------------------
def _float_or_none(name: str) -> float | None:
    try:
        return float(name)
    except ValueError:
        return None


def load_control_points(path: Path) -> dict:
    """``point_cloud_c.ply``: {"means": [K, 3], "radius": [K] or None}."""
    from plyfile import PlyData

    try:
        v = PlyData.read(str(path))["vertex"]
    except Exception as e:
        raise SequenceFormatError(f"{path}: not a readable PLY with a vertex element ({type(e).__name__}: {e})") from e
    names = [p.name for p in v.properties]
    if not all(k in names for k in ("x", "y", "z")):
        raise SequenceFormatError(f"{path}: control points need x, y, z properties, found {names}")
    means = torch.from_numpy(np.stack([np.asarray(v[k], np.float32) for k in ("x", "y", "z")], -1))
    radius = torch.from_numpy(np.asarray(v["c_radius"], np.float32)) if "c_radius" in names else None
    return {"means": means, "radius": radius}


def load_sc4d(folder: str | Path, resolution: int | None = None, fovy_deg: float = 49.1, radius: float = 2.0,
              fps: float = 24.0) -> Sequence:
    """Read an SC4D / GSGD output folder into a `Sequence` (all views are supervision views; use
    `select_views` to choose training views, the others become evaluation views).

    Control points, when present, are in ``meta["control_points"]`` ({"means": [K, 3] tensor,
    "radius": [K] tensor or None}, normalised like the asset). Folders whose names are not numbers
    are not views; they are listed in ``meta["ignored_entries"]``.
    """
    folder = _require_dir(Path(folder), SC4D_LAYOUT, "SC4D / GSGD data")
    ply = folder / "point_cloud.ply"
    if not ply.is_file():
        raise DataNotFoundError(f"SC4D canonical asset: no PLY at {ply}\n{SC4D_LAYOUT}")
    view_dirs = sorted((p for p in folder.iterdir() if p.is_dir() and _float_or_none(p.name) is not None),
                       key=lambda p: float(p.name))
    ignored = sorted(p.name for p in folder.iterdir() if p.is_dir() and _float_or_none(p.name) is None)
    if not view_dirs:
        raise SequenceFormatError(f"{folder}: no view folders named by azimuth (\"0.0\", \"90.0\", ...)\n{SC4D_LAYOUT}")
    frame_sets = {}
    for d in view_dirs:
        ids = []
        for p in d.iterdir():
            m = re.match(r"^(\d+)\.png$", p.name)
            if not m:
                raise SequenceFormatError(f"{p}: unexpected file in a view folder (frames are 0.png, 1.png, ...)")
            ids.append(int(m.group(1)))
        frame_sets[d] = sorted(ids)
    T = max(len(v) for v in frame_sets.values())
    for d, ids in frame_sets.items():
        missing = sorted(set(range(T)) - set(ids))
        if missing or ids != list(range(T)):
            raise SequenceFormatError(f"{d}: missing frames {[f'{t}.png' for t in missing[:10]]} (other views have {T} frames, 0..{T - 1})")
    if T < 2:
        raise SequenceFormatError(f"{folder}: {T} frame(s) per view; tracking needs at least 2")
    images, masks, size = [], [], None
    for d in view_dirs:
        vi, vm = [], []
        for t in range(T):
            img = read_rgba_frame(d / f"{t}.png", "SC4D", size, f"{view_dirs[0].name}/0.png")
            size = img.shape[:2]
            rgb, m = img[..., :3], img[..., 3]
            if resolution is not None:
                rgb, m = resize_rgb_mask(rgb, m, resolution)
            vi.append(rgb)
            vm.append(m)
        images.append(np.stack(vi))
        masks.append(np.stack(vm))
    H, W = images[0].shape[1:3]
    az = [float(d.name) for d in view_dirs]
    cams = orbit_camera(az, 0.0, radius, fovy_deg, W, H)
    canonical, cams, record = normalize_scene(load_ply(ply), cams)
    meta = {"dataset": "sc4d", "folder": str(folder), "normalization": {"bounding_radius": 0.5, **record},
            "rig": {"radius": radius, "fovy_deg": fovy_deg, "elevation_deg": 0.0}, "ignored_entries": ignored,
            "provenance": "SC4D / GSGD layout"}
    cp = folder / "point_cloud_c.ply"
    if cp.is_file():
        ctrl = load_control_points(cp)
        ctrl["means"] = (ctrl["means"] - torch.tensor(record["center"])) * record["scale"]
        if ctrl["radius"] is not None:
            ctrl["radius"] = ctrl["radius"] * record["scale"]
        meta["control_points"] = ctrl
    return Sequence(
        canonical=canonical, cameras=cams, view_names=[d.name for d in view_dirs], azimuths=az,
        images=torch.from_numpy(np.stack(images)), masks=torch.from_numpy(np.stack(masks)),
        supervision_views=list(range(len(view_dirs))), novel_views=[], fps=fps, meta=meta,
    )


__all__ = [
    "GART_LAYOUT", "SC4D_LAYOUT", "decode_coco_rle", "encode_coco_rle", "rle_string_to_counts", "counts_to_rle_string",
    "load_gart", "load_gart_mask", "load_sc4d", "load_control_points", "resize_rgb_mask", "front_camera",
]
