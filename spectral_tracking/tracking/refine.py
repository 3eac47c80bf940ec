"""``search.refine_steps``: the trajectory's rigid poses refined on the frames' pixels (beyond the paper).

`search_trajectory` fits each frame's pose on the lowest spectral bands (their basin is wide, which is
what finds a turn) and ranks the fits by their colour error. A fit on three bands leaves the last
degrees and a part of the depth to the finer detail it does not compare: on the turning motions the
start found poses 8-10 degrees off whose colour error was 2-4 times the true pose's (quadruped_turn@0,
frames 4-5; a probe, not kept). Here each frame's pose is moved, a small turn about its centre and a
translation, by Adam on the full-size colour and mask error of the whole asset, with a step decaying to
zero: the pixel loss has no wide basin, but the pose is already inside the right one. The frames are
independent, and all are fitted at once: moving the asset is moving the camera (`_hypothesis_cameras`),
so one render of the placed asset through T x V cameras a step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spectral_tracking.cameras import Cameras
from spectral_tracking.gaussians import Gaussians, quat_multiply, quat_to_rotmat, rotmat_to_quat

PIXELS_PER_CHUNK = 2**21  # rendered pixels per chunk of frames (each frame is refined on its own: memory, not the result)


def refine_trajectory(placed: Gaussians, cameras: Cameras, images: Tensor, masks: Tensor, views: list[int],
                      Rs: Tensor, bs: Tensor, *, background: Tensor, steps: int, lr: float, rotate: bool = True,
                      depth: bool = True, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """The poses x -> R_t x + b_t (``Rs`` [T, 3, 3], ``bs`` [T, 3] from ``placed``) of frames 1 on, each
    moved by x -> c_t + tau_t + R(w_t) (x - c_t) about its centre c_t (its translation tau_t and, with
    ``rotate``, its turn w_t), fitted for ``steps`` Adam steps (the turn at ``lr`` radians, the
    translation at 0.2 x ``lr``, both decaying linearly to zero) on the mean squared colour error plus
    the mean squared error of the alpha against the mask (images [V, T, H, W, 3], masks [V, T, H, W];
    the training ``views``). ``depth`` False (one view): the translation stays in the plane of the first
    view's image (its camera's right and up axes), so each centre keeps its depth along that view's
    axis: one view sees depth only as apparent size, and a rigid asset against an articulated body
    (a stride spreads the legs) finds its size, so its depth, biased. Frame 0 stays. Returns the new
    (Rs, bs) in float64."""
    from spectral_tracking.render import render
    from spectral_tracking.tracking.search import _axis_angle_quat, _hypothesis_cameras

    Rs, bs = Rs.detach().double().cpu(), bs.detach().double().cpu()
    T = Rs.shape[0]
    if steps <= 0 or T < 2:
        return Rs, bs
    g = placed.detach()
    dtype, device = g.means.dtype, g.device
    center = g.means.mean(0)
    cams = cameras[views].to(device)
    V = len(views)
    bg = background.to(device, dtype)
    q_t = rotmat_to_quat(Rs[1:].to(device, dtype))  # [T - 1, 4]
    centres = (Rs[1:] @ center.double().cpu() + bs[1:]).to(device, dtype)  # each frame's centre c_t
    # the translation's directions: any, or the first view's image plane (its rows 0 and 1: right and up)
    basis = torch.eye(3, dtype=dtype, device=device) if depth else cams.viewmats[0, :2, :3].to(dtype)
    chunk = max(1, PIXELS_PER_CHUNK // (V * cams.height * cams.width))
    new_R, new_b = [Rs[:1]], [bs[:1]]
    for lo in range(0, T - 1, chunk):
        frames = list(range(lo, min(T - 1, lo + chunk)))
        n = len(frames)
        gt_rgb = images[views][:, [f + 1 for f in frames]].to(device, dtype).transpose(0, 1)  # [n, V, H, W, 3]
        gt_mask = masks[views][:, [f + 1 for f in frames]].to(device, dtype).transpose(0, 1)  # [n, V, H, W]
        w = torch.zeros(n, 3, dtype=dtype, device=device, requires_grad=rotate)
        tau = torch.zeros(n, len(basis), dtype=dtype, device=device, requires_grad=True)
        groups = ([{"params": [w], "lr": lr}] if rotate else []) + [{"params": [tau], "lr": 0.2 * lr}]
        opt = torch.optim.Adam(groups)
        decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1.0 - i / steps))
        q0, c = q_t[frames], centres[frames]

        def pose(w_: Tensor, tau_: Tensor) -> tuple[Tensor, Tensor]:
            """(quaternions [n, 4], translations [n, 3]) of the refined moves x -> c + tau + R_w (R_t x + b_t - c),
            written as x -> center + tau' + R' (x - center) for `_hypothesis_cameras`."""
            q = quat_multiply(_axis_angle_quat(w_), q0)
            R = quat_to_rotmat(q)
            b = c + tau_ @ basis + (quat_to_rotmat(_axis_angle_quat(w_)) @ (bs[1:][frames].to(device, dtype) - c)[..., None])[..., 0]
            return q, b + (R @ center) - center

        for _ in range(int(steps)):
            opt.zero_grad(set_to_none=True)
            q, shift = pose(w, tau)
            out = render(g, _hypothesis_cameras(cams, q, shift, torch.zeros(n, dtype=dtype, device=device), center),
                         background=bg, backend=backend)
            rgb = out.rgb.reshape(n, V, *out.rgb.shape[1:])
            alpha = out.alpha.reshape(n, V, *gt_mask.shape[2:])
            # each frame's own mean (the sum over frames keeps one frame's gradient independent of the others)
            loss = (((rgb - gt_rgb) ** 2).mean(dim=(1, 2, 3, 4)) + ((alpha - gt_mask) ** 2).mean(dim=(1, 2, 3))).sum()
            loss.backward()
            opt.step()
            decay.step()
        with torch.no_grad():  # the same move in float64 from the fitted turn and translation (w = 0: R_t to the bit)
            turn = quat_to_rotmat(_axis_angle_quat(w.detach().double().cpu()))  # [n, 3, 3]
            c64 = c.double().cpu()
            new_R.append(turn @ Rs[1:][frames])
            new_b.append(c64 + tau.detach().double().cpu() @ basis.double().cpu()
                         + (turn @ (bs[1:][frames] - c64)[..., None])[..., 0])
    return torch.cat(new_R), torch.cat(new_b)

