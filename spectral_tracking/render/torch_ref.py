"""Naive reference compositing in plain PyTorch (the ``torch`` backend; the twin of the C++ and
gsplat rasterisers, used by the tests).

Per pixel, the Gaussians of its 16x16 tile are blended front to back exactly as in gsplat's
``rasterize_to_pixels``:

    sigma_i = a dx^2 / 2 + b dx dy + c dy^2 / 2       (dx = mean_x - pixel_x, ...)
    alpha_i = min(0.999, o_i exp(-sigma_i)), skipped when alpha_i < 1/255 or sigma_i < 0
    T_i     = prod_{j<i} (1 - alpha_j)                blending stops before the Gaussian that would
                                                      push T to <= 1e-4
    out     = sum_i alpha_i T_i c_i,  alpha_out = 1 - T_final

Autograd gives the gradients. Tiles are processed in chunks, padded to the longest list in the chunk.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .projection import ALPHA_THRESHOLD, TileBins

ALPHA_MAX = 0.999  # gsplat's clamp on a single Gaussian's alpha
T_STOP = 1e-4  # blending stops when the transmittance would fall to this
_CHUNK_ELEMS = 1 << 22  # pixels x Gaussians per chunk (bounds memory)


def composite_torch(
    means2d: Tensor,  # [V, N, 2]
    conics: Tensor,  # [V, N, 3]
    features: Tensor,  # [V, N, 4] colour and camera z
    opacities: Tensor,  # [V, N]
    background: Tensor,  # [V, 3]
    bins: TileBins,
    width: int,
    height: int,
    tile_size: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Front-to-back alpha compositing: rgb [V, H, W, 3] over ``background``, alpha [V, H, W] and
    depth [V, H, W] = (sum of weight * z) / max(alpha, 1e-10)."""
    out, alpha = _blend(means2d, conics, features, opacities, bins, width, height, tile_size)
    rgb = out[..., :3] + (1 - alpha)[..., None] * background[:, None, None, :]
    depth = out[..., 3] / alpha.clamp_min(1e-10)
    return rgb, alpha, depth


def _blend(means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor, bins: TileBins,
           width: int, height: int, tile_size: int) -> tuple[Tensor, Tensor]:
    """Blend C channels ``colors`` [V, N, C]: (sum_i w_i c_i [V, H, W, C], alpha [V, H, W])."""
    V, N, C = colors.shape
    dev, dt = colors.device, colors.dtype
    P = tile_size * tile_size
    n_tiles = V * bins.tiles_y * bins.tiles_x
    m = means2d.reshape(V * N, 2)
    con = conics.reshape(V * N, 3)
    col = colors.reshape(V * N, C)
    op = opacities.reshape(V * N)

    offsets = bins.tile_offsets.long()
    counts = offsets[1:] - offsets[:-1]
    busy = torch.nonzero(counts > 0).flatten()  # tiles with at least one Gaussian
    # pixel centres of a tile, relative to its corner: [P]
    ly, lx = torch.meshgrid(torch.arange(tile_size, device=dev), torch.arange(tile_size, device=dev), indexing="ij")
    lx, ly = lx.reshape(P), ly.reshape(P)

    color_parts, trans_parts = [], []
    start = 0
    while start < busy.numel():
        # grow the chunk while (tiles x pixels x longest list) stays under the budget
        stop = start + 1
        kmax = int(counts[busy[start]])
        while stop < busy.numel():
            k = max(kmax, int(counts[busy[stop]]))
            if (stop - start + 1) * P * k > _CHUNK_ELEMS:
                break
            kmax, stop = k, stop + 1
        tiles = busy[start:stop]  # [B]
        start = stop

        ar = torch.arange(kmax, device=dev)
        listed = ar[None] < counts[tiles][:, None]  # [B, K]
        pos = (offsets[tiles][:, None] + ar[None]).clamp(max=max(bins.flatten_ids.numel() - 1, 0))
        g = bins.flatten_ids.long()[pos]  # [B, K]

        in_view = tiles % (bins.tiles_y * bins.tiles_x)
        tx, ty = in_view % bins.tiles_x, torch.div(in_view, bins.tiles_x, rounding_mode="floor")
        px_i = tx[:, None] * tile_size + lx[None]  # [B, P] integer pixel coordinates
        py_i = ty[:, None] * tile_size + ly[None]
        inside = (px_i < width) & (py_i < height)  # [B, P]

        dx = m[g, 0][:, None, :] - (px_i.to(dt) + 0.5)[:, :, None]  # [B, P, K]
        dy = m[g, 1][:, None, :] - (py_i.to(dt) + 0.5)[:, :, None]
        a, b, c = con[g, 0][:, None, :], con[g, 1][:, None, :], con[g, 2][:, None, :]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp_max(op[g][:, None, :] * torch.exp(-sigma), ALPHA_MAX)
        keep = listed[:, None, :] & inside[:, :, None] & (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
        alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
        with torch.no_grad():
            # T is non-increasing, so "every step so far kept T above T_STOP" == "T after me > T_STOP"
            alive = torch.cumprod(1 - alpha, dim=-1) > T_STOP
        alpha = torch.where(alive, alpha, torch.zeros_like(alpha))
        one_minus = 1 - alpha
        T_before = torch.cumprod(torch.cat([torch.ones_like(one_minus[..., :1]), one_minus[..., :-1]], -1), -1)
        weights = alpha * T_before  # [B, P, K]
        color_parts.append(torch.einsum("bpk,bkc->bpc", weights, col[g]))
        trans_parts.append(T_before[..., -1] * one_minus[..., -1])  # [B, P]

    out = torch.zeros(n_tiles, P, C, device=dev, dtype=dt)
    T = torch.ones(n_tiles, P, device=dev, dtype=dt)
    if color_parts:
        out = out.index_copy(0, busy, torch.cat(color_parts))
        T = T.index_copy(0, busy, torch.cat(trans_parts))
    else:
        # Nothing in view: keep the outputs attached to the graph (zero gradients), so a loss on an
        # empty render can still be back-propagated, as with the other backends.
        out = out + 0 * (m.sum() + con.sum() + col.sum() + op.sum())
    return _untile(out, V, bins, tile_size, width, height), _untile(1 - T[..., None], V, bins, tile_size, width, height)[..., 0]


def _untile(x: Tensor, V: int, bins: TileBins, ts: int, width: int, height: int) -> Tensor:
    """[V * tiles_y * tiles_x, ts * ts, C] -> [V, H, W, C]."""
    C = x.shape[-1]
    x = x.reshape(V, bins.tiles_y, bins.tiles_x, ts, ts, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(V, bins.tiles_y * ts, bins.tiles_x * ts, C)[:, :height, :width]
