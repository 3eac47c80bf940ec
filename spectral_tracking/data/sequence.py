"""The one on-disk sequence format, its reader and writer, and the in-memory `Sequence`.

On disk a sequence is a folder::

    <folder>/
      canonical.ply            the 3DGS asset given to the tracker (standard 3DGS PLY layout)
      cameras.json             {"views": [{"name", "split": "frames"|"novel", "azimuth_deg" (or null),
                                           "K": 3x3, "viewmat": 4x4 world-to-camera (OpenCV),
                                           "width", "height"}, ...]}
      frames/<view>/<t>.png    supervision frames, t = 0..T-1; RGBA (alpha = object mask), or RGB
      masks/<view>/<t>.png     ... plus a greyscale mask of the same size when the frame is RGB
                               (for any view, training or novel; view names are unique)
      novel/<view>/<t>.png     optional: frames of views kept for novel-view evaluation only
      gt/<t>.npz               optional: ground-truth deformed Gaussians of frame t (at least `means`)
      meta.json                {"num_frames", "fps", "complete": true, ...}; written LAST, so a folder
                               without it (or with "complete" missing) is half-written and never read

Colours in PNGs are straight (not premultiplied); the mask says where the object is. A view's frames
live under ``frames/`` (it may be used for training) or under ``novel/`` (evaluation only), and every
view folder must have a camera in ``cameras.json`` and vice versa.

In memory, `Sequence` holds images and masks as uint8 tensors (``[V, T, H, W, 3]`` and
``[V, T, H, W]``) to keep 512^2 sequences small; `Sequence.image`, `Sequence.mask` and
`Sequence.target` convert to float in [0, 1] on access.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from spectral_tracking.cameras import Cameras
from spectral_tracking.gaussians import Gaussians, load_ply, save_ply

PathLike = Union[str, Path]

FORMAT_VERSION = 1
LAYOUT = """\
expected layout of a sequence folder:
  canonical.ply, cameras.json, meta.json,
  frames/<view>/<t>.png (RGBA, or RGB plus masks/<view>/<t>.png), optional novel/<view>/<t>.png,
  optional gt/<t>.npz"""


class SequenceFormatError(ValueError):
    """A sequence (or a file in it) does not have the expected layout or content."""


class DataNotFoundError(FileNotFoundError):
    """A dataset's folder or file is absent; the message names the expected path and layout."""


