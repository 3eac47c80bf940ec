"""Tests of spectral_tracking.deform: control points, skinning, the four parameterisations, export."""

from __future__ import annotations

import math

import pytest
import torch

from spectral_tracking.deform import (
    DEFORMATIONS,
    DirectDeformation,
    MLPDeformation,
    RigidDeformation,
    RigidMLPDeformation,
    TimeNet,
    axis_angle_to_quat,
    bind_to_control_points,
    blend,
    blend_reference,
    build_deformation,
    control_point_radius,
    export_frames,
    farthest_point_sampling,
    knn,
    positional_encoding,
    rotation_6d_to_rotmat,
    skin,
    skin_reference,
    skinning_weights,
    transposed_weights,
)
from spectral_tracking.gaussians import Gaussians, load_ply, quat_to_rotmat, random_gaussians, rotmat_to_quat

ALL_LR = {"deform": 1e-3, "rigid": 1e-3, "radius": 1e-3}
SMALL = dict(num_control_points=40)  # keeps construction fast
SMALL_MLP = dict(num_control_points=40, depth=4, width=32, skip=1)


def small_cfg(name: str) -> dict:
    return dict(SMALL_MLP) if "mlp" in name else dict(SMALL)


@pytest.fixture
def asset() -> Gaussians:
    g = random_gaussians(600, sh_degree=1, extent=0.5, seed=3)
    return g.translate(torch.tensor([0.3, -0.2, 1.0]))  # off-origin, so "about the centre" matters


def random_rotation(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return quat_to_rotmat(torch.randn(4, generator=gen))


def assert_same_rotations(qa: torch.Tensor, qb: torch.Tensor, atol: float) -> None:
    torch.testing.assert_close(quat_to_rotmat(qa), quat_to_rotmat(qb), atol=atol, rtol=0)


# ----------------------------------------------------------------------------------------------
# Farthest point sampling, kNN, radii
# ----------------------------------------------------------------------------------------------
def test_fps_distinct_and_deterministic():
    pts = torch.rand(2000, 3, generator=torch.Generator().manual_seed(0))
    idx = farthest_point_sampling(pts, 100)
    assert idx.shape == (100,) and idx.dtype == torch.long
    assert len(set(idx.tolist())) == 100
    assert torch.unique(pts[idx], dim=0).shape[0] == 100
    assert int(idx[0]) == 0
    assert torch.equal(idx, farthest_point_sampling(pts, 100))
    assert int(farthest_point_sampling(pts, 5, start_index=7)[0]) == 7
    # each new pick is the farthest from the ones before (checked literally for the first few)
    for j in range(1, 6):
        d = torch.cdist(pts, pts[idx[:j]]).min(1).values
        assert float(d[idx[j]]) == pytest.approx(float(d.max()), rel=1e-6)


def test_fps_covers_better_than_random():
    pts = torch.rand(5000, 3, generator=torch.Generator().manual_seed(1)) * torch.tensor([2.0, 1.0, 0.5])
    J = 64
    fps = pts[farthest_point_sampling(pts, J)]
    lo, hi = pts.min(0).values, pts.max(0).values
    cover_fps = float(torch.cdist(pts, fps).min(1).values.max())
    for seed in range(5):
        rnd = pts[torch.randperm(5000, generator=torch.Generator().manual_seed(seed))[:J]]
        cover_rnd = float(torch.cdist(pts, rnd).min(1).values.max())
        assert cover_fps < cover_rnd  # smaller covering radius
        # bounding box of the samples reaches further toward the asset's box
        gap_fps = float(((fps.min(0).values - lo) + (hi - fps.max(0).values)).sum())
        gap_rnd = float(((rnd.min(0).values - lo) + (hi - rnd.max(0).values)).sum())
        assert gap_fps < gap_rnd


def test_fps_errors():
    pts = torch.rand(10, 3)
    with pytest.raises(ValueError, match="only 10 Gaussians"):
        farthest_point_sampling(pts, 11)
    with pytest.raises(ValueError, match=">= 1"):
        farthest_point_sampling(pts, 0)
    with pytest.raises(ValueError, match="empty"):
        farthest_point_sampling(torch.zeros(0, 3), 1)
    with pytest.raises(ValueError, match="start_index"):
        farthest_point_sampling(pts, 3, start_index=10)
    bad = pts.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        farthest_point_sampling(bad, 3)
    dup = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="2 distinct positions"):
        farthest_point_sampling(dup, 3)
    assert sorted(farthest_point_sampling(dup, 2).tolist()) == [0, 1]


