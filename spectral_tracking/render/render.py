"""``render()``: the public, stateless Gaussian-splatting renderer (validation and backend dispatch).

Backends, all computing the same image (see ``projection.py`` for the projection maths and
``torch_ref.py`` for the compositing rule; 16 px tiles, alpha clamp 0.999, 1/255 skip, stop at
transmittance 1e-4, as gsplat 1.5.3):

- ``"gsplat"``: gsplat's CUDA rasteriser (``gsplat_backend.py``), CUDA tensors only.
- ``"cpu"``:    projection, tile binning and compositing in C++ (``cpu.py``, ``csrc/project.cpp``,
                ``csrc/rasterize.cpp``), SH colours in PyTorch; CPU tensors only, float32 or float64.
- ``"torch"``:  the projection (``projection.py``) and a compositor (``torch_ref.py``) in plain PyTorch;
                any device.
                Slow: it is the readable reference the tests compare the others with.
- ``"auto"``:   ``"gsplat"`` for CUDA tensors, ``"cpu"`` otherwise; ``"torch"`` (after one
                ``RuntimeWarning``) where the C++ compositor cannot be built. An explicit ``"cpu"``
                raises ``spectral_tracking.runtime.native.NativeBuildError`` there instead.
"""

from __future__ import annotations

from dataclasses import fields
from typing import NamedTuple

import torch
from torch import Tensor

from ..cameras import Cameras
from ..gaussians import Gaussians
from .projection import TILE_SIZE, bin_tiles, project

BACKENDS = ("auto", "torch", "cpu", "gsplat")


class RenderOutput(NamedTuple):
    """Images for V cameras of size H x W."""

    rgb: Tensor  # [V, H, W, 3] colour composited over the background
    alpha: Tensor  # [V, H, W] accumulated opacity, 1 - final transmittance
    depth: Tensor  # [V, H, W] expected camera-space z: sum_i w_i z_i / max(alpha, 1e-10); 0 where empty
    meta: dict  # what gsplat's densification strategies read: means2d [V, N, 2] (grad retained),
    # radii [V, N, 2] int32 (0 = culled), width, height, n_cameras, gaussian_ids (None: not packed),
    # plus backend, depths [V, N], conics [V, N, 3]


