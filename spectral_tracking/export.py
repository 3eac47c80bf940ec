"""What a run hands on: per-frame PLYs in the frame of the asset the user gave, and ``tracked.npz``,
the compact record of the tracked sequence that the viewer (`spectral_tracking.view`) and the Python
API read.

Tracking runs in the standard frame (bounding radius 0.5, `spectral_tracking.data.normalized`):
x_n = s (x - c). A sequence records that in ``meta["normalization"] = {"center": c [3], "scale": s,
...}``; the export applies the inverse, x = x_n / s + c, with log-scales shifted by -log s, so the
PLYs line up with the user's scene. A record without ``center`` / ``scale`` (a sequence that was
built in the standard frame, like the synthetic benchmark, whose ``canonical.ply`` already is in
it) means the frames coincide and nothing is applied.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from spectral_tracking.gaussians import SH_C0, Gaussians, save_ply

MAX_IMAGE_SIDE = 256  # pixels: targets stored in tracked.npz are at most about this size


def asset_transform(normalization: Mapping | None) -> tuple[torch.Tensor, float] | None:
    """(center [3], scale) of a normalisation record, or None when it maps nothing."""
    if not normalization or "center" not in normalization or "scale" not in normalization:
        return None
    return torch.tensor(normalization["center"], dtype=torch.float64), float(normalization["scale"])


def to_asset_frame(gaussians: Gaussians, normalization: Mapping | None) -> Gaussians:
    """``gaussians`` (standard frame) in the frame of the asset the user gave: x = x_n / s + c,
    sizes divided by s; rotations, opacities and colours unchanged."""
    tf = asset_transform(normalization)
    if tf is None:
        return gaussians
    center, scale = tf
    means = (gaussians.means.double() / scale + center.to(gaussians.device)).to(gaussians.means.dtype)
    return replace(gaussians, means=means, log_scales=gaussians.log_scales - math.log(scale))


def _exported(deformation, frame: int, normalization: Mapping | None) -> Gaussians:
    """Frame ``frame``'s tracked Gaussians in the asset's own frame, refused where they hold NaN or inf,
    naming the frame (gsplat's .splat export drops such rows without a word; a PLY would carry them)."""
    g = to_asset_frame(deformation(frame), normalization)
    g.check_finite(f"export: frame {frame} of the tracked sequence")
    return g


def export_asset_frames(deformation, out_dir: Path, normalization: Mapping | None = None,
                        frames: list[int] | None = None) -> list[Path]:
    """Write each frame's tracked Gaussians as ``out_dir/frame_XXXX.ply`` (standard 3DGS layout) in
    the asset's own frame (`to_asset_frame`). The deformation's forward pass includes the
    appearance offset where there is one (`WithAppearance`), so the files carry the evaluated colours."""
    out_dir = Path(out_dir)
    frames = list(range(deformation.num_frames)) if frames is None else [int(f) for f in frames]
    with torch.no_grad():
        return [save_ply(_exported(deformation, f, normalization), out_dir / f"frame_{f:04d}.ply") for f in frames]


def export_asset_splats(deformation, out_dir: Path, normalization: Mapping | None = None,
                        frames: list[int] | None = None) -> list[Path]:
    """Like `export_asset_frames`, as ``frame_XXXX.splat`` (32 bytes a Gaussian: position, scale,
    RGBA, rotation; the web viewers' format, written by ``gsplat.export_splats``, which runs on the
    CPU). The format keeps degree-0 colour only."""
    from gsplat import export_splats

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = list(range(deformation.num_frames)) if frames is None else [int(f) for f in frames]
    paths = []
    with torch.no_grad():
        for f in frames:
            g = _exported(deformation, f, normalization).to("cpu", torch.float32)
            path = out_dir / f"frame_{f:04d}.splat"
            export_splats(g.means, g.log_scales, g.quats, g.opacity_logits, g.sh[:, :1], g.sh[:, 1:], format="splat",
                          save_to=str(path))
            paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------
# tracked.npz
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def save_tracked(module, path: Path, normalization: Mapping | None = None) -> Path:
    """``tracked.npz``: the tracked sequence in the standard frame, small enough to keep with every run.

    means [T, N, 3] float32, quats [T, N, 4] float16 (unit length), log_scales [N, 3] float32,
    opacities [N] float16, colors [N, 3] uint8 (the degree-0 colour, appearance offset included),
    control_points [T, J, 3] float32, Ks [V, 3, 3], viewmats [V, 4, 4] (world-to-camera, OpenCV),
    width, height (of the cameras), view_names [V], train_views, eval_views, images [V, T, h, w, 3]
    uint8 (the targets, every k-th pixel where the frames are larger than `MAX_IMAGE_SIDE`),
    normalization (JSON text of the record; `to_asset_frame`).
    Scales, opacities and colours do not change over time in any deformation here.
    """
    deformation = module.deformation
    tg = module.targets
    T = tg.num_frames
    means, quats = [], []
    for t in range(T):  # one frame's Gaussians at a time: at 1M Gaussians a frame holds 0.2 GB
        g = deformation(t)
        means.append(g.means.float().cpu())
        quats.append((g.quats / g.quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)).half().cpu())
        if t == 0:
            g0 = g
    colors = (0.5 + SH_C0 * g0.sh[:, 0]).clamp(0, 1)
    # The targets are thumbnails for the viewer: above MAX_IMAGE_SIDE every k-th pixel is kept, so a
    # 512 px run with 32 frames does not write 150 MB.
    k = max(1, -(-max(tg.images.shape[2:4]) // MAX_IMAGE_SIDE))
    h, w = -(-tg.images.shape[2] // k), -(-tg.images.shape[3] // k)
    images = np.empty((len(tg.images), T, h, w, 3), np.uint8)
    for v in range(len(tg.images)):  # one frame in float at a time
        for t in range(T):
            images[v, t] = (tg.images[v, t, ::k, ::k].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    data = {
        "means": torch.stack(means).numpy(),
        "quats": torch.stack(quats).numpy(),
        "log_scales": g0.log_scales.float().cpu().numpy(),
        "opacities": torch.sigmoid(g0.opacity_logits).half().cpu().numpy(),
        "colors": (colors * 255).round().to(torch.uint8).cpu().numpy(),
        "control_points": torch.stack([deformation.control_point_positions(t) for t in range(T)]).float().cpu().numpy(),
        "Ks": tg.cameras.Ks.float().cpu().numpy(),
        "viewmats": tg.cameras.viewmats.float().cpu().numpy(),
        "width": np.int64(tg.cameras.width), "height": np.int64(tg.cameras.height),
        "view_names": np.array([str(n) for n in tg.view_names]),
        "train_views": np.array(tg.train_views, np.int64), "eval_views": np.array(tg.eval_views, np.int64),
        "images": images,
        "normalization": np.array(json.dumps(dict(normalization or {}))),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(path)
    return path


TRACKED_KEYS = ("means", "quats", "log_scales", "opacities", "colors", "control_points", "Ks", "viewmats", "width",
                "height", "view_names", "train_views", "eval_views", "images", "normalization")


def load_tracked(path: Path) -> dict:
    """`save_tracked`'s arrays as a dict (``normalization`` parsed back to a dict); a ValueError
    naming the file for one that is truncated, not an npz, or missing keys."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a readable tracked sequence ({type(e).__name__}: {e}); rerun the tracking run "
                         f"that wrote it with skip_finished=false added (a finished run is otherwise returned as it is)") from None
    missing = [k for k in TRACKED_KEYS if k not in data]
    if missing:
        raise ValueError(f"{path}: not a tracked sequence of this version (missing {', '.join(missing)}); rerun the "
                         f"tracking run that wrote it with skip_finished=false added")
    data["normalization"] = json.loads(str(data["normalization"]))
    data["view_names"] = [str(n) for n in data["view_names"]]
    return data
