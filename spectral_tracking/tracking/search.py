"""``align=search``: find the whole asset's pose before tracking (beyond the paper).

The spectral loss is global and smooth in its lowest bands: it gives a gradient towards the target
whatever the overlap, but in rotation only locally, because a turned asset's low-band moments can
match another turn's (a mirror, a side view). So the start searches, against frame 0's targets:

1. **Translation and depth** from the targets' mask moments (`spectral_tracking.tracking.align`;
   where every training mask touches the image border, the visible part's centroid at the asset's
   current depth).
2. **Rotation hypotheses** (``search.rotations``): ``grid``, the identity and 71 rotations spread
   over SO(3) (super-Fibonacci; none farther than about 51 degrees from one of them), or ``cube``
   (the cube's 24), ``yaw`` (8 turns about the vertical), ``none``. Each is turned about the asset's
   centre, its translation corrected by its own render's mask moments, and scored by the low-band
   spectral loss: one render of every hypothesis at once (`_hypothesis_cameras`: turning, moving
   and scaling the asset is moving the camera), no gradient.
3. **A similarity fit** of the ``search.keep`` best (rotation, translation, and, with two or more
   training views, the log-scale: one view cannot tell scale from depth, so there the size is kept)
   by Adam on the spectral loss of the lowest ``search.bands`` bands, by successive halving over
   ``search.steps`` steps: all of them for a third, the best quarter for a third, the best one to
   the end. Its loss is several times lower than the others' where the right turn was among them.
4. **A polish** of the winner on the asset itself (not its proxy), with two more bands and a step
   decaying to zero (40 steps): a start a fraction of a degree off makes the tracking that follows
   land elsewhere.

``search.frames=all`` then follows the whole asset frame by frame (`search_trajectory`): each
frame's pose is the frame before's, turned by each of a few `local_rotations` and fitted the same
way (``search.beam`` > 1: several trajectories at once, the lowest summed score winning, because one
view fits a turn and its mirror almost alike for a few frames; ``search.beam_score``: each frame's
fit scored by its full-size colour error, where a turn and its mirror differ, or by the low bands
it was fitted on); the result is the start of a
per-frame rigid part (``deform=rigid_mlp`` with ``rigid_per_frame``, or ``deform=rigid``). The
result is a rigid (or similarity) move of the canonical; the non-rigid tracking starts there. Before
that, each frame's pose is refined on its pixels, and frames the pixels cannot tell take the pose
between their neighbours' (`spectral_tracking.tracking.refine`, ``search.refine_steps``,
``search.bridge_margin``); with one view, each frame's depth is then measured again from its silhouette
at its final pose (`spectral_tracking.tracking.depth`, ``search.depth_cue``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from spectral_tracking.cameras import Cameras
from spectral_tracking.gaussians import Gaussians, quat_multiply, quat_to_rotmat, rotation_degrees, rotmat_to_quat
from spectral_tracking.tracking.settings import LossSettings
from spectral_tracking.tracking.settings import SearchSettings as _S  # the defaults (class attributes)

log = logging.getLogger(__name__)

ROTATION_SETS = ("grid", "cube", "yaw", "none")
PREFER_WITHIN_DEGREES = 10.0  # `search_pose`'s prefer_first applies while the identity's fit turns less than this


@dataclass
class SearchResult:
    gaussians: Gaussians
    rotation: Tensor  # [3, 3] applied about the centre
    translation: Tensor  # [3] of the centre
    scale: float
    loss: float  # the winner's loss after the polish (``bands`` + 2 bands, on the asset itself)
    losses: list[float]  # on the search's own bands: the winner's fitted loss, then the last round's others, ascending
    seconds: float

    def record(self) -> dict:
        return {"align": "search", "search_rotation_deg": round(rotation_degrees(self.rotation), 2),
                "search_scale": round(self.scale, 4),
                "search_translation": [round(float(x), 4) for x in self.translation],
                "search_loss": self.loss, "search_runner_up_ratio": (self.losses[1] / self.losses[0] if len(self.losses) > 1
                                                                     and self.losses[0] > 0 else None),
                "search_seconds": round(self.seconds, 2)}


def rotation_set(kind: str, count: int = 72) -> Tensor:
    """[H, 3, 3] rotation hypotheses (float64); the identity first. ``grid``: the identity and
    ``count - 1`` rotations spread evenly over SO(3) (super-Fibonacci spirals, Alexa 2022);
    ``cube``: the 24 rotations of the cube; ``yaw``: 8 turns about the vertical; ``none``."""
    if kind == "none":
        return torch.eye(3, dtype=torch.float64)[None]
    if kind == "yaw":
        out = []
        for k in range(8):
            t = 2 * math.pi * k / 8
            c, s = math.cos(t), math.sin(t)
            out.append(torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64))
        return torch.stack(out)
    if kind == "cube":  # signed permutation matrices of determinant +1
        import itertools

        out = []
        for perm in itertools.permutations(range(3)):
            for signs in itertools.product((1.0, -1.0), repeat=3):
                R = torch.zeros(3, 3, dtype=torch.float64)
                for row, (col, sign) in enumerate(zip(perm, signs)):
                    R[row, col] = sign
                if torch.det(R) > 0:
                    out.append(R)
        out.sort(key=lambda R: -float(torch.trace(R)))  # the identity first
        return torch.stack(out)
    if kind == "grid":
        n = max(0, int(count) - 1)  # count 1: the identity alone
        phi, psi = math.sqrt(2.0), 1.533751168755204288118041
        qs = [torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)]
        for i in range(n):
            s = i + 0.5
            r, rr = math.sqrt(s / n), math.sqrt(1 - s / n)
            a, b = 2 * math.pi * s / phi, 2 * math.pi * s / psi
            qs.append(torch.tensor([r * math.sin(a), r * math.cos(a), rr * math.sin(b), rr * math.cos(b)], dtype=torch.float64))
        return quat_to_rotmat(torch.stack(qs))
    raise ValueError(f"search.rotations must be one of {', '.join(ROTATION_SETS)}, got {kind!r}")


def _axis_angle_quat(w: Tensor) -> Tensor:
    """Unit quaternions [..., 4] (w, x, y, z) of the rotation vectors ``w`` [..., 3] (differentiable at 0)."""
    theta2 = (w * w).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2 + 1e-24)
    half = 0.5 * theta
    k = torch.where(theta2 > 1e-12, torch.sin(half) / theta, 0.5 - theta2 / 48)
    return torch.cat([torch.cos(half), k * w], dim=-1)


def _turned(q: Tensor, w: Tensor) -> Tensor:
    """The quaternions [..., 4] ``q`` turned further by the rotation vectors ``w`` [..., 3]: a fit's rotation."""
    return quat_multiply(q, _axis_angle_quat(w))


