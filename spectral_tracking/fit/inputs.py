"""The fit's input: one frame of a `Sequence`, read through the data layer's registry.

Any reader of ``spectral_tracking.data.DATASETS`` that reads a folder gives the posed images: a
sequence folder (one frame, default 0, of its training views), a Consistent4D video (one front
view; frame 0) or a NeRF-synthetic scene (every view). The cameras are the ones the tracker uses,
so the fitted asset lines up with them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Union

from spectral_tracking.data import DataError, Sequence, detect_type, read_dataset
from spectral_tracking.errors import FitInputError  # noqa: F401  (raised here)

log = logging.getLogger(__name__)
PathLike = Union[str, Path]
C4D_FOVY_DEG = 49.1  # load_consistent4d's default: the rig of the Consistent4D / SC4D renders
DATA_TYPES = ("auto", "folder", "sequence", "nerf_synthetic", "consistent4d")
_TYPE_ALIASES = {"sequence": "folder"}  # fit.py's earlier name of the folder format


def _pick_views(names: list[str], views, default: list[int], source: str) -> list[int]:
    if views is None:
        return list(default)
    out = []
    for v in views:
        if isinstance(v, int) and not isinstance(v, bool):
            if not 0 <= v < len(names):
                raise FitInputError(f"{source}: view index {v} out of range for {len(names)} views")
            out.append(v)
        elif str(v) in names:
            out.append(names.index(str(v)))
        else:
            raise FitInputError(f"{source}: no view named {v!r}; views are {names}")
    if not out:
        raise FitInputError(f"{source}: data.views is empty; no images to fit")
    return out


def pick_frame(seq: Sequence, frame: int = 0, views=None) -> Sequence:
    """Frame ``frame`` of ``seq`` for ``views`` (names or indices; default its training views) as a
    static one-frame `Sequence`: the posed images a canonical asset is fitted to."""
    source = str(seq.meta.get("folder", "sequence"))
    if not 0 <= frame < seq.num_frames:
        raise FitInputError(f"{source}: frame {frame} out of range (the sequence has {seq.num_frames} frames)")
    return seq.still(frame, _pick_views(seq.view_names, views, seq.train_views, source))


def source_of(data: Sequence) -> str:
    """Where a fit's images come from, for logs and metrics.json: the folder and frame (or split)."""
    folder = data.meta.get("folder", "sequence")
    if data.meta.get("dataset") == "nerf_synthetic":
        return f"{folder} ({data.meta.get('split', 'train')})"
    return f"{folder} (frame {data.meta.get('frame', 0)})"


def load_frame(path: PathLike, type: str = "auto", split: str = "train", frame: int = 0, views=None,
               resolution: int | None = None) -> Sequence:
    """One frame of a sequence folder, a Consistent4D video or a NeRF-synthetic scene, read through the
    data layer's registry, as a static `Sequence` with its longer side at ``resolution`` (None: as
    stored).

    type: auto (`detect_type`) or a registry name read from a folder (``folder`` (alias
    ``sequence``), ``nerf_synthetic``, ``consistent4d``). Auto never picks ``consistent4d``: numbered
    PNGs have no cameras, and fitting them assumes the Consistent4D front camera, which the user
    asks for by name (a warning repeats the assumption). split: the NeRF-synthetic split
    (``transforms_<split>.json``). frame: which frame of a video. views: names or indices of the
    views to use (default: the sequence's training views; every NeRF-synthetic view).
    """
    if type not in DATA_TYPES:
        raise FitInputError(f"data.type must be one of {DATA_TYPES}, got {type!r}")
    try:
        kind = detect_type(path) if type == "auto" else _TYPE_ALIASES.get(type, type)
        if type == "auto" and kind == "consistent4d":
            # Numbered PNGs carry no cameras: fitting them means assuming one, which sets the asset's
            # size and pose. Never assume it silently; the user opts in with data.type.
            raise FitInputError(
                f"{path}: numbered PNGs and no cameras (no cameras.json, no transforms_*.json); to fit them as a Consistent4D "
                f"video with its assumed front camera (azimuth 0, radius 2, fovy {C4D_FOVY_DEG} degrees) set "
                "data.type=consistent4d, otherwise add a cameras.json (README: 'Bring your own data')")
        seq = read_dataset({"type": kind, "path": str(path), "split": split}, None, require_canonical=False)
    except DataError as e:
        raise FitInputError(str(e)) from e
    if kind == "consistent4d":
        log.warning("%s: fitting with the assumed Consistent4D front camera (azimuth 0, radius 2, fovy %s degrees); "
                    "the asset's size and pose follow from that assumption", path, C4D_FOVY_DEG)
    return pick_frame(seq, int(frame), views).resized(resolution)