# ----------------------------------------------------------------------------------------------
# In-memory sequence
# ----------------------------------------------------------------------------------------------
@dataclass
class Sequence:
    """A tracking sequence: an asset to deform, V cameras, T frames per camera.

    canonical:    the asset given to the tracker (None when a reader has none yet, e.g. Consistent4D).
    cameras:      [V] all views, training and evaluation alike.
    view_names:   [V] folder names of the views.
    azimuths:     [V] orbit azimuth in degrees per view, or None where unknown.
    images:       uint8 [V, T, H, W, 3] straight (not premultiplied) RGB.
    masks:        uint8 [V, T, H, W], 255 = object.
    supervision_views: indices of views whose frames may supervise (folder ``frames/``).
    novel_views:  indices of evaluation-only views (folder ``novel/``).
    train_views:  the views a run trains on (default: all supervision views; see `select_views`).
    eval_views:   the views a run evaluates novel-view quality on (default: the novel views).
    gt_means:     [T, M, 3] ground-truth means per frame, or None. M equals the canonical's N in the
                  clean setting; see ``meta["gt"]`` otherwise.
    fps:          frames per second of the video (time in [0, 1] is ``frame / (T - 1)``).
    meta:         free-form provenance (normalisation, generator settings, shift record, ...).
    """

    canonical: Gaussians | None
    cameras: Cameras
    view_names: list[str]
    azimuths: list[float | None]
    images: Tensor  # uint8 [V, T, H, W, 3]
    masks: Tensor  # uint8 [V, T, H, W]
    supervision_views: list[int]
    novel_views: list[int]
    train_views: list[int] = field(default_factory=list)
    eval_views: list[int] = field(default_factory=list)
    gt_means: Tensor | None = None  # [T, M, 3]
    fps: float = 24.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        V, T = self.images.shape[:2] if self.images.dim() == 5 else (-1, -1)
        if self.images.dim() != 5 or self.images.shape[-1] != 3 or self.images.dtype != torch.uint8:
            raise SequenceFormatError(f"Sequence.images: expected uint8 [V, T, H, W, 3], got {self.images.dtype} {list(self.images.shape)}")
        if self.masks.shape != self.images.shape[:-1] or self.masks.dtype != torch.uint8:
            raise SequenceFormatError(f"Sequence.masks: expected uint8 {list(self.images.shape[:-1])}, got {self.masks.dtype} {list(self.masks.shape)}")
        if len(self.cameras) != V or len(self.view_names) != V or len(self.azimuths) != V:
            raise SequenceFormatError(
                f"Sequence: {V} views of images but {len(self.cameras)} cameras, {len(self.view_names)} names, {len(self.azimuths)} azimuths")
        H, W = self.images.shape[2:4]
        if (self.cameras.height, self.cameras.width) != (H, W):
            raise SequenceFormatError(f"Sequence: images are {W}x{H} but cameras are {self.cameras.width}x{self.cameras.height}")
        if T < 2:
            raise SequenceFormatError(f"Sequence: {T} frame(s); tracking needs at least 2")
        if not self.train_views:
            self.train_views = list(self.supervision_views)
        if not self.eval_views:
            self.eval_views = list(self.novel_views)
        for name in ("supervision_views", "novel_views", "train_views", "eval_views"):
            bad = [i for i in getattr(self, name) if not 0 <= i < V]
            if bad:
                raise SequenceFormatError(f"Sequence.{name}: indices {bad} out of range for {V} views")
        if self.gt_means is not None and (self.gt_means.dim() != 3 or self.gt_means.shape[0] != T or self.gt_means.shape[2] != 3):
            raise SequenceFormatError(f"Sequence.gt_means: expected [T={T}, M, 3], got {list(self.gt_means.shape)}")

    # --- sizes --------------------------------------------------------------------------------
    @property
    def num_views(self) -> int:
        return self.images.shape[0]

    @property
    def num_frames(self) -> int:
        return self.images.shape[1]

    @property
    def height(self) -> int:
        return self.images.shape[2]

    @property
    def width(self) -> int:
        return self.images.shape[3]

    def time(self, frame) -> Tensor | float:
        """Normalised time in [0, 1] of frame index(es): frame / (T - 1)."""
        return frame / (self.num_frames - 1)

    def view_index(self, name: str) -> int:
        if name not in self.view_names:
            raise KeyError(f"Sequence: no view named {name!r}; views are {self.view_names}")
        return self.view_names.index(name)

    # --- float access -------------------------------------------------------------------------
    def image(self, view, frame) -> Tensor:
        """Straight RGB in [0, 1]: [H, W, 3] for scalar indices (any tensor indexing works)."""
        return self.images[view, frame].float() / 255.0

    def mask(self, view, frame) -> Tensor:
        """Object mask in [0, 1]: [H, W] for scalar indices."""
        return self.masks[view, frame].float() / 255.0

    def target(self, view, frame, background: Tensor | float = 0.0) -> Tensor:
        """The frame composited over a uniform ``background`` ([3] or scalar) using the mask.

        This is what a render over the same background should reproduce; clutter outside the mask
        (the realistic setting, GART) is replaced by the background, as in the paper (App. E.1).
        """
        rgb, m = self.image(view, frame), self.mask(view, frame)[..., None]
        bg = torch.as_tensor(background, dtype=rgb.dtype)
        return rgb * m + bg * (1 - m)

    def subset_frames(self, frames: list[int]) -> "Sequence":
        """A sequence holding only the given frames (in that order)."""
        idx = torch.as_tensor(frames, dtype=torch.long)
        return replace(
            self, images=self.images[:, idx], masks=self.masks[:, idx],
            gt_means=None if self.gt_means is None else self.gt_means[idx],
            meta={**self.meta, "frame_subset": list(map(int, frames))},
        )


# ----------------------------------------------------------------------------------------------
# PNG helpers (clear errors naming the file)
# ----------------------------------------------------------------------------------------------
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
            elif mode in ("1", "I", "I;16", "F"):
                arr = np.asarray(im.convert("L"))
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