def proxy(gaussians: Gaussians, max_gaussians: int, cameras: Cameras | None = None, backend: str = "auto") -> Gaussians:
    """At most about ``max_gaussians`` Gaussians that render like ``gaussians`` at low frequencies:
    the asset's Gaussians merged per cell of a voxel grid (sized so that about ``max_gaussians``
    cells are occupied) by moment matching, each cell's opacity-weighted mean and covariance (its
    Gaussians' own plus their spread), mean colour (degree 0) and the opacity of the stack
    (1 - prod(1 - alpha), at most 0.99). With ``cameras``, one scale factor on every merged Gaussian
    is then set so that the proxy's silhouettes have the asset's area (a few renders, bisection).
    Returns ``gaussians`` itself when it has no more than ``max_gaussians``."""
    from spectral_tracking.render import render

    g = gaussians.detach()
    n = g.num_gaussians
    if n <= max_gaussians:
        return gaussians
    means = g.means.double()
    lo, hi = means.min(0).values, means.max(0).values
    extent = float((hi - lo).max()) or 1.0

    def cells(size: float) -> tuple[Tensor, int]:
        key = torch.floor((means - lo) / size).long()
        _, inverse = torch.unique(key, dim=0, return_inverse=True)
        return inverse, int(inverse.max()) + 1

    small, large = extent / 1000, extent  # bisection on the cell size (log scale) for the cell count
    for _ in range(20):
        size = math.sqrt(small * large)
        inverse, count = cells(size)
        if count > max_gaussians:
            small = size
        else:
            large = size
        if 0.8 * max_gaussians <= count <= max_gaussians:
            break
    inverse, count = cells(large)
    w = g.opacities.double()  # [N]
    zeros = means.new_zeros  # float64 on the asset's device (a CUDA asset: every sum on the GPU)
    wsum = zeros(count).index_add_(0, inverse, w).clamp_min(1e-12)
    mu = zeros(count, 3).index_add_(0, inverse, w[:, None] * means) / wsum[:, None]
    d = means - mu[inverse]
    cov_i = g.covariances().double() + d[:, :, None] * d[:, None, :]
    cov = zeros(count, 3, 3).index_add_(0, inverse, w[:, None, None] * cov_i) / wsum[:, None, None]
    sh0 = zeros(count, 3).index_add_(0, inverse, w[:, None] * g.sh[:, 0].double()) / wsum[:, None]
    log_clear = zeros(count).index_add_(0, inverse, torch.log1p(-w.clamp(max=1 - 1e-6)))
    alpha = (1 - torch.exp(log_clear)).clamp(0.01, 0.99)
    evals, evecs = torch.linalg.eigh(cov + 1e-12 * torch.eye(3, dtype=torch.float64, device=means.device))
    evecs = evecs * torch.where(torch.det(evecs) < 0, -1.0, 1.0)[:, None, None]
    merged = Gaussians(means=mu.to(g.means), quats=rotmat_to_quat(evecs).to(g.means),
                       log_scales=(0.5 * evals.clamp_min(1e-12).log()).to(g.means),
                       opacity_logits=torch.logit(alpha).to(g.means), sh=sh0[:, None, :].to(g.sh))
    if cameras is None:
        return merged
    with torch.no_grad():
        target = float(render(g, cameras, backend=backend).alpha.sum())
        lo_s, hi_s = -1.5, 0.5  # the proxy's silhouettes grow with a common log-scale offset
        for _ in range(8):
            mid = 0.5 * (lo_s + hi_s)
            area = float(render(replace(merged, log_scales=merged.log_scales + mid), cameras, backend=backend).alpha.sum())
            lo_s, hi_s = (mid, hi_s) if area < target else (lo_s, mid)
    return replace(merged, log_scales=merged.log_scales + 0.5 * (lo_s + hi_s))


