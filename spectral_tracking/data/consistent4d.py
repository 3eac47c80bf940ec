"""Reader for the Consistent4D monocular videos (the inputs SC4D is run on).

Layout: ``<folder>/0.png .. <T-1>.png``, RGBA (720x720 in the benchmark), alpha a binary object
mask. The reader resizes to ``resolution`` and attaches one front camera of the orbit rig (azimuth
0, radius 2, fovy 49.1 degrees). The canonical asset comes from fitting frame 0 (the
canonical-fitting step); until then pass ``canonical=`` or leave it None.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from spectral_tracking.data.formats import front_camera, read_rgba_frame, resize_rgb_mask
from spectral_tracking.data.sequence import DataNotFoundError, Sequence, SequenceFormatError
from spectral_tracking.gaussians import Gaussians

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "consistent4d"
LAYOUT = """\
expected Consistent4D layout:
  <folder>/0.png, 1.png, ..., <T-1>.png   RGBA frames (alpha = object mask)
(the project's copies live in ../shared/data/consistent4d/<name>/; the benchmark's videos are at
https://github.com/yanqinJiang/Consistent4D)"""


def load_consistent4d(folder: str | Path, resolution: int = 256, canonical: Gaussians | None = None,
                      fps: float = 8.0, fovy_deg: float = 49.1) -> Sequence:
    """Read a Consistent4D video into a `Sequence` with one supervision view ("0.0") and no novel views.

    ``fps`` is the nominal frame rate stored with the sequence (the videos carry none).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"Consistent4D video: no folder at {folder}\n{LAYOUT}")
    ids = []
    for p in folder.iterdir():
        m = re.match(r"^(\d+)\.png$", p.name)
        if m:
            ids.append(int(m.group(1)))
        elif p.suffix.lower() == ".png":
            raise SequenceFormatError(f"{p}: unexpected image name (frames are 0.png, 1.png, ...)")
    ids.sort()
    if not ids:
        raise SequenceFormatError(f"{folder}: no frames 0.png, 1.png, ...\n{LAYOUT}")
    missing = sorted(set(range(ids[-1] + 1)) - set(ids))
    if missing:
        raise SequenceFormatError(f"{folder}: missing frames {[f'{t}.png' for t in missing[:10]]} (found 0..{ids[-1]})")
    T = len(ids)
    if T < 2:
        raise SequenceFormatError(f"{folder}: {T} frame; tracking needs at least 2")
    rgbs, masks, size = [], [], None
    for t in range(T):
        img = read_rgba_frame(folder / f"{t}.png", "Consistent4D", size, "0.png")
        size = img.shape[:2]
        rgb, m = resize_rgb_mask(img[..., :3], img[..., 3], resolution)
        rgbs.append(rgb)
        masks.append(m)
    return Sequence(
        canonical=canonical, cameras=front_camera(resolution, resolution, fovy_deg=fovy_deg),
        view_names=["0.0"], azimuths=[0.0],
        images=torch.from_numpy(np.stack(rgbs)[None]), masks=torch.from_numpy(np.stack(masks)[None]),
        supervision_views=[0], novel_views=[], fps=fps,
        meta={"dataset": "consistent4d", "folder": str(folder), "name": folder.name, "source_size": list(size),
              "resolution": resolution, "provenance": "Consistent4D monocular video (yanqinJiang/Consistent4D)"},
    )
