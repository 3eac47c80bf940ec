"""EWA projection of 3D Gaussians into pinhole cameras, view-dependent colours and tile binning.

The ``torch`` backend's projection (plain, differentiable PyTorch; autograd flows through everything
except the integer outputs) and the reference of the ``cpu`` backend's C++ twin (``csrc/project.cpp``,
the same outputs and gradients; the tests compare them). The maths follows gsplat 1.5.3's CUDA kernels
(``ProjectionEWA3DGSFused.cu``, ``IntersectTile.cu``) so that all backends render the same image:

- camera-space mean ``t = R mu + t_cam``; culled when ``t_z <= near_plane`` (0.01);
- Jacobian of the perspective map at ``t``, with x/z and y/z clamped to 1.3x the field of view as
  in 3DGS, ``Sigma_2d = J R Sigma R^T J^T + eps2d * I`` (eps2d = 0.3 px, the anti-aliasing low-pass);
- conic = inverse of ``Sigma_2d`` stored as (a, b, c) with ``sigma(d) = a dx^2 / 2 + b dx dy + c dy^2 / 2``;
- opacity-aware screen extent ``r = ceil(min(3.33, sqrt(2 ln(255 o))) * sqrt(Sigma_2d diag))``, the
  tight box outside which ``o exp(-sigma) < 1/255``; culled when ``o < 1/255`` or the box misses the
  image;
- pixel (u, v) covers [u, u+1) x [v, v+1); its centre is (u + 0.5, v + 0.5).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..cameras import Cameras
from ..gaussians import Gaussians
from .sh import eval_sh

EPS2D = 0.3  # px^2 added to the 2D covariance diagonal (gsplat's eps2d)
NEAR_PLANE = 0.01  # camera-space z below which a Gaussian is culled
ALPHA_THRESHOLD = 1.0 / 255.0  # a Gaussian contributes to a pixel only when alpha >= this
MAX_EXTENT = 3.33  # screen extent in standard deviations, before the opacity-aware shrink
TILE_SIZE = 16  # pixels per tile side


class Projected(NamedTuple):
    """Per-view, per-Gaussian screen-space quantities (V views, N Gaussians)."""

    means2d: Tensor  # [V, N, 2] pixel coordinates of the projected means
    conics: Tensor  # [V, N, 3] inverse 2D covariance (a, b, c) (upper triangle)
    depths: Tensor  # [V, N] camera-space z
    radii: Tensor  # [V, N, 2] int32 screen half-extent in px (x, y); 0 where culled
    colors: Tensor  # [V, N, 3] view-dependent RGB, clamped at 0
    opacities: Tensor  # [V, N] sigmoid(opacity_logits), broadcast over views


def project(gaussians: Gaussians, cameras: Cameras) -> Projected:
    """Project ``gaussians`` (N) into every camera (V). Differentiable w.r.t. all Gaussian params.

    Written component by component on [V, N] tensors rather than with batched 3x3 matmuls: on the
    CPU, torch's bmm over tiny matrices and multi-threaded ops over 10^4 elements cost far more than
    the arithmetic (this function runs every render).
    """
    W, H = cameras.width, cameras.height
    viewmats = cameras.viewmats.to(gaussians.means)  # [V, 4, 4]
    Ks = cameras.Ks.to(gaussians.means)  # [V, 3, 3]
    # camera rotation rows / translation as [V, 1] columns, broadcasting against [1, N] or [V, N]
    Wc = [[viewmats[:, i, j, None] for j in range(3)] for i in range(3)]
    tc = [viewmats[:, i, 3, None] for i in range(3)]
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [V, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]

    mx, my, mz = (gaussians.means[None, :, i] for i in range(3))  # [1, N]
    x = Wc[0][0] * mx + Wc[0][1] * my + Wc[0][2] * mz + tc[0]  # [V, N] camera-space mean
    y = Wc[1][0] * mx + Wc[1][1] * my + Wc[1][2] * mz + tc[1]
    z = Wc[2][0] * mx + Wc[2][1] * my + Wc[2][2] * mz + tc[2]
    depths = z
    in_front = z > NEAR_PLANE
    # Culled Gaussians never reach the image, but a z near 0 would put inf/NaN into the backward pass.
    z = torch.where(in_front, z, torch.ones_like(z))

    # world covariance Sigma = M M^T with M = R(q) diag(s)   (6 unique entries, each [1, N])
    q = gaussians.quats / gaussians.quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    qw, qx, qy, qz = (q[None, :, i] for i in range(4))
    R = [
        [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)],
        [2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx)],
        [2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy)],
    ]
    s = torch.exp(gaussians.log_scales)
    s = [s[None, :, j] for j in range(3)]
    M = [[R[i][j] * s[j] for j in range(3)] for i in range(3)]
    Sig = {}
    for i in range(3):
        for j in range(i, 3):
            Sig[i, j] = Sig[j, i] = M[i][0] * M[j][0] + M[i][1] * M[j][1] + M[i][2] * M[j][2]

    # Jacobian of the perspective map, evaluated at a point clamped to 1.3x the frustum (3DGS /
    # gsplat) so that Gaussians far outside the view do not get huge footprints.
    lim_x_pos = (W - cx) / fx + 0.3 * (0.5 * W / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * W / fx)
    lim_y_pos = (H - cy) / fy + 0.3 * (0.5 * H / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * H / fy)
    rz = 1.0 / z
    tx = z * torch.clamp(x * rz, min=-lim_x_neg, max=lim_x_pos)
    ty = z * torch.clamp(y * rz, min=-lim_y_neg, max=lim_y_pos)
    j00, j02 = fx * rz, -fx * tx * rz * rz  # J = [[j00, 0, j02], [0, j11, j12]]
    j11, j12 = fy * rz, -fy * ty * rz * rz
    # T = J Wc (2 x 3), then cov2d = T Sigma T^T
    T0 = [j00 * Wc[0][k] + j02 * Wc[2][k] for k in range(3)]
    T1 = [j11 * Wc[1][k] + j12 * Wc[2][k] for k in range(3)]
    U0 = [T0[0] * Sig[0, k] + T0[1] * Sig[1, k] + T0[2] * Sig[2, k] for k in range(3)]
    U1 = [T1[0] * Sig[0, k] + T1[1] * Sig[1, k] + T1[2] * Sig[2, k] for k in range(3)]
    a = U0[0] * T0[0] + U0[1] * T0[1] + U0[2] * T0[2] + EPS2D  # cov2d[0, 0] + eps2d
    b = U0[0] * T1[0] + U0[1] * T1[1] + U0[2] * T1[2]  # cov2d[0, 1]
    c = U1[0] * T1[0] + U1[1] * T1[1] + U1[2] * T1[2] + EPS2D  # cov2d[1, 1] + eps2d
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)  # [V, N, 2]

    det = a * c - b * b
    valid = in_front & (det > 0)
    det = torch.where(valid, det, torch.ones_like(det))
    valid = valid.clone()  # the mask above is saved for backward; refine a copy
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)  # [V, N, 3]

    opacities = torch.sigmoid(gaussians.opacity_logits)[None].expand(len(cameras), -1)  # [V, N]
    with torch.no_grad():
        op = opacities.detach()
        valid &= op >= ALPHA_THRESHOLD
        extend = torch.sqrt(2.0 * torch.log(op.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)).clamp(max=MAX_EXTENT)
        rx = torch.ceil(extend * torch.sqrt(a.detach().clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(c.detach().clamp_min(0)))
        px, py = means2d.detach().unbind(-1)
        valid &= (rx > 0) | (ry > 0)
        valid &= (px + rx > 0) & (px - rx < W) & (py + ry > 0) & (py - ry < H)
        radii = torch.stack([rx, ry], dim=-1).masked_fill(~valid[..., None], 0).to(torch.int32)  # [V, N, 2]

    colors = view_colors(gaussians, cameras)
    return Projected(means2d, conics, depths, radii, colors, opacities)


def view_colors(gaussians: Gaussians, cameras: Cameras) -> Tensor:
    """[V, N, 3] RGB of each Gaussian seen from each camera: SH along (mean - camera centre), +0.5,
    clamped at 0 (3DGS / gsplat). Degree-0 assets give the same colour in every view."""
    V = len(cameras)
    if gaussians.sh_degree == 0:
        rgb = eval_sh(gaussians.sh, gaussians.means)  # direction unused for degree 0
        return torch.clamp_min(rgb + 0.5, 0.0)[None].expand(V, -1, -1)
    dirs = gaussians.means[None] - cameras.centers.to(gaussians.means)[:, None, :]  # [V, N, 3]
    rgb = eval_sh(gaussians.sh[None].expand(V, -1, -1, -1), dirs)
    return torch.clamp_min(rgb + 0.5, 0.0)


class TileBins(NamedTuple):
    """Gaussians listed per image tile, front to back.

    ``flatten_ids[tile_offsets[k]:tile_offsets[k + 1]]`` are the indices into the flattened [V * N]
    Gaussians overlapping global tile ``k = view * tiles_y * tiles_x + ty * tiles_x + tx``, sorted by
    depth (ties by Gaussian index, like gsplat's stable radix sort).
    """

    tile_offsets: Tensor  # [V * tiles_y * tiles_x + 1] int32
    flatten_ids: Tensor  # [n_isects] int32
    tiles_x: int
    tiles_y: int


@torch.no_grad()
def bin_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int,
              tile_size: int = TILE_SIZE) -> TileBins:
    """Vectorised tile intersection (gsplat's ``isect_tiles`` + ``isect_offset_encode``).

    means2d: [V, N, 2]; radii: [V, N, 2] int (0 = culled); depths: [V, N].
    A Gaussian overlaps tiles [floor((m - r) / ts), ceil((m + r) / ts)) per axis, clamped to the grid.
    """
    V, N = depths.shape
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    dev = means2d.device
    m = means2d.detach().reshape(V * N, 2)
    r = radii.reshape(V * N, 2).to(m.dtype)
    lo = torch.floor((m - r) / tile_size)
    hi = torch.ceil((m + r) / tile_size)
    x0 = lo[:, 0].clamp(0, tiles_x).long()
    x1 = hi[:, 0].clamp(0, tiles_x).long()
    y0 = lo[:, 1].clamp(0, tiles_y).long()
    y1 = hi[:, 1].clamp(0, tiles_y).long()
    w = x1 - x0
    counts = w * (y1 - y0) * (radii.reshape(V * N, 2) > 0).all(-1)  # [V*N]

    # Depth rank of every Gaussian within the whole batch (stable: ties keep index order).
    order = torch.sort(depths.detach().reshape(V * N), stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(V * N, device=dev)

    gid = torch.repeat_interleave(torch.arange(V * N, device=dev), counts)  # [n_isects]
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(gid.numel(), device=dev) - start[gid]
    tx = x0[gid] + local % w[gid]
    ty = y0[gid] + torch.div(local, w[gid], rounding_mode="floor")
    view = torch.div(gid, N, rounding_mode="floor")
    tile = (view * tiles_y + ty) * tiles_x + tx  # global tile id
    key = tile * (V * N) + rank[gid]
    key, perm = torch.sort(key)
    flatten_ids = gid[perm].to(torch.int32)
    n_tiles = V * tiles_y * tiles_x
    per_tile = torch.bincount(tile, minlength=n_tiles)
    tile_offsets = torch.zeros(n_tiles + 1, dtype=torch.int32, device=dev)
    tile_offsets[1:] = torch.cumsum(per_tile, 0)
    return TileBins(tile_offsets, flatten_ids, tiles_x, tiles_y)