def _moment_steps(alpha: Tensor, target: Tensor, cameras: Cameras, center: Tensor) -> Tensor:
    """[H, 3] translations moving each hypothesis' centre to where its render's mask moments say
    (`spectral_tracking.tracking.align`'s in-place estimate: depth from the area ratio, then the
    centroid), averaged over the views; 0 where a render is empty or cut by the border.
    alpha: [H, V, h, w] renders of the hypotheses; target: [V, h, w] masks."""
    from spectral_tracking.tracking.align import _backproject, _camera_frame, _touches_border, mask_moments

    H, V = alpha.shape[:2]
    X = center.detach().double().cpu()
    out = torch.zeros(H, 3, dtype=torch.float64)
    targets = [mask_moments(target[v].detach().cpu()) for v in range(V)]
    for h in range(H):
        steps = []
        for v in range(V):
            A_t, c_t = targets[v]
            a = alpha[h, v].detach().cpu()
            A_r, c_r = mask_moments(a)
            if A_t <= 0 or A_r <= 0 or _touches_border(a, 0.5) or _touches_border(target[v].detach().cpu(), 0.5):
                continue
            R, t, K = _camera_frame(cameras, v)
            cam = R @ X + t
            uv_c = (K @ cam)[:2] / cam[2]
            z_c = float(cam[2])
            z = z_c * math.sqrt(A_r / A_t)
            uv = c_t - (c_r - uv_c) * (z_c / z)
            steps.append(_backproject(uv, z, R, t, K) - X)
        if steps:
            out[h] = torch.stack(steps).mean(0)
    return out.to(alpha)


def _area_log_scales(alpha: Tensor, target: Tensor) -> Tensor:
    """[H] the log-scale that gives each hypothesis' render its targets' silhouette area: the mean over
    the views of half the log of the area ratio, skipping a view where either mask is empty or cut by
    the border (0 where none is left). The apparent size goes as scale / depth, so a wrong depth makes
    one view too large where it makes the view opposite it too small; their mean cancels it, which
    a single view cannot (there the scale is kept: `search_pose`'s ``free_scale``).
    alpha: [H, V, h, w] renders of the hypotheses; target: [V, h, w] masks."""
    from spectral_tracking.tracking.align import _touches_border, mask_moments

    H, V = alpha.shape[:2]
    a = alpha.detach().double().cpu()
    t = target.detach().cpu()
    # the targets' areas once (as `_moment_steps` reads them); None where a view cannot tell its size
    areas = [None if _touches_border(t[v], 0.5) else mask_moments(t[v])[0] for v in range(V)]
    out = torch.zeros(H, dtype=torch.float64)
    for h in range(H):
        logs = [0.5 * math.log(A_t / float(a[h, v].sum())) for v, A_t in enumerate(areas)
                if A_t is not None and A_t > 0 and float(a[h, v].sum()) > 0 and not _touches_border(a[h, v], 0.5)]
        if logs:
            out[h] = sum(logs) / len(logs)
    return out.clamp(-LOG_SCALE_LIMIT, LOG_SCALE_LIMIT).to(alpha)


LOG_SCALE_LIMIT = 1.5
"""The largest log-scale the silhouette areas may set before the fit (a factor of 4.5 either way)."""


def _hypothesis_cameras(cameras: Cameras, q: Tensor, tau: Tensor, sigma: Tensor, center: Tensor) -> Cameras:
    """The cameras [H * V] that see the unmoved asset as ``cameras`` see it moved by each hypothesis
    h: x -> c + tau_h + s_h R_h (x - c), R_h = rotation of the quaternion q_h [H, 4], s_h = exp(sigma_h).

    Camera v maps x to R_v x + t_v; composed with the move, x -> s R_v R x + R_v (c + tau - s R c) + t_v,
    which renders exactly like the rigid (R_v R, (R_v (c + tau - s R c) + t_v) / s): perspective is
    blind to a uniform scale of camera coordinates (means, depths and covariances scale together)."""
    R = quat_to_rotmat(q)  # [H, 3, 3]
    s = torch.exp(sigma)  # [H]
    Rv, tv = cameras.viewmats[:, :3, :3].to(R), cameras.viewmats[:, :3, 3].to(R)  # [V, 3, 3], [V, 3]
    rot = Rv[None] @ R[:, None]  # [H, V, 3, 3]
    moved_c = center + tau - s[:, None] * (R @ center)  # [H, 3]
    trans = ((Rv[None] @ moved_c[:, None, :, None])[..., 0] + tv[None]) / s[:, None, None]  # [H, V, 3]
    H, V = rot.shape[:2]
    top = torch.cat([rot, trans[..., None]], dim=-1)  # [H, V, 3, 4]
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=R.dtype, device=R.device).expand(H, V, 1, 4)
    viewmats = torch.cat([top, bottom], dim=-2).reshape(H * V, 4, 4)
    Ks = cameras.Ks.to(R).repeat(H, 1, 1)
    return Cameras(Ks, viewmats, cameras.width, cameras.height)


