"""The benchmark generator: render a known motion with the orbit rig into a cached sequence folder.

Used by ``synthetic.py`` (procedural creatures) and ``donut.py`` (the real donut asset); it knows
neither. The rig is radius 2, fovy 49.1 degrees, elevation 0, azimuths 0/90/180/270 (supervision
views, ``frames/``) and 45/135 (novel views, ``novel/``); frames are stored in the sequence format of
``folder.py`` together with the ground-truth Gaussians of every frame (``gt/<t>.npz``: means, quats,
log_scales).

Settings:

- ``clean`` (mirrors SC4D): the canonical is exactly the asset that rendered the targets (the rest
  pose); frames are RGBA over nothing (alpha = mask).
- ``realistic`` (mirrors GART): the canonical differs from the truth in appearance (per-channel gain
  and brightness offset), 3% of its Gaussians are missing and 2% are extra; targets are RGB over a
  cluttered background with binary masks in ``masks/``; ``cameras.json`` carries small calibration
  error (the true cameras are in ``gt/cameras_true.json``). ``gt/canonical_index.npy`` maps each
  canonical Gaussian to its truth index (-1: extra), so 3D errors can still be measured.

A complete cached folder is reused as is; an interrupted one is deleted and regenerated (see
`spectral_tracking.data.folder.atomic_write`). Everything is a pure function of the arguments.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from spectral_tracking.cameras import Cameras, orbit_camera
from spectral_tracking.data.folder import atomic_write, cameras_to_json, is_complete, write_sequence
from spectral_tracking.data.frames import to_uint8
from spectral_tracking.data.sequence import Sequence
from spectral_tracking.gaussians import SH_C0, Gaussians

GENERATOR_VERSION = 1
REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO / "data" / "synthetic"
SUPERVISION_AZIMUTHS = (0.0, 90.0, 180.0, 270.0)
NOVEL_AZIMUTHS = (45.0, 135.0)
FPS = 24.0
DEFAULT_GAUSSIANS = 3000
SETTINGS = ("clean", "realistic")


def view_name(azimuth: float) -> str:
    """Views are named by azimuth, as in the SC4D / GSGD layout ("0.0", "90.0", ...)."""
    return f"{float(azimuth):.1f}"


def rig(resolution: int) -> tuple[Cameras, list[str], list[float], list[int], list[int]]:
    """(cameras, names, azimuths, supervision indices, novel indices) of the benchmark's orbit rig."""
    az = list(SUPERVISION_AZIMUTHS) + list(NOVEL_AZIMUTHS)
    cams = orbit_camera(az, elevation_deg=0.0, radius=2.0, fovy_deg=49.1, width=resolution, height=resolution)
    n = len(SUPERVISION_AZIMUTHS)
    return cams, [view_name(a) for a in az], az, list(range(n)), list(range(n, len(az)))


def sequence_name(preset: str, setting: str, resolution: int, frames: int, seed: int,
                  num_gaussians: int = DEFAULT_GAUSSIANS) -> str:
    name = f"{preset}_{setting}_r{resolution}_t{frames}_s{seed}"
    return name if num_gaussians == DEFAULT_GAUSSIANS else f"{name}_n{num_gaussians}"


# ----------------------------------------------------------------------------------------------
# Realistic-setting perturbations (pure functions of a seed)
# ----------------------------------------------------------------------------------------------
def perturb_appearance(truth: Gaussians, seed: int, drop: float = 0.03, extra: float = 0.02,
                       gain_range: float = 0.15, offset_range: float = 0.08) -> tuple[Gaussians, np.ndarray, dict]:
    """A canonical that differs from ``truth`` like a real reconstruction does.

    Colours get a per-channel gain in [1 - gain_range, 1 + gain_range] and a brightness offset in
    [-offset_range, offset_range]; a fraction ``drop`` of the Gaussians is removed and a fraction
    ``extra`` of jittered, recoloured copies is added. Returns (canonical, index [M] into truth or -1
    for extras, record).
    """
    gen = torch.Generator().manual_seed(seed)
    N = truth.num_gaussians
    gain = 1 + (torch.rand(3, generator=gen) * 2 - 1) * gain_range
    offset = float((torch.rand(1, generator=gen) * 2 - 1) * offset_range)
    keep = torch.rand(N, generator=gen) >= drop
    idx = torch.nonzero(keep).flatten()
    n_extra = int(round(extra * N))
    src = torch.randint(0, N, (n_extra,), generator=gen)
    extras = truth.subset(src)
    extras = Gaussians(
        means=extras.means + torch.randn(n_extra, 3, generator=gen) * 0.03,
        quats=extras.quats, log_scales=extras.log_scales,
        opacity_logits=extras.opacity_logits,
        sh=((torch.rand(n_extra, 3, generator=gen) - 0.5) / SH_C0)[:, None, :],
    )
    kept = truth.subset(idx)
    colors = (kept.colors * gain + offset).clamp(0.0, 1.0)
    kept = Gaussians(means=kept.means, quats=kept.quats, log_scales=kept.log_scales,
                     opacity_logits=kept.opacity_logits, sh=((colors - 0.5) / SH_C0)[:, None, :])
    canonical = Gaussians.cat([kept, extras])
    index = np.concatenate([idx.numpy(), -np.ones(n_extra, dtype=np.int64)])
    record = {"color_gain": gain.tolist(), "brightness_offset": offset, "dropped": int(N - len(idx)), "extra": n_extra}
    return canonical, index, record


