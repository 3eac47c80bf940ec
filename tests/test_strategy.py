"""Spectral entropy, the anisotropic needle split and SpectralGSStrategy's optimizer bookkeeping."""

import math

import pytest
import torch

from spectral_tracking.gaussians import quat_to_rotmat, random_gaussians
from spectral_tracking.fit.strategy import (
    SpectralGSStrategy,
    needle_stats,
    select_needles,
    spectral_entropy,
    spectral_entropy_from_covariance,
    spectral_split,
    spectral_split_children,
    spectral_split_children_reference,
)


def _log(scales):
    return torch.tensor(scales, dtype=torch.float64).log()


def _h(p):
    return -sum(x * math.log(x) for x in p)


# --- entropy ------------------------------------------------------------------------------------
def test_entropy_hand_computed_values():
    h = spectral_entropy(_log([[1.0, 1.0, 1.0], [2.0, 1.0, 1.0], [10.0, 1.0, 1.0], [3.0, 2.0, 1.0]]))
    assert h[0].item() == pytest.approx(math.log(3), abs=1e-12)
    assert h[1].item() == pytest.approx(_h([4 / 6, 1 / 6, 1 / 6]), abs=1e-12)
    assert h[1].item() == pytest.approx(0.8676, abs=1e-4)  # the write-up's table says 0.562: wrong
    assert h[2].item() == pytest.approx(_h([100 / 102, 1 / 102, 1 / 102]), abs=1e-12)
    assert h[3].item() == pytest.approx(_h([9 / 14, 4 / 14, 1 / 14]), abs=1e-12)
    hn = spectral_entropy(_log([[1.0, 1.0, 1.0], [2.0, 1.0, 1.0]]), normalized=True)
    assert hn[0].item() == pytest.approx(1.0, abs=1e-12)
    assert hn[1].item() == pytest.approx(h[1].item() / math.log(3), abs=1e-12)


def test_entropy_of_needles_goes_to_zero_without_nans():
    h = spectral_entropy(torch.tensor([[0.0, -10.0, -10.0], [0.0, -60.0, -60.0]]))  # float32: s^2 underflows
    assert torch.isfinite(h).all()
    assert 0 < h[0].item() < 1e-6 * 30
    assert h[1].item() < 1e-40 or h[1].item() == 0.0
    # a flat disc is no needle: [1, 1, 0] -> ln 2
    assert spectral_entropy(torch.tensor([[0.0, 0.0, -30.0]]))[0].item() == pytest.approx(math.log(2), abs=1e-6)