SCREEN_PIXELS = 2**21
"""Rendered pixels per chunk of the screening (8 images at 512^2; every hypothesis at once at the CPU
scale's 96^2): each hypothesis is scored on its own, so the chunk changes memory, not the result."""


@dataclass
class _Fitted:
    """One fitted hypothesis of `_fit_hypotheses`, before the polish: the asset ``moved`` (the
    searched asset placed by its targets' mask moments) and the move x -> c + tau + s R (x - c) with
    R = q (x) axis_angle(w), s = exp(sigma) about its centre c; ``loss``: on the search's bands."""
    moved: Gaussians
    center: Tensor
    q: Tensor
    w: Tensor
    tau: Tensor
    sigma: Tensor
    offset: Tensor  # the moments' translation of the searched asset (step 1)
    loss: float
    others: list[float]  # the last round's other losses, ascending (how clear the winner is)
    free_scale: bool
    seconds: float


def _round_survivors(losses: Tensor, first: int | None, stays: bool, prefer: float | None, round_: int,
                     survivors: int) -> tuple[Tensor, int]:
    """One round of `_fit_hypotheses`' successive halving over the alive hypotheses' ``losses`` [A]:
    (their order, best first, and how many of them go on). ``first``: the identity's place among them
    (None: not alive, or no preference). It comes first where its fit ``stays`` near the identity and
    the best loss is not below ``prefer`` x its own; otherwise, before the last round (``round_`` 2), it
    is ranked second whatever its loss (so it goes on where a round keeps two or more). Rounds 0 and 1 keep
    ``survivors`` (round 0: at least a quarter); the last keeps all. With several survivors (the
    trajectory's beam) an identity kept by the preference alone is one more, not one of them: else the
    beam's second branch would be the identity's by default, and a turn fitting better than it but not best
    would be dropped."""
    ranked = torch.argsort(losses)
    k = max(survivors, math.ceil(len(losses) / 4)) if round_ == 0 else survivors
    forced = False  # the identity kept by the preference alone: its loss would not have kept it
    if first is not None and prefer is not None:
        best = int(ranked[0])
        if best != first and stays and float(losses[best]) >= prefer * float(losses[first]):
            ranked = torch.cat([ranked.new_tensor([first]), ranked[ranked != first]])
        elif best != first and round_ < 2:
            forced = survivors > 1 and int((ranked == first).nonzero()[0, 0]) >= k
            ranked = torch.cat([ranked[:1], ranked.new_tensor([first]), ranked[1:][ranked[1:] != first]])
    if round_ >= 2:
        return ranked, len(ranked)
    return ranked, min(len(ranked), k + int(forced))


