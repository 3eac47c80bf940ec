"""The start: the benchmark's displaced canonical, and the stage that finds the pose before tracking.

**The displaced start (the benchmark).** The paper moves the canonical by a radius ``shift`` in a
random direction (Sec. 4). Beyond that, the start may also be turned by ``rotation`` degrees (about
an axis drawn from the seed, or about the vertical) and rescaled by ``scale``, both about the
canonical's centre (its bounding-sphere centre), then shifted:

    x -> c + scale * R (x - c) + shift * d

Units are those of the normalised asset (bounding radius 0.5, orbit cameras at radius 2, fovy
49.1 degrees), so ``shift=0.5`` moves the asset by its own radius. The direction d and the axis are
pure functions of the run's seed (independent draws). `displace` records all of it.

**The start stage (the method).** Before the optimiser, ``align`` places the displaced asset:
``none`` (the paper: it starts where it is), ``moments`` (a closed-form translation from the
targets' mask moments, `spectral_tracking.tracking.align`) or ``search`` (a global similarity
search over rotation hypotheses scored by the low spectral bands, `spectral_tracking.tracking.search`).
"""

from __future__ import annotations

import logging
import time

import torch
from torch import Tensor

from spectral_tracking.cameras import UP as VERTICAL
from spectral_tracking.gaussians import Gaussians, axis_angle_matrix, rotation_degrees
from spectral_tracking.metrics import mask_iou

log = logging.getLogger(__name__)

AXES = ("random", "vertical")
_AXIS_STREAM = 1_000_003  # the rotation axis is drawn from seed + this: independent of the shift's direction


def random_direction(seed: int) -> Tensor:
    """A unit vector [3] uniform on the sphere, a pure function of ``seed`` (normalised Gaussian draw)."""
    gen = torch.Generator().manual_seed(int(seed))
    while True:
        d = torch.randn(3, generator=gen, dtype=torch.float64)
        n = d.norm()
        if n > 1e-6:
            return (d / n).float()


def rotation_axis(kind: str, seed: int) -> Tensor:
    """The axis [3] of the start's rotation: the vertical, or a direction drawn from ``seed``."""
    if kind not in AXES:
        raise ValueError(f"rotation_axis must be one of {', '.join(AXES)}, got {kind!r}")
    return torch.tensor(VERTICAL) if kind == "vertical" else random_direction(int(seed) + _AXIS_STREAM)


def displace(gaussians: Gaussians, shift: float, seed: int, rotation: float = 0.0, axis: str = "random",
             scale: float = 1.0) -> tuple[Gaussians, dict]:
    """The canonical turned by ``rotation`` degrees and rescaled by ``scale`` about its centre, then
    moved by ``shift`` along a direction drawn from ``seed``; returns (displaced, record). The
    direction is drawn even when shift is 0, so a sweep over radii with one seed moves the asset
    along one line."""
    if not shift >= 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    direction = random_direction(seed)
    ax = rotation_axis(axis, seed)
    out = gaussians
    if rotation != 0 or scale != 1:
        center, _ = gaussians.bounding_sphere()
        R = axis_angle_matrix(ax, rotation).to(gaussians.means)
        c = center.detach()
        out = gaussians.transform(R, translation=c - float(scale) * (R @ c), scale=float(scale))
    out = out.translate(direction.to(gaussians.means) * float(shift))
    record = {"shift_radius": float(shift), "shift_direction": [float(x) for x in direction],
              "start_rotation": float(rotation), "start_axis": [float(x) for x in ax], "start_scale": float(scale)}
    return out, record


def shift_canonical(gaussians: Gaussians, radius: float, seed: int) -> tuple[Gaussians, Tensor]:
    """`displace` with a shift only: (moved, direction [3])."""
    if radius < 0:
        raise ValueError(f"shift_canonical: radius must be >= 0, got {radius}")
    moved, record = displace(gaussians, radius, seed)
    return moved, torch.tensor(record["shift_direction"])


def silhouette_iou(gaussians: Gaussians, cameras, masks, backend: str = "auto") -> list[float]:
    """IoU between the rendered silhouette of ``gaussians`` in each of ``cameras`` and its mask
    (``masks``: one [H, W] mask per camera, in that order)."""
    from spectral_tracking.render import render

    with torch.no_grad():
        out = render(gaussians.detach(), cameras.to(gaussians.means.device), backend=backend)
    return [mask_iou(out.alpha[i].cpu(), mask.cpu()) for i, mask in enumerate(masks)]


