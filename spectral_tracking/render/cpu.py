"""The fast CPU renderer: the projection (``csrc/project.cpp``) and the compositor
(``csrc/rasterize.cpp``), each behind a ``torch.autograd.Function``.

The C++ sources ship inside the package and are built, loaded and called through
``spectral_tracking.runtime.native`` (compiled on first use, cached per user, source version and machine;
its prototype table and checked pointers). Failure policy: ``backend="cpu"`` asked for this path
explicitly, so a kernel that cannot be built raises ``NativeBuildError``; ``backend="auto"`` asks
``available()`` and renders with the torch compositor after one warning instead.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spectral_tracking.runtime import native

from ..cameras import Cameras
from ..gaussians import Gaussians
from .projection import Projected, TileBins, project, view_colors

FALLBACK = "render backend 'auto' falls back to 'torch', the plain PyTorch compositor (slower, same image)"


KERNELS = ("project", "rasterize")  # the C++ kernels of this backend (``native.KERNELS``)
RECORD = 16  # values per Gaussian in the compositor's records (rasterize.cpp's ``RECORD``)
MAX_TILE = 64  # the compositor's widest tile (rasterize.cpp keeps one 64-bit mask per row of a tile)


def load_library(kernel: str = "rasterize") -> native.NativeLibrary:
    """A C++ kernel of this backend, compiled on first use; raises ``native.NativeBuildError`` if it
    cannot be built."""
    try:
        return native.load(kernel)
    except native.NativeBuildError as err:
        raise native.NativeBuildError(f"{err}\n(backend='torch' works without a compiler)") from None


def available() -> bool:
    """Whether the C++ kernels can run here (built on first use); False after one warning if not."""
    return all(native.load_or_warn(kernel, FALLBACK) is not None for kernel in KERNELS)  # stops at a failure


def _function(name: str, dtype: torch.dtype, kernel: str = "rasterize") -> native.NativeFunction:
    if dtype not in native.SUFFIXES:
        raise ValueError(f"render backend 'cpu': supports float32 and float64 Gaussians, got {dtype}")
    return load_library(kernel).function(name, dtype)


class _ProjectCPU(torch.autograd.Function):
    """means [N, 3], quats [N, 4], log_scales [N, 3], viewmats [V, 4, 4] (differentiable), opacities
    [N], Ks [V, 3, 3] (constants) -> means2d [V, N, 2], conics [V, N, 3], depths [V, N], radii [V, N, 2]
    int32 (``projection.project``'s maths; its colours and opacities are done in torch)."""

    @staticmethod
    def forward(ctx, means, quats, log_scales, opacities, viewmats, Ks, width, height):
        args = [t.detach().contiguous() for t in (means, quats, log_scales, opacities, viewmats, Ks)]
        means, quats, log_scales, opacities, viewmats, Ks = args
        V, N, dt = viewmats.shape[0], means.shape[0], means.dtype
        means2d = torch.empty(V, N, 2, dtype=dt)
        conics = torch.empty(V, N, 3, dtype=dt)
        depths = torch.empty(V, N, dtype=dt)
        radii = torch.empty(V, N, 2, dtype=torch.int32)
        _function("st_project_fwd", dt, "project")(
            V=V, N=N, W=width, H=height, means=means, quats=quats, log_scales=log_scales, opacities=opacities,
            viewmats=viewmats, Ks=Ks, means2d=means2d, conics=conics, depths=depths, radii=radii,
            n_threads=torch.get_num_threads(),
        )
        ctx.save_for_backward(means, quats, log_scales, viewmats, Ks)
        ctx.dims = (width, height)
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii

    @staticmethod
    @once_differentiable  # the C++ backward is not itself differentiable (no double backward)
    def backward(ctx, v_means2d, v_conics, v_depths, _v_radii):
        means, quats, log_scales, viewmats, Ks = ctx.saved_tensors
        width, height = ctx.dims
        V, N, dt = viewmats.shape[0], means.shape[0], means.dtype
        v_means2d = torch.zeros(V, N, 2, dtype=dt) if v_means2d is None else v_means2d.contiguous()
        v_conics = torch.zeros(V, N, 3, dtype=dt) if v_conics is None else v_conics.contiguous()
        v_depths = torch.zeros(V, N, dtype=dt) if v_depths is None else v_depths.contiguous()
        grads = [torch.zeros_like(t) for t in (means, quats, log_scales)]
        v_viewmats = torch.zeros_like(viewmats) if ctx.needs_input_grad[4] else None
        _function("st_project_bwd", dt, "project")(
            V=V, N=N, W=width, H=height, means=means, quats=quats, log_scales=log_scales, viewmats=viewmats,
            Ks=Ks, v_means2d=v_means2d, v_conics=v_conics, v_depths=v_depths, v_means=grads[0],
            v_quats=grads[1], v_log_scales=grads[2], v_viewmats=v_viewmats, n_threads=torch.get_num_threads(),
        )
        return (*grads, None, v_viewmats, None, None, None)


def project_cpu(gaussians: Gaussians, cameras: Cameras) -> Projected:
    """C++ twin of ``projection.project`` (same outputs, same gradients w.r.t. the Gaussians and the
    cameras' ``viewmats``: the pose search moves the cameras).

    Intrinsics that need a gradient (``Ks`` with ``requires_grad``) go through the torch projection,
    since the C++ backward treats them as constants."""
    if gaussians.means.device.type != "cpu":
        raise ValueError(f"render backend 'cpu': tensors must be on the CPU, got {gaussians.means.device}")
    if cameras.Ks.requires_grad:
        return project(gaussians, cameras)
    dt = gaussians.means.dtype
    opacities = torch.sigmoid(gaussians.opacity_logits)
    means2d, conics, depths, radii = _ProjectCPU.apply(
        gaussians.means, gaussians.quats, gaussians.log_scales, opacities.detach(), cameras.viewmats.to(dt),
        cameras.Ks.to(dt), cameras.width, cameras.height,
    )
    colors = view_colors(gaussians, cameras)
    return Projected(means2d, conics, depths, radii, colors, opacities[None].expand(len(cameras), -1))


def bin_chunks(n_items: int, n_threads: int) -> int:
    """How many contiguous ranges the binning's passes split ``n_items`` Gaussians into (one task each):
    a few per thread (Gaussians cover unequal numbers of tiles), none under 4096 Gaussians, one on one
    thread. The lists are the same for any number (each chunk's entries go at its own offsets)."""
    return 1 if n_threads <= 1 else max(1, min(n_threads * 4, n_items // 4096))


@torch.no_grad()
def bin_tiles_cpu(means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int, tile_size: int) -> TileBins:
    """C++ twin of ``projection.bin_tiles`` (same lists, same order): a counting sort by tile of the
    Gaussians in index order, then each tile's list sorted by depth. means2d [V, N, 2], radii [V, N, 2]
    int32, depths [V, N]."""
    V, N = depths.shape
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    if max(tiles_x, tiles_y) > 0xFFFF:  # the C++ pass packs a tile rectangle into 16-bit fields
        raise ValueError(f"render backend 'cpu': {width}x{height} pixels make {tiles_x}x{tiles_y} tiles of {tile_size}; "
                         f"at most 65535 tiles a side: raise the tile size or lower the resolution")
    m = means2d.detach().contiguous()
    r = radii.to(torch.int32).contiguous()
    d = depths.detach().to(means2d.dtype).contiguous()
    n_threads = torch.get_num_threads()
    chunks = bin_chunks(V * N, n_threads)
    tile_offsets = torch.empty(V * tiles_x * tiles_y + 1, dtype=torch.int32)
    rects = torch.empty(V * N, dtype=torch.int64)  # each Gaussian's tile rectangle, packed (pass 1 -> pass 2)
    counts = torch.empty(chunks * V * tiles_y * tiles_x, dtype=torch.int64)  # per chunk and tile (pass 1 -> 2)
    n = _function("st_bin_count", m.dtype)(V=V, N=N, ts=tile_size, tiles_x=tiles_x, tiles_y=tiles_y, chunks=chunks,
                                           means2d=m, radii=r, tile_offsets=tile_offsets, rects=rects, counts=counts,
                                           n_threads=n_threads)
    if n >= 2**31:
        raise ValueError(f"render backend 'cpu': {n} tile intersections overflow int32; render fewer views at once")
    flatten_ids = torch.empty(n, dtype=torch.int32)
    _function("st_bin_fill", m.dtype)(V=V, N=N, tiles_x=tiles_x, tiles_y=tiles_y, chunks=chunks, rects=rects, depths=d,
                                      tile_offsets=tile_offsets, counts=counts, flatten_ids=flatten_ids,
                                      n_threads=n_threads)
    return TileBins(tile_offsets, flatten_ids, tiles_x, tiles_y)


class _CompositeCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, features, opacities, background, tile_offsets, flatten_ids,
                width, height, tile_size, tiles_x, tiles_y):
        V, N, C = features.shape
        if C != 4:
            raise ValueError(f"render backend 'cpu': expected 4 blended channels (r, g, b, z), got {C}")
        if not 0 < tile_size <= MAX_TILE:
            raise ValueError(f"render backend 'cpu': tile_size must be in 1..{MAX_TILE}, got {tile_size}")
        args = [t.detach().contiguous() for t in (means2d, conics, features, opacities, background)]
        means2d, conics, features, opacities, background = args
        dt = features.dtype
        rgb = torch.empty(V, height, width, 3, dtype=dt)
        alpha = torch.empty(V, height, width, dtype=dt)
        depth = torch.empty(V, height, width, dtype=dt)
        last_ids = torch.empty(V, height, width, dtype=torch.int32)
        records = torch.empty(V * N * RECORD, dtype=dt)  # what the tiles read of each Gaussian, for the backward
        _function("st_rasterize_fwd", dt)(
            V=V, N=N, H=height, W=width, ts=tile_size, tiles_x=tiles_x, tiles_y=tiles_y, means2d=means2d,
            conics=conics, colors=features, opacities=opacities, background=background, tile_offsets=tile_offsets,
            flatten_ids=flatten_ids, rgb_out=rgb, alpha_out=alpha, depth_out=depth, last_ids=last_ids,
            records=records, n_threads=torch.get_num_threads(),
        )
        ctx.save_for_backward(records, background, tile_offsets, flatten_ids, alpha, depth, last_ids)
        ctx.dims = (width, height, tile_size, tiles_x, tiles_y, V, N)
        return rgb, alpha, depth

    @staticmethod
    @once_differentiable  # the C++ backward is not itself differentiable (no double backward)
    def backward(ctx, v_rgb, v_alpha, v_depth):
        records, background, tile_offsets, flatten_ids, alpha, depth, last_ids = ctx.saved_tensors
        width, height, tile_size, tiles_x, tiles_y, V, N = ctx.dims
        dt = alpha.dtype
        v_rgb = torch.zeros(V, height, width, 3, dtype=alpha.dtype) if v_rgb is None else v_rgb.contiguous()
        v_alpha = torch.zeros_like(alpha) if v_alpha is None else v_alpha.contiguous()
        v_depth = torch.zeros_like(alpha) if v_depth is None else v_depth.contiguous()
        grads = [torch.zeros(*shape, dtype=dt) for shape in ((V, N, 2), (V, N, 3), (V, N, 4), (V, N), (V, 3))]
        v_means2d, v_conics, v_colors, v_opacities, v_background = grads
        _function("st_rasterize_bwd", dt)(
            V=V, N=N, H=height, W=width, ts=tile_size, tiles_x=tiles_x, tiles_y=tiles_y, records=records,
            background=background, tile_offsets=tile_offsets,
            flatten_ids=flatten_ids, alpha_out=alpha, depth_out=depth, last_ids=last_ids, v_rgb=v_rgb,
            v_alpha_out=v_alpha, v_depth=v_depth, v_means2d=v_means2d, v_conics=v_conics, v_colors=v_colors,
            v_opacities=v_opacities, v_background=v_background, n_threads=torch.get_num_threads(),
        )
        return (*grads, None, None, None, None, None, None, None)


def composite_cpu(
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
    """C++ twin of ``torch_ref.composite_torch``: rgb [V, H, W, 3], alpha [V, H, W], depth [V, H, W]."""
    if means2d.device.type != "cpu":
        raise ValueError(f"render backend 'cpu': tensors must be on the CPU, got {means2d.device}")
    return _CompositeCPU.apply(
        means2d, conics, features, opacities, background, bins.tile_offsets.contiguous(),
        bins.flatten_ids.contiguous(), width, height, tile_size, bins.tiles_x, bins.tiles_y,
    )
