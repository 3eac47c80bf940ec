"""``search.depth_cue``: the trajectory's depths from its silhouettes, at its final poses (one view; beyond the paper).

With one training view a frame's depth shows only as the asset's apparent size: the start slides each
frame's centre along its viewing ray until the placed asset, rendered at that frame's pose, has the
target's size. Which size is the question. A rigid asset against an articulated body has no size that
fits every measure: a quadruped's legs swinging apart in profile widen the target's silhouette (its
area says the body is nearer than it is), a person's legs swinging towards the camera shorten it, a
hopper crouching and stretching changes its height. Each measure is biased while the part it reads
moves, and the bias comes and goes with the gait.

Three measures are taken for each frame, each the ratio of the render's to the target's at the
frame's final pose (after the refine and the bridge, whose turns change what the render shows):

- ``area``: the square root of the silhouettes' areas (what the beam's realignment uses);
- ``height``: their vertical spread (the standard deviation of the rows, weighted by the masks);
- ``width``: their horizontal spread.

Each gives a depth track over the frames. A body's distance from the camera changes smoothly, while a
measure a moving limb corrupts swings with the limb, so ``smoothest`` (the default) keeps the track
with the least total second difference, sum_t |z_(t+1) - 2 z_t + z_(t-1)|; then (in `start.place`)
each frame takes the median of the window around it (``search.depth_window``), as before. A frame
whose target or render is empty or cut by the image border keeps the depth the trajectory gave it, in
every track. Frame 0 is measured too, so that the track has no step where it starts: the placed
asset's pose is frame 0's fit, so it moves little (at most 0.001 radii on the probes below).

Measured on the start alone (each frame's centre against the truth's, mean |depth error| in radii,
probes on the 12 turning sequences and the 10 sequences of the pairs experiment, not kept): the
turning sequences 0.084 -> 0.050, the pairs 0.074 -> 0.051; the walking quadruped 0.14 -> 0.04, the
waving person 0.13 -> 0.06; worse on the flower's twist (0.16 -> 0.19) and the twisting quadruped
(0.090 -> 0.098). With the true depth in every frame and the start's own turns, the humanoid's turns
train to 0.078-0.081 radii of 3D error against 0.114-0.126 with the start's depths: the one-view
error of the turning motions is mostly depth.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spectral_tracking.cameras import Cameras
from spectral_tracking.gaussians import Gaussians

CUES = ("area", "height", "width")
CHOICES = (*CUES, "smoothest")


def silhouette_sizes(mask: Tensor) -> tuple[float, float, float]:
    """(area, vertical spread, horizontal spread) of a silhouette [H, W] in [0, 1] (its values as weights):
    the area in pixels, the spreads as standard deviations of the rows and the columns, in pixels."""
    m = mask.detach().double().cpu()
    area = float(m.sum())
    if area <= 0:
        return 0.0, 0.0, 0.0
    spreads = []
    for profile in (m.sum(1), m.sum(0)):  # over the rows (vertical), over the columns (horizontal)
        x = torch.arange(profile.shape[0], dtype=torch.float64) + 0.5
        mean = (profile * x).sum() / area
        spreads.append(float(torch.sqrt((profile * (x - mean) ** 2).sum() / area)))
    return area, spreads[0], spreads[1]


def cue_depths(gaussians: Gaussians, camera: Cameras, masks: Tensor, Rs: Tensor, bs: Tensor, center: Tensor,
               backend: str = "auto") -> dict[str, Tensor]:
    """Each cue's depth [T] of the centre ``center`` [3] moved by each frame's pose x -> R_t x + b_t
    (Rs [T, 3, 3], bs [T, 3]), along ``camera``'s axis: the frame's depth times the ratio of the
    render's size to the target mask's (masks [T, H, W]). A frame whose target or render is empty or
    touches the image border keeps its own depth in every cue."""
    from spectral_tracking.render import render
    from spectral_tracking.tracking.align import _touches_border
    from spectral_tracking.tracking.search import centre_depths

    z = centre_depths(Rs, bs, center, camera)  # [T]
    out = {cue: z.clone() for cue in CUES}
    view = camera.to(gaussians.device)
    for t in range(len(Rs)):
        target = masks[t].detach().cpu()
        with torch.no_grad():
            moved = gaussians.detach().transform(Rs[t].to(gaussians.means), bs[t].to(gaussians.means))
            alpha = render(moved, view, backend=backend).alpha[0].cpu().reshape(target.shape)
        rendered, wanted = silhouette_sizes(alpha), silhouette_sizes(target)
        if min(*rendered, *wanted) <= 0 or _touches_border(alpha, 0.5) or _touches_border(target, 0.5):
            continue
        out["area"][t] = z[t] * math.sqrt(rendered[0] / wanted[0])
        out["height"][t] = z[t] * rendered[1] / wanted[1]
        out["width"][t] = z[t] * rendered[2] / wanted[2]
    return out


def roughness(z: Tensor) -> float:
    """A depth track's total second difference, sum_t |z_(t+1) - 2 z_t + z_(t-1)| (0 under three frames)."""
    return float((z[2:] - 2 * z[1:-1] + z[:-2]).abs().sum()) if len(z) >= 3 else 0.0


def smoothest(depths: dict[str, Tensor]) -> str:
    """The cue whose track is the least rough (`roughness`); a tie goes to the first in `CUES`."""
    return min(CUES, key=lambda cue: roughness(depths[cue]))


def silhouette_depths(gaussians: Gaussians, camera: Cameras, masks: Tensor, Rs: Tensor, bs: Tensor, center: Tensor, *,
                      cue: str = "smoothest", passes: int = 1, backend: str = "auto") -> tuple[Tensor, str]:
    """Translations bs [T, 3] with each frame's centre slid along ``camera``'s ray through it to the depth
    ``cue`` gives (`cue_depths`; ``smoothest``: the least rough of the three, chosen on the first pass),
    and the cue used. ``passes``: the measure taken again at the depths the last gave (a size is not
    exactly proportional to 1 / depth: each Gaussian's screen footprint has a floor, and a body has depth
    of its own), each pass closer to where the render's size is the target's."""
    from spectral_tracking.tracking.search import slide_to_depths

    if cue not in CHOICES:
        raise ValueError(f"search.depth_cue must be one of {', '.join(CHOICES)} or null, got {cue!r}")
    chosen = cue
    for _ in range(max(1, int(passes))):
        depths = cue_depths(gaussians, camera, masks, Rs, bs, center, backend)
        chosen = smoothest(depths) if chosen == "smoothest" else chosen
        bs = slide_to_depths(Rs, bs, center, camera, depths[chosen])
    return bs, chosen