def perturb_cameras(cameras: Cameras, seed: int, rot_deg: float = 0.5, trans: float = 0.01,
                    focal_rel: float = 0.01) -> Cameras:
    """Cameras with small calibration error: a random rotation of ``rot_deg`` degrees (std) about a
    random axis, a translation of std ``trans`` world units and a relative focal error of std
    ``focal_rel``, independently per view."""
    from spectral_tracking.data.creatures import axis_angle

    rng = np.random.default_rng(seed)
    vms, Ks = cameras.viewmats.clone().double(), cameras.Ks.clone().double()
    for i in range(len(cameras)):
        axis = rng.normal(size=3)
        dR = torch.as_tensor(axis_angle(axis, math.radians(rng.normal() * rot_deg)))
        vms[i, :3, :3] = dR @ vms[i, :3, :3]
        vms[i, :3, 3] = dR @ vms[i, :3, 3] + torch.as_tensor(rng.normal(size=3) * trans)
        f = 1 + rng.normal() * focal_rel
        Ks[i, 0, 0] *= f
        Ks[i, 1, 1] *= f
    return Cameras(Ks.float(), vms.float(), cameras.width, cameras.height)


def clutter_background(height: int, width: int, seed: int) -> torch.Tensor:
    """A cluttered, static background [H, W, 3] in [0, 1]: a colour gradient, blurred noise, and
    random rectangles and discs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    c0, c1 = rng.uniform(0.2, 0.8, 3), rng.uniform(0.2, 0.8, 3)
    a = rng.uniform(0, 2 * math.pi)
    g = (np.cos(a) * xx + np.sin(a) * yy)
    g = (g - g.min()) / max(1e-6, g.max() - g.min())
    img = c0 * (1 - g[..., None]) + c1 * g[..., None]
    for _ in range(14):
        col = rng.uniform(0, 1, 3)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        if rng.random() < 0.5:
            w, h = rng.uniform(0.05, 0.3) * width, rng.uniform(0.05, 0.3) * height
            sel = (np.abs(np.arange(width)[None] - cx) < w / 2) & (np.abs(np.arange(height)[:, None] - cy) < h / 2)
        else:
            r = rng.uniform(0.03, 0.15) * max(height, width)
            sel = (np.arange(width)[None] - cx) ** 2 + (np.arange(height)[:, None] - cy) ** 2 < r * r
        img[sel] = 0.35 * img[sel] + 0.65 * col
    noise = rng.normal(scale=0.04, size=(height, width, 3))
    return torch.as_tensor(np.clip(img + noise, 0, 1), dtype=torch.float32)


# ----------------------------------------------------------------------------------------------
# Rendering a motion into a sequence
# ----------------------------------------------------------------------------------------------
def render_frames(frames: list[Gaussians], cameras: Cameras, composite, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Render every frame in every view over black and store it as uint8 one frame at a time (a
    100-frame 512^2 sequence held as float peaked at 11.6 GB): ``composite(rgb [V, H, W, 3]
    premultiplied, alpha [V, H, W]) -> (images uint8 [V, H, W, 3], masks uint8 [V, H, W])``.
    Returns (images [V, T, H, W, 3], masks [V, T, H, W])."""
    from spectral_tracking.render import render

    V, H, W = len(cameras), cameras.height, cameras.width
    images = np.empty((V, len(frames), H, W, 3), np.uint8)
    masks = np.empty((V, len(frames), H, W), np.uint8)
    with torch.no_grad():
        for t, g in enumerate(frames):
            out = render(g, cameras, backend=backend)
            images[:, t], masks[:, t] = composite(out.rgb.cpu(), out.alpha.cpu())
    return images, masks


