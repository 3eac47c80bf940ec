"""``align=search``: find the whole asset's pose in frame 0 before tracking (beyond the paper).

The spectral loss is global and smooth in its lowest bands: it gives a gradient towards the target
whatever the overlap, but only locally in rotation, because a turned asset's low-band moments can
match another turn's (a mirror, a side view). So the start searches:

1. **Translation and depth** from the targets' mask moments (`spectral_tracking.tracking.align`),
   or, where every training mask touches the image border (a creature cut by the frame), from
   the visible part's centroid at the asset's current depth.
2. **Rotation hypotheses**: the asset turned about its centre by each rotation of a fixed set
   (``search.rotations``: ``cube``, the 24 rotations of the cube, no rotation farther than 62.8
   degrees from one of them; ``yaw``, 8 turns about the vertical; ``none``).
3. **A similarity fit of each hypothesis** (rotation, translation, and, with two or more training
   views, the log-scale; one view cannot tell scale from depth, so the size is kept) by Adam on the
   spectral loss of the lowest ``search.bands`` bands, at ``search.resolution`` pixels, against
   frame 0's targets. The hypotheses are fitted by successive halving: all of them for
   ``search.steps`` steps, then the best quarter (lowest loss) for as many again, then the best one
   to the end; the lowest final loss wins. The right hypothesis ends with a loss several times lower
   than the others (the low bands see the silhouette's orientation and the colour layout).

The result is a rigid (or similarity) move of the canonical; the non-rigid tracking starts there.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from spectral_tracking.cameras import Cameras
from spectral_tracking.gaussians import Gaussians, quat_multiply, quat_to_rotmat, rotmat_to_quat

log = logging.getLogger(__name__)

ROTATION_SETS = ("grid", "cube", "yaw", "none")


@dataclass
class SearchResult:
    gaussians: Gaussians
    rotation: Tensor  # [3, 3] applied about the centre
    translation: Tensor  # [3] of the centre
    scale: float
    loss: float
    losses: list[float]  # final loss of every hypothesis that reached the last round, best first
    seconds: float

    def record(self) -> dict:
        angle = math.degrees(math.acos(max(-1.0, min(1.0, (float(torch.trace(self.rotation)) - 1) / 2))))
        return {"align": "search", "search_rotation_deg": round(angle, 2), "search_scale": round(self.scale, 4),
                "search_translation": [round(float(x), 4) for x in self.translation],
                "search_loss": self.loss, "search_runner_up_ratio": (self.losses[1] / self.loss if len(self.losses) > 1
                                                                     and self.loss > 0 else None),
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
        n = max(1, int(count) - 1)
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
    """Unit quaternion [4] (w, x, y, z) of the rotation vector ``w`` [3] (differentiable at 0)."""
    theta2 = (w * w).sum()
    theta = torch.sqrt(theta2 + 1e-24)
    half = 0.5 * theta
    k = torch.where(theta2 > 1e-12, torch.sin(half) / theta, 0.5 - theta2 / 48)
    return torch.cat([torch.cos(half)[None], k * w])


def _downsample(images: Tensor, size: int) -> Tensor:
    """[V, H, W, C] -> [V, size, size, C] by area averaging."""
    x = images.permute(0, 3, 1, 2)
    return F.interpolate(x, size=(size, size), mode="area").permute(0, 2, 3, 1).contiguous()


def _visible_centroid_start(gaussians: Gaussians, cameras: Cameras, masks: Tensor, views: list[int]) -> Tensor:
    """Translation [3] putting the asset's centre on the ray through the visible masks' centroid, at
    its current depth (mean over the views): the start when every mask is cut by the border."""
    from spectral_tracking.tracking.align import _backproject, _camera_frame, mask_moments

    X = gaussians.means.detach().double().cpu().mean(0)
    points = []
    for v in views:
        R, t, K = _camera_frame(cameras, v)
        mass, c = mask_moments(masks[v].detach().cpu())
        if mass <= 0:
            continue
        z = float((R @ X + t)[2])
        points.append(_backproject(c, max(z, 1e-3), R, t, K))
    if not points:
        raise ValueError("align=search: every training mask of frame 0 is empty; nothing to find (use align=none)")
    return (torch.stack(points).mean(0) - X).float()


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


def search_pose(gaussians: Gaussians, cameras: Cameras, images: Tensor, masks: Tensor, views: list[int], *,
                background: Tensor, rotations: str = "grid", count: int = 72, keep: int = 4, steps: int = 40,
                bands: int = 3, lambda_mask: float = 0.5, lr: float = 0.05, free_scale: bool | None = None,
                backend: str = "auto", max_gaussians: int = 4000, seed: int = 0) -> SearchResult:
    """The similarity of ``gaussians`` (about its centre) whose render in ``views`` best matches the
    targets ``images`` [V, H, W, 3] and ``masks`` [V, H, W] (frame 0, every camera) in the lowest
    ``bands`` spectral bands. ``free_scale``: None = with two or more views. Every hypothesis is
    scored as it stands (one render of H x V cameras), the ``keep`` best are fitted together for
    ``steps`` steps (one render a step), the lowest final loss wins. See the module docstring."""
    from spectral_tracking.losses.spectral import spectral_loss
    from spectral_tracking.render import render
    from spectral_tracking.tracking.align import align_to_targets

    start = time.perf_counter()
    views = list(views)
    if free_scale is None:
        free_scale = len(views) >= 2
    # 1. translation from the moments (or the visible centroid where every mask is cut)
    try:
        moved, offset = align_to_targets(gaussians, cameras, masks, views, backend=backend)
    except ValueError as e:
        if "touches the image border" not in str(e):
            raise
        offset = _visible_centroid_start(gaussians, cameras, masks, views)
        log.warning("align=search: %s; starting from the visible part's centroid instead", e)
        moved = gaussians.translate(offset.to(gaussians.means))
    # 2. the hypotheses, fitted on a subset of the Gaussians (widened to keep the silhouette's area)
    g = moved.detach()
    if g.num_gaussians > max_gaussians:
        gen = torch.Generator().manual_seed(int(seed))
        keep_idx = torch.randperm(g.num_gaussians, generator=gen)[:max_gaussians].to(g.device)
        g = replace(g.subset(keep_idx), log_scales=g.log_scales[keep_idx] + 0.5 * math.log(g.num_gaussians / max_gaussians))
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

    # 3. screen every hypothesis (no gradient): its translation corrected by its own render's mask
    #    moments (one render of H x V cameras), then its loss (another)
    q_all = rotmat_to_quat(rotation_set(rotations, count).to(device, dtype))  # [H, 4]
    zeros = torch.zeros(len(q_all), 3, dtype=dtype, device=device)
    with torch.no_grad():
        first = render(g, _hypothesis_cameras(cams, q_all, zeros, zeros[:, 0], center), background=bg, backend=backend)
        tau0 = _moment_steps(first.alpha.reshape(len(q_all), V, *first.alpha.shape[-2:]), gt_mask, cams, center)
        screen = render_losses(q_all, tau0, zeros[:, 0])
    chosen = torch.argsort(screen)[: max(1, int(keep))]
    q_h = q_all[chosen]
    # 4. fit the best ones (rotation, translation, and the log-scale with two or more views) by
    #    successive halving: all of them for a third of the steps, the best quarter for another
    #    third, the best one to the end
    w = torch.zeros(len(q_h), 3, dtype=dtype, device=device, requires_grad=True)
    tau = tau0[chosen].clone().requires_grad_(True)
    sigma = torch.zeros(len(q_h), dtype=dtype, device=device, requires_grad=free_scale)
    groups = [{"params": [w], "lr": lr}, {"params": [tau], "lr": lr * 0.2}]
    if free_scale:
        groups.append({"params": [sigma], "lr": lr * 0.2})
    opt = torch.optim.Adam(groups)

    def current(idx: Tensor) -> Tensor:
        return quat_multiply(q_h[idx], torch.stack([_axis_angle_quat(x) for x in w[idx]]))

    total = max(3, int(steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(i, total) / total)))
    alive = torch.arange(len(q_h), device=device)
    for round_, n in enumerate((total // 3, total // 3, total - 2 * (total // 3))):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            last = render_losses(current(alive), tau[alive], sigma[alive])
            last.sum().backward()
            opt.step()
            sched.step()
        if round_ < 2:
            ranked = torch.argsort(last.detach())
            runners_up = last.detach()[ranked[1:]]  # the last round's others: how clear the winner is
            alive = alive[ranked[: max(1, math.ceil(len(alive) / 4)) if round_ == 0 else 1]]
    with torch.no_grad():
        b = alive[0]
        final = last.detach()
        R = quat_to_rotmat(current(alive)[0][None])[0]
        s = float(torch.exp(sigma[b]))
        # the same move for the whole asset: x -> c + tau + s R (x - c), c the subset's centre
        out = moved.transform(R, translation=center + tau[b] - s * (R @ center), scale=s)
    sorted_losses = [float(final[0])] + sorted(float(x) for x in runners_up)
    return SearchResult(gaussians=out.detach(), rotation=R.detach().cpu().double(),
                        translation=(offset.to(tau) + tau[b]).detach().cpu(), scale=s, loss=sorted_losses[0],
                        losses=sorted_losses, seconds=time.perf_counter() - start)
