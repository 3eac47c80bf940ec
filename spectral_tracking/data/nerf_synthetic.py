"""Reader for NeRF-synthetic style folders (``transforms_<split>.json`` + RGBA PNGs).

Layout (Mildenhall et al. 2020, also written by Blender exporters and instant-ngp tools)::

    <folder>/transforms_train.json   {"camera_angle_x": fov_x in radians (or "fl_x"[, "fl_y"], "cx", "cy"),
                                       "frames": [{"file_path": "./train/r_0", "transform_matrix": 4x4}, ...]}
    <folder>/train/r_0.png           RGBA (alpha = object mask) or RGB (then the mask is all ones)

``transform_matrix`` is camera-to-world in the OpenGL/Blender convention (x right, y up, z backwards);
it is converted to this project's OpenCV world-to-camera ``viewmats`` (x right, y down, z forward) by
flipping the camera's y and z axes. ``file_path`` may omit the ``.png`` extension. The world frame is
kept as it is (NeRF-synthetic scenes are z-up); only the cameras are converted.

A NeRF-synthetic scene is a still capture: the reader returns a static one-frame `Sequence` (every
view a supervision view, no canonical asset), which fit.py fits a canonical to; it cannot be tracked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from spectral_tracking.cameras import Cameras, camera_problem
from spectral_tracking.data.sequence import Sequence
from spectral_tracking.errors import DataNotFoundError, SequenceFormatError

PathLike = Union[str, Path]

# OpenGL camera (x right, y up, z back) -> OpenCV camera (x right, y down, z forward)
_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def transforms_path(folder: PathLike, split: str = "train") -> Path:
    return Path(folder) / f"transforms_{split}.json"


def _image_path(folder: Path, file_path: str) -> Path:
    p = (folder / file_path).resolve()
    if p.suffix == "":
        p = p.with_suffix(".png")
    return p


def load_nerf_synthetic(folder: PathLike, split: str = "train", resolution: int | None = None) -> Sequence:
    """A static one-frame `Sequence` of every view in ``transforms_<split>.json``, named by file.

    RGB frames without alpha get an all-ones mask. resolution: the longer image side in pixels
    (None: as stored). Raises `DataNotFoundError` / `SequenceFormatError` naming the file and what
    was expected (no frames, missing image, images of different sizes, a bad matrix, no focal length).
    """
    folder = Path(folder)
    path = transforms_path(folder, split)
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("transforms_*.json")) if folder.is_dir() else []
        raise DataNotFoundError(f"{path}: no such file (NeRF-synthetic layout expected; found {found or 'no transforms_*.json'})")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SequenceFormatError(f"{path}: not valid JSON ({e})") from e
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise SequenceFormatError(f"{path}: \"frames\" must be a non-empty list of {{file_path, transform_matrix}}; no cameras found")
    images, masks, viewmats, names, sizes = [], [], [], [], []
    for i, fr in enumerate(frames):
        if "file_path" not in fr or "transform_matrix" not in fr:
            raise SequenceFormatError(f"{path}: frame {i} lacks \"file_path\" or \"transform_matrix\"")
        c2w = torch.tensor(fr["transform_matrix"], dtype=torch.float64)
        if c2w.shape != (4, 4) or not torch.isfinite(c2w).all():
            raise SequenceFormatError(f"{path}: frame {i} transform_matrix must be a finite 4x4 matrix, got shape {list(c2w.shape)}")
        if abs(float(torch.linalg.det(c2w[:3, :3]))) < 1e-8:
            raise SequenceFormatError(f"{path}: frame {i} ({fr['file_path']}) transform_matrix has a singular 3x3 block; "
                                      "expected a camera-to-world rotation and translation")
        img_path = _image_path(folder, fr["file_path"])
        if not img_path.is_file():
            raise DataNotFoundError(f"{path}: frame {i} image {img_path} does not exist")
        try:
            with Image.open(img_path) as im:
                arr = np.asarray(im.convert("RGBA") if im.mode in ("RGBA", "LA", "P") else im.convert("RGB"))
        except Exception as e:
            raise SequenceFormatError(f"{img_path}: not a readable image ({type(e).__name__}: {e})") from e
        if arr.shape[-1] != 4:  # an all-opaque mask would make the whole view, background included, the object
            raise SequenceFormatError(f"{img_path}: an RGB image without alpha; NeRF-synthetic frames are RGBA, their "
                                      f"alpha the object's mask: save the frames with their alpha channel")
        images.append(np.ascontiguousarray(arr[..., :3]))
        masks.append(np.ascontiguousarray(arr[..., 3]))
        sizes.append((arr.shape[1], arr.shape[0]))
        viewmats.append(torch.linalg.inv(c2w @ _GL_TO_CV).float())
        names.append(Path(fr["file_path"]).name)
    if len(set(sizes)) != 1:
        raise SequenceFormatError(f"{path}: images have different sizes {sorted(set(sizes))} (width x height); all must match")
    W, H = sizes[0]
    if "fl_x" in meta:
        fx = float(meta["fl_x"])
        fy = float(meta.get("fl_y", fx))
    elif "camera_angle_x" in meta:
        angle = meta["camera_angle_x"]
        if not (isinstance(angle, (int, float)) and 0 < angle < math.pi):
            raise SequenceFormatError(f"{path}: camera_angle_x must be the horizontal field of view in radians, in (0, pi); "
                                      f"got {angle!r}")
        fx = fy = 0.5 * W / math.tan(0.5 * float(angle))
    else:
        raise SequenceFormatError(f"{path}: needs \"camera_angle_x\" (radians) or \"fl_x\" for the focal length")
    if "w" in meta and "h" in meta and (int(meta["w"]), int(meta["h"])) != (W, H):
        # intrinsics given for another resolution: scale them to the images
        sx, sy = W / float(meta["w"]), H / float(meta["h"])
        fx, fy = fx * sx, fy * sy
        cx, cy = float(meta.get("cx", meta["w"] / 2)) * sx, float(meta.get("cy", meta["h"] / 2)) * sy
    else:
        cx, cy = float(meta.get("cx", W / 2)), float(meta.get("cy", H / 2))
    K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    for name, vm in zip(names, viewmats):
        problem = camera_problem(K, vm)
        if problem is not None:
            raise SequenceFormatError(f"{path}: frame {name!r}: {problem} (K from camera_angle_x / fl_x, viewmat from "
                                      "transform_matrix)")
    V = len(frames)
    seq = Sequence(
        canonical=None, cameras=Cameras(K.expand(V, 3, 3).clone(), torch.stack(viewmats), W, H), view_names=names,
        azimuths=[None] * V, images=torch.from_numpy(np.stack(images))[:, None],
        masks=torch.from_numpy(np.stack(masks))[:, None], supervision_views=list(range(V)), novel_views=[],
        meta={"dataset": "nerf_synthetic", "folder": str(folder), "split": split}, static=True,
    )
    return seq.resized(resolution)


def write_nerf_synthetic(folder: PathLike, seq: Sequence, frame: int = 0, split: str = "train") -> Path:
    """Write frame ``frame`` of every view of ``seq`` as a NeRF-synthetic folder (RGBA, alpha = mask).

    Square pixels and a centred principal point are assumed (``camera_angle_x`` only). Used by tests
    and to export scenes for other tools.
    """
    folder = Path(folder)
    (folder / split).mkdir(parents=True, exist_ok=True)
    cameras = seq.cameras
    fx = float(cameras.Ks[0, 0, 0])
    frames = []
    for v in range(seq.num_views):
        rgba = torch.cat([seq.images[v, frame], seq.masks[v, frame][..., None]], -1)
        Image.fromarray(rgba.numpy(), "RGBA").save(folder / split / f"r_{v}.png")
        c2w = torch.linalg.inv(cameras.viewmats[v].double()) @ _GL_TO_CV  # back to OpenGL axes
        frames.append({"file_path": f"./{split}/r_{v}", "transform_matrix": c2w.tolist()})
    meta = {"camera_angle_x": 2 * math.atan(0.5 * cameras.width / fx), "frames": frames}
    path = transforms_path(folder, split)
    path.write_text(json.dumps(meta, indent=1))
    return path


def from_config(ds: Mapping, resolution: int | None, require_canonical: bool = True) -> Sequence:
    """The ``dataset=nerf_synthetic`` entry: ``ds.path``, ``ds.split`` (which ``transforms_<split>.json``)."""
    return load_nerf_synthetic(ds["path"], ds.get("split", "train"), resolution)