# ----------------------------------------------------------------------------------------------
# Normalisation of an asset together with its cameras
# ----------------------------------------------------------------------------------------------
def normalize_scene(canonical: Gaussians, cameras: Cameras, radius: float = 0.5) -> tuple[Gaussians, Cameras, dict]:
    """Normalise the asset to a bounding sphere of ``radius`` and move the cameras with it.

    x_n = s (x - c). A world-to-camera [R | t] becomes [R | s (R c + t)]: camera coordinates are
    scaled by s, which a pinhole projection does not see, so every image is unchanged.
    Returns (canonical, cameras, record) where record = {"center": [3], "scale": s}.
    """
    g, tf = canonical.normalize(radius)
    s, c = tf.scale, tf.center.to(cameras.viewmats)
    vm = cameras.viewmats.clone()
    R, t = vm[:, :3, :3], vm[:, :3, 3]
    vm[:, :3, 3] = s * ((R @ c[:, None])[..., 0] + t)
    return g, Cameras(cameras.Ks.clone(), vm, cameras.width, cameras.height), {"center": tf.center.tolist(), "scale": float(s)}


# ----------------------------------------------------------------------------------------------
# Writer
# ----------------------------------------------------------------------------------------------
def cameras_to_json(cameras: Cameras, names: list[str], splits: list[str], azimuths: list[float | None]) -> dict:
    views = []
    for i, name in enumerate(names):
        views.append({
            "name": name, "split": splits[i], "azimuth_deg": azimuths[i],
            "K": cameras.Ks[i].tolist(), "viewmat": cameras.viewmats[i].tolist(),
            "width": cameras.width, "height": cameras.height,
        })
    return {"views": views}


def write_sequence(seq: Sequence, folder: PathLike, rgba: bool = True, extra_meta: dict | None = None) -> Path:
    """Write ``seq`` in the on-disk format (meta.json last, with "complete": true).

    rgba=True writes RGBA frames (alpha = mask); False writes RGB frames plus ``masks/``.
    Writing straight into ``folder`` is not atomic; `spectral_tracking.data.synthetic` writes into a
    temporary folder and renames it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if seq.canonical is not None:
        save_ply(seq.canonical, folder / "canonical.ply")
    splits = ["novel" if v in seq.novel_views else "frames" for v in range(seq.num_views)]
    for v in range(seq.num_views):
        if v not in seq.novel_views and v not in seq.supervision_views:
            raise SequenceFormatError(f"write_sequence: view {seq.view_names[v]!r} is neither supervision nor novel")
    (folder / "cameras.json").write_text(json.dumps(cameras_to_json(seq.cameras, seq.view_names, splits, seq.azimuths), indent=1))
    imgs, masks = seq.images.numpy(), seq.masks.numpy()
    for v, name in enumerate(seq.view_names):
        for t in range(seq.num_frames):
            if rgba:
                write_png(folder / splits[v] / name / f"{t}.png", np.concatenate([imgs[v, t], masks[v, t][..., None]], -1))
            else:
                write_png(folder / splits[v] / name / f"{t}.png", imgs[v, t])
                write_png(folder / "masks" / name / f"{t}.png", masks[v, t])
    if seq.gt_means is not None:
        for t in range(seq.num_frames):
            (folder / "gt").mkdir(exist_ok=True)
            np.savez(folder / "gt" / f"{t}.npz", means=seq.gt_means[t].numpy().astype(np.float32))
    meta = {**seq.meta, **(extra_meta or {})}
    meta.update({"format_version": FORMAT_VERSION, "num_frames": seq.num_frames, "fps": seq.fps,
                 "has_canonical": seq.canonical is not None, "complete": True})
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=_json_default))
    return folder


def _json_default(obj):
    """Tensors and numpy values in ``meta`` become lists / numbers."""
    if isinstance(obj, (Tensor, np.ndarray)):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"meta.json: cannot serialise {type(obj).__name__}")


# ----------------------------------------------------------------------------------------------
# Reader
# ----------------------------------------------------------------------------------------------
_FRAME_RE = re.compile(r"^(\d+)\.png$")


def is_complete(folder: PathLike) -> bool:
    """True when ``folder`` holds a fully written sequence (meta.json with "complete": true)."""
    meta = Path(folder) / "meta.json"
    if not meta.is_file():
        return False
    try:
        return bool(json.loads(meta.read_text()).get("complete", False))
    except (json.JSONDecodeError, OSError):
        return False


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise SequenceFormatError(f"{path}: missing\n{LAYOUT}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SequenceFormatError(f"{path}: not valid JSON ({e})") from e


def _frame_files(view_dir: Path, num_frames: int) -> list[Path]:
    """The files 0.png..T-1.png of a view folder; anything missing or extra is an error."""
    if not view_dir.is_dir():
        raise SequenceFormatError(f"{view_dir}: missing view folder")
    found = {}
    for p in view_dir.iterdir():
        m = _FRAME_RE.match(p.name)
        if not m:
            raise SequenceFormatError(f"{p}: unexpected file in a view folder (frames are named 0.png, 1.png, ...)")
        found[int(m.group(1))] = p
    missing = [t for t in range(num_frames) if t not in found]
    if missing:
        raise SequenceFormatError(f"{view_dir}: missing frames {[f'{t}.png' for t in missing[:10]]}"
                                  f"{' ...' if len(missing) > 10 else ''} (meta.json says {num_frames} frames)")
    extra = sorted(t for t in found if t >= num_frames)
    if extra:
        raise SequenceFormatError(f"{view_dir}: frames {[f'{t}.png' for t in extra[:10]]} beyond the {num_frames} frames meta.json declares")
    return [found[t] for t in range(num_frames)]


def read_frame(path: Path, mask_path: Path | None, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One frame: (rgb uint8 [H, W, 3], mask uint8 [H, W]) checked against size = (W, H).

    RGBA frames carry their mask as alpha; RGB frames need ``mask_path``.
    """
    W, H = size
    img = read_png(path)
    if img.shape[:2] != (H, W):
        raise SequenceFormatError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, expected {W}x{H} (from cameras.json)")
    if img.shape[2] == 4:
        return img[..., :3], img[..., 3]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if mask_path is None or not mask_path.is_file():
        raise SequenceFormatError(f"{path}: RGB frame without alpha needs a mask at {mask_path}")
    m = read_png(mask_path)
    if m.shape[:2] != (H, W):
        raise SequenceFormatError(f"{mask_path}: mask is {m.shape[1]}x{m.shape[0]}, expected {W}x{H} like its frame {path.name}")
    if m.shape[2] != 1:
        raise SequenceFormatError(f"{mask_path}: mask must be a single-channel (greyscale) PNG, got {m.shape[2]} channels")
    return img, m[..., 0]


