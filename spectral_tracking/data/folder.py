"""The project's own on-disk sequence format (the ``folder`` dataset): reader, writer, atomic writes.

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
view folder must have a camera in ``cameras.json`` and vice versa. ``gt/canonical_index.npy``
(named by ``meta.json``'s ``gt.canonical_index``) maps each canonical Gaussian to its row of the
ground truth when the canonical is not the true asset (-1: no truth).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from spectral_tracking.cameras import Cameras, camera_problem
from spectral_tracking.data.frames import check_mask_range, read_png, write_png
from spectral_tracking.data.sequence import Sequence, load_asset
from spectral_tracking.errors import DataNotFoundError, SequenceFormatError
from spectral_tracking.gaussians import Gaussians, save_ply

PathLike = Union[str, Path]

FORMAT_VERSION = 1
# One line, so an error that quotes it stays one line on the terminal.
LAYOUT = ("a sequence folder holds canonical.ply, cameras.json, meta.json, frames/<view>/<t>.png (RGBA, or RGB plus "
          "masks/<view>/<t>.png), optional novel/<view>/<t>.png and gt/<t>.npz (README: 'Bring your own data')")



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
    Writing straight into ``folder`` is not atomic; the benchmark generator writes into a
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
    meta = {**seq.meta, **(extra_meta or {})}
    if seq.gt_means is not None:
        for t in range(seq.num_frames):
            (folder / "gt").mkdir(exist_ok=True)
            np.savez(folder / "gt" / f"{t}.npz", means=seq.gt_means[t].numpy().astype(np.float32))
        if seq.gt_index is not None:
            np.save(folder / "gt" / "canonical_index.npy", seq.gt_index.numpy())
            meta["gt"] = {**meta.get("gt", {}), "canonical_index": "gt/canonical_index.npy"}
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
        raise SequenceFormatError(f"{path}: missing; {LAYOUT}")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SequenceFormatError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(obj, dict):
        raise SequenceFormatError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _read_meta(folder: Path) -> dict:
    """meta.json of a sequence folder, or a `SequenceFormatError` saying what is wrong with it.

    The benchmark generator writes meta.json last with ``"complete": true`` and regenerates a
    folder without it before reading, so a generated folder that still lacks it was copied or
    edited half-way; a user's own folder simply needs the file (or the marker) written."""
    path = folder / "meta.json"
    if not path.is_file():
        raise SequenceFormatError(
            f"{path}: missing; a sequence folder needs meta.json with {{\"num_frames\", \"fps\", \"complete\": true}}, "
            "written last once every other file is in place")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise SequenceFormatError(f"{path}: cannot be read ({type(e).__name__}: {e})") from e
    if not text.strip():
        raise SequenceFormatError(
            f"{path}: empty; write {{\"num_frames\": <T>, \"fps\": <fps>, \"complete\": true}} into it "
            "(if a generator or copy was interrupted, rerun it)")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise SequenceFormatError(f"{path}: not valid JSON ({e}); expected {{\"num_frames\", \"fps\", \"complete\": true, ...}}") from e
    if not isinstance(meta, dict):
        raise SequenceFormatError(f"{path}: expected a JSON object {{\"num_frames\", \"fps\", \"complete\": true, ...}}, "
                                  f"got {type(meta).__name__}")
    if meta.get("complete") is not True:
        if meta.get("generator"):
            raise SequenceFormatError(
                f"{path}: lacks \"complete\": true: a half-written copy of a sequence made by {meta['generator']}; "
                "generate it again (dataset=synthetic or dataset=donut does so by itself) instead of reading this copy")
        raise SequenceFormatError(
            f"{path}: lacks \"complete\": true, the marker that every file of the folder is written; "
            "add it once the frames, cameras.json and canonical.ply are in place")
    return meta


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
        if mask_path is not None and mask_path.is_file():
            raise SequenceFormatError(f"{path}: an RGBA frame carries its mask as alpha, and {mask_path} is a mask "
                                      f"for it too; keep one: save the frame as RGB, or remove the mask file")
        check_mask_range(img[..., 3], path, "alpha")
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
    check_mask_range(m[..., 0], mask_path)
    return img, m[..., 0]