def render(
    gaussians: Gaussians,  # N Gaussians
    cameras: Cameras,  # V cameras, H x W
    background: Tensor | None = None,  # [3] or [V, 3]; default black
    backend: str = "auto",
) -> RenderOutput:
    """Render ``gaussians`` from every camera; differentiable w.r.t. every Gaussian parameter.

    Colour of a Gaussian: its SH (degree 0..3) evaluated along the direction camera centre -> mean,
    plus 0.5, clamped at 0. Raises ``ValueError`` on bad inputs (wrong types or shapes, NaN/inf,
    zero Gaussians, unknown backend, a backend that cannot run on the tensors' device). A scene whose
    Gaussians are all outside the view renders the background.
    """
    if backend not in BACKENDS:
        raise ValueError(f"render: unknown backend {backend!r}; expected one of {BACKENDS}")
    if not isinstance(gaussians, Gaussians):
        raise ValueError(f"render: gaussians must be a Gaussians, got {type(gaussians).__name__}")
    if not isinstance(cameras, Cameras):
        raise ValueError(f"render: cameras must be a Cameras, got {type(cameras).__name__}")
    if gaussians.num_gaussians == 0:
        raise ValueError("render: gaussians is empty (N = 0); there is nothing to render")
    if gaussians.means.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"render: Gaussians must be float32 or float64, got {gaussians.means.dtype}")
    if len(cameras) == 0:
        raise ValueError("render: cameras is empty (V = 0)")
    device, dtype = gaussians.device, gaussians.means.dtype
    if cameras.Ks.device != device or cameras.Ks.dtype != dtype or cameras.viewmats.dtype != dtype:
        cameras = cameras.to(device=device, dtype=dtype)
    V = len(cameras)
    background = _background(background, V, device, dtype)
    # One host sync for every finiteness check (on a GPU each `if` on a device value waits for the
    # queue); the failing tensor is named only when one fails. A sum in float64 is finite when every
    # value is (NaN and inf carry through it, and float32 values cannot overflow it), in one pass
    # instead of isfinite's three (13 ms of a 300k-Gaussian render on one thread); a sum that is not
    # finite is checked value by value, so a float64 asset whose sum overflows is not refused.
    checked = [*(getattr(gaussians, f.name) for f in fields(gaussians)), cameras.Ks, cameras.viewmats, background]
    total = torch.stack([t.detach().sum(dtype=torch.float64) for t in checked]).sum()
    if not bool(torch.isfinite(total)) and not bool(torch.stack([torch.isfinite(t).all() for t in checked]).all()):
        gaussians.check_finite("render: gaussians")
        if not (torch.isfinite(cameras.Ks).all() and torch.isfinite(cameras.viewmats).all()):
            raise ValueError("render: cameras.Ks or cameras.viewmats hold non-finite values (NaN or inf)")
        raise ValueError("render: background holds non-finite values (NaN or inf)")

    backend = resolve_backend(backend, device)
    if backend == "gsplat":
        if device.type != "cuda":
            raise ValueError(f"render backend 'gsplat' needs CUDA tensors, the Gaussians are on {device}")
        from .gsplat_backend import render_gsplat

        rgb, alpha, depth, info = render_gsplat(gaussians, cameras, background)
        meta = dict(info)
        meta["backend"] = "gsplat"
        return RenderOutput(rgb, alpha, depth, meta)
    if backend == "cpu":
        if device.type != "cpu":
            raise ValueError(f"render backend 'cpu' needs CPU tensors, the Gaussians are on {device}")
        from .cpu import bin_tiles_cpu as binner
        from .cpu import composite_cpu as composite
        from .cpu import project_cpu as projector
    else:
        from .torch_ref import composite_torch as composite

        binner, projector = bin_tiles, project
    return _render_tiled(gaussians, cameras, background, projector, binner, composite, backend)


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend ``backend`` means on ``device``: ``auto`` is gsplat on CUDA, else the C++ ``cpu``
    compositor if it builds here, else ``torch`` (after one warning)."""
    if backend != "auto":
        return backend
    if torch.device(device).type == "cuda":
        return "gsplat"
    from .cpu import available

    return "cpu" if available() else "torch"


def _background(background: Tensor | None, V: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """[V, 3] background colours."""
    if background is None:
        return torch.zeros(V, 3, device=device, dtype=dtype)
    if not isinstance(background, Tensor):
        background = torch.as_tensor(background)
    if background.shape == (3,):
        background = background[None].expand(V, 3)
    if background.shape != (V, 3):
        raise ValueError(f"render: background must have shape [3] or [V, 3] with V={V}, got {list(background.shape)}")
    return background.to(device=device, dtype=dtype)  # checked for NaN / inf by render()


def _render_tiled(gaussians: Gaussians, cameras: Cameras, background: Tensor, projector, binner, composite,
                  backend: str) -> RenderOutput:
    """Projection, tile binning and compositing (the C++ or the reference twins)."""
    W, H = cameras.width, cameras.height
    proj = projector(gaussians, cameras)
    bins = binner(proj.means2d, proj.radii, proj.depths, W, H, TILE_SIZE)
    # Depth rides along as a fourth colour channel, as in gsplat's "RGB+ED" mode.
    features = torch.cat([proj.colors, proj.depths[..., None]], dim=-1)  # [V, N, 4]
    rgb, alpha, depth = composite(proj.means2d, proj.conics, features, proj.opacities, background, bins, W, H, TILE_SIZE)
    if proj.means2d.requires_grad:
        proj.means2d.retain_grad()  # densification reads means2d.grad (gsplat strategies)
    meta = {
        "means2d": proj.means2d,
        "radii": proj.radii,
        "depths": proj.depths,
        "conics": proj.conics,
        "width": W,
        "height": H,
        "n_cameras": len(cameras),
        "tile_size": TILE_SIZE,
        "gaussian_ids": None,
        "backend": backend,
    }
    return RenderOutput(rgb, alpha, depth, meta)