def test_entropy_rotation_invariant_and_matches_eigenvalue_twin():
    g = random_gaussians(200, seed=3, scale_range=(0.001, 0.3), dtype=torch.float64)
    h = spectral_entropy(g.log_scales)
    h_cov = spectral_entropy_from_covariance(g.covariances())
    torch.testing.assert_close(h, h_cov, atol=1e-9, rtol=0)
    # rotate every Gaussian differently: entropy of the rotated covariances is unchanged
    R = quat_to_rotmat(torch.randn(200, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    rotated = R @ g.covariances() @ R.transpose(-1, -2)
    torch.testing.assert_close(spectral_entropy_from_covariance(rotated), h, atol=1e-9, rtol=0)
    # and the quaternions do not enter spectral_entropy at all: permuting axes keeps H
    torch.testing.assert_close(spectral_entropy(g.log_scales[:, [2, 0, 1]]), h)


def test_entropy_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        spectral_entropy(torch.zeros(5, 2))


def test_needle_stats():
    s = needle_stats(_log([[1.0, 1.0, 1.0], [10.0, 1.0, 1.0]]))
    assert s["needle_fraction"] == pytest.approx(0.5)
    assert s["mean_entropy"] == pytest.approx((math.log(3) + _h([100 / 102, 1 / 102, 1 / 102])) / 2, abs=1e-9)


# --- split --------------------------------------------------------------------------------------
def _needles(m, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(m, 3, generator=gen, dtype=dtype)
    quats = torch.randn(m, 4, generator=gen, dtype=dtype)
    ratio = 4 + 20 * torch.rand(m, generator=gen, dtype=dtype)
    log_scales = torch.log(torch.stack([ratio, torch.ones(m, dtype=dtype), 0.5 + torch.rand(m, generator=gen, dtype=dtype)], -1) * 0.01)
    # principal axis in a random slot
    perm = torch.argsort(torch.rand(m, 3, generator=gen), dim=-1)
    return means, quats, torch.gather(log_scales, 1, perm)


@pytest.mark.parametrize("factor", [1.6, 2.0])
def test_split_raises_entropy_and_covers_parent_extent(factor):
    means, quats, log_scales = _needles(64)
    child_means, child_ls = spectral_split_children(means, quats, log_scales, split_factor=factor)
    assert child_means.shape == (2, 64, 3) and child_ls.shape == (2, 64, 3)
    h_parent = spectral_entropy(log_scales)
    for k in range(2):
        assert (spectral_entropy(child_ls[k]) > h_parent + 1e-6).all()
    # only the principal axis shrank, by exactly the factor
    j = log_scales.argmax(-1)
    shrink = (log_scales - child_ls[0]).exp()
    expect = torch.ones_like(shrink)
    expect[torch.arange(64), j] = factor
    torch.testing.assert_close(shrink, expect)
    # coverage along the principal axis u: parent's 3-sigma segment [-3 s, 3 s] is inside the union
    # of the children's segments and the children's segments overlap or touch (no gap)
    R = quat_to_rotmat(quats)
    u = R[torch.arange(64), :, j]
    s = log_scales.gather(-1, j[:, None])[:, 0].exp()
    s_child = s / factor
    c = ((child_means - means) * u).sum(-1)  # [2, M] signed positions along u
    lo = torch.minimum(c[0], c[1]) - 3 * s_child
    hi = torch.maximum(c[0], c[1]) + 3 * s_child
    assert (lo <= -3 * s + 1e-9).all() and (hi >= 3 * s - 1e-9).all()
    assert ((c[1] - c[0]).abs() <= 2 * 3 * s_child + 1e-9).all()
    # children stay on the principal axis through the parent's mean
    off_axis = (child_means - means) - c[..., None] * u
    assert off_axis.abs().max() < 1e-9
    # the pair is symmetric about the parent
    torch.testing.assert_close((child_means[0] + child_means[1]) / 2, means)


def test_split_fast_matches_reference_twin():
    means, quats, log_scales = _needles(40, seed=5)
    cm, cls = spectral_split_children(means, quats, log_scales, split_factor=1.6)
    rm, rcov = spectral_split_children_reference(means, quats, log_scales, split_factor=1.6)
    torch.testing.assert_close(cm, rm, atol=1e-10, rtol=1e-8)
    Rm = quat_to_rotmat(quats)
    for k in range(2):
        M = Rm * cls[k].exp()[:, None, :]
        torch.testing.assert_close(M @ M.transpose(-1, -2), rcov[k], atol=1e-12, rtol=1e-8)


def test_split_argument_errors():
    means, quats, log_scales = _needles(2)
    with pytest.raises(ValueError, match="split_factor must be > 1"):
        spectral_split_children(means, quats, log_scales, split_factor=1.0)
    with pytest.raises(ValueError, match="gap"):
        spectral_split_children(means, quats, log_scales, split_factor=3.0)
    cm, _ = spectral_split_children(means, quats, log_scales, split_factor=3.0, split_offset=2.0)
    assert cm.shape == (2, 2, 3)
    with pytest.raises(ValueError, match="spectral_threshold"):
        SpectralGSStrategy(spectral_threshold=1.5)


def test_select_needles_worst_first_and_capped():
    h = torch.tensor([0.1, 0.9, 0.3, 0.05, 0.4, 0.2])
    eligible = torch.tensor([True, True, True, True, True, False])
    m = select_needles(h, eligible, 0.5, max_splits=2)
    assert m.tolist() == [True, False, False, True, False, False]
    m = select_needles(h, eligible, 0.5, max_splits=0)
    assert m.tolist() == [True, False, True, True, True, False]


# --- optimizer / state alignment ---------------------------------------------------------------
def _params_and_adam(n=50, seed=0):
    g = random_gaussians(n, sh_degree=1, seed=seed, scale_range=(0.01, 0.1))
    ls = g.log_scales.clone()
    ls[: n // 2, 0] += 2.5  # first half: needles
    params = torch.nn.ParameterDict(
        {
            "means": g.means,
            "quats": g.quats,
            "scales": ls,
            "opacities": g.opacity_logits,
            "sh0": g.sh[:, :1],
            "shN": g.sh[:, 1:],
        }
    )
    opts = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    loss = sum((p**2).sum() for p in params.values())
    loss.backward()
    for o in opts.values():
        o.step()
    return params, opts


def test_spectral_split_keeps_optimizer_state_rows_aligned():
    params, opts = _params_and_adam(50)
    old = {k: p.detach().clone() for k, p in params.items()}
    old_avg = {k: opts[k].state[p]["exp_avg"].clone() for k, p in params.items()}
    state = {"grad2d": torch.arange(50.0), "count": torch.ones(50), "scene_scale": 1.0}
    mask = spectral_entropy(params["scales"]) < 0.5
    n = int(mask.sum())
    assert n >= 20
    assert spectral_split(params, opts, state, mask) == n
    rest = torch.where(~mask)[0]
    for k, p in params.items():
        assert p.shape[0] == 50 + n
        assert isinstance(p, torch.nn.Parameter) and p.requires_grad
        opt = opts[k]
        assert opt.param_groups[0]["params"][0] is p
        st = opt.state[p]
        for key in ("exp_avg", "exp_avg_sq"):
            assert st[key].shape == p.shape
        # surviving rows keep their moments, children start at zero
        torch.testing.assert_close(st["exp_avg"][: len(rest)], old_avg[k][rest])
        assert (st["exp_avg"][len(rest):] == 0).all()
        # surviving parameters unchanged and in order
        torch.testing.assert_close(p[: len(rest)].detach(), old[k][rest])
    assert state["grad2d"].shape == (50 + n,) and state["count"].shape == (50 + n,)
    torch.testing.assert_close(state["grad2d"][: len(rest)], rest.float())
    assert (state["grad2d"][len(rest):] == 0).all() and state["scene_scale"] == 1.0
    # children copy colours / rotations of their parent (both children)
    sel = torch.where(mask)[0]
    for k in ("quats", "sh0", "shN", "opacities"):
        torch.testing.assert_close(params[k][len(rest):].detach(), old[k][sel].repeat(2, *[1] * (old[k].dim() - 1)))
    # an optimizer step still runs on the resized parameters
    sum((p**2).sum() for p in params.values()).backward()
    for o in opts.values():
        o.step()


def _fake_info(n, width=64, height=48):
    means2d = torch.zeros(1, n, 2, requires_grad=True)
    (means2d * torch.linspace(0, 1, n)[None, :, None]).sum().backward()
    return {
        "width": width,
        "height": height,
        "n_cameras": 1,
        "radii": torch.ones(1, n, 2, dtype=torch.int32),
        "gaussian_ids": None,
        "means2d": means2d,
    }


def test_strategy_refine_step_splits_needles_before_gradient_densification():
    params, opts = _params_and_adam(50)
    strat = SpectralGSStrategy(refine_start_iter=0, refine_every=1, grow_grad2d=1e9, prune_opa=0.0, max_spectral_splits=10)
    strat.check_sanity(params, opts)
    state = strat.initialize_state(scene_scale=1.0)
    h_before = spectral_entropy(params["scales"]).detach()
    n_needles = int((h_before < 0.5).sum())
    assert n_needles > 10
    strat.step_post_backward(params, opts, state, step=1, info=_fake_info(50))
    assert state["n_spectral_split"] == 10  # capped, worst first
    assert len(params["means"]) == 60
    assert state["grad2d"].shape == (60,) and state["count"].shape == (60,)
    worst = torch.sort(torch.topk(h_before, 10, largest=False).indices).values
    h_after = spectral_entropy(params["scales"]).detach()
    kept = torch.tensor([i for i in range(50) if i not in set(worst.tolist())])
    torch.testing.assert_close(h_after[:40], h_before[kept])  # survivors: the 40 least needle-like
    assert (h_after[40:50] > h_before[worst]).all() and (h_after[50:] > h_before[worst]).all()
    for k, p in params.items():
        assert opts[k].state[p]["exp_avg"].shape == p.shape
    # repeated (uncapped) refine steps remove every needle: each split divides the principal axis by
    # 1.6, so a needle of axis ratio r needs about log(r / 3.5) / log(1.6) generations
    strat.max_spectral_splits = 0
    for step in range(2, 16):
        strat.step_post_backward(params, opts, state, step=step, info=_fake_info(len(params["means"])))
    assert needle_stats(params["scales"])["needle_fraction"] == 0.0
    assert spectral_entropy(params["scales"]).min() >= 0.5
    # with the spectral split off it is DefaultStrategy: nothing grows
    params2, opts2 = _params_and_adam(50)
    off = SpectralGSStrategy(refine_start_iter=0, refine_every=1, grow_grad2d=1e9, prune_opa=0.0, spectral_split=False)
    st2 = off.initialize_state()
    off.step_post_backward(params2, opts2, st2, step=1, info=_fake_info(50))
    assert len(params2["means"]) == 50 and st2["n_spectral_split"] == 0
