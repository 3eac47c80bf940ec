"""Tests of the ARAP regulariser on control points (spectral_tracking/losses/arap.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectral_tracking.deform import DirectDeformation
from spectral_tracking.gaussians import quat_to_rotmat, random_gaussians
from spectral_tracking.losses.arap import (
    ARAP,
    arap_on_frames,
    arap_weight,
    best_fit_rotations,
    canonical_neighbors,
    sample_frames,
)


def rotation(seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return quat_to_rotmat(torch.randn(4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)).to(dtype)


@pytest.fixture
def points() -> torch.Tensor:
    return torch.rand(300, 3, generator=torch.Generator().manual_seed(0)) - 0.5


def arap_reference(rest: np.ndarray, deformed: np.ndarray, k: int) -> float:
    """Plain loop twin: brute-force neighbours, per-point Kabsch with numpy, the textbook sum."""
    J = rest.shape[0]
    total = 0.0
    for i in range(J):
        d = ((rest - rest[i]) ** 2).sum(1)
        d[i] = np.inf
        nbrs = np.argsort(d, kind="stable")[:k]
        P = rest[i] - rest[nbrs]  # [k, 3]
        Q = deformed[i] - deformed[nbrs]
        U, _, Vt = np.linalg.svd(P.T @ Q)
        R = Vt.T @ U.T
        if np.linalg.det(R) < 0:
            Vt[2] *= -1
            R = Vt.T @ U.T
        total += float(((Q - P @ R.T) ** 2).sum())
    return total


def test_matches_plain_reference(points):
    gen = torch.Generator().manual_seed(1)
    deformed = points @ rotation(2).T + 0.05 * torch.randn(points.shape, generator=gen)
    deformed = deformed * torch.tensor([1.3, 1.0, 0.8])
    arap = ARAP(points.double(), k=10)
    got = float(arap(deformed.double()))
    ref = arap_reference(points.double().numpy(), deformed.double().numpy(), 10)
    assert got == pytest.approx(ref, rel=1e-9)
    assert got > 1e-2


def test_zero_for_rigid_motion(points):
    arap = ARAP(points, k=10)
    frames = torch.stack([points @ rotation(s).T + torch.randn(3, generator=torch.Generator().manual_seed(s)) for s in range(4)])
    assert float(arap(frames)) < 1e-6
    assert float(arap(points)) < 1e-6
    # mirrored pose: a reflection is not a rotation, so it is not free
    assert float(arap(points * torch.tensor([-1.0, 1.0, 1.0]))) > 1e-2


def test_positive_for_stretch_and_gradient_restores(points):
    arap = ARAP(points, k=10)
    stretched = (points * torch.tensor([1.6, 1.0, 1.0])).requires_grad_()
    energy = arap(stretched)
    assert float(energy.detach()) > 1e-2
    energy.backward()
    # the gradient pushes along the stretched axis only, toward less stretch
    x_extent = lambda p: float((p[:, 0].max() - p[:, 0].min()).detach())  # noqa: E731
    p = stretched.detach()
    before = x_extent(p)
    for _ in range(30):
        p = p.clone().requires_grad_()
        e = arap(p)
        (g,) = torch.autograd.grad(e, p)
        p = p - 0.02 * g
    assert float(arap(p).detach()) < 0.5 * float(energy.detach())
    assert x_extent(p) < before - 0.05
    # the gradient is exactly that of the energy with rotations held fixed (no gradient through SVD)
    assert torch.isfinite(stretched.grad).all()


def test_frames_averaged_and_reduction(points):
    arap = ARAP(points, k=6)
    a = points * torch.tensor([1.2, 1.0, 1.0])
    b = points @ rotation(3).T * 0.9
    both = float(arap(torch.stack([a, b])))
    assert both == pytest.approx((float(arap(a)) + float(arap(b))) / 2, rel=1e-5)
    mean = ARAP(points, k=6, reduction="mean")
    assert float(mean(a)) == pytest.approx(float(arap(a)) / (points.shape[0] * 6), rel=1e-5)


def test_best_fit_rotation_recovers_rotation_and_is_proper():
    gen = torch.Generator().manual_seed(5)
    rest = torch.randn(20, 8, 3, generator=gen, dtype=torch.float64)
    R = torch.stack([rotation(s, torch.float64) for s in range(20)])
    est = best_fit_rotations(rest, rest @ R.transpose(-1, -2))
    torch.testing.assert_close(est, R, atol=1e-9, rtol=0)
    mirrored = best_fit_rotations(rest, rest * torch.tensor([-1.0, 1, 1], dtype=torch.float64))
    torch.testing.assert_close(torch.det(mirrored), torch.ones(20, dtype=torch.float64), atol=1e-9, rtol=0)


def test_degenerate_neighbourhoods_no_nan():
    pts = torch.zeros(24, 3)
    pts[12:] = torch.tensor([1.0, 0.0, 0.0])  # two clusters of coincident points
    arap = ARAP(pts, k=10)
    nbrs = arap.neighbors
    assert not (nbrs == torch.arange(24)[:, None]).any()  # never itself, even among duplicates
    assert float(arap(pts)) == 0.0
    moved = (pts + 0.1 * torch.randn(24, 3, generator=torch.Generator().manual_seed(0))).requires_grad_()
    e = arap(moved)
    e.backward()
    assert torch.isfinite(e) and float(e.detach()) > 0 and torch.isfinite(moved.grad).all()
    # collinear and fully collapsed deformed configurations
    line = torch.rand(15, 3)
    line[:, 1:] = 0
    arap_line = ARAP(line, k=4)
    collapsed = torch.zeros(15, 3, requires_grad=True)
    e = arap_line(collapsed)
    e.backward()
    assert torch.isfinite(e) and torch.isfinite(collapsed.grad).all()
    assert float(arap_line(line @ rotation(9).T)) < 1e-6


def test_canonical_neighbors_match_brute_force(points):
    nbrs = canonical_neighbors(points, 5, chunk_size=64)
    d = torch.cdist(points, points)
    d.fill_diagonal_(float("inf"))
    torch.testing.assert_close(d.gather(1, nbrs), d.sort(1).values[:, :5])


def test_bad_input(points):
    with pytest.raises(ValueError, match="at least k \\+ 1"):
        ARAP(points[:10], k=10)
    with pytest.raises(ValueError, match="shape \\[J, 3\\]"):
        ARAP(points[:, :2])
    with pytest.raises(ValueError, match="reduction"):
        ARAP(points, reduction="max")
    arap = ARAP(points, k=4)
    with pytest.raises(ValueError, match="\\[300, 3\\] or \\[F, 300, 3\\]"):
        arap(points[:100])
    bad = points.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        arap(bad)
    with pytest.raises(ValueError, match="non-finite"):
        ARAP(bad)


def test_schedule_and_frame_sampling():
    assert arap_weight(999, 3.0, 1000) == 0.0
    assert arap_weight(1000, 3.0, 1000) == 3.0
    with pytest.raises(ValueError):
        arap_weight(0, -1.0, 0)
    frames = sample_frames(20, 4, torch.Generator().manual_seed(0))
    assert len(set(frames)) == 4 and all(0 <= f < 20 for f in frames)
    assert sample_frames(3, 8) == [0, 1, 2]
    # include: that frame and count - 1 of the others, every other frame drawn as often as the rest
    seen = torch.zeros(20)
    for seed in range(400):
        frames = sample_frames(20, 3, torch.Generator().manual_seed(seed), include=7)
        assert 7 in frames and len(set(frames)) == 3 and frames == sorted(frames)
        seen[frames] += 1
    assert seen[7] == 400 and seen.sum() == 1200
    others = torch.cat([seen[:7], seen[8:]])
    assert others.min() > 0.5 * others.mean() and others.max() < 1.5 * others.mean()
    assert sample_frames(1, 2, include=0) == [0] and sample_frames(3, 8, include=1) == [0, 1, 2]
    with pytest.raises(ValueError, match="include"):
        sample_frames(3, 2, include=3)


def test_on_a_deformation():
    g = random_gaussians(400, seed=2)
    d = DirectDeformation(g, 4, num_control_points=50)
    arap = ARAP(d.canonical_control_points, k=10)
    assert float(arap_on_frames(arap, d, [0, 1, 3]).detach()) < 1e-6
    with torch.no_grad():
        d.offsets[1] = d.canonical_control_points * torch.tensor([0.5, 0.0, 0.0])  # stretch x by 1.5
    e = arap_on_frames(arap, d, [0, 1, 3])
    assert float(e.detach()) > 0
    e.backward()
    g1, g0 = d.offsets.grad[1].abs().sum(), d.offsets.grad[0].abs().sum()
    assert g1 > 1.0 and g0 < 1e-4 * g1  # frame 0 is at rest (up to the SVD's rounding)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_cpu_kernel_is_the_twin_of_the_torch_code(points, dtype, reduction):
    """csrc/arap.cpp (Horn's quaternion) against the torch code (SVD): energy and gradient, 3 frames."""
    gen = torch.Generator().manual_seed(4)
    rest = points.to(dtype)
    frames = torch.stack([(rest * torch.tensor([1.2, 1.0, 0.9], dtype=dtype) + 0.04 * torch.randn(rest.shape, generator=gen,
                                                                                                    dtype=dtype)) @ rotation(s, dtype).T
                          for s in range(3)])
    arap = ARAP(rest, k=10, reduction=reduction)
    results = []
    for native in (False, True):
        p = frames.clone().requires_grad_(True)
        e = arap(p, native=native)
        (2.5 * e).backward()
        results.append((e.detach(), p.grad))
    (e_ref, g_ref), (e, g) = results
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert float(abs(e - e_ref) / e_ref) < tol
    assert float((g - g_ref).abs().max() / g_ref.abs().max()) < tol


def test_cpu_kernel_energy_on_degenerate_neighbourhoods():
    """Where the best rotation is not unique (coincident or collinear points), any maximiser of
    tr(R S) gives the same energy: the twins agree on it."""
    gen = torch.Generator().manual_seed(5)
    line = torch.zeros(15, 3, dtype=torch.float64)
    line[:, 0] = torch.rand(15, generator=gen, dtype=torch.float64)
    clusters = torch.zeros(24, 3, dtype=torch.float64)
    clusters[12:, 0] = 1.0
    for rest in (line, clusters):
        arap = ARAP(rest, k=4)
        for deformed in (rest @ rotation(3, torch.float64).T, torch.zeros_like(rest),
                         rest + 0.1 * torch.randn(rest.shape, generator=gen, dtype=torch.float64)):
            assert float(arap(deformed, native=True)) == pytest.approx(float(arap(deformed, native=False)), rel=1e-9, abs=1e-12)


def test_cpu_kernel_falls_back_to_torch_without_a_compiler(points, no_compiler):
    arap = ARAP(points.double(), k=10)
    deformed = points.double() * 1.1
    with pytest.warns(RuntimeWarning, match="ARAP falls back to its torch code"):
        e = arap(deformed)
    assert float(e) == pytest.approx(float(arap(deformed, native=False)), rel=1e-12)