def _fit_hypotheses(gaussians: Gaussians, cameras: Cameras, images: Tensor, masks: Tensor, views: list[int], *,
                    background: Tensor, hypotheses: Tensor, keep: int, steps: int, bands: int, lambda_mask: float,
                    lr: float, free_scale: bool, backend: str, max_gaussians: int, prefer_first: float | None,
                    survivors: int = 1) -> list[_Fitted]:
    """`search_pose`'s steps 1-4 (the moments' translation, the screening of ``hypotheses`` [H, 3, 3],
    the fit of the ``keep`` best by successive halving) down to ``survivors`` fits, best first (one more
    where the preference kept the identity beside them, `_round_survivors`)."""
    from spectral_tracking.losses.spectral import spectral_loss
    from spectral_tracking.render import render
    from spectral_tracking.tracking.align import align_to_targets

    start = time.perf_counter()
    # 1. translation from the moments (the visible part's centroid where every mask is cut by the border)
    moved, offset = align_to_targets(gaussians, cameras, masks, views, backend=backend, warn=False)  # place() warns
    # 2. the hypotheses, fitted on the asset, or on its `proxy` where it has more than max_gaussians
    g = proxy(moved.detach(), max_gaussians, cameras[views].to(moved.device), backend=backend)
    dtype, device = g.means.dtype, g.device
    center = g.means.mean(0).detach()
    cams = cameras[views].to(device)
    V = len(views)
    gt_rgb, gt_mask = images[views].to(device, dtype), masks[views].to(device, dtype)
    weights = torch.ones(bands)
    bg = background.to(device, dtype)

    def render_losses(q: Tensor, tau_: Tensor, sigma_: Tensor) -> Tensor:
        """[H] the low-band loss of each hypothesis (quaternions q [H, 4], its translation and log-scale)."""
        out = render(g, _hypothesis_cameras(cams, q, tau_, sigma_, center), background=bg, backend=backend)
        return torch.stack([spectral_loss(out.rgb[i * V:(i + 1) * V], gt_rgb, out.alpha[i * V:(i + 1) * V], gt_mask,
                                          weights, lambda_mask=lambda_mask) for i in range(len(q))])

    # 3. screen every hypothesis (no gradient): with a free scale, its log-scale set by its own
    #    render's silhouette areas (one render of H x V cameras); its translation corrected by its
    #    render's mask moments (another), then its loss (another)
    q_all = rotmat_to_quat(hypotheses.to(device, dtype))  # [H, 4]
    zeros = torch.zeros(len(q_all), 3, dtype=dtype, device=device)
    #    in chunks of about SCREEN_PIXELS rendered pixels (72 hypotheses x 2 views at 512^2 at once held 1 GB)
    chunk = max(1, SCREEN_PIXELS // (V * cams.height * cams.width))
    taus, sigmas, losses = [], [], []
    with torch.no_grad():
        for i in range(0, len(q_all), chunk):
            q, z = q_all[i:i + chunk], zeros[i:i + chunk]
            s0 = z[:, 0]
            first = render(g, _hypothesis_cameras(cams, q, z, s0, center), background=bg, backend=backend)
            if free_scale:  # a start at the wrong size: without this the fit begins 0.3 in log-scale off
                s0 = _area_log_scales(first.alpha.reshape(len(q), V, *first.alpha.shape[-2:]), gt_mask)
                first = render(g, _hypothesis_cameras(cams, q, z, s0, center), background=bg, backend=backend)
            taus.append(_moment_steps(first.alpha.reshape(len(q), V, *first.alpha.shape[-2:]), gt_mask, cams, center))
            sigmas.append(s0)
            losses.append(render_losses(q, taus[-1], s0))
    tau0, sigma0, screen = torch.cat(taus), torch.cat(sigmas), torch.cat(losses)
    survivors = max(1, int(survivors))
    chosen = torch.argsort(screen)[: max(survivors, int(keep))]
    if prefer_first is not None and not bool((chosen == 0).any()):
        chosen = torch.cat([chosen.new_zeros(1), chosen[:-1] if len(chosen) > 1 else chosen[:0]])
    q_h = q_all[chosen]
    # 4. fit the best ones (rotation, translation, and the log-scale with two or more views) by
    #    successive halving: all of them for a third of the steps, the best quarter for another
    #    third, the best one (the best ``survivors``) to the end
    w = torch.zeros(len(q_h), 3, dtype=dtype, device=device, requires_grad=True)
    tau = tau0[chosen].clone().requires_grad_(True)
    sigma = sigma0[chosen].clone().requires_grad_(free_scale)
    groups = [{"params": [w], "lr": lr}, {"params": [tau], "lr": lr * 0.2}]
    if free_scale:
        groups.append({"params": [sigma], "lr": lr * 0.2})
    opt = torch.optim.Adam(groups)

    total = max(3, int(steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(i, total) / total)))
    alive = torch.arange(len(q_h), device=device)
    for round_, n in enumerate((total // 3, total // 3, total - 2 * (total // 3))):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            last = render_losses(_turned(q_h[alive], w[alive]), tau[alive], sigma[alive])
            last.sum().backward()
            opt.step()
            sched.step()
        at_identity = (chosen[alive] == 0).nonzero()
        first = int(at_identity[0, 0]) if prefer_first is not None and len(at_identity) else None
        # the identity is preferred only while its fit stays near the identity (a fit that turned away
        # from it has left the symmetric case: then the lowest loss decides)
        stays = first is not None and float(w[alive[first]].detach().norm()) <= math.radians(PREFER_WITHIN_DEGREES)
        ranked, k = _round_survivors(last.detach(), first, stays, prefer_first, round_, survivors)
        if round_ < 2:
            runners_up = last.detach()[ranked[1:]]  # the last round's others: how clear the winner is
        alive, last = alive[ranked[:k]], last[ranked[:k]]
    seconds = time.perf_counter() - start
    if survivors > 1:
        runners_up = last.detach()[1:]
    others = sorted(float(x) for x in runners_up)
    return [_Fitted(moved=moved, center=center, q=q_h[b], w=w[b].detach(), tau=tau[b].detach(), sigma=sigma[b].detach(),
                    offset=offset, loss=float(last[i].detach()), others=others, free_scale=free_scale,
                    seconds=seconds) for i, b in enumerate(alive.tolist())]


def _posed(fit: _Fitted, w: Tensor, tau: Tensor, sigma: Tensor) -> tuple[Gaussians, Tensor, float]:
    """The whole asset ``fit.moved`` under the move of ``fit`` with the given (w [3], tau [3], sigma):
    x -> c + tau + s R (x - c), c the searched Gaussians' centre; (the asset, R, s)."""
    with torch.no_grad():
        R = quat_to_rotmat(_turned(fit.q, w)[None])[0]
        s = float(torch.exp(sigma))
        return fit.moved.transform(R, translation=fit.center + tau - s * (R @ fit.center), scale=s), R, s


def _pixel_error(fit: _Fitted, cameras: Cameras, images: Tensor, views: list[int], background: Tensor,
                 backend: str) -> float:
    """The mean squared colour error of the whole asset posed by ``fit`` (before any polish), rendered
    at full size in ``views`` against ``images`` [V, H, W, 3]: the fine detail the low bands do not
    see, by which a turn and its mirror differ (`search_trajectory`'s ``score="pixels"``)."""
    from spectral_tracking.render import render

    posed, _, _ = _posed(fit, fit.w, fit.tau, fit.sigma)
    with torch.no_grad():
        out = render(posed, cameras[views].to(posed.device), background=background.to(posed.means), backend=backend)
        return float(((out.rgb - images[views].to(out.rgb)) ** 2).mean())


def _polish(fit: _Fitted, cameras: Cameras, images: Tensor, masks: Tensor, views: list[int], *, background: Tensor,
            bands: int, lambda_mask: float, lr: float, backend: str, steps: int) -> SearchResult:
    """A fitted hypothesis polished on the asset itself (not its proxy: its likeness is not exact
    enough for the last degrees) with two more bands and a step that decays to zero, as a
    `SearchResult` (``steps`` 0: as fitted)."""
    from spectral_tracking.losses.spectral import max_num_bands, spectral_loss
    from spectral_tracking.render import render

    start = time.perf_counter()
    g, center = fit.moved.detach(), fit.center
    dtype, device = g.means.dtype, g.device
    cams = cameras[views].to(device)
    gt_rgb, gt_mask = images[views].to(device, dtype), masks[views].to(device, dtype)
    bg = background.to(device, dtype)
    w = fit.w[None].clone().requires_grad_(True)
    tau = fit.tau[None].clone().requires_grad_(True)
    sigma = fit.sigma[None].clone().requires_grad_(fit.free_scale)
    loss = fit.loss

    if steps > 0:
        weights = torch.ones(min(bands + 2, max_num_bands(cams.height, cams.width)))
        opt = torch.optim.Adam([{"params": [w], "lr": lr * 0.2}, {"params": [tau], "lr": lr * 0.04},
                                *([{"params": [sigma], "lr": lr * 0.04}] if fit.free_scale else [])])
        decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1.0 - i / max(1, int(steps))))
        for _ in range(int(steps)):
            opt.zero_grad(set_to_none=True)
            # one hypothesis: move the Gaussians, not the camera (the renderer's fast path has their gradients)
            q = _turned(fit.q, w[0])
            R = quat_to_rotmat(q[None])[0]
            s = torch.exp(sigma[0])
            posed = replace(g, means=center + tau[0] + s * (g.means - center) @ R.T,
                            quats=quat_multiply(q.expand_as(g.quats), g.quats), log_scales=g.log_scales + sigma[0])
            out = render(posed, cams, background=bg, backend=backend)
            last = spectral_loss(out.rgb, gt_rgb, out.alpha, gt_mask, weights, lambda_mask=lambda_mask)
            last.backward()
            opt.step()
            decay.step()
            loss = float(last.detach())
    out, R, s = _posed(fit, w[0].detach(), tau[0].detach(), sigma[0].detach())  # the same move for the whole asset
    return SearchResult(gaussians=out.detach(), rotation=R.detach().cpu().double(),
                        translation=(fit.offset.to(tau) + tau[0]).detach().cpu(), scale=s, loss=loss,
                        losses=[fit.loss] + fit.others, seconds=fit.seconds + time.perf_counter() - start)


