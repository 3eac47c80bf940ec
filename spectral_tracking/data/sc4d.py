"""Reader of SC4D / GSGD output folders (the paper's SC4D experiment: renders of a dynamic 3DGS).

Layout::

    <folder>/
      point_cloud.ply     the canonical 3DGS asset
      point_cloud_c.ply   optional control points: x, y, z (and c_radius)
      <azimuth>/0.png, 1.png, ...   RGBA supervision views, one folder per azimuth ("0.0", "90.0", ...),
                          rendered with the orbit rig (radius 2, fovy 49.1 degrees, elevation 0)

The reader normalises the asset to bounding radius 0.5 and moves the cameras with it (images
unchanged), so shift radii mean the same thing on every dataset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from spectral_tracking.cameras import orbit_camera
from spectral_tracking.data.frames import read_rgba_frame, resize_square
from spectral_tracking.data.gart import require_dir
from spectral_tracking.data.sequence import Sequence, load_asset, normalize_scene
from spectral_tracking.errors import DataNotFoundError, SequenceFormatError

SC4D_LAYOUT = """\
expected SC4D / GSGD layout:
  <folder>/point_cloud.ply            canonical 3DGS asset
  <folder>/point_cloud_c.ply          optional control points (x, y, z, c_radius)
  <folder>/<azimuth>/0.png, 1.png ... RGBA frames per view folder named by azimuth ("0.0", "90.0", ...)"""



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
    folder = require_dir(Path(folder), SC4D_LAYOUT, "SC4D / GSGD data")
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
                rgb, m = resize_square(rgb, m, resolution, d / f"{t}.png")
            vi.append(rgb)
            vm.append(m)
        images.append(np.stack(vi))
        masks.append(np.stack(vm))
    H, W = images[0].shape[1:3]
    az = [float(d.name) for d in view_dirs]
    cams = orbit_camera(az, 0.0, radius, fovy_deg, W, H)
    canonical, cams, record = normalize_scene(load_asset(ply), cams)
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


def from_config(ds: Mapping, resolution: int | None, require_canonical: bool = True) -> Sequence:
    """The ``dataset=sc4d`` entry: ``ds.path`` (the character's output folder)."""
    return load_sc4d(ds["path"], resolution=resolution)
