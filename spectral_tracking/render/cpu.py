"""The fast CPU compositor: ``csrc/rasterize.cpp`` behind a ``torch.autograd.Function``.

The C++ source ships inside the package and is compiled on first use by ``spectral_tracking.native``
(system C++ compiler, OpenMP sharing torch's threads, cached per user, source version and machine).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..native import build
from .projection import TileBins

SOURCE = Path(__file__).resolve().parent / "csrc" / "rasterize.cpp"
_lib: ctypes.CDLL | None = None


def load_library() -> ctypes.CDLL:
    """Compile (once per user and source version) and load the C++ compositor."""
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = build(SOURCE, "render backend 'cpu'")
    except RuntimeError as err:
        raise RuntimeError(f"{err}\n(backend='torch' works without a compiler)") from None
    for suffix in ("f32", "f64"):
        getattr(lib, f"st_rasterize_fwd_{suffix}").argtypes = [ctypes.c_int] * 7 + [ctypes.c_void_p] * 11 + [ctypes.c_int]
        getattr(lib, f"st_rasterize_bwd_{suffix}").argtypes = [ctypes.c_int] * 7 + [ctypes.c_void_p] * 18 + [ctypes.c_int]
        getattr(lib, f"st_rasterize_fwd_{suffix}").restype = None
        getattr(lib, f"st_rasterize_bwd_{suffix}").restype = None
        getattr(lib, f"st_bin_count_{suffix}").argtypes = [ctypes.c_int] * 5 + [ctypes.c_void_p] * 3
        getattr(lib, f"st_bin_count_{suffix}").restype = ctypes.c_int64
        getattr(lib, f"st_bin_fill_{suffix}").argtypes = [ctypes.c_int] * 5 + [ctypes.c_void_p] * 5
        getattr(lib, f"st_bin_fill_{suffix}").restype = None
    _lib = lib
    return lib


def _suffix(dtype: torch.dtype) -> str:
    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise ValueError(f"render backend 'cpu': supports float32 and float64 Gaussians, got {dtype}")


def _ptr(t: Tensor) -> int:
    return t.data_ptr()


@torch.no_grad()
def bin_tiles_cpu(means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int, tile_size: int) -> TileBins:
    """C++ twin of ``projection.bin_tiles`` (same lists, same order): a counting sort by tile of the
    Gaussians taken in depth order. means2d [V, N, 2], radii [V, N, 2] int32, depths [V, N]."""
    lib = load_library()
    V, N = depths.shape
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    sfx = _suffix(means2d.dtype)
    m = means2d.detach().contiguous()
    r = radii.to(torch.int32).contiguous()
    d = depths.detach().to(means2d.dtype).contiguous()
    tile_offsets = torch.empty(V * tiles_x * tiles_y + 1, dtype=torch.int32)
    n = getattr(lib, f"st_bin_count_{sfx}")(V, N, tile_size, tiles_x, tiles_y, _ptr(m), _ptr(r), _ptr(tile_offsets))
    if n >= 2**31:
        raise ValueError(f"render backend 'cpu': {n} tile intersections overflow int32; render fewer views at once")
    flatten_ids = torch.empty(n, dtype=torch.int32)
    getattr(lib, f"st_bin_fill_{sfx}")(V, N, tile_size, tiles_x, tiles_y, _ptr(m), _ptr(r), _ptr(d),
                                       _ptr(tile_offsets), _ptr(flatten_ids))
    return TileBins(tile_offsets, flatten_ids, tiles_x, tiles_y)


class _CompositeCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, features, opacities, background, tile_offsets, flatten_ids,
                width, height, tile_size, tiles_x, tiles_y):
        lib = load_library()
        V, N, C = features.shape
        if C != 4:
            raise ValueError(f"render backend 'cpu': expected 4 blended channels (r, g, b, z), got {C}")
        args = [t.detach().contiguous() for t in (means2d, conics, features, opacities, background)]
        dt = features.dtype
        rgb = torch.empty(V, height, width, 3, dtype=dt)
        alpha = torch.empty(V, height, width, dtype=dt)
        depth = torch.empty(V, height, width, dtype=dt)
        last_ids = torch.empty(V, height, width, dtype=torch.int32)
        getattr(lib, f"st_rasterize_fwd_{_suffix(dt)}")(
            V, N, height, width, tile_size, tiles_x, tiles_y,
            *map(_ptr, args), _ptr(tile_offsets), _ptr(flatten_ids),
            _ptr(rgb), _ptr(alpha), _ptr(depth), _ptr(last_ids), torch.get_num_threads(),
        )
        ctx.save_for_backward(*args, tile_offsets, flatten_ids, alpha, depth, last_ids)
        ctx.dims = (width, height, tile_size, tiles_x, tiles_y)
        return rgb, alpha, depth

    @staticmethod
    @once_differentiable  # the C++ backward is not itself differentiable (no double backward)
    def backward(ctx, v_rgb, v_alpha, v_depth):
        means2d, conics, features, opacities, background, tile_offsets, flatten_ids, alpha, depth, last_ids = ctx.saved_tensors
        width, height, tile_size, tiles_x, tiles_y = ctx.dims
        V, N, _ = features.shape
        v_rgb = torch.zeros(V, height, width, 3, dtype=alpha.dtype) if v_rgb is None else v_rgb.contiguous()
        v_alpha = torch.zeros_like(alpha) if v_alpha is None else v_alpha.contiguous()
        v_depth = torch.zeros_like(alpha) if v_depth is None else v_depth.contiguous()
        grads = [torch.zeros_like(t) for t in (means2d, conics, features, opacities, background)]
        getattr(load_library(), f"st_rasterize_bwd_{_suffix(alpha.dtype)}")(
            V, N, height, width, tile_size, tiles_x, tiles_y,
            _ptr(means2d), _ptr(conics), _ptr(features), _ptr(opacities), _ptr(background),
            _ptr(tile_offsets), _ptr(flatten_ids), _ptr(alpha), _ptr(depth), _ptr(last_ids),
            _ptr(v_rgb), _ptr(v_alpha), _ptr(v_depth), *map(_ptr, grads), torch.get_num_threads(),
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
