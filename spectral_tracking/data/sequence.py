"""The in-memory `Sequence` every reader returns, and the normalisation of its world frame.

`Sequence` holds images and masks as uint8 tensors (``[V, T, H, W, 3]`` and ``[V, T, H, W]``) to
keep 512^2 sequences small; `Sequence.image`, `Sequence.mask` and `Sequence.target` convert to
float in [0, 1] on access. The on-disk format is in ``folder.py``, the other layouts in their own
reader files; ``registry.py`` is the front door (`load_dataset`).

Standard frame: tracking runs with the asset at bounding radius 0.5 (`normalized`), so shift radii
and 3D errors mean the same thing on every dataset.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from spectral_tracking.cameras import Cameras
from spectral_tracking.data.frames import resize_rgb_mask
from spectral_tracking.errors import SequenceFormatError
from spectral_tracking.gaussians import Gaussians, PLYFormatError, load_ply

log = logging.getLogger(__name__)
STANDARD_RADIUS = 0.5  # bounding radius of the asset in the standard frame


def unit_float(values: Tensor) -> Tensor:
    """uint8 values (0-255) as float32 in [0, 1]."""
    return values.float() / 255.0


def over_background(images: Tensor, masks: Tensor, background: Tensor | float) -> Tensor:
    """uint8 straight RGB ``images`` [..., 3] composited with their uint8 ``masks`` [...] over a uniform
    ``background`` ([3] or scalar): float32 in [0, 1] (`Sequence.target`, `Targets.images`)."""
    rgb, m = unit_float(images), unit_float(masks)[..., None]
    bg = torch.as_tensor(background, dtype=rgb.dtype)
    return rgb * m + bg * (1 - m)


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
                  clean setting; otherwise ``gt_index`` maps the canonical onto them.
    fps:          frames per second of the video (time in [0, 1] is ``frame / (T - 1)``).
    meta:         free-form provenance (normalisation, generator settings, shift record, ...).
    gt_index:     [N] long, or None: the row of ``gt_means`` each canonical Gaussian is the truth of
                  (-1 for extra Gaussians, which have none); None when the canonical is the true
                  asset. `ground_truth` applies it.
    static:       True for a still capture of exactly one frame (NeRF-synthetic, or one frame taken
                  with `still` for fitting a canonical); tracking needs T >= 2 and refuses it.
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
    gt_index: Tensor | None = None  # [N] long
    static: bool = False

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
        if self.static and T != 1:
            raise SequenceFormatError(f"Sequence: a static (still) capture holds exactly 1 frame, got {T}")
        if T < 2 and not self.static:
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
        if self.gt_index is not None:
            if self.gt_means is None or self.gt_index.dim() != 1 or self.gt_index.dtype != torch.long:
                raise SequenceFormatError(f"Sequence.gt_index: expected long [N] next to gt_means, got {self.gt_index.dtype} "
                                          f"{list(self.gt_index.shape)}{'' if self.gt_means is not None else ' without gt_means'}")
            M = self.gt_means.shape[1]
            if len(self.gt_index) and not bool(((self.gt_index >= -1) & (self.gt_index < M)).all()):
                raise SequenceFormatError(f"Sequence.gt_index: entries must be -1 or rows of gt_means (0..{M - 1})")

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
        return frame / max(self.num_frames - 1, 1)

    def view_index(self, name: str) -> int:
        if name not in self.view_names:
            raise KeyError(f"Sequence: no view named {name!r}; views are {self.view_names}")
        return self.view_names.index(name)

    # --- float access -------------------------------------------------------------------------
    def image(self, view, frame) -> Tensor:
        """Straight RGB in [0, 1]: [H, W, 3] for scalar indices (any tensor indexing works)."""
        return unit_float(self.images[view, frame])

    def mask(self, view, frame) -> Tensor:
        """Object mask in [0, 1]: [H, W] for scalar indices."""
        return unit_float(self.masks[view, frame])

    def target(self, view, frame, background: Tensor | float = 0.0) -> Tensor:
        """The frame composited over a uniform ``background`` ([3] or scalar) using the mask.

        This is what a render over the same background should reproduce; clutter outside the mask
        (the realistic setting, GART) is replaced by the background, as in the paper (App. E.1).
        """
        return over_background(self.images[view, frame], self.masks[view, frame], background)

    def subset_frames(self, frames: list[int]) -> "Sequence":
        """A sequence holding only the given frames (in that order)."""
        idx = torch.as_tensor(frames, dtype=torch.long)
        return replace(
            self, images=self.images[:, idx], masks=self.masks[:, idx],
            gt_means=None if self.gt_means is None else self.gt_means[idx],
            meta={**self.meta, "frame_subset": list(map(int, frames))},
        )

    def still(self, frame: int, views: list[int] | None = None) -> "Sequence":
        """One frame of ``views`` (indices, default the training views) as a static sequence.

        Every picked view becomes a supervision and training view: this is what fitting a canonical
        asset to one frame takes.
        """
        views = list(self.train_views if views is None else views)
        if not 0 <= frame < self.num_frames:
            raise IndexError(f"Sequence.still: frame {frame} out of range for {self.num_frames} frames")
        bad = [v for v in views if not 0 <= v < self.num_views]
        if bad or not views:
            raise IndexError(f"Sequence.still: views {views} must be a non-empty list of indices below {self.num_views}")
        v = torch.as_tensor(views, dtype=torch.long)
        return Sequence(
            canonical=self.canonical, cameras=self.cameras[v], view_names=[self.view_names[i] for i in views],
            azimuths=[self.azimuths[i] for i in views], images=self.images[v, frame:frame + 1],
            masks=self.masks[v, frame:frame + 1], supervision_views=list(range(len(views))), novel_views=[],
            gt_means=None if self.gt_means is None else self.gt_means[frame:frame + 1], gt_index=self.gt_index,
            fps=self.fps, meta={**self.meta, "frame": int(frame)}, static=True,
        )

    def resized(self, resolution: int | None) -> "Sequence":
        """The sequence with its longer image side at ``resolution`` pixels (None or the same size:
        itself), cameras scaled with it; colours resampled with the mask as weight (`resize_rgb_mask`)."""
        if resolution is None:
            return self
        W, H = self.width, self.height
        s = int(resolution) / max(W, H)
        w, h = max(1, round(W * s)), max(1, round(H * s))
        if (w, h) == (W, H):
            return self
        imgs, masks = self.images.numpy(), self.masks.numpy()
        pairs = [[resize_rgb_mask(imgs[v, t], masks[v, t], (w, h)) for t in range(self.num_frames)]
                 for v in range(self.num_views)]
        images = torch.from_numpy(np.stack([np.stack([p[0] for p in row]) for row in pairs]))
        masks = torch.from_numpy(np.stack([np.stack([p[1] for p in row]) for row in pairs]))
        return replace(self, cameras=self.cameras.resized(w, h), images=images, masks=masks)

    # --- ground truth -------------------------------------------------------------------------
    def ground_truth(self) -> tuple[Tensor, Tensor] | None:
        """(canonical indices [M'], true means [T, M', 3]) of the Gaussians whose truth is known, or None.

        Where the canonical is the true asset (clean setting, donut) every Gaussian is matched; in the
        realistic setting ``gt_index`` (``gt/canonical_index.npy``) maps each canonical Gaussian to
        its true index (-1 for the extra ones, which have no truth, and dropped true Gaussians are
        simply absent).
        """
        if self.gt_means is None:
            return None
        where = self.meta.get("folder", "sequence")
        if self.canonical is None:
            raise SequenceFormatError(f"{where}: holds ground truth but no canonical asset to match it to")
        n = self.canonical.num_gaussians
        if self.gt_index is None:
            if self.gt_means.shape[1] != n:
                raise SequenceFormatError(
                    f"{where}: gt/ holds {self.gt_means.shape[1]} Gaussians per frame but "
                    f"the canonical has {n}, and meta.json gives no canonical_index"
                )
            return torch.arange(n), self.gt_means
        if self.gt_index.shape != (n,):
            raise SequenceFormatError(f"{where}: gt_index has {list(self.gt_index.shape)} entries, the canonical {n} Gaussians")
        known = torch.nonzero(self.gt_index >= 0).squeeze(1)
        return known, self.gt_means[:, self.gt_index[known]]


# ----------------------------------------------------------------------------------------------
# The asset a reader hands to the tracker
# ----------------------------------------------------------------------------------------------
def load_asset(path) -> Gaussians:
    """A canonical asset from a 3DGS PLY: `load_ply` plus the check tracking needs on top, that the
    Gaussians have extent (the asset is normalised to bounding radius 0.5, which a point cannot be).
    Raises `PLYFormatError` naming the file."""
    g = load_ply(path)
    center, radius = g.bounding_sphere()
    if g.num_gaussians > 1 and radius <= 1e-7 * max(1.0, float(center.abs().max())):
        where = ", ".join(f"{float(c):.4g}" for c in center)
        raise PLYFormatError(
            f"{path}: all {g.num_gaussians} Gaussians sit at one point ({where}); an asset to track needs extent "
            "(is this the right PLY?)")
    return g


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


RECORD_TOLERANCE = 0.25
"""How far (relative) a canonical's bounding radius may stray from a recorded 0.5 and still be taken as
in the standard frame: the realistic setting perturbs its canonical by about 2%; a replaced
canonical.ply (3.7x in the reliability probe) is far outside."""


def in_standard_frame(seq: Sequence) -> bool:
    """True when ``seq`` needs no normalisation: its canonical has bounding radius 0.5 (to 1e-3), or
    its reader or generator records that it built the sequence in that frame (``meta["normalization"]
    ["bounding_radius"] == 0.5``; the realistic synthetic setting, whose canonical is perturbed
    around a true asset of radius 0.5) and its canonical's radius is within `RECORD_TOLERANCE` of it:
    a record that disagrees with the asset is not trusted, with a warning)."""
    record = seq.meta.get("normalization")
    radius = seq.canonical.bounding_sphere()[1] if seq.canonical is not None else None
    if isinstance(record, dict) and record.get("bounding_radius") == STANDARD_RADIUS:
        if radius is None or abs(radius / STANDARD_RADIUS - 1) <= RECORD_TOLERANCE:
            return True
        log.warning("%s: meta.json records an asset of bounding radius %g, but its canonical asset's is %.4g (was "
                    "canonical.ply replaced?); normalising it like any other asset: the ground truth, if any, was made "
                    "for the recorded one", seq.meta.get("folder", "the sequence"), STANDARD_RADIUS, radius)
        return False
    return radius is not None and abs(radius - STANDARD_RADIUS) < 1e-3


def normalized(seq: Sequence) -> Sequence:
    """The sequence with its asset in the standard frame (bounding radius 0.5, cameras moved with it,
    so the images are unchanged; ground truth moved too): shift radii and 3D errors are in those units.

    Records ``meta["normalization"] = {"bounding_radius": 0.5, "center": [3], "scale": s}``. A
    sequence already in that frame (`in_standard_frame`) is returned as is.
    """
    if seq.canonical is None:
        raise SequenceFormatError(f"{seq.meta.get('folder', 'sequence')}: no canonical asset to normalise the scene by")
    if in_standard_frame(seq):
        return seq
    radius = seq.canonical.bounding_sphere()[1]
    if radius <= 0:
        raise SequenceFormatError(f"{seq.meta.get('folder', 'sequence')}: every Gaussian of the canonical asset sits at one "
                                  "point; an asset to track needs extent")
    canonical, cameras, record = normalize_scene(seq.canonical, seq.cameras, STANDARD_RADIUS)
    gt = seq.gt_means
    if gt is not None:
        gt = (gt - torch.tensor(record["center"], dtype=gt.dtype)) * record["scale"]
    log.info("normalised the asset of %s (bounding radius %.4g -> 0.5)", seq.meta.get("folder"), radius)
    return replace(seq, canonical=canonical, cameras=cameras, gt_means=gt,
                   meta={**seq.meta, "normalization": {"bounding_radius": STANDARD_RADIUS, **record}})


def azimuth_of_camera(viewmat: Tensor) -> float:
    """Orbit azimuth in degrees [0, 360) of a camera centre (0 = +z, 90 = +x), from a [4, 4] viewmat."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    c = -(R.T @ t)
    return math.degrees(math.atan2(float(c[0]), float(c[2]))) % 360.0
