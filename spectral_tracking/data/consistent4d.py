"""Reader for the Consistent4D monocular videos (the inputs SC4D is run on).

Layout: ``<folder>/0.png .. <T-1>.png``, RGBA (720x720 in the benchmark), alpha a binary object
mask. The reader resizes to ``resolution`` (None: as stored) and attaches one front camera of the
orbit rig (azimuth 0, radius 2, fovy 49.1 degrees). The canonical asset comes from fitting frame 0 (the
canonical-fitting step); until then pass ``canonical=`` or leave it None.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from spectral_tracking.data.frames import front_camera, read_rgba_frame, resize_square
from spectral_tracking.data.sequence import Sequence, load_asset
from spectral_tracking.errors import DataNotFoundError, SequenceFormatError
from spectral_tracking.gaussians import Gaussians

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "consistent4d"
# One line, so an error that quotes it stays one line on the terminal.
LAYOUT = ("a Consistent4D video is a folder of RGBA frames 0.png, 1.png, ..., <T-1>.png (alpha = object mask); the "
          "project's copies live in ../shared/data/consistent4d/<name>/, the benchmark's at github.com/yanqinJiang/Consistent4D")


def load_consistent4d(folder: str | Path, resolution: int | None = 256, canonical: Gaussians | None = None,
                      fps: float = 8.0, fovy_deg: float = 49.1) -> Sequence:
    """Read a Consistent4D video into a `Sequence` with one supervision view ("0.0") and no novel views.

    ``fps`` is the nominal frame rate stored with the sequence (the videos carry none).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"Consistent4D video: no folder at {folder}; {LAYOUT}")
    ids = []
    for p in folder.iterdir():
        m = re.match(r"^(\d+)\.png$", p.name)
        if m:
            ids.append(int(m.group(1)))
        elif p.suffix.lower() == ".png":
            raise SequenceFormatError(f"{p}: unexpected image name (frames are 0.png, 1.png, ...)")
    ids.sort()
    if not ids:
        raise SequenceFormatError(f"{folder}: no frames 0.png, 1.png, ...; {LAYOUT}")
    missing = sorted(set(range(ids[-1] + 1)) - set(ids))
    if missing:
        raise SequenceFormatError(f"{folder}: missing frames {[f'{t}.png' for t in missing[:10]]} (found 0..{ids[-1]})")
    T = len(ids)  # one frame is a still (fit.py fits it; tracking refuses it in load_dataset, saying so)
    rgbs, masks, size = [], [], None
    for t in range(T):
        img = read_rgba_frame(folder / f"{t}.png", "Consistent4D", size, "0.png")
        size = img.shape[:2]
        rgb, m = img[..., :3], img[..., 3]
        if resolution is not None:
            rgb, m = resize_square(rgb, m, resolution, folder / f"{t}.png")
        rgbs.append(rgb)
        masks.append(m)
    H, W = rgbs[0].shape[:2]
    return Sequence(
        canonical=canonical, cameras=front_camera(W, H, fovy_deg=fovy_deg),
        view_names=["0.0"], azimuths=[0.0],
        images=torch.from_numpy(np.stack(rgbs)[None]), masks=torch.from_numpy(np.stack(masks)[None]),
        supervision_views=[0], novel_views=[], fps=fps, static=T == 1,
        meta={"dataset": "consistent4d", "folder": str(folder), "name": folder.name, "source_size": list(size),
              "resolution": resolution, "provenance": "Consistent4D monocular video (yanqinJiang/Consistent4D)"},
    )


def from_config(ds: Mapping, resolution: int | None, require_canonical: bool = True) -> Sequence:
    """The ``dataset=consistent4d`` entry: ``ds.path`` (the video), ``ds.canonical`` (the asset fitted
    to frame 0; absent until fit.py made it), ``ds.name`` (for the message saying how to make it)."""
    canonical = Path(ds["canonical"]) if ds.get("canonical") else None
    asset = load_asset(canonical) if canonical is not None and canonical.is_file() else None
    seq = load_consistent4d(ds["path"], resolution=resolution, canonical=asset)
    if asset is None and require_canonical:
        name = ds.get("name") or Path(ds["path"]).name
        raise DataNotFoundError(
            f"dataset=consistent4d: no canonical asset at {canonical}. Fit one from frame 0 first: "
            f"python experiments/fit_consistent4d.py --name {name} (see README, 'Step one: a canonical asset')"
        )
    return seq
