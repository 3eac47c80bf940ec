"""``search.refine_steps``: the trajectory's rigid poses refined on the frames' pixels (beyond the paper).

`search_trajectory` fits each frame's pose on the lowest spectral bands (their basin is wide, which is
what finds a turn) and ranks the fits by their colour error. A fit on three bands leaves the last
degrees and a part of the depth to the finer detail it does not compare: on the turning motions the
start found poses 9-10 degrees off whose colour error was 2.7-5 times the true pose's (quadruped_turn@0,
frames 4-5; a probe, not kept). Here each frame's pose is moved, a small turn about its centre and a
translation, by Adam on the full-size colour and mask error of the whole asset, with a step decaying to
zero: the pixel loss has no wide basin, but the pose is already inside the right one. With one view the
translation stays in the image's plane (``search.refine_depth``). The frames are independent, and all
are fitted at once: moving the asset is moving the camera (`_hypothesis_cameras`), so one render of the
placed asset through T x V cameras a step.

``search.bridge_margin`` then mends the frames the pixels cannot tell (`bridge_trajectory`): where a
rigid asset cannot match an articulated body at any turn (the humanoid side-on, mid-stride), the fit
keeps a wrong turn, and the pose between the neighbouring frames' fits as well or nearly as well.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spectral_tracking.cameras import Cameras
from spectral_tracking.gaussians import Gaussians, quat_multiply, quat_to_rotmat, rotation_degrees, rotmat_to_quat

PIXELS_PER_CHUNK = 2**21  # rendered pixels per chunk of frames (each frame is refined on its own: memory, not the result)


def _frame_losses(out, gt_rgb: Tensor, gt_mask: Tensor) -> Tensor:
    """[n] each frame's mean squared colour error plus its alpha's against the mask: a render ``out`` of
    n x V cameras (frame-major) against gt_rgb [n, V, H, W, 3] and gt_mask [n, V, H, W]."""
    n, V = gt_mask.shape[:2]
    rgb = out.rgb.reshape(n, V, *out.rgb.shape[1:])
    alpha = out.alpha.reshape(n, V, *gt_mask.shape[2:])
    return ((rgb - gt_rgb) ** 2).mean(dim=(1, 2, 3, 4)) + ((alpha - gt_mask) ** 2).mean(dim=(1, 2, 3))


def _moves(Rs: Tensor, bs: Tensor, center: Tensor) -> tuple[Tensor, Tensor]:
    """The poses x -> R_t x + b_t as (quaternions [T, 4], translations [T, 3]) of x -> center + tau + R (x - center),
    the form `_hypothesis_cameras` takes."""
    return rotmat_to_quat(Rs), bs + Rs @ center - center


def pixel_losses(placed: Gaussians, cameras: Cameras, images: Tensor, masks: Tensor, views: list[int], Rs: Tensor,
                 bs: Tensor, *, background: Tensor, backend: str = "auto") -> Tensor:
    """[T] each frame's `_frame_losses` (the refine's loss) of ``placed`` posed by (``Rs`` [T, 3, 3], ``bs``
    [T, 3]) against images [V, T, H, W, 3] and masks [V, T, H, W] in the training ``views``; no gradient."""
    from spectral_tracking.render import render
    from spectral_tracking.tracking.search import _hypothesis_cameras

    g = placed.detach()
    dtype, device = g.means.dtype, g.device
    center = g.means.mean(0)
    cams = cameras[views].to(device)
    q, tau = _moves(Rs.to(device, dtype), bs.to(device, dtype), center)
    chunk = max(1, PIXELS_PER_CHUNK // (len(views) * cams.height * cams.width))
    out = []
    with torch.no_grad():
        for lo in range(0, len(Rs), chunk):
            frames = list(range(lo, min(len(Rs), lo + chunk)))
            unscaled = torch.zeros(len(frames), dtype=dtype, device=device)
            rendered = render(g, _hypothesis_cameras(cams, q[frames], tau[frames], unscaled, center),
                              background=background.to(device, dtype), backend=backend)
            out.append(_frame_losses(rendered, images[views][:, frames].to(device, dtype).transpose(0, 1),
                                     masks[views][:, frames].to(device, dtype).transpose(0, 1)))
    return torch.cat(out).cpu()


def refine_trajectory(placed: Gaussians, cameras: Cameras, images: Tensor, masks: Tensor, views: list[int],
                      Rs: Tensor, bs: Tensor, *, background: Tensor, steps: int, lr: float, rotate: bool = True,
                      depth: bool = True, max_degrees: float | None = None,
                      backend: str = "auto") -> tuple[Tensor, Tensor]:
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
        offsets = (bs[1:][frames].to(device, dtype) - c)[..., None]  # b_t - c_t [n, 3, 1]

        def pose(w_: Tensor, tau_: Tensor) -> tuple[Tensor, Tensor]:
            """(quaternions [n, 4], translations [n, 3]) of the refined moves x -> c + tau + R_w (R_t x + b_t - c),
            written as x -> center + tau' + R' (x - center) for `_hypothesis_cameras`."""
            # (the turn's quaternion twice: one node would sum w's two gradients in another order, other bits)
            q = quat_multiply(_axis_angle_quat(w_), q0)
            b = c + tau_ @ basis + (quat_to_rotmat(_axis_angle_quat(w_)) @ offsets)[..., 0]
            return q, b + (quat_to_rotmat(q) @ center) - center

        for _ in range(int(steps)):
            opt.zero_grad(set_to_none=True)
            q, shift = pose(w, tau)
            out = render(g, _hypothesis_cameras(cams, q, shift, torch.zeros(n, dtype=dtype, device=device), center),
                         background=bg, backend=backend)
            # each frame's own mean (the sum over frames keeps one frame's gradient independent of the others)
            _frame_losses(out, gt_rgb, gt_mask).sum().backward()
            opt.step()
            decay.step()
            if rotate and max_degrees is not None:  # the refine trims a turn, it does not choose another one
                with torch.no_grad():
                    norm = w.norm(dim=1, keepdim=True).clamp_min(1e-12)
                    w.mul_((math.radians(max_degrees) / norm).clamp(max=1.0))
        with torch.no_grad():  # the same move in float64 from the fitted turn and translation (w = 0: R_t to the bit)
            turn = quat_to_rotmat(_axis_angle_quat(w.detach().double().cpu()))  # [n, 3, 3]
            c64 = c.double().cpu()
            new_R.append(turn @ Rs[1:][frames])
            new_b.append(c64 + tau.detach().double().cpu() @ basis.double().cpu()
                         + (turn @ (bs[1:][frames] - c64)[..., None])[..., 0])
    return torch.cat(new_R), torch.cat(new_b)


def _between(Rs: Tensor, bs: Tensor, center: Tensor, t: int) -> tuple[Tensor, Tensor]:
    """The pose halfway between frames t - 1 and t + 1 (float64): the rotation halfway along the shortest
    turn from one to the other (slerp), the centre halfway between theirs."""
    qa, qb = rotmat_to_quat(Rs[t - 1:t + 2:2])
    qb = qb if float((qa * qb).sum()) >= 0 else -qb
    q = (qa + qb) / (qa + qb).norm()  # the slerp at one half
    R = quat_to_rotmat(q[None])[0]
    mid = 0.5 * ((Rs[t - 1] @ center + bs[t - 1]) + (Rs[t + 1] @ center + bs[t + 1]))
    return R, mid - R @ center


def _spanned(Rs: Tensor, bs: Tensor, center: Tensor, a: int, b: int) -> list[tuple[Tensor, Tensor]]:
    """The poses of frames a + 1 .. b - 1 on the way from frame a's pose to frame b's (float64): frame t turned
    the fraction (t - a) / (b - a) along the shortest turn between them (slerp), its centre as far along the
    line between theirs."""
    qa, qb = rotmat_to_quat(Rs[[a, b]])
    qb = qb if float((qa * qb).sum()) >= 0 else -qb
    theta = math.acos(max(-1.0, min(1.0, float((qa * qb).sum()))))
    ca, cb = Rs[a] @ center + bs[a], Rs[b] @ center + bs[b]
    poses = []
    for t in range(a + 1, b):
        f = (t - a) / (b - a)
        if theta < 1e-9:
            q = qa
        else:
            q = (math.sin((1 - f) * theta) * qa + math.sin(f * theta) * qb) / math.sin(theta)
        R = quat_to_rotmat((q / q.norm())[None])[0]
        poses.append((R, (1 - f) * ca + f * cb - R @ center))
    return poses


def _bridge_spans(placed: Gaussians, cameras: Cameras, images: Tensor, masks: Tensor, views: list[int], Rs: Tensor,
                  bs: Tensor, own: Tensor, center: Tensor, *, span: int, margin: float, degrees: float, sweeps: int,
                  refine: dict, common: dict) -> set[int]:
    """`bridge_trajectory` over runs of ``span`` frames in a row (two wrong frames side by side: the pose halfway
    between a frame's neighbours is then half wrong). A run whose every frame differs by more than ``degrees``
    from its pose on the way between the run's two neighbours (`_spanned`) takes those poses, their translations
    refined, where each frame's `pixel_losses` is at most (1 + ``margin``) x its own (``own``: at the poses the
    bridge was given, so that no sweep lets a frame drift further); of runs that overlap (or lean on a frame
    another run moves), the one with the lowest summed loss over its own. Updates ``Rs`` and ``bs`` in place;
    returns the frames bridged."""
    T = len(Rs)
    bridged: set[int] = set()
    for _ in range(int(sweeps) if T >= span + 2 else 0):
        runs = []  # (first frame, its poses on the way)
        for first in range(1, T - span):
            poses = _spanned(Rs, bs, center, first - 1, first + span)
            if all(rotation_degrees(R @ Rs[first + i].T) > degrees for i, (R, _) in enumerate(poses)):
                runs.append((first, poses))
        if not runs:
            break
        frames = [first + i for first, _ in runs for i in range(span)]
        keep = [0, *frames]  # the refine keeps its first frame: frame 0 stands in, the candidates are refined
        sub_R = torch.stack([Rs[0], *(R for _, poses in runs for R, _ in poses)])
        sub_b = torch.stack([bs[0], *(b for _, poses in runs for _, b in poses)])
        sub_R, sub_b = refine_trajectory(placed, cameras, images[:, keep], masks[:, keep], views, sub_R, sub_b,
                                         rotate=False, **refine, **common)
        theirs = pixel_losses(placed, cameras, images[:, frames], masks[:, frames], views, sub_R[1:], sub_b[1:],
                              **common)
        passing = []
        for j, (first, _) in enumerate(runs):
            mine = theirs[j * span:(j + 1) * span]
            before = own[first:first + span]
            if bool((mine <= (1.0 + margin) * before).all()):
                passing.append((float(mine.sum() / before.sum().clamp_min(1e-30)), j, first))
        moved: set[int] = set()
        leaned: set[int] = set()
        for _, j, first in sorted(passing):
            inner = set(range(first, first + span))
            if inner & (moved | leaned) or {first - 1, first + span} & moved:
                continue
            for i, t in enumerate(range(first, first + span)):
                Rs[t], bs[t] = sub_R[1 + j * span + i], sub_b[1 + j * span + i]
            moved |= inner
            leaned |= {first - 1, first + span}
        if not moved:
            break
        bridged |= moved
    return bridged


def bridge_trajectory(placed: Gaussians, cameras: Cameras, images: Tensor, masks: Tensor, views: list[int], Rs: Tensor,
                      bs: Tensor, *, background: Tensor, margin: float, degrees: float, steps: int, lr: float,
                      depth: bool = True, sweeps: int = 3, span: int = 1,
                      backend: str = "auto") -> tuple[Tensor, Tensor, list[int]]:
    """Frames whose pose the pixels cannot tell take the pose between their neighbours' (beyond the paper).

    A rigid asset against an articulated body seen side-on (the humanoid mid-turn, its legs in stride)
    fits a wrong turn as well as the right one, or better: in humanoid_turn@0's frames 5-6 no yaw of
    the canonical reaches a mask IoU of 0.6, and the yaw the fit keeps is 27-34 degrees off while the
    frames around it are within 3. Each inner frame's candidate is `_between` its neighbours, its
    translation refined (`refine_trajectory` without a turn, ``steps`` at ``lr``; ``depth``: as there);
    it replaces the frame's pose where the two differ by more than ``degrees`` and its `pixel_losses`
    is at most (1 + ``margin``) x the frame's own, at the pose it came with (every sweep against that
    loss: a frame bridged twice never fits worse than the bound). A frame the images do show keeps its
    pose: a real turn that reverses (a twist) fits its candidate far worse. Up to ``sweeps`` passes, each
    over every frame at once from the poses the pass before left (two wrong frames in a row each lean on
    the other's wrong pose: ``span`` 2 bridges them together). Returns (Rs, bs, the bridged frames,
    ascending)."""
    Rs, bs = Rs.detach().double().cpu().clone(), bs.detach().double().cpu().clone()
    T = len(Rs)
    center = placed.means.detach().double().cpu().mean(0)
    common = dict(background=background, backend=backend)
    own = pixel_losses(placed, cameras, images, masks, views, Rs, bs, **common)  # the bound's reference, kept
    bridged: set[int] = set()
    for length in range(int(span), 1, -1):  # the longest runs first: a shorter one leans on a wrong neighbour
        bridged |= _bridge_spans(placed, cameras, images, masks, views, Rs, bs, own, center, span=length, margin=margin,
                                 degrees=degrees, sweeps=sweeps, refine=dict(steps=steps, lr=lr, depth=depth),
                                 common=common)
    for _ in range(int(sweeps) if T >= 3 else 0):
        between = {t: _between(Rs, bs, center, t) for t in range(1, T - 1)}
        # the candidate's turn is not refined: a frame too near its candidate is decided before any render
        far = [t for t, (R, _) in between.items() if rotation_degrees(R @ Rs[t].T) > degrees]
        if not far:
            break
        keep = [0, *far]  # the refine keeps its first frame: frame 0 stands in, the candidates are refined
        sub_R = torch.stack([Rs[0], *(between[t][0] for t in far)])
        sub_b = torch.stack([bs[0], *(between[t][1] for t in far)])
        sub_R, sub_b = refine_trajectory(placed, cameras, images[:, keep], masks[:, keep], views, sub_R, sub_b,
                                         steps=steps, lr=lr, rotate=False, depth=depth, **common)
        theirs = pixel_losses(placed, cameras, images[:, far], masks[:, far], views, sub_R[1:], sub_b[1:], **common)
        take = [(i, t) for i, t in enumerate(far) if float(theirs[i]) <= (1.0 + margin) * float(own[t])]
        if not take:
            break
        for i, t in take:
            Rs[t], bs[t] = sub_R[i + 1], sub_b[i + 1]
        bridged.update(t for _, t in take)
    return Rs, bs, sorted(bridged)