def initial_overlap(shifted: Gaussians, sequence, views: list[int] | None = None, frame: int = 0,
                    backend: str = "auto") -> list[float]:
    """IoU between the rendered silhouette of ``shifted`` and the mask of ``frame`` in each view.

    views: indices into ``sequence.cameras`` (default: ``sequence.train_views``). Returns one IoU per
    view, in that order. Needs the renderer.
    """
    views = list(sequence.train_views if views is None else views)
    return silhouette_iou(shifted, sequence.cameras[views], [sequence.mask(v, frame) for v in views], backend)


def place(method: str, canonical: Gaussians, targets, *, backend: str = "auto", settings=None, background: Tensor | None = None,
          lambda_mask: float = 0.5, seed: int = 0) -> tuple[Gaussians, dict, tuple[Tensor, Tensor] | None]:
    """The start stage ``align=<method>`` on ``targets`` (a `TrackingModule`'s `Targets`): (placed
    canonical, record for run_meta.json, trajectory or None). ``settings``: the ``search`` config
    (`SearchSettings`); with ``search.frames=all`` the trajectory is the whole asset's rigid motion
    from the placed canonical, rotations [T, 3, 3] and translations [T, 3] of x -> R_t x + b_t."""
    views = list(targets.train_views)
    if method == "moments":
        from spectral_tracking.tracking.align import align_to_targets

        placed, offset = align_to_targets(canonical, targets.cameras, targets.masks[:, 0], views, backend=backend)
        return placed, {"align": "moments", "align_offset": [float(x) for x in offset]}, None
    if method != "search":
        raise ValueError(f"align must be one of none, moments, search, got {method!r}")
    from dataclasses import asdict

    from spectral_tracking.tracking.search import search_pose, search_trajectory
    from spectral_tracking.tracking.settings import SearchSettings

    given = settings.items() if hasattr(settings, "items") else asdict(settings) if settings is not None else {}
    s = {**asdict(SearchSettings()), **dict(given)}  # the defaults under whatever a caller gives
    if s["frames"] == "all" and int(s["depth_window"]) % 2 == 0:
        raise ValueError(f"search.depth_window must be odd (the frames centred on each frame), got {s['depth_window']}; "
                         f"use {int(s['depth_window']) + 1}")
    common = dict(background=torch.ones(3) if background is None else background, bands=int(s["bands"]), lr=float(s["lr"]),
                  lambda_mask=float(lambda_mask), backend=backend, max_gaussians=int(s["max_gaussians"]), seed=int(seed))
    def search(steps: int):
        return search_pose(canonical, targets.cameras, targets.images[:, 0], targets.masks[:, 0], views,
                           rotations=str(s["rotations"]), count=int(s["count"]), keep=int(s["keep"]), steps=steps,
                           free_scale=None if s["scale"] == "auto" else s["scale"] == "free", prefer_first=float(s["prefer"]),
                           **common)

    if s["frames"] == "all":  # before any search: a frame no view sees cannot be followed
        seen = (targets.masks[views].flatten(2).sum(-1) > 0)[:, 1:]  # [V, T - 1] the frames after the first
        unseen = [t + 1 for t in range(seen.shape[1]) if not bool(seen[:, t].any())]
        if unseen:
            raise ValueError(f"search.frames=all: the target mask is empty in every training view at frame(s) "
                             f"{', '.join(map(str, unseen))}, so the trajectory has nothing to follow there; use "
                             f"search.frames=first (the search at frame 0 only), or leave out the frames without the body")
        partly = [t + 1 for t in range(seen.shape[1]) if not bool(seen[:, t].all())]
        if partly:
            log.warning("align=search: a training view's target mask is empty at frame(s) %s; there the trajectory "
                        "follows the views that see the body", ", ".join(map(str, partly)))

    from spectral_tracking.tracking.align import _touches_border

    cut = [v for v in views if _touches_border(targets.masks[v, 0], threshold=0.5)]
    if cut:
        log.warning("align=search: the target mask touches the image border in view(s) %s of frame 0; the search "
                    "starts from the visible part's centroid and fits what is visible", cut)
    result = search(int(s["steps"]))
    iou = min(silhouette_iou(result.gaussians, targets.cameras[views], targets.masks[views, 0], backend))
    retry = s["retry_iou"] is not None and iou < float(s["retry_iou"])
    if retry:
        # a silhouette this far from the target's means the fit stopped in the wrong basin (hypotheses that
        # need more than the steps given to turn the last tens of degrees): once more with twice the steps,
        # and the lower loss wins (the same bands and polish: the two losses compare)
        again = search(2 * int(s["steps"]))
        first, result = result, min(result, again, key=lambda r: r.loss)
        result.seconds = first.seconds + again.seconds
    record = result.record()
    record.update(search_iou=round(iou, 4), search_retried=retry)
    if retry:  # (the IoU after it is the run's aligned_iou)
        record["search_first_loss"] = first.loss
    if s["frames"] != "all":
        return result.gaussians, record, None
    Rs, bs, frames = search_trajectory(result.gaussians, targets.cameras, targets.images, targets.masks, views,
                                       degrees=float(s["local_degrees"]), prefer=float(s["prefer"]),
                                       realign=bool(s["realign"]), depth_window=int(s["depth_window"]), beam=int(s["beam"]),
                                       steps=int(s["frame_steps"]), polish_steps=int(s["frame_polish"]),
                                       smooth=float(s["smooth"]), score=str(s["beam_score"]),
                                       **{**common, "bands": int(s["bands"] if s["frame_bands"] is None else s["frame_bands"])})
    record.update(search_frames_seconds=round(sum(f["seconds"] for f in frames), 2),
                  search_frame_losses=[f["loss"] for f in frames])
    turn = max(rotation_degrees(R) for R in Rs)
    gate = len(views) <= int(s["gate_views"])  # the turn gate looks at runs with this few views
    gated = gate and turn < float(s["turn_gate"])
    c = result.gaussians.means.detach().double().cpu().mean(0)  # the placed asset's centre
    still = (torch.eye(3, dtype=Rs.dtype).expand_as(Rs), Rs @ c + bs - c)  # the centre track: each frame a translation
    if gate and not gated and s["turn_fit"] is not None:
        # a turn the images show: in some frame the turned pose fits far better than the centre track alone (the
        # body's other side comes into view); a body that deforms in place fits a rigid turn a little better in
        # every frame (tracking/refine.py, pixel_losses)
        from spectral_tracking.tracking.refine import pixel_losses

        losses = dict(background=common["background"], backend=backend)
        turned = pixel_losses(result.gaussians, targets.cameras, targets.images, targets.masks, views, Rs, bs, **losses)
        unturned = pixel_losses(result.gaussians, targets.cameras, targets.images, targets.masks, views, *still, **losses)
        fit = float((turned[1:] / unturned[1:].clamp_min(1e-12)).min()) if len(Rs) > 1 else 1.0
        gated = fit > float(s["turn_fit"])
        record["search_turn_fit"] = round(fit, 3)
    record.update(search_turn_deg=round(turn, 1), search_turn_kept=not gated)
    if gated:
        # no turn worth the name, seen by one view (or as many as search.gate_views), where a small turn of an
        # elongated body and a change of its depth (or width) look alike while its limbs move: only the centre
        # track is kept
        Rs, bs = still[0].clone(), still[1]
    refine = dict(background=common["background"], steps=int(s["refine_steps"]), lr=float(s["refine_lr"]),
                  depth=len(views) > 1 or bool(s["refine_depth"]), backend=backend)
    # a trajectory the gate reduced to its centre track is not refined: its centres come from the masks' moments,
    # and the refine's translation alone measured no better there (the turning twins at 923cda2, where it ran:
    # 3D error 0.081 -> 0.084 radii, novel PSNR 23.82 -> 23.63 dB; a run not kept)
    bridge = s["bridge_margin"] is not None
    refined = not gated and (refine["steps"] > 0 or bridge)
    if refined:
        from spectral_tracking.tracking.refine import bridge_trajectory, refine_trajectory

        began = time.perf_counter()
        if refine["steps"] > 0:
            Rs, bs = refine_trajectory(result.gaussians, targets.cameras, targets.images, targets.masks, views, Rs, bs,
                                       max_degrees=s["refine_degrees"], **refine)
        if bridge:
            Rs, bs, record["search_bridged_frames"] = bridge_trajectory(
                result.gaussians, targets.cameras, targets.images, targets.masks, views, Rs, bs,
                margin=float(s["bridge_margin"]), degrees=float(s["bridge_degrees"]),
                span=int(s["bridge_span"]), **refine)
        record["search_refine_seconds"] = round(time.perf_counter() - began, 2)
    measured = len(views) == 1 and s["depth_cue"] is not None
    if measured:
        # the depths again, from the silhouettes at the final poses (tracking/depth.py)
        from spectral_tracking.tracking.depth import silhouette_depths

        began = time.perf_counter()
        bs, record["search_depth_cue"] = silhouette_depths(result.gaussians, targets.cameras[views[0]],
                                                           targets.masks[views[0]], Rs, bs, c, cue=str(s["depth_cue"]),
                                                           backend=backend)
        record["search_depth_seconds"] = round(time.perf_counter() - began, 2)
    if len(views) == 1 and int(s["depth_window"]) > 1 and (refined or measured):
        # depths the refine, the bridge or the silhouettes set: the window's median again (search_trajectory took
        # it of the depths it found)
        from spectral_tracking.tracking.search import median_depths

        bs = median_depths(Rs, bs, c, targets.cameras[views[0]], int(s["depth_window"]))
    return result.gaussians, record, (Rs, bs)