def load_sequence(folder: PathLike, require_canonical: bool = True) -> Sequence:
    """Read a sequence folder (see the module docstring); every problem is an error naming the file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder}: no such sequence folder\n{LAYOUT}")
    if not is_complete(folder):
        raise SequenceFormatError(
            f"{folder}: meta.json is missing or lacks \"complete\": true - a half-written sequence (interrupted run?);"
            " regenerate it (the synthetic generator does so automatically)")
    meta = _read_json(folder / "meta.json")
    T = meta.get("num_frames")
    if not isinstance(T, int):
        raise SequenceFormatError(f"{folder / 'meta.json'}: \"num_frames\" must be an integer, got {T!r}")
    if T < 2:
        raise SequenceFormatError(f"{folder / 'meta.json'}: num_frames = {T}; a sequence needs at least 2 frames to track")
    if "fps" not in meta:
        raise SequenceFormatError(f"{folder / 'meta.json'}: missing \"fps\"")
    cams = _read_json(folder / "cameras.json")
    views = cams.get("views")
    if not isinstance(views, list) or not views:
        raise SequenceFormatError(f"{folder / 'cameras.json'}: expected a non-empty list under \"views\"")
    names, splits, azimuths, Ks, vms, sizes = [], [], [], [], [], set()
    for i, v in enumerate(views):
        for key in ("name", "split", "K", "viewmat", "width", "height"):
            if key not in v:
                raise SequenceFormatError(f"{folder / 'cameras.json'}: view {i} lacks \"{key}\"")
        if v["split"] not in ("frames", "novel"):
            raise SequenceFormatError(f"{folder / 'cameras.json'}: view {v['name']!r} has split {v['split']!r}, expected \"frames\" or \"novel\"")
        K, vm = torch.tensor(v["K"], dtype=torch.float32), torch.tensor(v["viewmat"], dtype=torch.float32)
        if K.shape != (3, 3) or vm.shape != (4, 4):
            raise SequenceFormatError(f"{folder / 'cameras.json'}: view {v['name']!r}: K must be 3x3 and viewmat 4x4")
        names.append(str(v["name"]))
        splits.append(v["split"])
        az = v.get("azimuth_deg")
        azimuths.append(None if az is None else float(az))
        Ks.append(K)
        vms.append(vm)
        sizes.add((int(v["width"]), int(v["height"])))
    if len(set(names)) != len(names):
        raise SequenceFormatError(f"{folder / 'cameras.json'}: duplicate view names {names}")
    if len(sizes) != 1:
        raise SequenceFormatError(f"{folder / 'cameras.json'}: views have different image sizes {sorted(sizes)}; all must match")
    W, H = sizes.pop()
    for split in ("frames", "novel"):
        entries = list((folder / split).iterdir()) if (folder / split).is_dir() else []
        stray = [p for p in entries if not p.is_dir()]
        if stray:
            raise SequenceFormatError(f"{stray[0]}: unexpected file; {folder / split} holds one folder per view")
        on_disk = sorted(p.name for p in entries)
        listed = sorted(n for n, s in zip(names, splits) if s == split)
        if on_disk != listed:
            raise SequenceFormatError(
                f"{folder / 'cameras.json'}: {len(listed)} cameras with split {split!r} {listed} but "
                f"{len(on_disk)} view folders in {folder / split} {on_disk}; they must match one to one")
    cameras = Cameras(torch.stack(Ks), torch.stack(vms), W, H)
    V = len(names)
    images = np.zeros((V, T, H, W, 3), np.uint8)
    masks = np.zeros((V, T, H, W), np.uint8)
    for v, (name, split) in enumerate(zip(names, splits)):
        mask_dir = folder / "masks" / name
        for t, path in enumerate(_frame_files(folder / split / name, T)):
            images[v, t], masks[v, t] = read_frame(path, mask_dir / f"{t}.png", (W, H))
    canonical = None
    if (folder / "canonical.ply").is_file():
        canonical = load_ply(folder / "canonical.ply")
    elif require_canonical:
        raise SequenceFormatError(f"{folder / 'canonical.ply'}: missing (the asset given to the tracker)")
    gt_means = None
    if (folder / "gt").is_dir():
        arrs = []
        for t in range(T):
            p = folder / "gt" / f"{t}.npz"
            if not p.is_file():
                raise SequenceFormatError(f"{p}: missing ground truth of frame {t} (gt/ holds one .npz per frame)")
            try:
                with np.load(p) as z:
                    arrs.append(np.asarray(z["means"], np.float32))
            except Exception as e:
                raise SequenceFormatError(f"{p}: not a readable .npz with a 'means' array ({type(e).__name__}: {e})") from e
            if arrs[-1].ndim != 2 or arrs[-1].shape[1] != 3 or arrs[-1].shape != arrs[0].shape:
                raise SequenceFormatError(f"{p}: means has shape {list(arrs[-1].shape)}, expected {list(arrs[0].shape)} like gt/0.npz ([M, 3])")
        gt_means = torch.from_numpy(np.stack(arrs))
    return Sequence(
        canonical=canonical, cameras=cameras, view_names=names, azimuths=azimuths,
        images=torch.from_numpy(images), masks=torch.from_numpy(masks),
        supervision_views=[i for i, s in enumerate(splits) if s == "frames"],
        novel_views=[i for i, s in enumerate(splits) if s == "novel"],
        gt_means=gt_means, fps=float(meta["fps"]), meta={**meta, "folder": str(folder)},
    )


def atomic_write(final: Path, write_fn) -> Path:
    """Run ``write_fn(tmp_folder)`` then rename the folder to ``final`` (a no-op when it exists).

    The temporary folder is ``<final>.partial-<pid>``; an interrupted run leaves only that behind,
    which the next run deletes. If ``final`` exists but is incomplete (no meta.json marker), it is
    deleted and rewritten. Returns ``final``.
    """
    final = Path(final)
    if final.exists() and is_complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(final.name + ".partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and _pid_alive(int(pid))):
            shutil.rmtree(stale, ignore_errors=True)
    if final.exists():
        shutil.rmtree(final)  # incomplete: never read it
    tmp = final.parent / f"{final.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write_fn(tmp)
        if not is_complete(tmp):
            raise RuntimeError(f"{tmp}: writer finished without a complete meta.json")
        try:
            os.replace(tmp, final)
        except OSError:
            if final.exists() and is_complete(final):  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def azimuth_of_camera(viewmat: Tensor) -> float:
    """Orbit azimuth in degrees [0, 360) of a camera centre (0 = +z, 90 = +x), from a [4, 4] viewmat."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    c = -(R.T @ t)
    return math.degrees(math.atan2(float(c[0]), float(c[2]))) % 360.0