def search_pose(gaussians: Gaussians, cameras: Cameras, images: Tensor, masks: Tensor, views: list[int], *,
                background: Tensor, rotations: str = _S.rotations, count: int = _S.count, keep: int = _S.keep,
                steps: int = _S.steps, bands: int = _S.bands, lambda_mask: float = LossSettings.lambda_spec_mask,
                lr: float = _S.lr, free_scale: bool | None = None, backend: str = "auto",
                max_gaussians: int = _S.max_gaussians, seed: int = 0, hypotheses: Tensor | None = None,
                prefer_first: float | None = _S.prefer, refine_steps: int = 40) -> SearchResult:
    """The similarity of ``gaussians`` (about its centre) whose render in ``views`` best matches the
    targets ``images`` [V, H, W, 3] and ``masks`` [V, H, W] (frame 0, every camera) in the lowest
    ``bands`` spectral bands. ``free_scale``: None = with two or more views. Every hypothesis is
    scored as it stands (one render of H x V cameras), the ``keep`` best are fitted together for
    ``steps`` steps (one render a step), the lowest final loss wins. ``prefer_first``: the first
    hypothesis (the identity: no turn) is always fitted, and, while its fit stays within
    `PREFER_WITHIN_DEGREES` of the identity, another wins only with a loss below ``prefer_first``
    times its own. See the module docstring."""
    views = list(views)
    if free_scale is None:
        free_scale = len(views) >= 2
    hyp = rotation_set(rotations, count) if hypotheses is None else hypotheses
    best = _fit_hypotheses(gaussians, cameras, images, masks, views, background=background, hypotheses=hyp, keep=keep,
                           steps=steps, bands=bands, lambda_mask=lambda_mask, lr=lr, free_scale=free_scale,
                           backend=backend, max_gaussians=max_gaussians, prefer_first=prefer_first)[0]
    return _polish(best, cameras, images, masks, views, background=background, bands=bands, lambda_mask=lambda_mask,
                   lr=lr, backend=backend, steps=refine_steps)