def test_knn_matches_brute_force():
    gen = torch.Generator().manual_seed(2)
    q, r = torch.randn(300, 3, generator=gen), torch.randn(50, 3, generator=gen)
    d2, idx = knn(q, r, 4, chunk_size=64)
    ref = torch.cdist(q, r).square()
    ref_d2, _ = ref.sort(1)
    torch.testing.assert_close(d2, ref_d2[:, :4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ref.gather(1, idx), d2, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="k must be"):
        knn(q, r, 51)


def test_radius_and_weights():
    c = torch.tensor([[0.0, 0, 0], [1, 0, 0], [3, 0, 0]])
    r = control_point_radius(c, num_neighbors=1)
    torch.testing.assert_close(r, torch.tensor([1.0, 1.0, 2.0]))
    d2 = torch.tensor([[0.0, 1.0], [4.0, 4.0]])
    w = skinning_weights(d2, torch.ones(2, 2))
    e = math.exp(-0.5)
    torch.testing.assert_close(w, torch.tensor([[1 / (1 + e), e / (1 + e)], [0.5, 0.5]]))
    # far from every control point: still finite, still normalised
    w_far = skinning_weights(torch.tensor([[1e6, 2e6]]), torch.full((1, 2), 1e-3))
    assert torch.isfinite(w_far).all() and float(w_far.sum()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2"):
        control_point_radius(c[:1])


# ----------------------------------------------------------------------------------------------
# Skinning: fast path vs the literal formula
# ----------------------------------------------------------------------------------------------
def _skin_case(dtype=torch.float64, n=500, j=30, k=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    g = random_gaussians(n, seed=seed, dtype=dtype)
    c = g.means[farthest_point_sampling(g.means, j)]
    binding, d2 = bind_to_control_points(g.means, c, k)
    radius = control_point_radius(c).requires_grad_()
    tr = (0.05 * torch.randn(j, 3, generator=gen, dtype=dtype)).requires_grad_()
    rot = (torch.tensor([1.0, 0, 0, 0], dtype=dtype) + 0.3 * torch.randn(j, 4, generator=gen, dtype=dtype)).requires_grad_()
    means = g.means.clone().requires_grad_()
    quats = g.quats.clone().requires_grad_()
    return g, c, binding, d2, radius, tr, rot, means, quats


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_skin_fast_matches_reference(dtype):
    g, c, binding, d2, radius, tr, rot, means, quats = _skin_case(dtype)
    gen = torch.Generator().manual_seed(9)
    wm, wq = torch.randn(means.shape, generator=gen, dtype=dtype), torch.randn(quats.shape, generator=gen, dtype=dtype)
    results = []
    for fn, index in ((skin, binding), (skin_reference, binding.neighbor_index)):
        weights = skinning_weights(d2, radius[binding.neighbor_index])
        m, q = fn(means, quats, c, index, weights, tr, rot)
        ((m * wm).sum() + (q * wq).sum()).backward()
        results.append((m.detach(), q.detach(), [t.grad.clone() for t in (tr, rot, radius, means, quats)]))
        for t in (tr, rot, radius, means, quats):
            t.grad = None
    tol = dict(atol=2e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(results[0][0], results[1][0], **tol)
    torch.testing.assert_close(results[0][1], results[1][1], **tol)
    for ga, gb in zip(results[0][2], results[1][2]):
        assert ga.abs().sum() > 0
        torch.testing.assert_close(ga, gb, **tol)


def test_blend_gradcheck():
    g, c, binding, d2, *_ = _skin_case(torch.float64, n=60, j=10, k=3)
    w = skinning_weights(d2, torch.ones_like(d2) * 0.3).requires_grad_()
    table = torch.randn(10, 5, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(blend(binding, w, table), blend_reference(binding, w, table))
    assert torch.autograd.gradcheck(lambda t, ww: blend(binding, ww, t), (table, w))
    # precomputed transposed weights (fixed-radius path) give the same table gradient
    (ga,) = torch.autograd.grad(blend(binding, w.detach(), table).square().sum(), table)
    (gb,) = torch.autograd.grad(blend(binding, w.detach(), table, transposed_weights(binding, w.detach())).square().sum(), table)
    torch.testing.assert_close(ga, gb, atol=1e-12, rtol=0)


def test_the_cpp_blend_matches_torchs_sparse_products_and_gives_the_same_bits_at_any_thread_count(monkeypatch):
    """csrc/skin.cpp's blend (forward, and the table's gradient by chunks of Gaussians summed in chunk
    order) against its twin, torch's sparse CSR products, past the kernel's serial size and its chunk."""
    from spectral_tracking.deform import control_points

    g, c, binding, d2, *_ = _skin_case(torch.float32, n=20_000, j=40, k=4)
    w = skinning_weights(d2, torch.ones_like(d2) * 0.3)
    table = torch.randn(40, 16, requires_grad=True)
    grad = torch.randn(20_000, 16)
    grad[::3] = 0  # Gaussians no pixel saw: the kernel skips their rows

    def blend_and_grad(threads):
        torch.set_num_threads(threads)
        out = blend(binding, w, table)
        (g_table,) = torch.autograd.grad(out, table, grad)
        return out, g_table

    before = torch.get_num_threads()
    try:
        one, two = blend_and_grad(1), blend_and_grad(2)
        monkeypatch.setattr(control_points, "_blend_kernel", lambda table, weights: None)
        twin = blend_and_grad(2)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])
    torch.testing.assert_close(one[0], twin[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(one[1], twin[1], rtol=1e-4, atol=1e-3)


def test_skin_identity_is_exact():
    g, c, binding, d2, radius, *_ = _skin_case(torch.float32)
    j = c.shape[0]
    w = skinning_weights(d2, radius.detach()[binding.neighbor_index])
    m, q = skin(g.means, g.quats, c, binding, w, torch.zeros(j, 3), torch.tensor([1.0, 0, 0, 0]).repeat(j, 1))
    assert torch.equal(m, g.means) and torch.equal(q, g.quats)


def test_rigid_motion_through_control_points():
    """All R_k equal and dc_k = R c_k + t - c_k (each control point's rigid displacement): the asset
    moves rigidly, x -> R x + t; with R = I all dc_k are equal."""
    g, c, binding, d2, radius, *_ = _skin_case(torch.float32, n=2000, j=64)
    w = skinning_weights(d2, radius.detach()[binding.neighbor_index])
    R, t = random_rotation(4), torch.tensor([0.3, -0.1, 0.25])
    q = rotmat_to_quat(R)
    expect = g.transform(R, t)
    for fn, index in ((skin, binding), (skin_reference, binding.neighbor_index)):
        m, qq = fn(g.means, g.quats, c, index, w, c @ R.T + t - c, q.expand(c.shape[0], 4))
        torch.testing.assert_close(m, expect.means, atol=1e-5, rtol=0)
        assert_same_rotations(qq, expect.quats, atol=1e-5)
        # pure translation: every dc_k the same
        m, qq = fn(g.means, g.quats, c, index, w, t.expand(c.shape[0], 3), torch.tensor([1.0, 0, 0, 0]).expand(c.shape[0], 4))
        torch.testing.assert_close(m, g.means + t, atol=1e-6, rtol=0)
        assert_same_rotations(qq, g.quats, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Parameterisations
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DEFORMATIONS))
@pytest.mark.parametrize("num_frames", [1, 4])
def test_identity_at_initialisation_exact(asset, name, num_frames):
    d = build_deformation(name, asset, num_frames, **small_cfg(name))
    frames = [0, num_frames - 1, 0.0, 1.0, 0.37, torch.tensor(0.5), torch.tensor(num_frames - 1)]
    for f in frames:
        out = d(f)
        for field in ("means", "quats", "log_scales", "opacity_logits", "sh"):
            assert torch.equal(getattr(out, field), getattr(asset, field)), (name, f, field)
        assert torch.equal(d.control_point_positions(f), d.canonical_control_points)
    assert torch.equal(d.canonical_control_points, asset.means[d.control_point_index])


@pytest.mark.parametrize("rotation", ["axis_angle", "6d"])
def test_rigid_identity_and_known_motion(asset, rotation):
    d = RigidDeformation(asset, 3, rotation=rotation, **SMALL)
    assert torch.equal(d(1).means, asset.means) and torch.equal(d(1).quats, asset.quats)
    R, t = random_rotation(7), torch.tensor([0.1, 0.2, -0.3])
    with torch.no_grad():
        if rotation == "axis_angle":
            q = rotmat_to_quat(R)
            angle = 2 * torch.atan2(q[1:].norm(), q[0])
            d.rigid.rotation[2] = q[1:] / q[1:].norm() * angle
        else:
            d.rigid.rotation[2] = torch.cat([R[:, 0], R[:, 1]])
        d.rigid.translation[2] = t
    c = d.center
    expect = asset.transform(R, t + c - R @ c)  # rotation about the asset's centre
    out = d(2)
    torch.testing.assert_close(out.means, expect.means, atol=1e-5, rtol=0)
    assert_same_rotations(out.quats, expect.quats, atol=1e-5)
    shift = (R - torch.eye(3)) @ (asset.means.mean(0) - c) + t  # the centroid turns about c
    torch.testing.assert_close(out.means.mean(0) - asset.means.mean(0), shift, atol=1e-5, rtol=0)
    # other frames untouched (per-frame), the midpoint interpolates translation
    assert torch.equal(d(0).means, asset.means)
    if rotation == "axis_angle":
        half = d(0.75)  # position 1.5: between the identity frame 1 and frame 2
        rot_half = quat_to_rotmat(axis_angle_to_quat(d.rigid.rotation[2].detach() / 2))
        torch.testing.assert_close(half.means, asset.transform(rot_half, t / 2 + c - rot_half @ c).means, atol=1e-5, rtol=0)


def test_rotation_parameterisations():
    v = torch.tensor([0.0, 0.0, math.pi / 2])
    rz90 = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    torch.testing.assert_close(quat_to_rotmat(axis_angle_to_quat(v)), rz90, atol=1e-6, rtol=0)
    small = torch.tensor([1e-6, -2e-6, 3e-6], requires_grad=True)
    q = axis_angle_to_quat(small)
    q.sum().backward()
    assert torch.isfinite(small.grad).all() and small.grad.abs().sum() > 0
    assert torch.equal(axis_angle_to_quat(torch.zeros(3)), torch.tensor([1.0, 0, 0, 0]))
    R = rotation_6d_to_rotmat(torch.tensor([2.0, 0.1, 0, 0.5, 3.0, 0.2]))
    torch.testing.assert_close(R @ R.T, torch.eye(3), atol=1e-6, rtol=0)
    assert float(torch.det(R)) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(rotation_6d_to_rotmat(torch.tensor([1.0, 0, 0, 0, 1, 0])), torch.eye(3))
    with pytest.raises(ValueError, match="degenerate"):
        rotation_6d_to_rotmat(torch.tensor([1.0, 0, 0, 2.0, 0, 0]))


def test_direct_known_rigid_motion_and_time(asset):
    d = DirectDeformation(asset, 3, **SMALL)
    R, t = random_rotation(11), torch.tensor([0.05, 0.0, -0.1])
    c = d.canonical_control_points
    with torch.no_grad():
        d.offsets[1] = c @ R.T + t - c
        d.rotations[1] = rotmat_to_quat(R)
    expect = asset.transform(R, t)
    out = d(1)
    torch.testing.assert_close(out.means, expect.means, atol=1e-5, rtol=0)
    assert_same_rotations(out.quats, expect.quats, atol=1e-5)
    torch.testing.assert_close(d.control_point_positions(1), c @ R.T + t, atol=1e-6, rtol=0)
    # t = f / (T - 1): time 0.5 is frame 1 exactly
    assert torch.equal(d(0.5).means, out.means)
    # between frames: offsets interpolate linearly
    torch.testing.assert_close(d.control_point_positions(0.25), c + (c @ R.T + t - c) / 2, atol=1e-6, rtol=0)


def test_mlp_structure_and_motion(asset):
    net = TimeNet()
    assert net.in_dim == 3 * 21 + 13
    assert len(net.body) == 8 and all(layer.out_features == 256 for layer in net.body)
    assert net.body[5].in_features == 256 + net.in_dim  # skip after layer 4
    pts = torch.rand(7, 3) * 2 - 1
    for t in (0.0, 0.3, 1.0):
        dxyz, q = net(pts, torch.tensor(t))
        assert torch.equal(dxyz, torch.zeros(7, 3)) and torch.equal(q, torch.tensor([1.0, 0, 0, 0]).expand(7, 4))
    enc = positional_encoding(torch.tensor([[0.5]]), 2)
    torch.testing.assert_close(enc, torch.tensor([[0.5, math.sin(0.5), math.sin(1.0), math.cos(0.5), math.cos(1.0)]]))
    # once the heads are non-zero the motion depends on time
    d = MLPDeformation(asset, 5, **SMALL_MLP)
    with torch.no_grad():
        d.net.head_translation.weight.normal_(0, 0.01)
    assert not torch.equal(d(0).means, d(4).means)
    assert (d.control_point_positions(2) - d.canonical_control_points).abs().max() > 0


def test_timenet_bf16_matches_fp32():
    """precision=bf16: same parameters, outputs within bf16 rounding of float32, float32 outputs and
    gradients, the identity at initialisation kept exactly (the heads stay float32)."""
    torch.manual_seed(0)
    ref, fast = TimeNet(), TimeNet(precision="bf16")
    pts, t = torch.rand(40, 3) * 2 - 1, torch.tensor([0.0, 0.4, 1.0])
    d0, q0 = fast(pts, t)
    assert torch.equal(d0, torch.zeros(3, 40, 3)) and torch.equal(q0[..., 0], torch.ones(3, 40))
    with torch.no_grad():
        for head in (ref.head_translation, ref.head_rotation):
            head.weight.normal_(0, 0.05)
    fast.load_state_dict(ref.state_dict())  # same keys: a checkpoint loads under either precision
    (d_ref, q_ref), (d_fast, q_fast) = ref(pts, t), fast(pts, t)
    assert d_fast.dtype == torch.float32 and q_fast.dtype == torch.float32
    for a, b in ((d_ref, d_fast), (q_ref, q_fast)):
        err = (a - b).abs().max() / a.abs().max()
        assert 1e-6 < err < 0.03, err  # differs (bf16 ran) but only by rounding
    (d_fast.square().sum() + q_fast.square().sum()).backward()
    (d_ref.square().sum() + q_ref.square().sum()).backward()
    g_ref, g_fast = ref.body[0].weight.grad, fast.body[0].weight.grad
    assert g_fast.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(g_ref.flatten(), g_fast.flatten(), dim=0) > 0.99
    with pytest.raises(ValueError, match="precision"):
        TimeNet(precision="fp16")


@pytest.mark.parametrize("fast", [True, False])
def test_timenet_auto_precision_follows_the_hardware(monkeypatch, fast):
    """precision=auto is bf16 exactly where `bf16_is_fast` says the device has bf16 arithmetic."""
    import spectral_tracking.deform.mlp as mlp

    monkeypatch.setattr(mlp, "bf16_is_fast", lambda device_type: fast)
    torch.manual_seed(0)
    nets = {p: TimeNet(depth=3, width=32, skip=0, precision=p) for p in ("auto", "fp32", "bf16")}
    with torch.no_grad():
        nets["auto"].head_translation.weight.normal_(0, 0.1)
    for net in nets.values():
        net.load_state_dict(nets["auto"].state_dict())
    pts, t = torch.rand(9, 3), torch.tensor([0.2, 0.7])
    same = nets["bf16" if fast else "fp32"](pts, t)[0]
    assert torch.equal(nets["auto"](pts, t)[0], same)


def test_rigid_mlp_shared_and_per_frame(asset):
    d = RigidMLPDeformation(asset, 4, **SMALL_MLP)
    assert d.rigid.translation.shape == (1, 3)  # shared by default
    with torch.no_grad():
        d.rigid.translation[0] = torch.tensor([0.0, 0.0, 0.5])
    for f in range(4):
        torch.testing.assert_close(d(f).means, asset.means + torch.tensor([0.0, 0.0, 0.5]))
    per = RigidMLPDeformation(asset, 4, rigid_per_frame=True, rotation="6d", **SMALL_MLP)
    assert per.rigid.translation.shape == (4, 3) and per.rigid.rotation.shape == (4, 6)


@pytest.mark.parametrize("name", sorted(DEFORMATIONS))
def test_gradients_reach_every_parameter(asset, name):
    cfg = small_cfg(name)
    if name != "rigid":
        cfg["learnable_radius"] = True
    d = build_deformation(name, asset, 3, **cfg)
    canonical_before = asset.clone()
    # leave the identity (where zero-initialised heads block the gradient to the body by design)
    with torch.no_grad():
        for p in d.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    gen = torch.Generator().manual_seed(0)
    out = d(1)
    loss = (out.means * torch.randn(out.means.shape, generator=gen)).sum()
    loss = loss + (out.quats * torch.randn(out.quats.shape, generator=gen)).sum()
    loss = loss + d.control_point_positions(2).square().sum()
    loss.backward()
    named = dict(d.named_parameters())
    assert named, name
    for pname, p in named.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"
    groups = d.param_groups(ALL_LR)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in d.parameters())  # every parameter once
    opt = torch.optim.Adam(groups)
    opt.step()
    for field in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(getattr(d.canonical, field), getattr(canonical_before, field))
    assert not any(b.requires_grad for b in d.buffers())


def test_param_groups(asset):
    d = RigidMLPDeformation(asset, 2, learnable_radius=True, **SMALL_MLP)
    groups = d.param_groups({"deform": 2e-4, "rigid": 1e-3, "radius": 1e-4})
    assert {g["name"]: g["lr"] for g in groups} == {"deform": 2e-4, "rigid": 1e-3, "radius": 1e-4}
    with pytest.raises(ValueError, match="no learning rate for group 'rigid'"):
        d.param_groups({"deform": 1e-3, "radius": 1e-3})
    with pytest.raises(ValueError, match="unknown group"):
        d.param_groups({**ALL_LR, "mlp": 1e-3})
    r = RigidDeformation(asset, 2, **SMALL)
    assert [g["name"] for g in r.param_groups(ALL_LR)] == ["rigid"]  # extra known keys are fine


def test_state_dict_roundtrip(asset):
    a = DirectDeformation(asset, 3, **SMALL)
    with torch.no_grad():
        a.offsets.normal_(0, 0.01)
    b = DirectDeformation(asset, 3, **SMALL)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(2).means, b(2).means)


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------
def test_bad_input(asset):
    empty = Gaussians(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 1, 3))
    for name in sorted(DEFORMATIONS):
        with pytest.raises(ValueError, match="empty"):
            build_deformation(name, empty, 3, **small_cfg(name))
        with pytest.raises(ValueError, match="num_control_points = 601 is larger than the number of Gaussians"):
            build_deformation(name, asset, 3, **{**small_cfg(name), "num_control_points": 601})
    nan_asset = asset.clone()
    nan_asset.log_scales[5, 1] = float("inf")
    with pytest.raises(ValueError, match="log_scales holds 1 non-finite"):
        DirectDeformation(nan_asset, 3, **SMALL)
    with pytest.raises(ValueError, match="num_frames"):
        DirectDeformation(asset, 0, **SMALL)

    d = DirectDeformation(asset, 3, **SMALL)
    for bad, msg in [(3, "frame index 3 out of range"), (-1, "out of range"), (1.5, "outside \\[0, 1\\]"),
                     (float("nan"), "outside"), (True, "bool"), (torch.tensor([0, 1]), "scalar"), ("1", "got str")]:
        with pytest.raises(ValueError, match=msg):
            d(bad)
    with pytest.raises(ValueError, match="out of range"):
        d.control_point_positions(7)
    with torch.no_grad():
        d.offsets[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="offsets"):
        d(0)

    with pytest.raises(ValueError, match="unknown deformation 'spline'"):
        build_deformation("spline", asset, 3)
    with pytest.raises(ValueError, match="does not take \\['widht'\\]"):
        build_deformation("mlp", asset, 3, widht=64)
    with pytest.raises(ValueError, match="rotation must be one of"):
        build_deformation("rigid", asset, 3, rotation="euler", **SMALL)


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------
def test_export_frames(asset, tmp_path):
    d = RigidDeformation(asset, 3, **SMALL)
    with torch.no_grad():
        d.rigid.translation[2] = torch.tensor([0.0, 1.0, 0.0])
    paths = export_frames(d, tmp_path / "ply")
    assert [p.name for p in paths] == ["frame_0000.ply", "frame_0001.ply", "frame_0002.ply"]
    back = load_ply(paths[2])
    torch.testing.assert_close(back.means, d(2).means.detach())
    torch.testing.assert_close(back.sh, asset.sh)
    assert [p.name for p in export_frames(d, tmp_path / "some", frames=[1])] == ["frame_0001.ply"]
    with pytest.raises(ValueError, match="out of range"):
        export_frames(d, tmp_path / "bad", frames=[5])


# ----------------------------------------------------------------------------------------------
# Through the renderer
# ----------------------------------------------------------------------------------------------
def test_render_gradient_reaches_deformation():
    """deformation(frame) -> render -> image loss: gradients reach the motion parameters, and one
    descent step on the rigid translation moves the asset toward a shifted target."""
    from spectral_tracking.cameras import orbit_camera
    from spectral_tracking.render import render

    g = random_gaussians(150, extent=0.3, scale_range=(0.03, 0.06), seed=5)
    cams = orbit_camera([0.0, 90.0], elevation_deg=10.0, radius=2.0, width=32, height=32)
    target = render(g.translate(torch.tensor([0.08, 0.0, 0.0])), cams, backend="torch").alpha.detach()
    d = RigidMLPDeformation(g, 2, num_control_points=20, depth=2, width=16, skip=-1)
    with torch.no_grad():
        d.net.head_translation.weight.normal_(0, 0.01)
    out = render(d(1), cams, backend="torch")
    loss = (out.alpha - target).square().mean()
    loss.backward()
    assert d.rigid.translation.grad.abs().sum() > 0
    assert d.net.head_translation.weight.grad.abs().sum() > 0
    assert d.net.body[0].weight.grad.abs().sum() > 0
    assert float(d.rigid.translation.grad[0, 0]) < 0  # moving +x lowers the loss


def test_copy_frame_warm_starts_per_frame_models():
    from spectral_tracking.deform import build_deformation
    from spectral_tracking.gaussians import random_gaussians

    g = random_gaussians(200, seed=1)
    direct = build_deformation("direct", g, 3, num_control_points=20)
    with torch.no_grad():
        direct.offsets[0] += 0.1
    direct.copy_frame(0, 1)
    assert torch.allclose(direct(1).means, direct(0).means) and not torch.allclose(direct(2).means, direct(0).means)
    rigid = build_deformation("rigid", g, 3, num_control_points=20)
    with torch.no_grad():
        rigid.rigid.translation[0] += torch.tensor([0.2, 0.0, 0.0])
    rigid.copy_frame(0, 2)
    assert torch.allclose(rigid(2).means, rigid(0).means)


def test_copy_frame_warm_starts_rigid_mlp_per_frame_and_is_a_noop_for_shared_models():
    g = random_gaussians(200, seed=1)
    rm = build_deformation("rigid_mlp", g, 3, rigid_per_frame=True, **SMALL_MLP)
    with torch.no_grad():
        rm.rigid.translation[0] += torch.tensor([0.0, 0.3, 0.0])
    rm.copy_frame(0, 2)
    assert torch.equal(rm.rigid.translation[2], rm.rigid.translation[0])
    shared = build_deformation("mlp", g, 3, **SMALL_MLP)
    before = {k: v.clone() for k, v in shared.state_dict().items()}
    shared.copy_frame(0, 1)  # the TimeNet is shared over time: nothing to copy, nothing changes
    assert all(torch.equal(before[k], v) for k, v in shared.state_dict().items())


def test_appearance_wrapper_is_seen_by_frames_export_and_param_groups(asset, tmp_path):
    from spectral_tracking.deform.appearance import WithAppearance

    d = WithAppearance(build_deformation("mlp", asset, 2, **SMALL_MLP))
    with torch.no_grad():
        d.appearance_offset.fill_(0.25)
    g = d(1)
    torch.testing.assert_close(g.sh, asset.sh + 0.25)
    (path,) = export_frames(d, tmp_path, frames=[1])
    torch.testing.assert_close(load_ply(path).sh, asset.sh + 0.25, atol=1e-6, rtol=0)
    groups = {p["name"]: p["lr"] for p in d.param_groups({**ALL_LR, "appearance": 0.5})}
    assert groups == {"deform": 1e-3, "appearance": 0.5}
    with pytest.raises(ValueError, match="appearance"):
        d.param_groups(ALL_LR)
    assert d.canonical_control_points.shape == (40, 3) and d.num_frames == 2


def test_skin_cpu_kernel_gradcheck_and_torch_twin():
    """csrc/skin.cpp (the per-Gaussian end of `skin`) against its torch twin and finite differences,
    including a blended quaternion of zero length (the clamped normalisation)."""
    from spectral_tracking.deform.control_points import _skin_tail, _SkinTailCPU

    gen = torch.Generator().manual_seed(3)
    mixed = (0.3 * torch.randn(12, 16, generator=gen, dtype=torch.float64)).requires_grad_()
    means = torch.randn(12, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    quats = torch.randn(12, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_SkinTailCPU.apply, (mixed, means, quats))
    with torch.no_grad():
        mixed[0, 12:] = torch.tensor([-1.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # dq + (1,0,0,0) = 0
    outs = [fn(mixed, means, quats) for fn in (_SkinTailCPU.apply, _skin_tail)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    grads = [torch.autograd.grad(sum((o * (i + 1)).sum() for i, o in enumerate(out)), (mixed, means, quats)) for out in outs]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


def test_skin_cpu_kernel_backward_skips_gaussians_without_gradient():
    """A Gaussian whose incoming gradients are all zero (hidden in a dense asset) is skipped by the
    kernel's backward: its rows are zero, the others as the torch twin gives them."""
    from spectral_tracking.deform.control_points import _skin_tail, _SkinTailCPU

    gen = torch.Generator().manual_seed(4)
    mixed = (0.3 * torch.randn(40_000, 16, generator=gen)).requires_grad_()
    means = torch.randn(40_000, 3, generator=gen, requires_grad=True)
    quats = torch.randn(40_000, 4, generator=gen, requires_grad=True)
    v_means, v_quats = torch.randn(40_000, 3, generator=gen), torch.randn(40_000, 4, generator=gen)
    hidden = torch.rand(40_000, generator=gen) < 0.6
    v_means[hidden], v_quats[hidden] = 0.0, 0.0
    grads = [torch.autograd.grad(fn(mixed, means, quats), (mixed, means, quats), (v_means, v_quats))
             for fn in (_SkinTailCPU.apply, _skin_tail)]
    for a, b in zip(*grads):
        assert torch.equal(a[hidden], torch.zeros_like(a[hidden]))
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_skin_fused_kernel_is_the_two_step_path():
    """`skin` on the CPU with constant weights and canonical asset (tracking) takes the fused kernel
    (blend and end in one pass each way): the same bits as the blend then the end, forward and the
    motion's gradients, with a third of the Gaussians hidden (zero gradient), in float32 and float64, at
    4 neighbours and at 10 (from 8 on the compiler vectorised the fused blend differently before its
    multiply-adds were written out); through finite differences. Where the weights or the canonical need
    a gradient it takes the two-step path."""
    import spectral_tracking.deform.control_points as cp

    gen = torch.Generator().manual_seed(5)
    for dtype, n, k in ((torch.float32, 30_000, 4), (torch.float64, 2_000, 4), (torch.float32, 3_000, 10),
                        (torch.float64, 2_000, 10)):
        g, c, binding, d2, radius, *_ = _skin_case(dtype, n=n, j=64, k=k)
        j = c.shape[0]
        w = skinning_weights(d2, radius.detach()[binding.neighbor_index])
        tr = 0.05 * torch.randn(j, 3, generator=gen, dtype=dtype)
        rot = torch.nn.functional.normalize(torch.tensor([1.0, 0, 0, 0], dtype=dtype)
                                            + 0.1 * torch.randn(j, 4, generator=gen, dtype=dtype), dim=-1)
        v_m, v_q = torch.randn(n, 3, generator=gen, dtype=dtype), torch.randn(n, 4, generator=gen, dtype=dtype)
        v_m[::3], v_q[::3] = 0.0, 0.0
        outs = []
        for fused in (True, False):
            t_, r_ = tr.clone().requires_grad_(), rot.clone().requires_grad_()
            applies = cp._fused_applies
            if not fused:
                cp._fused_applies = lambda *a: False
            try:
                m, q = skin(g.means, g.quats, c, binding, w, t_, r_)
            finally:
                cp._fused_applies = applies
            assert cp._fused_applies(cp._motion_table(c, t_, r_), w, g.means, g.quats)
            outs.append((m, q, *torch.autograd.grad((m, q), (t_, r_), (v_m, v_q))))
        for a, b in zip(*outs):
            assert torch.equal(a, b)
    g, c, binding, d2, radius, *_ = _skin_case(torch.float64, n=40, j=8, k=3)
    w = skinning_weights(d2, radius.detach()[binding.neighbor_index])
    table = (0.2 * torch.randn(8, 16, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: cp._SkinFusedCPU.apply(t, w, binding, g.means, g.quats), (table,))
    assert not cp._fused_applies(table, w.clone().requires_grad_(), g.means, g.quats)
    assert not cp._fused_applies(table, w, g.means.clone().requires_grad_(), g.quats)
    assert not cp._fused_applies(table, w, g.means, g.quats.clone().requires_grad_())
    assert not cp._fused_applies(table.float(), w, g.means, g.quats)  # mixed dtypes: the two steps


def test_skin_falls_back_to_torch_without_a_compiler(no_compiler):
    g, c, binding, d2, radius, *_ = _skin_case(torch.float32)
    j = c.shape[0]
    w = skinning_weights(d2, radius.detach()[binding.neighbor_index])
    with pytest.warns(RuntimeWarning, match="skinning falls back to its torch code"):
        m, q = skin(g.means, g.quats, c, binding, w, torch.zeros(j, 3), torch.tensor([1.0, 0, 0, 0]).repeat(j, 1))
    assert torch.equal(m, g.means) and torch.equal(q, g.quats)