def _is_number(x) -> bool:
    """Whether a JSON value is a finite number (true and false are not)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_sequence(folder: PathLike, require_canonical: bool = True) -> Sequence:
    """Read a sequence folder (see the module docstring); every problem is an error naming the file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder}: no such sequence folder; {LAYOUT}")
    meta = _read_meta(folder)
    T = meta.get("num_frames")
    if not isinstance(T, int):
        raise SequenceFormatError(f"{folder / 'meta.json'}: \"num_frames\" must be an integer, got {T!r}")
    if T < 1:
        raise SequenceFormatError(f"{folder / 'meta.json'}: num_frames = {T}; a sequence holds at least 1 frame "
                                  "(2 to track; one frame is a still capture, for fit.py)")
    if "fps" not in meta:
        raise SequenceFormatError(f"{folder / 'meta.json'}: missing \"fps\"")
    fps = meta["fps"]
    if not _is_number(fps) or fps <= 0:
        raise SequenceFormatError(f"{folder / 'meta.json'}: \"fps\" must be a positive number (frames per second), got {fps!r}")
    cams = _read_json(folder / "cameras.json")
    views = cams.get("views")
    if not isinstance(views, list) or not views:
        raise SequenceFormatError(f"{folder / 'cameras.json'}: expected a non-empty list under \"views\"")
    names, splits, azimuths, Ks, vms, sizes = [], [], [], [], [], set()
    for i, v in enumerate(views):
        if not isinstance(v, dict):
            raise SequenceFormatError(f"{folder / 'cameras.json'}: view {i} must be an object {{\"name\", \"split\", \"K\", "
                                      f"\"viewmat\", \"width\", \"height\"}}, got {type(v).__name__}")
        for key in ("name", "split", "K", "viewmat", "width", "height"):
            if key not in v:
                raise SequenceFormatError(f"{folder / 'cameras.json'}: view {i} lacks \"{key}\"")
        if v["split"] not in ("frames", "novel"):
            raise SequenceFormatError(f"{folder / 'cameras.json'}: view {v['name']!r} has split {v['split']!r}, expected \"frames\" or \"novel\"")
        try:
            K, vm = torch.tensor(v["K"], dtype=torch.float32), torch.tensor(v["viewmat"], dtype=torch.float32)
        except (TypeError, ValueError) as e:
            raise SequenceFormatError(f"{folder / 'cameras.json'}: view {v['name']!r}: K and viewmat must be lists of numbers "
                                      f"(3x3 and 4x4) ({e})") from e
        problem = camera_problem(K, vm)
        if problem is not None:
            raise SequenceFormatError(f"{folder / 'cameras.json'}: view {v['name']!r}: {problem}")
        if not all(isinstance(v[k], int) and not isinstance(v[k], bool) and v[k] > 0 for k in ("width", "height")):
            raise SequenceFormatError(f"{folder / 'cameras.json'}: view {v['name']!r}: width and height must be positive "
                                      f"integers (pixels), got {v['width']!r} x {v['height']!r}")
        names.append(str(v["name"]))
        splits.append(v["split"])
        az = v.get("azimuth_deg")
        if az is not None and not _is_number(az):
            raise SequenceFormatError(f"{folder / 'cameras.json'}: view {v['name']!r}: azimuth_deg must be a number "
                                      f"(degrees) or null, got {az!r}")
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
        canonical = load_asset(folder / "canonical.ply")
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
            bad = ~np.isfinite(arrs[-1]).all(axis=1)
            if bad.any():
                raise SequenceFormatError(
                    f"{p}: means of {int(bad.sum())} ground-truth Gaussians hold NaN or inf (first: row {int(np.argmax(bad))}); "
                    "3D errors would be NaN. Fix it, or remove gt/ (the run then reports no 3D errors)")
        gt_means = torch.from_numpy(np.stack(arrs))
    gt_index = _canonical_index(folder, meta, canonical)
    return Sequence(
        canonical=canonical, cameras=cameras, view_names=names, azimuths=azimuths,
        images=torch.from_numpy(images), masks=torch.from_numpy(masks),
        supervision_views=[i for i, s in enumerate(splits) if s == "frames"],
        novel_views=[i for i, s in enumerate(splits) if s == "novel"],
        gt_means=gt_means, gt_index=gt_index, fps=float(meta["fps"]), meta={**meta, "folder": str(folder)},
        static=T == 1,  # a still capture: fit.py fits it, tracking refuses it (data/registry.py)
    )


def _canonical_index(folder: Path, meta: dict, canonical: Gaussians | None) -> Tensor | None:
    """``gt/canonical_index.npy`` when meta.json names it: [N] truth index of each canonical Gaussian
    (-1 for the extra ones, which have no truth), checked against the canonical's N."""
    name = (meta.get("gt") or {}).get("canonical_index")
    if name is None:
        return None
    index_file = folder / name
    if not index_file.is_file():
        raise SequenceFormatError(f"{index_file}: missing (meta.json names it as gt canonical_index)")
    try:
        index = torch.from_numpy(np.load(index_file)).long()
    except Exception as e:
        raise SequenceFormatError(f"{index_file}: not a readable .npy ({type(e).__name__}: {e})") from e
    if canonical is not None and index.shape != (canonical.num_gaussians,):
        raise SequenceFormatError(
            f"{index_file}: expected {canonical.num_gaussians} entries (one per canonical Gaussian), got {list(index.shape)}")
    return index


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


def from_config(ds: Mapping, resolution: int | None, require_canonical: bool = True) -> Sequence:
    """The ``dataset=folder`` entry: ``ds.path``. The folder format is used at its own size: a
    ``resolution`` other than the stored one is a config error (None: as stored)."""
    from spectral_tracking.errors import ConfigError

    seq = load_sequence(ds["path"], require_canonical=require_canonical)
    if resolution is not None and seq.height != seq.width:
        raise SequenceFormatError(
            f"{ds['path']}: frames are {seq.width}x{seq.height} (from cameras.json); tracking needs square frames "
            "(resolution is one side), and non-square frames are not supported: crop or pad them to square")
    if resolution is not None and (seq.height, seq.width) != (resolution, resolution):
        raise ConfigError(
            f"dataset.path={ds['path']}: frames are {seq.width}x{seq.height} but resolution={resolution}; "
            f"set resolution={seq.width} (the folder format is used at its own size)"
        )
    return seq