def local_rotations(degrees: float = 35.0) -> Tensor:
    """[9, 3, 3] hypotheses around the current pose: the identity, +-``degrees`` about each world
    axis, and +-2 x ``degrees`` about the vertical (animals mostly turn about it)."""
    from spectral_tracking.cameras import UP
    from spectral_tracking.gaussians import axis_angle_matrix

    out = [torch.eye(3, dtype=torch.float64)]
    for axis in ((1.0, 0.0, 0.0), UP, (0.0, 0.0, 1.0)):
        out += [axis_angle_matrix(torch.tensor(axis), a) for a in (degrees, -degrees)]
    out += [axis_angle_matrix(torch.tensor(UP), a) for a in (2 * degrees, -2 * degrees)]
    return torch.stack(out)


def rigid_fit(source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(R [3, 3], b [3]) with target ~ R source + b (least squares, Kabsch; source/target [N, 3])."""
    s, d = source.double(), target.double()
    cs, cd = s.mean(0), d.mean(0)
    U, _, Vt = torch.linalg.svd((d - cd).T @ (s - cs))
    D = torch.diag(torch.tensor([1.0, 1.0, float(torch.sign(torch.det(U @ Vt)))], dtype=torch.float64))
    R = U @ D @ Vt
    return R, cd - R @ cs


def _turn_change(Rs: list[Tensor], turn: Tensor) -> float:
    """How much a trajectory's turn per frame changes (radians) if its next pose is ``turn``: the angle
    between the last frame's step (Rs[-1] Rs[-2]^T) and the step to ``turn``; 0 while it has no step yet."""
    if len(Rs) < 2:
        return 0.0
    return math.radians(rotation_degrees((turn @ Rs[-1].T) @ (Rs[-1] @ Rs[-2].T).T))


@dataclass
class _Track:
    """One trajectory of `search_trajectory`'s beam: its poses so far from the placed asset (x -> R_t x + b_t),
    the asset at its last pose, and the sum of its frames' fitted losses (on the search's bands)."""
    score: float
    current: Gaussians
    Rs: list[Tensor]
    bs: list[Tensor]
    losses: list[float]  # each frame's loss after the polish (frames 1 on)


BEAM_DISTINCT_DEGREES = 15.0  # two trajectories of the beam are one where their last poses differ by less


def search_trajectory(placed: Gaussians, cameras: Cameras, images: Tensor, masks: Tensor, views: list[int], *,
                      background: Tensor, degrees: float = _S.local_degrees, keep: int = 3, steps: int = _S.frame_steps,
                      bands: int = _S.bands, lambda_mask: float = LossSettings.lambda_spec_mask, lr: float = _S.lr,
                      backend: str = "auto", max_gaussians: int = _S.max_gaussians, seed: int = 0,
                      prefer: float = _S.prefer, realign: bool = _S.realign,
                      depth_window: int = _S.depth_window, beam: int = _S.beam,
                      polish_steps: int = _S.frame_polish, smooth: float = _S.smooth,
                      score: str = _S.beam_score) -> tuple[Tensor, Tensor, list[dict]]:
    """The whole asset's rigid motion through the sequence: frame by frame, the pose of the frame
    before turned by each of `local_rotations` and fitted to this frame's targets (images
    [V, T, H, W, 3], masks [V, T, H, W]) as in `search_pose`, then (``realign``, where a training
    mask of the frame is not cut by the border) moved to the depth and centroid its mask moments give
    for the orientation found. ``beam``: how many trajectories are followed at once: each proposes its
    ``beam`` best fits of the next frame, and the ``beam`` with the lowest summed score over their frames
    (whose last poses differ by `BEAM_DISTINCT_DEGREES` or more) go on; the lowest at the end wins. One
    view of a bilaterally symmetric body turning away from the camera fits a turn and its mirror
    (yaw a and -a, or a and 180 - a) almost alike for several frames, and the frames after tell them
    apart. ``score``: a frame's score, "pixels" (`_pixel_error`: the fit's full-size colour error, in
    which a turn and its mirror differ more than in the low bands the fit compares) or "bands" (the
    fit's own loss), times 1 + ``smooth`` x (the change of the turn per frame, radians)^2. ``steps``
    and ``polish_steps``: each frame's fit (successive halving) and its polish. With one training view,
    each frame's centre is then slid along its viewing ray to the median depth of the
    ``depth_window`` frames around it (`median_depths`): there depth shows only as apparent size, and
    a few degrees of error in a turn seen end-on move it by a radius. Returns the
    rotations [T, 3, 3] and translations [T, 3] of x -> R_t x + b_t from ``placed`` (frame 0: the
    identity) and a record per frame (of the winning trajectory; its seconds: the beam's, that frame)."""
    from spectral_tracking.tracking.align import _touches_border, align_to_targets

    if score not in ("pixels", "bands"):
        raise ValueError(f"search.beam_score must be pixels or bands, got {score!r}")
    T = images.shape[1]
    beam = max(1, int(beam))
    tracks = [_Track(0.0, placed, [torch.eye(3, dtype=torch.float64)], [torch.zeros(3, dtype=torch.float64)], [])]
    seconds = []  # each frame's, the whole beam's
    hypotheses = local_rotations(degrees)
    common = {"background": background, "bands": bands, "lambda_mask": lambda_mask, "lr": lr, "backend": backend}
    for t in range(1, T):
        start = time.perf_counter()
        frame_images, frame_masks = images[:, t], masks[:, t]
        children = []  # (summed loss, track, fit, its rotation from the placed asset)
        for track in tracks:
            for fit in _fit_hypotheses(track.current, cameras, frame_images, frame_masks, views, hypotheses=hypotheses,
                                       keep=max(keep, beam), steps=steps, free_scale=False, max_gaussians=max_gaussians,
                                       prefer_first=prefer, survivors=beam, **common):
                R = quat_to_rotmat(_turned(fit.q, fit.w)[None])[0].detach().cpu().double()
                turn = R @ track.Rs[-1]  # the pose's rotation from the placed asset (the fit turns about the centre)
                value = fit.loss if score == "bands" else _pixel_error(fit, cameras, frame_images, views, background,
                                                                          backend)
                children.append((track.score + value * (1 + smooth * _turn_change(track.Rs, turn) ** 2),
                                 track, fit, turn))
        children.sort(key=lambda c: c[0])
        kept = []
        for summed, track, fit, turn in children:
            if all(rotation_degrees(turn @ other.T) >= BEAM_DISTINCT_DEGREES for _, _, _, other in kept):
                kept.append((summed, track, fit, turn))
            if len(kept) == beam:
                break
        next_tracks = []
        for summed, track, fit, _ in kept:
            polished = _polish(fit, cameras, frame_images, frame_masks, views, steps=polish_steps, **common)
            current = polished.gaussians
            if realign and any(not _touches_border(frame_masks[v], threshold=0.5) for v in views):
                # the depth again, from the area this frame's orientation gives: the search placed the
                # hypotheses by the area of the pose before, and a turned elongated body shows another area
                current, _ = align_to_targets(current, cameras, frame_masks, views, backend=backend, warn=False)
            R, b = rigid_fit(placed.means.detach().cpu(), current.means.detach().cpu())
            next_tracks.append(_Track(summed, current, track.Rs + [R], track.bs + [b], track.losses + [polished.loss]))
        tracks = next_tracks
        seconds.append(round(time.perf_counter() - start, 3))
    best = tracks[0]
    Rs, bs = torch.stack(best.Rs), torch.stack(best.bs)
    if len(views) == 1 and depth_window > 1:
        bs = median_depths(Rs, bs, placed.means.detach().double().cpu().mean(0), cameras[views[0]], depth_window)
    records = [{"frame": t, "loss": loss, "seconds": sec} for t, (loss, sec) in enumerate(zip(best.losses, seconds), 1)]
    return Rs, bs, records


def median_depths(Rs: Tensor, bs: Tensor, center: Tensor, camera: Cameras, window: int) -> Tensor:
    """Translations bs [T, 3] with each frame's centre R_t c + b_t slid along camera's ray through it to
    the median depth of the ``window`` frames centred on it (narrower near the ends, so the first and
    last frames keep their own): its projection, and so its place in the image, is unchanged."""
    z = centre_depths(Rs, bs, center, camera)
    T = len(z)
    half = [min((int(window) - 1) // 2, t, T - 1 - t) for t in range(T)]
    return slide_to_depths(Rs, bs, center, camera, torch.stack([z[t - h: t + h + 1].median() for t, h in enumerate(half)]))


def centre_depths(Rs: Tensor, bs: Tensor, center: Tensor, camera: Cameras) -> Tensor:
    """[T] each frame's centre R_t c + b_t's depth along camera's axis (float64)."""
    vm = camera.viewmats[0].double().cpu()
    return ((Rs @ center + bs) @ vm[:3, :3].T + vm[:3, 3])[:, 2]


def slide_to_depths(Rs: Tensor, bs: Tensor, center: Tensor, camera: Cameras, depths: Tensor) -> Tensor:
    """Translations bs [T, 3] with each frame's centre R_t c + b_t slid along camera's ray through it to
    the depth depths[t] (along the camera's axis): its projection is unchanged."""
    vm = camera.viewmats[0].double().cpu()
    Rc, tc = vm[:3, :3], vm[:3, 3]
    p = (Rs @ center + bs) @ Rc.T + tc  # [T, 3] the centres in camera coordinates
    moved = (p * (depths.to(p) / p[:, 2])[:, None] - tc) @ Rc  # back to world coordinates (Rc is a rotation: Rc.T inverts it)
    return moved - Rs @ center