def make_sequence(truth: Gaussians, frames: list[Gaussians], setting: str, resolution: int, seed: int,
                  meta: dict, backend: str = "auto") -> tuple[Sequence, dict]:
    """Render ``frames`` (the deformed ``truth``) with the benchmark rig in ``setting``.

    Returns the in-memory sequence and extra arrays to store (``gt/*``)."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; choose from {SETTINGS}")
    cams, names, az, sup, nov = rig(resolution)
    extras: dict = {"gt_frames": frames}
    if setting == "clean":
        def composite(rgb, alpha):
            straight = torch.where(alpha[..., None] > 1.0 / 255, rgb / alpha[..., None].clamp_min(1e-6), torch.zeros_like(rgb))
            return to_uint8(straight.clamp(0, 1)), to_uint8(alpha)

        images, masks = render_frames(frames, cams, composite, backend)
        canonical, stored_cams = truth, cams
        meta = {**meta, "gt": {"matches_canonical": True}}
    else:
        bg = torch.stack([clutter_background(resolution, resolution, seed * 1000 + v) for v in range(len(cams))])

        def composite(rgb, alpha):
            comp = rgb + (1 - alpha[..., None]) * bg
            return to_uint8(comp.clamp(0, 1)), np.where(alpha.numpy() > 0.5, 255, 0).astype(np.uint8)

        images, masks = render_frames(frames, cams, composite, backend)
        canonical, index, record = perturb_appearance(truth, seed + 1)
        stored_cams = perturb_cameras(cams, seed + 2)
        extras["canonical_index"] = index
        extras["true_cameras"] = cams
        meta = {**meta, "appearance_shift": record,
                "camera_noise": {"rotation_deg_std": 0.5, "translation_std": 0.01, "focal_rel_std": 0.01},
                "gt": {"matches_canonical": False, "canonical_index": "gt/canonical_index.npy",
                       "true_cameras": "gt/cameras_true.json"}}
    seq = Sequence(
        canonical=canonical, cameras=stored_cams, view_names=names, azimuths=az,
        images=torch.from_numpy(np.ascontiguousarray(images)), masks=torch.from_numpy(np.ascontiguousarray(masks)),
        supervision_views=sup, novel_views=nov, gt_means=torch.stack([f.means for f in frames]).float(),
        fps=FPS, meta=meta,
    )
    return seq, extras


def write_generated(seq: Sequence, extras: dict, folder: Path, setting: str) -> None:
    """Write a generated sequence plus its ground truth (full Gaussians per frame) into ``folder``."""
    meta = seq.meta
    gt = folder / "gt"
    gt.mkdir(parents=True, exist_ok=True)
    for t, g in enumerate(extras["gt_frames"]):
        np.savez(gt / f"{t}.npz", means=g.means.numpy().astype(np.float32), quats=g.quats.numpy().astype(np.float32),
                 log_scales=g.log_scales.numpy().astype(np.float32))
    if "labels" in extras:
        np.save(gt / "part_labels.npy", extras["labels"])
    if "canonical_index" in extras:
        np.save(gt / "canonical_index.npy", extras["canonical_index"])
    if "true_cameras" in extras:
        splits = ["novel" if v in seq.novel_views else "frames" for v in range(seq.num_views)]
        (gt / "cameras_true.json").write_text(json.dumps(cameras_to_json(extras["true_cameras"], seq.view_names, splits, seq.azimuths)))
    # write_sequence writes gt/<t>.npz means again only if we pass gt_means; avoid overwriting the full records
    write_sequence(replace(seq, gt_means=None), folder, rgba=(setting == "clean"), extra_meta=meta)



# A source makes (truth, gt frames, meta record, extra arrays to store) when a folder must be written.
Source = Callable[[], tuple[Gaussians, list[Gaussians], dict, dict]]


def render_cached(final: Path, source: Source, *, preset: str, creature: str, motion: str, setting: str,
                  resolution: int, seed: int, backend: str = "auto") -> Path:
    """The folder ``final``, written from ``source()`` unless a complete one is cached there."""
    if is_complete(final):
        return final

    def write(tmp: Path) -> None:
        t0 = time.perf_counter()
        meta = {"generator": "spectral_tracking.data.synthetic", "generator_version": GENERATOR_VERSION,
                "preset": preset, "creature": creature, "motion": motion, "setting": setting, "seed": seed,
                "resolution": resolution, "normalization": {"bounding_radius": 0.5},
                "rig": {"radius": 2.0, "fovy_deg": 49.1, "elevation_deg": 0.0,
                        "supervision_azimuths": list(SUPERVISION_AZIMUTHS), "novel_azimuths": list(NOVEL_AZIMUTHS)}}
        truth, gt_frames, record, extras_store = source()
        meta.update(record)
        seq, extras = make_sequence(truth, gt_frames, setting, resolution, seed, meta, backend)
        extras.update(extras_store)
        seq.meta["generation_seconds"] = round(time.perf_counter() - t0, 3)
        write_generated(seq, extras, tmp, setting)

    return atomic_write(final, write)


def check_settings(setting: str, frames: int, resolution: int) -> None:
    """ValueError naming the option when a benchmark sequence cannot be made with these settings."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; choose from {SETTINGS}")
    if frames < 2:
        raise ValueError(f"--frames must be at least 2 (tracking needs motion), got {frames}")
    if resolution < 16:
        raise ValueError(f"--resolution must be at least 16, got {resolution}")
