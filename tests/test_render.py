"""Tests of the renderer: the backends are twins (same images, same gradients), the maths matches
closed forms and gsplat, and the public wrapper rejects bad inputs."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from dataclasses import fields, replace

import pytest
import torch

from spectral_tracking.runtime import native
from spectral_tracking.cameras import Cameras, orbit_camera
from spectral_tracking.gaussians import SH_C0, Gaussians, load_ply, random_gaussians
from spectral_tracking.render import RenderOutput, render
from spectral_tracking.render.projection import ALPHA_THRESHOLD, bin_tiles, project, view_colors
from spectral_tracking.render.sh import eval_sh

from conftest import requires_cuda

PARAMS = [f.name for f in fields(Gaussians)]


def _scene(n=300, sh_degree=1, seed=0, dtype=torch.float32):
    g = random_gaussians(n, sh_degree=sh_degree, extent=0.5, scale_range=(0.01, 0.06), seed=seed).to(dtype=dtype)
    # 2 views, an image size that is not a multiple of the 16 px tile
    cams = orbit_camera([20.0, 115.0], elevation_deg=15.0, radius=2.0, width=56, height=44).to(dtype=dtype)
    return g, cams


def _leaf(g: Gaussians) -> Gaussians:
    return Gaussians(**{k: getattr(g, k).detach().clone().requires_grad_(True) for k in PARAMS})


def _render_and_grads(g: Gaussians, cams: Cameras, backend: str, background=None):
    """Render, back-propagate a fixed random functional of rgb, alpha and depth; return images and grads."""
    g = _leaf(g)
    bg = None if background is None else background.detach().clone().requires_grad_(True)
    out = render(g, cams, background=bg, backend=backend)
    gen = torch.Generator().manual_seed(123)  # drawn on the CPU, then moved: the same weights on any device
    w_rgb = torch.randn(out.rgb.shape, generator=gen, dtype=out.rgb.dtype).to(out.rgb.device)
    w_a = torch.randn(out.alpha.shape, generator=gen, dtype=out.rgb.dtype).to(out.rgb.device)
    w_d = torch.randn(out.depth.shape, generator=gen, dtype=out.rgb.dtype).to(out.rgb.device)
    loss = (out.rgb * w_rgb).sum() + (out.alpha * w_a).sum() + (out.depth * out.alpha.detach() * w_d).sum()
    loss.backward()
    grads = {k: getattr(g, k).grad for k in PARAMS}
    grads["means2d"] = out.meta["means2d"].grad
    if bg is not None:
        grads["background"] = bg.grad
    return out, grads


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


# --------------------------------------------------------------------------------------------------
# the backends are twins
# --------------------------------------------------------------------------------------------------
def test_cpu_and_torch_backends_agree_on_a_dense_opaque_asset():
    """Most Gaussians of a dense opaque asset are hidden behind saturated pixels: the C++ walks skip
    their entries by the open-pixel masks, and the projection's backward skips the Gaussians with no
    gradient. Those get exactly zero, and every gradient matches the torch twin."""
    g = random_gaussians(3000, sh_degree=0, extent=0.3, scale_range=(0.01, 0.03), seed=5)
    g = Gaussians(g.means, g.quats, g.log_scales, torch.full_like(g.opacity_logits, 4.0), g.sh)  # opacity 0.98
    cams = orbit_camera([20.0, 115.0], elevation_deg=15.0, radius=2.0, width=56, height=44)
    ref, gref = _render_and_grads(g, cams, "torch")
    out, gout = _render_and_grads(g, cams, "cpu")
    hidden = (gref["means"] == 0).all(-1)
    assert hidden.float().mean() > 0.3, "the asset should hide many of its Gaussians"
    assert (ref.rgb - out.rgb).abs().max() < 1e-4 and (ref.alpha - out.alpha).abs().max() < 1e-4
    for k in PARAMS + ["means2d"]:
        assert gref[k].abs().sum() > 0, f"reference gradient of {k} is zero; the test is vacuous"
        assert _rel(gout[k], gref[k]) < 1e-3, f"{k}: relative L2 gap {_rel(gout[k], gref[k]):.2e}"
    for k in PARAMS:
        assert torch.equal(gout[k][hidden], torch.zeros_like(gout[k][hidden])), k


@pytest.mark.parametrize("sh_degree", [0, 2])
def test_cpu_and_torch_backends_agree(sh_degree):
    g, cams = _scene(n=400, sh_degree=sh_degree, seed=sh_degree)
    bg = torch.tensor([[0.1, 0.5, 0.9], [0.7, 0.2, 0.3]])
    ref, gref = _render_and_grads(g, cams, "torch", bg)
    out, gout = _render_and_grads(g, cams, "cpu", bg)
    assert ref.alpha.max() > 0.9 and ref.alpha.mean() > 0.2  # the scene fills the view
    assert (ref.rgb - out.rgb).abs().max() < 1e-4
    assert (ref.alpha - out.alpha).abs().max() < 1e-4
    covered = ref.alpha > 0.05
    assert (ref.depth[covered] - out.depth[covered]).abs().max() < 1e-4
    assert torch.equal(ref.meta["radii"], out.meta["radii"])
    for k in PARAMS + ["means2d", "background"]:
        assert gref[k].abs().sum() > 0, f"reference gradient of {k} is zero; the test is vacuous"
        assert _rel(gout[k], gref[k]) < 1e-3, f"{k}: relative L2 gap {_rel(gout[k], gref[k]):.2e}"


def test_cpu_compositing_is_the_same_for_any_tile_size():
    """The walks take a tile's rows in chunks of 8 pixel lanes: at tiles of 1, 5, 33 and 64 pixels (a
    chunk past the tile's edge, a 64-bit row mask full) every pixel gets the same image bits as at 16,
    and the gradients differ only by the order of their per-tile sums."""
    from spectral_tracking.render.cpu import bin_tiles_cpu, composite_cpu, project_cpu

    for dt, tol in ((torch.float32, 1e-6), (torch.float64, 1e-14)):
        g = random_gaussians(2000, sh_degree=0, extent=0.4, scale_range=(0.01, 0.08), seed=3).to(dtype=dt)
        cams = orbit_camera([30.0], elevation_deg=10.0, radius=2.0, width=150, height=97).to(dtype=dt)
        p = project_cpu(g, cams)
        colors = torch.rand(p.means2d.shape[:-1] + (3,), dtype=dt, generator=torch.Generator().manual_seed(0))
        features = torch.cat([colors, p.depths[..., None]], -1)
        background = torch.tensor([[0.3, 0.5, 0.7]], dtype=dt)
        w = torch.randn(1, 97, 150, 3, dtype=dt, generator=torch.Generator().manual_seed(1))
        results = {}
        for ts in (16, 1, 5, 33, 64):
            bins = bin_tiles_cpu(p.means2d, p.radii, p.depths, 150, 97, ts)
            leaves = [t.detach().clone().requires_grad_(True) for t in (p.means2d, p.conics, features, p.opacities)]
            rgb, alpha, depth = composite_cpu(*leaves, background, bins, 150, 97, ts)
            ((rgb * w).sum() + alpha.sum() + (depth * alpha.detach()).sum()).backward()
            results[ts] = (rgb.detach(), alpha.detach(), [leaf.grad for leaf in leaves])
        rgb16, alpha16, grads16 = results[16]
        assert alpha16.max() > 0.9 and (alpha16 < 0.1).float().mean() > 0.1  # opaque pixels and empty ones
        for ts, (rgb, alpha, grads) in results.items():
            assert torch.equal(rgb, rgb16) and torch.equal(alpha, alpha16), (dt, ts)
            assert max(_rel(a, b) for a, b in zip(grads, grads16)) < tol, (dt, ts)


def test_cpu_tile_binning_matches_reference():
    """Same lists in the same order, also where depths tie (every Gaussian twice: ties go by index,
    as the reference's stable sort orders them, which the C++ radix sort must keep)."""
    from spectral_tracking.gaussians import Gaussians

    for dtype, twice in ((torch.float32, False), (torch.float64, False), (torch.float32, True)):
        g = random_gaussians(2000, extent=0.9, scale_range=(0.005, 0.1), seed=3).to(dtype=dtype)
        if twice:
            g = Gaussians.cat([g, g])
        cams = orbit_camera([0.0, 70.0, 200.0], 20.0, radius=1.5, width=80, height=60).to(dtype=dtype)
        from spectral_tracking.render.cpu import bin_tiles_cpu

        p = project(g, cams)
        ref = bin_tiles(p.means2d, p.radii, p.depths, 80, 60)
        out = bin_tiles_cpu(p.means2d, p.radii, p.depths, 80, 60, 16)
        assert ref.flatten_ids.numel() > 2000
        assert torch.equal(ref.tile_offsets, out.tile_offsets)
        assert torch.equal(ref.flatten_ids, out.flatten_ids)
        # lists are front to back within every tile
        d = p.depths.reshape(-1)[ref.flatten_ids.long()]
        for t in range(ref.tile_offsets.numel() - 1):
            s, e = int(ref.tile_offsets[t]), int(ref.tile_offsets[t + 1])
            assert torch.all(d[s + 1:e] >= d[s:e - 1])


def test_cpu_render_gradients_are_the_same_bits_for_any_number_of_threads():
    """The compositing backward sums each Gaussian's per-tile contributions in entry order, not in the
    order threads finish: the same render and gradients, bit for bit, at 1, 2 and 3 threads, and
    twice at 2 (two views; enough Gaussians and entries for the reduction's chunks)."""
    g = random_gaussians(30000, extent=0.9, scale_range=(0.005, 0.05), seed=6)
    cams = orbit_camera([0.0, 120.0], 20.0, radius=1.5, width=160, height=128)

    def grads(threads: int):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            leaves = [t.detach().clone().requires_grad_(True) for t in (g.means, g.quats, g.log_scales, g.opacity_logits, g.sh)]
            out = render(Gaussians(*leaves), cams, backend="cpu")
            (out.rgb.square().mean() + out.alpha.mean() + (out.depth * out.alpha).mean()).backward()
            return [out.rgb.detach()] + [t.grad for t in leaves]
        finally:
            torch.set_num_threads(before)

    ref = grads(1)
    assert ref[1].abs().sum() > 0
    for threads in (2, 3, 2):
        for a, b in zip(ref, grads(threads)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_cpu_tile_binning_is_the_same_for_any_number_of_threads(threads):
    """The binning's passes split the Gaussians into chunks, one per task: the lists must be the
    reference's whatever the threads (enough Gaussians for several chunks of 4096)."""
    from spectral_tracking.render.cpu import bin_tiles_cpu

    g = random_gaussians(20000, extent=0.9, scale_range=(0.005, 0.05), seed=5)
    cams = orbit_camera([0.0, 120.0], 20.0, radius=1.5, width=96, height=64)
    p = project(g, cams)
    ref = bin_tiles(p.means2d, p.radii, p.depths, 96, 64)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = bin_tiles_cpu(p.means2d, p.radii, p.depths, 96, 64, 16)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(ref.tile_offsets, out.tile_offsets)
    assert torch.equal(ref.flatten_ids, out.flatten_ids)


def test_projection_matches_gsplat_torch_impl():
    from gsplat.cuda._torch_impl import _fully_fused_projection

    g = random_gaussians(500, extent=0.9, scale_range=(0.005, 0.1), seed=3).to(dtype=torch.float64)
    cams = orbit_camera([0.0, 70.0, 200.0], 20.0, radius=1.5, width=80, height=60).to(dtype=torch.float64)
    p = project(g, cams)
    radii, means2d, depths, conics, _ = _fully_fused_projection(g.means, g.covariances(), cams.viewmats, cams.Ks, 80, 60)
    visible = (p.radii > 0).all(-1)
    assert visible.sum() > 500
    # gsplat's pure-torch twin uses a 3.33 sigma box; ours shrinks it with opacity like its CUDA kernel
    assert torch.all((radii > 0).all(-1) | ~visible)
    assert torch.allclose(p.means2d[visible], means2d[visible], atol=1e-9)
    assert torch.allclose(p.conics[visible], conics[visible], atol=1e-9)
    assert torch.allclose(p.depths, depths, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpu_projection_is_the_twin_of_the_torch_projection(dtype):
    """csrc/project.cpp against projection.project: outputs and gradients, culled Gaussians included
    (behind the camera, outside the view, a zero quaternion, transparent ones), three views."""
    from spectral_tracking.render.cpu import project_cpu

    g = random_gaussians(400, sh_degree=1, extent=0.9, scale_range=(0.005, 0.2), seed=5).to(dtype=dtype)
    g.means[:8] = torch.tensor([0.0, 0.0, 1.9], dtype=dtype) + 0.05 * g.means[:8]  # at / behind the first camera
    g.means[8:16] *= 6.0  # far outside the views
    g.quats[16] = 0.0
    g.opacity_logits[17:24] = -8.0  # below 1/255
    cams = orbit_camera([0.0, 70.0, 200.0], 20.0, radius=2.0, width=80, height=60).to(dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    results = []
    for fn in (project, project_cpu):
        leaf = _leaf(g)
        p = fn(leaf, cams)
        outs = (p.means2d, p.conics, p.depths, p.colors, p.opacities)
        gen.manual_seed(0)
        loss = sum((o * torch.randn(o.shape, generator=gen, dtype=dtype)).sum() for o in outs)
        loss.backward()
        results.append((p, {k: getattr(leaf, k).grad for k in PARAMS}))
    (ref, ref_grads), (out, grads) = results
    culled = (ref.radii == 0).all(-1)
    assert 20 < int(culled.sum()) < culled.numel() // 2
    assert torch.equal(out.radii, ref.radii)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-3)
    for name in ("means2d", "conics", "depths", "colors", "opacities"):
        assert torch.allclose(getattr(out, name), getattr(ref, name), **tol), name
    for name in PARAMS:
        scale = ref_grads[name].abs().max().clamp_min(1.0)
        assert torch.allclose(grads[name] / scale, ref_grads[name] / scale, **tol), name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpu_projection_gives_the_cameras_gradient_of_the_torch_projection(dtype):
    """The pose search moves the cameras: csrc/project.cpp's viewmats gradient against the torch
    projection's (culled Gaussians included, three views, enough Gaussians for several threads), and
    the same bits at one and two threads; intrinsics that need a gradient are left to torch."""
    from spectral_tracking.render.cpu import project_cpu

    g = random_gaussians(24_000, sh_degree=0, extent=0.9, scale_range=(0.005, 0.2), seed=5).to(dtype=dtype)
    g.means[:8] = torch.tensor([0.0, 0.0, 1.9], dtype=dtype) + 0.05 * g.means[:8]  # at / behind the first camera
    g.opacity_logits[17:24] = -8.0  # below 1/255
    cams = orbit_camera([0.0, 70.0, 200.0], 20.0, radius=2.0, width=80, height=60).to(dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    weights = None
    results = []
    for fn, threads in ((project, 2), (project_cpu, 1), (project_cpu, 2)):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            viewmats = cams.viewmats.clone().requires_grad_(True)
            p = fn(g, Cameras(cams.Ks, viewmats, cams.width, cams.height))
            outs = (p.means2d, p.conics, p.depths)
            if weights is None:
                weights = [torch.randn(o.shape, generator=gen, dtype=dtype) for o in outs]
            sum((o * w).sum() for o, w in zip(outs, weights)).backward()
            results.append(viewmats.grad)
        finally:
            torch.set_num_threads(before)
    ref, one, two = results
    assert ref.abs().sum() > 0 and torch.equal(one, two)
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=2e-3, atol=1e-3)
    scale = ref.abs().max()
    assert torch.allclose(one / scale, ref / scale, **tol)
    Ks = cams.Ks.clone().requires_grad_(True)
    p = project_cpu(g, Cameras(Ks, cams.viewmats, cams.width, cams.height))
    p.means2d.sum().backward()
    assert Ks.grad is not None and Ks.grad.abs().sum() > 0


def test_sh_basis_matches_gsplat():
    from gsplat.cuda._torch_impl import _spherical_harmonics

    gen = torch.Generator().manual_seed(0)
    dirs = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    coeffs = torch.randn(64, 16, 3, generator=gen, dtype=torch.float64)
    for degree in range(4):
        k = (degree + 1) ** 2
        ours = eval_sh(coeffs[:, :k], dirs)
        assert torch.allclose(ours, _spherical_harmonics(degree, dirs, coeffs[:, :k]), atol=1e-12)


@pytest.mark.parametrize("sh_degree", [1, 2, 3])
def test_sh_colours_depend_on_view_and_backends_agree(sh_degree):
    g = random_gaussians(150, sh_degree=sh_degree, extent=0.4, scale_range=(0.02, 0.08), seed=sh_degree)
    cams = orbit_camera([0.0, 90.0], 0.0, width=32, height=32)
    cols = view_colors(g, cams)  # [2, N, 3]
    assert (cols[0] - cols[1]).abs().max() > 0.05
    # degree-0 part alone is view independent
    g0 = replace(g, sh=g.sh[:, :1])
    cols0 = view_colors(g0, cams)
    assert torch.equal(cols0[0], cols0[1])
    ref = render(g, cams, backend="torch")
    out = render(g, cams, backend="cpu")
    assert (ref.rgb - out.rgb).abs().max() < 1e-4
    # the same Gaussians with their higher bands removed render differently
    assert (render(g0, cams, backend="cpu").rgb - out.rgb).abs().max() > 0.01


def test_batched_views_equal_single_views():
    g, cams = _scene(n=200)
    both = render(g, cams, backend="cpu")
    for v in range(len(cams)):
        one = render(g, cams[v], backend="cpu")
        assert torch.allclose(both.rgb[v], one.rgb[0], atol=1e-6)
        assert torch.allclose(both.alpha[v], one.alpha[0], atol=1e-6)


# --------------------------------------------------------------------------------------------------
# closed forms and gradient checks
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_single_isotropic_gaussian_matches_closed_form(backend):
    W, H, f, z, s, op = 33, 29, 100.0, 2.0, 0.1, 0.8
    u0, v0 = 16.3, 13.6  # principal point, off the pixel grid (pixel centres are at k + 0.5)
    K = torch.tensor([[f, 0.0, u0], [0.0, f, v0], [0.0, 0.0, 1.0]])
    cams = Cameras(K[None], torch.eye(4)[None], W, H)  # camera at the origin looking along +z
    mean = torch.tensor([0.0, 0.0, z])  # on the optical axis: projects to (u0, v0), isotropic footprint
    sh = torch.tensor([[[0.6, -0.2, 0.1]]])
    g = Gaussians(mean[None], torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.full((1, 3), math.log(s)),
                  torch.tensor([math.log(op / (1 - op))]), sh)
    out = render(g, cams, background=torch.tensor([0.0, 0.0, 1.0]), backend=backend)

    var = (f * s / z) ** 2 + 0.3  # EWA: J Sigma J^T plus the 0.3 px^2 low-pass
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5, indexing="ij")
    alpha = op * torch.exp(-0.5 * ((u - u0) ** 2 + (v - v0) ** 2) / var)
    alpha = torch.where(alpha >= ALPHA_THRESHOLD, alpha, torch.zeros_like(alpha))
    colour = 0.5 + SH_C0 * sh[0, 0].double()
    rgb = alpha[..., None] * colour + (1 - alpha[..., None]) * torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert torch.allclose(out.alpha[0].double(), alpha, atol=2e-6)
    assert torch.allclose(out.rgb[0].double(), rgb, atol=2e-6)
    # centre pixel and fall-off, spelled out
    iu, iv = int(u0), int(v0)
    assert abs(float(out.alpha[0, iv, iu]) - op * math.exp(-0.5 * ((iu + 0.5 - u0) ** 2 + (iv + 0.5 - v0) ** 2) / var)) < 1e-6
    assert abs(float(out.alpha[0, iv, iu + 4]) - op * math.exp(-0.5 * ((iu + 4.5 - u0) ** 2 + (iv + 0.5 - v0) ** 2) / var)) < 1e-6
    covered = alpha > 0
    assert torch.allclose(out.depth[0][covered].double(), torch.full_like(alpha[covered], z), atol=1e-5)
    assert torch.all(out.depth[0][~covered] == 0)
    r = out.meta["radii"][0, 0]
    # opacity-aware 3-sigma-ish box: ceil(min(3.33, sqrt(2 ln(255 o))) * sigma)
    expect_r = math.ceil(min(3.33, math.sqrt(2 * math.log(255 * op))) * math.sqrt(var))
    assert r.tolist() == [expect_r, expect_r]


def _tiny_scene_f64():
    gen = torch.Generator().manual_seed(7)
    n = 3
    g = Gaussians(
        means=(torch.rand(n, 3, generator=gen, dtype=torch.float64) - 0.5) * 0.3,
        quats=torch.randn(n, 4, generator=gen, dtype=torch.float64),
        log_scales=torch.log(torch.rand(n, 3, generator=gen, dtype=torch.float64) * 0.05 + 0.05),
        opacity_logits=torch.rand(n, generator=gen, dtype=torch.float64) - 0.5,
        sh=torch.randn(n, 4, 3, generator=gen, dtype=torch.float64) * 0.3,
    )
    cams = orbit_camera([10.0, 80.0], 10.0, radius=1.5, fovy_deg=40.0, width=14, height=12).to(dtype=torch.float64)
    return g, cams


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_gradcheck_float64(backend):
    g, cams = _tiny_scene_f64()
    bg = torch.tensor([0.3, 0.6, 0.1], dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(2, 12, 14, 5, generator=gen, dtype=torch.float64)

    def f(*tensors):
        out = render(Gaussians(*tensors), cams, background=bg, backend=backend)
        return (out.rgb * w[..., :3]).sum() + (out.alpha * w[..., 3]).sum() + (out.depth * out.alpha * w[..., 4]).sum()

    inputs = tuple(getattr(g, k).clone().requires_grad_(True) for k in PARAMS)
    assert render(g, cams, backend=backend).alpha.max() > 0.3
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------------------------------
# gsplat: the CUDA twin, and its densification strategy reading our meta
# --------------------------------------------------------------------------------------------------
@requires_cuda
@pytest.mark.cuda
def test_gsplat_backend_matches_cpu():
    g, cams = _scene(n=400, sh_degree=2)
    bg = torch.tensor([0.2, 0.4, 0.6])
    ref, gref = _render_and_grads(g, cams, "cpu", bg[None].expand(2, 3))
    out, gout = _render_and_grads(g.to("cuda"), cams.to("cuda"), "gsplat", bg[None].expand(2, 3).cuda())
    assert out.meta["backend"] == "gsplat"
    assert (ref.rgb - out.rgb.cpu()).abs().max() < 1e-3
    assert (ref.alpha - out.alpha.cpu()).abs().max() < 1e-3
    same_radii = (ref.meta["radii"] == out.meta["radii"].cpu().to(torch.int32)).all(-1)
    assert same_radii.float().mean() > 0.99  # ceil() of float32 maths may differ by a pixel on a few
    for k in PARAMS + ["means2d", "background"]:
        assert _rel(gout[k].cpu(), gref[k]) < 1e-2, k
    auto = render(g.to("cuda"), cams.to("cuda"))
    assert auto.meta["backend"] == "gsplat"


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_meta_drives_gsplat_default_strategy_on_cpu(backend):
    from gsplat.strategy import DefaultStrategy

    g = random_gaussians(200, sh_degree=1, seed=0)
    params = torch.nn.ParameterDict({"means": g.means, "quats": g.quats, "scales": g.log_scales,
                                     "opacities": g.opacity_logits, "sh": g.sh})
    opts = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=2, grow_grad2d=1e-9, reset_every=1000)
    strategy.check_sanity(params, opts)
    state = strategy.initialize_state(scene_scale=1.0)
    cams = orbit_camera([0.0, 90.0], 10.0, width=32, height=32)
    for step in range(3):
        gs = Gaussians(params["means"], params["quats"], params["scales"], params["opacities"], params["sh"])
        out = render(gs, cams, backend=backend)
        assert {"means2d", "radii", "width", "height", "n_cameras", "gaussian_ids"} <= out.meta.keys()
        assert out.meta["radii"].shape == (2, len(gs), 2)
        strategy.step_pre_backward(params, opts, state, step, out.meta)
        out.rgb.mean().backward()
        assert out.meta["means2d"].grad is not None and out.meta["means2d"].grad.abs().sum() > 0
        strategy.step_post_backward(params, opts, state, step, out.meta, packed=False)
        for o in opts.values():
            o.step()
            o.zero_grad()
    assert len(params["means"]) > 200  # step 2 refined: Gaussians were split / duplicated
    assert all(len(p) == len(params["means"]) for p in params.values())


# --------------------------------------------------------------------------------------------------
# the wrapper: bad inputs, empty views, real asset
# --------------------------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    g, cams = _scene(n=20)
    with pytest.raises(ValueError, match="unknown backend"):
        render(g, cams, backend="vulkan")
    with pytest.raises(ValueError, match="gsplat.*CUDA"):
        render(g, cams, backend="gsplat")
    with pytest.raises(ValueError, match="means holds 1 non-finite"):
        bad = g.clone()
        bad.means[3, 1] = float("nan")
        render(bad, cams)
    with pytest.raises(ValueError, match="sh holds 1 non-finite"):
        bad = g.clone()
        bad.sh[0, 0, 0] = float("inf")
        render(bad, cams)
    with pytest.raises(ValueError, match="empty"):
        render(g.subset(torch.zeros(20, dtype=torch.bool)), cams)
    with pytest.raises(ValueError, match="background must have shape"):
        render(g, cams, background=torch.zeros(4))
    with pytest.raises(ValueError, match="background holds non-finite"):
        render(g, cams, background=torch.tensor([0.0, float("nan"), 0.0]))
    with pytest.raises(ValueError, match="must be a Gaussians"):
        render(g.means, cams)
    with pytest.raises(ValueError, match="must be a Cameras"):
        render(g, cams.Ks)
    with pytest.raises(ValueError, match="float32 or float64"):
        render(g.to(dtype=torch.float16), cams)
    nan_cams = Cameras(cams.Ks.clone(), cams.viewmats.clone(), cams.width, cams.height)
    nan_cams.viewmats[1, 0, 3] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        render(g, nan_cams)
    with pytest.raises(ValueError, match="image size must be positive"):
        render(g, Cameras(cams.Ks, cams.viewmats, 0, 32))
    with pytest.raises(ValueError, match="expected shape"):
        Gaussians(g.means, g.quats[:, :3], g.log_scales, g.opacity_logits, g.sh)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_scene_outside_the_view_renders_the_background(backend):
    g = _leaf(random_gaussians(50, seed=1).translate(torch.tensor([0.0, 0.0, 10.0])))  # behind the +z camera
    far_left = _leaf(random_gaussians(50, seed=2).translate(torch.tensor([40.0, 0.0, 0.0])))
    cams = orbit_camera(0.0, width=24, height=20)
    bg = torch.tensor([0.25, 0.5, 0.75])
    for scene in (g, far_left):
        out = render(scene, cams, background=bg, backend=backend)
        assert isinstance(out, RenderOutput)
        assert torch.equal(out.rgb, bg.expand(1, 20, 24, 3))
        assert torch.all(out.alpha == 0) and torch.all(out.depth == 0)
        assert torch.all(out.meta["radii"] == 0)
        out.rgb.sum().backward()
        for k in PARAMS:
            grad = getattr(scene, k).grad
            assert grad is None or (torch.isfinite(grad).all() and torch.all(grad == 0))


def test_auto_backend_is_cpu_for_cpu_tensors():
    g, cams = _scene(n=30)
    assert render(g, cams).meta["backend"] == "cpu"
    assert render(g, cams, backend="torch").meta["backend"] == "torch"


def test_donut_renders_from_an_orbit_camera(donut_ply):
    g, _ = load_ply(donut_ply).normalize()
    cams = orbit_camera([0.0, 90.0], elevation_deg=20.0, radius=2.0, width=64, height=64)
    out = render(g, cams, background=torch.ones(3), backend="cpu")
    assert torch.isfinite(out.rgb).all()
    for v in range(2):
        assert out.alpha[v].mean() > 0.05  # something is there...
        assert out.alpha[v, 0].max() < 0.05 and out.alpha[v, :, 0].max() < 0.05  # ...framed, not cropped
        assert (out.rgb[v] - 1).abs().amax(-1).max() > 0.2  # and differs from the white background
    covered = out.alpha > 0.5
    assert torch.all((out.depth[covered] > 1.0) & (out.depth[covered] < 3.0))  # near the 2.0 orbit radius


# ------------------------------------------------------------------------------------------------
# The native boundary (spectral_tracking/runtime/native.py) for the compositor
# ------------------------------------------------------------------------------------------------


def test_native_prototype_table_matches_the_rasterize_source():
    assert native.prototype_mismatches("rasterize") == []
    assert [p.name for p in native.source_prototypes("rasterize")] == [
        "st_rasterize_fwd_S", "st_rasterize_bwd_S", "st_bin_count_S", "st_bin_fill_S"]
    assert native.prototype_mismatches("project") == []
    assert [p.name for p in native.source_prototypes("project")] == ["st_project_fwd_S", "st_project_bwd_S"]


@pytest.mark.parametrize("kernel", sorted(native.KERNELS))
def test_native_prototype_tables_match_every_source(kernel):
    assert native.source_prototypes(kernel), f"no extern \"C\" function found in {native.KERNELS[kernel].source}"
    assert native.prototype_mismatches(kernel) == []


def test_native_boundary_checks_every_argument():
    from spectral_tracking.render.cpu import load_library

    count = load_library().function("st_bin_count", torch.float32)
    dims = dict(V=1, N=4, ts=16, tiles_x=1, tiles_y=1, chunks=1, n_threads=1,
                rects=torch.zeros(4, dtype=torch.int64), counts=torch.zeros(1, dtype=torch.int64))
    means2d = torch.zeros(1, 4, 2)
    radii = torch.zeros(1, 4, 2, dtype=torch.int32)
    offsets = torch.zeros(2, dtype=torch.int32)
    assert count(**dims, means2d=means2d, radii=radii, tile_offsets=offsets) == 0
    with pytest.raises(TypeError, match=r"st_bin_count_f32: argument means2d must be torch.float32, got torch.float64"):
        count(**dims, means2d=means2d.double(), radii=radii, tile_offsets=offsets)
    with pytest.raises(TypeError, match="argument radii must be torch.int32, got torch.int64"):
        count(**dims, means2d=means2d, radii=radii.long(), tile_offsets=offsets)
    with pytest.raises(ValueError, match="argument means2d must be contiguous"):
        count(**dims, means2d=torch.zeros(1, 2, 4).transpose(1, 2), radii=radii, tile_offsets=offsets)
    with pytest.raises(ValueError, match="argument tile_offsets must be on the CPU, got meta"):
        count(**dims, means2d=means2d, radii=radii, tile_offsets=torch.zeros(2, dtype=torch.int32, device="meta"))
    with pytest.raises(ValueError, match="argument radii must be a tensor, got None"):
        count(**dims, means2d=means2d, radii=None, tile_offsets=offsets)
    with pytest.raises(TypeError, match="argument means2d must be a torch.Tensor, got int"):
        count(**dims, means2d=means2d.data_ptr(), radii=radii, tile_offsets=offsets)
    with pytest.raises(TypeError, match=r"missing arguments \['tile_offsets'\], unexpected arguments \['offsets'\]"):
        count(**dims, means2d=means2d, radii=radii, offsets=offsets)
    with pytest.raises(ValueError, match="supports float32 and float64 Gaussians, got torch.float16"):
        from spectral_tracking.render.cpu import bin_tiles_cpu

        bin_tiles_cpu(means2d.half(), radii, torch.zeros(1, 4).half(), 16, 16, 16)


def test_native_boundary_checks_element_counts_and_indices():
    """A kernel reads and writes as many elements as its scalar arguments say: an array of another
    size (25 means against 20 blend rows) is refused before C touches it, not read past its end."""
    skin = native.load("skin").function("st_skin_fwd", torch.float64)
    mixed, means, quats = torch.zeros(20, 16, dtype=torch.float64), torch.zeros(25, 3, dtype=torch.float64), torch.zeros(25, 4, dtype=torch.float64)
    out_means, out_quats = torch.empty(25, 3, dtype=torch.float64), torch.empty(25, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"st_skin_fwd_f64: argument mixed holds 320 elements, the call needs N\*16 = 400 \(N=25\)"):
        skin(N=25, mixed=mixed, means=means, quats=quats, new_means=out_means, new_quats=out_quats, n_threads=1)
    with pytest.raises(ValueError, match=r"argument means holds 75 elements, the call needs N\*3 = 60"):
        skin(N=20, mixed=mixed, means=means, quats=quats[:20].contiguous(), new_means=out_means[:20].contiguous(),
             new_quats=out_quats[:20].contiguous(), n_threads=1)
    skin(N=20, mixed=mixed, means=means[:20].contiguous(), quats=quats[:20].contiguous(), new_means=out_means[:20].contiguous(),
         new_quats=out_quats[:20].contiguous(), n_threads=1)  # sizes that agree pass

    arap = native.load("arap").function("st_arap_fwd", torch.float64)
    F, J, K = 2, 5, 3
    points, rest = torch.rand(F, J, 3, dtype=torch.float64), torch.rand(J, K, 3, dtype=torch.float64)
    rotations = torch.empty(F, J, 9, dtype=torch.float64)
    neighbors = torch.arange(J * K).reshape(J, K) % J  # holds 0 (a random draw missing it changed the message below)
    arap(F=F, J=J, K=K, points=points, neighbors=neighbors, rest_edges=rest, rotations=rotations)
    bad = neighbors.clone()
    bad[2, 1] = J
    with pytest.raises(ValueError, match=r"st_arap_fwd_f64: argument neighbors holds indices in \[0, 5\], the call needs them in \[0, J\) = \[0, 5\)"):
        arap(F=F, J=J, K=K, points=points, neighbors=bad, rest_edges=rest, rotations=rotations)
    # a range once checked is not checked again for the same unwritten tensor, but a write is seen
    arap(F=F, J=J, K=K, points=points, neighbors=neighbors, rest_edges=rest, rotations=rotations)
    neighbors[2, 1] = J
    with pytest.raises(ValueError, match=r"argument neighbors holds indices in \[0, 5\]"):
        arap(F=F, J=J, K=K, points=points, neighbors=neighbors, rest_edges=rest, rotations=rotations)
    neighbors[2, 1] = 0
    with pytest.raises(ValueError, match=r"argument neighbors holds indices in \[0, 4\], the call needs them in \[0, J\) = \[0, 4\)"):
        arap(F=F, J=J - 1, K=K, points=points[:, :J - 1].contiguous(), neighbors=neighbors[:J - 1].contiguous(),
             rest_edges=rest[:J - 1].contiguous(), rotations=rotations[:, :J - 1].contiguous())
    with pytest.raises(ValueError, match=r"argument rotations holds 90 elements, the call needs F\*J\*9 = 135"):
        arap(F=3, J=J, K=K, points=torch.rand(3, J, 3, dtype=torch.float64), neighbors=neighbors, rest_edges=rest,
             rotations=rotations)


@pytest.mark.parametrize("kernel", sorted(native.KERNELS))
def test_every_kernel_refuses_an_array_of_the_wrong_size_before_c_runs(kernel):
    """Per kernel function, from its table: arguments of the sizes the call states pass; each sized
    array one element short is refused naming it, and the C function is never reached (a stub
    stands in for it, so a missed check cannot corrupt the test process)."""
    for prototype in native.parse_prototypes(native.KERNELS[kernel].prototypes):
        calls = []

        def stub(*args):
            calls.append(args)
            return 0

        fn = native.NativeFunction(stub, prototype, torch.float64)
        kwargs = {p.name: (0.5 if p.ctype == "double" else 2) for p in prototype.params if not p.pointer}
        for p in prototype.params:  # unsized pointers first: a count may read them (n(w), tile_offsets[-1])
            if p.pointer and p.count is None:
                kwargs[p.name] = torch.zeros(1, dtype=torch.float64 if p.ctype == "S" else native._ELEMENTS[p.ctype])
        scope = {**kwargs, "n": lambda x: x.numel(), "max": max, "int": int}
        for p in prototype.params:
            if p.pointer and p.count is not None:
                kwargs[p.name] = torch.zeros(int(eval(p.count, {**scope, **kwargs})),
                                             dtype=torch.float64 if p.ctype == "S" else native._ELEMENTS[p.ctype])
        fn(**kwargs)
        assert len(calls) == 1, prototype.name
        for p in prototype.params:
            if not (p.pointer and p.count is not None) or kwargs[p.name].numel() == 0:
                continue
            short = {**kwargs, p.name: kwargs[p.name][:-1].contiguous()}
            with pytest.raises(ValueError, match=rf"^{fn.name}: argument {p.name} holds \d+ elements, the call needs "):
                fn(**short)
        assert len(calls) == 1, f"{prototype.name}: C was reached with a short array"


@pytest.mark.parametrize("kernel", sorted(native.KERNELS))
def test_every_native_pointer_states_its_size(kernel):
    """Each pointer of the table carries its element count (the spectral band weights ``w`` excepted:
    their count is the band count, which the call does not pass; ``band``'s values are checked against it)."""
    for prototype in native.parse_prototypes(native.KERNELS[kernel].prototypes):
        unsized = [p.name for p in prototype.params if p.pointer and p.count is None]
        assert unsized == (["w"] if prototype.name == "st_spectral_fused_S" else []), (prototype.name, unsized)


def test_build_failure_raises_for_backend_cpu_and_warns_once_for_auto(no_compiler):
    attempts = no_compiler
    g, cams = _scene(n=30)
    with pytest.raises(native.NativeBuildError, match=r"(?s)render backend 'cpu': no C\+\+ compiler.*backend='torch'"):
        render(g, cams, backend="cpu")
    with pytest.raises(RuntimeError):  # NativeBuildError is a RuntimeError, as the build error was before
        render(g, cams, backend="cpu")
    with pytest.warns(RuntimeWarning, match="falls back to 'torch'"):
        out = render(g, cams)
    assert out.meta["backend"] == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per process, not one per render
        again = render(g, cams)
    assert torch.equal(again.rgb, render(g, cams, backend="torch").rgb)
    assert len(attempts) == 1  # the failure is remembered, not rebuilt on every render


@pytest.mark.skipif(not (sys.platform.startswith("linux")
                         and os.path.exists(os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1"))),
                    reason="the shared OpenMP pool holds only for a Linux torch that ships libgomp.so.1 (native.py)")
def test_native_kernels_share_the_libgomp_torch_loaded():
    from spectral_tracking.render.cpu import load_library

    load_library()
    native.load_or_warn("spectral", "")
    with open("/proc/self/maps") as maps:
        gomp = {line.split()[-1] for line in maps if "libgomp" in line}
    assert gomp == {os.path.realpath(os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1"))}


def test_native_build_cache_follows_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("SPECTRAL_TRACKING_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert native.cache_dir() == tmp_path / "xdg" / "spectral_tracking" / "ext"
    monkeypatch.setenv("SPECTRAL_TRACKING_CACHE", str(tmp_path / "own"))
    assert native.cache_dir() == tmp_path / "own" / "ext"


@pytest.mark.slow
def test_concurrent_first_builds_share_the_cache(tmp_path):
    """Two processes compiling the C++ renderer (projection and compositor) into the same empty cache
    both succeed, and leave one library per kernel."""
    code = ("import torch; from spectral_tracking.render import render; "
            "from spectral_tracking.gaussians import random_gaussians; "
            "from spectral_tracking.cameras import orbit_camera; "
            "print(float(render(random_gaussians(50), orbit_camera(0.0, width=16, height=16), backend='cpu').alpha.sum()))")
    env = dict(os.environ, SPECTRAL_TRACKING_CACHE=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    assert results[0][0] == results[1][0] and float(results[0][0]) > 0
    assert sorted(p.name.split("_")[0] for p in (tmp_path / "ext").glob("*.so")) == ["project", "rasterize"]
    assert not list((tmp_path / "ext").glob("*.tmp"))
